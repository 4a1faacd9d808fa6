#include <gtest/gtest.h>

#include <map>
#include <set>

#include "voxd/common/config.hpp"

using namespace voxd;

namespace {

std::vector<config_error> errors_of(const std::string& yaml) {
  std::vector<config_error> errors;
  auto c = parse_config(yaml, "voxd.yaml", errors);
  EXPECT_FALSE(c);
  return errors;
}

}  // namespace

TEST(ConfigTest, emptyDocumentGivesDefaultsForEveryKey) {
  std::vector<config_error> errors;
  auto c = parse_config("", "voxd.yaml", errors);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->max_active, 2);
  EXPECT_EQ(c->connections_per_origin, 8);
  EXPECT_EQ(c->max_attempts_per_origin, 3);
  ASSERT_EQ(c->origins.size(), 1u);
  EXPECT_EQ(c->origins[0].url, "https://huggingface.co");
  EXPECT_EQ(c->hub_cache, c->state_dir + "/hub");
  EXPECT_EQ(c->download_cap.type, rate_spec::kind::off);
}

TEST(ConfigTest, loadsTheContractKeys) {
  std::vector<config_error> errors;
  auto c = parse_config(R"(
socket: /run/x/voxd.sock
state_dir: /var/lib/x
hub_cache: /srv/hf
max_active: 3
origins:
  - url: https://mirror.example.com
    token_file: /etc/voxd/token
  - url: https://huggingface.co
models:
  tts: {repo: openbmb/VoxCPM1.5, revision: v1}
  other: org/name
bandwidth:
  download_cap: 20MB/s
)",
                        "voxd.yaml", errors);
  ASSERT_TRUE(c) << (errors.empty() ? "" : errors[0].format());
  EXPECT_EQ(c->socket, "/run/x/voxd.sock");
  EXPECT_EQ(c->hub_cache, "/srv/hf");
  EXPECT_EQ(c->max_active, 3);
  ASSERT_EQ(c->origins.size(), 2u);
  EXPECT_EQ(c->origins[0].token_file, "/etc/voxd/token");
  EXPECT_EQ(c->models.at("tts").revision, "v1");
  EXPECT_EQ(c->models.at("other").revision, "main");
  EXPECT_EQ(c->download_cap.bytes_per_second, 20000000u);
}

TEST(ConfigTest, relativePathsAreRelativeToTheConfigFile) {
  std::vector<config_error> errors;
  auto c = parse_config("state_dir: state\n", "x.yaml", errors, "/etc/voxd");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->state_dir, "/etc/voxd/state");
}

