#include "voxd/daemon/swarm.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <libtorrent/alert_types.hpp>
#include <libtorrent/bdecode.hpp>
#include <libtorrent/extensions/smart_ban.hpp>
#include <libtorrent/ip_filter.hpp>
#include <libtorrent/peer_info.hpp>
#include <libtorrent/read_resume_data.hpp>
#include <libtorrent/session.hpp>
#include <libtorrent/session_params.hpp>
#include <libtorrent/torrent_info.hpp>
#include <libtorrent/torrent_status.hpp>
#include <libtorrent/write_resume_data.hpp>

#include <chrono>
#include <map>
#include <thread>

#include "voxd/common/files.hpp"

namespace voxd {

namespace asio = boost::asio;

namespace {

// "ip:port" / "[ip]:port", already validated by the config.
std::optional<lt::tcp::endpoint> parse_endpoint(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  auto host = text.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto addr = boost::asio::ip::make_address(host, ec);
  if (ec) return std::nullopt;
  return lt::tcp::endpoint(addr, static_cast<unsigned short>(std::stoi(text.substr(colon + 1))));
}

std::string source_name(lt::peer_source_flags_t s) {
  if (s & lt::peer_info::tracker) return "tracker";
  if (s & lt::peer_info::lsd) return "lsd";
  if (s & lt::peer_info::pex) return "pex";
  if (s & lt::peer_info::dht) return "dht";
  if (s & lt::peer_info::incoming) return "incoming";
  return "static";
}

}  // namespace

bool is_lan_address(const std::string& ip) {
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(ip, ec);
  if (ec) return false;
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    a = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return b[0] == 10 || b[0] == 127 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
           (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254);
  }
  const auto v6 = a.to_v6();
  return v6.is_loopback() || v6.is_link_local() || (v6.to_bytes()[0] & 0xfe) == 0xfc;
}

struct swarm::impl {
  struct entry {
    lt::torrent_handle handle;
    bool seed = false;
    bool flushing = false;  // flush_cache asked for after the download turned to seeding
    fs::path own_file;      // seeding in place: a second link to the store's blob, removed with it
    int num_pieces = 0;
    std::map<std::string, std::uint64_t> wan_seen;  // WAN peer -> its download total last seen
    std::uint64_t wan_bytes = 0;
  };

  asio::io_context& io;
  swarm_settings cfg;
  events ev;
  std::unique_ptr<lt::session> ses;
  std::map<std::string, entry> torrents;  // by blob id
  std::map<lt::sha1_hash, std::string> by_hash;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  asio::steady_timer peers_timer{io};
  int outstanding_resume = 0;

  impl(asio::io_context& i, swarm_settings s, events e)
      : io(i), cfg(std::move(s)), ev(std::move(e)) {}

  fs::path dir() const { return cfg.state_dir / "swarm"; }
  fs::path resume_path(const std::string& blob) const { return dir() / (blob + ".resume"); }
  fs::path session_path() const { return dir() / "session.dat"; }

