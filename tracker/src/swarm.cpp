#include "voxd/tracker/swarm.hpp"

#include <algorithm>
#include <cstring>

namespace voxd::tracker {
namespace {

struct peer4 {
  std::uint32_t ip;  // network order bytes, as received
  std::uint16_t port;
  std::uint8_t seed;
  std::uint8_t unused;
  std::uint32_t last_seen;
};
static_assert(sizeof(peer4) == 12);

struct peer6 {
  std::array<std::uint8_t, 16> ip;
  std::uint16_t port;
  std::uint8_t seed;
  std::uint8_t unused;
  std::uint32_t last_seen;
};
static_assert(sizeof(peer6) == 24);

std::uint32_t be32(std::uint32_t network_order) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(&network_order);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

std::uint64_t key_of(const peer4& p) {
  return mix((std::uint64_t{p.ip} << 16) | p.port);
}
std::uint64_t key_of(const peer6& p) {
  std::uint64_t a, b;
  std::memcpy(&a, p.ip.data(), 8);
  std::memcpy(&b, p.ip.data() + 8, 8);
  return mix(a ^ mix(b ^ p.port));
}
bool same(const peer4& a, const peer4& b) {
  return a.ip == b.ip && a.port == b.port;
}
bool same(const peer6& a, const peer6& b) {
  return a.ip == b.ip && a.port == b.port;
}

bool same_site(const peer4& a, const peer4& b, int bits) {
  const std::uint32_t mask = bits >= 32 ? ~0u : ~(~0u >> bits);
  return ((be32(a.ip) ^ be32(b.ip)) & mask) == 0;
}
bool same_site(const peer6& a, const peer6& b, int bits) {
  int i = 0;
  for (; bits >= 8; bits -= 8, ++i)
    if (a.ip[i] != b.ip[i]) return false;
  const auto mask = static_cast<std::uint8_t>(0xff00 >> bits);
  return bits == 0 || ((a.ip[i] ^ b.ip[i]) & mask) == 0;
}
void append_compact(std::string& out, const peer4& p) {
  char buf[6];
  std::memcpy(buf, &p.ip, 4);
  buf[4] = static_cast<char>(p.port >> 8);
  buf[5] = static_cast<char>(p.port & 0xff);
  out.append(buf, 6);
}
void append_compact(std::string& out, const peer6& p) {
  out.append(reinterpret_cast<const char*>(p.ip.data()), 16);
  out += static_cast<char>(p.port >> 8);
  out += static_cast<char>(p.port & 0xff);
}

// Peers of one family in a vector, found by address through a linear-probing index of positions
// (0 = empty slot). Removal swaps the last record into the hole and fixes its slot.
template <class P>
class peer_table {
 public:
  std::size_t size() const { return peers_.size(); }
  std::size_t memory() const {
    return peers_.capacity() * sizeof(P) + slots_.capacity() * sizeof(std::uint32_t);
  }
  const P& operator[](std::size_t i) const { return peers_[i]; }

  P* find(const P& key) {
    if (slots_.empty()) return nullptr;
    for (std::size_t s = key_of(key) & mask(); slots_[s] != 0; s = (s + 1) & mask())
      if (same(peers_[slots_[s] - 1], key)) return &peers_[slots_[s] - 1];
    return nullptr;
  }

  void insert(const P& p) {
    if ((peers_.size() + 1) * 2 > slots_.size())
      rehash(std::max<std::size_t>(16, slots_.size() * 2));
    peers_.push_back(p);
    place(static_cast<std::uint32_t>(peers_.size()));
  }

  void erase(std::size_t index) {
    remove_slot(index + 1);
    const auto last = peers_.size();
    if (index + 1 != last) {
      remove_slot(static_cast<std::uint32_t>(last));
      peers_[index] = peers_.back();
      peers_.pop_back();
      place(static_cast<std::uint32_t>(index + 1));
    } else {
      peers_.pop_back();
    }
    if (peers_.size() * 8 < slots_.size() && slots_.size() > 16) {
      peers_.shrink_to_fit();
      rehash(slots_.size() / 2);
    }
  }

  template <class Pred>
  std::size_t erase_if(Pred pred) {
    std::size_t removed = 0;
    for (std::size_t i = 0; i < peers_.size();) {
      if (pred(peers_[i])) {
        erase(i);
        ++removed;
      } else {
        ++i;
      }
    }
    return removed;
  }

  // The oldest n peers' last_seen cut-off.
  std::uint32_t nth_oldest(std::size_t n) const {
    std::vector<std::uint32_t> seen;
    seen.reserve(peers_.size());
    for (const auto& p : peers_)
      seen.push_back(p.last_seen);
    n = std::min(n, seen.size() - 1);
    std::nth_element(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(n), seen.end());
    return seen[n];
  }

