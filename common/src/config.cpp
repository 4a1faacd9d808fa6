#include "voxd/common/config.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

#include "voxd/common/ids.hpp"
#include "voxd/common/man.hpp"

namespace voxd {
namespace {

using load_fn = std::function<std::optional<std::string>(config&, const YAML::Node&,
                                                         const std::string& base_dir)>;
using show_fn = std::function<std::string(const config&)>;

// How a key behaves on reload (SIGHUP): `same` compares its value in two configs; a live key's
// `take` copies it into the running config, the others keep their running value until a restart.
struct reload_rule {
  bool live = false;
  std::function<bool(const config&, const config&)> same;
  std::function<void(config&, const config&)> take;
};

// `get` is a generic lambda naming the value, e.g. [](auto& c) -> auto& { return c.peer.listen; }.
template <class Get>
reload_rule applies_live(Get get) {
  return {true, [get](const config& a, const config& b) { return get(a) == get(b); },
          [get](config& to, const config& from) { get(to) = get(from); }};
}

template <class Get>
reload_rule needs_restart(Get get) {
  return {false, [get](const config& a, const config& b) { return get(a) == get(b); }, {}};
}

// One row of the table. The constructor takes every part, so a key added without its reload
// rule does not compile.
struct field {
  field(std::string_view k, std::string_view t, std::string_view h, load_fn l, show_fn s,
        reload_rule r)
      : key(k), type(t), help(h), load(std::move(l)), show(std::move(s)), reload(std::move(r)) {}
  std::string_view key;
  std::string_view type;
  std::string_view help;
  load_fn load;
  show_fn show;
  reload_rule reload;
};

std::optional<std::string> want_scalar(const YAML::Node& n, std::string_view type) {
  if (!n.IsScalar())
    return fmt::format("expected {}, got a {}", type,
                       n.IsMap()        ? "map"
                       : n.IsSequence() ? "list"
                                        : "null value");
  return std::nullopt;
}

std::string resolve_path(const std::string& p, const std::string& base_dir) {
  if (p.empty() || p.front() == '/' || base_dir.empty()) return p;
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

load_fn path_loader(std::string config::*member) {
  return [member](config& c, const YAML::Node& n,
                  const std::string& base) -> std::optional<std::string> {
    if (auto e = want_scalar(n, "a path")) return e;
    auto const v = n.Scalar();
    if (v.empty()) return "path must not be empty";
    if (v.find('\0') != std::string::npos) return "path contains a NUL byte";
    c.*member = resolve_path(v, base);
    return std::nullopt;
  };
}

load_fn int_loader(int config::*member, int lo, int hi) {
  return [member, lo, hi](config& c, const YAML::Node& n,
                          const std::string&) -> std::optional<std::string> {
    if (auto e = want_scalar(n, "an integer")) return e;
    auto const& s = n.Scalar();
    int v = 0;
    auto const [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || ptr != s.data() + s.size())
      return fmt::format("'{}' is not an integer", s);
    if (v < lo || v > hi) return fmt::format("{} is out of range [{}, {}]", v, lo, hi);
    c.*member = v;
    return std::nullopt;
  };
}

std::optional<std::string> bool_value(bool& out, const YAML::Node& n, const std::string&) {
  if (auto e = want_scalar(n, "true or false")) return e;
  if (n.Scalar() == "true") {
    out = true;
  } else if (n.Scalar() == "false") {
    out = false;
  } else {
    return fmt::format("'{}' is not true or false", n.Scalar());
  }
  return std::nullopt;
}

// `allow_percent`: whether a share of the link ("30%") means something for this cap.
load_fn rate_loader(rate_spec config::*member, bool allow_percent) {
  return [member, allow_percent](config& c, const YAML::Node& n,
                                 const std::string&) -> std::optional<std::string> {
    if (auto e = want_scalar(n, "a rate")) return e;
    auto v = parse_rate(n.Scalar(), allow_percent);
    if (!v) return v.err().message;
    c.*member = *v;
    return std::nullopt;
  };
}

// An optional URL: empty means "none"; anything else must pass `check`.
load_fn url_loader(std::string config::*member, status (*check)(std::string_view)) {
  return [member, check](config& c, const YAML::Node& n,
                         const std::string&) -> std::optional<std::string> {
    if (auto e = want_scalar(n, "a URL")) return e;
    if (!n.Scalar().empty())
      if (auto s = check(n.Scalar()); !s) return s.err().message;
    c.*member = n.Scalar();
    return std::nullopt;
  };
}

// A duration ("90s", "24h", "30d") in whole seconds. With `off_word`, "off" means 0 and a
// duration must be at least a second.
load_fn seconds_loader(int config::*member, bool off_word) {
  return [member, off_word](config& c, const YAML::Node& n,
                            const std::string&) -> std::optional<std::string> {
    if (auto e = want_scalar(n, off_word ? "a duration or off" : "a duration")) return e;
    if (off_word && n.Scalar() == "off") {
      c.*member = 0;
      return std::nullopt;
    }
    auto v = parse_duration(n.Scalar());
    if (!v) return v.err().message;
    if (off_word && *v < 1) return fmt::format("'{}': use off, or at least 1s", n.Scalar());
    c.*member = static_cast<int>(*v);
    return std::nullopt;
  };
}

show_fn seconds_shown(int config::*member, bool off_word) {
  return [member, off_word](const config& c) {
    return off_word && c.*member == 0 ? std::string("off")
                                      : format_seconds(static_cast<std::uint64_t>(c.*member));
  };
}

load_fn bool_loader(bool config::*member) {
  return [member](config& c, const YAML::Node& n, const std::string& b) {
    return bool_value(c.*member, n, b);
  };
}

const std::vector<field>& fields() {
  static const std::vector<field> table = [] {
    std::vector<field> t;
    t.push_back({"socket", "path",
                 "Control socket. Default: $RUNTIME_DIRECTORY/voxd.sock, else /run/voxd/voxd.sock. "
                 "Its directory must not be accessible to other users.",
                 path_loader(&config::socket), [](config const& c) { return c.socket; },
                 needs_restart([](auto& c) -> auto& { return c.socket; })});
    t.push_back({"state_dir", "path",
                 "Queue, partial downloads and their journals. Default: $STATE_DIRECTORY, else "
                 "/var/lib/voxd.",
                 path_loader(&config::state_dir), [](config const& c) { return c.state_dir; },
                 needs_restart([](auto& c) -> auto& { return c.state_dir; })});
    t.push_back({"hub_cache", "path",
                 "Hugging Face cache root where finished models appear (point HF_HUB_CACHE here). "
                 "Default: <state_dir>/hub.",
                 path_loader(&config::hub_cache),
                 [](config const& c) {
                   return c.hub_cache.empty() ? std::string("<state_dir>/hub") : c.hub_cache;
                 },
                 needs_restart([](auto& c) -> auto& { return c.hub_cache; })});
    t.push_back(
        {"origins", "list of {url, token_file}",
         "Hub-compatible origins, tried in this order with failover. token_file holds a bearer "
         "token sent to that origin's host only (default: $HF_TOKEN).",
         [](config& c, YAML::Node const& n, std::string const& base) -> std::optional<std::string> {
           if (!n.IsSequence()) return std::string("expected a list of {url, token_file} maps");
           if (n.size() == 0) return std::string("at least one origin is needed");
           std::vector<origin_config> out;
           for (auto const& item : n) {
             auto const where =
                 fmt::format("origin {} (line {})", out.size() + 1, item.Mark().line + 1);
             if (item.IsScalar()) {
               if (auto s = validate_origin_url(item.Scalar()); !s)
                 return fmt::format("{}: {}", where, s.err().message);
               out.push_back({item.Scalar(), ""});
               continue;
             }
             if (!item.IsMap()) return fmt::format("{}: expected a map with 'url'", where);
             origin_config o;
             for (auto const& kv : item) {
               auto const k = kv.first.as<std::string>();
               if (k == "url") {
                 if (!kv.second.IsScalar()) return fmt::format("{}: url: expected a string", where);
                 o.url = kv.second.Scalar();
               } else if (k == "token_file") {
                 if (!kv.second.IsScalar())
                   return fmt::format("{}: token_file: expected a path", where);
                 o.token_file = resolve_path(kv.second.Scalar(), base);
               } else {
                 return fmt::format("{}: unknown key '{}' (known: url, token_file)", where, k);
               }
             }
             if (o.url.empty()) return fmt::format("{}: 'url' is missing", where);
             if (auto s = validate_origin_url(o.url); !s)
               return fmt::format("{}: {}", where, s.err().message);
             out.push_back(std::move(o));
           }
           c.origins = std::move(out);
           return std::nullopt;
         },
         [](config const& c) {
           std::string s;
           for (auto const& o : c.origins)
             s += (s.empty() ? "" : ", ") + o.url;
           return s;
         },
         applies_live([](auto& c) -> auto& { return c.origins; })});
    t.push_back(
        {"models", "map alias -> {repo, revision}",
         "Model aliases added to the built-in catalog (voxcpm-1.5, voxcpm-0.5b, voxcpm2).",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (n.IsNull()) return std::nullopt;
           if (!n.IsMap()) return std::string("expected a map of alias -> {repo, revision}");
           std::map<std::string, model_alias> out;
           for (auto const& kv : n) {
             auto const alias = kv.first.as<std::string>();
             if (alias.empty() || alias.find('/') != std::string::npos ||
                 alias.find('@') != std::string::npos)
               return fmt::format("alias '{}' must be non-empty and contain no '/' or '@'", alias);
             if (out.count(alias)) return fmt::format("alias '{}' is defined twice", alias);
             model_alias m;
             if (kv.second.IsScalar()) {
               m.repo = kv.second.Scalar();
             } else if (kv.second.IsMap()) {
               for (auto const& f : kv.second) {
                 auto const k = f.first.as<std::string>();
                 if (!f.second.IsScalar()) return fmt::format("{}.{}: expected a string", alias, k);
                 if (k == "repo")
                   m.repo = f.second.Scalar();
                 else if (k == "revision")
                   m.revision = f.second.Scalar();
                 else
                   return fmt::format("{}: unknown key '{}' (known: repo, revision)", alias, k);
               }
             } else {
               return fmt::format("{}: expected {{repo, revision}}", alias);
             }
             if (auto r = repo_id::parse(m.repo); !r)
               return fmt::format("{}: {}", alias, r.err().message);
             if (auto r = validate_revision(m.revision); !r)
               return fmt::format("{}: {}", alias, r.err().message);
             out.emplace(alias, std::move(m));
           }
           c.models = std::move(out);
           return std::nullopt;
         },
         [](config const& c) {
           return c.models.empty() ? std::string("{}") : fmt::format("{} aliases", c.models.size());
         },
         applies_live([](auto& c) -> auto& { return c.models; })});
    t.push_back({"max_active", "integer",
                 "How many models download at once; the rest wait in the queue.",
                 int_loader(&config::max_active, 1, 64),
                 [](config const& c) { return std::to_string(c.max_active); },
                 applies_live([](auto& c) -> auto& { return c.max_active; })});
    t.push_back({"connections_per_origin", "integer",
                 "Parallel HTTP range requests per origin, shared by every file of the active "
                 "models. An origin that answers 429 or 503, or resets connections, gets fewer "
                 "for a while.",
                 int_loader(&config::connections_per_origin, 1, 64),
                 [](config const& c) { return std::to_string(c.connections_per_origin); },
                 needs_restart([](auto& c) -> auto& { return c.connections_per_origin; })});
    const auto size_between = [](std::uint64_t config::*field, std::uint64_t lo, std::uint64_t hi) {
      return [field, lo, hi](config& c, YAML::Node const& n,
                             std::string const&) -> std::optional<std::string> {
        if (auto e = want_scalar(n, "a size")) return e;
        auto v = parse_size(n.Scalar());
        if (!v) return v.err().message;
        if (*v < lo || *v > hi)
          return fmt::format("'{}' must be between {} and {}", n.Scalar(), format_bytes(lo),
                             format_bytes(hi));
        c.*field = *v;
        return std::nullopt;
      };
    };
    t.push_back({"chunk_size", "size",
                 "Largest byte range one request asks for. When no range is left to start, a "
                 "free connection takes over half of the largest range still in flight, so every "
                 "connection stays busy to the last byte. Resume after a crash works in 64 KiB "
                 "blocks whatever this is.",
                 size_between(&config::chunk_size, 256u << 10, 1ull << 30),
                 [](config const& c) { return format_bytes(c.chunk_size); },
                 needs_restart([](auto& c) -> auto& { return c.chunk_size; })});
    t.push_back({"min_split_size", "size",
                 "Smallest part of a range in flight that a free connection takes over. Smaller "
                 "keeps more connections busy at the end of a file on an origin that gives each "
                 "connection little; each takeover costs the origin a new connection.",
                 size_between(&config::min_split_size, 64u << 10, 1ull << 30),
                 [](config const& c) { return format_bytes(c.min_split_size); },
                 needs_restart([](auto& c) -> auto& { return c.min_split_size; })});
    t.push_back({"max_attempts_per_origin", "integer",
                 "Failed or corrupt attempts at one file an origin is allowed before voxd stops "
                 "asking it for that file.",
                 int_loader(&config::max_attempts_per_origin, 1, 100),
                 [](config const& c) { return std::to_string(c.max_attempts_per_origin); },
                 needs_restart([](auto& c) -> auto& { return c.max_attempts_per_origin; })});
    t.push_back({"http_timeout", "integer (seconds)",
                 "A request that makes no progress for this long is abandoned and retried.",
                 int_loader(&config::http_timeout, 1, 3600),
                 [](config const& c) { return std::to_string(c.http_timeout); },
                 needs_restart([](auto& c) -> auto& { return c.http_timeout; })});
    const auto space_loader = [](space_spec config::*field) {
      return [field](config& c, YAML::Node const& n,
                     std::string const&) -> std::optional<std::string> {
        if (auto e = want_scalar(n, "a size or a percentage")) return e;
        auto v = parse_space(n.Scalar());
        if (!v) return v.err().message;
        c.*field = *v;
        return std::nullopt;
      };
    };
    t.push_back({"store.max_size", "size or percentage",
                 "Most the store (hub_cache's blobs) may hold: off, a size such as 500GiB, or a "
                 "share of its file system such as 80%. A model that would pass it waits "
                 "(state waiting, \"store full\") instead of starting.",
                 space_loader(&config::store_max_size),
                 [](config const& c) { return to_string(c.store_max_size); },
                 applies_live([](auto& c) -> auto& { return c.store_max_size; })});
    t.push_back({"store.min_free", "size or percentage",
                 "Free space the store's file systems (hub_cache, state_dir) keep: a model whose "
                 "files would leave less waits (state waiting, \"disk full: need X, have Y\") "
                 "and starts when space appears. auto: 5% of the file system, at most 2 GiB; off.",
                 space_loader(&config::store_min_free),
                 [](config const& c) { return to_string(c.store_min_free); },
                 applies_live([](auto& c) -> auto& { return c.store_min_free; })});
    t.push_back({"store.evict_after", "duration",
                 "`voxd gc` removes models not used for this long (off, or e.g. 30d), least "
                 "recently used first; a blob another model still uses stays. Used means added, "
                 "or a file of the model's own read (its access time; most file systems update it "
                 "at most daily).",
                 seconds_loader(&config::evict_after, true),
                 seconds_shown(&config::evict_after, true),
                 applies_live([](auto& c) -> auto& { return c.evict_after; })});
    t.push_back({"retry_for", "duration",
                 "How long a model waits, retrying with growing pauses (5 s up to 5 min), while no "
                 "origin can be reached (DNS, connection, TLS handshake, timeouts, HTTP 5xx, 429). "
                 "Answers that waiting cannot change (repository or revision not found, 401/403, a "
                 "certificate not trusted, every origin serving bytes that fail verification) fail "
                 "the model at once. 0: fail at once on those too.",
                 seconds_loader(&config::retry_for, false),
                 seconds_shown(&config::retry_for, false),
                 applies_live([](auto& c) -> auto& { return c.retry_for; })});
    t.push_back({"bandwidth.download_cap", "rate",
                 "Cap on the total download rate from origins: off, or a rate such as 20MB/s or "
                 "200Mbit. `voxd limit download` overrides it at run time.",
                 rate_loader(&config::download_cap, false),
                 [](config const& c) { return to_string(c.download_cap); },
                 applies_live([](auto& c) -> auto& { return c.download_cap; })});
    t.push_back(
        {"bandwidth.link", "rate",
         "Capacity of this machine's link, the base of a percentage upload cap: auto (the peak "
         "download rate measured recently, remembered across restarts; 1Gbit until measured) "
         "or a rate such as 1Gbit or 125MB/s.",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (auto e = want_scalar(n, "a rate")) return e;
           if (n.Scalar() == "auto") {
             c.link = 0;
             return std::nullopt;
           }
           auto v = parse_rate(n.Scalar(), false);
           if (!v) return v.err().message;
           if (v->type != rate_spec::kind::bytes_per_second)
             return fmt::format("'{}': expected auto or a rate such as 1Gbit", n.Scalar());
           c.link = v->bytes_per_second;
           return std::nullopt;
         },
         [](config const& c) {
           return c.link == 0 ? std::string("auto") : to_string(rate_spec::absolute(c.link));
         },
         applies_live([](auto& c) -> auto& { return c.link; })});
    t.push_back({"bandwidth.upload_cap", "rate or percent",
                 "Cap on the total upload rate to peers: a share of bandwidth.link (30%), a rate "
                 "(20MB/s) or off. `voxd limit upload` overrides it at run time.",
                 rate_loader(&config::upload_cap, true),
                 [](config const& c) { return to_string(c.upload_cap); },
                 applies_live([](auto& c) -> auto& { return c.upload_cap; })});
    t.push_back({"bandwidth.lan_uncapped", "boolean",
                 "Exempt peers on private, link-local and loopback addresses from the upload cap.",
                 bool_loader(&config::lan_uncapped),
                 [](config const& c) { return std::string(c.lan_uncapped ? "true" : "false"); },
                 needs_restart([](auto& c) -> auto& { return c.lan_uncapped; })});
    t.push_back(
        {"tracker", "URL",
         "BitTorrent tracker announce URL (voxd-tracker or any BEP 3/15 tracker), e.g. "
         "http://tracker.lan:6969/announce. Empty: no tracker; without a registry every blob "
         "comes from the origins.",
         url_loader(&config::tracker, validate_tracker_url),
         [](config const& c) { return c.tracker.empty() ? std::string("\"\"") : c.tracker; },
         needs_restart([](auto& c) -> auto& { return c.tracker; })});
    t.push_back({"registry", "URL",
                 "Blob registry (voxd-tracker's /v1 API) base URL, e.g. http://tracker.lan:6969. "
                 "Default: the tracker's scheme, host and port (http for a udp:// tracker).",
                 url_loader(&config::registry, validate_origin_url),
                 [](config const& c) {
                   return c.registry.empty() ? std::string("<tracker host>") : c.registry;
                 },
                 needs_restart([](auto& c) -> auto& { return c.registry; })});
    t.push_back({"registry_token_file", "path",
                 "File holding the registry's publish token (voxd-tracker publish_token_file); "
                 "sent as a bearer token with publishes, leases and first-fetch group reports. "
                 "Default: none.",
                 path_loader(&config::registry_token_file),
                 [](config const& c) {
                   return c.registry_token_file.empty() ? std::string("\"\"")
                                                        : c.registry_token_file;
                 },
                 needs_restart([](auto& c) -> auto& { return c.registry_token_file; })});
    t.push_back(
        {"peer.listen", "host:port",
         "Address and port for BitTorrent peers (libtorrent listen_interfaces), e.g. "
         "10.0.5.23:6881. Restrict it to the LAN interface so LAN discovery stays on the LAN.",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (auto e = want_scalar(n, "host:port")) return e;
           auto const& v = n.Scalar();
           auto const colon = v.rfind(':');
           int port = -1;
           if (colon != std::string::npos && colon > 0)
             std::from_chars(v.data() + colon + 1, v.data() + v.size(), port);
           if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535 ||
               v.find_first_of(" ,") != std::string::npos)
             return fmt::format("'{}' is not host:port (e.g. 0.0.0.0:6881)", v);
           c.peer.listen = v;
           return std::nullopt;
         },
         [](config const& c) { return c.peer.listen; },
         needs_restart([](auto& c) -> auto& { return c.peer.listen; })});
    t.push_back(
        {"peer.lan_discovery", "boolean",
         "Find peers on the local network by BEP 14 multicast (LSD).",
         [](config& c, YAML::Node const& n, std::string const& b) {
           return bool_value(c.peer.lan_discovery, n, b);
         },
         [](config const& c) { return std::string(c.peer.lan_discovery ? "true" : "false"); },
         needs_restart([](auto& c) -> auto& { return c.peer.lan_discovery; })});
    t.push_back(
        {"peer.peers", "list of ip:port", "Peers to connect to for every blob, besides discovery.",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (n.IsNull()) return std::nullopt;
           if (!n.IsSequence()) return std::string("expected a list of ip:port");
           std::vector<std::string> out;
           for (auto const& item : n) {
             if (!item.IsScalar()) return fmt::format("item {}: expected ip:port", out.size() + 1);
             if (auto s = validate_peer_endpoint(item.Scalar()); !s)
               return fmt::format("item {}: {}", out.size() + 1, s.err().message);
             out.push_back(item.Scalar());
           }
           c.peer.peers = std::move(out);
           return std::nullopt;
         },
         [](config const& c) {
           std::string s;
           for (auto const& p : c.peer.peers)
             s += (s.empty() ? "" : ", ") + p;
           return s.empty() ? std::string("[]") : "[" + s + "]";
         },
         needs_restart([](auto& c) -> auto& { return c.peer.peers; })});
    t.push_back(
        {"origin_policy", "string",
         "How origins and peers share a blob's pieces: prefer-peers (origins supply only pieces "
         "no connected peer has, or all when the swarm stalls) or balanced (also whenever the "
         "peers leave the link idle; faster, more origin traffic).",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (auto e = want_scalar(n, "a policy")) return e;
           if (n.Scalar() == "prefer-peers")
             c.origin_policy = origin_policy::prefer_peers;
           else if (n.Scalar() == "balanced")
             c.origin_policy = origin_policy::balanced;
           else
             return fmt::format("'{}' is not one of prefer-peers, balanced", n.Scalar());
           return std::nullopt;
         },
         [](config const& c) {
           return std::string(c.origin_policy == origin_policy::balanced ? "balanced"
                                                                         : "prefer-peers");
         },
         applies_live([](auto& c) -> auto& { return c.origin_policy; })});
    t.push_back(
        {"log_level", "string", "One of trace, debug, info, warn, error.",
         [](config& c, YAML::Node const& n, std::string const&) -> std::optional<std::string> {
           if (auto e = want_scalar(n, "a log level")) return e;
           static std::set<std::string> const levels{"trace", "debug", "info", "warn", "error"};
           if (!levels.count(n.Scalar()))
             return fmt::format("'{}' is not one of trace, debug, info, warn, error", n.Scalar());
           c.log_level = n.Scalar();
           return std::nullopt;
         },
         [](config const& c) { return c.log_level; },
         applies_live([](auto& c) -> auto& { return c.log_level; })});
    return t;
  }();
  return table;
}

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