  lt::settings_pack settings() const {
    lt::settings_pack s = lt::high_performance_seed();
    s.set_str(lt::settings_pack::listen_interfaces, cfg.listen);
    // Outgoing connections leave from the listen address, so peers see the address we announce.
    const auto host = cfg.listen.substr(0, cfg.listen.rfind(':'));
    if (host != "0.0.0.0" && host != "[::]" && host != "::")
      s.set_str(lt::settings_pack::outgoing_interfaces, host);
    s.set_bool(lt::settings_pack::enable_dht, false);
    s.set_bool(lt::settings_pack::enable_upnp, false);
    s.set_bool(lt::settings_pack::enable_natpmp, false);
    s.set_bool(lt::settings_pack::enable_lsd, cfg.lan_discovery);
    s.set_bool(lt::settings_pack::enable_outgoing_utp, false);
    s.set_bool(lt::settings_pack::enable_incoming_utp, false);
    // Several daemons may share an address (NAT, containers).
    s.set_bool(lt::settings_pack::allow_multiple_connections_per_ip, true);
    s.set_int(lt::settings_pack::max_queued_disk_bytes, 32 << 20);
    s.set_int(lt::settings_pack::hashing_threads,
              static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    s.set_int(lt::settings_pack::aio_threads, 4);
    s.set_int(lt::settings_pack::active_downloads, -1);
    s.set_int(lt::settings_pack::active_seeds, -1);
    s.set_int(lt::settings_pack::active_limit, -1);
    s.set_int(lt::settings_pack::active_lsd_limit, -1);
    s.set_int(lt::settings_pack::active_tracker_limit, -1);
    // Leechers dial seeds, seeds do not dial back: two daemons dialling each other at once end up
    // with both connections closed as duplicates, and the leecher then waits out the reconnect
    // delay while the feeder takes the blob from the origins.
    s.set_bool(lt::settings_pack::seeding_outgoing_connections, false);
    s.set_int(lt::settings_pack::min_reconnect_time, 2);
    s.set_int(lt::settings_pack::max_failcount, 3);
    // Shutdown must stay well under systemd's stop timeout.
    s.set_int(lt::settings_pack::stop_tracker_timeout, 1);
    // Tests and small sites announce often; a fresh seed is found within seconds.
    s.set_int(lt::settings_pack::min_announce_interval, 5);
    s.set_int(lt::settings_pack::alert_mask,
              static_cast<int>(static_cast<std::uint32_t>(
                  lt::alert_category::error | lt::alert_category::status |
                  lt::alert_category::storage | lt::alert_category::peer)));
    return s;
  }

  status start() {
    std::error_code fec;
    fs::create_directories(dir(), fec);
    if (fec)
      return make_error(errc::io,
                        fmt::format("cannot create {}: {}", dir().string(), fec.message()));
    lt::session_params params;
    if (auto buf = read_file(session_path())) {
      lt::error_code ec;
      const auto node = lt::bdecode(*buf, ec);
      if (ec)
        spdlog::warn("{}: unreadable ({}); starting with a fresh session", session_path().string(),
                     ec.message());
      else
        params = lt::read_session_params(node, lt::session_handle::save_dht_state);
    }
    // The office settings are asserted anew; only state (such as DHT nodes) is restored.
    params.settings = settings();
    // No peer exchange: the tracker tells only a site's WAN fetcher of other sites' peers, and PEX
    // would gossip them to the whole site. smart_ban finds the sender of a corrupt block.
    params.extensions.clear();
    ses = std::make_unique<lt::session>(std::move(params));
    ses->add_extension(&lt::create_smart_ban_plugin);
    if (!cfg.lan_uncapped) {
      // By default libtorrent leaves LAN and loopback peers outside the global class, so the upload
      // cap would not apply to them: map every address to the global class.
      const std::uint32_t g = 1u << static_cast<std::uint32_t>(lt::session::global_peer_class_id);
      lt::ip_filter f;
      f.add_rule(lt::make_address("0.0.0.0"), lt::make_address("255.255.255.255"), g);
      f.add_rule(lt::make_address("::"),
                 lt::make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), g);
      ses->set_peer_class_filter(f);
    }
    // Wait for the listen sockets: a wrong peer.listen must stop the daemon with a clear error.
    bool listening = false;
    std::string failures;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!listening && std::chrono::steady_clock::now() < deadline) {
      ses->wait_for_alert(lt::milliseconds(100));
      std::vector<lt::alert*> alerts;
      ses->pop_alerts(&alerts);
      for (auto* a : alerts) {
        if (auto* ok = lt::alert_cast<lt::listen_succeeded_alert>(a)) {
          if (ok->socket_type == lt::socket_type_t::tcp) listening = true;
          spdlog::info("peers: listening on {}",
                       ok->address.to_string() + ":" + std::to_string(ok->port));
        } else if (auto* bad = lt::alert_cast<lt::listen_failed_alert>(a)) {
          failures += (failures.empty() ? "" : "; ") + bad->message();
        }
      }
      if (!failures.empty() && !listening) break;
    }
    if (!listening)
      return make_error(errc::config, fmt::format("peer.listen '{}': cannot listen: {}", cfg.listen,
                                                  failures.empty() ? "timed out" : failures));
    ses->set_alert_notify([this, a = alive] {
      // Runs on libtorrent's thread: only wake the io thread.
      asio::post(io, [this, a] {
        if (*a) drain();
      });
    });
    arm_peers_timer();
    return ok();
  }

  void arm_peers_timer() {
    peers_timer.expires_after(std::chrono::seconds(10));
    peers_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || !ses) return;
      for (auto& [id, e] : torrents)
        if (!e.seed) connect_static(e.handle);
      arm_peers_timer();
    });
  }

  // Static peers are dialled again from time to time: libtorrent forgets a refused one.
  void connect_static(const lt::torrent_handle& h) {
    for (const auto& p : cfg.peers)
      if (auto ep = parse_endpoint(p)) {
        try {
          h.connect_peer(*ep);
        } catch (const std::exception& e) {
          spdlog::debug("peers: connecting {}: {}", p, e.what());
        }
      }
  }

  const std::string* blob_of(const lt::torrent_handle& h) const {
    auto it = by_hash.find(h.info_hashes().v1);
    return it == by_hash.end() ? nullptr : &it->second;
  }

  void drain() {
    if (!ses) return;
    std::vector<lt::alert*> alerts;
    ses->pop_alerts(&alerts);
    for (auto* a : alerts)
      handle(a);
  }

  void handle(lt::alert* a) {
    if (auto* rd = lt::alert_cast<lt::save_resume_data_alert>(a)) {
      --outstanding_resume;
      if (auto* blob = blob_of(rd->handle)) {
        const auto buf = lt::write_resume_data_buf(rd->params);
        if (auto s = write_file_atomic(resume_path(*blob), std::string(buf.begin(), buf.end())); !s)
          spdlog::warn("peers: saving resume data: {}", s.err().message);
      }
      return;
    }
    if (lt::alert_cast<lt::save_resume_data_failed_alert>(a)) {
      --outstanding_resume;
      return;
    }
    if (auto* sc = lt::alert_cast<lt::state_changed_alert>(a)) {
      // "Finished" only means every *wanted* piece is had, and the feeder's pieces are unwanted
      // while it fetches them: the blob is whole when the torrent turns to seeding. Pieces pass
      // their hash check before the disk thread has written them, so flush before reading.
      if (sc->state != lt::torrent_status::seeding) return;
      if (auto* blob = blob_of(sc->handle)) {
        auto it = torrents.find(*blob);
        if (it != torrents.end() && !it->second.seed) {
          it->second.flushing = true;
          sc->handle.flush_cache();
        }
      }
      return;
    }
    if (auto* c = lt::alert_cast<lt::cache_flushed_alert>(a)) {
      // libtorrent flushes on its own too (when a torrent becomes "finished"): only our flush,
      // asked for once every piece was had, means the file is whole.
      if (auto* blob = blob_of(c->handle)) {
        auto it = torrents.find(*blob);
        if (it != torrents.end() && !it->second.seed && it->second.flushing) {
          it->second.flushing = false;
          const auto id = blob_id::parse(*blob);
          if (id && ev.finished) ev.finished(*id);
        }
      }
      return;
    }
    if (auto* h = lt::alert_cast<lt::hash_failed_alert>(a)) {
      if (auto* blob = blob_of(h->handle)) {
        spdlog::warn("peers: piece {} of {} failed its hash check",
                     static_cast<int>(h->piece_index), blob->substr(0, 12));
        if (auto id = blob_id::parse(*blob); id && ev.piece_failed)
          ev.piece_failed(*id, static_cast<int>(h->piece_index));
      }
      return;
    }
    if (auto* b = lt::alert_cast<lt::peer_ban_alert>(a)) {
      spdlog::warn("peers: banned {} for sending corrupt data", b->endpoint.address().to_string());
      return;
    }
    if (auto* e = lt::alert_cast<lt::torrent_error_alert>(a)) {
      if (auto* blob = blob_of(e->handle)) {
        spdlog::error("peers: {}: {}", blob->substr(0, 12), e->message());
        if (auto id = blob_id::parse(*blob); id && ev.error) ev.error(*id, e->message());
      }
      return;
    }
    if (lt::alert_cast<lt::listen_failed_alert>(a) || lt::alert_cast<lt::lsd_error_alert>(a) ||
        lt::alert_cast<lt::file_error_alert>(a) || lt::alert_cast<lt::tracker_error_alert>(a)) {
      spdlog::warn("peers: {}", a->message());
      return;
    }
    if (a->category() & lt::alert_category::error) spdlog::debug("peers: {}", a->message());
  }

  status add(const blob_id& blob, const std::string& torrent, const fs::path& where, bool seed) {
    if (torrents.count(blob.str())) return ok();
    lt::error_code ec;
    auto ti = std::make_shared<lt::torrent_info>(
        lt::span<const char>(torrent.data(), static_cast<std::ptrdiff_t>(torrent.size())), ec,
        lt::from_span);
    if (ec)
      return make_error(errc::protocol,
                        fmt::format("torrent of {}: {}", blob.str().substr(0, 12), ec.message()));
    lt::add_torrent_params atp;
    if (auto buf = read_file(resume_path(blob.str()))) {
      lt::error_code rec;
      auto r = lt::read_resume_data(*buf, rec);
      if (!rec && r.info_hashes == ti->info_hashes()) atp = std::move(r);
    }
    atp.ti = ti;
    atp.save_path = where.string();
    atp.flags &= ~(lt::torrent_flags::paused | lt::torrent_flags::auto_managed);
    if (seed) {
      // Verified by its hub id; libtorrent checks each piece as it is first read for a peer.
      atp.flags |= lt::torrent_flags::seed_mode;
      atp.have_pieces.clear();
    }
    if (!cfg.lan_discovery) atp.flags |= lt::torrent_flags::disable_lsd;
    atp.flags |= lt::torrent_flags::disable_dht;
    atp.trackers.clear();
    atp.tracker_tiers.clear();
    if (!cfg.tracker.empty()) atp.trackers.push_back(cfg.tracker);
    auto h = ses->add_torrent(std::move(atp), ec);
    if (ec)
      return make_error(errc::io, fmt::format("adding the swarm of {}: {}",
                                              blob.str().substr(0, 12), ec.message()));
    entry e;
    e.handle = h;
    e.seed = seed;
    e.num_pieces = ti->num_pieces();
    by_hash[ti->info_hashes().v1] = blob.str();
    torrents[blob.str()] = std::move(e);
    if (!seed) connect_static(h);
    return ok();
  }

  void remove(const blob_id& blob) {
    auto it = torrents.find(blob.str());
    if (it == torrents.end()) return;
    by_hash.erase(it->second.handle.info_hashes().v1);
    ses->remove_torrent(it->second.handle);
    std::error_code ec;
    if (!it->second.own_file.empty()) fs::remove(it->second.own_file, ec);
    torrents.erase(it);
    fs::remove(resume_path(blob.str()), ec);
  }

  // A rate limit setting, in bytes per second (0 = unlimited; libtorrent's is an int).
  void set_rate(int setting, std::uint64_t bps) {
    if (!ses) return;
    lt::settings_pack p;
    p.set_int(setting, static_cast<int>(std::min<std::uint64_t>(bps, 0x7fffffff)));
    ses->apply_settings(std::move(p));
  }

  void stop() {
    if (!ses) return;
    *alive = false;
    peers_timer.cancel();
    ses->set_alert_notify([] {});
    for (auto& [id, e] : torrents) {
      e.handle.save_resume_data(lt::torrent_handle::save_info_dict);
      ++outstanding_resume;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (outstanding_resume > 0 && std::chrono::steady_clock::now() < deadline) {
      ses->wait_for_alert(lt::milliseconds(100));
      std::vector<lt::alert*> alerts;
      ses->pop_alerts(&alerts);
      for (auto* a : alerts)
        handle(a);
    }
    const auto state = lt::write_session_params_buf(ses->session_state());
    if (auto s = write_file_atomic(session_path(), std::string(state.begin(), state.end())); !s)
      spdlog::warn("peers: saving the session state: {}", s.err().message);
    // The proxy's destructor waits for the session to close (tracker "stopped" announces are
    // bounded by stop_tracker_timeout).
    auto proxy = ses->abort();
    ses.reset();
  }
};

