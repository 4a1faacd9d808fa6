// Untrusted bytes: what a registry answers to the daemon (lease and first-fetch group answers;
// torrents are checked by validate_blob_torrent, which fuzz_torrent covers through the tracker).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "voxd/daemon/registry_client.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (long code : {200L, 409L}) {
    auto l = voxd::parse_lease_answer(code, body, "host/10.0.0.1:6881");
    if (l && code == 409 && l->ours) __builtin_trap();  // a refusal is never ours
  }
  if (auto g = voxd::parse_group_answer(200, body))
    for (const auto& [from, to] : g->claim)
      if (from < 0 || from >= to || to > g->pieces) __builtin_trap();  // claims are in range
  return 0;
}
