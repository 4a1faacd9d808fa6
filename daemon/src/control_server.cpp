#include "voxd/daemon/control_server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <boost/asio/write.hpp>

#include <filesystem>

namespace voxd {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

namespace {
constexpr auto idle_timeout = std::chrono::minutes(10);     // a quiet, unsubscribed client
constexpr auto partial_timeout = std::chrono::seconds(10);  // a message started but not finished
constexpr auto write_timeout = std::chrono::seconds(10);
constexpr std::size_t max_queued_bytes = 4 << 20;  // a subscriber that stopped reading
}  // namespace

std::string peer_credentials::describe() const {
  return fmt::format("uid={} gid={} pid={}", uid, gid, pid);
}

control_server::control_server(asio::io_context& io, std::string path, handler h)
    : io_(io), path_(std::move(path)), handler_(std::move(h)), acceptor_(io) {}

control_server::~control_server() {
  close();
}

status control_server::listen() {
  namespace fs = std::filesystem;
  const auto dir = fs::path(path_).parent_path();
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      return make_error(errc::io, fmt::format("cannot create socket directory {}: {}", dir.string(),
                                              ec.message()));
    ::chmod(dir.c_str(), 0750);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return make_error(errc::io, fmt::format("cannot stat socket directory {}: {}", dir.string(),
                                            errno_text(errno)));
  if ((st.st_mode & 0007) != 0)
    return make_error(errc::config,
                      fmt::format("socket directory {} is accessible to other users (mode {:04o}); "
                                  "use a directory with mode 0750 or 0700 (for example /run/voxd)",
                                  dir.string(), st.st_mode & 07777));
  // A live daemon on the path is an error; a stale socket file is removed.
  {
    stream::socket probe(io_);
    boost::system::error_code pec;
    probe.connect(stream::endpoint(path_), pec);
    if (!pec)
      return make_error(errc::config,
                        fmt::format("another daemon is already listening on {}", path_));
  }
  ::unlink(path_.c_str());
  boost::system::error_code bec;
  acceptor_.open(stream(), bec);
  if (!bec) {
    const mode_t old = ::umask(0117);  // the socket is created 0660, with no window of wider access
    acceptor_.bind(stream::endpoint(path_), bec);
    ::umask(old);
  }
  if (!bec) acceptor_.listen(64, bec);
  if (bec)
    return make_error(errc::io, fmt::format("cannot listen on {}: {}", path_, bec.message()));
  ::chmod(path_.c_str(), 0660);
  accept();
  return ok();
}

void control_server::close() {
  boost::system::error_code ec;
  if (acceptor_.is_open()) {
    acceptor_.close(ec);
    ::unlink(path_.c_str());
  }
  auto copy = sessions_;
  for (const auto& s : copy)
    s->close();
  sessions_.clear();
}

void control_server::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, stream::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      auto s = std::make_shared<control_session>(*this, std::move(socket));
      sessions_.insert(s);
      s->start();
    } else {
      spdlog::warn("control socket: accept failed: {}", ec.message());
    }
    accept();
  });
}

void control_server::broadcast(std::string_view method, const rpc::json& params,
                               const std::string& model) {
  std::string line;
  for (const auto& s : sessions_) {
    if (!s->wants(model)) continue;
    if (line.empty()) line = rpc::encode_notification(method, params);
    s->send(line);
  }
}

control_session::control_session(control_server& server, stream::socket socket)
    : server_(server),
      socket_(std::move(socket)),
      read_timer_(server.io_),
      write_timer_(server.io_) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer_.pid = cred.pid;
    peer_.uid = cred.uid;
    peer_.gid = cred.gid;
  }
}

void control_session::start() {
  arm_read_timer();
  read();
}