TEST(ConfigTest, unknownKeyIsReportedWithFileLineAndColumn) {
  auto errors = errors_of("max_active: 2\nmax_actve: 3\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 2);
  EXPECT_EQ(errors[0].column, 1);
  EXPECT_EQ(errors[0].key, "max_actve");
  EXPECT_EQ(errors[0].format().rfind("voxd.yaml:2:1: max_actve: unknown key", 0), 0u)
      << errors[0].format();
}

TEST(ConfigTest, everyErrorIsReportedNotOnlyTheFirst) {
  auto errors = errors_of(
      "max_active: many\n"
      "origins:\n  - url: ftp://example.com\n"
      "bandwidth:\n  download_cap: fast\n"
      "chunk_size: 12 bananas\n"
      "log_level: loud\n");
  ASSERT_EQ(errors.size(), 5u);
  EXPECT_EQ(errors[0].key, "max_active");
  EXPECT_NE(errors[0].message.find("'many' is not an integer"), std::string::npos);
  EXPECT_EQ(errors[1].key, "origins");
  EXPECT_NE(errors[1].message.find("ftp://example.com"), std::string::npos);
  EXPECT_EQ(errors[2].key, "bandwidth.download_cap");
  EXPECT_EQ(errors[2].line, 5);
  EXPECT_EQ(errors[3].key, "chunk_size");
  EXPECT_EQ(errors[4].key, "log_level");
}

TEST(ConfigTest, wrongTypesAreNamed) {
  auto e1 = errors_of("origins: https://huggingface.co\n");
  EXPECT_NE(e1[0].message.find("expected a list"), std::string::npos);
  auto e2 = errors_of("socket: [a, b]\n");
  EXPECT_NE(e2[0].message.find("expected a path, got a list"), std::string::npos);
  auto e3 = errors_of("bandwidth: 5\n");
  EXPECT_NE(e3[0].message.find("expected a map"), std::string::npos);
  auto e4 = errors_of("max_active: 0\n");
  EXPECT_NE(e4[0].message.find("out of range"), std::string::npos);
}

TEST(ConfigTest, badUrlsAreRefused) {
  for (auto bad :
       {"huggingface.co", "http://", "https://user:pw@host", "https://h/x?y=1", "http://h:99999"}) {
    auto errors = errors_of(std::string("origins:\n  - url: ") + bad + "\n");
    ASSERT_FALSE(errors.empty()) << bad;
    EXPECT_EQ(errors[0].key, "origins");
  }
  EXPECT_TRUE(validate_origin_url("http://127.0.0.1:8080"));
  EXPECT_TRUE(validate_origin_url("https://hf-mirror.com/"));
}

TEST(ConfigTest, duplicateKeysAndBadAliasesAreErrors) {
  auto e1 = errors_of("max_active: 1\nmax_active: 2\n");
  EXPECT_NE(e1[0].message.find("twice"), std::string::npos);
  auto e2 = errors_of("models:\n  x: {repo: not-a-repo}\n");
  EXPECT_NE(e2[0].message.find("not-a-repo"), std::string::npos);
  auto e3 = errors_of("models:\n  x: {repo: a/b, branch: main}\n");
  EXPECT_NE(e3[0].message.find("unknown key 'branch'"), std::string::npos);
}

TEST(ConfigTest, yamlSyntaxErrorsCarryAPosition) {
  auto errors = errors_of("max_active: [1,\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_GT(errors[0].line, 0);
  EXPECT_NE(errors[0].message.find("YAML syntax error"), std::string::npos);
}

TEST(ConfigTest, defaultConfigFileParsesAndListsEveryKey) {
  const auto text = render_default_config();
  for (const auto& f : config_fields())
    EXPECT_NE(text.find(std::string(f.key.substr(f.key.rfind('.') + 1))), std::string::npos)
        << f.key;
  std::vector<config_error> errors;
  EXPECT_TRUE(parse_config(text, "default", errors));
}

TEST(ConfigTest, peerKeysLoadAndDefault) {
  std::vector<config_error> errors;
  auto d = parse_config("", "voxd.yaml", errors);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->upload_cap.type, rate_spec::kind::percent);
  EXPECT_EQ(d->upload_cap.percent, 30);
  EXPECT_EQ(d->link, 0u);  // auto
  EXPECT_TRUE(d->registry_url().empty());
  auto c = parse_config(R"(
tracker: udp://tracker.lan:6969
peer:
  listen: 10.0.5.23:6881
  lan_discovery: false
  peers: [10.0.5.24:6881, "[fd00::1]:6881"]
bandwidth:
  link: 1Gbit
  upload_cap: 20MB/s
  lan_uncapped: true
origin_policy: balanced
)",
                        "voxd.yaml", errors);
  ASSERT_TRUE(c) << (errors.empty() ? "" : errors[0].format());
  EXPECT_EQ(c->registry_url(), "http://tracker.lan:6969");
  EXPECT_EQ(c->peer.listen, "10.0.5.23:6881");
  EXPECT_FALSE(c->peer.lan_discovery);
  ASSERT_EQ(c->peer.peers.size(), 2u);
  EXPECT_EQ(c->link, 125000000u);
  EXPECT_EQ(c->upload_cap.bytes_per_second, 20000000u);
  EXPECT_TRUE(c->lan_uncapped);
  EXPECT_EQ(c->origin_policy, origin_policy::balanced);
  auto h = parse_config("tracker: http://t.lan:6969/announce\n", "voxd.yaml", errors);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->registry_url(), "http://t.lan:6969");
}