void walk(config& c, const YAML::Node& map, const std::string& prefix, const std::string& file,
          const std::string& base_dir, std::vector<config_error>& errors) {
  std::set<std::string> seen;
  for (const auto& kv : map) {
    const auto mark = kv.first.Mark();
    if (!kv.first.IsScalar()) {
      errors.push_back({file, mark.line + 1, mark.column + 1, prefix, "keys must be strings"});
      continue;
    }
    const auto name = kv.first.Scalar();
    const auto key = prefix.empty() ? name : prefix + "." + name;
    if (!seen.insert(name).second) {
      errors.push_back({file, mark.line + 1, mark.column + 1, key, "key appears twice"});
      continue;
    }
    const auto& table = fields();
    const auto it =
        std::find_if(table.begin(), table.end(), [&](const field& f) { return f.key == key; });
    if (it != table.end()) {
      const auto vmark = kv.second.Mark();
      if (auto err = it->load(c, kv.second, base_dir))
        errors.push_back({file, vmark.line + 1, vmark.column + 1, key, *err});
      continue;
    }
    const bool is_section = std::any_of(table.begin(), table.end(), [&](const field& f) {
      return f.key.size() > key.size() && f.key.substr(0, key.size()) == key &&
             f.key[key.size()] == '.';
    });
    if (is_section && kv.second.IsMap()) {
      walk(c, kv.second, key, file, base_dir, errors);
    } else if (is_section && kv.second.IsNull()) {
      continue;
    } else {
      std::string known;
      for (const auto& f : table) {
        const auto k = std::string(f.key);
        if (prefix.empty() || k.rfind(prefix + ".", 0) == 0)
          known += (known.empty() ? "" : ", ") + k;
      }
      errors.push_back(
          {file, mark.line + 1, mark.column + 1, key,
           is_section ? "expected a map" : fmt::format("unknown key (known keys: {})", known)});
    }
  }
}

}  // namespace

