#pragma once
// The voxd command: a thin client of the daemon's control socket. Returns the process exit status,
// which is the errc the daemon answered with (docs/control-protocol.md lists them).

namespace voxd::cli {

int run(int argc, char** argv);

}  // namespace voxd::cli
