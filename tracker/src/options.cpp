#include "voxd/tracker/options.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "voxd/common/files.hpp"
#include "voxd/common/man.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace voxd::tracker {
namespace {

using setter = std::function<std::optional<std::string>(tracker_config&, const std::string&)>;

// One configuration key: the YAML loader, --check-config, the commented default file, the Markdown
// reference and voxd-tracker(8) all read this table.
struct field {
  std::string_view key;
  std::string_view type;
  std::string_view help;
  setter set;
  std::function<std::string(const tracker_config&)> show;
};

template <class T>
setter number(T lo, T hi, std::function<T&(tracker_config&)> ref) {
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

template <class T>
field number_field(std::string_view key, std::string_view type, std::string_view help, T lo, T hi,
                   T& (*ref)(tracker_config&)) {
  return {key, type, help, number<T>(lo, hi, ref), [ref](const tracker_config& c) {
            auto copy = c;
            return std::to_string(ref(copy));
          }};
}

field text_field(std::string_view key, std::string_view type, std::string_view help,
                 std::string& (*ref)(tracker_config&)) {
  return {key, type, help,
          [ref](tracker_config& c, const std::string& v) -> std::optional<std::string> {
            ref(c) = v;
            return std::nullopt;
          },
          [ref](const tracker_config& c) {
            auto copy = c;
            return ref(copy);
          }};
}

const std::vector<field>& fields() {
  static const std::vector<field> t = {
      text_field("listen", "address",
                 "HTTP listen address `IP:PORT` (announce, scrape, registry, metrics); empty: no "
                 "HTTP.",
                 [](tracker_config& c) -> std::string& { return c.server.http_listen; }),
      text_field("udp", "address", "UDP (BEP 15) listen address `IP:PORT`; empty: no UDP.",
                 [](tracker_config& c) -> std::string& { return c.server.udp_listen; }),
      text_field("data_dir", "path", "Where registered torrents are stored.",
                 [](tracker_config& c) -> std::string& { return c.data_dir; }),
      text_field("publish_token_file", "path",
                 "File holding the bearer token that registry writes (PUT, POST, DELETE) need; "
                 "empty: writes are open.",
                 [](tracker_config& c) -> std::string& { return c.publish_token_file; }),
      {"passkey", "text", "Serve only `/announce/<passkey>` and `/scrape/<passkey>`; empty: any.",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v.find_first_of("/?&% ") != std::string::npos)
           return std::string("a passkey must not contain / ? & % or spaces");
         c.server.passkey = v;
         return std::nullopt;
       },
       [](const tracker_config& c) { return c.server.passkey; }},
      {"allow_list", "boolean", "Serve only info-hashes of torrents in the registry.",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v != "true" && v != "false") return fmt::format("'{}' is not true or false", v);
         c.server.allow_list = v == "true";
         return std::nullopt;
       },
       [](const tracker_config& c) { return std::string(c.server.allow_list ? "true" : "false"); }},
      {"log_level", "level", "`trace`, `debug`, `info`, `warn` or `error`.",
       [](tracker_config& c, const std::string& v) -> std::optional<std::string> {
         if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error")
           return fmt::format("'{}' is not one of trace, debug, info, warn, error", v);
         c.log_level = v;
         return std::nullopt;
       },
       [](const tracker_config& c) { return c.log_level; }},
      number_field<int>("interval", "seconds", "Announce interval sent to clients (2 to 86400).", 2,
                        86400, [](tracker_config& c) -> int& { return c.server.interval; }),
      number_field<int>("min_interval", "seconds",
                        "Minimum announce interval sent to clients (at most `interval`).", 1, 86400,
                        [](tracker_config& c) -> int& { return c.server.min_interval; }),
      number_field<int>(
          "jitter_percent", "percent",
          "Spread of both intervals (0 to 50), so that a fleet started together spreads out.", 0,
          50, [](tracker_config& c) -> int& { return c.server.jitter_percent; }),
      number_field<int>("max_requests_per_second", "integer",
                        "Requests per second per source address; 0: any.", 0, 1'000'000,
                        [](tracker_config& c) -> int& { return c.server.max_requests_per_second; }),
      number_field<std::uint32_t>(
          "max_peers_per_swarm", "integer",
          "Peers kept per info-hash; when full, the oldest sixteenth makes room.", 1, 10'000'000,
          [](tracker_config& c) -> std::uint32_t& { return c.limits.max_peers_per_swarm; }),
      number_field<std::uint64_t>(
          "max_peers", "integer", "Peers kept in all (about 30 bytes each).", 1, 1'000'000'000,
          [](tracker_config& c) -> std::uint64_t& { return c.limits.max_peers_total; }),
      number_field<int>("max_numwant", "integer", "Most peers in one answer.", 1, 5000,
                        [](tracker_config& c) -> int& { return c.limits.max_numwant; }),
      number_field<int>("site_prefix_v4", "bits",
                        "Leading IPv4 address bits that make a site. A site's first leecher alone "
                        "hears of other sites' peers, so a site pulls about one copy over its WAN "
                        "link; 0: no site locality.",
                        0, 32, [](tracker_config& c) -> int& { return c.limits.site_prefix_v4; }),
      number_field<int>("site_prefix_v6", "bits", "The same for IPv6 addresses.", 0, 128,
                        [](tracker_config& c) -> int& { return c.limits.site_prefix_v6; }),
  };
  return t;
}

