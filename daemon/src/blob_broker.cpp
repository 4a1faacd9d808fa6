#include "voxd/daemon/blob_broker.hpp"

// Longer than the other parts (about 900 lines): one state machine per blob, whose phases (lookup,
// group, lease, origin, swarm with its CDN feeder, verifying) all work on the same job record.
// The feeder (feed, recheck, the fed-piece books) is the part to move out next, with the job
// record in a private header.

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <random>
#include <set>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/files.hpp"
#include "voxd/common/units.hpp"

namespace voxd {

namespace asio = boost::asio;

namespace {

// How long a lease lasts without renewal, and how often the holder renews it.
constexpr int lease_ttl_s = 15;
constexpr auto lease_renew_every = std::chrono::seconds(5);
// A holder whose fetch has not advanced for this long lets its lease expire.
constexpr auto holder_stall = std::chrono::seconds(30);
// How often a waiting daemon asks whether the torrent is out or the lease is free.
constexpr auto waiter_poll = std::chrono::seconds(2);
// ... and how often once the holder should be about done: the holder's progress reaches waiters
// only with its renewals, so "about done" spans a renewal period plus a margin.
constexpr auto waiter_poll_fast = std::chrono::milliseconds(250);
constexpr double waiter_fast_window_s = 7.0;
// A new swarm member gives the tracker and LSD this long to find peers before the feeder takes
// pieces no connected peer has.
constexpr auto discovery_grace = std::chrono::seconds(4);
// In a swarm born of a group every piece is on some member's disk: a piece no connected peer has
// yet is on its way (members connect and hand theirs to libtorrent as they join) for this long; a
// member that died leaves pieces the origins then fetch.
constexpr auto group_grace = std::chrono::seconds(10);
// Every peer left (seeds re-add their torrent after their check, which drops connections): the
// tracker is asked again, and the origins wait this long before taking what the peers had.
constexpr auto peers_lost_grace = std::chrono::seconds(5);
// Peers connected but silent this long count as a stalled swarm.
constexpr auto swarm_stall = std::chrono::seconds(10);
constexpr auto feed_every = std::chrono::milliseconds(250);
// A piece handed to libtorrent that is still not had after this long is wedged (see recheck()).
constexpr auto fed_piece_timeout = std::chrono::seconds(5);
constexpr int max_rechecks = 3;

}  // namespace

struct blob_broker::job {
  enum class phase { lookup, origin, waiting, swarm, verifying, group };

  job(blob_request r, asio::io_context& io) : req(std::move(r)), timer(io) {}

  blob_request req;
  std::map<std::string, bool> wanters;  // model -> active
  phase ph = phase::lookup;
  bool started = false;  // lookup under way or done
  bool holder = false;   // we hold the first-fetch lease
  std::optional<lease_info> lease;
  std::unique_ptr<group_member> group;
  std::set<int> fed_failed;  // origin pieces that failed the swarm torrent's hash
  bool group_born = false;   // the swarm's torrent came from a group this daemon was in
  int group_peers = 0;       // ... and the other members it had then
  bool had_peers = false;
  steady::time_point peers_lost_at{};  // every peer left; the tracker is being asked again
  int last_peer_count = 0;
  steady::time_point reannounced_at{};
  std::uint64_t renewed_done = 0;
  // Waiting: the holder's progress when first seen, to tell when its torrent is about due.
  std::uint64_t watch_from = 0;
  steady::time_point watch_since{};
  steady::time_point last_advance = steady::now();
  steady::time_point registry_trouble_since{};
  std::string torrent;
  asio::steady_timer timer;
  // Swarm phase.
  int piece_size = 0;
  std::set<int> claimed;              // taken from the peers' picker, released next round
  std::set<int> released;             // handed to the origins
  std::map<int, std::size_t> fed_by;  // pieces handed to libtorrent -> origin
  std::map<int, steady::time_point> fed_at;
  int rechecks = 0;
  int feed_offset = 0;  // where this daemon's feeder starts among equally rare pieces
  bool reuse_checked = false;
  std::set<int> reused;         // pieces an earlier origin fetch left on disk
  std::uint64_t redundant = 0;  // origin pieces that arrived after a peer's copy
  unsigned rounds = 0;          // feeder rounds, for periodic logging
  steady::time_point swarm_since{};
  steady::time_point peers_last_sent{};
  std::uint64_t last_peer_total = 0;
  std::optional<swarm_view> view;
  std::optional<swarm_stats> peer_stats;
  bool origins_out = false;  // the origins failed for good; peers only
  voxd::status origins_error = ok();
  std::uint64_t from_origin = 0;
  bool over = false;

