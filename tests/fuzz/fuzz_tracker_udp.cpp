// Untrusted bytes: BEP 15 UDP tracker packets.
#include <cstddef>
#include <cstdint>
#include <span>

#include "voxd/tracker/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  auto p = voxd::tracker::udp::parse(std::span<const std::uint8_t>(data, size));
  if (auto* s = std::get_if<voxd::tracker::udp::scrape_packet>(&p))
    if (s->hashes.empty() || s->hashes.size() > voxd::tracker::udp::max_scrape_hashes)
      __builtin_trap();
  return 0;
}
