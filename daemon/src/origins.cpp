#include "voxd/daemon/origins.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "voxd/common/files.hpp"
#include "voxd/daemon/hub_api.hpp"

namespace voxd {

result<origin_pool> origin_pool::make(const std::vector<origin_config>& origins) {
  origin_pool pool;
  for (const auto& o : origins) {
    origin_state s;
    s.cfg = o;
    s.authority = hub::url_authority(o.url);
    if (!o.token_file.empty()) {
      auto t = read_token_file(o.token_file);
      if (!t)
        return make_error(errc::config,
                          fmt::format("origin {}: token_file: {}", o.url, t.err().message));
      s.token = std::move(*t);
    } else if (const char* env = std::getenv("HF_TOKEN"); env && *env) {
      s.token = env;
    }
    if (s.token.find_first_of("\r\n") != std::string::npos)
      return make_error(errc::config,
                        fmt::format("origin {}: the token contains a line break", o.url));
    pool.origins_.push_back(std::move(s));
  }
  return pool;
}

void origin_pool::record_failure(std::size_t i, const std::string& message, int retry_after_s) {
  auto& o = origins_[i];
  o.consecutive_failures = std::min(o.consecutive_failures + 1, 10);
  ++o.failures_total;
  o.last_error = message;
  const auto backoff = retry_after_s > 0 ? std::min(retry_after_s, 300)
                                         : std::min(60, 1 << (o.consecutive_failures - 1));
  o.backoff_until = steady::now() + std::chrono::seconds(backoff);
  spdlog::warn("origin {}: {} (backing off {} s)", o.cfg.url, message, backoff);
}

void origin_pool::record_success(std::size_t i) {
  origins_[i].consecutive_failures = 0;
  origins_[i].backoff_until = {};
}

std::vector<std::string> origin_pool::auth_headers(std::size_t i, const std::string& url) const {
  const auto& o = origins_[i];
  if (o.token.empty() || hub::url_authority(url) != o.authority) return {};
  return {"Authorization: Bearer " + o.token};
}

steady::time_point origin_pool::earliest_backoff_end() const {
  auto t = steady::time_point::max();
  for (const auto& o : origins_)
    t = std::min(t, o.backoff_until);
  return t;
}

}  // namespace voxd
