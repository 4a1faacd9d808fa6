#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "voxd/daemon/store.hpp"

#include "temp_dir.hpp"

using namespace voxd;

namespace {

// A per-test temp directory, removed afterwards.
class StoreTest : public ::testing::Test {
 protected:
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void spit(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << s;
  }
  voxd::testing::temp_dir tmp_{"store"};
  fs::path root_ = tmp_.path();
  repo_id repo_ = *repo_id::parse("openbmb/VoxCPM1.5");
  commit_id commit_ = *commit_id::parse(std::string(40, 'c'));
  blob_id blob_ = *blob_id::parse(std::string(64, 'b'));
};

}  // namespace

TEST_F(StoreTest, writesTheHuggingFaceLayout) {
  store st(root_ / "hub", root_ / "state");
  ASSERT_TRUE(st.init());
  spit(st.partial_path(blob_), "payload");
  ASSERT_TRUE(st.commit_blob(repo_, blob_, st.partial_path(blob_)));
  EXPECT_FALSE(fs::exists(st.partial_path(blob_)));
  EXPECT_EQ(slurp(root_ / "hub/models--openbmb--VoxCPM1.5/blobs" / blob_.str()), "payload");

  ASSERT_TRUE(st.link_snapshot(repo_, commit_, "model.safetensors", blob_));
  ASSERT_TRUE(st.link_snapshot(repo_, commit_, "a/b/nested.bin", blob_));
  const auto snap = root_ / "hub/models--openbmb--VoxCPM1.5/snapshots" / commit_.str();
  EXPECT_EQ(fs::read_symlink(snap / "model.safetensors"), fs::path("../../blobs") / blob_.str());
  EXPECT_EQ(fs::read_symlink(snap / "a/b/nested.bin"), fs::path("../../../../blobs") / blob_.str());
  EXPECT_EQ(slurp(snap / "a/b/nested.bin"), "payload");  // the relative link resolves

  ASSERT_TRUE(st.write_ref(repo_, "main", commit_));
  EXPECT_EQ(slurp(root_ / "hub/models--openbmb--VoxCPM1.5/refs/main"),
            commit_.str());  // no newline
  ASSERT_TRUE(st.write_ref(repo_, "refs/pr/1", commit_));
  EXPECT_TRUE(fs::exists(root_ / "hub/models--openbmb--VoxCPM1.5/refs/refs/pr/1"));
}

TEST_F(StoreTest, findsAndSharesABlobAcrossModels) {
  store st(root_ / "hub", root_ / "state");
  ASSERT_TRUE(st.init());
  spit(st.partial_path(blob_), "shared");
  ASSERT_TRUE(st.commit_blob(repo_, blob_, st.partial_path(blob_)));
  auto other = *repo_id::parse("org/other");
  auto found = st.find_blob(blob_, 6);
  ASSERT_TRUE(found);
  EXPECT_FALSE(st.find_blob(blob_, 7));  // wrong size is not a match
  ASSERT_TRUE(st.adopt_blob(other, blob_, *found));
  EXPECT_TRUE(st.has_blob(other, blob_, 6));
}

TEST_F(StoreTest, removingASnapshotKeepsBlobsOtherSnapshotsUse) {
  store st(root_ / "hub", root_ / "state");
  ASSERT_TRUE(st.init());
  const auto only_old = *blob_id::parse(std::string(64, '1'));
  for (const auto& b : {blob_, only_old}) {
    spit(st.partial_path(b), b.str());
    ASSERT_TRUE(st.commit_blob(repo_, b, st.partial_path(b)));
  }
  const auto newer = *commit_id::parse(std::string(40, 'd'));
  ASSERT_TRUE(st.link_snapshot(repo_, commit_, "x", blob_));
  ASSERT_TRUE(st.link_snapshot(repo_, commit_, "y", only_old));
  ASSERT_TRUE(st.link_snapshot(repo_, newer, "x", blob_));
  ASSERT_TRUE(st.write_ref(repo_, "main", commit_));
  ASSERT_TRUE(st.remove_snapshot(repo_, commit_));
  EXPECT_TRUE(st.has_blob(repo_, blob_, 64));
  EXPECT_FALSE(fs::exists(st.blob_path(repo_, only_old)));
  EXPECT_FALSE(fs::exists(st.model_dir(repo_) / "refs/main"));
  ASSERT_TRUE(st.remove_snapshot(repo_, newer));
  EXPECT_FALSE(fs::exists(st.model_dir(repo_)));
}

TEST_F(StoreTest, journalSurvivesReopenAndIgnoresATornRecord) {
  const auto path = root_ / "j.chunks";
  {
    chunk_journal j;
    ASSERT_TRUE(j.open(path, 100, 10));
    ASSERT_TRUE(j.append({{0, 10}, {3, 4}, {9, 10}}));
    ASSERT_TRUE(j.append({{3, 7}, {0, 2}}));  // valid bytes only grow
  }
  {
    std::ofstream(path, std::ios::app | std::ios::binary)
        << std::string("\x05\x00\x00", 3);  // torn record
    chunk_journal j;
    ASSERT_TRUE(j.open(path, 100, 10));
    std::vector<std::uint32_t> expect(10, 0);
    expect[0] = 10;
    expect[3] = 7;
    expect[9] = 10;
    EXPECT_EQ(j.valid(), expect);
    ASSERT_TRUE(j.append({{5, 10}}));
  }
  chunk_journal j;
  ASSERT_TRUE(j.open(path, 100, 10));
  EXPECT_EQ(j.valid()[5], 10u);
  ASSERT_TRUE(j.open(path, 100, 20));  // another chunk size: the old records cannot be trusted
  EXPECT_EQ(std::count(j.valid().begin(), j.valid().end(), 0u), 5);
}

TEST_F(StoreTest, atomicWriteLeavesNoTempFiles) {
  ASSERT_TRUE(write_file_atomic(root_ / "f", "one"));
  ASSERT_TRUE(write_file_atomic(root_ / "f", "two"));
  EXPECT_EQ(slurp(root_ / "f"), "two");
  int n = 0;
  for (const auto& e [[maybe_unused]] : fs::directory_iterator(root_))
    ++n;
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(write_file_atomic(root_ / "missing-dir" / "f", "x"));
}