void control_session::arm_read_timer() {
  if (subscribed_ && inbuf_.empty() && !discarding_) {
    read_timer_.cancel();  // subscribers may stay quiet for as long as they like
    return;
  }
  read_timer_.expires_after(inbuf_.empty() && !discarding_
                                ? std::chrono::duration_cast<std::chrono::seconds>(idle_timeout)
                                : partial_timeout);
  read_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;
    spdlog::info("control socket: closing idle or stalled client {}", self->peer_.describe());
    self->close();
  });
}

void control_session::read() {
  socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](
                                                    boost::system::error_code ec, std::size_t n) {
    if (self->closed_) return;
    if (ec) {
      self->close();
      return;
    }
    std::string_view data(self->chunk_.data(), n);
    while (!data.empty() && !self->closed_) {
      auto const nl = data.find('\n');
      auto const piece = data.substr(0, nl);
      if (self->discarding_) {
        if (nl != std::string_view::npos) self->discarding_ = false;
      } else if (self->inbuf_.size() + piece.size() > rpc::max_message_bytes) {
        self->send(
            rpc::encode_error(nullptr, rpc::invalid_request,
                              fmt::format("message exceeds {} bytes", rpc::max_message_bytes)));
        self->inbuf_.clear();
        self->discarding_ = nl == std::string_view::npos;
      } else if (nl == std::string_view::npos) {
        self->inbuf_.append(piece);
      } else {
        self->inbuf_.append(piece);
        std::string line;
        line.swap(self->inbuf_);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) self->handle_line(line);
      }
      if (nl == std::string_view::npos) break;
      data.remove_prefix(nl + 1);
    }
    if (self->closed_) return;
    self->arm_read_timer();
    self->read();
  });
}

void control_session::handle_line(std::string_view line) {
  auto parsed = rpc::parse_request(line);
  if (auto* e = std::get_if<rpc::rpc_error>(&parsed)) {
    spdlog::debug("control socket: bad message from {}: {}", peer_.describe(), e->message);
    send(rpc::encode_error(e->id, e->code, e->message));
    return;
  }
  const auto& req = std::get<rpc::request>(parsed);
  std::optional<result<rpc::json>> answer;
  try {
    answer = server_.handler_(*this, req);
  } catch (const std::exception& ex) {
    // A handler bug must not take the daemon down; the client learns what happened.
    spdlog::error("control socket: {} failed: {}", req.method, ex.what());
    answer = error{errc::failure, fmt::format("internal error in {}: {}", req.method, ex.what())};
  }
  if (req.id.is_null()) return;  // a notification gets no answer
  if (!answer) {
    send(rpc::encode_error(req.id, rpc::method_not_found,
                           fmt::format("unknown method '{}'", req.method)));
  } else if (*answer) {
    send(rpc::encode_result(req.id, std::move(**answer)));
  } else {
    send(rpc::encode_error(req.id, static_cast<int>(answer->err().code), answer->err().message));
  }
}

void control_session::send(std::string line) {
  if (closed_) return;
  queued_bytes_ += line.size();
  if (queued_bytes_ > max_queued_bytes) {
    spdlog::warn("control socket: client {} is not reading; disconnecting it", peer_.describe());
    close();
    return;
  }
  outq_.push_back(std::move(line));
  if (!writing_) write_next();
}

void control_session::write_next() {
  if (outq_.empty() || closed_) {
    writing_ = false;
    write_timer_.cancel();
    return;
  }
  writing_ = true;
  write_timer_.expires_after(write_timeout);
  write_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;
    spdlog::warn("control socket: write to {} timed out", self->peer_.describe());
    self->close();
  });
  asio::async_write(socket_, asio::buffer(outq_.front()),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                      if (self->closed_) return;
                      if (ec) {
                        self->close();
                        return;
                      }
                      self->queued_bytes_ -= self->outq_.front().size();
                      self->outq_.pop_front();
                      self->write_next();
                    });
}

void control_session::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  read_timer_.cancel();
  write_timer_.cancel();
  socket_.shutdown(stream::socket::shutdown_both, ec);
  socket_.close(ec);
  server_.sessions_.erase(shared_from_this());
}

}  // namespace voxd
