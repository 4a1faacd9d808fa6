#include "voxd/daemon/daemon.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <set>

#include "voxd/common/files.hpp"
#include "voxd/common/protocol.hpp"
#include "voxd/common/units.hpp"
#include "voxd/daemon/bandwidth.hpp"
#include "voxd/daemon/blob_broker.hpp"
#include "voxd/daemon/catalog.hpp"
#include "voxd/daemon/control_server.hpp"
#include "voxd/daemon/hash_worker.hpp"
#include "voxd/daemon/http_engine.hpp"
#include "voxd/daemon/manifest.hpp"
#include "voxd/daemon/origins.hpp"
#include "voxd/daemon/registry_client.hpp"
#include "voxd/daemon/store.hpp"
#include "voxd/daemon/swarm.hpp"

namespace voxd {

namespace asio = boost::asio;
using json = nlohmann::json;

namespace {

enum class model_state { queued, resolving, downloading, complete, paused, error };

std::string_view to_string(model_state s) {
  switch (s) {
    case model_state::queued:
      return "queued";
    case model_state::resolving:
      return "resolving";
    case model_state::downloading:
      return "downloading";
    case model_state::complete:
      return "complete";
    case model_state::paused:
      return "paused";
    case model_state::error:
      return "error";
  }
  return "error";
}

std::optional<model_state> state_from(std::string_view s) {
  for (auto st : {model_state::queued, model_state::resolving, model_state::downloading,
                  model_state::complete, model_state::paused, model_state::error})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

struct model {
  explicit model(model_spec s) : spec(std::move(s)) {}
  model_spec spec;
  std::uint64_t seq = 0;
  model_state state = model_state::queued;
  std::string error;
  std::optional<commit_id> commit;
  std::vector<hub::manifest_entry> files;
  std::uint64_t from_origin_base = 0;  // origin bytes of blobs already finished
  std::uint64_t from_lan_base = 0;     // peer bytes of blobs already finished
  std::uint64_t from_wan_base = 0;
  std::uint64_t redundant_base = 0;
  std::set<std::string> pending;  // blob ids not yet in this model's blobs/
  // Rate estimate, for progress and ETA.
  std::uint64_t last_done = 0;
  double rate = 0;

  std::string key() const { return spec.key(); }
  bool active() const {
    return state == model_state::resolving || state == model_state::downloading;
  }
};

}  // namespace

struct daemon::impl {
  config cfg;
  std::string config_path;
  asio::io_context io;
  asio::signal_set signals{io, SIGTERM, SIGINT, SIGHUP};
  asio::steady_timer tick{io};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_tick = started;
  catalog names;
  store st;
  std::unique_ptr<origin_pool> origins;
  std::unique_ptr<http_engine> http;
  std::unique_ptr<hash_worker> hasher;
  std::unique_ptr<manifest_resolver> resolver;
  std::unique_ptr<registry_client> registry;
  std::unique_ptr<swarm> peers;  // null without a registry: no torrents to share
  std::unique_ptr<blob_broker> fetcher;
  std::unique_ptr<control_server> control;
  std::map<std::string, model> models;  // by key
  std::uint64_t next_seq = 1;
  bandwidth bw;
  bool stopping = false;
  int exit_code = 0;

  impl(config c, std::string path)
      : cfg(std::move(c)),
        config_path(std::move(path)),
        names(cfg.models),
        st(cfg.hub_cache, cfg.state_dir),
        bw(cfg, cfg.state_dir + "/settings.json") {}

  // ---- persistence -------------------------------------------------------------------------

  std::string models_file() const { return cfg.state_dir + "/models.json"; }

  void save() {
    json arr = json::array();
    for (const auto& [key, m] : models) {
      json files = json::array();
      for (const auto& f : m.files)
        files.push_back({{"path", f.path}, {"size", f.size}, {"blob", f.blob}});
      arr.push_back({{"repo", m.spec.repo.str()},
                     {"revision", m.spec.revision},
                     {"alias", m.spec.alias},
                     {"seq", m.seq},
                     {"state", to_string(m.state)},
                     {"error", m.error},
                     {"commit", m.commit ? json(m.commit->str()) : json(nullptr)},
                     {"files", files},
                     {"bytes_from_origin", m.from_origin_base},
                     {"bytes_from_peers_lan", m.from_lan_base},
                     {"bytes_from_peers_wan", m.from_wan_base},
                     {"bytes_redundant", m.redundant_base}});
    }
    json doc{{"version", 1}, {"next_seq", next_seq}, {"models", arr}};
    if (auto s = write_file_atomic(models_file(), doc.dump(1)); !s)
      spdlog::error("saving the queue: {}", s.err().message);
  }

