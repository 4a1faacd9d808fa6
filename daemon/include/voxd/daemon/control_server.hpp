#pragma once
// The control socket: newline-delimited JSON-RPC 2.0 on a Unix socket. Each connection contains
// its own failures: a malformed, over-long or unknown message gets a JSON-RPC error and the daemon
// carries on; a client that stalls mid-message or stops reading is disconnected.

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <deque>

#include <sys/types.h>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "voxd/common/protocol.hpp"

namespace voxd {

struct peer_credentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string describe() const;  // "uid=1000 gid=1000 pid=42"
};

class control_session;

class control_server {
 public:
  // A handler answers a request; it may mark the session as subscribed to events.
  // nullopt: no such method (answered with JSON-RPC's method-not-found).
  using handler =
      std::function<std::optional<result<rpc::json>>(control_session&, const rpc::request&)>;

  control_server(boost::asio::io_context& io, std::string path, handler h);
  ~control_server();
  // Creates the directory (0750) if needed, refuses a world-accessible one, binds with mode 0660.
  status listen();
  void close();
  // Sends an event to every subscribed session whose filter matches `model` (empty filter: all).
  void broadcast(std::string_view method, const rpc::json& params, const std::string& model);

 private:
  friend class control_session;
  void accept();
  boost::asio::io_context& io_;
  std::string path_;
  handler handler_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::set<std::shared_ptr<control_session>> sessions_;
};

class control_session : public std::enable_shared_from_this<control_session> {
 public:
  control_session(control_server& server, boost::asio::local::stream_protocol::socket socket);
  void start();
  void send(std::string line);
  void close();
  const peer_credentials& peer() const { return peer_; }
  void subscribe(std::optional<std::string> model) {
    subscribed_ = true;
    filter_ = std::move(model);
  }
  bool wants(const std::string& model) const {
    return subscribed_ && (!filter_ || *filter_ == model);
  }

 private:
  void read();
  void handle_line(std::string_view line);
  void write_next();
  void arm_read_timer();

  control_server& server_;
  boost::asio::local::stream_protocol::socket socket_;
  boost::asio::steady_timer read_timer_;
  boost::asio::steady_timer write_timer_;
  peer_credentials peer_;
  std::string inbuf_;
  std::array<char, 8192> chunk_{};
  std::deque<std::string> outq_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closed_ = false;
  bool subscribed_ = false;
  bool discarding_ = false;  // skipping the rest of an over-long line
  std::optional<std::string> filter_;
};

}  // namespace voxd
