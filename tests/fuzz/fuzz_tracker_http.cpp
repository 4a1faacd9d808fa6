// Untrusted bytes: the query strings of HTTP announce and scrape requests.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "voxd/tracker/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  std::string_view const in(reinterpret_cast<char const*>(data), size);
  if (auto r = voxd::tracker::parse_announce_query(in)) {
    // Invariant: an accepted announce names a usable port.
    if (r->port == 0) __builtin_trap();
  }
  if (auto s = voxd::tracker::parse_scrape_query(in, 100); s && s->size() > 100) __builtin_trap();
  (void)voxd::tracker::percent_decode(in);
  return 0;
}
