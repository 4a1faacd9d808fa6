#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "voxd/tracker/swarm.hpp"

using namespace voxd::tracker;

namespace {

announce_request req(std::uint8_t h, std::uint64_t left = 100,
                     announce_event ev = announce_event::none) {
  announce_request r;
  r.hash.bytes.fill(h);
  r.left = left;
  r.event = ev;
  r.port = 1;
  return r;
}

peer_address v4(std::uint8_t last, std::uint16_t port = 6881) {
  peer_address p;
  p.ip = {127, 0, 0, last};
  p.port = port;
  return p;
}

}  // namespace

TEST(SwarmStoreTest, peersSeeEachOtherButNotThemselves) {
  swarm_store s({});
  auto r1 = s.announce(req(1), v4(1), 0);
  EXPECT_TRUE(r1.peers4.empty());
  auto r2 = s.announce(req(1, 0), v4(2), 0);
  ASSERT_EQ(r2.peers4.size(), 6u);
  EXPECT_EQ(static_cast<std::uint8_t>(r2.peers4[3]), 1);
  EXPECT_EQ(r2.counts.complete, 1u);
  EXPECT_EQ(r2.counts.incomplete, 1u);
  auto r3 = s.announce(req(1), v4(1), 1);  // re-announce updates, does not duplicate
  EXPECT_EQ(r3.peers4.size(), 6u);
  EXPECT_EQ(s.totals().peers4, 2u);
}

TEST(SwarmStoreTest, seedsAreNotSentToSeedsAndCountsFollowEvents) {
  swarm_store s({});
  s.announce(req(2, 0), v4(1), 0);
  auto r = s.announce(req(2, 0), v4(2), 0);
  EXPECT_TRUE(r.peers4.empty());
  EXPECT_EQ(r.counts.complete, 2u);
  s.announce(req(2, 0, announce_event::completed), v4(3), 0);
  EXPECT_EQ(s.scrape(req(2).hash).downloaded, 1u);
  s.announce(req(2, 0, announce_event::stopped), v4(1), 0);
  EXPECT_EQ(s.scrape(req(2).hash).complete, 2u);
}

TEST(SwarmStoreTest, peersExpireAndEmptySwarmsVanish) {
  swarm_limits lim;
  lim.expiry_seconds = 100;
  swarm_store s(lim);
  s.announce(req(3), v4(1), 0);
  s.announce(req(3), v4(2), 50);
  s.expire(120);
  EXPECT_EQ(s.totals().peers4, 1u);
  s.expire(200);
  EXPECT_EQ(s.totals().peers4, 0u);
  EXPECT_EQ(s.totals().swarms, 0u);
}

TEST(SwarmStoreTest, fullSwarmDropsItsOldestPeersFirst) {
  swarm_limits lim;
  lim.max_peers_per_swarm = 64;
  swarm_store s(lim);
  for (std::uint16_t i = 0; i < 64; ++i)
    s.announce(req(4), v4(1, static_cast<std::uint16_t>(1000 + i)), i);
  s.announce(req(4), v4(2), 100);  // the newest arrival
  auto t = s.totals();
  EXPECT_LE(t.peers4, 64u);
  EXPECT_GE(t.peers4, 60u);
  // The oldest (port 1000, seen at 0) is gone; the newcomer and a recent one stay.
  auto r = s.announce(req(4), v4(9), 101);
  bool oldest = false, newest = false;
  for (std::size_t i = 0; i + 6 <= r.peers4.size(); i += 6) {
    auto port = (static_cast<std::uint8_t>(r.peers4[i + 4]) << 8) |
                static_cast<std::uint8_t>(r.peers4[i + 5]);
    oldest |= port == 1000;
    newest |= static_cast<std::uint8_t>(r.peers4[i + 3]) == 2;
  }
  EXPECT_FALSE(oldest);
  (void)newest;  // numwant may leave it out; presence is covered by the count
}

TEST(SwarmStoreTest, totalPeerLimitHolds) {
  swarm_limits lim;
  lim.max_peers_total = 100;
  swarm_store s(lim);
  for (int i = 0; i < 500; ++i)
    s.announce(req(5), v4(static_cast<std::uint8_t>(i % 200), static_cast<std::uint16_t>(i + 1)),
               static_cast<std::uint32_t>(i));
  EXPECT_LE(s.totals().peers4, 100u);
}

