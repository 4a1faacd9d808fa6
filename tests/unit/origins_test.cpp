#include "voxd/daemon/origins.hpp"

#include <gtest/gtest.h>

namespace voxd {
namespace {

TEST(OriginPool, ReconfigureKeepsIndicesAndRetiresRemovedOrigins) {
  auto pool = origin_pool::make({{"https://a.example", ""}, {"https://b.example", ""}});
  ASSERT_TRUE(pool);
  pool->record_failure(1, "HTTP 503");
  ASSERT_TRUE(pool->reconfigure({{"https://b.example", ""}, {"https://c.example", ""}}));
  ASSERT_EQ(pool->size(), 3u);
  EXPECT_TRUE((*pool)[0].retired);
  EXPECT_FALSE(pool->available(0, steady::now()));
  EXPECT_EQ((*pool)[1].cfg.url, "https://b.example");
  EXPECT_EQ((*pool)[1].failures_total, 1u);  // health survives the reload
  EXPECT_EQ((*pool)[2].cfg.url, "https://c.example");
  EXPECT_EQ(pool->active(), (std::vector<std::size_t>{1, 2}));
  // Order follows the new config.
  ASSERT_TRUE(pool->reconfigure({{"https://c.example", ""}, {"https://a.example", ""}}));
  EXPECT_EQ(pool->active(), (std::vector<std::size_t>{2, 0}));
}

TEST(OriginPool, UnreadableTokenLeavesThePoolUnchanged) {
  auto pool = origin_pool::make({{"https://a.example", ""}});
  ASSERT_TRUE(pool);
  auto s = pool->reconfigure({{"https://b.example", "/nonexistent/voxd-token"}});
  ASSERT_FALSE(s);
  EXPECT_NE(s.err().message.find("/nonexistent/voxd-token"), std::string::npos);
  EXPECT_EQ(pool->size(), 1u);
  EXPECT_EQ(pool->active(), (std::vector<std::size_t>{0}));
}

TEST(OriginPool, PushbackHalvesConnectionsForAWhileNeverMore) {
  auto pool = origin_pool::make({{"https://a.example", ""}});
  ASSERT_TRUE(pool);
  const auto t0 = steady::now();
  EXPECT_EQ(pool->connection_limit(0, 8, t0), 8);
  (*pool)[0].slots_used = 7;  // the eighth request just answered 503
  pool->reduce_connections(0, "HTTP 503", t0);
  EXPECT_EQ(pool->connection_limit(0, 8, t0), 4);
  pool->reduce_connections(0, "HTTP 503", t0 + std::chrono::milliseconds(100));  // same burst
  EXPECT_EQ(pool->connection_limit(0, 8, t0), 4);
  pool->reduce_connections(0, "HTTP 429", t0 + std::chrono::seconds(2));
  const auto t1 = t0 + std::chrono::seconds(2);
  EXPECT_EQ(pool->connection_limit(0, 8, t1), 2);
  EXPECT_EQ(pool->connection_limit(0, 8, t1 + std::chrono::seconds(14)), 2);  // held
  EXPECT_EQ(pool->connection_limit(0, 8, t1 + std::chrono::seconds(20)), 3);  // then one per 5 s
  EXPECT_EQ(pool->connection_limit(0, 8, t1 + std::chrono::seconds(60)), 8);  // and never more
  EXPECT_EQ(pool->connection_limit(0, 8, t1 + std::chrono::seconds(600)), 8);
}

}  // namespace
}  // namespace voxd
