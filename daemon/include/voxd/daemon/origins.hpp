#pragma once
// The configured origins and their health: back-off after failures, bearer tokens that are sent
// to the origin's own host only (never to a CDN it redirects to), byte counters.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "voxd/common/config.hpp"

namespace voxd {

using steady = std::chrono::steady_clock;

struct origin_state {
  origin_config cfg;
  std::string authority;  // scheme://host:port of cfg.url
  std::string token;
  int slots_used = 0;
  int consecutive_failures = 0;
  steady::time_point backoff_until{};
  steady::time_point last_success{};
  std::string last_error;
  std::shared_ptr<std::atomic<std::uint64_t>> bytes =
      std::make_shared<std::atomic<std::uint64_t>>(0);
  std::uint64_t failures_total = 0;
  std::uint64_t corrupt_total = 0;
  // After pushback (429, 503, reset connections): connections allowed, 0 = no reduction.
  int connection_cap = 0;
  steady::time_point cap_since{};
  bool retired = false;  // removed from the config by a reload; kept so indices stay stable
  int rank = 0;          // position in the configured order (preference among equals)
};

class origin_pool {
 public:
  // Reads tokens (token_file, else $HF_TOKEN). Errors name the unreadable file.
  static result<origin_pool> make(const std::vector<origin_config>& origins);

  std::size_t size() const { return origins_.size(); }
  origin_state& operator[](std::size_t i) { return origins_[i]; }
  const origin_state& operator[](std::size_t i) const { return origins_[i]; }

  bool available(std::size_t i, steady::time_point now) const {
    return !origins_[i].retired && now >= origins_[i].backoff_until;
  }
  // A reload's origin list: known URLs keep their index and health (tokens are re-read), new ones
  // are appended, missing ones retired. Nothing changes when a token file cannot be read.
  status reconfigure(const std::vector<origin_config>& origins);
  // Origins in use, in configured order.
  std::vector<std::size_t> active() const;
  // Starts or extends a back-off (1 s doubling to 60 s, or the server's Retry-After).
  void record_failure(std::size_t i, const std::string& message, int retry_after_s = 0);
  void record_success(std::size_t i);
  // It answered a request well (for any blob) within the last `within`.
  bool served_lately(std::size_t i, steady::time_point now, steady::duration within) const {
    return origins_[i].last_success != steady::time_point{} &&
           now - origins_[i].last_success < within;
  }
  // The origin pushed back (429, 503, a reset connection): halve the connections it gets, at
  // most once a second. They grow back by one every 5 s after 15 s without pushback.
  void reduce_connections(std::size_t i, const std::string& why, steady::time_point now);
  // How many connections origin i may have at once now: `base` unless it pushed back lately.
  int connection_limit(std::size_t i, int base, steady::time_point now);
  // The Authorization header for url, if url is on origin i's host and a token is known.
  std::vector<std::string> auth_headers(std::size_t i, const std::string& url) const;
  steady::time_point earliest_backoff_end() const;

 private:
  std::vector<origin_state> origins_;
};

}  // namespace voxd
