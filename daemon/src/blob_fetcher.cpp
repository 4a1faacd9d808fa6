#include "voxd/daemon/blob_fetcher.hpp"

// Longer than the other parts (about 900 lines): its three request modes (a file's ranges, feed
// chunks, a claim's ranges) share one task record, origin failover, back-off and accounting;
// the range bookkeeping itself is range_plan.

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <limits>
#include <tuple>

#include <curl/curl.h>

#include "voxd/common/units.hpp"
#include "voxd/daemon/hub_api.hpp"

namespace voxd {

namespace asio = boost::asio;

// Feed mode: one piece, fetched into memory when the owner releases it.
struct blob_fetcher::chunk {
  // held: not to be fetched unless the owner releases it.
  enum class state { held, missing, in_flight, done } st = state::held;
  http_engine::request_id request = 0;
  std::shared_ptr<std::atomic<std::uint64_t>> received =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

// File mode: one request of the range engine.
struct blob_fetcher::flight {
  http_engine::request_id request = 0;
  std::uint64_t begin = 0;
  std::uint64_t asked_end = 0;  // exclusive; the cursor's end may have moved below it
  std::shared_ptr<range_cursor> cursor;
  steady::time_point started;
};

struct blob_fetcher::task {
  struct origin_try {
    int failures = 0;
    int transient = 0;     // of those, timeouts, 5xx, 429: forgiven once the origin serves again
    bool lasting = false;  // a failure waiting cannot cure (corrupt bytes, 404, 401/403, ...)
    std::string resolved_url;  // where the content is after the origin's redirects
    bool resolving = false;    // the first request is out; others wait for its redirect
    bool fresh = false;        // resolved_url was just obtained (a 403 then is not an expiry)
    int hops = 0;
    std::string last_error;
  };

  explicit task(blob_request r) : req(std::move(r)) {}

  blob_request req;
  std::map<std::string, bool> wanters;  // model -> active
  int fd = -1;
  chunk_journal journal;
  std::optional<range_plan> plan;           // file mode
  std::map<std::uint64_t, flight> flights;  // file mode: range id -> its request
  std::vector<std::uint64_t> recorded;      // file mode: valid bytes per block the journal knows
  std::uint64_t chunk_size = 0;             // feed mode
  std::vector<chunk> chunks;                // feed mode
  std::unique_ptr<content_hasher> hasher;
  std::unique_ptr<piece_hasher> pieces;
  std::vector<bool> piece_hashed;  // claim mode
  std::uint64_t hashed = 0;
  bool hashing = false;
  std::uint64_t gen = 0;  // bumped when the data is discarded; stale completions are ignored
  std::vector<origin_try> tries;
  std::set<std::size_t> contributors;
  std::shared_ptr<std::atomic<std::uint64_t>> from_origin =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  bool over = false;

  ~task() {
    if (fd >= 0) ::close(fd);
  }
  bool feed() const { return req.feed_chunk > 0; }
  std::uint64_t chunk_begin(std::size_t i) const { return i * chunk_size; }
  std::uint64_t chunk_end(std::size_t i) const { return std::min(req.size, (i + 1) * chunk_size); }
  bool has_unstarted() const {
    if (!feed()) return plan->has_unstarted();
    return std::any_of(chunks.begin(), chunks.end(),
                       [](const chunk& c) { return c.st == chunk::state::missing; });
  }
  std::size_t requests_out() const {
    if (!feed()) return flights.size();
    return static_cast<std::size_t>(std::count_if(chunks.begin(), chunks.end(), [](const chunk& c) {
      return c.st == chunk::state::in_flight;
    }));
  }
  void cancel_all(http_engine& http) const {
    for (const auto& [id, f] : flights)
      http.cancel(f.request);
    for (const auto& c : chunks)
      if (c.st == chunk::state::in_flight) http.cancel(c.request);
  }
};

blob_fetcher::blob_fetcher(asio::io_context& io, http_engine& http, hash_worker& hasher, store& st,
                           origin_pool& origins, fetch_settings settings, done_fn done)
    : io_(io),
      http_(http),
      hasher_(hasher),
      store_(st),
      origins_(origins),
      settings_(settings),
      done_(std::move(done)),
      flush_timer_(io),
      backoff_timer_(io),
      connections_(settings.connections_per_origin) {
  arm_timer();
}

void blob_fetcher::set_download_cap(std::uint64_t bps) {
  constexpr std::uint64_t per_connection = 4'000'000;  // what one connection carries without effort
  connections_ = bps == 0 ? settings_.connections_per_origin
                          : static_cast<int>(std::clamp<std::uint64_t>(
                                (bps + per_connection - 1) / per_connection, 1,
                                static_cast<std::uint64_t>(settings_.connections_per_origin)));
  pump();
}

blob_fetcher::~blob_fetcher() = default;

void blob_fetcher::arm_timer() {
  flush_timer_.expires_after(std::chrono::milliseconds(100));
  flush_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    flush();
    // Hashing follows the bytes as they land, not only as requests end.
    std::vector<std::shared_ptr<task>> files;
    for (const auto& [id, t] : tasks_)
      if (!t->feed()) files.push_back(t);
    for (const auto& t : files)
      maybe_hash(t);
    pump();  // picks up origins whose back-off ended
    arm_timer();
  });
}

