#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "voxd/tracker/groups.hpp"

using namespace voxd;
using namespace voxd::tracker;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t size = 16ull << 20;  // 64 pieces of 256 KiB
const int piece = piece_size_for(size);

sha1_digest hash_of(int p, unsigned char salt = 0) {
  sha1_digest d{};
  d[0] = static_cast<unsigned char>(p);
  d[1] = salt;
  d[19] = 1;  // never all zeros
  return d;
}

class GroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/voxd-groups-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    reg_ = std::make_unique<registry>(dir_);
    ASSERT_TRUE(reg_->load());
    groups_ = std::make_unique<first_fetch_groups>(*reg_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  group_answer join(const std::string& member, std::vector<std::pair<int, int>> report = {},
                    unsigned char salt = 0,
                    std::optional<std::vector<std::pair<int, int>>> unstarted = std::nullopt) {
    group_request r;
    r.member = member;
    r.size = size;
    r.piece_size = piece;
    for (const auto& [from, to] : report)
      for (int p = from; p < to; ++p)
        r.done.emplace_back(p, hash_of(p, salt));
    r.unstarted = std::move(unstarted);
    auto a = groups_->join(blob_, r, now_);
    EXPECT_TRUE(a) << a.err().message;
    return a ? *a : group_answer{};
  }

  fs::path dir_;
  std::unique_ptr<registry> reg_;
  std::unique_ptr<first_fetch_groups> groups_;
  blob_id blob_ = *blob_id::parse(std::string(64, 'b'));
  steady_time now_ = std::chrono::steady_clock::now();
};

using claim = std::vector<std::pair<int, int>>;

TEST_F(GroupsTest, membersJoiningTogetherShareTheBlobEvenly) {
  // Alone, the front half: the rest is the pool.
  EXPECT_EQ(join("a").claim, (claim{{0, 32}}));
  join("b");
  now_ += std::chrono::milliseconds(200);  // within the settle window
  join("c");
  now_ += std::chrono::milliseconds(200);
  // Equal runs in the order of joining, each given its front half.
  EXPECT_EQ(join("a").claim, (claim{{0, 10}}));
  EXPECT_EQ(join("b").claim, (claim{{21, 31}}));
  EXPECT_EQ(join("c").claim, (claim{{42, 53}}));
  // Too late to share evenly: a slice of the pool (33 pieces, for 4 members, halved).
  EXPECT_EQ(join("d").claim, (claim{{10, 15}}));
  EXPECT_EQ(groups_->stats(now_).reassigned, 0u);
}

TEST_F(GroupsTest, aNewcomerDoesNotRedivideOnceAMemberHasStartedItsClaim) {
  join("a");
  join("b");
  now_ += std::chrono::milliseconds(100);
  // a renews early (a client that does not wait out the settle window) and starts on its claim.
  EXPECT_EQ(join("a").claim, (claim{{0, 16}}));
  now_ += std::chrono::milliseconds(100);
  // Within the window, but a is fetching: c gets a slice of the pool, a keeps what it has.
  EXPECT_EQ(join("c").claim, (claim{{16, 22}}));
  EXPECT_EQ(join("a").claim, (claim{{0, 16}}));
  EXPECT_EQ(join("b").claim, (claim{{32, 48}}));
}

TEST_F(GroupsTest, aMemberRunningDryIsGivenASliceOfThePool) {
  EXPECT_EQ(join("a").claim, (claim{{0, 32}}));
  now_ += std::chrono::milliseconds(400);
  // Everything started: half of the pool.
  EXPECT_EQ(join("a", {}, 0, claim{}).claim, (claim{{0, 48}}));
  // Plenty still to start: nothing more.
  EXPECT_EQ(join("a", {}, 0, claim{{40, 48}}).claim, (claim{{0, 48}}));
  // One piece left to start: the next slice, half of what is left.
  EXPECT_EQ(join("a", {}, 0, claim{{47, 48}}).claim, (claim{{0, 56}}));
  // A member that never says what it has not started gets more only when its claim is done.
  join("b");
  EXPECT_EQ(join("b").claim, (claim{{56, 58}}));
  EXPECT_EQ(join("b", {{56, 58}}).claim, (claim{{58, 60}}));
}

