#pragma once
// The daemon's model queue: every model added, its state and the transitions between them
// (queued -> resolving -> downloading -> complete, or paused / error), scheduling under
// max_active, the queue's file (state_dir/models.json) and the progress views the control API
// shows. What lies outside (manifests, blob fetches, seeding, telling clients) is reached through
// model_backend, so that the transitions can be tested without a network.

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"
#include "voxd/daemon/blob_broker.hpp"
#include "voxd/daemon/catalog.hpp"
#include "voxd/daemon/manifest.hpp"
#include "voxd/daemon/store.hpp"
#include "voxd/daemon/swarm.hpp"

namespace voxd {

// waiting: no origin can be reached for now; the model tries again at retry_at.
enum class model_state { queued, resolving, downloading, complete, paused, error, waiting };
std::string_view to_string(model_state s);
std::optional<model_state> model_state_from(std::string_view s);

struct model {
  explicit model(model_spec s) : spec(std::move(s)) {}
  model_spec spec;
  std::uint64_t seq = 0;      // order of adding; the queue runs in this order
  std::int64_t added_at = 0;  // unix seconds of the last `add`
  model_state state = model_state::queued;
  std::string error;
  std::optional<commit_id> commit;
  std::vector<hub::manifest_entry> files;
  std::uint64_t from_origin_base = 0;  // origin bytes of blobs already finished
  std::uint64_t from_lan_base = 0;     // peer bytes of blobs already finished
  std::uint64_t from_wan_base = 0;
  std::uint64_t redundant_base = 0;
  std::set<std::string> pending;  // blob ids not yet in this model's blobs/
  // Origins out of reach since trouble_since (cleared by any progress); waiting until retry_at.
  std::chrono::steady_clock::time_point trouble_since{}, retry_at{};
  std::chrono::seconds backoff{0};
  // Rate estimate, for progress and ETA.
  std::uint64_t last_done = 0;
  double rate = 0;

  std::string key() const { return spec.key(); }
  bool active() const {
    return state == model_state::resolving || state == model_state::downloading;
  }
};

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

// A model `voxd gc` would remove: not used since last_used (unix seconds); its removal frees
// `bytes` (the blobs no other model holds).
struct stale_model {
  std::string key;
  std::int64_t last_used = 0;
  std::uint64_t bytes = 0;
};

class model_backend {
 public:
  virtual ~model_backend() = default;
  virtual void resolve(const repo_id& repo, const std::string& revision,
                       manifest_resolver::callback done) = 0;
  virtual void want(const blob_request& req, const std::string& model) = 0;
  virtual void unwant(const std::string& model) = 0;
  virtual void set_active(const std::string& model, bool active) = 0;
  virtual std::optional<blob_status> blob_status_of(const blob_id& blob) const = 0;
  // Counters of a blob this daemon seeds; nullopt when it does not seed it.
  virtual std::optional<swarm_stats> seed_stats(const blob_id& blob) const = 0;
  // A blob of a complete model: seeded when the daemon has peers and the store holds it.
  virtual void seed(const blob_id& blob, const repo_id& repo, std::uint64_t size) = 0;
  virtual void unseed(const blob_id& blob) = 0;
  // Control clients subscribed to `model` (or to all) hear of it.
  virtual void broadcast(std::string_view event, const nlohmann::json& body,
                         const std::string& model) = 0;
};

class model_queue {
 public:
  using clock_fn = std::function<std::chrono::steady_clock::time_point()>;
  // The pauses between tries while origins are out of reach double from the first to the last.
  static constexpr std::chrono::seconds first_retry{5}, longest_retry{300};

  model_queue(store& st, model_backend& backend, std::string queue_file, int max_active);

  // Reads the queue file; a damaged one is moved aside (".damaged") and the queue starts empty.
  // Work that was under way is queued again.
  status load();
  void save() const;
  void set_max_active(int n) { max_active_ = n; }
  // How long a model waits for unreachable origins before it fails (config retry_for).
  void set_retry_for(std::chrono::seconds d) { retry_for_ = d; }
  void set_clock(clock_fn now) { now_ = std::move(now); }
  // A model starts its files only when the store has room for them (config store.*).
  void set_space(space_spec max_size, space_spec min_free) {
    max_size_ = max_size;
    min_free_ = min_free;
  }
  // From now on nothing starts and no callback changes a model (the daemon is stopping).
  void stop() { stopping_ = true; }

  // A model by its key, alias or repo; `names` resolves "alias@revision".
  result<model*> find(const std::string& name, const catalog& names);
  const std::map<std::string, model>& models() const { return models_; }

  // Adds the model, or re-queues it when it is in error or complete (a complete one is checked
  // against the store again and repaired).
  model& add(const model_spec& spec);
  void pause(model& m);
  void resume(model& m);
  // Forgets the model; its snapshot and the blobs no other model holds leave the store.
  void remove(model& m);
  // Models at rest (complete, paused, failed) not used since `before` (unix seconds), least
  // recently used first. Used: added, or a blob no other model holds read (its atime).
  std::vector<stale_model> stale(std::int64_t before) const;
  // Starts queued models, oldest first, while fewer than max_active are active.
  void schedule();
  // The broker finished a blob (or failed to).
  void on_blob_done(const blob_id& blob, const status& s, const blob_outcome& out);
  // Every blob of a complete model whose torrent is known is seeded from the store.
  void seed_complete();
  // Every tick: rates and progress events of the active models; waiting models whose pause is
  // over are queued again.
  void tick(double dt_s);

  model_progress progress_of(const model& m) const;
  nlohmann::json model_json(const model& m) const;
  // Where a resolved model's files are (snapshots/<commit>); `m` must have its commit.
  std::filesystem::path snapshot_dir(const model& m) const;
  nlohmann::json models_json() const;  // every model, in the order they were added
  // Bytes the active models have downloaded so far, and whether any is active.
  std::pair<std::uint64_t, bool> active_done() const;
  double download_rate() const;

 private:
  nlohmann::json model_json(const model& m, const model_progress& p) const;
  void set_state(model& m, model_state s, std::string error = {});
  void start(model& m);
  void begin_download(model& m);
  void complete(model& m);
  // A failure of the model's manifest or of one of its blobs: origins out of reach make it wait
  // (until retry_for has passed), anything else makes it fail.
  void fail(model& m, const error& e);

  store& st_;
  model_backend& backend_;
  std::string file_;
  int max_active_;
  std::chrono::seconds retry_for_{24 * 3600};
  space_spec max_size_, min_free_;
  clock_fn now_ = [] { return std::chrono::steady_clock::now(); };
  std::map<std::string, model> models_;  // by key
  std::uint64_t next_seq_ = 1;
  bool stopping_ = false;
};

}  // namespace voxd
