// Untrusted bytes: what an origin answers to the revision and tree API calls, and its headers.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "voxd/common/ids.hpp"
#include "voxd/daemon/hub_api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view const in(reinterpret_cast<const char*>(data), size);
  (void)voxd::hub::parse_revision(in);
  if (auto entries = voxd::hub::parse_tree_page(in)) {
    // Invariant: every accepted path is safe to join under a snapshot directory.
    for (const auto& e : *entries)
      if (!voxd::validate_repo_path(e.path) || !voxd::blob_id::parse(e.blob)) __builtin_trap();
  }
  (void)voxd::hub::parse_link_next(in);
  (void)voxd::hub::normalize_etag(in);
  (void)voxd::hub::resolve_location("https://hub.example/a/b?c", in);
  return 0;
}