namespace {
// A file this small is fetched before the large ones (see pump).
constexpr std::uint64_t small_file = 1 << 20;
}  // namespace

bool blob_fetcher::is_active(const task& t) const {
  return std::any_of(t.wanters.begin(), t.wanters.end(), [](const auto& w) { return w.second; });
}

void blob_fetcher::want(const blob_request& req, const std::string& model, bool active) {
  if (auto it = tasks_.find(req.blob.str()); it != tasks_.end()) {
    it->second->wanters[model] = active;
    pump();
    return;
  }
  auto t = std::make_shared<task>(req);
  t->wanters[model] = active;
  t->tries.resize(origins_.size());
  if (t->feed()) {
    // Feed mode keeps no file of its own: released chunks go to memory and on to the owner.
    t->chunk_size = req.feed_chunk;
    t->chunks.resize(static_cast<std::size_t>((req.size + t->chunk_size - 1) / t->chunk_size));
    tasks_.emplace(req.blob.str(), t);
    order_.push_back(req.blob.str());
    return;
  }
  t->hasher = std::make_unique<content_hasher>(req.blob.kind(), req.size);
  if (req.piece_size > 0) t->pieces = std::make_unique<piece_hasher>(req.size, req.piece_size);
  const auto part = store_.partial_path(req.blob);
  t->fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (t->fd < 0 || ::ftruncate(t->fd, static_cast<off_t>(req.size)) != 0) {
    const auto s = make_error(errc::io, fmt::format("cannot create partial file {}: {}",
                                                    part.string(), errno_text(errno)));
    asio::post(io_, [this, b = req.blob, s] { done_(b, s, {}); });
    return;
  }
  if (auto s = t->journal.open(store_.journal_path(req.blob), req.size, range_plan::block); !s) {
    asio::post(io_, [this, b = req.blob, s] { done_(b, s, {}); });
    return;
  }
  // A claim is fetched from its front with short ranges, so that a newcomer taking its back half
  // finds it untouched.
  t->plan.emplace(req.size,
                  req.claim
                      ? std::min<std::uint64_t>(settings_.chunk_size,
                                                4 * static_cast<std::uint64_t>(req.piece_size))
                      : settings_.chunk_size,
                  settings_.min_split);
  if (req.claim) {
    t->plan->want_only({});  // nothing until the first claim
    t->piece_hashed.assign(
        static_cast<std::size_t>((req.size + static_cast<std::uint64_t>(req.piece_size) - 1) /
                                 static_cast<std::uint64_t>(req.piece_size)),
        false);
  }
  t->recorded.assign(t->plan->blocks(), 0);
  std::uint64_t resumed = 0;
  for (std::size_t b = 0; b < t->plan->blocks(); ++b) {
    t->plan->set_valid(b, t->journal.valid()[b]);
    t->recorded[b] = t->plan->valid(b);
    resumed += t->recorded[b];
  }
  if (resumed > 0)
    spdlog::info("{} ({}): resuming with {} of {} already on disk", req.path,
                 req.blob.str().substr(0, 12), format_bytes(resumed), format_bytes(req.size));
  tasks_.emplace(req.blob.str(), t);
  order_.push_back(req.blob.str());
  maybe_hash(t);  // an empty blob, or a resumed prefix
  pump();
}

void blob_fetcher::set_active(const std::string& model, bool active) {
  for (const auto& [id, t] : tasks_) {
    auto it = t->wanters.find(model);
    if (it == t->wanters.end()) continue;
    it->second = active;
    if (!is_active(*t)) t->cancel_all(http_);
  }
  pump();
}

void blob_fetcher::unwant(const std::string& model) {
  std::vector<std::string> orphans;
  for (const auto& [id, t] : tasks_) {
    if (t->wanters.erase(model) == 0) continue;
    if (!is_active(*t)) t->cancel_all(http_);
    if (t->wanters.empty()) orphans.push_back(id);
  }
  for (const auto& id : orphans) {
    auto t = tasks_[id];
    t->over = true;
    tasks_.erase(id);
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    ::unlink(store_.partial_path(t->req.blob).c_str());
    ::unlink(store_.journal_path(t->req.blob).c_str());
  }
}

void blob_fetcher::set_claim(const blob_id& blob,
                             const std::vector<std::pair<std::uint64_t, std::uint64_t>>& ranges) {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end() || !it->second->plan) return;
  auto& t = *it->second;
  for (const auto id : t.plan->want_only(ranges))
    if (auto f = t.flights.find(id); f != t.flights.end()) http_.cancel(f->second.request);
  pump();
}

