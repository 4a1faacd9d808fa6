#include <gtest/gtest.h>

#include "voxd/daemon/hub_api.hpp"

using namespace voxd;
using namespace voxd::hub;

TEST(HubApiTest, buildsHubUrls) {
  auto repo = *repo_id::parse("openbmb/VoxCPM1.5");
  auto commit = *commit_id::parse(std::string(40, 'a'));
  EXPECT_EQ(revision_url("https://huggingface.co/", repo, "refs/pr/1"),
            "https://huggingface.co/api/models/openbmb/VoxCPM1.5/revision/refs%2Fpr%2F1");
  EXPECT_EQ(tree_url("https://h", repo, commit), "https://h/api/models/openbmb/VoxCPM1.5/tree/" +
                                                     std::string(40, 'a') +
                                                     "?recursive=true&expand=false");
  EXPECT_EQ(
      resolve_url("https://h", repo, commit, "sub dir/a+b.json"),
      "https://h/openbmb/VoxCPM1.5/resolve/" + std::string(40, 'a') + "/sub%20dir/a%2Bb.json");
}

TEST(HubApiTest, parsesTheRevisionCommit) {
  auto c = parse_revision(R"({"id":"openbmb/VoxCPM1.5","sha":")" + std::string(40, 'c') +
                          R"(","siblings":[]})");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->str(), std::string(40, 'c'));
  EXPECT_FALSE(parse_revision(R"({"sha":"xyz"})"));
  EXPECT_FALSE(parse_revision(R"({"sha":5})"));
  EXPECT_FALSE(parse_revision("[]"));
}

TEST(HubApiTest, treeEntriesUseLfsOidForLargeFilesAndGitOidOtherwise) {
  const auto sha = std::string(64, 'f');
  const auto oid = std::string(40, 'e');
  auto entries = parse_tree_page(R"([
    {"type":"directory","oid":")" +
                                 oid + R"(","size":0,"path":"sub"},
    {"type":"file","oid":")" + oid +
                                 R"(","size":519,"path":"config.json"},
    {"type":"file","oid":")" + oid +
                                 R"(","size":134,"path":"sub/model.safetensors",
     "lfs":{"oid":")" + sha + R"(","size":1603459712,"pointerSize":134},"xetHash":"ab"}
  ])");
  ASSERT_TRUE(entries) << entries.err().message;
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0], (manifest_entry{"config.json", 519, oid}));
  EXPECT_EQ((*entries)[1], (manifest_entry{"sub/model.safetensors", 1603459712, sha}));
}

TEST(HubApiTest, hostileTreeEntriesAreRefusedWithTheReason) {
  const auto oid = std::string(40, 'e');
  auto bad = [&](const std::string& entry) {
    auto r = parse_tree_page("[" + entry + "]");
    EXPECT_FALSE(r) << entry;
    return r ? std::string() : r.err().message;
  };
  EXPECT_NE(bad(R"({"type":"file","oid":")" + oid + R"(","size":1,"path":"../../etc/passwd"})")
                .find("'..'"),
            std::string::npos);
  bad(R"({"type":"file","oid":")" + oid + R"(","size":-1,"path":"a"})");
  bad(R"({"type":"file","oid":"xyz","size":1,"path":"a"})");
  bad(R"({"type":"file","oid":")" + oid + R"(","size":1,"path":"/abs"})");
  bad(R"({"type":"file","oid":")" + oid +
      R"(","size":1,"path":"a","lfs":{"oid":"short","size":1}})");
  bad(R"({"type":"symlink","oid":")" + oid + R"(","size":1,"path":"a"})");
  bad(R"({"type":"file","size":1,"path":"a"})");
  bad(R"("just a string")");
  EXPECT_FALSE(parse_tree_page("{}"));
}

TEST(HubApiTest, followsOnlyTheNextLink) {
  EXPECT_EQ(*parse_link_next(R"(<https://h/api/x?cursor=abc>; rel="next")"),
            "https://h/api/x?cursor=abc");
  EXPECT_EQ(*parse_link_next(R"(<https://h/p>; rel="prev", <https://h/n>; rel="next")"),
            "https://h/n");
  EXPECT_FALSE(parse_link_next(R"(<https://h/p>; rel="prev")"));
  EXPECT_FALSE(parse_link_next(""));
  EXPECT_FALSE(parse_link_next("<unterminated"));
}

TEST(HubApiTest, normalizesEtagsAndResolvesRedirects) {
  EXPECT_EQ(normalize_etag(R"(W/"abc")"), "abc");
  EXPECT_EQ(normalize_etag(R"("abc")"), "abc");
  EXPECT_EQ(resolve_location("https://h:1/a/b?q", "https://cdn/x"), "https://cdn/x");
  EXPECT_EQ(resolve_location("https://h:1/a/b?q", "/c/d"), "https://h:1/c/d");
  EXPECT_EQ(resolve_location("https://h:1/a/b?q", "//cdn/x"), "https://cdn/x");
  EXPECT_EQ(resolve_location("https://h:1/a/b?q", "c"), "https://h:1/a/c");
  EXPECT_EQ(url_authority("HTTPS://Hub.Example:443/x"), "https://hub.example:443");
  EXPECT_NE(url_authority("http://127.0.0.1:80/x"), url_authority("http://127.0.0.2:80/x"));
}
