#include "voxd/daemon/reload.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace voxd {

bool reload_config(const std::string& path, config& running, const reload_hooks& hooks) {
  std::vector<config_error> errors;
  auto next = load_config(path, errors);
  if (!next) {
    for (const auto& e : errors)
      spdlog::error("reload: {}", e.format());
    spdlog::error("reload refused: {} is invalid; the running configuration stays", path);
    return false;
  }
  finalize_config(*next);
  const auto changes = config_changes(running, *next);
  const bool origins_changed = std::any_of(
      changes.begin(), changes.end(), [](const config_change& c) { return c.key == "origins"; });
  if (origins_changed && hooks.origins)
    if (auto s = hooks.origins(next->origins); !s) {
      spdlog::error("reload refused: {}; the running configuration stays", s.err().message);
      return false;
    }
  if (hooks.accepted) hooks.accepted(running, *next);
  apply_live_keys(running, *next);  // the table says which keys these are
  if (hooks.applied) hooks.applied(running);
  std::string live, later;
  for (const auto& c : changes) {
    auto& list = c.live ? live : later;
    list += (list.empty() ? "" : ", ") + c.key;
  }
  spdlog::info("reloaded {}: {}{}", path, live.empty() ? "nothing changed" : live,
               later.empty() ? "" : fmt::format("; {} changed but need a restart", later));
  return true;
}

}  // namespace voxd