  // A damaged state file is reported and set aside, never silently replaced.
  status load() {
    bw.load();
    if (!std::filesystem::exists(models_file())) return ok();
    const json doc = json::parse(read_file(models_file()).value_or(""), nullptr, false);
    const auto quarantine = [this](const std::string& why) {
      auto const aside = models_file() + ".damaged";
      std::filesystem::rename(models_file(), aside);
      spdlog::error("{}: {}; moved it to {} and starting with an empty queue", models_file(), why,
                    aside);
      return ok();
    };
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("models") ||
        !doc["models"].is_array())
      return quarantine("not a voxd queue file");
    next_seq = doc.value("next_seq", std::uint64_t{1});
    for (const auto& j : doc["models"]) {
      try {
        auto repo = repo_id::parse(j.at("repo").get<std::string>());
        auto rev = validate_revision(j.at("revision").get<std::string>());
        auto state = state_from(j.at("state").get<std::string>());
        if (!repo || !rev || !state)
          return quarantine("an entry has an invalid repo, revision or state");
        model m(model_spec{*repo, *rev, j.value("alias", std::string())});
        m.seq = j.at("seq").get<std::uint64_t>();
        m.state = *state;
        m.error = j.value("error", std::string());
        if (j.contains("commit") && j["commit"].is_string()) {
          auto c = commit_id::parse(j["commit"].get<std::string>());
          if (!c) return quarantine(c.err().message);
          m.commit = *c;
        }
        for (const auto& f : j.at("files")) {
          hub::manifest_entry e{f.at("path").get<std::string>(), f.at("size").get<std::uint64_t>(),
                                f.at("blob").get<std::string>()};
          if (!validate_repo_path(e.path) || !blob_id::parse(e.blob))
            return quarantine("an entry has an invalid file");
          m.files.push_back(std::move(e));
        }
        m.from_origin_base = j.value("bytes_from_origin", std::uint64_t{0});
        m.from_lan_base = j.value("bytes_from_peers_lan", std::uint64_t{0});
        m.from_wan_base = j.value("bytes_from_peers_wan", std::uint64_t{0});
        m.redundant_base = j.value("bytes_redundant", std::uint64_t{0});
        // Work that was under way resumes from the queue.
        if (m.active()) m.state = model_state::queued;
        models.emplace(m.key(), std::move(m));
      } catch (const json::exception& e) {
        return quarantine(e.what());
      }
    }
    spdlog::info("loaded {} models from {}", models.size(), models_file());
    return ok();
  }

  // ---- model lifecycle ---------------------------------------------------------------------

  result<model*> find(const std::string& name) {
    if (auto it = models.find(name); it != models.end()) return &it->second;
    std::vector<model*> hits;
    for (auto& [key, m] : models)
      if (m.spec.alias == name || m.spec.repo.str() == name) hits.push_back(&m);
    if (hits.size() == 1) return hits.front();
    if (hits.size() > 1)
      return make_error(
          errc::invalid_argument,
          fmt::format("'{}' matches several models; name one as repo@revision", name));
    // An alias with @revision, e.g. voxcpm-1.5@v2.
    if (auto spec = names.resolve(name, ""); spec)
      if (auto it = models.find(spec->key()); it != models.end()) return &it->second;
    return make_error(errc::not_found,
                      fmt::format("no model '{}' in the daemon (see `voxd ls`)", name));
  }

  // The model named by the required "model" parameter.
  result<model*> model_param(const json& p) {
    auto name = string_param(p, "model", true);
    if (!name) return name.err();
    return find(*name);
  }