swarm::swarm(asio::io_context& io, swarm_settings settings, events ev)
    : impl_(std::make_unique<impl>(io, std::move(settings), std::move(ev))) {}

swarm::~swarm() {
  impl_->stop();
}

status swarm::start() {
  return impl_->start();
}

void swarm::stop() {
  impl_->stop();
}

status swarm::add(const blob_id& blob, const std::string& torrent, const fs::path& dir, bool seed) {
  return impl_->add(blob, torrent, dir, seed);
}

void swarm::remove(const blob_id& blob) {
  impl_->remove(blob);
}

void swarm::seed_in_place(const blob_id& blob, const fs::path& file) {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return;
  it->second.seed = true;
  it->second.own_file = file;
}

bool swarm::has(const blob_id& blob) const {
  return impl_->torrents.count(blob.str()) > 0;
}

bool swarm::seeding(const blob_id& blob) const {
  auto it = impl_->torrents.find(blob.str());
  return it != impl_->torrents.end() && it->second.seed;
}

void swarm::set_paused(const blob_id& blob, bool paused) {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return;
  if (paused)
    it->second.handle.pause();
  else
    it->second.handle.resume();
}

void swarm::complete(const blob_id& blob) {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end() || it->second.seed || it->second.flushing) return;
  it->second.flushing = true;
  it->second.handle.flush_cache();
}

