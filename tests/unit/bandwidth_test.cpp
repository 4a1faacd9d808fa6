#include "voxd/daemon/bandwidth.hpp"

#include "temp_dir.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace voxd;
using namespace std::chrono_literals;

namespace {

rate_spec rate(const char* text, bool percent = true) {
  auto r = parse_rate(text, percent);
  EXPECT_TRUE(r) << text;
  return r ? *r : rate_spec{};
}

class BandwidthTest : public ::testing::Test {
 protected:
  voxd::testing::temp_dir dir_{"bandwidth"};
  std::string file_ = dir_.str() + "/settings.json";
  config cfg_ = default_config();
};

}  // namespace

TEST(LinkEstimate, aRateCountsOnlyOnceSustainedOverAWholeWindow) {
  link_estimate l;
  const auto t0 = link_estimate::clock::now();
  for (int s = 0; s < 5; ++s)
    l.sample(t0 + std::chrono::seconds(s), 1, static_cast<std::uint64_t>(s) * 10'000'000, true);
  EXPECT_EQ(l.peak(), 0);  // four seconds of 10 MB/s: not yet a window
  EXPECT_TRUE(l.sample(t0 + 5s, 1, 50'000'000, true));
  EXPECT_NEAR(l.peak(), 10e6, 1e3);
  // A pause starts the window over: a burst after it says nothing until it lasts.
  l.sample(t0 + 6s, 1, 50'000'000, false);
  l.sample(t0 + 7s, 1, 50'000'000, true);
  l.sample(t0 + 8s, 1, 150'000'000, true);
  EXPECT_LT(l.peak(), 10.1e6);
}

TEST(LinkEstimate, thePeakDecaysAboutOnePercentAMinute) {
  link_estimate l(100e6);
  const auto t0 = link_estimate::clock::now();
  l.sample(t0, 60, 0, false);
  EXPECT_NEAR(l.peak(), 99e6, 1e3);
  // A slower transfer does not lower it faster.
  for (int s = 1; s <= 6; ++s)
    l.sample(t0 + std::chrono::seconds(s), 1, static_cast<std::uint64_t>(s) * 1'000'000, true);
  EXPECT_GT(l.peak(), 98.8e6);
}

TEST_F(BandwidthTest, aPercentCapIsAShareOfTheLink) {
  cfg_.upload_cap = rate("30%");
  bandwidth unmeasured(cfg_, file_);
  EXPECT_EQ(unmeasured.upload_bytes_per_second(), 37'500'000u);  // of 1 Gbit/s
  cfg_.link = 100'000'000;
  bandwidth configured(cfg_, file_);
  EXPECT_EQ(configured.upload_bytes_per_second(), 30'000'000u);
  cfg_.upload_cap = rate("4MB/s");
  EXPECT_EQ(bandwidth(cfg_, file_).upload_bytes_per_second(), 4'000'000u);
  cfg_.upload_cap = rate("off");
  EXPECT_EQ(bandwidth(cfg_, file_).upload_bytes_per_second(), 0u);
}

TEST_F(BandwidthTest, capsReachTheSinksAndOverridesSurviveARestart) {
  cfg_.upload_cap = rate("30%");
  cfg_.link = 100'000'000;
  std::uint64_t down = 1, up = 1;
  {
    bandwidth bw(cfg_, file_);
    bw.load();
    bw.attach({[&](std::uint64_t b) { down = b; }, [&](std::uint64_t b) { up = b; }});
    EXPECT_EQ(down, 0u);
    EXPECT_EQ(up, 30'000'000u);
    bw.set_download_cap(rate("5MB/s", false));
    bw.set_upload_cap(rate("10%"));
    EXPECT_EQ(down, 5'000'000u);
    EXPECT_EQ(up, 10'000'000u);
  }
  bandwidth again(cfg_, file_);
  again.load();
  EXPECT_EQ(again.download_cap().bytes_per_second, 5'000'000u);
  EXPECT_EQ(again.upload_bytes_per_second(), 10'000'000u);
}

TEST_F(BandwidthTest, aReloadReplacesOnlyTheCapsTheFileChanged) {
  bandwidth bw(cfg_, file_);
  bw.set_upload_cap(rate("1MB/s"));
  bw.set_download_cap(rate("2MB/s", false));
  auto next = cfg_;
  next.download_cap = rate("3MB/s", false);
  bw.reconfigure(cfg_, next);
  EXPECT_EQ(bw.download_cap().bytes_per_second, 3'000'000u);  // changed in the file
  EXPECT_EQ(bw.upload_cap().bytes_per_second, 1'000'000u);    // the override stays
}

TEST_F(BandwidthTest, anUnreadableSettingsFileKeepsTheConfiguredCaps) {
  std::ofstream(file_) << "{ not json";
  cfg_.download_cap = rate("7MB/s", false);
  bandwidth bw(cfg_, file_);
  bw.load();
  EXPECT_EQ(bw.download_cap().bytes_per_second, 7'000'000u);
  EXPECT_TRUE(std::filesystem::exists(file_));  // left for a person to look at
}

TEST_F(BandwidthTest, theMeasuredLinkIsRememberedAndNotMeasuredUnderADownloadCap) {
  {
    bandwidth bw(cfg_, file_);
    const auto t0 = link_estimate::clock::now();
    for (int s = 0; s <= 5; ++s)
      bw.sample(t0 + std::chrono::seconds(s), 1, static_cast<std::uint64_t>(s) * 20'000'000, true);
    EXPECT_NEAR(bw.link_rate(), 20e6, 1e3);
  }
  bandwidth again(cfg_, file_);
  again.load();
  EXPECT_NEAR(again.link_rate(), 20e6, 1e3);
  again.set_download_cap(rate("1MB/s", false));
  const auto t0 = link_estimate::clock::now();
  for (int s = 0; s <= 5; ++s)
    again.sample(t0 + std::chrono::seconds(s), 1, static_cast<std::uint64_t>(s) * 90'000'000, true);
  EXPECT_LT(again.link_rate(), 20.1e6);
}
