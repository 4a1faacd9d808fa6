#include "voxd/daemon/control_api.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <set>

#include "voxd/common/units.hpp"

namespace voxd {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

result<std::string> string_param(const json& p, const char* name, bool required) {
  auto it = p.find(name);
  if (it == p.end() || it->is_null()) {
    if (required)
      return make_error(errc::invalid_argument, fmt::format("missing parameter '{}'", name));
    return std::string();
  }
  if (!it->is_string())
    return make_error(errc::invalid_argument, fmt::format("parameter '{}' must be a string", name));
  return it->get<std::string>();
}

}  // namespace

control_api::control_api(const config& cfg, const catalog& names, model_queue& queue, bandwidth& bw,
                         const origin_pool& origins, const registry_client& registry,
                         const swarm* peers)
    : cfg_(cfg),
      names_(names),
      queue_(queue),
      bw_(bw),
      origins_(origins),
      registry_(registry),
      peers_(peers) {}

std::span<const control_api::method> control_api::methods() {
  static constexpr method table[] = {
      {"status", false, &control_api::m_status}, {"ls", false, &control_api::m_ls},
      {"add", true, &control_api::m_add},        {"pause", true, &control_api::m_pause},
      {"resume", true, &control_api::m_resume},  {"rm", true, &control_api::m_rm},
      {"path", false, &control_api::m_path},     {"limit", true, &control_api::m_limit},
      {"peers", false, &control_api::m_peers},   {"subscribe", false, &control_api::m_subscribe},
      {"gc", true, &control_api::m_gc},
  };
  return table;
}

std::optional<result<json>> control_api::dispatch(control_session& session,
                                                  const rpc::request& req) {
  for (const auto& m : methods()) {
    if (m.name != req.method) continue;
    if (m.changes_state)
      spdlog::info("{} {} by {}", req.method, req.params.dump(), session.peer().describe());
    return (this->*m.fn)(session, req.params);
  }
  return std::nullopt;
}

result<model*> control_api::model_param(const json& p) {
  auto name = string_param(p, "model", true);
  if (!name) return name.err();
  return queue_.find(*name, names_);
}

result<json> control_api::m_add(control_session&, const json& p) {
  auto name = string_param(p, "model", true);
  if (!name) return name.err();
  auto rev = string_param(p, "revision", false);
  if (!rev) return rev.err();
  auto spec = names_.resolve(*name, *rev);
  if (!spec) return spec.err();
  return queue_.model_json(queue_.add(*spec));
}

result<json> control_api::m_pause(control_session&, const json& p) {
  auto m = model_param(p);
  if (!m) return m.err();
  queue_.pause(**m);
  return queue_.model_json(**m);
}

result<json> control_api::m_resume(control_session&, const json& p) {
  auto m = model_param(p);
  if (!m) return m.err();
  queue_.resume(**m);
  return queue_.model_json(**m);
}

result<json> control_api::m_gc(control_session&, const json& p) {
  const auto dry = p.find("dry_run");
  if (dry != p.end() && !dry->is_boolean())
    return make_error(errc::invalid_argument, "parameter 'dry_run' must be true or false");
  const bool dry_run = dry != p.end() && dry->get<bool>();
  json out{{"evict_after", cfg_.evict_after == 0
                               ? "off"
                               : format_seconds(static_cast<std::uint64_t>(cfg_.evict_after))},
           {"dry_run", dry_run},
           {"models", json::array()},
           {"bytes", 0}};
  if (cfg_.evict_after == 0) return out;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  std::uint64_t bytes = 0;
  for (const auto& s : queue_.stale(now - cfg_.evict_after)) {
    out["models"].push_back({{"model", s.key}, {"last_used", s.last_used}, {"bytes", s.bytes}});
    bytes += s.bytes;
    if (dry_run) continue;
    spdlog::info("gc: removing {} (not used for {}, {})", s.key,
                 format_seconds(static_cast<std::uint64_t>(now - s.last_used)),
                 format_bytes(s.bytes));
    if (auto m = queue_.find(s.key, names_); m) queue_.remove(**m);
  }
  out["bytes"] = bytes;
  return out;
}

result<json> control_api::m_rm(control_session&, const json& p) {
  auto m = model_param(p);
  if (!m) return m.err();
  const auto key = (*m)->key();
  queue_.remove(**m);
  return json{{"removed", key}};
}