void swarm::reannounce(const blob_id& blob) {
  auto it = impl_->torrents.find(blob.str());
  if (it != impl_->torrents.end())
    it->second.handle.force_reannounce(0, -1, lt::torrent_handle::ignore_min_interval);
}

void swarm::recheck(const blob_id& blob) {
  auto it = impl_->torrents.find(blob.str());
  if (it != impl_->torrents.end()) it->second.handle.force_recheck();
}

std::optional<swarm_view> swarm::view(const blob_id& blob) const {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return std::nullopt;
  const auto& h = it->second.handle;
  const auto st = h.status(lt::torrent_handle::query_pieces);
  swarm_view v;
  v.num_pieces = it->second.num_pieces;
  if (auto ti = h.torrent_file()) v.piece_size = ti->piece_length();
  v.have.assign(static_cast<std::size_t>(v.num_pieces), false);
  for (int i = 0; i < v.num_pieces && i < st.pieces.size(); ++i)
    v.have[static_cast<std::size_t>(i)] = st.pieces.get_bit(lt::piece_index_t{i});
  h.piece_availability(v.availability);
  v.availability.resize(static_cast<std::size_t>(v.num_pieces), 0);
  v.downloading.assign(static_cast<std::size_t>(v.num_pieces), false);
  for (const auto& q : h.get_download_queue()) {
    const auto p = static_cast<std::size_t>(static_cast<int>(q.piece_index));
    if (p < v.downloading.size()) v.downloading[p] = true;
  }
  const auto prios = h.get_piece_priorities();
  v.wanted.assign(static_cast<std::size_t>(v.num_pieces), true);
  for (std::size_t i = 0; i < prios.size() && i < v.wanted.size(); ++i)
    v.wanted[i] = prios[i] != lt::dont_download;
  v.peer_rate = st.download_payload_rate;
  v.peers = st.num_peers;
  v.seed_elsewhere = st.num_complete > st.num_seeds;
  // The tracker's leechers count this daemon itself; -1 means it has not said.
  const int known = std::max(0, st.num_complete) + std::max(0, st.num_incomplete - 1);
  v.peer_elsewhere = known > st.num_peers;
  v.finished =
      v.num_pieces > 0 && std::all_of(v.have.begin(), v.have.end(), [](bool b) { return b; });
  v.checking = st.state == lt::torrent_status::checking_files ||
               st.state == lt::torrent_status::checking_resume_data;
  return v;
}