std::string config_error::format() const {
  if (line == 0) return fmt::format("{}: {}: {}", file, key, message);
  return fmt::format("{}:{}:{}: {}: {}", file, line, column, key.empty() ? "(document)" : key,
                     message);
}

std::vector<config_field_info> config_fields() {
  std::vector<config_field_info> out;
  for (const auto& f : fields())
    out.push_back({f.key, f.type, f.help, f.reload.live,
                   static_cast<bool>(f.reload.same) && (!f.reload.live || f.reload.take)});
  return out;
}

std::vector<config_change> config_changes(const config& running, const config& next) {
  std::vector<config_change> out;
  for (const auto& f : fields())
    if (!f.reload.same(running, next)) out.push_back({std::string(f.key), f.reload.live});
  return out;
}

void apply_live_keys(config& running, const config& next) {
  for (const auto& f : fields())
    if (f.reload.live) f.reload.take(running, next);
}

config default_config() {
  config c;
  const auto runtime = env_or("RUNTIME_DIRECTORY", "");
  // systemd may pass several directories separated by ':'; the first is ours.
  c.socket =
      runtime.empty() ? "/run/voxd/voxd.sock" : runtime.substr(0, runtime.find(':')) + "/voxd.sock";
  const auto state = env_or("STATE_DIRECTORY", "/var/lib/voxd");
  c.state_dir = state.substr(0, state.find(':'));
  return c;
}

