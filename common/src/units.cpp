#include "voxd/common/units.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <limits>

namespace voxd {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Splits "12.5MiB" into 12.5 and "MiB".
bool split_number(std::string_view s, double& number, std::string_view& unit) {
  std::size_t i = 0;
  while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
    ++i;
  if (i == 0) return false;
  const auto num = s.substr(0, i);
  if (num.find('.') != num.rfind('.')) return false;
  const auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), number);
  if (ec != std::errc{} || ptr != num.data() + num.size()) return false;
  unit = trim(s.substr(i));
  return std::isfinite(number);
}

// Multiplier of a prefix such as "", "k", "Mi"; returns 0 if unknown. Consumes the prefix.
double take_prefix(std::string_view& unit) {
  static constexpr std::array<char, 5> letters{'k', 'm', 'g', 't', 'p'};
  if (unit.empty()) return 1;
  const char c = static_cast<char>(unit.front() | 0x20);
  for (std::size_t i = 0; i < letters.size(); ++i) {
    if (c != letters[i]) continue;
    if (unit.front() == 'm' && unit.size() > 1 && unit[1] == 'b')
      return 0;  // "mb" is ambiguous (milli-bits); demand "MB" or "Mbit"
    unit.remove_prefix(1);
    if (!unit.empty() && unit.front() == 'i') {
      unit.remove_prefix(1);
      return std::pow(1024.0, static_cast<double>(i + 1));
    }
    return std::pow(1000.0, static_cast<double>(i + 1));
  }
  return 1;
}

result<double> checked(double v, std::string_view text) {
  if (v > static_cast<double>(std::numeric_limits<std::int64_t>::max()))
    return make_error(errc::invalid_argument, fmt::format("'{}' is too large", text));
  return std::floor(v);
}

}  // namespace

result<std::uint64_t> parse_size(std::string_view text) {
  const auto s = trim(text);
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a size (examples: 4096, 16MiB, 1GB)", text));
  const auto mult = take_prefix(unit);
  if (mult == 0 || !(unit.empty() || unit == "B"))
    return make_error(
        errc::invalid_argument,
        fmt::format("'{}' has an unknown size unit (use B, kB, MB, GB, KiB, MiB, GiB)", text));
  auto v = checked(n * mult, text);
  if (!v) return v.err();
  return static_cast<std::uint64_t>(*v);
}

result<double> parse_duration(std::string_view text) {
  const auto s = trim(text);
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a duration (examples: 90s, 5m, 24h, 30d)", text));
  static constexpr std::array<std::pair<std::string_view, double>, 5> units{
      {{"", 1}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}}};
  for (const auto& [name, secs] : units)
    if (unit == name) {
      // Ten years is more than any wait voxd has.
      if (n * secs > 10 * 365 * 86400.0)
        return make_error(errc::invalid_argument, fmt::format("'{}' is too long", text));
      return n * secs;
    }
  return make_error(errc::invalid_argument,
                    fmt::format("'{}' has an unknown time unit (use s, m, h or d)", text));
}

std::string format_seconds(std::uint64_t seconds) {
  for (const auto& [unit, secs] : {std::pair{'d', 86400u}, {'h', 3600u}, {'m', 60u}})
    if (seconds > 0 && seconds % secs == 0) return fmt::format("{}{}", seconds / secs, unit);
  return fmt::format("{}s", seconds);
}

std::uint64_t space_spec::of(std::uint64_t fs_size) const {
  switch (type) {
    case kind::off:
      return 0;
    case kind::bytes:
      return bytes;
    case kind::percent:
      return static_cast<std::uint64_t>(static_cast<double>(fs_size) * percent / 100);
    case kind::automatic:
      return std::min<std::uint64_t>(fs_size / 20, 2ull << 30);
  }
  return 0;
}

