#pragma once
// Fetches blobs from the origins: the range engine (range_plan) keeps connections_per_origin range
// requests per origin busy, shared by every blob wanted, to the last byte; bodies are written in
// place into a partial file under state_dir, hashed in order while the rest still downloads,
// journalled for resume in 256 KiB blocks, and moved into the store only when the whole content
// matches the hub's id. Origins are tried in configured order; a failing or corrupt origin is
// backed off and, per blob, given up after max_attempts; one that pushes back gets fewer
// connections for a while.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/hash.hpp"
#include "voxd/daemon/hash_worker.hpp"
#include "voxd/daemon/http_engine.hpp"
#include "voxd/daemon/origins.hpp"
#include "voxd/daemon/range_plan.hpp"
#include "voxd/daemon/store.hpp"

namespace voxd {

struct blob_request {
  blob_id blob;
  std::uint64_t size = 0;
  repo_id repo;  // where origins serve it and where it is committed first
  commit_id commit;
  std::string path;
  int piece_size = 0;  // > 0: also compute the v1 piece hashes of the blob's torrent
  // Feed mode (hybrid fetch): chunks of feed_chunk bytes are fetched into memory only when the
  // owner releases them, and handed to on_chunk; the owner verifies and stores the blob.
  std::uint64_t feed_chunk = 0;
  // Claim mode (a cooperative first fetch): only the byte ranges set_claim gives are fetched;
  // every piece of piece_size is hashed (SHA-1) once it is on disk and handed to on_piece. The
  // blob is never finalized here: the owner takes the partial file on to the swarm (detach).
  bool claim = false;
};

struct fetch_outcome {
  std::uint64_t from_origin = 0;    // bytes received from origins (including any discarded)
  std::vector<sha1_digest> pieces;  // when piece_size was set and the blob is stored
};

struct fetch_settings {
  int connections_per_origin = 8;
  std::uint64_t chunk_size = 16ull << 20;  // largest range one request asks for
  std::uint64_t min_split = 64ull << 10;   // smallest part of a range in flight taken over
  int max_attempts = 3;
  int http_timeout_s = 30;
};

struct blob_progress {
  std::uint64_t done = 0;         // verified-or-written bytes of this blob
  std::uint64_t from_origin = 0;  // bytes received from origins (including any discarded)
};

class blob_fetcher {
 public:
  // Called on the io thread when a blob is in the store (ok) or cannot be had (error), with the
  // bytes its fetch took from origins.
  using done_fn = std::function<void(const blob_id&, const status&, fetch_outcome)>;
  // Feed mode: a released chunk arrived from origin `origin` (an index into the pool).
  using chunk_fn =
      std::function<void(const blob_id&, std::size_t chunk, std::size_t origin, std::string data)>;
  // Claim mode: piece `piece` is on disk and hashes to `sha1`.
  using piece_fn = std::function<void(const blob_id&, int piece, const sha1_digest& sha1)>;

  blob_fetcher(boost::asio::io_context& io, http_engine& http, hash_worker& hasher, store& st,
               origin_pool& origins, fetch_settings settings, done_fn done);
  ~blob_fetcher();

  // Registers a model's interest in a blob; active = the model is allowed to download now.
  void want(const blob_request& req, const std::string& model, bool active);
  void set_active(const std::string& model, bool active);
  // Drops a model's interest; a blob nobody wants is cancelled and its partial data removed.
  void unwant(const std::string& model);
  std::optional<blob_progress> progress(const blob_id& blob) const;
  // Feed mode: fetch this chunk now.
  void release(const blob_id& blob, std::size_t chunk);
  // Feed mode: the chunk failed verification; it counts against the origin that sent it and
  // goes back to held.
  void report_corrupt(const blob_id& blob, std::size_t chunk, std::size_t origin,
                      const std::string& why);
  // Feed mode: chunks released and not yet delivered.
  std::size_t in_flight(const blob_id& blob) const;
  void on_chunk(chunk_fn fn) { on_chunk_ = std::move(fn); }
  void on_piece(piece_fn fn) { on_piece_ = std::move(fn); }
  // Claim mode: fetch these byte ranges of the blob (and nothing else) from now on.
  void set_claim(const blob_id& blob,
                 const std::vector<std::pair<std::uint64_t, std::uint64_t>>& ranges);
  // Stops fetching the blob, keeping its partial file and journal for whoever goes on with it.
  void detach(const blob_id& blob);
  // Claim mode: runs [first, last) of pieces of the claim that no request has touched yet.
  std::vector<std::pair<int, int>> unstarted_pieces(const blob_id& blob) const;
  // Under a download cap a few connections carry the rate; more would only hold bytes in flight.
  void set_download_cap(std::uint64_t bytes_per_second);
  // Makes written bytes durable (data file, then journal). Also runs every 100 ms.
  void flush();
  void shutdown();

 private:
  struct task;
  struct chunk;
  struct flight;
  void pump();
  bool start_next(const std::shared_ptr<task>& t, std::size_t o);
  http_request request_for(task& t, std::size_t o, std::uint64_t from, std::uint64_t to);
  void start_range(const std::shared_ptr<task>& t, const range_plan::range& r, std::size_t o);
  void start_chunk(const std::shared_ptr<task>& t, std::size_t ci, std::size_t o);
  void on_range_done(const std::string& blob, std::uint64_t gen, std::uint64_t id, std::size_t o,
                     const std::string& url, http_response r);
  void on_chunk_done(const std::string& blob, std::uint64_t gen, std::size_t ci, std::size_t o,
                     const std::string& url, http_response r);
  std::shared_ptr<task> answered(const std::string& blob, std::uint64_t gen, std::size_t o);
  bool end_resolving(task& t, std::size_t o);
  bool handle_answer(task& t, std::size_t o, const std::string& url, const http_response& r,
                     bool was_resolving);
  void on_success(task& t, std::size_t o, const std::string& url, bool was_resolving);
  void transient_failure(task& t, std::size_t o, const std::string& message, int retry_after = 0);
  void hard_failure(task& t, std::size_t o, const std::string& message, bool give_up);
  void check_exhausted(const std::shared_ptr<task>& t);
  void maybe_hash(const std::shared_ptr<task>& t);
  void hash_pieces(const std::shared_ptr<task>& t);
  void finalize(const std::shared_ptr<task>& t);
  void finish(const std::shared_ptr<task>& t, const status& s);
  void sync_journal(task& t);
  int pick_origin(const task& t, steady::time_point now) const;
  void track_origins(task& t) const;
  bool is_active(const task& t) const;
  void arm_timer();

  boost::asio::io_context& io_;
  http_engine& http_;
  hash_worker& hasher_;
  store& store_;
  origin_pool& origins_;
  fetch_settings settings_;
  done_fn done_;
  chunk_fn on_chunk_;
  piece_fn on_piece_;
  std::map<std::string, std::shared_ptr<task>> tasks_;
  std::vector<std::string> order_;  // blob ids in the order they were wanted
  boost::asio::steady_timer flush_timer_;
  boost::asio::steady_timer backoff_timer_;
  int connections_ = 0;  // per origin, after the cap's adjustment
  bool stopping_ = false;
};

}  // namespace voxd