std::vector<std::pair<int, int>> blob_fetcher::unstarted_pieces(const blob_id& blob) const {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end() || !it->second->plan || !it->second->req.claim) return {};
  const auto& t = *it->second;
  const auto ps = static_cast<std::uint64_t>(t.req.piece_size);
  return piece_runs(static_cast<int>(t.piece_hashed.size()), [&](int p) {
    const auto from = static_cast<std::uint64_t>(p) * ps;
    return t.plan->untouched(from, std::min(t.req.size, from + ps));
  });
}

void blob_fetcher::detach(const blob_id& blob) {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end()) return;
  auto t = it->second;
  t->over = true;
  t->cancel_all(http_);
  sync_journal(*t);
  tasks_.erase(it);
  order_.erase(std::remove(order_.begin(), order_.end(), blob.str()), order_.end());
}

void blob_fetcher::release(const blob_id& blob, std::size_t ci) {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end() || ci >= it->second->chunks.size()) return;
  auto& c = it->second->chunks[ci];
  if (c.st == chunk::state::held) c.st = chunk::state::missing;
  pump();
}

void blob_fetcher::report_corrupt(const blob_id& blob, std::size_t ci, std::size_t o,
                                  const std::string& why) {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end() || ci >= it->second->chunks.size() || o >= origins_.size()) return;
  auto t = it->second;
  track_origins(*t);
  t->chunks[ci].st = chunk::state::held;
  auto& tr = t->tries[o];
  ++tr.failures;
  tr.lasting = true;
  tr.last_error = why;
  ++origins_[o].corrupt_total;
  spdlog::warn("{} ({}): {}", t->req.path, origins_[o].cfg.url, why);
  check_exhausted(t);
}

std::size_t blob_fetcher::in_flight(const blob_id& blob) const {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end()) return 0;
  return static_cast<std::size_t>(
      std::count_if(it->second->chunks.begin(), it->second->chunks.end(), [](const chunk& c) {
        return c.st == chunk::state::missing || c.st == chunk::state::in_flight;
      }));
}

std::optional<blob_progress> blob_fetcher::progress(const blob_id& blob) const {
  auto it = tasks_.find(blob.str());
  if (it == tasks_.end()) return std::nullopt;
  const auto& t = *it->second;
  blob_progress p;
  if (t.plan) {
    p.done = t.plan->done_bytes();
  } else {
    for (std::size_t i = 0; i < t.chunks.size(); ++i)
      if (t.chunks[i].st == chunk::state::done) p.done += t.chunk_end(i) - t.chunk_begin(i);
  }
  p.from_origin = t.from_origin->load();
  return p;
}

int blob_fetcher::pick_origin(const task& t, steady::time_point now) const {
  int best = -1;
  for (std::size_t o = 0; o < origins_.size(); ++o) {
    if (t.tries[o].failures >= settings_.max_attempts || !origins_.available(o, now)) continue;
    // Earlier origins win ties; after a failure the blob moves on to a cleaner origin.
    const auto b = static_cast<std::size_t>(best);
    if (best < 0 || t.tries[o].failures < t.tries[b].failures ||
        (t.tries[o].failures == t.tries[b].failures && origins_[o].rank < origins_[b].rank))
      best = static_cast<int>(o);
  }
  return best;
}

void blob_fetcher::track_origins(task& t) const {
  // A reload may have added origins since the task began.
  if (t.tries.size() < origins_.size()) t.tries.resize(origins_.size());
}

