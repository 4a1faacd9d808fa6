#pragma once
// A blocking client for the control socket, with a timeout on every read and write.

#include <chrono>
#include <string>
#include <vector>

#include "voxd/common/protocol.hpp"

namespace voxd::rpc {

class client {
 public:
  client() = default;
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  status connect(const std::string& socket_path, std::chrono::milliseconds timeout);
  // Sends a request and waits for its response; notifications that arrive first are queued.
  result<json> call(std::string_view method, json params, std::chrono::milliseconds timeout);
  // Next notification (event); errc::daemon_unreachable when the daemon closed the connection.
  result<message> next_notification(std::chrono::milliseconds timeout);

 private:
  status send_line(const std::string& line, std::chrono::milliseconds timeout);
  result<std::string> read_line(std::chrono::milliseconds timeout);

  int fd_ = -1;
  std::string path_;
  std::string buffer_;
  std::vector<message> pending_;
  long next_id_ = 1;
};

}  // namespace voxd::rpc
