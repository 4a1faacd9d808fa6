#pragma once
// Tracker protocol codecs, free of I/O: HTTP announce/scrape queries (BEP 3, 23, 7, 48) and UDP
// packets (BEP 15, with BEP 41 options tolerated). Every parser takes untrusted bytes and either
// returns a value or an error naming what was wrong.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "voxd/common/error.hpp"

namespace voxd::tracker {

// A 20-byte info-hash (a v1 SHA-1, or a v2 SHA-256 truncated, as clients announce it).
struct info_hash {
  std::array<std::uint8_t, 20> bytes{};
  auto operator<=>(const info_hash&) const = default;
  std::string hex() const;
  static std::optional<info_hash> from_hex(std::string_view hex);
};

struct info_hash_hasher {
  std::size_t operator()(const info_hash& h) const noexcept;
};

enum class announce_event : std::uint8_t { none, started, completed, stopped, paused };

struct announce_request {
  info_hash hash;
  std::array<std::uint8_t, 20> peer_id{};
  std::uint16_t port = 0;
  std::uint64_t uploaded = 0;
  std::uint64_t downloaded = 0;
  std::uint64_t left = 0;  // includes pad bytes for hybrid torrents; 0 means seed
  announce_event event = announce_event::none;
  int numwant = -1;  // -1: the server's default
  bool compact = true;
  bool no_peer_id = false;
};

// The query string of GET /announce (without the '?').
result<announce_request> parse_announce_query(std::string_view query);
// The query string of GET /scrape: one or more info_hash parameters (at most max_hashes).
result<std::vector<info_hash>> parse_scrape_query(std::string_view query, std::size_t max_hashes);
// Decodes %XX and '+' in a query component; nullopt on a malformed escape.
std::optional<std::string> percent_decode(std::string_view s);

struct swarm_counts {
  std::uint32_t complete = 0;    // seeders
  std::uint32_t incomplete = 0;  // leechers
  std::uint32_t downloaded = 0;  // completed events seen
};

struct announce_reply {
  int interval = 0;
  int min_interval = 0;
  swarm_counts counts;
  std::string peers4;  // compact: 6 bytes per peer
  std::string peers6;  // compact: 18 bytes per peer
};

// Bencoded bodies (through libtorrent's bencoder).
std::string encode_announce(const announce_reply& r, bool compact);
std::string encode_failure(std::string_view reason);
std::string encode_scrape(const std::vector<std::pair<info_hash, swarm_counts>>& files,
                          int min_interval);

// ---- UDP (BEP 15) -------------------------------------------------------------------------------

namespace udp {

inline constexpr std::uint64_t protocol_id = 0x41727101980ull;
inline constexpr std::size_t max_scrape_hashes = 74;

struct connect_request {
  std::uint32_t transaction = 0;
};
struct announce_packet {
  std::uint64_t connection = 0;
  std::uint32_t transaction = 0;
  announce_request req;
  std::uint32_t key = 0;
};
struct scrape_packet {
  std::uint64_t connection = 0;
  std::uint32_t transaction = 0;
  std::vector<info_hash> hashes;
};
struct bad_packet {
  std::optional<std::uint32_t> transaction;  // set when an error reply can be addressed
  std::string reason;
};

using packet = std::variant<connect_request, announce_packet, scrape_packet, bad_packet>;
packet parse(std::span<const std::uint8_t> data);

std::vector<std::uint8_t> encode_connect(std::uint32_t transaction, std::uint64_t connection);
// peers: 6 bytes each on IPv4 sockets, 18 on IPv6 (BEP 15 picks by the socket's family).
std::vector<std::uint8_t> encode_announce(std::uint32_t transaction, int interval,
                                          const swarm_counts& c, std::string_view peers);
std::vector<std::uint8_t> encode_scrape(std::uint32_t transaction,
                                        const std::vector<swarm_counts>& counts);
std::vector<std::uint8_t> encode_error(std::uint32_t transaction, std::string_view message);

}  // namespace udp
}  // namespace voxd::tracker