void blob_fetcher::pump() {
  if (stopping_) return;
  const auto now = steady::now();
  bool waiting_on_backoff = false;
  // In a group, the largest file's last ranges would share a bottleneck with every range a smaller
  // one starts, this daemon's or another member's, and the hand-over waits for its last byte: a
  // smaller file of a group starts only when the largest one's group is over. Not while the
  // origin pushes back (429, 503, resets): then its few connections, not the link, are the
  // bottleneck, and a file waiting would leave them idle (flaky-origin: 34.7 to 58.2 s with the
  // wait, 29.5 s before it).
  std::uint64_t group_largest = 0;
  for (const auto& id : order_) {
    const auto& t = tasks_[id];
    if (!t->over && is_active(*t) && t->req.claim && t->req.size > small_file)
      group_largest = std::max(group_largest, t->req.size);
  }
  for (std::size_t o = 0; o < origins_.size(); ++o) {
    const int limit = origins_.connection_limit(o, connections_, now);
    while (origins_[o].slots_used < limit) {
      // Small files first (they hold a connection a moment, and fetched last, each would add its
      // redirect and request round trips to the end), then the largest file until it is done: its
      // unstarted work, then half of its largest range in flight, before any smaller file starts.
      // The peers can take a file only once it is whole (a group's torrent exists when every piece
      // is in), so the largest one, whose hand-over takes longest, is best finished first while
      // the origins fetch the rest; and at a shared bottleneck a file whose last ranges run beside
      // other files' gets a sliver of it for them. Among equals: the fewest requests out, or the
      // most to split.
      std::shared_ptr<task> next;
      std::tuple<int, std::uint64_t, bool, std::uint64_t> best;
      for (const auto& id : order_) {
        const auto& t = tasks_[id];
        if (t->over || !is_active(*t)) continue;
        track_origins(*t);
        const auto pick = pick_origin(*t, now);
        if (pick < 0) {
          waiting_on_backoff = true;
          continue;
        }
        if (static_cast<std::size_t>(pick) != o || t->tries[o].resolving) continue;
        const bool small = t->req.size <= small_file;
        if (t->req.claim && !small && t->req.size < group_largest && limit == connections_)
          continue;
        const bool fresh = t->has_unstarted();
        const std::uint64_t to_split = !fresh && t->plan ? t->plan->splittable(now) : 0;
        if (!fresh && to_split == 0) continue;
        const std::tuple key{small ? (fresh ? 0 : 2) : 1, small ? 0 : ~t->req.size, !fresh,
                             fresh ? t->requests_out() : ~to_split};
        if (!next || key < best) {
          best = key;
          next = t;
        }
      }
      const auto& t = next;
      if (!t || !start_next(t, o)) break;
    }
  }
  if (waiting_on_backoff) {
    const auto when = origins_.earliest_backoff_end();
    if (when != steady::time_point::max()) {
      backoff_timer_.expires_at(std::max(when, now + std::chrono::milliseconds(50)));
      backoff_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) pump();
      });
    }
  }
}

bool blob_fetcher::start_next(const std::shared_ptr<task>& t, std::size_t o) {
  if (t->feed()) {
    const auto it = std::find_if(t->chunks.begin(), t->chunks.end(),
                                 [](const chunk& c) { return c.st == chunk::state::missing; });
    if (it == t->chunks.end()) return false;
    start_chunk(t, static_cast<std::size_t>(it - t->chunks.begin()), o);
    return true;
  }
  const auto now = steady::now();
  auto r = t->plan->take(now, origins_.connection_limit(o, connections_, now));
  if (!r) return false;
  start_range(t, *r, o);
  return true;
}

// The URL for origin o (its resolved CDN URL, or the resolve URL, which then gates the others
// until its redirect is known) and the counters every request of the task feeds.
http_request blob_fetcher::request_for(task& t, std::size_t o, std::uint64_t from,
                                       std::uint64_t to) {
  auto& tr = t.tries[o];
  std::string url = tr.resolved_url;
  if (url.empty()) {
    url = hub::resolve_url(origins_[o].cfg.url, t.req.repo, t.req.commit, t.req.path);
    tr.resolving = true;
    tr.hops = 0;
  }
  http_request req;
  req.url = url;
  req.headers = origins_.auth_headers(o, url);
  req.range = std::make_pair(from, to - 1);
  req.stall_timeout_s = settings_.http_timeout_s;
  ++origins_[o].slots_used;
  return req;
}

void blob_fetcher::start_range(const std::shared_ptr<task>& t, const range_plan::range& r,
                               std::size_t o) {
  auto req = request_for(*t, o, r.begin, r.end);
  req.file_fd = t->fd;
  req.cursor = r.cursor;
  req.max_body = 1 << 20;  // error and redirect bodies only
  const auto url = req.url;
  auto from_origin = t->from_origin;
  auto origin_bytes = origins_[o].bytes;
  auto& f = t->flights[r.id];
  f.begin = r.begin;
  f.asked_end = r.end;
  f.cursor = r.cursor;
  f.started = steady::now();
  f.request = http_.submit(
      std::move(req),
      [this, blob = t->req.blob.str(), gen = t->gen, id = r.id, o, url](http_response resp) {
        asio::post(io_, [this, blob, gen, id, o, url, resp = std::move(resp)]() mutable {
          on_range_done(blob, gen, id, o, url, std::move(resp));
        });
      },
      [from_origin, origin_bytes](std::uint64_t n) {
        from_origin->fetch_add(n, std::memory_order_relaxed);
        origin_bytes->fetch_add(n, std::memory_order_relaxed);
      });
}

