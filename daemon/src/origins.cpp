#include "voxd/daemon/origins.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "voxd/common/files.hpp"
#include "voxd/daemon/hub_api.hpp"

namespace voxd {

namespace {

result<std::string> token_for(const origin_config& o) {
  std::string token;
  if (!o.token_file.empty()) {
    auto t = read_token_file(o.token_file);
    if (!t)
      return make_error(errc::config,
                        fmt::format("origin {}: token_file: {}", o.url, t.err().message));
    token = std::move(*t);
  } else if (const char* env = std::getenv("HF_TOKEN"); env && *env) {
    token = env;
  }
  if (token.find_first_of("\r\n") != std::string::npos)
    return make_error(errc::config,
                      fmt::format("origin {}: the token contains a line break", o.url));
  return token;
}

}  // namespace

result<origin_pool> origin_pool::make(const std::vector<origin_config>& origins) {
  origin_pool pool;
  if (auto s = pool.reconfigure(origins); !s) return s.err();
  return pool;
}

status origin_pool::reconfigure(const std::vector<origin_config>& origins) {
  std::vector<std::string> tokens;
  for (const auto& o : origins) {
    auto t = token_for(o);
    if (!t) return t.err();
    tokens.push_back(std::move(*t));
  }
  for (auto& o : origins_)
    o.retired = true;
  for (std::size_t i = 0; i < origins.size(); ++i) {
    auto it = std::find_if(origins_.begin(), origins_.end(),
                           [&](const origin_state& s) { return s.cfg.url == origins[i].url; });
    if (it == origins_.end()) {
      origins_.emplace_back();
      it = std::prev(origins_.end());
      it->authority = hub::url_authority(origins[i].url);
    }
    it->cfg = origins[i];
    it->token = tokens[i];
    it->retired = false;
    it->rank = static_cast<int>(i);
  }
  return ok();
}

std::vector<std::size_t> origin_pool::active() const {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < origins_.size(); ++i)
    if (!origins_[i].retired) out.push_back(i);
  std::sort(out.begin(), out.end(),
            [this](std::size_t a, std::size_t b) { return origins_[a].rank < origins_[b].rank; });
  return out;
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
  origins_[i].last_success = steady::now();
}

namespace {
constexpr auto cap_hold = std::chrono::seconds(15);
constexpr auto cap_step = std::chrono::seconds(5);
}  // namespace

int origin_pool::connection_limit(std::size_t i, int base, steady::time_point now) {
  auto& o = origins_[i];
  if (o.connection_cap == 0) return base;
  const auto calm = now - o.cap_since;
  const auto steps = calm > cap_hold ? static_cast<int>((calm - cap_hold) / cap_step) : 0;
  const int limit = std::min(base, o.connection_cap + steps);
  if (limit >= base) o.connection_cap = 0;
  return limit;
}

void origin_pool::reduce_connections(std::size_t i, const std::string& why,
                                     steady::time_point now) {
  auto& o = origins_[i];
  if (o.connection_cap != 0 && now - o.cap_since < std::chrono::seconds(1)) return;
  // Called once the failed request has given its slot back, hence + 1.
  const int current = o.connection_cap != 0 ? connection_limit(i, 64, now) : o.slots_used + 1;
  o.connection_cap = std::max(1, current / 2);
  o.cap_since = now;
  spdlog::info("origin {}: {}; using {} connections for a while", o.cfg.url, why, o.connection_cap);
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
