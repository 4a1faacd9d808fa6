#pragma once
// The daemon's configuration: one struct with a default for every key, and one table of fields
// (key, type, help, loader) that drives loading, validation, --check-config, the commented default
// file in packaging/ and docs/configuration.md.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/units.hpp"

namespace voxd {

struct origin_config {
  std::string url;         // base URL of a Hub-compatible origin, e.g. https://huggingface.co
  std::string token_file;  // file holding a bearer token for this origin only; empty: $HF_TOKEN
  bool operator==(const origin_config&) const = default;
};

struct model_alias {
  std::string repo;
  std::string revision = "main";
  bool operator==(const model_alias&) const = default;
};

// How the CDN feeder shares a blob's pieces with the swarm (docs/architecture.md, "Hybrid fetch").
enum class origin_policy {
  prefer_peers,  // origins supply only pieces no connected peer has, or when the swarm stalls
  balanced,      // also whenever the peers leave the link idle
};

struct peer_config {
  std::string listen = "0.0.0.0:6881";  // libtorrent listen_interfaces syntax, host:port
  bool lan_discovery = true;            // BEP 14 local service discovery
  std::vector<std::string> peers;       // static peers, "ip:port" or "[ipv6]:port"
  bool operator==(const peer_config&) const = default;
};

struct config {
  std::string socket;     // control socket path
  std::string state_dir;  // queue, partial downloads, journals
  std::string hub_cache;  // Hugging Face cache root (HF_HUB_CACHE)
  std::vector<origin_config> origins{{"https://huggingface.co", ""}};
  std::map<std::string, model_alias> models;  // aliases added to the built-in catalog
  int max_active = 2;
  int connections_per_origin = 8;
  std::uint64_t chunk_size = 16ull << 20;
  std::uint64_t min_split_size = 64ull << 10;
  int max_attempts_per_origin = 3;
  int http_timeout = 30;      // seconds without progress before a request is abandoned
  space_spec store_max_size;  // off
  space_spec store_min_free{space_spec::kind::automatic, 0, 0};  // 5%, at most 2 GiB
  int evict_after = 0;                                           // seconds; 0: off
  int retry_for = 24 * 3600;  // seconds a model waits for unreachable origins before failing
  rate_spec download_cap;
  std::uint64_t link = 0;  // bytes per second of the link; 0 = measured (auto)
  rate_spec upload_cap{rate_spec::kind::percent, 0, 30};
  bool lan_uncapped = false;
  std::string tracker;              // announce URL; empty = no tracker
  std::string registry;             // registry base URL; empty = the tracker's host
  std::string registry_token_file;  // bearer token for registry writes
  peer_config peer;
  voxd::origin_policy origin_policy = voxd::origin_policy::prefer_peers;
  std::string log_level = "info";

  // The registry base URL in force: `registry`, else derived from `tracker`; empty = none.
  std::string registry_url() const;
};

struct config_error {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is not tied to a position
  int column = 0;
  std::string key;
  std::string message;
  std::string format() const;  // "file:line:column: key: message"
};

struct config_field_info {
  std::string_view key;
  std::string_view type;
  std::string_view help;
  bool live = false;        // a reload (SIGHUP) applies it; otherwise it needs a restart
  bool reloadable = false;  // its reload rule can compare (and, when live, copy) the value
};

std::vector<config_field_info> config_fields();

// What a reload finds, in table order: every key whose value differs, and whether it applies live.
struct config_change {
  std::string key;
  bool live = false;
};
std::vector<config_change> config_changes(const config& running, const config& next);
// Copies the value of every live key from next into running; the others keep their running values.
void apply_live_keys(config& running, const config& next);

// Defaults, with socket/state_dir taken from $RUNTIME_DIRECTORY/$STATE_DIRECTORY when set.
config default_config();

// Loads and validates. On failure returns errc::config and fills errors with every problem found.
result<config> load_config(const std::string& path, std::vector<config_error>& errors);
// The same from text (for tests and the fuzz target); `name` is used in error messages.
result<config> parse_config(std::string_view text, const std::string& name,
                            std::vector<config_error>& errors, const std::string& base_dir = {});

// Fill derived defaults (hub_cache under state_dir) after loading.
void finalize_config(config& c);

std::string render_default_config();    // commented YAML listing every key with its default
std::string render_config_reference();  // Markdown table for docs/configuration.md
// Man pages generated from the same table: "voxd.yaml.5" or "voxd-daemon.8"; empty if unknown.
std::string render_man_page(std::string_view page);

// "http" or "https" URL with a host, no credentials, query or fragment.
status validate_origin_url(std::string_view url);
// An http(s):// or udp:// announce URL.
status validate_tracker_url(std::string_view url);
// "ip:port" or "[ipv6]:port" with a numeric address and a port in 1..65535.
status validate_peer_endpoint(std::string_view text);

}  // namespace voxd
