// Untrusted bytes: the bodies daemons (or anyone holding the publish token) send to voxd-tracker's
// first-fetch groups, parsed and then applied to a group.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "voxd/tracker/groups.hpp"

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  using namespace voxd::tracker;
  static const auto dir = [] {
    char tmpl[] = "/tmp/voxd-fuzz-group-XXXXXX";
    return std::filesystem::path(::mkdtemp(tmpl));
  }();
  static registry reg(dir);
  static first_fetch_groups groups(reg);
  static const auto blob = *voxd::blob_id::parse(std::string(64, 'c'));
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  (void)parse_withdraw_request(body);
  auto r = parse_group_request(body);
  if (!r) return 0;
  auto a = groups.join(blob, *r, std::chrono::steady_clock::now());
  if (a)
    for (const auto& [from, to] : a->claim)
      if (from < 0 || from >= to || to > a->pieces) __builtin_trap();
  return 0;
}