void swarm::set_wanted(const blob_id& blob, int piece, bool wanted) {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return;
  it->second.handle.piece_priority(lt::piece_index_t{piece},
                                   wanted ? lt::default_priority : lt::dont_download);
}

void swarm::add_piece(const blob_id& blob, int piece, std::vector<char> data) {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return;
  // Overwrite: blocks a banned peer left in this piece must not survive into it.
  it->second.handle.add_piece(lt::piece_index_t{piece}, std::move(data),
                              lt::torrent_handle::overwrite_existing);
}

std::optional<swarm_stats> swarm::stats(const blob_id& blob) const {
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return std::nullopt;
  auto& e = it->second;
  const auto st = e.handle.status();
  std::vector<lt::peer_info> peers;
  e.handle.get_peer_info(peers);
  swarm_stats s;
  for (const auto& p : peers) {
    const auto ip = p.ip.address().to_string();
    if (p.flags & lt::peer_info::seed) ++s.seeds;
    if (is_lan_address(ip)) continue;
    const auto key = fmt::format("{}:{}", ip, p.ip.port());
    auto& seen = e.wan_seen[key];
    const auto total = static_cast<std::uint64_t>(std::max<std::int64_t>(0, p.total_download));
    if (total > seen) e.wan_bytes += total - seen;
    seen = total;
  }
  // all_time_* include earlier sessions (resume data) but are refreshed only now and then; the
  // session counters are live.
  const auto down = static_cast<std::uint64_t>(
      std::max<std::int64_t>({0, st.all_time_download, st.total_payload_download}));
  s.from_peers_wan = std::min(e.wan_bytes, down);
  s.from_peers_lan = down - s.from_peers_wan;
  s.uploaded = static_cast<std::uint64_t>(
      std::max<std::int64_t>({0, st.all_time_upload, st.total_payload_upload}));
  s.redundant = static_cast<std::uint64_t>(std::max<std::int64_t>(0, st.total_redundant_bytes));
  s.download_rate = st.download_payload_rate;
  s.upload_rate = st.upload_payload_rate;
  s.peers = st.num_peers;
  s.seeding = e.seed || st.is_seeding;
  return s;
}