  std::string name() const {
    return fmt::format("{} ({})", req.path, req.blob.str().substr(0, 12));
  }
};

blob_broker::blob_broker(asio::io_context& io, http_engine& http, hash_worker& hasher, store& st,
                         origin_pool& origins, registry_client& registry, swarm* peers,
                         broker_settings settings, done_fn done)
    : io_(io),
      hasher_(hasher),
      store_(st),
      origins_(origins),
      registry_(registry),
      swarm_(peers),
      settings_(std::move(settings)),
      done_(std::move(done)),
      fetcher_(io, http, hasher, st, origins, settings_.fetch,
               [this](const blob_id& b, const voxd::status& s, fetch_outcome o) {
                 on_fetch_done(b, s, std::move(o));
               }) {
  fetcher_.on_chunk([this](const blob_id& b, std::size_t ci, std::size_t o, std::string data) {
    on_chunk(b, ci, o, std::move(data));
  });
  fetcher_.on_piece([this](const blob_id& b, int piece, const sha1_digest& sha1) {
    if (auto j = find(b.str()); j && j->group) j->group->on_piece(piece, sha1);
  });
  std::error_code ec;
  fs::create_directories(store_.state_dir() / "torrents", ec);
  // Blobs that seeded in place before a restart: a second link to the store's copy, which the
  // session seeds from now.
  for (const auto& e : fs::directory_iterator(swarm_dir(), ec)) {
    struct stat sb {};
    if (blob_id::parse(e.path().filename().string()) && ::lstat(e.path().c_str(), &sb) == 0 &&
        S_ISREG(sb.st_mode) && sb.st_nlink > 1)
      fs::remove(e.path(), ec);
  }
}

blob_broker::~blob_broker() = default;

fs::path blob_broker::torrent_path(const blob_id& blob) const {
  return store_.state_dir() / "torrents" / (blob.str() + ".torrent");
}

fs::path blob_broker::swarm_dir() const {
  return store_.state_dir() / "partial";
}

blob_broker::job_ptr blob_broker::find(const std::string& blob) const {
  auto it = jobs_.find(blob);
  return it == jobs_.end() ? nullptr : it->second;
}

bool blob_broker::is_active(const job& j) const {
  return std::any_of(j.wanters.begin(), j.wanters.end(), [](const auto& w) { return w.second; });
}

void blob_broker::want(const blob_request& req, const std::string& model, bool active) {
  auto j = find(req.blob.str());
  if (!j) {
    j = std::make_shared<job>(req, io_);
    jobs_.emplace(req.blob.str(), j);
  }
  j->wanters[model] = active;
  // A model coming back (resumed, or retrying after a wait) wakes the blob's paused fetch.
  follow_activity(j);
}

void blob_broker::follow_activity(const job_ptr& j) {
  const bool on = is_active(*j);
  fetcher_.set_active(j->req.blob.str(), on);
  if (swarm_ && j->ph == job::phase::swarm) swarm_->set_paused(j->req.blob, !on);
  kick(j);
}

void blob_broker::set_active(const std::string& model, bool active) {
  std::vector<job_ptr> touched;
  for (auto& [id, j] : jobs_)
    if (auto it = j->wanters.find(model); it != j->wanters.end()) {
      it->second = active;
      touched.push_back(j);
    }
  for (auto& j : touched)
    follow_activity(j);
}

void blob_broker::unwant(const std::string& model) {
  std::vector<job_ptr> orphans;
  for (auto& [id, j] : jobs_)
    if (j->wanters.erase(model) && j->wanters.empty()) orphans.push_back(j);
  for (auto& j : orphans) {
    j->over = true;
    j->timer.cancel();
    if (j->ph == job::phase::swarm || j->ph == job::phase::verifying) leave_swarm(j, true);
    if (j->group) j->group->leave();
    fetcher_.unwant(j->req.blob.str());
    remove_partial(j->req.blob);
    if (j->holder) registry_.release_lease(j->req.blob, settings_.holder);
    jobs_.erase(j->req.blob.str());
  }
}

std::optional<blob_status> blob_broker::status_of(const blob_id& blob) const {
  auto j = find(blob.str());
  if (!j) return std::nullopt;
  blob_status s;
  static constexpr const char* names[] = {"lookup", "origin",    "waiting",
                                          "swarm",  "verifying", "group"};
  s.phase = names[static_cast<int>(j->ph)];
  s.lease = j->lease;
  s.from_origin = j->from_origin;
  if (auto p = fetcher_.progress(blob)) {
    s.from_origin += p->from_origin;
    if (j->ph == job::phase::origin || j->ph == job::phase::group) s.done = p->done;
  }
  if (j->group) s.group = j->group->progress();
  if (j->ph == job::phase::swarm || j->ph == job::phase::verifying) {
    if (j->view) {
      const auto had =
          static_cast<std::uint64_t>(std::count(j->view->have.begin(), j->view->have.end(), true));
      s.done = std::min(j->req.size, had * static_cast<std::uint64_t>(j->piece_size));
      s.peers = j->view->peers;
    }
    if (j->ph == job::phase::verifying) s.done = j->req.size;
    s.redundant = j->redundant;
    if (j->peer_stats) {
      s.from_peers_lan = j->peer_stats->from_peers_lan;
      s.from_peers_wan = j->peer_stats->from_peers_wan;
      s.redundant += j->peer_stats->redundant;
    }
  }
  return s;
}

void blob_broker::kick(const job_ptr& j) {
  if (stopping_ || j->over || !is_active(*j) || j->started) return;
  j->started = true;
  lookup(j);
}

void blob_broker::lookup(const job_ptr& j) {
  if (!swarm_ || !registry_.enabled() || j->req.size < settings_.swarm_min_size)
    return start_origin(j, false);
  j->ph = job::phase::lookup;
  registry_.get_torrent(j->req.blob, [this, j](result<std::optional<std::string>> r) {
    if (j->over || stopping_) return;
    if (!r) {
      spdlog::warn("{}: {}; fetching from the origins", j->name(), r.err().message);
      return start_origin(j, true);
    }
    if (!*r) return join_group(j);
    start_swarm(j, std::move(**r));
  });
}

// The cooperative first fetch: this daemon's claim from the origins, its pieces' hashes to the
// registry, then the group's swarm.
void blob_broker::join_group(const job_ptr& j) {
  j->ph = job::phase::group;
  auto req = j->req;
  req.feed_chunk = 0;
  req.piece_size = piece_size_for(req.size);
  req.claim = true;
  fetcher_.want(req, req.blob.str(), is_active(*j));
  j->group = std::make_unique<group_member>(
      io_, registry_, fetcher_, req, settings_.holder,
      [this, j](group_member::outcome o, const std::string& why) {
        // Posted: the group member is still in its own callback.
        asio::post(io_, [this, j, o, why] { on_group_done(j, o, why); });
      });
  spdlog::info(
      "{}: first fetch at this site; fetching a part of it with the other daemons that "
      "want it",
      j->name());
  j->group->start();
}

void blob_broker::on_group_done(const job_ptr& j, group_member::outcome o, const std::string& why) {
  if (j->over || stopping_ || j->ph != job::phase::group) return;
  if (auto p = fetcher_.progress(j->req.blob)) j->from_origin += p->from_origin;
  fetcher_.detach(j->req.blob);  // its partial file and journal go on to the swarm or the lease
  j->group_peers = std::max(0, j->group->progress().members - 1);
  j->group.reset();
  if (o == group_member::outcome::solo) {
    spdlog::info("{}: {}; one daemon fetches it alone", j->name(), why);
    return take_lease(j);
  }
  registry_.get_torrent(j->req.blob, [this, j](result<std::optional<std::string>> r) {
    if (j->over || stopping_) return;
    j->group_born = r && *r;
    if (r && *r) return start_swarm(j, std::move(**r));
    spdlog::warn("{}: the group's torrent is not in the registry ({}); asking again", j->name(),
                 r ? "gone" : r.err().message);
    lookup(j);
  });
}

// The swarm's torrent disagrees with the hub's hash or with the origins: withdraw it for
// everyone, discard what this daemon fetched under it, and let one daemon fetch the blob alone.
void blob_broker::distrust_torrent(const job_ptr& j, const std::string& why,
                                   std::vector<int> bad_pieces) {
  spdlog::error("{}: {}; withdrawing the torrent at registry {}; one daemon fetches it alone",
                j->name(), why, registry_.base_url());
  if (auto info = validate_blob_torrent(j->torrent, j->req.blob))
    registry_.withdraw(j->req.blob, settings_.holder, info->info_hash, bad_pieces);
  leave_swarm(j, true);
  stop_fetch(j);
  remove_partial(j->req.blob);
  j->fed_failed.clear();
  j->claimed.clear();
  j->released.clear();
  j->fed_by.clear();
  j->fed_at.clear();
  j->reused.clear();
  j->reuse_checked = false;
  j->rechecks = 0;
  j->group_born = false;
  j->torrent.clear();
  lookup(j);
}

void blob_broker::remove_partial(const blob_id& blob) {
  std::error_code ec;
  fs::remove(store_.partial_path(blob), ec);
  fs::remove(store_.journal_path(blob), ec);
}

void blob_broker::take_lease(const job_ptr& j) {
  const auto done = fetcher_.progress(j->req.blob);
  registry_.take_lease(
      j->req.blob, settings_.holder, done ? done->done : 0, j->req.size, lease_ttl_s,
      [this, j](result<lease_info> r) {
        if (j->over || stopping_) return;
        if (!r) {
          // A registry that cannot lease must not stop the download.
          spdlog::warn("{}: {}; fetching from the origins", j->name(), r.err().message);
          return start_origin(j, true);
        }
        j->lease = *r;
        if (r->ours) {
          j->holder = true;
          spdlog::info("{}: first at this site; fetching from the origins, then seeding",
                       j->name());
          start_origin(j, true);
          return renew_lease(j);
        }
        if (j->ph != job::phase::waiting || j->watch_from > r->bytes_done) {
          if (j->ph != job::phase::waiting)
            spdlog::info("{}: {} is fetching it first; waiting for its torrent", j->name(),
                         r->holder);
          j->watch_from = r->bytes_done;
          j->watch_since = steady::now();
        }
        j->ph = job::phase::waiting;
        wait_for_holder(j);
      });
}

// Polls fast only while the holder should be finishing, so a fleet of waiters does not load the
// registry for the whole first fetch.
static steady::duration next_poll(const std::optional<lease_info>& lease, std::uint64_t from,
                                  steady::time_point since) {
  if (!lease || lease->bytes_total == 0 || lease->bytes_done <= from) return waiter_poll;
  const double secs = std::chrono::duration<double>(steady::now() - since).count();
  const double rate = static_cast<double>(lease->bytes_done - from) / secs;
  const double left =
      static_cast<double>(lease->bytes_total - std::min(lease->bytes_total, lease->bytes_done)) /
      rate;
  return left < waiter_fast_window_s ? waiter_poll_fast : waiter_poll;
}

void blob_broker::wait_for_holder(const job_ptr& j) {
  j->timer.expires_after(next_poll(j->lease, j->watch_from, j->watch_since));
  j->timer.async_wait([this, j](boost::system::error_code ec) {
    if (ec || j->over || stopping_) return;
    if (!is_active(*j)) {
      // Paused while waiting: look again when resumed.
      j->started = false;
      return;
    }
    registry_.get_torrent(j->req.blob, [this, j](result<std::optional<std::string>> r) {
      if (j->over || stopping_) return;
      if (r && *r) return start_swarm(j, std::move(**r));
      if (r) {
        j->registry_trouble_since = {};
        return take_lease(j);
      }
      const auto now = steady::now();
      if (j->registry_trouble_since == steady::time_point{}) j->registry_trouble_since = now;
      if (now - j->registry_trouble_since > std::chrono::seconds(30)) {
        spdlog::warn("{}: {} for 30 s; fetching from the origins", j->name(), r.err().message);
        return start_origin(j, true);
      }
      wait_for_holder(j);
    });
  });
}

void blob_broker::renew_lease(const job_ptr& j) {
  j->timer.expires_after(lease_renew_every);
  j->timer.async_wait([this, j](boost::system::error_code ec) {
    if (ec || j->over || stopping_ || !j->holder || j->ph != job::phase::origin) return;
    const auto p = fetcher_.progress(j->req.blob);
    const auto done = p ? p->done : 0;
    const auto now = steady::now();
    if (done > j->renewed_done) {
      j->renewed_done = done;
      j->last_advance = now;
    }
    if (now - j->last_advance > holder_stall) {
      // Let the lease expire so another daemon can try; this one keeps trying too.
      spdlog::warn("{}: no progress for {} s; letting the first-fetch lease go", j->name(),
                   std::chrono::duration_cast<std::chrono::seconds>(holder_stall).count());
      j->holder = false;
      return;
    }
    registry_.take_lease(j->req.blob, settings_.holder, done, j->req.size, lease_ttl_s,
                         [j](result<lease_info> r) {
                           if (r) j->lease = *r;
                         });
    renew_lease(j);
  });
}

void blob_broker::start_origin(const job_ptr& j, bool publish) {
  j->ph = job::phase::origin;
  auto req = j->req;
  req.feed_chunk = 0;
  req.piece_size = publish && swarm_ ? piece_size_for(req.size) : 0;
  fetcher_.want(req, req.blob.str(), is_active(*j));
}

// The origins' side of a swarm fetch: piece-sized chunks, fetched only when the feeder releases
// them.
void blob_broker::start_feed(const job_ptr& j) {
  auto req = j->req;
  req.piece_size = 0;
  req.feed_chunk = static_cast<std::uint64_t>(j->piece_size);
  fetcher_.want(req, req.blob.str(), is_active(*j));
}

// Ends the fetcher's task for the blob, keeping the count of what the origins sent.
void blob_broker::stop_fetch(const job_ptr& j) {
  if (auto p = fetcher_.progress(j->req.blob)) j->from_origin += p->from_origin;
  fetcher_.unwant(j->req.blob.str());
}

void blob_broker::start_swarm(const job_ptr& j, std::string torrent) {
  auto info = validate_blob_torrent(torrent, j->req.blob);
  if (info && info->length != j->req.size)
    info = make_error(errc::invalid_argument,
                      fmt::format("torrent length {} differs from the file list's {}", info->length,
                                  j->req.size));
  if (!info) {
    spdlog::error("{}: registry {} serves a bad torrent ({}); fetching from the origins", j->name(),
                  registry_.base_url(), info.err().message);
    return start_origin(j, false);
  }
  std::error_code ec;
  fs::create_directories(swarm_dir(), ec);
  if (auto s = swarm_->add(j->req.blob, torrent, swarm_dir(), false); !s) {
    spdlog::error("{}: {}; fetching from the origins", j->name(), s.err().message);
    return start_origin(j, false);
  }
  if (j->holder) registry_.release_lease(j->req.blob, settings_.holder);
  j->holder = false;
  j->lease.reset();
  j->timer.cancel();
  j->torrent = std::move(torrent);
  j->piece_size = info->piece_length;
  j->ph = job::phase::swarm;
  {
    std::random_device rd;
    const auto pieces =
        static_cast<int>((j->req.size + static_cast<std::uint64_t>(j->piece_size) - 1) /
                         static_cast<std::uint64_t>(j->piece_size));
    j->feed_offset = static_cast<int>(rd() % static_cast<unsigned>(std::max(1, pieces)));
  }
  j->swarm_since = j->peers_last_sent = steady::now();
  if (!is_active(*j)) swarm_->set_paused(j->req.blob, true);
  start_feed(j);
  spdlog::info("{}: joining its swarm (pieces of {}), origins feeding what peers cannot", j->name(),
               format_bytes(static_cast<std::uint64_t>(j->piece_size)));
  feed(j);
}

// The CDN feeder: each round it looks at the swarm and releases to the origins the pieces the
// policy gives them, after taking those pieces out of libtorrent's picker so that no peer is asked
// for them too (notes/libtorrent-2.0.8.md §13).
void blob_broker::feed(const job_ptr& j) {
  if (j->over || stopping_ || j->ph != job::phase::swarm) return;
  j->view = swarm_->view(j->req.blob);
  j->peer_stats = swarm_->stats(j->req.blob);
  const auto now = steady::now();
  if (j->view && j->view->finished) swarm_->complete(j->req.blob);
  if (j->view && !j->view->checking && !j->reuse_checked) {
    j->reuse_checked = true;
    reuse_partial(j);
  }
  if (j->view && is_active(*j) && !j->view->finished && !j->view->checking) {
    auto& v = *j->view;
    for (const auto& [p, when] : j->fed_at)
      if (!v.have[static_cast<std::size_t>(p)] && now - when > fed_piece_timeout) {
        if (j->rechecks < max_rechecks)
          return recheck(j, fmt::format("piece {} from the origins did not take", p));
        spdlog::warn("{}: the swarm keeps losing pieces; fetching from the origins alone",
                     j->name());
        leave_swarm(j, true);
        stop_fetch(j);
        return start_origin(j, false);
      }
    const auto peer_total =
        j->peer_stats ? j->peer_stats->from_peers_lan + j->peer_stats->from_peers_wan : 0;
    if (peer_total > j->last_peer_total || v.peers == 0) j->peers_last_sent = now;
    j->last_peer_total = peer_total;
    // Pieces handed back by libtorrent (had now) leave the feeder's books.
    for (auto it = j->released.begin(); it != j->released.end();)
      it = v.have[static_cast<std::size_t>(*it)] ? j->released.erase(it) : std::next(it);
    // Pieces claimed last round go to the origins only if no peer was already sending them when
    // the claim took effect: libtorrent 2.0.8 can lose a piece written by add_piece while a peer's
    // copy of it is still being hashed.
    for (int p : j->claimed) {
      const auto i = static_cast<std::size_t>(p);
      if (v.have[i]) continue;
      if (v.downloading[i] && v.availability[i] > 0) {
        swarm_->set_wanted(j->req.blob, p, true);
        continue;
      }
      j->released.insert(p);
      fetcher_.release(j->req.blob, i);
    }
    j->claimed.clear();
    const bool grace = now - j->swarm_since < discovery_grace;
    const bool stalled = v.peers > 0 && now - j->peers_last_sent > swarm_stall;
    const bool link_idle = settings_.policy == origin_policy::balanced && link_rate_ > 0 &&
                           v.peer_rate < 0.8 * link_rate_;
    const auto budget = static_cast<std::size_t>(settings_.fetch.connections_per_origin) * 2;
    std::size_t in_flight = fetcher_.in_flight(j->req.blob);
    // A peer that left may be a member re-adding its torrent as a seed after its check (members
    // of a group finish together, so all of them may leave at once): ask the tracker now rather
    // than at the next interval, since seeds do not dial leechers.
    if (v.peers < j->last_peer_count && now - j->reannounced_at > std::chrono::seconds(1)) {
      j->reannounced_at = now;
      swarm_->reannounce(j->req.blob);
    }
    j->last_peer_count = v.peers;
    if (!j->origins_out && !grace && in_flight < budget) {
      if (v.peers > 0) {
        j->had_peers = true;
        j->peers_lost_at = {};
      } else if (j->had_peers && j->peers_lost_at == steady::time_point{}) {
        j->peers_lost_at = now;
      }
      const bool peers_coming_back =
          j->peers_lost_at != steady::time_point{} && now - j->peers_lost_at < peers_lost_grace;
      const bool members_joining =
          (j->group_born && now - j->swarm_since < group_grace) || peers_coming_back;
      // While the tracker knows a seed elsewhere (another site's, reached through this site's
      // WAN fetcher), a piece no connected peer has yet is on its way: not the origins'. In a
      // swarm born of a group every member holds pieces, so a member this daemon does not reach
      // (another site's) counts too; one that died leaves its pieces to the stall rule.
      const bool members_elsewhere =
          j->group_born && v.peers > 0 && (v.peer_elsewhere || v.peers < j->group_peers);
      const bool on_its_way = v.seed_elsewhere || members_elsewhere || members_joining;
      std::vector<int> candidates;
      for (int p = v.num_pieces - 1; p >= 0; --p) {
        const auto i = static_cast<std::size_t>(p);
        // A partial piece nobody connected has (its sender left or was banned) is the origins'.
        if (v.have[i] || (v.downloading[i] && v.availability[i] > 0) || j->released.count(p))
          continue;
        const bool nobody_has = v.availability[i] == 0 && !on_its_way;
        if (nobody_has || stalled || link_idle) candidates.push_back(p);
      }
      // Rarest first; among equals from a point of this daemon's own, so that daemons feeding
      // the same swarm fetch different pieces and trade them instead of fetching each twice.
      std::stable_sort(candidates.begin(), candidates.end(), [&](int a, int b) {
        const auto ra = v.availability[static_cast<std::size_t>(a)];
        const auto rb = v.availability[static_cast<std::size_t>(b)];
        if (ra != rb) return ra < rb;
        return (a + j->feed_offset) % v.num_pieces < (b + j->feed_offset) % v.num_pieces;
      });
      for (int p : candidates) {
        if (in_flight >= budget) break;
        swarm_->set_wanted(j->req.blob, p, false);
        j->claimed.insert(p);
        ++in_flight;
      }
    }
    if (++j->rounds % 8 == 0) {
      const auto had = std::count(v.have.begin(), v.have.end(), true);
      const auto nobody = std::count(v.availability.begin(), v.availability.end(), 0);
      spdlog::debug(
          "{}: swarm {} peers at {}, {} of {} pieces had, {} on no peer, {} at the "
          "origins{}{}",
          j->name(), v.peers, format_rate(v.peer_rate), had, v.num_pieces, nobody,
          j->released.size() + j->claimed.size(), stalled ? ", stalled" : "",
          grace ? ", discovering" : "");
    }
    if (j->origins_out && (v.peers == 0 || stalled) && now - j->peers_last_sent > swarm_stall * 6)
      return finish(j, make_error(j->origins_error.err().code,
                                  fmt::format("{}; and no peer has sent any of the missing pieces "
                                              "for a minute",
                                              j->origins_error.err().message)));
  }
  j->timer.expires_after(feed_every);
  j->timer.async_wait([this, j](boost::system::error_code ec) {
    if (!ec) feed(j);
  });
}

// libtorrent 2.0.8 can wedge a piece: one that a banned peer half-sent is not completed by
// add_piece, and one whose peer copy is still being hashed can be marked had without add_piece's
// bytes reaching the disk. A full re-check rebuilds libtorrent's view from the disk; the feeder
// then starts over on whatever is missing.
void blob_broker::recheck(const job_ptr& j, const std::string& why) {
  ++j->rechecks;
  spdlog::warn("{}: {}; re-checking the pieces on disk ({} of {})", j->name(), why, j->rechecks,
               max_rechecks);
  for (int p : j->claimed)
    swarm_->set_wanted(j->req.blob, p, true);
  for (int p : j->released)
    swarm_->set_wanted(j->req.blob, p, true);
  j->claimed.clear();
  j->released.clear();
  j->fed_by.clear();
  j->fed_at.clear();
  stop_fetch(j);
  start_feed(j);
  swarm_->recheck(j->req.blob);
  j->timer.cancel();
  feed(j);
}

// Pieces an earlier fetch from the origins left in the partial file (and its journal vouches for)
// go to the swarm instead of being fetched again: a lease holder that died and came back, or a blob
// whose torrent appeared while it was being fetched.
void blob_broker::reuse_partial(const job_ptr& j) {
  const auto part = store_.partial_path(j->req.blob);
  const auto jpath = store_.journal_path(j->req.blob);
  std::error_code ec;
  if (!fs::exists(part, ec) || !fs::exists(jpath, ec)) return;
  const auto chunk = range_plan::block;
  chunk_journal journal;
  if (!journal.open(jpath, j->req.size, chunk)) return;
  const auto& valid = journal.valid();
  const int fd = ::open(part.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  const auto piece = static_cast<std::uint64_t>(j->piece_size);
  const auto covered = [&](std::uint64_t from, std::uint64_t to) {
    for (auto k = from / chunk; k * chunk < to; ++k) {
      const auto end = std::min(to, (k + 1) * chunk);
      if (k >= valid.size() || k * chunk + valid[k] < end) return false;
    }
    return true;
  };
  std::uint64_t bytes = 0;
  for (int p = 0; j->view && p < j->view->num_pieces; ++p) {
    const auto from = static_cast<std::uint64_t>(p) * piece;
    const auto to = std::min(j->req.size, from + piece);
    if (j->view->have[static_cast<std::size_t>(p)] || !covered(from, to)) continue;
    std::vector<char> data(to - from);
    if (::pread(fd, data.data(), data.size(), static_cast<off_t>(from)) !=
        static_cast<ssize_t>(data.size()))
      break;
    swarm_->add_piece(j->req.blob, p, std::move(data));
    j->reused.insert(p);
    bytes += to - from;
  }
  ::close(fd);
  if (bytes > 0)
    spdlog::info("{}: reusing {} an earlier fetch from the origins left on disk", j->name(),
                 format_bytes(bytes));
}

void blob_broker::on_chunk(const blob_id& blob, std::size_t piece, std::size_t origin,
                           std::string data) {
  auto j = find(blob.str());
  if (!j || j->ph != job::phase::swarm) return;
  if (j->view && piece < j->view->have.size() && j->view->have[piece]) j->redundant += data.size();
  j->fed_by[static_cast<int>(piece)] = origin;
  j->fed_at[static_cast<int>(piece)] = steady::now();

  swarm_->add_piece(blob, static_cast<int>(piece), std::vector<char>(data.begin(), data.end()));
}

void blob_broker::on_piece_failed(const blob_id& blob, int piece) {
  auto j = find(blob.str());
  if (!j || j->ph != job::phase::swarm) return;
  auto it = j->fed_by.find(piece);
  if (it == j->fed_by.end()) return;  // a peer's piece: libtorrent bans the sender
  // Pieces from the origins failing the torrent again and again: the torrent (a group's, with a
  // bad report in it) is as likely wrong as the origins. A single fetch, checked against the hub's
  // hash, settles it; the last failure is not counted against the origin, which would end that
  // fetch before it began.
  j->fed_failed.insert(piece);
  const auto enough = static_cast<std::size_t>(std::clamp(settings_.fetch.max_attempts, 1, 3));
  if (j->fed_failed.size() >= enough)
    return distrust_torrent(
        j,
        fmt::format("{} pieces from the origins failed the torrent's hashes", j->fed_failed.size()),
        std::vector<int>(j->fed_failed.begin(), j->fed_failed.end()));
  fetcher_.report_corrupt(blob, static_cast<std::size_t>(piece), it->second,
                          fmt::format("piece {} failed its SHA-1 check", piece));
  j->fed_by.erase(it);
  j->fed_at.erase(piece);
  j->released.erase(piece);
  swarm_->set_wanted(blob, piece, true);
}

void blob_broker::on_fetch_done(const blob_id& blob, const voxd::status& s, fetch_outcome out) {
  auto j = find(blob.str());
  // Looking the blob up, it has no fetch: this is the end of one it just stopped.
  if (!j || j->over || j->ph == job::phase::lookup) return;
  j->from_origin += out.from_origin;
  if (j->ph == job::phase::swarm) {
    if (s) return;
    // The origins gave up; what peers still hold can finish the blob.
    spdlog::warn("{}: origins exhausted ({}); continuing with peers only", j->name(),
                 s.err().message);
    j->origins_out = true;
    j->origins_error = s;
    for (int p : j->released)
      swarm_->set_wanted(blob, p, true);
    j->released.clear();
    return;
  }
  if (!s) return finish(j, s);
  if (!out.pieces.empty()) return published(j, out.pieces);
  finish(j, ok());
}

// After a first fetch: the torrent from the piece hashes computed on the way, seeding from the
// store, then the registry learns it (in that order, so the first announce precedes any joiner).
void blob_broker::published(const job_ptr& j, const std::vector<sha1_digest>& pieces) {
  auto t = build_blob_torrent(j->req.blob, j->req.size, piece_size_for(j->req.size), pieces);
  if (!t) {
    spdlog::error("{}: {}", j->name(), t.err().message);
    return finish(j, ok());
  }
  std::string bytes(t->begin(), t->end());
  if (auto s = write_file_atomic(torrent_path(j->req.blob), bytes); !s)
    spdlog::warn("{}: {}", j->name(), s.err().message);
  if (auto s = swarm_->add(j->req.blob, bytes, store_.model_dir(j->req.repo) / "blobs", true); !s)
    spdlog::warn("{}: seeding: {}", j->name(), s.err().message);
  registry_.put_torrent(j->req.blob, bytes,
                        [name = j->name(), url = registry_.base_url()](voxd::status s) {
                          if (s)
                            spdlog::info("{}: torrent published to {}", name, url);
                          else
                            spdlog::warn("{}: {}", name, s.err().message);
                        });
  finish(j, ok());
}

void blob_broker::on_swarm_finished(const blob_id& blob) {
  auto j = find(blob.str());
  if (!j || j->ph != job::phase::swarm) return;
  j->ph = job::phase::verifying;
  j->timer.cancel();

  // Exact accounting at the end: every piece the origins did not feed came from a peer
  // (libtorrent's own counters lag by up to a second).
  j->peer_stats = swarm_->stats(blob);
  std::uint64_t fed = 0;
  const auto piece = static_cast<std::uint64_t>(j->piece_size);
  std::set<int> not_from_peers = j->reused;
  for (const auto& [p, o] : j->fed_by)
    not_from_peers.insert(p);
  for (int p : not_from_peers)
    fed += std::min(piece, j->req.size - static_cast<std::uint64_t>(p) * piece);
  if (j->peer_stats) {
    const auto from_peers = j->req.size - std::min(fed, j->req.size);
    j->peer_stats->from_peers_wan = std::min(j->peer_stats->from_peers_wan, from_peers);
    j->peer_stats->from_peers_lan = from_peers - j->peer_stats->from_peers_wan;
  }
  const auto path = swarm_dir() / blob.str();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return finish(j, make_error(errc::io, fmt::format("cannot read {}: {}", path.string(),
                                                      errno_text(errno))));
  auto hasher = std::make_shared<content_hasher>(blob.kind(), j->req.size);
  hash_worker::job hj;
  hj.fd = fd;
  hj.from = 0;
  hj.to = j->req.size;
  hj.hasher = hasher.get();
  hj.done = [this, j, hasher, fd](voxd::status s) {
    ::close(fd);
    const auto digest = s ? hasher->finish_hex() : std::string();
    asio::post(io_, [this, j, s, digest] {
      if (j->over || stopping_) return;
      if (!s) return finish(j, s);
      verified(j, digest);
    });
  };
  hasher_.submit(std::move(hj));
}

void blob_broker::verified(const job_ptr& j, const std::string& digest) {
  stop_fetch(j);
  if (digest != j->req.blob.str() && j->rechecks < max_rechecks) {
    // Every piece matched the torrent, yet the bytes on disk do not: check every piece again and
    // fetch the ones that fail before blaming the torrent.
    j->ph = job::phase::swarm;
    return recheck(j,
                   fmt::format("the content hashes to {}, not the hub's id", digest.substr(0, 12)));
  }
  if (digest != j->req.blob.str()) {
    // Every piece matched the torrent even after a full re-check: the torrent describes other
    // bytes.
    return distrust_torrent(
        j,
        fmt::format("the swarm's content hashes to {}, not the hub's id, though every piece "
                    "matched the torrent",
                    digest.substr(0, 12)),
        {});
  }
  remove_partial(j->req.blob);  // what a first fetch left for the swarm
  const auto partial = swarm_dir() / j->req.blob.str();
  if (auto s = write_file_atomic(torrent_path(j->req.blob), j->torrent); !s)
    spdlog::warn("{}: {}", j->name(), s.err().message);
  // The torrent seeds on from its own file, linked into the store: re-adding it there would
  // drop every connection, and the members of a group finish within moments of each other, so
  // the last of them would lose all its peers at once.
  if (store_.link_blob(j->req.repo, j->req.blob, partial)) {
    swarm_->seed_in_place(j->req.blob, partial);
    spdlog::info("{} verified and stored", j->name());
    return finish(j, ok());
  }
  leave_swarm(j, false);
  if (auto s = store_.commit_blob(j->req.repo, j->req.blob, partial); !s) return finish(j, s);
  spdlog::info("{} verified and stored", j->name());
  if (auto s = swarm_->add(j->req.blob, j->torrent, store_.model_dir(j->req.repo) / "blobs", true);
      !s)
    spdlog::warn("{}: seeding: {}", j->name(), s.err().message);
  finish(j, ok());
}

void blob_broker::leave_swarm(const job_ptr& j, bool delete_data) {
  if (!swarm_) return;
  if (j->ph == job::phase::swarm) j->peer_stats = swarm_->stats(j->req.blob);
  swarm_->remove(j->req.blob);
  if (delete_data) {
    std::error_code ec;
    fs::remove(swarm_dir() / j->req.blob.str(), ec);
  }
}

void blob_broker::finish(const job_ptr& j, const voxd::status& s) {
  if (j->over) return;
  j->over = true;
  j->timer.cancel();
  if (j->ph == job::phase::swarm) leave_swarm(j, !s);
  stop_fetch(j);
  if (j->holder) registry_.release_lease(j->req.blob, settings_.holder);
  blob_outcome out;
  out.from_origin = j->from_origin;
  out.redundant = j->redundant;
  if (j->peer_stats) {
    out.from_peers_lan = j->peer_stats->from_peers_lan;
    out.from_peers_wan = j->peer_stats->from_peers_wan;
    out.redundant += j->peer_stats->redundant;
  }
  jobs_.erase(j->req.blob.str());
  asio::post(io_, [this, b = j->req.blob, s, out] { done_(b, s, out); });
}

void blob_broker::seed(const blob_id& blob, const repo_id& repo, std::uint64_t size) {
  if (!swarm_ || swarm_->has(blob)) return;
  const auto path = torrent_path(blob);
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  const auto bytes = read_file(path).value_or("");
  auto info = validate_blob_torrent(bytes, blob);
  if (!info || info->length != size) {
    spdlog::warn("{}: unusable; not seeding {}", path.string(), blob.str().substr(0, 12));
    return;
  }
  if (auto s = swarm_->add(blob, bytes, store_.model_dir(repo) / "blobs", true); !s)
    spdlog::warn("seeding {}: {}", blob.str().substr(0, 12), s.err().message);
}

void blob_broker::unseed(const blob_id& blob) {
  if (swarm_ && swarm_->seeding(blob)) swarm_->remove(blob);
}

void blob_broker::set_download_cap(std::uint64_t bps) {
  fetcher_.set_download_cap(bps);
}

void blob_broker::shutdown() {
  stopping_ = true;
  for (auto& [id, j] : jobs_)
    j->timer.cancel();
  fetcher_.shutdown();
}

}  // namespace voxd
