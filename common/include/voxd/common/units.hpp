#pragma once
// Human units for sizes and rates: "16MiB", "20MB/s", "1Gbit", "30%", "off".
// Decimal prefixes are powers of 1000, binary ("Ki", "Mi", ...) powers of 1024; "bit" means bits.

#include <cstdint>
#include <string>
#include <string_view>

#include "voxd/common/error.hpp"

namespace voxd {

result<std::uint64_t> parse_size(std::string_view text);
// "90s", "5m", "24h", "30d", "1.5h" (a bare number is seconds); the result in seconds.
result<double> parse_duration(std::string_view text);
// Whole seconds in the largest unit parse_duration reads back exactly: "24h", "90s", "0s".
std::string format_seconds(std::uint64_t seconds);

// A rate as configured: unlimited, an absolute number of bytes per second, or a share of the link.
struct rate_spec {
  enum class kind { off, bytes_per_second, percent } type = kind::off;
  std::uint64_t bytes_per_second = 0;
  double percent = 0;

  static rate_spec off() { return {}; }
  static rate_spec absolute(std::uint64_t bps) { return {kind::bytes_per_second, bps, 0}; }
  bool operator==(const rate_spec&) const = default;
};

// Room on a file system: off, a size, a share of the file system, or auto (5% of it, at most
// 2 GiB).
struct space_spec {
  enum class kind { off, bytes, percent, automatic } type = kind::off;
  std::uint64_t bytes = 0;
  double percent = 0;

  // The bytes this means on a file system of fs_size bytes; 0 when off.
  std::uint64_t of(std::uint64_t fs_size) const;
  bool operator==(const space_spec&) const = default;
};
// "off", "auto", "50GiB", "80%".
result<space_spec> parse_space(std::string_view text);
std::string to_string(const space_spec& s);

// allow_percent: whether "30%" is meaningful for this setting.
result<rate_spec> parse_rate(std::string_view text, bool allow_percent);
std::string to_string(const rate_spec& r);

std::string format_bytes(std::uint64_t bytes);     // "1.5 GiB"
std::string format_rate(double bytes_per_second);  // "85.3 MB/s"
std::string format_duration(double seconds);       // "1:02:03", "4:05"

}  // namespace voxd
