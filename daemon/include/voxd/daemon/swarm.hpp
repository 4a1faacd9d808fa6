#pragma once
// The libtorrent session: one torrent per blob (docs/architecture.md, "Swarms"). Driven from the
// daemon's io thread; libtorrent's alert notification only posts a wake-up onto it. Settings are
// the office profile of notes/libtorrent-2.0.8.md: TCP only (uTP is ~10x slower), no DHT, UPnP or
// NAT-PMP, LSD on, queueing limits out of the way so seeds are never paused, and every peer,
// LAN ones included, under the upload cap unless lan_uncapped.

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "voxd/common/config.hpp"
#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"

namespace voxd {

namespace fs = std::filesystem;

struct swarm_settings {
  std::string listen = "0.0.0.0:6881";
  bool lan_discovery = true;
  std::vector<std::string> peers;  // static "ip:port"
  std::string tracker;             // announce URL, may be empty
  bool lan_uncapped = false;
  fs::path state_dir;  // resume data and session state go to <state_dir>/swarm
};

// What the feeder needs to know about one downloading blob; taken with blocking calls into the
// session, so poll it on a timer, not per piece.
struct swarm_view {
  int piece_size = 0;
  int num_pieces = 0;
  std::vector<bool> have;
  std::vector<int> availability;  // connected peers that have each piece
  std::vector<bool> downloading;  // a peer is sending it now
  std::vector<bool> wanted;       // priority > dont_download
  double peer_rate = 0;           // payload bytes/s from peers
  int peers = 0;
  bool seed_elsewhere = false;  // the tracker counts a seed this daemon is not connected to
  bool peer_elsewhere = false;  // ... or any peer, seed or not, this daemon is not connected to
  bool finished = false;        // every piece is had
  bool checking = false;        // hashing what is on disk; pieces cannot be added meanwhile
};

struct swarm_stats {
  std::uint64_t from_peers_lan = 0;
  std::uint64_t from_peers_wan = 0;
  std::uint64_t uploaded = 0;
  std::uint64_t redundant = 0;  // payload received more than once
  double download_rate = 0;
  double upload_rate = 0;
  int peers = 0;
  int seeds = 0;
  bool seeding = false;
};

struct swarm_peer {
  std::string address;
  std::string client;
  bool lan = false;
  bool seed = false;
  double download_rate = 0;  // from this peer
  double upload_rate = 0;    // to this peer
  std::uint64_t downloaded = 0;
  std::uint64_t uploaded = 0;
  int pieces = 0;
  int num_pieces = 0;
  std::string source;  // tracker, lsd, static, incoming, pex
};

class swarm {
 public:
  struct events {
    std::function<void(const blob_id&)> finished;                 // every piece is had
    std::function<void(const blob_id&, int piece)> piece_failed;  // a piece failed its hash
    std::function<void(const blob_id&, const std::string&)> error;
  };

  swarm(boost::asio::io_context& io, swarm_settings settings, events ev);
  ~swarm();
  swarm(const swarm&) = delete;
  swarm& operator=(const swarm&) = delete;

  // Starts the session, restoring its saved state. Fails (exit-worthy) on a bad listen address.
  status start();
  // Saves resume data of every torrent and the session state, then stops the session.
  void stop();

  // Adds the blob's torrent; the content is the file <dir>/<blob id>. A seed's file is complete
  // and verified (pieces are checked as they are first read). Saved resume data of the same
  // torrent is used when present, so pieces already had are not fetched again.
  status add(const blob_id& blob, const std::string& torrent, const fs::path& dir, bool seed);
  // Removes the torrent (files stay, but for a seed_in_place one's) and its resume data.
  void remove(const blob_id& blob);
  // The downloaded torrent, now verified and linked into the store, seeds on from where it is, so
  // its peers keep their connections; `file` (its own name for the blob) goes with the torrent.
  void seed_in_place(const blob_id& blob, const fs::path& file);
  bool has(const blob_id& blob) const;
  bool seeding(const blob_id& blob) const;
  void set_paused(const blob_id& blob, bool paused);
  // Every piece is had (the owner saw it): flush and report `finished`. libtorrent 2.0.8 does not
  // always turn a torrent to seeding when its last pieces arrive through add_piece.
  void complete(const blob_id& blob);
  // Hash-checks every piece on disk again; pieces that fail are fetched again.
  void recheck(const blob_id& blob);
  // Asks the trackers for peers now (every peer left: a seed re-added after its check, say).
  void reannounce(const blob_id& blob);

  std::optional<swarm_view> view(const blob_id& blob) const;
  void set_wanted(const blob_id& blob, int piece, bool wanted);
  // Hands a piece fetched elsewhere to libtorrent, which hash-checks it (piece_failed if bad).
  void add_piece(const blob_id& blob, int piece, std::vector<char> data);
  std::optional<swarm_stats> stats(const blob_id& blob) const;
  std::vector<swarm_peer> peers(const blob_id& blob) const;

  // Bytes per second; 0 = unlimited.
  void set_upload_limit(std::uint64_t bps);
  void set_download_limit(std::uint64_t bps);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Private, loopback, link-local and unique-local addresses count as LAN.
bool is_lan_address(const std::string& ip);

}  // namespace voxd
