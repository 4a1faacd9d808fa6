#pragma once
// libcurl's multi interface on a thread of its own. Requests are submitted from any thread; bodies
// go to memory or straight into a file at an offset (pwrite on this thread); completions are
// handed to a callback the caller provides (the daemon posts them onto its event loop).
// One token bucket caps the total download rate of every transfer, live-adjustable.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "voxd/daemon/range_plan.hpp"

namespace voxd {

struct http_request {
  std::string method = "GET";  // GET, or PUT/POST/DELETE with `body`
  std::string body;
  std::string url;
  std::vector<std::string> headers;                              // "Name: value"
  std::optional<std::pair<std::uint64_t, std::uint64_t>> range;  // inclusive byte range
  // >= 0: write a 206 body (or a 200 one for a range from 0) into this file at cursor->pos,
  // advancing it; stop cleanly (cut_short) when it reaches cursor->end, which the owner may lower
  // while the transfer runs. Set together with `range`.
  int file_fd = -1;
  std::shared_ptr<range_cursor> cursor;
  std::size_t max_body = 4 << 20;  // memory bodies above this fail the request
  int connect_timeout_s = 10;
  int stall_timeout_s = 30;  // abort when no byte arrives for this long
};

struct http_response {
  int curl_code = 0;       // CURLE_OK == 0
  std::string curl_error;  // text when curl_code != 0 or a local write failed
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names, last response only
  std::string body;                            // memory bodies
  std::uint64_t body_bytes = 0;                // bytes received (file or memory)
  bool cut_short = false;  // file mode: stopped at a cursor end lowered after the request began
  int write_errno = 0;     // file mode: writing the body failed with this errno (the disk's fault)
  bool transport_ok() const { return curl_code == 0 && curl_error.empty(); }
  // A transport failure that waiting cannot cure (the origin's certificate is not trusted, the
  // URL cannot be used); DNS, connection, reset, TLS handshake and timeout failures may pass.
  bool lasting_failure() const;
  std::string header(const std::string& name) const;
};

class http_engine {
 public:
  using request_id = std::uint64_t;
  using completion = std::function<void(http_response)>;
  // Called on the engine thread for every block written; lets the owner count bytes as they land.
  using progress_fn = std::function<void(std::uint64_t bytes)>;

  http_engine();
  ~http_engine();
  http_engine(const http_engine&) = delete;
  http_engine& operator=(const http_engine&) = delete;

  request_id submit(http_request req, completion done, progress_fn progress = {});
  // The completion is still called, with curl_error "cancelled".
  void cancel(request_id id);
  // Bytes per second for all transfers together; 0 = unlimited.
  void set_download_limit(std::uint64_t bytes_per_second);
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace voxd