TEST(ConfigTest, badPeerKeysAreNamed) {
  auto errors = errors_of(R"(tracker: ftp://t.lan/announce
peer:
  listen: nowhere
  peers: [tracker.lan:6881, 10.0.0.1:0]
  lan_discovery: maybe
bandwidth:
  link: 30%
  upload_cap: lots
origin_policy: cheapest
)");
  ASSERT_EQ(errors.size(), 7u);
  EXPECT_EQ(errors[0].key, "tracker");
  EXPECT_EQ(errors[1].key, "peer.listen");
  EXPECT_NE(errors[2].message.find("'tracker.lan' is not a numeric IP address"), std::string::npos)
      << errors[2].message;
  EXPECT_EQ(errors[3].key, "peer.lan_discovery");
  EXPECT_EQ(errors[4].key, "bandwidth.link");
  EXPECT_EQ(errors[5].key, "bandwidth.upload_cap");
  EXPECT_NE(errors[6].message.find("prefer-peers, balanced"), std::string::npos);
}

TEST(ConfigTest, sectionHeadersAppearOnceInTheDefaultFile) {
  const auto text = render_default_config();
  auto count = [&](const std::string& s) {
    std::size_t n = 0;
    for (auto p = text.find(s); p != std::string::npos; p = text.find(s, p + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("\n#bandwidth:\n"), 1u);
  EXPECT_EQ(count("\n#peer:\n"), 1u);
}

namespace {

// A value other than the default for every key of the table, as a config file would set it.
const std::map<std::string, std::string>& reload_samples() {
  static const std::map<std::string, std::string> samples{
      {"socket", "socket: /tmp/other.sock"},
      {"state_dir", "state_dir: /tmp/other-state"},
      {"hub_cache", "hub_cache: /tmp/other-hub"},
      {"origins", "origins: [https://mirror.example]"},
      {"models", "models: {mine: org/name}"},
      {"max_active", "max_active: 5"},
      {"connections_per_origin", "connections_per_origin: 3"},
      {"chunk_size", "chunk_size: 2MiB"},
      {"min_split_size", "min_split_size: 1MiB"},
      {"max_attempts_per_origin", "max_attempts_per_origin: 9"},
      {"http_timeout", "http_timeout: 77"},
      {"retry_for", "retry_for: 30m"},
      {"store.max_size", "store: {max_size: 80%}"},
      {"store.min_free", "store: {min_free: 10GiB}"},
      {"store.evict_after", "store: {evict_after: 30d}"},
      {"bandwidth.download_cap", "bandwidth: {download_cap: 5MB/s}"},
      {"bandwidth.link", "bandwidth: {link: 100Mbit}"},
      {"bandwidth.upload_cap", "bandwidth: {upload_cap: 10%}"},
      {"bandwidth.lan_uncapped", "bandwidth: {lan_uncapped: true}"},
      {"tracker", "tracker: http://tracker.example:6969/announce"},
      {"registry", "registry: http://registry.example:6969"},
      {"registry_token_file", "registry_token_file: /tmp/token"},
      {"peer.listen", "peer: {listen: 127.0.0.1:7000}"},
      {"peer.lan_discovery", "peer: {lan_discovery: false}"},
      {"peer.peers", "peer: {peers: [127.0.0.1:7001]}"},
      {"origin_policy", "origin_policy: balanced"},
      {"log_level", "log_level: debug"},
  };
  return samples;
}

config parsed(const std::string& yaml) {
  std::vector<config_error> errors;
  auto c = parse_config(yaml, "voxd.yaml", errors);
  EXPECT_TRUE(c) << yaml << ": " << (errors.empty() ? "" : errors[0].format());
  config out = default_config();
  if (c) out = *c;
  return out;
}

}  // namespace

TEST(ConfigTest, everyKeySaysHowItReloadsAndReloadFindsExactlyThatKey) {
  const auto base = parsed("");
  for (const auto& f : config_fields()) {
    const std::string key(f.key);
    EXPECT_TRUE(f.reloadable) << key << " has no reload rule";
    const auto it = reload_samples().find(key);
    ASSERT_NE(it, reload_samples().end()) << "add a sample value for the new key " << key;
    auto next = parsed(it->second);
    if (key == "state_dir") next.hub_cache = base.hub_cache;  // derived from state_dir
    const auto changes = config_changes(base, next);
    ASSERT_EQ(changes.size(), 1u) << key;
    EXPECT_EQ(changes[0].key, key);
    EXPECT_EQ(changes[0].live, f.live) << key;
    // A live key is taken over by the running config; a restart key keeps its running value.
    auto running = base;
    apply_live_keys(running, next);
    EXPECT_EQ(config_changes(running, next).empty(), f.live) << key;
  }
  EXPECT_EQ(reload_samples().size(), config_fields().size());
}