void blob_fetcher::start_chunk(const std::shared_ptr<task>& t, std::size_t ci, std::size_t o) {
  auto& c = t->chunks[ci];
  auto req = request_for(*t, o, t->chunk_begin(ci), t->chunk_end(ci));
  req.max_body = static_cast<std::size_t>(t->chunk_size) + (1 << 20);
  const auto url = req.url;
  c.st = chunk::state::in_flight;
  c.received->store(0);
  auto received = c.received;
  auto from_origin = t->from_origin;
  auto origin_bytes = origins_[o].bytes;
  c.request = http_.submit(
      std::move(req),
      [this, blob = t->req.blob.str(), gen = t->gen, ci, o, url](http_response r) {
        asio::post(io_, [this, blob, gen, ci, o, url, r = std::move(r)]() mutable {
          on_chunk_done(blob, gen, ci, o, url, std::move(r));
        });
      },
      [received, from_origin, origin_bytes](std::uint64_t n) {
        received->fetch_add(n, std::memory_order_relaxed);
        from_origin->fetch_add(n, std::memory_order_relaxed);
        origin_bytes->fetch_add(n, std::memory_order_relaxed);
      });
}

namespace {

int retry_after_seconds(const http_response& r) {
  const auto v = r.header("retry-after");
  int s = 0;
  std::from_chars(v.data(), v.data() + v.size(), s);
  return s;
}

// "bytes a-b/total"
bool parse_content_range(const std::string& v, std::uint64_t& a, std::uint64_t& b,
                         std::uint64_t& total) {
  if (v.rfind("bytes ", 0) != 0) return false;
  const auto* p = v.data() + 6;
  const auto* end = v.data() + v.size();
  auto r1 = std::from_chars(p, end, a);
  if (r1.ec != std::errc{} || r1.ptr == end || *r1.ptr != '-') return false;
  auto r2 = std::from_chars(r1.ptr + 1, end, b);
  if (r2.ec != std::errc{} || r2.ptr == end || *r2.ptr != '/') return false;
  auto r3 = std::from_chars(r2.ptr + 1, end, total);
  return r3.ec == std::errc{} && r3.ptr == end;
}

// Why a 200/206 answer is not the range [a, b] of a file of `size` bytes; empty when it is.
std::string range_problem(const http_response& r, std::uint64_t a, std::uint64_t b,
                          std::uint64_t size) {
  if (r.status == 200)
    return a == 0 && b + 1 == size ? std::string()
                                   : std::string("the origin ignores Range requests");
  std::uint64_t ra = 0, rb = 0, total = 0;
  if (!parse_content_range(r.header("content-range"), ra, rb, total))
    return fmt::format("unreadable Content-Range '{}'", r.header("content-range"));
  if (ra != a || rb != b) return fmt::format("asked for bytes {}-{}, got {}-{}", a, b, ra, rb);
  if (total != size)
    return fmt::format("the file has {} bytes there, the file list says {}", total, size);
  return {};
}

}  // namespace

// What an answer says about origin o, for everything but a 200/206 body: redirects are
// followed, failures counted. True when it is a 200/206 whose body the caller checks.
bool blob_fetcher::handle_answer(task& t, std::size_t o, const std::string& url,
                                 const http_response& r, bool was_resolving) {
  auto& tr = t.tries[o];
  if (!r.transport_ok() && r.lasting_failure()) {
    hard_failure(t, o, fmt::format("{}: {}", url, r.curl_error), true);
  } else if (!r.transport_ok()) {
    // A connection the origin reset (or closed without an answer) is pushback, like a 503.
    if (r.curl_code == CURLE_RECV_ERROR || r.curl_code == CURLE_SEND_ERROR ||
        r.curl_code == CURLE_GOT_NOTHING)
      origins_.reduce_connections(o, r.curl_error, steady::now());
    transient_failure(t, o, fmt::format("{}: {}", url, r.curl_error));
  } else if (r.status >= 300 && r.status < 400) {
    const auto location = r.header("location");
    const auto linked_etag = hub::normalize_etag(r.header("x-linked-etag"));
    const auto linked_size = r.header("x-linked-size");
    if (location.empty()) {
      hard_failure(t, o, fmt::format("HTTP {} without a Location from {}", r.status, url), false);
    } else if (!linked_etag.empty() && linked_etag != t.req.blob.str()) {
      hard_failure(t, o,
                   fmt::format("origin says '{}' is {}, the file list says {}", t.req.path,
                               linked_etag, t.req.blob.str()),
                   true);
    } else if (!linked_size.empty() && linked_size != std::to_string(t.req.size)) {
      hard_failure(t, o,
                   fmt::format("origin says '{}' has {} bytes, the file list says {}", t.req.path,
                               linked_size, t.req.size),
                   true);
    } else if (++tr.hops > 5) {
      hard_failure(t, o, fmt::format("more than 5 redirects for {}", t.req.path), true);
    } else {
      tr.resolved_url = hub::resolve_location(url, location);
      tr.fresh = true;
      spdlog::debug("{}: {} redirects to {}", t.req.path, origins_[o].cfg.url,
                    hub::url_authority(tr.resolved_url));
    }
  } else if (r.status == 200 || r.status == 206) {
    return true;
  } else if (r.status == 403 && !was_resolving && !tr.fresh) {
    // A signed CDN URL has expired: ask the origin for a fresh one.
    spdlog::info("{}: {} answered 403; resolving the file again", t.req.path,
                 hub::url_authority(url));
    tr.resolved_url.clear();
  } else if (r.status == 429 || r.status >= 500) {
    if (r.status == 429 || r.status == 503)
      origins_.reduce_connections(o, fmt::format("HTTP {}", r.status), steady::now());
    transient_failure(t, o, fmt::format("HTTP {} from {}", r.status, url), retry_after_seconds(r));
  } else if (r.status == 404 || r.status == 410) {
    hard_failure(
        t, o,
        fmt::format("HTTP {} from {}: the origin does not have '{}'", r.status, url, t.req.path),
        true);
  } else if (r.status == 401 || r.status == 403) {
    hard_failure(t, o,
                 fmt::format("HTTP {} from {}: refused (check the origin's token_file or HF_TOKEN)",
                             r.status, url),
                 true);
  } else {
    hard_failure(t, o, fmt::format("unexpected HTTP {} from {}", r.status, url), false);
  }
  return false;
}

