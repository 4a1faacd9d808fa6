#include "voxd/common/rpc_client.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace voxd::rpc {
namespace {

using clock = std::chrono::steady_clock;

int remaining_ms(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

client::~client() {
  if (fd_ >= 0) ::close(fd_);
}

status client::connect(const std::string& socket_path, std::chrono::milliseconds timeout) {
  path_ = socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return make_error(errc::invalid_argument,
                      fmt::format("socket path '{}' is too long", socket_path));
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return make_error(errc::io, fmt::format("socket(): {}", errno_text(errno)));
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM)
      return make_error(
          errc::permission_denied,
          fmt::format("permission denied on the daemon socket {} (is your user in the "
                      "socket's group?)",
                      socket_path));
    if (err == ENOENT || err == ECONNREFUSED)
      return make_error(errc::daemon_unreachable,
                        fmt::format("no daemon is listening on {} ({}); start voxd-daemon or pass "
                                    "--socket",
                                    socket_path, errno_text(err)));
    if (err != EINPROGRESS && err != EAGAIN)
      return make_error(errc::daemon_unreachable,
                        fmt::format("cannot connect to {}: {}", socket_path, errno_text(err)));
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0)
      return make_error(errc::daemon_unreachable,
                        fmt::format("timed out connecting to {}", socket_path));
  }
  return ok();
}

status client::send_line(const std::string& line, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  std::size_t off = 0;
  while (off < line.size()) {
    const auto n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR)
      return make_error(errc::daemon_unreachable,
                        fmt::format("lost the daemon at {}: {}", path_, errno_text(errno)));
    pollfd p{fd_, POLLOUT, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0)
      return make_error(errc::daemon_unreachable,
                        fmt::format("timed out writing to the daemon at {}", path_));
  }
  return ok();
}

result<std::string> client::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      auto line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (buffer_.size() > 16 * max_message_bytes)
      return make_error(errc::protocol, "the daemon sent an over-long message");
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r == 0)
      return make_error(errc::daemon_unreachable,
                        fmt::format("timed out waiting for the daemon at {}", path_));
    if (r < 0 && errno != EINTR)
      return make_error(errc::io, fmt::format("poll(): {}", errno_text(errno)));
    char buf[65536];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0)
      return make_error(errc::daemon_unreachable,
                        fmt::format("the daemon at {} closed the connection", path_));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return make_error(errc::daemon_unreachable,
                        fmt::format("lost the daemon at {}: {}", path_, errno_text(errno)));
    }
    buffer_.append(buf, static_cast<std::size_t>(n));
  }
}

result<json> client::call(std::string_view method, json params, std::chrono::milliseconds timeout) {
  const auto id = next_id_++;
  if (auto s = send_line(encode_request(id, method, std::move(params)), timeout); !s)
    return s.err();
  const auto deadline = clock::now() + timeout;
  for (;;) {
    auto line = read_line(std::chrono::milliseconds(remaining_ms(deadline)));
    if (!line) return line.err();
    auto msg = parse_message(*line);
    if (!msg) return msg.err();
    if (msg->method) {
      pending_.push_back(std::move(*msg));
      continue;
    }
    if (msg->id != json(id)) continue;  // a stale answer to a call that timed out
    if (msg->error) return make_error(code_to_errc(msg->error->code), msg->error->message);
    return std::move(msg->result);
  }
}

result<message> client::next_notification(std::chrono::milliseconds timeout) {
  if (!pending_.empty()) {
    auto m = std::move(pending_.front());
    pending_.erase(pending_.begin());
    return m;
  }
  for (;;) {
    auto line = read_line(timeout);
    if (!line) return line.err();
    auto msg = parse_message(*line);
    if (!msg) return msg.err();
    if (msg->method) return msg;
  }
}

}  // namespace voxd::rpc
