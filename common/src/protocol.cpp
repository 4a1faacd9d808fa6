#include "voxd/common/protocol.hpp"

#include <fmt/format.h>

namespace voxd::rpc {

std::variant<request, rpc_error> parse_request(std::string_view line) {
  if (line.size() > max_message_bytes)
    return rpc_error{invalid_request, fmt::format("message exceeds {} bytes", max_message_bytes),
                     nullptr};
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded()) return rpc_error{parse_error, "message is not valid JSON", nullptr};
  if (!j.is_object()) return rpc_error{invalid_request, "message must be a JSON object", nullptr};
  json id = nullptr;
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_null() && !it->is_string() && !it->is_number_integer())
      return rpc_error{invalid_request, "id must be a string, an integer or null", nullptr};
    id = *it;
  }
  const auto v = j.find("jsonrpc");
  if (v == j.end() || *v != "2.0") return rpc_error{invalid_request, "jsonrpc must be \"2.0\"", id};
  const auto m = j.find("method");
  if (m == j.end() || !m->is_string() || m->get_ref<const std::string&>().empty())
    return rpc_error{invalid_request, "method must be a non-empty string", id};
  request r;
  r.id = id;
  r.method = m->get<std::string>();
  if (auto p = j.find("params"); p != j.end()) {
    if (!p->is_object())
      return rpc_error{invalid_params, "params must be an object (by-name parameters)", id};
    r.params = *p;
  }
  return r;
}

std::string encode_request(const json& id, std::string_view method, json params) {
  json j{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_result(const json& id, json result) {
  json j{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_error(const json& id, int code, std::string_view message) {
  json j{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string encode_notification(std::string_view method, json params) {
  json j{{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

result<message> parse_message(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return make_error(errc::protocol, "the daemon sent a message that is not a JSON object");
  message m;
  if (auto it = j.find("id"); it != j.end()) m.id = *it;
  if (auto it = j.find("method"); it != j.end()) {
    if (!it->is_string()) return make_error(errc::protocol, "notification method is not a string");
    m.method = it->get<std::string>();
    if (auto p = j.find("params"); p != j.end()) m.params = *p;
    return m;
  }
  if (auto e = j.find("error"); e != j.end()) {
    if (!e->is_object() || !e->contains("code") || !(*e)["code"].is_number_integer())
      return make_error(errc::protocol, "error object without an integer code");
    rpc_error err;
    err.code = (*e)["code"].get<int>();
    if (auto msg = e->find("message"); msg != e->end() && msg->is_string())
      err.message = msg->get<std::string>();
    err.id = m.id;
    m.error = std::move(err);
    return m;
  }
  if (auto r = j.find("result"); r != j.end()) {
    m.result = *r;
    return m;
  }
  return make_error(errc::protocol, "message has neither result, error nor method");
}

errc code_to_errc(int code) {
  if (code > 0 && code <= static_cast<int>(errc::no_space)) return static_cast<errc>(code);
  if (code == invalid_params) return errc::invalid_argument;
  return errc::protocol;
}

}  // namespace voxd::rpc