  struct model_progress {
    std::uint64_t total = 0, done = 0, from_origin = 0, from_lan = 0, from_wan = 0, uploaded = 0,
                  redundant = 0;
    std::size_t files_done = 0;
    int peers = 0;
    bool waiting = false;  // every unfinished blob waits for another daemon's first fetch
    std::optional<lease_info> lease;
    std::string lease_file;
    std::optional<group_progress> group;  // the largest part of a cooperative first fetch
    std::string group_file;
  };

  model_progress progress_of(const model& m) const {
    model_progress p;
    p.from_origin = m.from_origin_base;
    p.from_lan = m.from_lan_base;
    p.from_wan = m.from_wan_base;
    p.redundant = m.redundant_base;
    bool any_busy = false;
    std::set<std::string> seen;
    for (const auto& f : m.files) {
      p.total += f.size;
      auto blob = blob_id::parse(f.blob);
      // Only seeds' counters belong here (a download's are in its blob status); checking first
      // spares a blocking call into the session for every downloading blob on every tick.
      if (blob && peers && seen.insert(f.blob).second && peers->seeding(*blob))
        if (auto s = peers->stats(*blob)) {
          p.uploaded += s->uploaded;
          p.peers += s->peers;
        }
      if (!m.pending.count(f.blob) &&
          (m.state == model_state::complete || m.state == model_state::downloading)) {
        p.done += f.size;
        ++p.files_done;
        continue;
      }
      if (!blob) continue;
      if (auto b = fetcher->status_of(*blob)) {
        p.done += b->done;
        p.from_origin += b->from_origin;
        p.from_lan += b->from_peers_lan;
        p.from_wan += b->from_peers_wan;
        p.redundant += b->redundant;
        p.peers += b->peers;
        if (b->group && (!p.group || b->group->pieces > p.group->pieces)) {
          p.group = b->group;
          p.group_file = f.path;
        }
        if (b->phase == "waiting") {
          p.waiting = true;
          if (b->lease && !p.lease) {
            p.lease = b->lease;
            p.lease_file = f.path;
          }
        } else {
          any_busy = true;
          if (b->lease && b->lease->ours && !p.lease) {
            p.lease = b->lease;
            p.lease_file = f.path;
          }
        }
      }
    }
    if (any_busy) p.waiting = false;
    if (m.state == model_state::complete) p.done = p.total;
    return p;
  }

  json model_json(const model& m) const { return model_json(m, progress_of(m)); }

  json model_json(const model& m, const model_progress& p) const {
    const auto total = p.total, done = p.done;
    const bool waiting = m.state == model_state::downloading && p.waiting;
    json j{{"model", m.key()},
           {"alias", m.spec.alias},
           {"repo", m.spec.repo.str()},
           {"revision", m.spec.revision},
           {"commit", m.commit ? json(m.commit->str()) : json(nullptr)},
           {"state", waiting ? std::string_view("waiting") : to_string(m.state)},
           {"bytes_total", total},
           {"bytes_done", done},
           {"bytes_from_origin", p.from_origin},
           {"bytes_from_peers", p.from_lan + p.from_wan},
           {"bytes_from_peers_lan", p.from_lan},
           {"bytes_from_peers_wan", p.from_wan},
           {"bytes_uploaded", p.uploaded},
           {"bytes_redundant", p.redundant},
           {"peers", p.peers},
           {"rate", m.active() ? m.rate : 0.0},
           {"files_total", m.files.size()},
           {"files_done", p.files_done},
           {"path",
            m.commit ? json(st.snapshot_dir(m.spec.repo, *m.commit).string()) : json(nullptr)}};
    if (m.active() && m.rate > 1 && total >= done)
      j["eta_seconds"] = static_cast<double>(total - done) / m.rate;
    if (!m.error.empty()) j["error"] = m.error;
    if (p.lease)
      j["lease"] = {{"holder", p.lease->holder},
                    {"ours", p.lease->ours},
                    {"file", p.lease_file},
                    {"bytes_done", p.lease->bytes_done},
                    {"bytes_total", p.lease->bytes_total}};
    else
      j["lease"] = nullptr;
    if (p.group)
      j["group"] = {{"file", p.group_file},
                    {"pieces", p.group->pieces},
                    {"pieces_claimed", p.group->pieces_claimed},
                    {"pieces_done", p.group->pieces_done},
                    {"pieces_reported", p.group->reported},
                    {"members", p.group->members}};
    else
      j["group"] = nullptr;
    return j;
  }

