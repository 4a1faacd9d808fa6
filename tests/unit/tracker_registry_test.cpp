#include <gtest/gtest.h>
#include <unistd.h>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/file_storage.hpp>

#include <filesystem>
#include <fstream>

#include "voxd/tracker/registry.hpp"

using namespace voxd;
using namespace voxd::tracker;
namespace fs = std::filesystem;

namespace {

// A single-file v1 torrent built the way voxd builds them (fixed piece size, no date).
std::string make_torrent(const std::string& name, std::int64_t size, int piece = 1 << 18,
                         bool two_files = false) {
  lt::file_storage fs;
  fs.add_file(two_files ? name + "/a" : name, size);
  if (two_files) fs.add_file(name + "/b", size);
  lt::create_torrent ct(fs, piece, lt::create_torrent::v1_only);
  ct.set_creation_date(0);
  for (lt::piece_index_t i{0}; i < lt::piece_index_t{ct.num_pieces()}; ++i)
    ct.set_hash(i, lt::sha1_hash("01234567890123456789"));
  std::string out;
  lt::bencode(std::back_inserter(out), ct.generate());
  return out;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/voxd-registry-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  blob_id blob_ = *blob_id::parse(std::string(64, 'a'));
};

}  // namespace

TEST_F(RegistryTest, acceptsASingleFileTorrentNamedAfterTheBlob) {
  auto r = validate_torrent(make_torrent(blob_.str(), 5'000'000), blob_);
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->length, 5'000'000u);
  EXPECT_EQ(r->piece_length, 1 << 18);
}

TEST_F(RegistryTest, refusesTorrentsThatCannotBeTheBlob) {
  auto expect_refused = [&](const std::string& t, const std::string& why) {
    auto r = validate_torrent(t, blob_);
    ASSERT_FALSE(r) << why;
    EXPECT_NE(r.err().message.find(why), std::string::npos) << r.err().message;
  };
  expect_refused(make_torrent("other-name", 100), "must be named after the blob id");
  expect_refused(make_torrent(blob_.str(), 100, 1 << 18, true), "exactly one file");
  expect_refused(make_torrent(blob_.str(), 100, 1 << 13), "piece size");
  expect_refused("d4:infod4:name3:abcee", "not a valid torrent");
  expect_refused("this is not bencode", "not valid bencode");
  expect_refused(std::string(1000, 'l'), "not valid bencode");  // deep nesting is bounded
  expect_refused(std::string(5 << 20, 'x'), "larger than 4 MiB");
}

TEST_F(RegistryTest, storesReloadsAndRefusesADifferentInfoDict) {
  const auto t = make_torrent(blob_.str(), 1000);
  {
    registry reg(dir_);
    ASSERT_TRUE(reg.load());
    EXPECT_EQ(*reg.put(blob_, t), registry::put_outcome::stored);
    EXPECT_EQ(*reg.put(blob_, t), registry::put_outcome::unchanged);
    EXPECT_EQ(*reg.put(blob_, make_torrent(blob_.str(), 2000)), registry::put_outcome::conflict);
  }
  // A damaged file next to the good one is skipped, not fatal.
  std::ofstream(dir_ / "torrents" / (std::string(64, 'b') + ".torrent")) << "garbage";
  std::ofstream(dir_ / "torrents" / "not-a-blob.torrent") << "garbage";
  registry again(dir_);
  auto n = again.load();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(*again.get(blob_), t);
  auto rec = validate_torrent(t, blob_);
  EXPECT_TRUE(again.knows(rec->hash));
}

TEST_F(RegistryTest, leasesGoToOneHolderUntilReleasedOrExpired) {
  registry reg(dir_);
  lease cur;
  EXPECT_EQ(reg.take_lease(blob_, "a", std::chrono::seconds(30), 0, 100, cur),
            lease_outcome::granted);
  EXPECT_EQ(reg.take_lease(blob_, "b", std::chrono::seconds(30), 0, 100, cur),
            lease_outcome::held_by_other);
  EXPECT_EQ(cur.holder, "a");
  EXPECT_EQ(reg.take_lease(blob_, "a", std::chrono::seconds(30), 50, 100, cur),
            lease_outcome::renewed);
  EXPECT_EQ(reg.lease_of(blob_)->bytes_done, 50u);
  EXPECT_FALSE(reg.release_lease(blob_, "b"));
  EXPECT_TRUE(reg.release_lease(blob_, "a"));
  EXPECT_EQ(reg.take_lease(blob_, "b", std::chrono::seconds(0), 0, 100, cur),
            lease_outcome::granted);
  EXPECT_EQ(reg.take_lease(blob_, "c", std::chrono::seconds(30), 0, 100, cur),
            lease_outcome::granted);  // b's expired
  EXPECT_EQ(reg.active_leases(), 1u);
}
