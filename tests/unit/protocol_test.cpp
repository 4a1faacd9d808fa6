#include <gtest/gtest.h>

#include "voxd/common/protocol.hpp"

using namespace voxd;
using namespace voxd::rpc;

TEST(ProtocolTest, parsesARequestWithNamedParams) {
  auto r =
      parse_request(R"({"jsonrpc":"2.0","id":7,"method":"add","params":{"model":"voxcpm-1.5"}})");
  ASSERT_TRUE(std::holds_alternative<request>(r));
  const auto& req = std::get<request>(r);
  EXPECT_EQ(req.id, 7);
  EXPECT_EQ(req.method, "add");
  EXPECT_EQ(req.params["model"], "voxcpm-1.5");
}

TEST(ProtocolTest, malformedMessagesGetTheStandardCodes) {
  // Literal codes on purpose: they are the wire contract.
  EXPECT_EQ(std::get<rpc_error>(parse_request("{nope")).code, -32700);
  EXPECT_EQ(std::get<rpc_error>(parse_request("[1,2]")).code, -32600);
  EXPECT_EQ(std::get<rpc_error>(parse_request(R"({"id":1,"method":"x"})")).code, -32600);
  EXPECT_EQ(std::get<rpc_error>(parse_request(R"({"jsonrpc":"2.0","id":1})")).code, -32600);
  EXPECT_EQ(
      std::get<rpc_error>(parse_request(R"({"jsonrpc":"2.0","id":1,"method":"x","params":[1]})"))
          .code,
      -32602);
  EXPECT_EQ(std::get<rpc_error>(parse_request(R"({"jsonrpc":"2.0","id":{},"method":"x"})")).code,
            -32600);
  EXPECT_EQ(std::get<rpc_error>(parse_request(std::string(max_message_bytes + 1, ' '))).code,
            -32600);
}

TEST(ProtocolTest, errorsKeepTheRequestIdWhenItCouldBeRead) {
  auto e = std::get<rpc_error>(parse_request(R"({"jsonrpc":"1.0","id":"abc","method":"x"})"));
  EXPECT_EQ(e.id, "abc");
}

TEST(ProtocolTest, responsesRoundTrip) {
  auto m = parse_message(encode_result(3, json{{"ok", true}}));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->id, 3);
  EXPECT_EQ(m->result["ok"], true);
  auto e = parse_message(encode_error(4, static_cast<int>(errc::not_found), "unknown model"));
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->error);
  EXPECT_EQ(code_to_errc(e->error->code), errc::not_found);
  auto n = parse_message(encode_notification("model.progress", json{{"model", "a/b@main"}}));
  ASSERT_TRUE(n);
  EXPECT_EQ(*n->method, "model.progress");
  EXPECT_FALSE(parse_message("garbage"));
  EXPECT_FALSE(parse_message(R"({"jsonrpc":"2.0","id":1})"));
}

TEST(ProtocolTest, encodedMessagesAreOneLine) {
  const auto line = encode_result(1, json{{"text", "a\nb"}});
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(code_to_errc(-32601), errc::protocol);
  EXPECT_EQ(code_to_errc(-32602), errc::invalid_argument);
}