  void set_state(model& m, model_state s, std::string error = {}) {
    m.state = s;
    m.error = std::move(error);
    save();
    control->broadcast("model.state", model_json(m), m.key());
  }

  void schedule() {
    if (stopping) return;
    int active = 0;
    for (const auto& [k, m] : models)
      active += m.active() ? 1 : 0;
    std::vector<model*> queued;
    for (auto& [k, m] : models)
      if (m.state == model_state::queued) queued.push_back(&m);
    std::sort(queued.begin(), queued.end(), [](model* a, model* b) { return a->seq < b->seq; });
    for (auto* m : queued) {
      if (active >= cfg.max_active) break;
      ++active;
      start(*m);
    }
  }

  void start(model& m) {
    if (m.commit && !m.files.empty()) return begin_download(m);
    set_state(m, model_state::resolving);
    resolver->resolve(m.spec.repo, m.spec.revision, [this, key = m.key()](result<manifest> r) {
      auto it = models.find(key);
      if (it == models.end() || stopping) return;
      auto& mm = it->second;
      if (!r) {
        if (mm.state == model_state::resolving) set_state(mm, model_state::error, r.err().message);
        schedule();
        return;
      }
      mm.commit = r->commit;
      mm.files = std::move(r->files);
      if (mm.state == model_state::resolving)
        begin_download(mm);
      else
        save();
    });
  }

  void begin_download(model& m) {
    m.pending.clear();
    m.state = model_state::downloading;
    m.error.clear();
    std::vector<blob_request> wanted;
    for (const auto& f : m.files) {
      auto blob = blob_id::parse(f.blob);
      if (!blob) continue;  // validated when the manifest was read
      if (m.pending.count(f.blob) || st.has_blob(m.spec.repo, *blob, f.size)) continue;
      if (auto elsewhere = st.find_blob(*blob, f.size)) {
        // Another model or revision already has the verified bytes: share them, fetch nothing.
        if (auto s = st.adopt_blob(m.spec.repo, *blob, *elsewhere); s) {
          spdlog::info("{}: {} is already in the store; linked from {}", m.key(), f.path,
                       elsewhere->string());
          continue;
        }
      }
      m.pending.insert(f.blob);
      wanted.push_back(blob_request{*blob, f.size, m.spec.repo, *m.commit, f.path});
    }
    save();
    control->broadcast("model.state", model_json(m), m.key());
    for (const auto& w : wanted)
      fetcher->want(w, m.key(), true);
    if (m.pending.empty()) complete(m);
  }

  void complete(model& m) {
    // An empty repository still gets its (empty) snapshot, so the ref never dangles.
    std::error_code ec;
    std::filesystem::create_directories(st.snapshot_dir(m.spec.repo, *m.commit), ec);
    for (const auto& f : m.files) {
      auto blob = blob_id::parse(f.blob);
      if (auto s = st.link_snapshot(m.spec.repo, *m.commit, f.path, *blob); !s) {
        set_state(m, model_state::error, s.err().message);
        return schedule();
      }
    }
    // huggingface_hub writes no ref when the revision is the commit itself.
    if (m.spec.revision != m.commit->str())
      if (auto s = st.write_ref(m.spec.repo, m.spec.revision, *m.commit); !s) {
        set_state(m, model_state::error, s.err().message);
        return schedule();
      }
    spdlog::info("{} complete: {} files in {}", m.key(), m.files.size(),
                 st.snapshot_dir(m.spec.repo, *m.commit).string());
    set_state(m, model_state::complete);
    schedule();
  }

