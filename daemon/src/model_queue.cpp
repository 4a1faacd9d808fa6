#include "voxd/daemon/model_queue.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "voxd/common/files.hpp"
#include "voxd/common/units.hpp"

namespace voxd {

using json = nlohmann::json;

namespace {
std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

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
    case model_state::waiting:
      return "waiting";
  }
  return "error";
}

std::optional<model_state> model_state_from(std::string_view s) {
  for (auto st :
       {model_state::queued, model_state::resolving, model_state::downloading,
        model_state::complete, model_state::paused, model_state::error, model_state::waiting})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

model_queue::model_queue(store& st, model_backend& backend, std::string queue_file, int max_active)
    : st_(st), backend_(backend), file_(std::move(queue_file)), max_active_(max_active) {}

void model_queue::save() const {
  json arr = json::array();
  for (const auto& [key, m] : models_) {
    json files = json::array();
    for (const auto& f : m.files)
      files.push_back({{"path", f.path}, {"size", f.size}, {"blob", f.blob}});
    arr.push_back({{"repo", m.spec.repo.str()},
                   {"revision", m.spec.revision},
                   {"alias", m.spec.alias},
                   {"seq", m.seq},
                   {"added_at", m.added_at},
                   {"state", to_string(m.state)},
                   {"error", m.error},
                   {"commit", m.commit ? json(m.commit->str()) : json(nullptr)},
                   {"files", files},
                   {"bytes_from_origin", m.from_origin_base},
                   {"bytes_from_peers_lan", m.from_lan_base},
                   {"bytes_from_peers_wan", m.from_wan_base},
                   {"bytes_redundant", m.redundant_base}});
  }
  json doc{{"version", 1}, {"next_seq", next_seq_}, {"models_", arr}};
  if (auto s = write_file_atomic(file_, doc.dump(1)); !s)
    spdlog::error("saving the queue: {}", s.err().message);
}

// A damaged queue file is reported and set aside, never silently replaced.
status model_queue::load() {
  if (!std::filesystem::exists(file_)) return ok();
  const json doc = json::parse(read_file(file_).value_or(""), nullptr, false);
  const auto quarantine = [this](const std::string& why) {
    auto const aside = file_ + ".damaged";
    std::filesystem::rename(file_, aside);
    spdlog::error("{}: {}; moved it to {} and starting with an empty queue", file_, why, aside);
    return ok();
  };
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("models_") ||
      !doc["models_"].is_array())
    return quarantine("not a voxd queue file");
  next_seq_ = doc.value("next_seq", std::uint64_t{1});
  for (const auto& j : doc["models_"]) {
    try {
      auto repo = repo_id::parse(j.at("repo").get<std::string>());
      auto rev = validate_revision(j.at("revision").get<std::string>());
      auto state = model_state_from(j.at("state").get<std::string>());
      if (!repo || !rev || !state)
        return quarantine("an entry has an invalid repo, revision or state");
      model m(model_spec{*repo, *rev, j.value("alias", std::string())});
      m.seq = j.at("seq").get<std::uint64_t>();
      // A queue file from before added_at: count from now, so nothing is evicted at once.
      m.added_at = j.value("added_at", unix_now());
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
      models_.emplace(m.key(), std::move(m));
    } catch (const json::exception& e) {
      return quarantine(e.what());
    }
  }
  spdlog::info("loaded {} models_ from {}", models_.size(), file_);
  return ok();
}

result<model*> model_queue::find(const std::string& name, const catalog& names) {
  if (auto it = models_.find(name); it != models_.end()) return &it->second;
  std::vector<model*> hits;
  for (auto& [key, m] : models_)
    if (m.spec.alias == name || m.spec.repo.str() == name) hits.push_back(&m);
  if (hits.size() == 1) return hits.front();
  if (hits.size() > 1)
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' matches several models_; name one as repo@revision", name));
  // An alias with @revision, e.g. voxcpm-1.5@v2.
  if (auto spec = names.resolve(name, ""); spec)
    if (auto it = models_.find(spec->key()); it != models_.end()) return &it->second;
  return make_error(errc::not_found,
                    fmt::format("no model '{}' in the daemon (see `voxd ls`)", name));
}

