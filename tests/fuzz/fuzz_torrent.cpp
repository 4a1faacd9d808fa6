// Untrusted bytes: torrents published to the registry.
#include <cstddef>
#include <cstdint>
#include <span>

#include "voxd/tracker/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  static const auto blob = *voxd::blob_id::parse(std::string(64, 'a'));
  auto r = voxd::tracker::validate_torrent(
      std::span<const char>(reinterpret_cast<const char*>(data), size), blob);
  if (r && (r->length == 0 || r->piece_length < 16384)) __builtin_trap();
  return 0;
}