  void on_blob_done(const blob_id& blob, const status& s, const blob_outcome& out) {
    if (stopping) return;
    std::vector<model*> waiting;
    for (auto& [k, m] : models)
      if (m.pending.count(blob.str())) waiting.push_back(&m);
    for (auto* m : waiting) {
      m->from_origin_base += out.from_origin;
      m->from_lan_base += out.from_peers_lan;
      m->from_wan_base += out.from_peers_wan;
      m->redundant_base += out.redundant;
      if (!s) {
        if (m->state == model_state::downloading) {
          fetcher->set_active(m->key(), false);
          set_state(*m, model_state::error, s.err().message);
        }
        continue;
      }
      const auto it = std::find_if(m->files.begin(), m->files.end(),
                                   [&](const auto& f) { return f.blob == blob.str(); });
      if (!st.has_blob(m->spec.repo, blob, it->size)) {
        auto src = st.find_blob(blob, it->size);
        const auto r = src ? st.adopt_blob(m->spec.repo, blob, *src)
                           : status(make_error(
                                 errc::io, fmt::format("{} vanished from the store", blob.str())));
        if (!r) {
          set_state(*m, model_state::error, r.err().message);
          continue;
        }
      }
      m->pending.erase(blob.str());
      if (m->pending.empty() && m->state == model_state::downloading) complete(*m);
    }
    save();
    schedule();
  }

  // ---- control methods ---------------------------------------------------------------------

  using method_fn = result<json> (impl::*)(control_session&, const json&);
  struct method {
    std::string_view name;
    bool changes_state;  // logged with the caller's credentials
    method_fn fn;
  };

  static std::span<const method> methods() {
    static constexpr method table[] = {
        {"status", false, &impl::m_status}, {"ls", false, &impl::m_ls},
        {"add", true, &impl::m_add},        {"pause", true, &impl::m_pause},
        {"resume", true, &impl::m_resume},  {"rm", true, &impl::m_rm},
        {"path", false, &impl::m_path},     {"limit", true, &impl::m_limit},
        {"peers", false, &impl::m_peers},   {"subscribe", false, &impl::m_subscribe},
    };
    return table;
  }

  std::optional<result<json>> dispatch(control_session& session, const rpc::request& req) {
    for (const auto& m : methods()) {
      if (m.name != req.method) continue;
      if (m.changes_state)
        spdlog::info("{} {} by {}", req.method, req.params.dump(), session.peer().describe());
      return (this->*m.fn)(session, req.params);
    }
    return std::nullopt;
  }

  static result<std::string> string_param(const json& p, const char* name, bool required) {
    auto it = p.find(name);
    if (it == p.end() || it->is_null()) {
      if (required)
        return make_error(errc::invalid_argument, fmt::format("missing parameter '{}'", name));
      return std::string();
    }
    if (!it->is_string())
      return make_error(errc::invalid_argument,
                        fmt::format("parameter '{}' must be a string", name));
    return it->get<std::string>();
  }

  json origins_json() const {
    json arr = json::array();
    const auto now = steady::now();
    for (const auto i : origins->active()) {
      const auto& o = (*origins)[i];
      arr.push_back({{"url", o.cfg.url},
                     {"healthy", origins->available(i, now)},
                     {"bytes", o.bytes->load()},
                     {"failures", o.failures_total},
                     {"corrupt", o.corrupt_total},
                     {"last_error", o.last_error}});
    }
    return arr;
  }

  result<json> m_status(control_session&, const json& p) {
    auto name = string_param(p, "model", false);
    if (!name) return name.err();
    if (!name->empty()) {
      auto m = find(*name);
      if (!m) return m.err();
      return model_json(**m);
    }
    return json{
        {"version", "0.1.0"},
        {"protocol_version", rpc::protocol_version},
        {"pid", ::getpid()},
        {"uptime_seconds",
         std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()},
        {"hub_cache", cfg.hub_cache},
        {"state_dir", cfg.state_dir},
        {"max_active", cfg.max_active},
        {"limits", limits_json()},
        {"peers",
         peers ? json{{"listen", cfg.peer.listen},
                      {"tracker", cfg.tracker},
                      {"registry", registry->base_url()},
                      {"lan_discovery", cfg.peer.lan_discovery},
                      {"origin_policy",
                       cfg.origin_policy == origin_policy::balanced ? "balanced" : "prefer-peers"}}
               : json(nullptr)},
        {"origins", origins_json()},
        {"models", models_json()}};
  }

  result<json> m_ls(control_session&, const json&) { return json{{"models", models_json()}}; }

  // Every model, in the order they were added.
  json models_json() const {
    std::vector<const model*> sorted;
    for (const auto& [k, m] : models)
      sorted.push_back(&m);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
    json list = json::array();
    for (const auto* m : sorted)
      list.push_back(model_json(*m));
    return list;
  }

