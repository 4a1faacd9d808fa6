#include "voxd/tracker/protocol.hpp"

#include <fmt/format.h>
#include <libtorrent/bencode.hpp>
#include <libtorrent/entry.hpp>

#include <charconv>
#include <cstring>

#include "voxd/common/hash.hpp"

namespace voxd::tracker {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  if (s.empty() || s.size() > 20) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && ptr == s.data() + s.size();
}

// Calls f(key, raw value) for each key=value pair of a query string.
template <class F>
void for_each_param(std::string_view q, F&& f) {
  while (!q.empty()) {
    auto amp = q.find('&');
    auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    f(part.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
  }
}

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i)
    out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint32_t get32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}
std::uint64_t get64(const std::uint8_t* p) {
  return (std::uint64_t{get32(p)} << 32) | get32(p + 4);
}

}  // namespace

std::string info_hash::hex() const {
  return to_hex(bytes);
}

std::optional<info_hash> info_hash::from_hex(std::string_view hex) {
  if (hex.size() != 40) return std::nullopt;
  info_hash h;
  for (std::size_t i = 0; i < 20; ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    h.bytes[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return h;
}

std::size_t info_hash_hasher::operator()(const info_hash& h) const noexcept {
  // Info-hashes are already uniformly distributed.
  std::size_t v;
  std::memcpy(&v, h.bytes.data(), sizeof v);
  return v;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

result<announce_request> parse_announce_query(std::string_view query) {
  announce_request r;
  std::uint32_t seen = 0;
  std::string problem;
  auto once = [&](int bit, std::string_view key) {
    if (seen & (1u << bit)) {
      if (problem.empty()) problem = fmt::format("parameter '{}' appears twice", key);
      return false;
    }
    seen |= 1u << bit;
    return true;
  };
  for_each_param(query, [&](std::string_view key, std::string_view raw) {
    if (!problem.empty()) return;
    auto const fail = [&](std::string_view what) {
      problem = fmt::format("parameter '{}' {}", key, what);
    };
    if (key == "info_hash" || key == "peer_id") {
      if (!once(key == "info_hash" ? 0 : 1, key)) return;
      auto v = percent_decode(raw);
      if (!v) return fail("has a malformed %-escape");
      if (v->size() != 20) return fail(fmt::format("must be 20 bytes, got {}", v->size()));
      auto& dst = key == "info_hash" ? r.hash.bytes : r.peer_id;
      std::memcpy(dst.data(), v->data(), 20);
    } else if (key == "port") {
      if (!once(2, key)) return;
      unsigned v = 0;
      if (!parse_number(raw, v) || v == 0 || v > 65535)
        return fail("must be a port number 1-65535");
      r.port = static_cast<std::uint16_t>(v);
    } else if (key == "uploaded" || key == "downloaded" || key == "left") {
      if (!once(key == "uploaded" ? 3 : key == "downloaded" ? 4 : 5, key)) return;
      std::uint64_t v = 0;
      if (!parse_number(raw, v)) return fail("must be a non-negative integer below 2^64");
      (key == "uploaded" ? r.uploaded : key == "downloaded" ? r.downloaded : r.left) = v;
    } else if (key == "event") {
      if (!once(6, key)) return;
      if (raw == "started")
        r.event = announce_event::started;
      else if (raw == "completed")
        r.event = announce_event::completed;
      else if (raw == "stopped")
        r.event = announce_event::stopped;
      else if (raw == "paused")
        r.event = announce_event::paused;
      else if (raw.empty() || raw == "empty")
        r.event = announce_event::none;
      else
        return fail("must be started, completed, stopped or paused");
    } else if (key == "numwant") {
      if (!once(7, key)) return;
      unsigned v = 0;
      if (!parse_number(raw, v)) return fail("must be a non-negative integer");
      r.numwant = static_cast<int>(std::min(v, 100000u));
    } else if (key == "compact") {
      if (!once(8, key)) return;
      r.compact = raw != "0";
    } else if (key == "no_peer_id") {
      if (!once(9, key)) return;
      r.no_peer_id = raw == "1";
    }
    // Other parameters (key, corrupt, redundant, supportcrypto, trackerid, ip, ...) are ignored.
  });
  if (!problem.empty()) return make_error(errc::invalid_argument, problem);
  if (!(seen & 1u)) return make_error(errc::invalid_argument, "missing parameter 'info_hash'");
  if (!(seen & 2u)) return make_error(errc::invalid_argument, "missing parameter 'peer_id'");
  if (!(seen & 4u)) return make_error(errc::invalid_argument, "missing parameter 'port'");
  return r;
}

result<std::vector<info_hash>> parse_scrape_query(std::string_view query, std::size_t max_hashes) {
  std::vector<info_hash> out;
  std::string problem;
  for_each_param(query, [&](std::string_view key, std::string_view raw) {
    if (!problem.empty() || key != "info_hash") return;
    auto v = percent_decode(raw);
    if (!v || v->size() != 20) {
      problem = "parameter 'info_hash' must be 20 bytes";
      return;
    }
    if (out.size() == max_hashes) {
      problem = fmt::format("at most {} info_hash parameters per scrape", max_hashes);
      return;
    }
    info_hash h;
    std::memcpy(h.bytes.data(), v->data(), 20);
    out.push_back(h);
  });
  if (!problem.empty()) return make_error(errc::invalid_argument, problem);
  return out;
}

std::string encode_announce(const announce_reply& r, bool compact) {
  lt::entry e(lt::entry::dictionary_t);
  e["interval"] = r.interval;
  e["min interval"] = r.min_interval;
  e["complete"] = r.counts.complete;
  e["incomplete"] = r.counts.incomplete;
  e["downloaded"] = r.counts.downloaded;
  if (compact) {
    e["peers"] = r.peers4;
    if (!r.peers6.empty()) e["peers6"] = r.peers6;
  } else {
    // BEP 3 list form, for clients that ask for it: {ip, port} dicts (peer ids are not stored).
    lt::entry::list_type list;
    auto add = [&](std::string_view blob, std::size_t addr_len) {
      for (std::size_t i = 0; i + addr_len + 2 <= blob.size(); i += addr_len + 2) {
        lt::entry p(lt::entry::dictionary_t);
        auto const* b = reinterpret_cast<const std::uint8_t*>(blob.data() + i);
        if (addr_len == 4) {
          p["ip"] = fmt::format("{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
        } else {
          std::string ip;
          for (std::size_t k = 0; k < 16; k += 2)
            ip += fmt::format("{}{:x}", k ? ":" : "", (b[k] << 8) | b[k + 1]);
          p["ip"] = ip;
        }
        p["port"] = (b[addr_len] << 8) | b[addr_len + 1];
        list.push_back(std::move(p));
      }
    };
    add(r.peers4, 4);
    add(r.peers6, 16);
    e["peers"] = std::move(list);
  }
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

std::string encode_failure(std::string_view reason) {
  lt::entry e(lt::entry::dictionary_t);
  e["failure reason"] = std::string(reason);
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

std::string encode_scrape(const std::vector<std::pair<info_hash, swarm_counts>>& files,
                          int min_interval) {
  lt::entry e(lt::entry::dictionary_t);
  auto& f = e["files"];
  f = lt::entry(lt::entry::dictionary_t);
  for (const auto& [h, c] : files) {
    lt::entry d(lt::entry::dictionary_t);
    d["complete"] = c.complete;
    d["incomplete"] = c.incomplete;
    d["downloaded"] = c.downloaded;
    f[std::string(reinterpret_cast<const char*>(h.bytes.data()), 20)] = std::move(d);
  }
  lt::entry flags(lt::entry::dictionary_t);
  flags["min_request_interval"] = min_interval;
  e["flags"] = std::move(flags);
  std::string out;
  lt::bencode(std::back_inserter(out), e);
  return out;
}

namespace udp {

packet parse(std::span<const std::uint8_t> d) {
  if (d.size() < 16)
    return bad_packet{std::nullopt, fmt::format("packet of {} bytes is shorter than 16", d.size())};
  auto const action = get32(d.data() + 8);
  auto const tx = get32(d.data() + 12);
  if (action == 0) {
    if (get64(d.data()) != protocol_id)
      return bad_packet{std::nullopt, "connect without the protocol id"};
    return connect_request{tx};
  }
  if (action == 1) {
    if (d.size() < 98)
      return bad_packet{tx, fmt::format("announce of {} bytes is shorter than 98", d.size())};
    announce_packet a;
    a.connection = get64(d.data());
    a.transaction = tx;
    std::memcpy(a.req.hash.bytes.data(), d.data() + 16, 20);
    std::memcpy(a.req.peer_id.data(), d.data() + 36, 20);
    a.req.downloaded = get64(d.data() + 56);
    a.req.left = get64(d.data() + 64);
    a.req.uploaded = get64(d.data() + 72);
    auto const ev = get32(d.data() + 80);
    if (ev > 3) return bad_packet{tx, fmt::format("unknown announce event {}", ev)};
    static constexpr announce_event events[] = {announce_event::none, announce_event::completed,
                                                announce_event::started, announce_event::stopped};
    a.req.event = events[ev];
    a.key = get32(d.data() + 88);
    auto const numwant = static_cast<std::int32_t>(get32(d.data() + 92));
    a.req.numwant = numwant < 0 ? -1 : numwant;
    a.req.port = static_cast<std::uint16_t>((d[96] << 8) | d[97]);
    if (a.req.port == 0) return bad_packet{tx, "announce with port 0"};
    // Bytes after 98 are BEP 41 options (libtorrent sends the URL path); nothing in them is needed.
    return a;
  }
  if (action == 2) {
    auto const n = (d.size() - 16) / 20;
    if (n == 0 || (d.size() - 16) % 20 != 0)
      return bad_packet{tx, "scrape must carry whole 20-byte info-hashes"};
    if (n > max_scrape_hashes)
      return bad_packet{tx, fmt::format("at most {} info-hashes per scrape", max_scrape_hashes)};
    scrape_packet s;
    s.connection = get64(d.data());
    s.transaction = tx;
    s.hashes.resize(n);
    for (std::size_t i = 0; i < n; ++i)
      std::memcpy(s.hashes[i].bytes.data(), d.data() + 16 + 20 * i, 20);
    return s;
  }
  return bad_packet{tx, fmt::format("unknown action {}", action)};
}

std::vector<std::uint8_t> encode_connect(std::uint32_t tx, std::uint64_t connection) {
  std::vector<std::uint8_t> out;
  put32(out, 0);
  put32(out, tx);
  put64(out, connection);
  return out;
}

std::vector<std::uint8_t> encode_announce(std::uint32_t tx, int interval, const swarm_counts& c,
                                          std::string_view peers) {
  std::vector<std::uint8_t> out;
  out.reserve(20 + peers.size());
  put32(out, 1);
  put32(out, tx);
  put32(out, static_cast<std::uint32_t>(interval));
  put32(out, c.incomplete);
  put32(out, c.complete);
  out.insert(out.end(), peers.begin(), peers.end());
  return out;
}

std::vector<std::uint8_t> encode_scrape(std::uint32_t tx, const std::vector<swarm_counts>& counts) {
  std::vector<std::uint8_t> out;
  put32(out, 2);
  put32(out, tx);
  for (const auto& c : counts) {
    put32(out, c.complete);
    put32(out, c.downloaded);
    put32(out, c.incomplete);
  }
  return out;
}

std::vector<std::uint8_t> encode_error(std::uint32_t tx, std::string_view message) {
  std::vector<std::uint8_t> out;
  put32(out, 3);
  put32(out, tx);
  out.insert(out.end(), message.begin(), message.end());
  return out;
}

}  // namespace udp
}  // namespace voxd::tracker
