#include "voxd/daemon/range_plan.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace voxd {
namespace {

constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB;
constexpr auto B = range_plan::block;
// Splits need a range to have run a while; on this clock every call is a minute later, so the
// tests' ranges run at a few KiB/s.
steady_time later_() {
  static auto t = std::chrono::steady_clock::now();
  return t += std::chrono::minutes(1);
}

// What the HTTP thread does for a range: write `n` bytes at the cursor, never past its end.
std::uint64_t write(range_plan::range& r, std::uint64_t n) {
  std::lock_guard lock(r.cursor->m);
  const auto w = std::min(n, r.cursor->end - r.cursor->pos);
  r.cursor->pos += w;
  return w;
}

TEST(RangePlan, unstartedRangesComeFirstAndAreAtMostMaxRequest) {
  range_plan p(10 * MiB, 4 * MiB, 256 * KiB);
  auto a = p.take(later_(), 1), b = p.take(later_(), 1), c = p.take(later_(), 1);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->begin, 0u);
  EXPECT_EQ(a->end, 4 * MiB);
  EXPECT_EQ(b->begin, 4 * MiB);
  EXPECT_EQ(c->begin, 8 * MiB);
  EXPECT_EQ(c->end, 10 * MiB);
  EXPECT_FALSE(p.has_unstarted());
  EXPECT_EQ(p.in_flight(), 3u);
}

TEST(RangePlan, newRangesShrinkAsTheUnstartedPartDoes) {
  range_plan p(16 * MiB, 16 * MiB, 256 * KiB);
  auto a = p.take(later_(), 8), b = p.take(later_(), 8);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->end - a->begin, 2 * MiB);  // a share of 16 MiB over 8 connections
  EXPECT_EQ(b->end - b->begin, 14 * MiB / 8);
  std::uint64_t last = 0;
  while (auto r = p.take(later_(), 8))
    last = r->end - r->begin;
  EXPECT_EQ(last, 256 * KiB);  // the end of the file is small ranges
}

TEST(RangePlan, aCutLeavesTheOldRangeItsBytesInThePipe) {
  range_plan p(8 * MiB, 8 * MiB, 256 * KiB);
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  write(*a, 1 * MiB);
  {
    std::lock_guard lock(a->cursor->m);
    a->cursor->rtt_us = 3'000'000'000u;  // a very long queue: all that is left is in the pipe
  }
  EXPECT_EQ(p.splittable(later_()), 0u);
  EXPECT_FALSE(p.take(later_(), 1));
}

TEST(RangePlan, aFreeConnectionTakesOverHalfOfTheLargestRangeInFlight) {
  range_plan p(8 * MiB, 8 * MiB, 256 * KiB);
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  write(*a, 2 * MiB);
  auto b = p.take(later_(), 1);  // nothing unstarted: half of what a has left
  ASSERT_TRUE(b);
  EXPECT_EQ(b->begin, 5 * MiB);
  EXPECT_EQ(b->end, 8 * MiB);
  EXPECT_EQ(a->cursor->end, 5 * MiB);
  // a cannot write into b's part any more.
  EXPECT_EQ(write(*a, 8 * MiB), 3 * MiB);
  p.finished(a->id);
  EXPECT_TRUE(p.all_valid(0, 5 * MiB));
  EXPECT_FALSE(p.complete());
  write(*b, 3 * MiB);
  p.finished(b->id);
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(p.valid_prefix(), 8 * MiB);
}

TEST(RangePlan, splitsStopAtTheMinimumSplitSize) {
  range_plan p(1 * MiB, 1 * MiB, 512 * KiB);
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  auto b = p.take(later_(), 1);  // 1 MiB left: exactly two halves of the minimum
  ASSERT_TRUE(b);
  EXPECT_EQ(b->begin, 512 * KiB);
  EXPECT_EQ(p.splittable(later_()), 0u);  // 512 KiB each: no half is big enough
  EXPECT_FALSE(p.take(later_(), 1));
}

TEST(RangePlan, everyConnectionStaysBusyUntilTheLastBlocks) {
  // Eight connections at the same speed over a 40 MiB file: until the last few percent, a freed
  // connection always finds work.
  const std::uint64_t size = 40 * MiB;
  range_plan p(size, 16 * MiB, 256 * KiB);
  std::vector<range_plan::range> live;
  for (int i = 0; i < 8; ++i)
    if (auto r = p.take(later_(), 8)) live.push_back(*r);
  std::uint64_t written = 0;
  while (!live.empty()) {
    for (auto& r : live)
      written += write(r, 64 * KiB);
    for (std::size_t i = 0; i < live.size();) {
      bool done;
      {
        std::lock_guard lock(live[i].cursor->m);
        done = live[i].cursor->pos >= live[i].cursor->end;
      }
      if (!done) {
        ++i;
        continue;
      }
      p.finished(live[i].id);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      if (auto r = p.take(later_(), 8)) {
        live.push_back(*r);
      } else {
        EXPECT_GT(written, size * 95 / 100) << "a connection went idle early";
      }
    }
  }
  EXPECT_EQ(written, size);
  EXPECT_TRUE(p.complete());
}

TEST(RangePlan, anInterruptedRangeKeepsItsBytesAndTheRestIsTakenAgain) {
  range_plan p(2 * MiB, 2 * MiB, 256 * KiB);
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  write(*a, B + 100);
  p.sync();
  EXPECT_EQ(p.done_bytes(), B + 100);
  p.finished(a->id);  // connection broke
  EXPECT_EQ(p.valid(0), B);
  EXPECT_EQ(p.valid(1), 100u);
  auto b = p.take(later_(), 1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->begin, B + 100);
  EXPECT_EQ(b->end, 2 * MiB);
}

TEST(RangePlan, aWrongAnswerCountsForNothing) {
  range_plan p(1 * MiB, 1 * MiB, 256 * KiB);
  auto a = p.take(later_(), 1);
  write(*a, 600 * KiB);
  p.sync();
  p.finished(a->id, false);
  EXPECT_EQ(p.done_bytes(), 0u);
  auto b = p.take(later_(), 1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->begin, 0u);
}

TEST(RangePlan, resumeStartsAfterTheBytesOnDisk) {
  range_plan p(4 * B, 16 * MiB, 256 * KiB);
  p.set_valid(0, B);
  p.set_valid(1, 10);
  p.set_valid(3, B);
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->begin, B + 10);
  EXPECT_EQ(a->end, 3 * B);  // stops before the block already on disk
  EXPECT_FALSE(p.has_unstarted());
}

TEST(RangePlan, aClaimLimitsWhatIsFetchedAndCutsRangesOutsideIt) {
  range_plan p(4 * MiB, 4 * MiB, 2 * MiB);  // no splits here
  p.want_only({{0, 2 * MiB}});
  auto a = p.take(later_(), 1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->end, 2 * MiB);
  EXPECT_FALSE(p.take(later_(), 1));
  write(*a, 2 * MiB);
  p.finished(a->id);
  EXPECT_TRUE(p.complete());
  // The claim grows: the new part is fetched; then shrinks below a range in flight.
  p.want_only({{0, 4 * MiB}});
  auto b = p.take(later_(), 1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->begin, 2 * MiB);
  write(*b, B);
  auto cancel = p.want_only({{0, 3 * MiB}});
  EXPECT_TRUE(cancel.empty());
  EXPECT_EQ(b->cursor->end, 3 * MiB);
  cancel = p.want_only({{0, 2 * MiB}});
  EXPECT_EQ(cancel, std::vector<std::uint64_t>{b->id});
}

}  // namespace
}  // namespace voxd
