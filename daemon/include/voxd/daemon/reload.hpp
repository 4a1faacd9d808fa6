#pragma once
// The daemon's reload part (SIGHUP): re-reads the config file, compares it with the running
// config through the config table and applies what can change live. Keys that need a restart are
// reported and keep their running values; a file that does not validate is refused as a whole.

#include <functional>
#include <string>
#include <vector>

#include "voxd/common/config.hpp"
#include "voxd/common/error.hpp"

namespace voxd {

struct reload_hooks {
  // The new origins, before anything changes; an error refuses the whole reload.
  std::function<status(const std::vector<origin_config>&)> origins;
  // Called with the running config (not yet changed) and the accepted new one.
  std::function<void(const config& running, const config& next)> accepted;
  // Called once the live keys are in the running config.
  std::function<void(const config& running)> applied;
};

// False (and logged, `running` untouched) when the file is invalid or the hooks refuse it.
bool reload_config(const std::string& path, config& running, const reload_hooks& hooks);

}  // namespace voxd