std::vector<swarm_peer> swarm::peers(const blob_id& blob) const {
  std::vector<swarm_peer> out;
  auto it = impl_->torrents.find(blob.str());
  if (it == impl_->torrents.end()) return out;
  std::vector<lt::peer_info> peers;
  it->second.handle.get_peer_info(peers);
  for (const auto& p : peers) {
    swarm_peer r;
    const auto ip = p.ip.address();
    r.address = ip.is_v6() ? fmt::format("[{}]:{}", ip.to_string(), p.ip.port())
                           : fmt::format("{}:{}", ip.to_string(), p.ip.port());
    r.client = p.client;
    r.lan = is_lan_address(ip.to_string());
    r.seed = static_cast<bool>(p.flags & lt::peer_info::seed);
    r.download_rate = p.payload_down_speed;
    r.upload_rate = p.payload_up_speed;
    r.downloaded = static_cast<std::uint64_t>(std::max<std::int64_t>(0, p.total_download));
    r.uploaded = static_cast<std::uint64_t>(std::max<std::int64_t>(0, p.total_upload));
    r.pieces = p.pieces.count();
    r.num_pieces = it->second.num_pieces;
    r.source = source_name(p.source);
    out.push_back(std::move(r));
  }
  return out;
}

void swarm::set_upload_limit(std::uint64_t bps) {
  impl_->set_rate(lt::settings_pack::upload_rate_limit, bps);
}

void swarm::set_download_limit(std::uint64_t bps) {
  impl_->set_rate(lt::settings_pack::download_rate_limit, bps);
}

}  // namespace voxd