TEST(SwarmStoreTest, numwantIsCappedAndIpv6IsSeparate) {
  swarm_limits lim;
  lim.max_numwant = 10;
  swarm_store s(lim);
  for (std::uint16_t i = 1; i <= 30; ++i)
    s.announce(req(6), v4(1, i), 0);
  auto q = req(6);
  q.numwant = 1000;
  EXPECT_EQ(s.announce(q, v4(2), 0).peers4.size(), 60u);
  peer_address six;
  six.v6 = true;
  six.ip[15] = 1;
  six.port = 7;
  auto r = s.announce(req(6), six, 0);
  EXPECT_TRUE(r.peers6.empty());
  EXPECT_EQ(s.totals().peers6, 1u);
}

TEST(SwarmStoreTest, manyPeersStayUnder64BytesEachAndSurviveChurn) {
  swarm_store s({});
  for (std::uint32_t i = 0; i < 20000; ++i) {
    peer_address p;
    p.ip = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
            static_cast<std::uint8_t>(i)};
    p.port = 6881;
    s.announce(req(static_cast<std::uint8_t>(i % 7)), p, 0);
  }
  auto t = s.totals();
  EXPECT_EQ(t.peers4, 20000u);
  EXPECT_LT(static_cast<double>(t.index_bytes) / static_cast<double>(t.peers4), 64.0);
  for (std::uint32_t i = 0; i < 20000; i += 2) {
    peer_address p;
    p.ip = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
            static_cast<std::uint8_t>(i)};
    p.port = 6881;
    s.announce(req(static_cast<std::uint8_t>(i % 7), 100, announce_event::stopped), p, 1);
  }
  EXPECT_EQ(s.totals().peers4, 10000u);
  // Every remaining peer is still found (the index survived the removals).
  for (std::uint32_t i = 1; i < 20000; i += 2) {
    peer_address p;
    p.ip = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8),
            static_cast<std::uint8_t>(i)};
    p.port = 6881;
    s.announce(req(static_cast<std::uint8_t>(i % 7)), p, 2);
  }
  EXPECT_EQ(s.totals().peers4, 10000u);
}

namespace {

peer_address at(std::uint8_t site, std::uint8_t host) {
  peer_address p;
  p.ip = {10, site, 0, host};
  p.port = 6881;
  return p;
}

// The hosts (last address byte) an answer names.
std::vector<int> hosts_in(const announce_reply& r) {
  std::vector<int> out;
  for (std::size_t i = 0; i + 6 <= r.peers4.size(); i += 6)
    out.push_back(static_cast<std::uint8_t>(r.peers4[i + 1]) * 100 +
                  static_cast<std::uint8_t>(r.peers4[i + 3]));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(SwarmStoreTest, onlyASitesFirstLeecherHearsOfOtherSites) {
  swarm_store s({});
  s.announce(req(9, 0), at(1, 1), 0);            // a seed at site 1
  s.announce(req(9), at(1, 2), 0);               // a leecher beside it
  auto first = s.announce(req(9), at(2, 9), 0);  // site 2's first leecher fetches over the WAN
  EXPECT_EQ(hosts_in(first), (std::vector<int>{101}));
  auto second = s.announce(req(9), at(2, 3), 0);  // the next one (lower address) gets its site only
  EXPECT_EQ(hosts_in(second), (std::vector<int>{209}));
  EXPECT_EQ(hosts_in(s.announce(req(9), at(2, 9), 1)), (std::vector<int>{101, 203}));
  // Site 1 has a seed: its leecher is told of nobody at site 2.
  EXPECT_EQ(hosts_in(s.announce(req(9), at(1, 2), 1)), (std::vector<int>{101}));
  // A seed is told of its own site's leechers only.
  EXPECT_EQ(hosts_in(s.announce(req(9, 0), at(1, 1), 1)), (std::vector<int>{102}));
  // When the fetcher leaves, the next leecher of its site takes over.
  s.announce(req(9, 100, announce_event::stopped), at(2, 9), 2);
  EXPECT_EQ(hosts_in(s.announce(req(9), at(2, 3), 2)), (std::vector<int>{101}));
}

TEST(SwarmStoreTest, withoutSeedsElsewhereTheFetcherHearsOfLeechersAndLocalityCanBeOff) {
  swarm_store s({});
  s.announce(req(8), at(1, 1), 0);
  EXPECT_EQ(hosts_in(s.announce(req(8), at(2, 1), 0)), (std::vector<int>{101}));
  swarm_limits off;
  off.site_prefix_v4 = 0;
  swarm_store plain(off);
  plain.announce(req(7, 0), at(1, 1), 0);
  plain.announce(req(7), at(2, 1), 0);
  EXPECT_EQ(hosts_in(plain.announce(req(7), at(2, 2), 0)), (std::vector<int>{101, 201}));
}
