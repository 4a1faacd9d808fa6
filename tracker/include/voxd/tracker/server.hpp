#pragma once
// voxd-tracker's network side: an HTTP server (Beast, keep-alive) for announce, scrape, the
// registry, /metrics and /healthz, and a BEP 15 UDP server. Each connection or packet contains its
// own failures; the state lives in swarm_store and registry.

#include <boost/asio/io_context.hpp>

#include <memory>
#include <string>

#include "voxd/common/error.hpp"
#include "voxd/tracker/registry.hpp"
#include "voxd/tracker/swarm.hpp"

namespace voxd::tracker {

struct server_options {
  std::string http_listen = "0.0.0.0:6969";  // empty: no HTTP
  std::string udp_listen = "0.0.0.0:6969";   // empty: no UDP
  std::string publish_token;                 // empty: PUT and leases are open
  std::string passkey;                       // non-empty: /announce/<passkey> only
  int interval = 60;
  int min_interval = 10;
  int jitter_percent = 10;
  bool allow_list = false;          // serve only info-hashes the registry knows
  int max_requests_per_second = 0;  // per source address; 0 = unlimited
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 4 << 20;
  int idle_timeout_s = 30;
};

class server {
 public:
  server(boost::asio::io_context& io, server_options opts, swarm_store& swarms, registry& reg);
  ~server();
  status start();
  void stop();
  void set_options(const server_options& opts);  // limits and allow-list mode (SIGHUP)
  unsigned short http_port() const;
  unsigned short udp_port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace voxd::tracker
