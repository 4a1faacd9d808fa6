#include "voxd/daemon/http_engine.hpp"

#include <curl/curl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <deque>
#include <stdexcept>

#include "voxd/common/error.hpp"

namespace voxd {
namespace {

using clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string http_response::header(const std::string& name) const {
  const auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

bool http_response::lasting_failure() const {
  switch (curl_code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return true;
    default:
      return false;
  }
}

struct http_engine::impl {
  struct transfer {
    request_id id = 0;
    http_request req;
    completion done;
    progress_fn progress;
    http_response resp;
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    bool paused = false;
    bool cancelled = false;
    clock::time_point rtt_read{};
    impl* owner = nullptr;
  };

  CURLM* multi = nullptr;
  std::thread thread;
  std::mutex mutex;  // guards incoming, cancels, stopping
  std::deque<std::unique_ptr<transfer>> incoming;
  std::vector<request_id> cancels;
  bool stopping = false;
  std::atomic<request_id> next_id{1};
  std::atomic<std::uint64_t> limit{0};

  // Engine-thread state.
  std::map<request_id, std::unique_ptr<transfer>> active;
  double tokens = 0;
  clock::time_point last_refill = clock::now();

  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    std::string_view line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
      t->resp.headers.clear();  // a new response (after a redirect or 100-continue)
      return size * n;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return size * n;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
      value.remove_suffix(1);
    t->resp.headers[lower(std::string(line.substr(0, colon)))] = std::string(value);
    return size * n;
  }

  static std::size_t on_data(char* data, std::size_t size, std::size_t n, void* user) {
    auto* t = static_cast<transfer*>(user);
    const auto len = size * n;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    // A 200 to a range that does not start at 0 is the whole file: never write it at the offset.
    const bool success_body =
        code == 206 || (code == 200 && (!t->req.range || t->req.range->first == 0));
    if (t->owner->limit.load(std::memory_order_relaxed) != 0 && success_body) {
      if (t->owner->tokens <= 0) {
        t->paused = true;
        return CURL_WRITEFUNC_PAUSE;
      }
      t->owner->tokens -= static_cast<double>(len);
    }
    if (t->req.file_fd >= 0 && t->req.cursor && t->req.range && success_body) {
      // Bytes of an answer for another range than the one asked for never reach the file.
      if (code == 206 && t->resp.body_bytes == 0 &&
          t->resp.header("content-range").rfind(fmt::format("bytes {}-", t->req.range->first), 0) !=
              0) {
        t->resp.curl_error =
            fmt::format("the answer is for another range (Content-Range '{}', asked from {})",
                        t->resp.header("content-range"), t->req.range->first);
        return 0;  // aborts the transfer with CURLE_WRITE_ERROR
      }
      auto& c = *t->req.cursor;
      const auto asked_end = t->req.range->second + 1;
      const auto now = clock::now();
      std::uint32_t rtt = 0;
      if (now - t->rtt_read > std::chrono::milliseconds(100)) {
        t->rtt_read = now;
        rtt = socket_rtt_us(t->easy);
      }
      std::lock_guard lock(c.m);
      if (rtt != 0) c.rtt_us = rtt;
      const auto allowed = std::min<std::uint64_t>(len, c.end > c.pos ? c.end - c.pos : 0);
      std::size_t off = 0;
      while (off < allowed) {
        const auto w =
            ::pwrite(t->req.file_fd, data + off, allowed - off, static_cast<off_t>(c.pos + off));
        if (w < 0) {
          if (errno == EINTR) continue;
          t->resp.write_errno = errno;
          t->resp.curl_error =
              fmt::format("writing the partial file failed: {}", errno_text(errno));
          c.pos += off;
          return 0;
        }
        off += static_cast<std::size_t>(w);
      }
      c.pos += allowed;
      t->resp.body_bytes += allowed;
      if (t->progress) t->progress(allowed);
      if (c.end < asked_end && c.pos >= c.end) {
        // The rest of the range went to another connection: stop here.
        t->resp.cut_short = true;
        return 0;
      }
      if (allowed < len) {
        t->resp.body_bytes += len - allowed;
        t->resp.curl_error = "the server sent more bytes than the range asked for";
        return 0;
      }
      return len;
    } else {
      if (t->resp.body.size() + len > t->req.max_body) {
        t->resp.curl_error = fmt::format("response body exceeds {} bytes", t->req.max_body);
        return 0;
      }
      t->resp.body.append(data, len);
    }
    t->resp.body_bytes += len;
    if (t->progress && success_body) t->progress(len);
    return len;
  }

  static std::uint32_t socket_rtt_us(CURL* easy) {
    curl_socket_t fd = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
      return 0;
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
    return info.tcpi_rtt;
  }

  static int on_socket(void* user, curl_socket_t fd, curlsocktype purpose) {
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKOPT_OK;
    auto* self = static_cast<impl*>(user);
    const auto lim = self->limit.load(std::memory_order_relaxed);
    // About 50 ms of the capped rate: enough window for the cap, little held in flight.
    const int buf = static_cast<int>(std::clamp<std::uint64_t>(lim / 20, 64 * 1024, 1 << 20));
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    return CURL_SOCKOPT_OK;
  }

  void start(std::unique_ptr<transfer> t) {
    t->owner = this;
    t->easy = curl_easy_init();
    if (!t->easy) {
      t->resp.curl_error = "curl_easy_init failed";
      finish(std::move(t));
      return;
    }
    auto* e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, t->req.url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);  // redirects are followed by the caller
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, static_cast<long>(t->req.connect_timeout_s));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, static_cast<long>(t->req.stall_timeout_s));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "voxd/0.1");
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &impl::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &impl::on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    if (t->req.method != "GET") {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t->req.method.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->req.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->req.body.size()));
    }
    if (limit.load(std::memory_order_relaxed) != 0) {
      // Under a cap the kernel would otherwise buffer megabytes per connection that the origin
      // counts as sent; a small window keeps origin bytes close to bytes used.
      curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, &impl::on_socket);
      curl_easy_setopt(e, CURLOPT_SOCKOPTDATA, this);
    }
    // The Hub compresses text unless told not to; sizes and hashes are of the identity encoding.
    t->headers = curl_slist_append(t->headers, "Accept-Encoding: identity");
    for (const auto& h : t->req.headers)
      t->headers = curl_slist_append(t->headers, h.c_str());
    if (t->req.range) {
      const auto r = fmt::format("Range: bytes={}-{}", t->req.range->first, t->req.range->second);
      t->headers = curl_slist_append(t->headers, r.c_str());
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    const auto id = t->id;
    curl_multi_add_handle(multi, e);
    active.emplace(id, std::move(t));
  }

  void finish(std::unique_ptr<transfer> t, CURLcode code = CURLE_OK) {
    if (t->easy) {
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->resp.status);
      curl_multi_remove_handle(multi, t->easy);
      curl_easy_cleanup(t->easy);
    }
    if (t->headers) curl_slist_free_all(t->headers);
    t->resp.curl_code = static_cast<int>(code);
    if (t->cancelled)
      t->resp.curl_error = "cancelled";
    else if (code != CURLE_OK && t->resp.curl_error.empty())
      t->resp.curl_error = curl_easy_strerror(code);
    if (t->done) t->done(std::move(t->resp));
  }

  void refill() {
    const auto now = clock::now();
    const auto lim = static_cast<double>(limit.load(std::memory_order_relaxed));
    const double dt = std::chrono::duration<double>(now - last_refill).count();
    last_refill = now;
    if (lim != 0) {
      // Burst of 50 ms keeps the rate smooth while letting several connections share it.
      tokens = std::min(tokens + lim * dt, std::max(lim * 0.05, 64.0 * 1024));
      if (tokens <= 0) return;
    }
    // Either tokens are available or the cap was lifted: paused transfers carry on.
    for (auto& [id, t] : active) {
      if (!t->paused) continue;
      t->paused = false;
      curl_easy_pause(t->easy, CURLPAUSE_CONT);  // may call on_data right away
    }
  }

  void run() {
    for (;;) {
      {
        std::lock_guard lock(mutex);
        if (stopping) break;
        while (!incoming.empty()) {
          auto t = std::move(incoming.front());
          incoming.pop_front();
          start(std::move(t));
        }
        for (auto id : cancels) {
          auto it = active.find(id);
          if (it == active.end()) continue;
          auto t = std::move(it->second);
          active.erase(it);
          t->cancelled = true;
          finish(std::move(t), CURLE_ABORTED_BY_CALLBACK);
        }
        cancels.clear();
      }
      refill();
      int running = 0;
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
        if (msg->msg != CURLMSG_DONE) continue;
        transfer* raw = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
        const auto code = msg->data.result;
        auto it = active.find(raw->id);
        auto t = std::move(it->second);
        active.erase(it);
        finish(std::move(t), code);
      }
      const bool any_paused =
          std::any_of(active.begin(), active.end(), [](const auto& p) { return p.second->paused; });
      curl_multi_poll(multi, nullptr, 0, any_paused ? 5 : 200, nullptr);
    }
    for (auto& [id, t] : active) {
      t->cancelled = true;
      finish(std::move(t), CURLE_ABORTED_BY_CALLBACK);
    }
    active.clear();
  }
};