void finalize_config(config& c) {
  if (c.hub_cache.empty()) c.hub_cache = (std::filesystem::path(c.state_dir) / "hub").string();
}

result<config> parse_config(std::string_view text, const std::string& name,
                            std::vector<config_error>& errors, const std::string& base_dir) {
  config c = default_config();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    errors.push_back({name, e.mark.line + 1, e.mark.column + 1, "",
                      fmt::format("YAML syntax error: {}", e.msg)});
    return make_error(errc::config, errors.back().format());
  }
  if (root.IsNull()) {
    finalize_config(c);
    return c;
  }
  if (!root.IsMap()) {
    errors.push_back({name, root.Mark().line + 1, root.Mark().column + 1, "",
                      "the document must be a map of keys"});
    return make_error(errc::config, errors.back().format());
  }
  try {
    walk(c, root, "", name, base_dir, errors);
  } catch (const YAML::Exception& e) {
    errors.push_back({name, e.mark.line + 1, e.mark.column + 1, "", e.msg});
  }
  if (!errors.empty()) return make_error(errc::config, errors.front().format());
  finalize_config(c);
  return c;
}

result<config> load_config(const std::string& path, std::vector<config_error>& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.push_back({path, 0, 0, "", fmt::format("cannot read: {}", errno_text(errno))});
    return make_error(errc::config, errors.back().format());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const auto base = std::filesystem::absolute(path).parent_path().string();
  return parse_config(ss.str(), path, errors, base);
}