json control_api::origins_json() const {
  json arr = json::array();
  const auto now = steady::now();
  for (const auto i : origins_.active()) {
    const auto& o = origins_[i];
    arr.push_back({{"url", o.cfg.url},
                   {"healthy", origins_.available(i, now)},
                   {"bytes", o.bytes->load()},
                   {"failures", o.failures_total},
                   {"corrupt", o.corrupt_total},
                   {"last_error", o.last_error}});
  }
  return arr;
}

result<json> control_api::m_status(control_session&, const json& p) {
  auto name = string_param(p, "model", false);
  if (!name) return name.err();
  if (!name->empty()) {
    auto m = queue_.find(*name, names_);
    if (!m) return m.err();
    return queue_.model_json(**m);
  }
  return json{
      {"version", "0.1.0"},
      {"protocol_version", rpc::protocol_version},
      {"pid", ::getpid()},
      {"uptime_seconds",
       std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count()},
      {"hub_cache", cfg_.hub_cache},
      {"state_dir", cfg_.state_dir},
      {"max_active", cfg_.max_active},
      {"limits", limits_json()},
      {"peers",
       peers_ ? json{{"listen", cfg_.peer.listen},
                     {"tracker", cfg_.tracker},
                     {"registry", registry_.base_url()},
                     {"lan_discovery", cfg_.peer.lan_discovery},
                     {"origin_policy",
                      cfg_.origin_policy == origin_policy::balanced ? "balanced" : "prefer-peers"}}
              : json(nullptr)},
      {"origins", origins_json()},
      {"models", queue_.models_json()}};
}

result<json> control_api::m_ls(control_session&, const json&) {
  return json{{"models", queue_.models_json()}};
}

result<json> control_api::m_path(control_session&, const json& p) {
  auto found = model_param(p);
  if (!found) return found.err();
  model* m = *found;
  if (m->state != model_state::complete)
    return make_error(errc::not_found, fmt::format("{} is not complete yet (state: {})", m->key(),
                                                   to_string(m->state)));
  return json{{"path", queue_.snapshot_dir(*m).string()}};
}

json control_api::limits_json() const {
  double up_rate = 0;
  if (peers_)
    for (const auto& [k, m] : queue_.models())
      for (const auto& f : m.files)
        if (auto b = blob_id::parse(f.blob))
          if (auto s = peers_->stats(*b)) up_rate += s->upload_rate;
  return bw_.limits_json(peers_ != nullptr, queue_.download_rate(), up_rate);
}

result<json> control_api::m_limit(control_session&, const json& p) {
  auto dir = string_param(p, "direction", false);
  if (!dir) return dir.err();
  if (dir->empty()) return limits_json();
  if (*dir != "download" && *dir != "upload")
    return make_error(errc::invalid_argument,
                      fmt::format("cannot limit '{}': expected download or upload", *dir));
  auto rate = string_param(p, "rate", true);
  if (!rate) return rate.err();
  auto r = parse_rate(*rate, *dir == "upload");
  if (!r) return r.err();
  if (*dir == "upload")
    bw_.set_upload_cap(*r);
  else
    bw_.set_download_cap(*r);
  return limits_json();
}

result<json> control_api::m_peers(control_session&, const json& p) {
  auto found = model_param(p);
  if (!found) return found.err();
  const model* m = *found;
  json list = json::array();
  std::set<std::string> seen;
  if (peers_)
    for (const auto& f : m->files) {
      auto b = blob_id::parse(f.blob);
      if (!b || !seen.insert(f.blob).second) continue;
      for (const auto& r : peers_->peers(*b))
        list.push_back({{"file", f.path},
                        {"address", r.address},
                        {"client", r.client},
                        {"network", r.lan ? "lan" : "wan"},
                        {"seed", r.seed},
                        {"source", r.source},
                        {"download_rate", r.download_rate},
                        {"upload_rate", r.upload_rate},
                        {"bytes_downloaded", r.downloaded},
                        {"bytes_uploaded", r.uploaded},
                        {"pieces", r.pieces},
                        {"pieces_total", r.num_pieces}});
    }
  return json{{"model", m->key()}, {"peers", list}};
}

result<json> control_api::m_subscribe(control_session& session, const json& p) {
  auto name = string_param(p, "model", false);
  if (!name) return name.err();
  if (name->empty()) {
    session.subscribe(std::nullopt);
    return json{{"subscribed", "*"}};
  }
  auto m = queue_.find(*name, names_);
  if (!m) return m.err();
  session.subscribe((*m)->key());
  return json{{"subscribed", (*m)->key()}, {"status", queue_.model_json(**m)}};
}

}  // namespace voxd
