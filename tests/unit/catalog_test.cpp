#include <gtest/gtest.h>

#include "voxd/daemon/catalog.hpp"

using namespace voxd;

TEST(CatalogTest, builtInAliasResolvesToTheHubRepoAtMain) {
  catalog c({});
  auto s = c.resolve("voxcpm-1.5", "");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->repo.str(), "openbmb/VoxCPM1.5");
  EXPECT_EQ(s->revision, "main");
  EXPECT_EQ(s->key(), "openbmb/VoxCPM1.5@main");
}

TEST(CatalogTest, repoIdsAndRevisions) {
  catalog c({});
  EXPECT_EQ(c.resolve("org/name", "")->key(), "org/name@main");
  EXPECT_EQ(c.resolve("org/name@v2", "")->key(), "org/name@v2");
  EXPECT_EQ(c.resolve("org/name@v2", "v3")->key(), "org/name@v3");
  EXPECT_EQ(c.resolve("voxcpm2@abc", "")->revision, "abc");
  EXPECT_FALSE(c.resolve("org/name@..", ""));
}

TEST(CatalogTest, configAliasesAddToAndOverrideTheBuiltIns) {
  catalog c({{"tts", {"org/tts", "stable"}}, {"voxcpm2", {"mirror/VoxCPM2", "main"}}});
  EXPECT_EQ(c.resolve("tts", "")->key(), "org/tts@stable");
  EXPECT_EQ(c.resolve("voxcpm2", "")->repo.str(), "mirror/VoxCPM2");
}

TEST(CatalogTest, unknownNameListsCloseMatches) {
  catalog c({});
  auto s = c.resolve("voxcpm15", "");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.err().code, errc::not_found);
  EXPECT_NE(s.err().message.find("unknown model 'voxcpm15'"), std::string::npos);
  EXPECT_NE(s.err().message.find("voxcpm-1.5"), std::string::npos);
  auto far = c.resolve("llama", "");
  ASSERT_FALSE(far);
  EXPECT_NE(far.err().message.find("known aliases"), std::string::npos);
}
