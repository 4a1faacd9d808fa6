#include <gtest/gtest.h>

#include "voxd/common/hash.hpp"
#include "voxd/common/ids.hpp"

using namespace voxd;

TEST(IdsTest, repoIdMapsToTheCacheDirectoryName) {
  auto r = repo_id::parse("openbmb/VoxCPM1.5");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->cache_dir_name(), "models--openbmb--VoxCPM1.5");
}

TEST(IdsTest, repoIdRejectsTraversalAndOddShapes) {
  for (auto bad : {"", "a", "a/b/c", "../x", "a/..", "a/.hidden", "a b/c", "org/na--me", "org/",
                   "/name", "a/b\n"})
    EXPECT_FALSE(repo_id::parse(bad)) << bad;
}

TEST(IdsTest, blobIdKnowsItsHashKind) {
  auto sha = blob_id::parse(std::string(64, 'a'));
  auto git = blob_id::parse(std::string(40, 'b'));
  ASSERT_TRUE(sha);
  ASSERT_TRUE(git);
  EXPECT_EQ(sha->kind(), blob_kind::sha256);
  EXPECT_EQ(git->kind(), blob_kind::git_sha1);
  EXPECT_FALSE(blob_id::parse(std::string(64, 'A')));
  EXPECT_FALSE(blob_id::parse(std::string(41, 'a')));
  EXPECT_FALSE(commit_id::parse(std::string(39, 'a')));
}

TEST(IdsTest, repoPathsMustStayInsideTheSnapshot) {
  EXPECT_TRUE(validate_repo_path("model.safetensors"));
  EXPECT_TRUE(validate_repo_path("a/b/c.json"));
  for (auto bad : {"", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a\\b", "a/", "x\ny"})
    EXPECT_FALSE(validate_repo_path(bad)) << bad;
}

TEST(IdsTest, revisionsAreSafeAsRefPaths) {
  EXPECT_TRUE(validate_revision("main"));
  EXPECT_TRUE(validate_revision("refs/pr/1"));
  EXPECT_TRUE(validate_revision(std::string(40, 'a')));
  for (auto bad : {"", "..", "a/../b", "a b", "x:y", "/main", "main/"})
    EXPECT_FALSE(validate_revision(bad)) << bad;
}

TEST(HashTest, gitBlobSha1MatchesGit) {
  // `git hash-object /dev/null` and `printf 'hello\n' | git hash-object --stdin`
  EXPECT_EQ(git_blob_sha1_hex({}), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  std::string hello = "hello\n";
  EXPECT_EQ(git_blob_sha1_hex(hello), "ce013625030ba8dba906f756967f9e9ca394464a");
}

TEST(HashTest, sha256InPiecesEqualsSha256Whole) {
  std::string abc = "abc";
  EXPECT_EQ(sha256_hex(abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  content_hasher h(blob_kind::sha256, 3);
  h.update(std::string_view("a"));
  h.update(std::string_view("bc"));
  EXPECT_EQ(h.finish_hex(), sha256_hex(abc));
}