  result<json> m_add(control_session&, const json& p) {
    auto name = string_param(p, "model", true);
    if (!name) return name.err();
    auto rev = string_param(p, "revision", false);
    if (!rev) return rev.err();
    auto spec = names.resolve(*name, *rev);
    if (!spec) return spec.err();
    auto it = models.find(spec->key());
    if (it != models.end()) {
      auto& m = it->second;
      if (m.state == model_state::error) {
        m.error.clear();
        set_state(m, model_state::queued);
        schedule();
      } else if (m.state == model_state::complete) {
        // Re-adding a complete model re-checks the store and repairs what is missing.
        set_state(m, model_state::queued);
        schedule();
      }
      return model_json(m);
    }
    model m(*spec);
    m.seq = next_seq++;
    const auto key = m.key();
    models.emplace(key, std::move(m));
    auto& ref = models.at(key);
    set_state(ref, model_state::queued);
    schedule();
    return model_json(models.at(key));
  }

  result<json> m_pause(control_session&, const json& p) {
    auto found = model_param(p);
    if (!found) return found.err();
    model* m = *found;
    if (m->state == model_state::queued || m->active()) {
      fetcher->set_active(m->key(), false);
      set_state(*m, model_state::paused);
      schedule();
    }
    return model_json(*m);
  }

  result<json> m_resume(control_session&, const json& p) {
    auto found = model_param(p);
    if (!found) return found.err();
    model* m = *found;
    if (m->state == model_state::paused || m->state == model_state::error) {
      set_state(*m, model_state::queued);
      schedule();
    }
    return model_json(*m);
  }

  result<json> m_rm(control_session&, const json& p) {
    auto found = model_param(p);
    if (!found) return found.err();
    model* m = *found;
    const auto key = m->key();
    const auto repo = m->spec.repo;
    const auto commit = m->commit;
    const auto removed_files = m->files;
    fetcher->unwant(key);
    m->state = model_state::error;
    m->error = "removed";
    control->broadcast("model.removed", json{{"model", key}}, key);
    models.erase(key);
    const bool shared = commit && std::any_of(models.begin(), models.end(), [&](const auto& kv) {
                          return kv.second.spec.repo == repo && kv.second.commit == commit;
                        });
    if (commit && !shared) {
      // Seeding stops with the model; a blob another model still holds is seeded from there.
      std::set<std::string> blobs;
      for (const auto& f : removed_files)
        blobs.insert(f.blob);
      for (const auto& b : blobs)
        if (auto id = blob_id::parse(b)) fetcher->unseed(*id);
      if (auto s = st.remove_snapshot(repo, *commit); !s)
        spdlog::warn("rm {}: {}", key, s.err().message);
      seed_complete();
    }
    save();
    schedule();
    return json{{"removed", key}};
  }

  result<json> m_path(control_session&, const json& p) {
    auto found = model_param(p);
    if (!found) return found.err();
    model* m = *found;
    if (m->state != model_state::complete)
      return make_error(errc::not_found, fmt::format("{} is not complete yet (state: {})", m->key(),
                                                     to_string(m->state)));
    return json{{"path", st.snapshot_dir(m->spec.repo, *m->commit).string()}};
  }

  json limits_json() const {
    double down_rate = 0, up_rate = 0;
    for (const auto& [k, m] : models)
      if (m.active()) down_rate += m.rate;
    if (peers)
      for (const auto& [k, m] : models)
        for (const auto& f : m.files)
          if (auto b = blob_id::parse(f.blob))
            if (auto s = peers->stats(*b)) up_rate += s->upload_rate;
    return bw.limits_json(peers != nullptr, down_rate, up_rate);
  }

  result<json> m_limit(control_session&, const json& p) {
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
      bw.set_upload_cap(*r);
    else
      bw.set_download_cap(*r);
    return limits_json();
  }