namespace {
// What the documentation states, whatever this process's environment says.
config documented_defaults() {
  config c;
  c.socket = "/run/voxd/voxd.sock";
  c.state_dir = "/var/lib/voxd";
  return c;
}
}  // namespace

std::string render_default_config() {
  const config c = documented_defaults();
  std::string out =
      "# voxd daemon configuration. Every key is shown with its default; uncomment to change.\n"
      "# Reference: docs/configuration.md, or `voxd-daemon --print-config-reference`.\n";
  std::string section;
  for (const auto& f : fields()) {
    const auto k = std::string(f.key);
    const bool same_section = !section.empty() && k.rfind(section + ".", 0) == 0;
    // Inside a section the comments are indented so that uncommenting keeps valid YAML.
    out += same_section ? fmt::format("#\n#  # {} ({})\n#  # {}\n", f.key, f.type, f.help)
                        : fmt::format("\n# {} ({})\n# {}\n", f.key, f.type, f.help);
    const auto key = std::string(f.key);
    const auto dot = key.find('.');
    const auto value = f.show(c);
    if (key == "origins") {
      out += "#origins:\n#  - url: https://huggingface.co\n#    token_file: /etc/voxd/hf-token\n";
    } else if (key == "models") {
      out += "#models:\n#  my-model: {repo: org/name, revision: main}\n";
    } else if (dot != std::string::npos) {
      // Keys of one section are adjacent in the table; the section header is written once.
      if (key.substr(0, dot) != section) out += fmt::format("#{}:\n", key.substr(0, dot));
      out += fmt::format("#  {}: {}\n", key.substr(dot + 1), value);
    } else {
      out += fmt::format("#{}: {}\n", key, value);
    }
    section = dot == std::string::npos ? std::string() : key.substr(0, dot);
  }
  return out;
}

