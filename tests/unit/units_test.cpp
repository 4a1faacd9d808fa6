#include <gtest/gtest.h>

#include "voxd/common/units.hpp"

using namespace voxd;

TEST(UnitsTest, parsesDecimalAndBinarySizes) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("16MiB"), 16u << 20);
  EXPECT_EQ(*parse_size("1GB"), 1000000000u);
  EXPECT_EQ(*parse_size(" 2 KiB "), 2048u);
  EXPECT_EQ(*parse_size("1.5MiB"), 1572864u);
}

TEST(UnitsTest, rejectsBadSizesWithTheValueInTheMessage) {
  auto r = parse_size("12parsecs");
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("12parsecs"), std::string::npos);
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("-5MB"));
  EXPECT_FALSE(parse_size("1.2.3MB"));
  EXPECT_FALSE(parse_size("99999999999999999999999PB"));
}

TEST(UnitsTest, parsesRatesInBytesAndBits) {
  EXPECT_EQ(parse_rate("20MB/s", false)->bytes_per_second, 20000000u);
  EXPECT_EQ(parse_rate("125MB/s", false)->bytes_per_second, 125000000u);
  EXPECT_EQ(parse_rate("1Gbit", false)->bytes_per_second, 125000000u);
  EXPECT_EQ(parse_rate("200Mbit/s", false)->bytes_per_second, 25000000u);
  EXPECT_EQ(parse_rate("1MiB/s", false)->bytes_per_second, 1048576u);
  EXPECT_EQ(parse_rate("off", false)->type, rate_spec::kind::off);
  EXPECT_EQ(parse_rate("0", false)->type, rate_spec::kind::off);
}

TEST(UnitsTest, percentOnlyWhereAllowed) {
  auto r = parse_rate("30%", true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, rate_spec::kind::percent);
  EXPECT_DOUBLE_EQ(r->percent, 30);
  EXPECT_FALSE(parse_rate("30%", false));
  EXPECT_FALSE(parse_rate("130%", true));
  EXPECT_FALSE(parse_rate("0%", true));
}

TEST(UnitsTest, rejectsAmbiguousBitAndByteUnits) {
  auto r = parse_rate("10Mb", false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("ambiguous"), std::string::npos);
  EXPECT_FALSE(parse_rate("10 furlongs", false));
  EXPECT_FALSE(parse_rate("0.001B/s", false));
}

TEST(UnitsTest, parsesDurations) {
  EXPECT_EQ(*parse_duration("90"), 90);
  EXPECT_EQ(*parse_duration("5s"), 5);
  EXPECT_EQ(*parse_duration("1.5m"), 90);
  EXPECT_EQ(*parse_duration(" 24h "), 86400);
  EXPECT_EQ(*parse_duration("30d"), 30 * 86400);
  for (const char* bad : {"", "h", "5 hours", "-1s", "1w", "99999d"}) {
    auto r = parse_duration(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.err().message.find(std::string("'") + bad + "'"), std::string::npos) << bad;
  }
}

TEST(UnitsTest, formatsSecondsSoTheyParseBack) {
  for (std::uint64_t secs : {0ull, 5ull, 90ull, 300ull, 7200ull, 86400ull, 30 * 86400ull}) {
    const auto text = format_seconds(secs);
    EXPECT_EQ(*parse_duration(text), static_cast<double>(secs)) << text;
  }
  EXPECT_EQ(format_seconds(86400), "1d");
  EXPECT_EQ(format_seconds(90), "90s");
}

TEST(UnitsTest, spaceIsOffAutoASizeOrAShare) {
  EXPECT_EQ(parse_space("off")->of(1000), 0u);
  EXPECT_EQ(parse_space("80%")->of(1000), 800u);
  EXPECT_EQ(parse_space("2KiB")->of(1000), 2048u);
  EXPECT_EQ(parse_space("auto")->of(1000), 50u);               // 5%
  EXPECT_EQ(parse_space("auto")->of(1ull << 40), 2ull << 30);  // at most 2 GiB
  EXPECT_EQ(to_string(*parse_space("80%")), "80%");
  for (const char* bad : {"", "lots", "0%", "101%", "-5GiB"}) {
    auto r = parse_space(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.err().message.find(std::string("'") + bad + "'"), std::string::npos) << bad;
  }
}

TEST(UnitsTest, formatsForHumans) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(3ull << 30), "3.0 GiB");
  EXPECT_EQ(format_rate(85300000), "85.3 MB/s");
  EXPECT_EQ(format_duration(65), "1:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "--:--");
  EXPECT_EQ(to_string(*parse_rate("20MB/s", false)), "20.0 MB/s");
}