void blob_fetcher::on_success(task& t, std::size_t o, const std::string& url, bool was_resolving) {
  auto& tr = t.tries[o];
  if (was_resolving) tr.resolved_url = url;
  tr.fresh = false;
  // An origin that serves between its 503s is flaky, not gone: its passing failures are forgiven
  // (with many small ranges a 30% failure rate would otherwise use up every attempt in seconds).
  tr.failures -= tr.transient;
  tr.transient = 0;
  origins_.record_success(o);
  t.contributors.insert(o);
}

// A request to origin o ended: its slot is free again. The task it was for, unless that is gone
// or its data was discarded since.
std::shared_ptr<blob_fetcher::task> blob_fetcher::answered(const std::string& blob,
                                                           std::uint64_t gen, std::size_t o) {
  --origins_[o].slots_used;
  auto it = tasks_.find(blob);
  if (it == tasks_.end() || it->second->gen != gen || it->second->over) return nullptr;
  return it->second;
}

// The origin's first request (which the others wait for) has its answer; was it this one?
bool blob_fetcher::end_resolving(task& t, std::size_t o) {
  auto& tr = t.tries[o];
  const bool was = tr.resolving && tr.resolved_url.empty();
  tr.resolving = false;
  return was;
}

void blob_fetcher::on_range_done(const std::string& blob, std::uint64_t gen, std::uint64_t id,
                                 std::size_t o, const std::string& url, http_response r) {
  auto t = answered(blob, gen, o);
  if (!t || t->flights.count(id) == 0) {
    pump();
    return;
  }
  const auto f = t->flights.at(id);
  t->flights.erase(id);
  if (spdlog::should_log(spdlog::level::trace)) {
    std::lock_guard lock(f.cursor->m);
    spdlog::trace("{}: range {}-{} of {}: {} bytes in {:.3f} s, status {}{}", t->req.path, f.begin,
                  f.asked_end, t->req.size, f.cursor->pos - f.begin,
                  std::chrono::duration<double>(steady::now() - f.started).count(), r.status,
                  r.cut_short ? ", cut short" : "");
  }
  const bool was_resolving = end_resolving(*t, o);
  // Bytes land in order, so what arrived for the range asked for stays valid even when the
  // transfer then broke; bytes of an answer for some other range do not count.
  const bool body = r.status == 200 || r.status == 206;
  auto problem = body ? range_problem(r, f.begin, f.asked_end - 1, t->req.size) : std::string();
  t->plan->finished(id, body && problem.empty());

  if (r.curl_error == "cancelled") {
    pump();
    return;
  }
  if (r.write_errno != 0) {
    // The disk failed, not the origin: the blob stops with what is on disk (the journal keeps
    // it), and its models wait for room (a full disk) or fail (any other write error).
    const bool full = r.write_errno == ENOSPC || r.write_errno == EDQUOT;
    finish(t, make_error(full ? errc::no_space : errc::io,
                         fmt::format("{}cannot write '{}' to {}: {}", full ? "disk full: " : "",
                                     t->req.path, store_.partial_path(t->req.blob).string(),
                                     errno_text(r.write_errno))));
    return;
  }
  if (body && !problem.empty()) {
    hard_failure(*t, o, fmt::format("{}: {}", url, problem), false);
  } else if (r.cut_short || handle_answer(*t, o, url, r, was_resolving)) {
    std::uint64_t pos = 0, end = 0;
    {
      std::lock_guard lock(f.cursor->m);
      pos = f.cursor->pos;
      end = f.cursor->end;
    }
    if (pos < end)
      hard_failure(*t, o,
                   fmt::format("{}: received {} bytes for a {}-byte range", url, pos - f.begin,
                               end - f.begin),
                   false);
    else
      on_success(*t, o, url, was_resolving);
  }
  maybe_hash(t);
  if (!t->over) check_exhausted(t);
  pump();
}