std::string render_config_reference() {
  const config c = documented_defaults();
  std::string out =
      "# voxd-daemon configuration reference\n\n"
      "Generated by `voxd-daemon --print-config-reference` from the table in "
      "common/src/config.cpp;\n"
      "a test fails when this file and the table disagree. The file is YAML; every key is "
      "optional.\n"
      "`voxd-daemon --config FILE --check-config` prints `file:line:column: key: problem` for "
      "each\n"
      "error and exits 10. packaging/voxd.yaml lists every key with its default, commented out.\n\n"
      "The reload column says what `systemctl reload voxd` (SIGHUP) does with a changed value: "
      "live\n"
      "applies it at once; restart keeps the running value until the daemon restarts.\n\n"
      "| key | type | default | reload | meaning |\n|---|---|---|---|---|\n";
  for (const auto& f : fields())
    out += fmt::format("| `{}` | {} | `{}` | {} | {} |\n", f.key, f.type, f.show(c),
                       f.reload.live ? "live" : "restart", f.help);
  return out;
}

namespace {

std::string man_keys() {
  const config c = documented_defaults();
  std::string out;
  for (const auto& f : fields())
    out += fmt::format(".TP\n.B {}\n({}; default: {}; {})\n{}\n", roff(f.key), roff(f.type),
                       roff(f.show(c)), f.reload.live ? "applies on reload" : "needs a restart",
                       roff_help(f.help));
  return out;
}

}  // namespace

