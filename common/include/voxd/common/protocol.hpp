#pragma once
// The control protocol: newline-delimited JSON-RPC 2.0 over a Unix socket
// (docs/control-protocol.md). Domain errors use the errc values as JSON-RPC error codes; the
// standard codes are below.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "voxd/common/error.hpp"

namespace voxd::rpc {

using json = nlohmann::json;

inline constexpr std::string_view protocol_version = "1.3";
inline constexpr std::size_t max_message_bytes = 64 * 1024;

inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;

struct request {
  json id;  // null for a notification
  std::string method;
  json params = json::object();
};

struct rpc_error {
  int code = internal_error;
  std::string message;
  json id;  // id of the request, when it could be read
};

// Parses one line sent by a client. Errors carry the JSON-RPC code to answer with.
std::variant<request, rpc_error> parse_request(std::string_view line);

std::string encode_request(const json& id, std::string_view method, json params);
std::string encode_result(const json& id, json result);
std::string encode_error(const json& id, int code, std::string_view message);
std::string encode_notification(std::string_view method, json params);

// A message received by a client: a response to a call or a notification (event).
struct message {
  json id;
  std::optional<std::string> method;  // set for notifications
  json params;
  json result;
  std::optional<rpc_error> error;
};
result<message> parse_message(std::string_view line);

// Maps a JSON-RPC error code to the CLI's exit status and errc.
errc code_to_errc(int code);

}  // namespace voxd::rpc