void blob_fetcher::on_chunk_done(const std::string& blob, std::uint64_t gen, std::size_t ci,
                                 std::size_t o, const std::string& url, http_response r) {
  auto t = answered(blob, gen, o);
  if (!t) {
    pump();
    return;
  }
  auto& c = t->chunks[ci];
  const bool was_resolving = end_resolving(*t, o);
  c.st = chunk::state::missing;
  c.received->store(0);
  if (r.curl_error == "cancelled") {
    pump();
    return;
  }
  if (handle_answer(*t, o, url, r, was_resolving)) {
    const auto a = t->chunk_begin(ci), b = t->chunk_end(ci) - 1;
    auto problem = range_problem(r, a, b, t->req.size);
    if (problem.empty() && r.body.size() != b - a + 1)
      problem = fmt::format("received {} bytes for a {}-byte range", r.body.size(), b - a + 1);
    if (!problem.empty()) {
      hard_failure(*t, o, fmt::format("{}: {}", url, problem), false);
    } else {
      on_success(*t, o, url, was_resolving);
      c.st = chunk::state::done;
      // Posted, so the owner may call back into the fetcher.
      asio::post(io_, [this, b = t->req.blob, ci, o, body = std::move(r.body)]() mutable {
        if (on_chunk_) on_chunk_(b, ci, o, std::move(body));
      });
    }
  }
  if (!t->over) check_exhausted(t);
  pump();
}

void blob_fetcher::transient_failure(task& t, std::size_t o, const std::string& message,
                                     int retry_after) {
  auto& tr = t.tries[o];
  tr.last_error = message;
  tr.resolved_url.clear();
  // Requests that were already out when the origin failed count once, not once each.
  const auto now = steady::now();
  if (!origins_.available(o, now)) return;
  // An origin that served anyone lately is flaky, not gone: it backs off but keeps being tried,
  // however its failures fall on this blob (flaky-origin: three 503s in a row on one blob's
  // requests, while the origin served the others, failed the model).
  const bool flaky = origins_.served_lately(o, now, std::chrono::seconds(30));
  origins_.record_failure(o, message, retry_after);
  if (flaky) return;
  ++tr.failures;
  ++tr.transient;
}

void blob_fetcher::hard_failure(task& t, std::size_t o, const std::string& message, bool give_up) {
  auto& tr = t.tries[o];
  tr.last_error = message;
  tr.resolved_url.clear();
  tr.failures = give_up ? settings_.max_attempts : tr.failures + 1;
  tr.lasting = true;
  ++origins_[o].failures_total;
  spdlog::warn("{} ({}): {}", t.req.path, origins_[o].cfg.url, message);
}

void blob_fetcher::check_exhausted(const std::shared_ptr<task>& t) {
  track_origins(*t);
  bool exhausted = true;
  for (std::size_t o = 0; o < origins_.size(); ++o)
    exhausted =
        exhausted && (origins_[o].retired || t->tries[o].failures >= settings_.max_attempts);
  if (!exhausted) return;
  std::string tried;
  bool lasting = false;
  for (std::size_t o = 0; o < origins_.size(); ++o) {
    tried += fmt::format("{}{} ({} attempts, last: {})", tried.empty() ? "" : "; ",
                         origins_[o].cfg.url, t->tries[o].failures, t->tries[o].last_error);
    lasting = lasting || t->tries[o].lasting;
  }
  // Only out of reach (no origin answered anything that waiting cannot change): worth a retry.
  finish(t,
         make_error(lasting ? errc::download_failed : errc::unavailable,
                    fmt::format("file '{}' ({}): no origin could supply a verified copy; tried {}",
                                t->req.path, t->req.blob.str().substr(0, 12), tried)));
}

// Claim mode: each piece on disk is hashed once, one at a time, and handed to the owner.
void blob_fetcher::hash_pieces(const std::shared_ptr<task>& t) {
  const auto ps = static_cast<std::uint64_t>(t->req.piece_size);
  for (std::size_t p = 0; p < t->piece_hashed.size(); ++p) {
    const auto from = p * ps, to = std::min(t->req.size, from + ps);
    if (t->piece_hashed[p] || !t->plan->all_valid(from, to)) continue;
    t->hashing = true;
    auto ph = std::make_shared<piece_hasher>(to - from, t->req.piece_size);
    hash_worker::job j;
    j.fd = t->fd;
    j.from = from;
    j.to = to;
    j.pieces = ph.get();
    j.done = [this, t, p, ph, gen = t->gen](status s) {
      asio::post(io_, [this, t, p, ph, gen, s] {
        t->hashing = false;
        if (t->over || gen != t->gen) return;
        if (!s) return finish(t, s);
        t->piece_hashed[p] = true;
        if (on_piece_ && !ph->pieces().empty())
          on_piece_(t->req.blob, static_cast<int>(p), ph->pieces().front());
        maybe_hash(t);
      });
    };
    hasher_.submit(std::move(j));
    return;
  }
}