result<space_spec> parse_space(std::string_view text) {
  const auto s = trim(text);
  if (s == "off") return space_spec{};
  if (s == "auto") return space_spec{space_spec::kind::automatic, 0, 0};
  if (!s.empty() && s.back() == '%') {
    double n = 0;
    std::string_view unit;
    if (!split_number(s, n, unit) || unit != "%" || n <= 0 || n > 100)
      return make_error(errc::invalid_argument,
                        fmt::format("'{}': a percentage must be above 0 and at most 100", text));
    return space_spec{space_spec::kind::percent, 0, n};
  }
  auto v = parse_size(s);
  if (!v)
    return make_error(
        errc::invalid_argument,
        fmt::format("'{}' is not off, auto, a size (50GiB) or a percentage (80%)", text));
  return space_spec{space_spec::kind::bytes, *v, 0};
}

std::string to_string(const space_spec& s) {
  switch (s.type) {
    case space_spec::kind::off:
      return "off";
    case space_spec::kind::bytes:
      return format_bytes(s.bytes);
    case space_spec::kind::percent:
      return fmt::format("{}%", s.percent);
    case space_spec::kind::automatic:
      return "auto";
  }
  return "off";
}

result<rate_spec> parse_rate(std::string_view text, bool allow_percent) {
  auto s = trim(text);
  if (s == "off" || s == "unlimited" || s == "0") return rate_spec::off();
  double n = 0;
  std::string_view unit;
  if (!split_number(s, n, unit))
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' is not a rate (examples: 20MB/s, 1Gbit, {}off)", text,
                                  allow_percent ? "30%, " : ""));
  if (unit == "%") {
    if (!allow_percent)
      return make_error(errc::invalid_argument,
                        fmt::format("'{}': a percentage is not allowed here", text));
    if (n <= 0 || n > 100)
      return make_error(errc::invalid_argument,
                        fmt::format("'{}': a percentage must be above 0 and at most 100", text));
    return rate_spec{rate_spec::kind::percent, 0, n};
  }
  if (unit.size() >= 2 && unit.substr(unit.size() - 2) == "/s") unit.remove_suffix(2);
  const auto mult = take_prefix(unit);
  double bytes = 0;
  if (mult != 0 && (unit == "B" || unit.empty())) {
    bytes = n * mult;
  } else if (mult != 0 && (unit == "bit" || unit == "bps" || unit == "b")) {
    if (unit == "b")
      return make_error(
          errc::invalid_argument,
          fmt::format("'{}' is ambiguous: write 'bit' for bits or 'B' for bytes", text));
    bytes = n * mult / 8;
  } else {
    return make_error(errc::invalid_argument,
                      fmt::format("'{}' has an unknown rate unit (use B/s, kB/s, MB/s, MiB/s, "
                                  "Mbit, Gbit{})",
                                  text, allow_percent ? " or %" : ""));
  }
  auto v = checked(bytes, text);
  if (!v) return v.err();
  if (*v < 1) return make_error(errc::invalid_argument, fmt::format("'{}' is below 1 B/s", text));
  return rate_spec::absolute(static_cast<std::uint64_t>(*v));
}

std::string to_string(const rate_spec& r) {
  switch (r.type) {
    case rate_spec::kind::off:
      return "off";
    case rate_spec::kind::percent:
      return fmt::format("{:g}%", r.percent);
    case rate_spec::kind::bytes_per_second:
      return format_rate(static_cast<double>(r.bytes_per_second));
  }
  return "off";
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 6> units{"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  auto v = static_cast<double>(bytes);
  std::size_t u = 0;
  while (v >= 1024 && u + 1 < units.size()) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.1f} {}", v, units[u]);
}

std::string format_rate(double bps) {
  static constexpr std::array<const char*, 5> units{"B/s", "kB/s", "MB/s", "GB/s", "TB/s"};
  std::size_t u = 0;
  while (bps >= 1000 && u + 1 < units.size()) {
    bps /= 1000;
    ++u;
  }
  if (u == 0) return fmt::format("{:.0f} {}", bps, units[u]);
  return fmt::format("{:.1f} {}", bps, units[u]);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto total = static_cast<std::uint64_t>(seconds + 0.5);
  const auto h = total / 3600, m = (total / 60) % 60, s = total % 60;
  if (h > 0) return fmt::format("{}:{:02}:{:02}", h, m, s);
  return fmt::format("{}:{:02}", m, s);
}

}  // namespace voxd
