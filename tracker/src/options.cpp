#include "voxd/tracker/options.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "voxd/common/files.hpp"

#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace voxd::tracker {
namespace {

using setter = std::function<std::optional<std::string>(tracker_config&, const std::string&)>;

template <class T>
setter number(T tracker_config::*, T lo, T hi, std::function<T&(tracker_config&)> ref) {
  return [lo, hi, ref](tracker_config& c, const std::string& v) -> std::optional<std::string> {
    T n{};
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || p != v.data() + v.size())
      return fmt::format("'{}' is not an integer", v);
    if (n < lo || n > hi) return fmt::format("{} is out of range [{}, {}]", v, lo, hi);
    ref(c) = n;
    return std::nullopt;
  };
}

const std::map<std::string, setter>& table() {
  static const std::map<std::string, setter> t = {
      {"listen",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         c.server.http_listen = v;
         return std::nullopt;
       }},
      {"udp",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         c.server.udp_listen = v;
         return std::nullopt;
       }},
      {"data_dir",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         c.data_dir = v;
         return std::nullopt;
       }},
      {"publish_token_file",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         c.publish_token_file = v;
         return std::nullopt;
       }},
      {"passkey",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v.find_first_of("/?&% ") != std::string::npos)
           return std::string("a passkey must not contain / ? & % or spaces");
         c.server.passkey = v;
         return std::nullopt;
       }},
      {"allow_list",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v != "true" && v != "false") return fmt::format("'{}' is not true or false", v);
         c.server.allow_list = v == "true";
         return std::nullopt;
       }},
      {"log_level",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error")
           return fmt::format("'{}' is not one of trace, debug, info, warn, error", v);
         c.log_level = v;
         return std::nullopt;
       }},
      {"interval",
       number<int>(nullptr, 2, 86400, [](tracker_config& c) -> int& { return c.server.interval; })},
      {"min_interval",
       number<int>(nullptr, 1, 86400,
                   [](tracker_config& c) -> int& { return c.server.min_interval; })},
      {"jitter_percent",
       number<int>(nullptr, 0, 50,
                   [](tracker_config& c) -> int& { return c.server.jitter_percent; })},
      {"max_requests_per_second",
       number<int>(nullptr, 0, 1'000'000,
                   [](tracker_config& c) -> int& { return c.server.max_requests_per_second; })},
      {"max_peers_per_swarm", number<std::uint32_t>(nullptr, 1, 10'000'000,
                                                    [](tracker_config& c) -> std::uint32_t& {
                                                      return c.limits.max_peers_per_swarm;
                                                    })},
      {"max_peers", number<std::uint64_t>(nullptr, 1, 1'000'000'000,
                                          [](tracker_config& c) -> std::uint64_t& {
                                            return c.limits.max_peers_total;
                                          })},
      {"max_numwant", number<int>(nullptr, 1, 5000,
                                  [](tracker_config& c) -> int& { return c.limits.max_numwant; })},
      {"site_prefix_v4",
       number<int>(nullptr, 0, 32,
                   [](tracker_config& c) -> int& { return c.limits.site_prefix_v4; })},
      {"site_prefix_v6",
       number<int>(nullptr, 0, 128,
                   [](tracker_config& c) -> int& { return c.limits.site_prefix_v6; })},
  };
  return t;
}

}  // namespace

status load_tracker_config(const std::string& path, tracker_config& c,
                           std::vector<config_error>& errors) {
  std::ifstream in(path);
  if (!in) {
    errors.push_back({path, 0, 0, "", fmt::format("cannot read: {}", errno_text(errno))});
    return make_error(errc::config, errors.back().format());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(ss.str());
  } catch (const YAML::Exception& e) {
    errors.push_back({path, e.mark.line + 1, e.mark.column + 1, "",
                      fmt::format("YAML syntax error: {}", e.msg)});
    return make_error(errc::config, errors.back().format());
  }
  if (root.IsNull()) return ok();
  if (!root.IsMap()) {
    errors.push_back({path, 1, 1, "", "the document must be a map of keys"});
    return make_error(errc::config, errors.back().format());
  }
  std::map<std::string, int> seen;
  for (const auto& kv : root) {
    const auto mark = kv.first.Mark();
    const auto key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
    if (seen[key]++) {
      errors.push_back({path, mark.line + 1, mark.column + 1, key, "key appears twice"});
      continue;
    }
    auto it = table().find(key);
    if (it == table().end()) {
      std::string known;
      for (const auto& [k, v] : table())
        known += (known.empty() ? "" : ", ") + k;
      errors.push_back({path, mark.line + 1, mark.column + 1, key,
                        fmt::format("unknown key (known keys: {})", known)});
      continue;
    }
    const auto vmark = kv.second.Mark();
    if (!kv.second.IsScalar()) {
      errors.push_back({path, vmark.line + 1, vmark.column + 1, key, "expected a single value"});
      continue;
    }
    if (auto err = it->second(c, kv.second.Scalar()))
      errors.push_back({path, vmark.line + 1, vmark.column + 1, key, *err});
  }
  if (!errors.empty()) return make_error(errc::config, errors.front().format());
  return ok();
}

status read_publish_token(tracker_config& c) {
  if (c.publish_token_file.empty()) return ok();
  auto t = read_token_file(c.publish_token_file);
  if (!t) return t.err();
  if (t->empty())
    return make_error(errc::config,
                      fmt::format("publish token file {} is empty", c.publish_token_file));
  c.server.publish_token = std::move(*t);
  return ok();
}

}  // namespace voxd::tracker