std::string render_man_page(std::string_view page) {
  const std::string head =
      "\\\" Generated by `voxd-daemon --print-man PAGE` from the table in common/src/config.cpp.\n";
  if (page == "voxd.yaml.5")
    return head +
           ".TH VOXD.YAML 5 \"\" \"voxd\" \"File Formats\"\n"
           ".SH NAME\nvoxd.yaml \\- configuration of the voxd model\\-delivery daemon\n"
           ".SH DESCRIPTION\n"
           "The file is YAML; every key is optional and has the default shown. Dotted keys are "
           "nested maps (\\fBbandwidth.link\\fR is \\fBlink\\fR under \\fBbandwidth\\fR). "
           "Errors are reported as \\fIfile\\fR:\\fIline\\fR:\\fIcolumn\\fR: \\fIkey\\fR: "
           "\\fIproblem\\fR; \\fBvoxd\\-daemon \\-\\-config\\fR \\fIFILE\\fR "
           "\\fB\\-\\-check\\-config\\fR checks a file without starting.\n"
           ".SH KEYS\n" +
           man_keys() +
           ".SH FILES\n.TP\n.I /etc/voxd/voxd.yaml\nThe configuration read by voxd.service.\n"
           ".SH SEE ALSO\n\\fBvoxd\\-daemon\\fR(8), \\fBvoxd\\fR(1), \\fBvoxd\\-tracker\\fR(8)\n";
  if (page == "voxd-daemon.8")
    return head +
           ".TH VOXD\\-DAEMON 8 \"\" \"voxd\" \"System Administration\"\n"
           ".SH NAME\nvoxd\\-daemon \\- fetch AI models from peers and origins into the Hugging "
           "Face cache\n"
           ".SH SYNOPSIS\n\\fBvoxd\\-daemon\\fR [\\fB\\-\\-config\\fR \\fIFILE\\fR] "
           "[\\fB\\-\\-check\\-config\\fR | \\fB\\-\\-print\\-default\\-config\\fR | "
           "\\fB\\-\\-print\\-config\\-reference\\fR | \\fB\\-\\-print\\-man\\fR "
           "\\fIPAGE\\fR]\n"
           ".SH DESCRIPTION\n"
           "\\fBvoxd\\-daemon\\fR fetches every file of a model from whichever source can give it "
           "soonest \\- peers that already have it, or the configured Hub\\-compatible origins \\- "
           "verifies every byte against the Hub's hashes, leaves the model in the Hugging Face "
           "cache "
           "layout, and seeds it to other daemons. The \\fBvoxd\\fR(1) command drives it over a "
           "Unix socket.\n"
           ".SH OPTIONS\n"
           ".TP\n\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIFILE\\fR\nRead the configuration "
           "(see \\fBvoxd.yaml\\fR(5)); without it, the defaults.\n"
           ".TP\n\\fB\\-\\-check\\-config\\fR\nValidate and exit: 0 when valid, 10 with one "
           "line per problem otherwise.\n"
           ".TP\n\\fB\\-\\-print\\-default\\-config\\fR\nPrint a commented file listing every "
           "key with its default.\n"
           ".TP\n\\fB\\-\\-print\\-config\\-reference\\fR\nPrint the key reference as "
           "Markdown.\n"
           ".TP\n\\fB\\-\\-print\\-man\\fR \\fIPAGE\\fR\nPrint this page "
           "(\\fBvoxd\\-daemon.8\\fR) or \\fBvoxd.yaml.5\\fR.\n"
           ".SH SIGNALS\n"
           ".TP\n\\fBSIGTERM\\fR, \\fBSIGINT\\fR\nStop: save the queue, resume data and session "
           "state, then exit.\n"
           ".TP\n\\fBSIGHUP\\fR\nRe\\-read the configuration file. Keys marked \\(lqapplies "
           "on reload\\(rq below apply at once; changed keys that need a restart are logged and "
           "keep their running values; an invalid file is refused and the running configuration "
           "stays.\n"
           ".SH CONFIGURATION KEYS\n" +
           man_keys() +
           ".SH EXIT STATUS\n0 after a clean stop; 10 for an invalid configuration; the other "
           "codes "
           "are listed in docs/control\\-protocol.md.\n"
           ".SH FILES\n.TP\n.I /etc/voxd/voxd.yaml\nConfiguration.\n"
           ".TP\n.I /run/voxd/voxd.sock\nControl socket (\\fB$RUNTIME_DIRECTORY\\fR/voxd.sock).\n"
           ".TP\n.I /var/lib/voxd\nState: queue, partial downloads, torrents, and the store "
           "(\\fB$STATE_DIRECTORY\\fR/hub unless \\fBhub_cache\\fR is set).\n"
           ".SH SEE ALSO\n\\fBvoxd\\fR(1), \\fBvoxd.yaml\\fR(5), \\fBvoxd\\-tracker\\fR(8)\n";
  return {};
}