http_engine::http_engine() : impl_(std::make_unique<impl>()) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!initialised) throw std::runtime_error("curl_global_init failed");
  impl_->multi = curl_multi_init();
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
  impl_->thread = std::thread([this] { impl_->run(); });
}

http_engine::~http_engine() {
  stop();
  curl_multi_cleanup(impl_->multi);
}

void http_engine::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping && !impl_->thread.joinable()) return;
    impl_->stopping = true;
  }
  curl_multi_wakeup(impl_->multi);
  if (impl_->thread.joinable()) impl_->thread.join();
}

http_engine::request_id http_engine::submit(http_request req, completion done,
                                            progress_fn progress) {
  auto t = std::make_unique<impl::transfer>();
  t->id = impl_->next_id++;
  t->req = std::move(req);
  t->done = std::move(done);
  t->progress = std::move(progress);
  const auto id = t->id;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->incoming.push_back(std::move(t));
  }
  curl_multi_wakeup(impl_->multi);
  return id;
}

void http_engine::cancel(request_id id) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->cancels.push_back(id);
  }
  curl_multi_wakeup(impl_->multi);
}

void http_engine::set_download_limit(std::uint64_t bps) {
  impl_->limit.store(bps, std::memory_order_relaxed);
  curl_multi_wakeup(impl_->multi);
}

}  // namespace voxd