  result<json> m_peers(control_session&, const json& p) {
    auto found = model_param(p);
    if (!found) return found.err();
    const model* m = *found;
    json list = json::array();
    std::set<std::string> seen;
    if (peers)
      for (const auto& f : m->files) {
        auto b = blob_id::parse(f.blob);
        if (!b || !seen.insert(f.blob).second) continue;
        for (const auto& r : peers->peers(*b))
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

  // Every blob of a complete model whose torrent is known is seeded from the store.
  void seed_complete() {
    if (!peers) return;
    for (const auto& [k, m] : models) {
      if (m.state != model_state::complete) continue;
      for (const auto& f : m.files)
        if (auto b = blob_id::parse(f.blob); b && st.has_blob(m.spec.repo, *b, f.size))
          fetcher->seed(*b, m.spec.repo, f.size);
    }
  }

  result<json> m_subscribe(control_session& session, const json& p) {
    auto name = string_param(p, "model", false);
    if (!name) return name.err();
    if (name->empty()) {
      session.subscribe(std::nullopt);
      return json{{"subscribed", "*"}};
    }
    auto m = find(*name);
    if (!m) return m.err();
    session.subscribe((*m)->key());
    return json{{"subscribed", (*m)->key()}, {"status", model_json(**m)}};
  }

  // ---- loop --------------------------------------------------------------------------------

  void on_tick() {
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last_tick).count();
    last_tick = now;
    std::uint64_t done = 0;
    bool active = false;
    for (const auto& [k, m] : models)
      if (m.active()) {
        active = true;
        done += m.last_done;
      }
    bw.sample(now, dt, done, active);
    fetcher->set_link_rate(bw.link_rate());
    for (auto& [k, m] : models) {
      if (!m.active()) continue;
      const auto p = progress_of(m);
      if (dt > 0) {
        const double inst =
            p.done >= m.last_done ? static_cast<double>(p.done - m.last_done) / dt : 0;
        m.rate = m.rate == 0 ? inst : 0.7 * m.rate + 0.3 * inst;
      }
      m.last_done = p.done;
      control->broadcast("model.progress", model_json(m, p), m.key());
    }
    tick.expires_after(std::chrono::milliseconds(500));
    tick.async_wait([this](boost::system::error_code ec) {
      if (!ec && !stopping) on_tick();
    });
  }

  // SIGHUP: re-reads the config file. The keys the config table marks live apply at once, without
  // touching running transfers; the others (sockets, directories, request shapes) need a restart
  // and are reported. A file that does not validate is refused as a whole and the running
  // configuration stays.
  void reload() {
    if (config_path.empty()) {
      spdlog::warn("SIGHUP: started without --config; nothing to reload");
      return;
    }
    sd_notify(0, "RELOADING=1");
    std::vector<config_error> errors;
    auto next = load_config(config_path, errors);
    if (!next) {
      for (const auto& e : errors)
        spdlog::error("reload: {}", e.format());
      spdlog::error("reload refused: {} is invalid; the running configuration stays", config_path);
      sd_notify(0, "READY=1");
      return;
    }
    finalize_config(*next);
    const auto changes = config_changes(cfg, *next);
    const auto changed = [&](std::string_view key) {
      return std::any_of(changes.begin(), changes.end(),
                         [&](const config_change& c) { return c.key == key; });
    };
    if (changed("origins"))
      if (auto s = origins->reconfigure(next->origins); !s) {
        spdlog::error("reload refused: {}; the running configuration stays", s.err().message);
        sd_notify(0, "READY=1");
        return;
      }
    bw.reconfigure(cfg, *next);
    apply_live_keys(cfg, *next);  // the table says which keys these are
    names = catalog(cfg.models);
    fetcher->set_policy(cfg.origin_policy);
    spdlog::set_level(spdlog::level::from_str(cfg.log_level));
    std::string live, later;
    for (const auto& c : changes) {
      auto& list = c.live ? live : later;
      list += (list.empty() ? "" : ", ") + c.key;
    }
    spdlog::info("reloaded {}: {}{}", config_path, live.empty() ? "nothing changed" : live,
                 later.empty() ? "" : fmt::format("; {} changed but need a restart", later));
    sd_notify(0, "READY=1");
    schedule();
  }

  void wait_signal() {
    signals.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        reload();
        return wait_signal();
      }
      spdlog::info("{} received; stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      shutdown();
    });
  }