void blob_fetcher::maybe_hash(const std::shared_ptr<task>& t) {
  if (t->hashing || t->over || t->feed()) return;
  if (t->req.claim) {
    t->plan->sync();
    return hash_pieces(t);
  }
  t->plan->sync();
  const auto end = t->plan->valid_prefix();
  if (t->hashed < end) {
    t->hashing = true;
    hash_worker::job j;
    j.fd = t->fd;
    j.from = t->hashed;
    j.to = end;
    j.hasher = t->hasher.get();
    j.pieces = t->pieces.get();
    j.done = [this, t, end, gen = t->gen](status s) {
      asio::post(io_, [this, t, end, gen, s] {
        t->hashing = false;
        if (t->over) return;
        if (!s) return finish(t, s);
        if (gen != t->gen) return maybe_hash(t);
        t->hashed = end;
        maybe_hash(t);
      });
    };
    hasher_.submit(std::move(j));
    return;
  }
  if (t->hashed == t->req.size && t->plan->complete() && t->flights.empty()) finalize(t);
}

void blob_fetcher::finalize(const std::shared_ptr<task>& t) {
  const auto digest = t->hasher->finish_hex();
  if (digest != t->req.blob.str()) {
    std::string from;
    for (const auto o : t->contributors) {
      auto& tr = t->tries[o];
      ++tr.failures;
      tr.lasting = true;
      tr.last_error = fmt::format("content hashed to {}, expected {}", digest.substr(0, 12),
                                  t->req.blob.str().substr(0, 12));
      ++origins_[o].corrupt_total;
      from += (from.empty() ? "" : ", ") + origins_[o].cfg.url;
    }
    spdlog::warn("{}: content from {} does not match {} {}; discarding it and fetching again",
                 t->req.path, from.empty() ? "a previous run" : from,
                 t->req.blob.kind() == blob_kind::sha256 ? "SHA-256" : "git SHA-1",
                 t->req.blob.str());
    ++t->gen;
    t->hashed = 0;
    t->hasher = std::make_unique<content_hasher>(t->req.blob.kind(), t->req.size);
    if (t->pieces) t->pieces = std::make_unique<piece_hasher>(t->req.size, t->req.piece_size);
    t->contributors.clear();
    t->cancel_all(http_);
    t->flights.clear();
    t->plan.emplace(t->req.size, settings_.chunk_size, settings_.min_split);
    std::fill(t->recorded.begin(), t->recorded.end(), 0);
    if (auto s = t->journal.reset(); !s) return finish(t, s);
    check_exhausted(t);
    pump();
    return;
  }
  ::fdatasync(t->fd);
  ::close(t->fd);
  t->fd = -1;
  t->journal.close();
  auto s = store_.commit_blob(t->req.repo, t->req.blob, store_.partial_path(t->req.blob));
  ::unlink(store_.journal_path(t->req.blob).c_str());
  if (s) spdlog::info("{} verified and stored ({})", t->req.path, t->req.blob.str().substr(0, 12));
  finish(t, s);
}

void blob_fetcher::finish(const std::shared_ptr<task>& t, const status& s) {
  if (t->over) return;
  t->over = true;
  t->cancel_all(http_);
  if (!s) sync_journal(*t);
  const auto id = t->req.blob.str();
  tasks_.erase(id);
  order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
  // Posted, so the owner never re-enters itself from inside want() or a pump.
  fetch_outcome out;
  out.from_origin = t->from_origin->load();
  if (s && t->pieces) out.pieces = t->pieces->pieces();
  asio::post(io_, [this, blob = t->req.blob, s, out = std::move(out)]() mutable {
    done_(blob, s, std::move(out));
  });
  pump();
}

void blob_fetcher::sync_journal(task& t) {
  if (t.fd < 0 || !t.plan) return;
  t.plan->sync();
  std::vector<std::pair<std::uint32_t, std::uint32_t>> records;
  for (std::size_t b = 0; b < t.plan->blocks(); ++b) {
    const auto valid = t.plan->valid(b);
    if (valid <= t.recorded[b]) continue;
    records.emplace_back(static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(valid));
    t.recorded[b] = valid;
  }
  if (records.empty()) return;
  ::fdatasync(t.fd);  // data first, so the journal never claims bytes that are not on disk
  if (auto s = t.journal.append(records); !s) spdlog::error("{}: {}", t.req.path, s.err().message);
}

void blob_fetcher::flush() {
  for (const auto& [id, t] : tasks_)
    sync_journal(*t);
}

void blob_fetcher::shutdown() {
  stopping_ = true;
  flush_timer_.cancel();
  backoff_timer_.cancel();
  for (const auto& [id, t] : tasks_)
    t->cancel_all(http_);
  flush();
}

}  // namespace voxd
