// Untrusted bytes: the daemon's YAML configuration.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "voxd/common/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<voxd::config_error> errors;
  auto c = voxd::parse_config(std::string_view(reinterpret_cast<const char*>(data), size),
                              "fuzz.yaml", errors);
  // Invariant: a failure always explains itself.
  if (!c && errors.empty()) __builtin_trap();
  return 0;
}