 private:
  std::size_t mask() const { return slots_.size() - 1; }

  void place(std::uint32_t pos) {
    std::size_t s = key_of(peers_[pos - 1]) & mask();
    while (slots_[s] != 0)
      s = (s + 1) & mask();
    slots_[s] = pos;
  }

  void remove_slot(std::uint32_t pos) {
    std::size_t s = key_of(peers_[pos - 1]) & mask();
    while (slots_[s] != pos)
      s = (s + 1) & mask();
    // Backward-shift deletion keeps every probe chain unbroken.
    std::size_t hole = s;
    for (std::size_t j = (hole + 1) & mask(); slots_[j] != 0; j = (j + 1) & mask()) {
      std::size_t const home = key_of(peers_[slots_[j] - 1]) & mask();
      bool const movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole] = 0;
  }

  void rehash(std::size_t n) {
    slots_.assign(n, 0);
    for (std::uint32_t i = 1; i <= peers_.size(); ++i)
      place(i);
  }

  std::vector<P> peers_;
  std::vector<std::uint32_t> slots_;
};

}  // namespace

struct swarm {
  peer_table<peer4> v4;
  peer_table<peer6> v6;
  std::uint32_t seeders = 0;
  std::uint32_t downloaded = 0;
  std::size_t size() const { return v4.size() + v6.size(); }
};

struct swarm_store::shard {
  std::mutex mutex;
  std::unordered_map<info_hash, swarm, info_hash_hasher> swarms;
};

swarm_store::swarm_store(swarm_limits limits) : limits_(limits) {
  for (auto& s : shards_)
    s = new shard;
}

swarm_store::~swarm_store() {
  for (auto* s : shards_)
    delete s;
}

swarm_store::shard& swarm_store::shard_for(const info_hash& h) {
  return *shards_[h.bytes[8] & 63];
}

void swarm_store::set_limits(const swarm_limits& l) {
  std::lock_guard lock(limits_mutex_);
  limits_ = l;
}

swarm_limits swarm_store::limits() const {
  std::lock_guard lock(limits_mutex_);
  return limits_;
}

namespace {

// Which of a swarm's peers a requester hears of. Without site locality: any, from a random start.
// With it: its own site's peers, plus other sites' peers only if it fetches for its site (see
// swarm_limits); those are the seeds, or the leechers when no other site has a seed yet.
template <class P>
void select_peers(const peer_table<P>& table, const P* self, bool self_is_seed, int want,
                  std::uint64_t rnd, int site_bits, std::uint32_t scan_max, std::string& out) {
  const auto n = table.size();
  if (n == 0 || want <= 0) return;
  const bool by_site = self && site_bits > 0 && n <= scan_max;
  bool wan_fetcher = false, remote_seeds = false;
  if (by_site && !self_is_seed) {
    // The site's fetcher is its first leecher to arrive (the lowest position: records are
    // appended, and removal moves only the last one), so simultaneous joiners agree on one.
    const auto self_at = static_cast<std::size_t>(self - &table[0]);
    bool local_seed = false, earlier_local_leecher = false;
    for (std::size_t k = 0; k < n; ++k) {
      const auto& p = table[k];
      if (k == self_at) continue;
      if (!same_site(p, *self, site_bits))
        remote_seeds = remote_seeds || p.seed;
      else if (p.seed)
        local_seed = true;
      else
        earlier_local_leecher = earlier_local_leecher || k < self_at;
    }
    wan_fetcher = !local_seed && !earlier_local_leecher;
  }
  const std::size_t start = rnd % n;
  for (std::size_t k = 0; k < n && want > 0; ++k) {
    const auto& p = table[(start + k) % n];
    if (self && same(p, *self)) continue;
    if (self_is_seed && p.seed) continue;  // seeds have nothing to get from seeds
    if (by_site && !same_site(p, *self, site_bits) && !(wan_fetcher && (p.seed || !remote_seeds)))
      continue;
    append_compact(out, p);
    --want;
  }
}

template <class P>
void update(swarm& s, peer_table<P>& table, const P& rec, const announce_request& req,
            const swarm_limits& lim, std::atomic<std::uint64_t>& total) {
  P* existing = table.find(rec);
  if (req.event == announce_event::stopped) {
    if (existing) {
      s.seeders -= existing->seed;
      table.erase(static_cast<std::size_t>(existing - &table[0]));
      total.fetch_sub(1, std::memory_order_relaxed);
    }
    return;
  }
  if (existing) {
    s.seeders += rec.seed;
    s.seeders -= existing->seed;
    existing->seed = rec.seed;
    existing->last_seen = rec.last_seen;
    existing->port = rec.port;
    return;
  }
  // Full: the oldest sixteenth makes room (amortised O(1) per announce).
  if (s.size() >= lim.max_peers_per_swarm ||
      total.load(std::memory_order_relaxed) >= lim.max_peers_total) {
    if (table.size() == 0) return;  // nothing of this family to drop; the newcomer is not stored
    const auto cutoff = table.nth_oldest(std::max<std::size_t>(1, table.size() / 16));
    const auto dropped = table.erase_if([&](const P& p) {
      if (p.last_seen > cutoff) return false;
      s.seeders -= p.seed;
      return true;
    });
    total.fetch_sub(dropped, std::memory_order_relaxed);
  }
  table.insert(rec);
  s.seeders += rec.seed;
  total.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

announce_reply swarm_store::announce(const announce_request& req, const peer_address& from,
                                     std::uint32_t now) {
  const auto lim = limits();
  auto& sh = shard_for(req.hash);
  announce_reply out;
  const int want = std::min(req.numwant < 0 ? lim.default_numwant : req.numwant, lim.max_numwant);
  const bool seed = req.left == 0;
  const auto rnd = mix(rng_.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed));
  std::lock_guard lock(sh.mutex);
  auto it = sh.swarms.find(req.hash);
  if (it == sh.swarms.end()) {
    if (req.event == announce_event::stopped) return out;
    it = sh.swarms.emplace(req.hash, swarm{}).first;
  }
  auto& s = it->second;
  if (req.event == announce_event::completed) ++s.downloaded;
  // Same steps for either family: record (or drop) the requester, then pick others for it.
  auto in_family = [&](auto rec, auto& table, std::string& peers, int site_bits) {
    rec.port = from.port;
    rec.seed = seed;
    rec.last_seen = now;
    update(s, table, rec, req, lim, total_peers_);
    if (req.event != announce_event::stopped)
      select_peers(table, table.find(rec), seed, want, rnd, site_bits, lim.site_scan_max, peers);
  };
  if (from.v6) {
    peer6 rec{};
    std::memcpy(rec.ip.data(), from.ip.data(), 16);
    in_family(rec, s.v6, out.peers6, lim.site_prefix_v6);
  } else {
    peer4 rec{};
    std::memcpy(&rec.ip, from.ip.data(), 4);
    in_family(rec, s.v4, out.peers4, lim.site_prefix_v4);
  }
  out.counts = {s.seeders, static_cast<std::uint32_t>(s.size()) - s.seeders, s.downloaded};
  if (s.size() == 0 && s.downloaded == 0) sh.swarms.erase(it);
  return out;
}

swarm_counts swarm_store::scrape(const info_hash& h) {
  auto& sh = shard_for(h);
  std::lock_guard lock(sh.mutex);
  auto it = sh.swarms.find(h);
  if (it == sh.swarms.end()) return {};
  const auto& s = it->second;
  return {s.seeders, static_cast<std::uint32_t>(s.size()) - s.seeders, s.downloaded};
}

void swarm_store::expire(std::uint32_t now) {
  for (std::size_t i = 0; i < shards_.size(); ++i)
    expire_shard(i, now);
}

void swarm_store::expire_shard(std::size_t index, std::uint32_t now) {
  const auto lim = limits();
  {
    auto* sh = shards_[index % shards_.size()];
    std::lock_guard lock(sh->mutex);
    for (auto it = sh->swarms.begin(); it != sh->swarms.end();) {
      auto& s = it->second;
      auto stale = [&](const auto& p) {
        if (p.last_seen + lim.expiry_seconds > now) return false;
        s.seeders -= p.seed;
        return true;
      };
      const auto dropped = s.v4.erase_if(stale) + s.v6.erase_if(stale);
      total_peers_.fetch_sub(dropped, std::memory_order_relaxed);
      if (s.size() == 0)
        it = sh->swarms.erase(it);
      else
        ++it;
    }
  }
}

swarm_totals swarm_store::totals() {
  swarm_totals t;
  for (auto* sh : shards_) {
    std::lock_guard lock(sh->mutex);
    t.swarms += sh->swarms.size();
    for (const auto& [h, s] : sh->swarms) {
      t.peers4 += s.v4.size();
      t.peers6 += s.v6.size();
      t.seeders += s.seeders;
      t.index_bytes += s.v4.memory() + s.v6.memory();
    }
  }
  return t;
}

}  // namespace voxd::tracker