  void shutdown() {
    if (stopping) return;
    stopping = true;
    sd_notify(0, "STOPPING=1");
    control->close();
    fetcher->shutdown();
    if (peers) peers->stop();
    save();
    bw.save();
    tick.cancel();
    signals.cancel();
    http->stop();
    hasher->stop();
    io.stop();
  }

  int run() {
    if (auto s = st.init(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    auto pool = origin_pool::make(cfg.origins);
    if (!pool) {
      spdlog::critical("{}", pool.err().message);
      return static_cast<int>(errc::config);
    }
    origins = std::make_unique<origin_pool>(std::move(*pool));
    http = std::make_unique<http_engine>();
    hasher = std::make_unique<hash_worker>();
    resolver = std::make_unique<manifest_resolver>(io, *http, *origins, cfg.max_attempts_per_origin,
                                                   cfg.http_timeout);
    fetch_settings fs{cfg.connections_per_origin, cfg.chunk_size, cfg.min_split_size,
                      cfg.max_attempts_per_origin, cfg.http_timeout};
    std::string registry_token;
    if (!cfg.registry_token_file.empty()) {
      auto t = read_token_file(cfg.registry_token_file);
      if (!t) {
        spdlog::critical("registry_token_file: {}", t.err().message);
        return static_cast<int>(errc::config);
      }
      registry_token = *t;
    }
    registry = std::make_unique<registry_client>(io, *http, cfg.registry_url(), registry_token,
                                                 cfg.http_timeout);
    if (registry->enabled()) {
      swarm_settings ss{cfg.peer.listen, cfg.peer.lan_discovery, cfg.peer.peers,
                        cfg.tracker,     cfg.lan_uncapped,       cfg.state_dir};
      swarm::events ev;
      ev.finished = [this](const blob_id& b) { fetcher->on_swarm_finished(b); };
      ev.piece_failed = [this](const blob_id& b, int piece) { fetcher->on_piece_failed(b, piece); };
      peers = std::make_unique<swarm>(io, std::move(ss), std::move(ev));
      if (auto s = peers->start(); !s) {
        spdlog::critical("{}", s.err().message);
        return static_cast<int>(s.err().code);
      }
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    broker_settings bs;
    bs.fetch = fs;
    bs.policy = cfg.origin_policy;
    bs.holder = fmt::format("{}/{}", host, cfg.peer.listen);
    fetcher =
        std::make_unique<blob_broker>(io, *http, *hasher, st, *origins, *registry, peers.get(), bs,
                                      [this](const blob_id& b, const status& s,
                                             const blob_outcome& o) { on_blob_done(b, s, o); });
    control = std::make_unique<control_server>(
        io, cfg.socket,
        [this](control_session& s, const rpc::request& r) { return dispatch(s, r); });
    if (auto s = load(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    bandwidth::sinks sinks;
    sinks.download = [this](std::uint64_t bps) {
      http->set_download_limit(bps);
      fetcher->set_download_cap(bps);
      if (peers) peers->set_download_limit(bps);
    };
    if (peers) sinks.upload = [this](std::uint64_t bps) { peers->set_upload_limit(bps); };
    bw.attach(std::move(sinks));
    seed_complete();
    if (auto s = control->listen(); !s) {
      spdlog::critical("{}", s.err().message);
      return static_cast<int>(s.err().code);
    }
    wait_signal();
    spdlog::info("voxd-daemon ready: socket {}, store {}, {} origin(s), download cap {}, {}",
                 cfg.socket, cfg.hub_cache, origins->size(), to_string(bw.download_cap()),
                 peers ? fmt::format("peers on {} (tracker {}, registry {}), upload cap {}",
                                     cfg.peer.listen, cfg.tracker.empty() ? "none" : cfg.tracker,
                                     registry->base_url(), to_string(bw.upload_cap()))
                       : std::string("no registry: origins only"));
    sd_notify(0, "READY=1\nSTATUS=ready");
    schedule();
    on_tick();
    io.run();
    spdlog::info("stopped");
    return exit_code;
  }
};

daemon::daemon(config cfg, std::string config_path)
    : impl_(std::make_unique<impl>(std::move(cfg), std::move(config_path))) {}
daemon::~daemon() = default;
int daemon::run() {
  return impl_->run();
}

}  // namespace voxd