status validate_origin_url(std::string_view url) {
  std::string_view rest;
  if (url.rfind("https://", 0) == 0)
    rest = url.substr(8);
  else if (url.rfind("http://", 0) == 0)
    rest = url.substr(7);
  else
    return make_error(errc::config, fmt::format("'{}' is not an http:// or https:// URL", url));
  const auto host_end = rest.find('/');
  const auto authority = rest.substr(0, host_end);
  if (authority.empty()) return make_error(errc::config, fmt::format("'{}' has no host", url));
  if (authority.find('@') != std::string_view::npos)
    return make_error(errc::config, fmt::format("'{}' carries credentials; use token_file", url));
  if (url.find_first_of("?#") != std::string_view::npos)
    return make_error(errc::config, fmt::format("'{}' must not have a query or fragment", url));
  for (char ch : url)
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f)
      return make_error(errc::config,
                        fmt::format("'{}' contains a space or control character", url));
  const auto colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
    const auto port = authority.substr(colon + 1);
    int p = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || p < 1 || p > 65535)
      return make_error(errc::config, fmt::format("'{}' has an invalid port", url));
  }
  return ok();
}

std::string config::registry_url() const {
  if (!registry.empty()) return registry;
  if (tracker.empty()) return {};
  const auto scheme_end = tracker.find("://");
  const auto scheme = tracker.substr(0, scheme_end);
  const auto rest = tracker.substr(scheme_end + 3);
  return (scheme == "udp" ? std::string("http") : scheme) + "://" + rest.substr(0, rest.find('/'));
}

status validate_tracker_url(std::string_view url) {
  if (url.rfind("udp://", 0) == 0) {
    auto const rest = url.substr(6);
    if (rest.empty() || rest.front() == '/' || rest.find(':') == std::string_view::npos)
      return make_error(errc::config, fmt::format("'{}' needs a host and a port", url));
    return ok();
  }
  auto s = validate_origin_url(url);
  if (!s) return make_error(errc::config, fmt::format("{} (or a udp:// URL)", s.err().message));
  return ok();
}

status validate_peer_endpoint(std::string_view text) {
  std::string host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto const close = text.find("]:");
    if (close == std::string_view::npos)
      return make_error(errc::config, fmt::format("'{}' is not [ipv6]:port", text));
    host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto const colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return make_error(errc::config, fmt::format("'{}' has no :port", text));
    host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  unsigned char buf[16];
  if (::inet_pton(AF_INET, host.c_str(), buf) != 1 && ::inet_pton(AF_INET6, host.c_str(), buf) != 1)
    return make_error(errc::config, fmt::format("'{}' is not a numeric IP address", host));
  int p = 0;
  auto const [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc{} || ptr != port.data() + port.size() || p < 1 || p > 65535)
    return make_error(errc::config, fmt::format("'{}' has an invalid port", text));
  return ok();
}

}  // namespace voxd
