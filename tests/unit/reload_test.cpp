#include "voxd/daemon/reload.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace voxd;

namespace {

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write("state_dir: " + dir_ + "\nsocket: " + dir_ + "/a.sock\n");
    std::vector<config_error> errors;
    running_ = *load_config(file_, errors);
    finalize_config(running_);
  }
  void write(const std::string& text) { std::ofstream(file_) << text; }

  voxd::testing::temp_dir tmp_{"reload"};
  std::string dir_ = tmp_.str(), file_ = dir_ + "/voxd.yaml";
  config running_;
};

}  // namespace

TEST_F(ReloadTest, liveKeysApplyAndRestartKeysKeepTheirRunningValues) {
  write("state_dir: " + dir_ + "\nsocket: " + dir_ + "/b.sock\nmax_active: 5\n");
  int accepted = 0, applied = 0;
  reload_hooks h;
  h.accepted = [&](const config& r, const config& next) {
    ++accepted;
    EXPECT_EQ(r.max_active, 2);  // not yet changed
    EXPECT_EQ(next.max_active, 5);
  };
  h.applied = [&](const config& r) {
    ++applied;
    EXPECT_EQ(r.max_active, 5);
  };
  EXPECT_TRUE(reload_config(file_, running_, h));
  EXPECT_EQ(running_.max_active, 5);
  EXPECT_EQ(running_.socket, dir_ + "/a.sock");  // needs a restart
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(applied, 1);
}

TEST_F(ReloadTest, anInvalidFileIsRefusedAndTheRunningValuesStay) {
  write("state_dir: " + dir_ + "\nmax_active: 500\nno_such_key: 1\n");
  const auto before = running_;
  bool called = false;
  reload_hooks h;
  h.accepted = [&](const config&, const config&) { called = true; };
  EXPECT_FALSE(reload_config(file_, running_, h));
  EXPECT_FALSE(called);
  EXPECT_TRUE(config_changes(before, running_).empty());
}

TEST_F(ReloadTest, originsTheDaemonCannotUseRefuseTheWholeReload) {
  write("state_dir: " + dir_ + "\nmax_active: 4\norigins: [https://mirror.example]\n");
  reload_hooks h;
  h.origins = [](const std::vector<origin_config>&) -> status {
    return make_error(errc::config, "token_file unreadable");
  };
  EXPECT_FALSE(reload_config(file_, running_, h));
  EXPECT_EQ(running_.max_active, 2);
  EXPECT_EQ(running_.origins[0].url, "https://huggingface.co");
}