model_progress model_queue::progress_of(const model& m) const {
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
    // Only seeds' counters belong here (a download's are in its blob status).
    if (blob && seen.insert(f.blob).second)
      if (auto s = backend_.seed_stats(*blob)) {
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
    if (auto b = backend_.blob_status_of(*blob)) {
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

std::filesystem::path model_queue::snapshot_dir(const model& m) const {
  return st_.snapshot_dir(m.spec.repo, *m.commit);
}

json model_queue::model_json(const model& m) const {
  return model_json(m, progress_of(m));
}

json model_queue::model_json(const model& m, const model_progress& p) const {
  const auto total = p.total, done = p.done;
  const bool waiting = m.state == model_state::downloading && p.waiting;
  json j{
      {"model", m.key()},
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
      {"path", m.commit ? json(st_.snapshot_dir(m.spec.repo, *m.commit).string()) : json(nullptr)}};
  if (m.active() && m.rate > 1 && total >= done)
    j["eta_seconds"] = static_cast<double>(total - done) / m.rate;
  if (m.state == model_state::waiting) {
    j["reason"] = m.error;
    j["retry_in_seconds"] =
        std::max(0.0, std::chrono::duration<double>(m.retry_at - now_()).count());
  } else if (!m.error.empty()) {
    j["error"] = m.error;
  }
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

json model_queue::models_json() const {
  std::vector<const model*> sorted;
  for (const auto& [k, m] : models_)
    sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->seq < b->seq; });
  json list = json::array();
  for (const auto* m : sorted)
    list.push_back(model_json(*m));
  return list;
}

void model_queue::set_state(model& m, model_state s, std::string error) {
  m.state = s;
  m.error = std::move(error);
  save();
  backend_.broadcast("model.state", model_json(m), m.key());
}

void model_queue::schedule() {
  if (stopping_) return;
  int active = 0;
  for (const auto& [k, m] : models_)
    active += m.active() ? 1 : 0;
  std::vector<model*> queued;
  for (auto& [k, m] : models_)
    if (m.state == model_state::queued) queued.push_back(&m);
  std::sort(queued.begin(), queued.end(), [](model* a, model* b) { return a->seq < b->seq; });
  for (auto* m : queued) {
    if (active >= max_active_) break;
    ++active;
    start(*m);
  }
}

void model_queue::start(model& m) {
  if (m.commit && !m.files.empty()) return begin_download(m);
  set_state(m, model_state::resolving);
  backend_.resolve(m.spec.repo, m.spec.revision, [this, key = m.key()](result<manifest> r) {
    auto it = models_.find(key);
    if (it == models_.end() || stopping_) return;
    auto& mm = it->second;
    if (!r) {
      if (mm.state == model_state::resolving) fail(mm, r.err());
      schedule();
      return;
    }
    mm.trouble_since = {};
    mm.backoff = {};
    mm.commit = r->commit;
    mm.files = std::move(r->files);
    if (mm.state == model_state::resolving)
      begin_download(mm);
    else
      save();
  });
}

void model_queue::begin_download(model& m) {
  m.pending.clear();
  m.state = model_state::downloading;
  m.error.clear();
  std::vector<blob_request> wanted;
  for (const auto& f : m.files) {
    auto blob = blob_id::parse(f.blob);
    if (!blob) continue;  // validated when the manifest was read
    if (m.pending.count(f.blob) || st_.has_blob(m.spec.repo, *blob, f.size)) continue;
    if (auto elsewhere = st_.find_blob(*blob, f.size)) {
      // Another model or revision already has the verified bytes: share them, fetch nothing.
      if (auto s = st_.adopt_blob(m.spec.repo, *blob, *elsewhere); s) {
        spdlog::info("{}: {} is already in the store; linked from {}", m.key(), f.path,
                     elsewhere->string());
        continue;
      }
    }
    m.pending.insert(f.blob);
    wanted.push_back(blob_request{*blob, f.size, m.spec.repo, *m.commit, f.path});
  }
  // Nothing starts that the disk cannot hold: a model waits for room rather than fail half-way.
  std::uint64_t need = 0;
  for (const auto& w : wanted)
    need += w.size - std::min(w.size, st_.partial_bytes(w.blob));
  if (auto room = st_.room_for(need, max_size_, min_free_); !room) return fail(m, room.err());
  save();
  backend_.broadcast("model.state", model_json(m), m.key());
  for (const auto& w : wanted)
    backend_.want(w, m.key());
  if (m.pending.empty()) complete(m);
}

void model_queue::complete(model& m) {
  // An empty repository still gets its (empty) snapshot, so the ref never dangles.
  std::error_code ec;
  std::filesystem::create_directories(st_.snapshot_dir(m.spec.repo, *m.commit), ec);
  for (const auto& f : m.files) {
    auto blob = blob_id::parse(f.blob);
    if (auto s = st_.link_snapshot(m.spec.repo, *m.commit, f.path, *blob); !s) {
      set_state(m, model_state::error, s.err().message);
      return schedule();
    }
  }
  // huggingface_hub writes no ref when the revision is the commit itself.
  if (m.spec.revision != m.commit->str())
    if (auto s = st_.write_ref(m.spec.repo, m.spec.revision, *m.commit); !s) {
      set_state(m, model_state::error, s.err().message);
      return schedule();
    }
  spdlog::info("{} complete: {} files in {}", m.key(), m.files.size(),
               st_.snapshot_dir(m.spec.repo, *m.commit).string());
  set_state(m, model_state::complete);
  schedule();
}

void model_queue::on_blob_done(const blob_id& blob, const status& s, const blob_outcome& out) {
  if (stopping_) return;
  std::vector<model*> waiting;
  for (auto& [k, m] : models_)
    if (m.pending.count(blob.str())) waiting.push_back(&m);
  for (auto* m : waiting) {
    m->from_origin_base += out.from_origin;
    m->from_lan_base += out.from_peers_lan;
    m->from_wan_base += out.from_peers_wan;
    m->redundant_base += out.redundant;
    if (!s) {
      if (m->state == model_state::downloading) fail(*m, s.err());
      continue;
    }
    m->trouble_since = {};
    m->backoff = {};
    const auto it = std::find_if(m->files.begin(), m->files.end(),
                                 [&](const auto& f) { return f.blob == blob.str(); });
    if (!st_.has_blob(m->spec.repo, blob, it->size)) {
      auto src = st_.find_blob(blob, it->size);
      const auto r =
          src ? st_.adopt_blob(m->spec.repo, blob, *src)
              : status(make_error(errc::io, fmt::format("{} vanished from the store", blob.str())));
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

void model_queue::fail(model& m, const error& e) {
  backend_.set_active(m.key(), false);
  const auto now = now_();
  if (e.code == errc::no_space) {
    // Room appears when someone frees it: looked for often, and for as long as it takes.
    m.retry_at = now + first_retry;
    if (m.trouble_since == std::chrono::steady_clock::time_point{})
      spdlog::warn("{}: {}; waiting for room", m.key(), e.message);
    m.trouble_since = now;
    return set_state(m, model_state::waiting, e.message);
  }
  if (e.code != errc::unavailable) return set_state(m, model_state::error, e.message);
  if (m.trouble_since == std::chrono::steady_clock::time_point{}) m.trouble_since = now;
  if (now - m.trouble_since >= retry_for_)
    return set_state(m, model_state::error,
                     fmt::format("{} (gave up after retrying for {})", e.message,
                                 format_seconds(static_cast<std::uint64_t>(retry_for_.count()))));
  m.backoff = std::clamp(m.backoff * 2, first_retry, longest_retry);
  m.retry_at = now + m.backoff;
  spdlog::warn("{}: {}; trying again in {}", m.key(), e.message,
               format_seconds(static_cast<std::uint64_t>(m.backoff.count())));
  set_state(m, model_state::waiting, e.message);
}

std::vector<stale_model> model_queue::stale(std::int64_t before) const {
  // Which models hold each blob: a shared blob's atime says nothing about either model.
  std::map<std::string, int> holders;
  for (const auto& [k, m] : models_) {
    std::set<std::string> own;
    for (const auto& f : m.files)
      own.insert(f.blob);
    for (const auto& b : own)
      ++holders[b];
  }
  std::vector<stale_model> out;
  for (const auto& [k, m] : models_) {
    if (m.state != model_state::complete && m.state != model_state::paused &&
        m.state != model_state::error)
      continue;
    stale_model s{k, m.added_at, 0};
    std::set<std::string> seen;
    for (const auto& f : m.files) {
      auto blob = blob_id::parse(f.blob);
      if (!blob || !seen.insert(f.blob).second || holders[f.blob] > 1) continue;
      struct stat sb {};
      if (::stat(st_.blob_path(m.spec.repo, *blob).c_str(), &sb) != 0) continue;
      s.last_used = std::max<std::int64_t>(s.last_used, sb.st_atim.tv_sec);
      s.bytes += static_cast<std::uint64_t>(sb.st_size);
    }
    if (s.last_used < before) out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.last_used < b.last_used; });
  return out;
}

void model_queue::seed_complete() {
  for (const auto& [k, m] : models_) {
    if (m.state != model_state::complete) continue;
    for (const auto& f : m.files)
      if (auto b = blob_id::parse(f.blob)) backend_.seed(*b, m.spec.repo, f.size);
  }
}

model& model_queue::add(const model_spec& spec) {
  if (auto it = models_.find(spec.key()); it != models_.end()) {
    auto& m = it->second;
    m.added_at = unix_now();
    // Re-adding a complete model re-checks the store and repairs what is missing.
    if (m.state == model_state::error || m.state == model_state::complete ||
        m.state == model_state::waiting) {
      set_state(m, model_state::queued);
      schedule();
    }
    return m;
  }
  model fresh(spec);
  fresh.seq = next_seq_++;
  fresh.added_at = unix_now();
  auto& m = models_.emplace(fresh.key(), std::move(fresh)).first->second;
  set_state(m, model_state::queued);
  schedule();
  return m;
}

void model_queue::pause(model& m) {
  if (m.state != model_state::queued && m.state != model_state::waiting && !m.active()) return;
  backend_.set_active(m.key(), false);
  set_state(m, model_state::paused);
  schedule();
}

void model_queue::resume(model& m) {
  if (m.state != model_state::paused && m.state != model_state::error &&
      m.state != model_state::waiting)
    return;
  set_state(m, model_state::queued);
  schedule();
}

void model_queue::remove(model& m) {
  const auto key = m.key();
  const auto repo = m.spec.repo;
  const auto commit = m.commit;
  const auto removed_files = m.files;
  backend_.unwant(key);
  backend_.broadcast("model.removed", json{{"model", key}}, key);
  models_.erase(key);
  const bool shared = commit && std::any_of(models_.begin(), models_.end(), [&](const auto& kv) {
                        return kv.second.spec.repo == repo && kv.second.commit == commit;
                      });
  if (commit && !shared) {
    // Seeding stops with the model; a blob another model still holds is seeded from there.
    std::set<std::string> blobs;
    for (const auto& f : removed_files)
      blobs.insert(f.blob);
    for (const auto& b : blobs)
      if (auto id = blob_id::parse(b)) backend_.unseed(*id);
    if (auto s = st_.remove_snapshot(repo, *commit); !s)
      spdlog::warn("rm {}: {}", key, s.err().message);
    seed_complete();
  }
  save();
  schedule();
}

void model_queue::tick(double dt_s) {
  const auto now = now_();
  bool retry = false;
  for (auto& [k, m] : models_)
    if (m.state == model_state::waiting && now >= m.retry_at) {
      spdlog::info("{}: trying the origins again", m.key());
      set_state(m, model_state::queued, {});
      retry = true;
    }
  if (retry) schedule();
  for (auto& [k, m] : models_) {
    // A waiting model's clients see the countdown to its next try.
    if (m.state == model_state::waiting) backend_.broadcast("model.progress", model_json(m), k);
    if (!m.active()) continue;
    const auto p = progress_of(m);
    if (dt_s > 0) {
      const double inst =
          p.done >= m.last_done ? static_cast<double>(p.done - m.last_done) / dt_s : 0;
      m.rate = m.rate == 0 ? inst : 0.7 * m.rate + 0.3 * inst;
    }
    m.last_done = p.done;
    backend_.broadcast("model.progress", model_json(m, p), m.key());
  }
}

std::pair<std::uint64_t, bool> model_queue::active_done() const {
  std::uint64_t done = 0;
  bool active = false;
  for (const auto& [k, m] : models_)
    if (m.active()) {
      active = true;
      done += m.last_done;
    }
  return {done, active};
}

double model_queue::download_rate() const {
  double rate = 0;
  for (const auto& [k, m] : models_)
    if (m.active()) rate += m.rate;
  return rate;
}
}  // namespace voxd
