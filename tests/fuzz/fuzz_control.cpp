// Untrusted bytes: messages on the control socket (daemon side) and answers (CLI side).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "voxd/common/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view const in(reinterpret_cast<const char*>(data), size);
  auto r = voxd::rpc::parse_request(in);
  if (auto* req = std::get_if<voxd::rpc::request>(&r)) {
    // Invariant: whatever was accepted can be answered and re-read.
    const auto reply = voxd::rpc::encode_result(req->id, req->params);
    if (!voxd::rpc::parse_message(reply)) __builtin_trap();
  }
  (void)voxd::rpc::parse_message(in);
  return 0;
}