TEST_F(GroupsTest, laterMembersTakeHalfOfTheLargestClaimOnceThePoolIsEmpty) {
  EXPECT_EQ(join("a").claim, (claim{{0, 32}}));
  now_ += std::chrono::milliseconds(400);
  for (int i = 0; i < 6; ++i)
    join("a", {}, 0, claim{});  // slices of 16, 8, 4, 2, 1 and 1 pieces
  EXPECT_EQ(join("a", {}, 0, claim{{16, 64}}).claim, (claim{{0, 64}}));
  now_ += std::chrono::milliseconds(2500);  // a has reported nothing for 2 s: slow
  EXPECT_EQ(join("b").claim, (claim{{40, 64}}));
  EXPECT_EQ(join("c").claim, (claim{{28, 40}}));
  const auto a = join("a");
  EXPECT_EQ(a.claim, (claim{{0, 28}}));
  EXPECT_EQ(a.members, 3);
  EXPECT_EQ(a.pieces, 64);
}

TEST_F(GroupsTest, everyPieceReportedGivesTheDeterministicTorrent) {
  join("a");
  join("b");
  EXPECT_EQ(join("a", {{0, 32}}).k, group_answer::kind::member);
  const auto done = join("b", {{32, 64}});
  EXPECT_EQ(done.k, group_answer::kind::torrent);
  std::vector<sha1_digest> hashes;
  for (int p = 0; p < 64; ++p)
    hashes.push_back(hash_of(p));
  const auto expected = build_blob_torrent(blob_, size, piece, hashes);
  ASSERT_TRUE(expected);
  ASSERT_TRUE(reg_->get(blob_));
  EXPECT_EQ(*reg_->get(blob_), std::string(expected->begin(), expected->end()));
  EXPECT_EQ(join("c").k, group_answer::kind::torrent);
}

TEST_F(GroupsTest, twoHashesForOnePieceAreAConflictAndThePieceIsFetchedAgain) {
  join("a");
  join("b");
  join("a", {{0, 1}});
  const auto b = join("b", {{0, 1}}, 7);  // b fetched piece 0 too, and got other bytes
  EXPECT_EQ(b.reported, 0);
  EXPECT_EQ(groups_->stats(now_).conflicts, 1u);
  // The piece is unclaimed now: the next member without work takes it.
  EXPECT_EQ(join("b", {{1, 64}}).claim, (claim{{0, 1}}));
}

TEST_F(GroupsTest, aSilentMemberLosesItsClaim) {
  join("a");
  join("b");
  now_ += std::chrono::seconds(3);
  join("b");
  now_ += std::chrono::seconds(3);  // a silent for 6 s
  const auto b = join("b");
  EXPECT_EQ(b.members, 1);
  EXPECT_EQ(b.claim, (claim{{32, 48}}));
  const auto c = join("c");
  EXPECT_EQ(c.claim, (claim{{0, 12}}));  // a slice of a's released pieces and the pool
  EXPECT_EQ(groups_->stats(now_).reassigned, 1u);
}

TEST_F(GroupsTest, withdrawnTorrentsGoToSingleFetchersForAnHour) {
  join("a");
  EXPECT_EQ(join("a", {{0, 64}}).k, group_answer::kind::torrent);
  const auto info = validate_blob_torrent(*reg_->get(blob_), blob_);
  ASSERT_TRUE(info);
  withdraw_request w{"a", info->info_hash, {3, 4}};
  EXPECT_TRUE(groups_->withdraw(blob_, w, now_));
  EXPECT_FALSE(reg_->get(blob_));
  EXPECT_FALSE(groups_->withdraw(blob_, w, now_));  // a second member finding it wrong too
  EXPECT_EQ(join("b").k, group_answer::kind::solo);
  now_ += std::chrono::minutes(61);
  EXPECT_EQ(join("b").k, group_answer::kind::member);
  EXPECT_EQ(groups_->stats(now_).withdrawn, 1u);
}

TEST_F(GroupsTest, badRequestsNameTheField) {
  group_request r;
  r.member = "a";
  r.size = size;
  r.piece_size = 1 << 20;
  auto a = groups_->join(blob_, r, now_);
  ASSERT_FALSE(a);
  EXPECT_NE(a.err().message.find("piece_size"), std::string::npos);
  EXPECT_FALSE(parse_group_request("[]"));
  EXPECT_FALSE(
      parse_group_request(R"({"member":"a","size":1,"piece_size":262144,"done":[[0,"zz"]]})"));
  auto ok = parse_group_request(
      R"({"member":"a","size":1,"piece_size":262144,"done":[[0,"00112233445566778899aabbccddeeff00112233"]]})");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->done.size(), 1u);
  EXPECT_EQ(ok->done[0].second[1], 0x11);
}

}  // namespace