const field* find_field(std::string_view key) {
  for (const auto& f : fields())
    if (f.key == key) return &f;
  return nullptr;
}

std::string shown(const field& f) {
  const auto v = f.show(tracker_config{});
  return v.empty() ? "(none)" : v;
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
    const auto* f = find_field(key);
    if (!f) {
      std::string known;
      for (const auto& k : fields())
        known += fmt::format("{}{}", known.empty() ? "" : ", ", k.key);
      errors.push_back({path, mark.line + 1, mark.column + 1, key,
                        fmt::format("unknown key (known keys: {})", known)});
      continue;
    }
    const auto vmark = kv.second.Mark();
    if (!kv.second.IsScalar()) {
      errors.push_back({path, vmark.line + 1, vmark.column + 1, key, "expected a single value"});
      continue;
    }
    if (auto err = f->set(c, kv.second.Scalar()))
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

namespace voxd::tracker {

std::string render_default_config() {
  std::string out =
      "# voxd-tracker configuration. Every key is shown with its default; uncomment to change.\n"
      "# Command-line flags win over this file; SIGHUP re-reads it. Reference: "
      "docs/tracker-configuration.md,\n# or `voxd-tracker --print-config-reference`.\n";
  for (const auto& f : fields()) {
    std::string help(f.help);
    help.erase(std::remove(help.begin(), help.end(), '`'), help.end());
    out += fmt::format("\n# {} ({})\n# {}\n#{}: {}\n", f.key, f.type, help, f.key,
                       f.show(tracker_config{}));
  }
  return out;
}

std::string render_config_reference() {
  std::string out =
      "# voxd-tracker configuration keys\n\n"
      "Generated by `voxd-tracker --print-config-reference` from the table in "
      "tracker/src/options.cpp.\nEvery key is optional. The file is read with `--config FILE` "
      "and re-read on SIGHUP;\ncommand-line flags win. `--check-config` checks a file and "
      "reports `file:line:column: key: problem`.\n\n| key | type | default | meaning "
      "|\n|---|---|---|---|\n";
  for (const auto& f : fields())
    out += fmt::format("| `{}` | {} | `{}` | {} |\n", f.key, f.type, shown(f), f.help);
  return out;
}

std::string render_man_page(const std::vector<std::pair<std::string, std::string>>& options) {
  std::string out =
      "\\\" Generated by `voxd-tracker --print-man` from tracker/main.cpp and the table in "
      "tracker/src/options.cpp.\n"
      ".TH VOXD\\-TRACKER 8 \"\" \"voxd\" \"System Administration\"\n"
      ".SH NAME\nvoxd\\-tracker \\- BitTorrent tracker and blob registry for voxd sites\n"
      ".SH SYNOPSIS\n\\fBvoxd\\-tracker\\fR [\\fIOPTIONS\\fR]\n"
      ".SH DESCRIPTION\n\\fBvoxd\\-tracker\\fR tells the voxd daemons of a site (and any "
      "BitTorrent client) who has which blob, over HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15), "
      "and keeps the registry of blob torrents and first\\-fetch leases the daemons publish and "
      "read. One machine per site runs it. Peers of one site (see \\fBsite_prefix_v4\\fR) share "
      "what one of them fetched over the WAN.\n"
      ".SH OPTIONS\n";
  for (const auto& [names, help] : options)
    out += fmt::format(".TP\n\\fB{}\\fR\n{}\n", roff(names), roff_help(help));
  out += ".SH CONFIGURATION KEYS\n";
  for (const auto& f : fields())
    out += fmt::format(".TP\n.B {}\n({}; default: {})\n{}\n", roff(f.key), roff(f.type),
                       roff(shown(f)), roff_help(f.help));
  out +=
      ".SH SIGNALS\n.TP\n\\fBSIGHUP\\fR\nRe\\-read the configuration file and the publish "
      "token: intervals, limits and the allow\\-list mode apply at once; an invalid file is "
      "refused and the running configuration stays.\n"
      ".TP\n\\fBSIGTERM\\fR, \\fBSIGINT\\fR\nStop.\n"
      ".SH FILES\n.TP\n.I /etc/voxd/tracker.yaml\nThe configuration read by "
      "\\fBvoxd\\-tracker.service\\fR.\n"
      ".TP\n.I /var/lib/voxd\\-tracker\nThe registry (\\fBdata_dir\\fR).\n"
      ".SH SEE ALSO\n\\fBvoxd\\-daemon\\fR(8), \\fBvoxd\\fR(1), \\fBvoxd.yaml\\fR(5)\n";
  return out;
}

}  // namespace voxd::tracker
