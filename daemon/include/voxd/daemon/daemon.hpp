#pragma once
// voxd-daemon: owns one io_context thread on which all model state lives. The HTTP engine and the
// hash worker run on threads of their own and post their results here.

#include <memory>
#include <string>

#include "voxd/common/config.hpp"

namespace voxd {

class daemon {
 public:
  // config_path: the file SIGHUP re-reads; empty = built-in defaults, nothing to reload.
  explicit daemon(config cfg, std::string config_path = {});
  ~daemon();
  daemon(const daemon&) = delete;
  daemon& operator=(const daemon&) = delete;

  // Runs until SIGTERM/SIGINT; returns the process exit status.
  int run();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace voxd
