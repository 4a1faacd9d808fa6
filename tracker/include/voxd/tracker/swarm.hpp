#pragma once
// Who has what: peers per info-hash, sharded by info-hash (a mutex per shard), with O(1) announce,
// expiry, and bounded memory. An IPv4 peer costs 12 bytes of record plus its slot in a flat
// open-addressing index (about 8 bytes), so well under 64 bytes per stored peer.

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "voxd/tracker/protocol.hpp"

namespace voxd::tracker {

struct swarm_limits {
  std::uint32_t max_peers_per_swarm = 50'000;
  std::uint64_t max_peers_total = 5'000'000;
  std::uint32_t expiry_seconds = 240;  // about two announce intervals
  int default_numwant = 50;
  int max_numwant = 200;
  // Site locality: peers whose addresses share this many leading bits are one site (0: off).
  // A leecher is told of other sites' peers only if it is its site's WAN fetcher (no seed at its
  // site, and the first of its site's leechers to arrive), so a site pulls about one copy over
  // its WAN link and shares it inside. Swarms above site_scan_max peers skip the rule, which
  // costs a pass over the swarm per announce.
  int site_prefix_v4 = 24;
  int site_prefix_v6 = 64;
  std::uint32_t site_scan_max = 4096;
};

// A peer's address as the tracker saw it: 4 or 16 bytes, plus the port.
struct peer_address {
  std::array<std::uint8_t, 16> ip{};
  bool v6 = false;
  std::uint16_t port = 0;
};

struct swarm_totals {
  std::uint64_t swarms = 0;
  std::uint64_t peers4 = 0;
  std::uint64_t peers6 = 0;
  std::uint64_t seeders = 0;
  std::uint64_t index_bytes = 0;  // memory of records and indexes, for the per-peer figure
};

class swarm_store {
 public:
  explicit swarm_store(swarm_limits limits);
  ~swarm_store();

  // Records the announce and returns the counts and up to numwant other peers of the same address
  // family, compact-encoded (6 or 18 bytes each). `now` is in seconds on any steady clock.
  announce_reply announce(const announce_request& req, const peer_address& from, std::uint32_t now);
  swarm_counts scrape(const info_hash& h);
  // Drops peers not seen for expiry_seconds, and empty swarms.
  void expire(std::uint32_t now);
  // The same for one shard, so a server can spread the sweep and never stall announces on it.
  void expire_shard(std::size_t index, std::uint32_t now);
  static constexpr std::size_t shard_count = 64;
  swarm_totals totals();
  void set_limits(const swarm_limits& limits);
  swarm_limits limits() const;

 private:
  struct shard;
  shard& shard_for(const info_hash& h);
  std::array<shard*, shard_count> shards_{};
  mutable std::mutex limits_mutex_;
  swarm_limits limits_;
  std::atomic<std::uint64_t> total_peers_{0};
  std::atomic<std::uint64_t> rng_{0x9e3779b97f4a7c15ull};
};

}  // namespace voxd::tracker
