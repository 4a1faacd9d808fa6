#pragma once
// voxd-tracker settings: one table of keys shared by the YAML file and the command line.

#include <string>
#include <utility>
#include <vector>

#include "voxd/common/config.hpp"
#include "voxd/tracker/server.hpp"
#include "voxd/tracker/swarm.hpp"

namespace voxd::tracker {

struct tracker_config {
  server_options server;
  swarm_limits limits;
  std::string data_dir = "/var/lib/voxd-tracker";
  std::string publish_token_file;
  std::string log_level = "info";
};

// Loads a YAML file over `c`; errors are `file:line:column: key: problem`.
status load_tracker_config(const std::string& path, tracker_config& c,
                           std::vector<config_error>& errors);
// Reads the publish token named by publish_token_file into c.server.publish_token.
status read_publish_token(tracker_config& c);

// Generated from the same table as the loader: packaging/tracker.yaml,
// docs/tracker-configuration.md and voxd-tracker(8), whose OPTIONS section lists `options` (names,
// help) of the command line.
std::string render_default_config();
std::string render_config_reference();
std::string render_man_page(const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace voxd::tracker
