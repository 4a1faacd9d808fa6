// Tracker load generator for bench/tracker: the same client drives voxd-tracker and opentracker.
//
//   loadgen udp|http HOST PORT HASHFILE SECONDS CONCURRENCY [RATE]
//
// Announces random info-hashes from HASHFILE (40-hex per line) with peer ports cycling through
// 1024..65023, keeping CONCURRENCY requests in flight (UDP) or CONCURRENCY keep-alive connections
// busy (HTTP; reconnecting when the server closes). With RATE, requests are paced at RATE per
// second and latencies are reported. Prints one JSON line: {"requests": N, "per_second": R,
// "p50_us": .., "p99_us": .., "errors": E}.
//
//   loadgen fill HOST PORT HASHFILE PEERS
//
// Stores exactly PEERS distinct peers over UDP (for memory per peer) and prints {"peers": PEERS}.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<std::array<std::uint8_t, 20>> read_hashes(const char* path) {
  std::vector<std::array<std::uint8_t, 20>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 40) continue;
    std::array<std::uint8_t, 20> h{};
    for (int i = 0; i < 20; ++i)
      h[i] = static_cast<std::uint8_t>(std::stoi(line.substr(2 * i, 2), nullptr, 16));
    out.push_back(h);
  }
  return out;
}

void put32(std::uint8_t* p, std::uint32_t v) {
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}
void put64(std::uint8_t* p, std::uint64_t v) {
  put32(p, static_cast<std::uint32_t>(v >> 32));
  put32(p + 4, static_cast<std::uint32_t>(v));
}
std::uint32_t get32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

struct stats {
  std::uint64_t requests = 0, errors = 0;
  std::vector<double> latencies_us;
  void report(double seconds) const {
    auto l = latencies_us;
    std::sort(l.begin(), l.end());
    auto pct = [&](double p) {
      return l.empty() ? 0.0 : l[std::min(l.size() - 1, static_cast<std::size_t>(p * l.size()))];
    };
    std::printf(
        "{\"requests\": %llu, \"per_second\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
        "\"max_us\": %.1f, \"errors\": %llu}\n",
        static_cast<unsigned long long>(requests), requests / seconds, pct(0.5), pct(0.99),
        l.empty() ? 0.0 : l.back(), static_cast<unsigned long long>(errors));
  }
};

sockaddr_in target(const char* host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, host, &a.sin_addr);
  return a;
}

// BEP 15 connect on a connected UDP socket (blocking or not), retried; 0 if the server never
// answers.
std::uint64_t udp_connect(int fd) {
  std::uint8_t pkt[16], in[64];
  std::uint64_t conn = 0;
  for (int tries = 0; tries < 50 && !conn; ++tries) {
    put64(pkt, 0x41727101980ull), put32(pkt + 8, 0), put32(pkt + 12, 42);
    send(fd, pkt, 16, 0);
    usleep(20000);
    auto n = recv(fd, in, sizeof in, MSG_DONTWAIT);
    if (n >= 16 && get32(in) == 0) std::memcpy(&conn, in + 8, 8);
  }
  return conn;
}

int run_udp(sockaddr_in to, const std::vector<std::array<std::uint8_t, 20>>& hashes, double seconds,
            int concurrency, double rate) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to);
  int buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  std::uint8_t pkt[98]{}, in[4096];
  const std::uint64_t conn = udp_connect(fd);
  if (!conn) {
    std::fprintf(stderr, "udp connect failed\n");
    return 1;
  }
  std::mt19937_64 rng(7);
  std::vector<clock_type::time_point> sent(1 << 16);
  stats st;
  std::uint32_t tx = 0;
  int inflight = 0;
  const auto start = clock_type::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto last_recv = start;
  std::uint64_t scheduled = 0;
  for (auto now = start; now < end; now = clock_type::now()) {
    bool may_send = rate > 0
                        ? scheduled < static_cast<std::uint64_t>(
                                          std::chrono::duration<double>(now - start).count() * rate)
                        : inflight < concurrency;
    while (may_send) {
      ++tx;
      std::memcpy(pkt, &conn, 8);
      put32(pkt + 8, 1), put32(pkt + 12, tx);
      std::memcpy(pkt + 16, hashes[rng() % hashes.size()].data(), 20);
      std::memset(pkt + 36, 'p', 20);
      put32(pkt + 36, tx);
      put64(pkt + 56, 0), put64(pkt + 64, tx % 3 ? 1000 : 0), put64(pkt + 72, 0);
      put32(pkt + 80, 2), put32(pkt + 84, 0), put32(pkt + 88, tx), put32(pkt + 92, 50);
      const std::uint16_t port = static_cast<std::uint16_t>(1024 + tx % 64000);
      pkt[96] = port >> 8, pkt[97] = port & 0xff;
      sent[tx & 0xffff] = clock_type::now();
      if (send(fd, pkt, 98, 0) < 0) break;
      ++inflight;
      ++scheduled;
      may_send = rate > 0 ? false : inflight < concurrency;
    }
    for (;;) {
      auto n = recv(fd, in, sizeof in, 0);
      if (n < 0) break;
      last_recv = clock_type::now();
      --inflight;
      if (n >= 8 && get32(in) == 1) {
        ++st.requests;
        if (rate > 0)
          st.latencies_us.push_back(
              std::chrono::duration<double, std::micro>(last_recv - sent[get32(in + 4) & 0xffff])
                  .count());
      } else {
        ++st.errors;
      }
    }
    if (inflight > 0 && clock_type::now() - last_recv > std::chrono::milliseconds(200))
      inflight = 0;  // lost datagrams
  }
  st.report(seconds);
  return 0;
}

struct http_conn {
  int fd = -1;
  std::string out, in;
  bool busy = false;
  clock_type::time_point sent;
};

std::string escape(const std::uint8_t* p, std::size_t n) {
  static const char* hex = "0123456789ABCDEF";
  std::string s;
  for (std::size_t i = 0; i < n; ++i)
    s += '%', s += hex[p[i] >> 4], s += hex[p[i] & 15];
  return s;
}

int run_http(sockaddr_in to, const char* host,
             const std::vector<std::array<std::uint8_t, 20>>& hashes, double seconds,
             int concurrency, double rate) {
  int ep = epoll_create1(0);
  std::vector<http_conn> conns(static_cast<std::size_t>(concurrency));
  auto open_conn = [&](std::size_t i) {
    auto& c = conns[i];
    if (c.fd >= 0) close(c.fd);
    c.fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return false;
    fcntl(c.fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{EPOLLIN, {.u64 = i}};
    epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    c.in.clear();
    c.busy = false;
    return true;
  };
  for (std::size_t i = 0; i < conns.size(); ++i)
    if (!open_conn(i)) {
      std::fprintf(stderr, "http connect failed\n");
      return 1;
    }
  std::mt19937_64 rng(7);
  stats st;
  std::uint64_t counter = 0, scheduled = 0;
  const auto start = clock_type::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto send_one = [&](http_conn& c) {
    ++counter;
    std::uint8_t peer[20];
    std::memset(peer, 'p', 20);
    std::memcpy(peer, &counter, 8);
    const auto& h = hashes[rng() % hashes.size()];
    c.out = "GET /announce?info_hash=" + escape(h.data(), 20) + "&peer_id=" + escape(peer, 20) +
            "&port=" + std::to_string(1024 + counter % 64000) +
            "&uploaded=0&downloaded=0&left=" + (counter % 3 ? "1000" : "0") +
            "&compact=1&numwant=50&event=started HTTP/1.1\r\nHost: " + host +
            "\r\nConnection: keep-alive\r\n\r\n";
    c.sent = clock_type::now();
    c.busy = true;
    if (write(c.fd, c.out.data(), c.out.size()) != static_cast<ssize_t>(c.out.size())) ++st.errors;
  };
  std::array<epoll_event, 256> events{};
  char buf[65536];
  for (auto now = start; now < end; now = clock_type::now()) {
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (conns[i].busy) continue;
      if (rate > 0) {
        if (scheduled >=
            static_cast<std::uint64_t>(std::chrono::duration<double>(now - start).count() * rate))
          break;
        ++scheduled;
      }
      send_one(conns[i]);
    }
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1);
    for (int k = 0; k < n; ++k) {
      auto i = events[k].data.u64;
      auto& c = conns[i];
      bool eof = false;
      for (;;) {
        auto r = read(c.fd, buf, sizeof buf);
        if (r <= 0) {
          eof = r == 0;
          break;
        }
        c.in.append(buf, static_cast<std::size_t>(r));
      }
      for (;;) {
        auto hdr_end = c.in.find("\r\n\r\n");
        if (hdr_end == std::string::npos) break;
        std::string headers = c.in.substr(0, hdr_end);
        for (auto& ch : headers)
          ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        auto cl = headers.find("content-length:");
        std::size_t len =
            cl == std::string::npos ? 0 : std::strtoul(headers.c_str() + cl + 15, nullptr, 10);
        bool const closes = headers.find("connection: close") != std::string::npos ||
                            headers.rfind("http/1.0", 0) == 0;
        if (c.in.size() < hdr_end + 4 + len) break;
        ++st.requests;
        if (rate > 0)
          st.latencies_us.push_back(
              std::chrono::duration<double, std::micro>(clock_type::now() - c.sent).count());
        c.in.erase(0, hdr_end + 4 + len);
        c.busy = false;
        if (closes) eof = true;
        break;
      }
      if (eof) {  // servers without keep-alive: a new connection per request
        if (c.busy) ++st.errors;
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        open_conn(i);
      }
    }
  }
  st.report(seconds);
  return 0;
}

// Stores exactly `peers` distinct peers (hash k % n, port 1024 + k / n), re-sending lost ones.
int run_fill(sockaddr_in to, const std::vector<std::array<std::uint8_t, 20>>& hashes,
             std::uint64_t peers) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to);
  timeval tv{0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::uint8_t pkt[98]{}, in[4096];
  const std::uint64_t conn = udp_connect(fd);
  const std::uint64_t n = hashes.size();
  if (!conn || peers > n * 64000) return 1;
  constexpr std::uint64_t window = 32;
  for (std::uint64_t base = 0; base < peers; base += window) {
    const auto last = std::min(peers, base + window);
    std::vector<bool> got(last - base);
    for (int attempt = 0; attempt < 20 && std::count(got.begin(), got.end(), false) > 0;
         ++attempt) {
      for (auto k = base; k < last; ++k) {
        if (got[k - base]) continue;
        std::memcpy(pkt, &conn, 8);
        put32(pkt + 8, 1), put32(pkt + 12, static_cast<std::uint32_t>(k));
        std::memcpy(pkt + 16, hashes[k % n].data(), 20);
        std::memset(pkt + 36, 'f', 20);
        put64(pkt + 56, 0), put64(pkt + 64, 1000), put64(pkt + 72, 0);
        put32(pkt + 80, 2), put32(pkt + 84, 0), put32(pkt + 88, 0), put32(pkt + 92, 0);
        const auto port = static_cast<std::uint16_t>(1024 + k / n);
        pkt[96] = port >> 8, pkt[97] = port & 0xff;
        send(fd, pkt, 98, 0);
      }
      for (;;) {
        auto r = recv(fd, in, sizeof in, 0);
        if (r < 8) break;
        const auto k = get32(in + 4);
        if (k >= base && k < last) got[k - base] = true;
        if (std::count(got.begin(), got.end(), false) == 0) break;
      }
    }
  }
  std::printf("{\"peers\": %llu}\n", static_cast<unsigned long long>(peers));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: loadgen udp|http HOST PORT HASHFILE SECONDS CONCURRENCY [RATE]\n"
                 "       loadgen fill HOST PORT HASHFILE PEERS\n");
    return 2;
  }
  const std::string mode = argv[1];
  auto to = target(argv[2], std::atoi(argv[3]));
  auto hashes = read_hashes(argv[4]);
  if (hashes.empty()) {
    std::fprintf(stderr, "no hashes in %s\n", argv[4]);
    return 2;
  }
  if (mode == "fill") return run_fill(to, hashes, std::strtoull(argv[5], nullptr, 10));
  if (argc < 7) return 2;
  const double seconds = std::atof(argv[5]);
  const int concurrency = std::max(1, std::atoi(argv[6]));
  const double rate = argc > 7 ? std::atof(argv[7]) : 0;
  return mode == "udp" ? run_udp(to, hashes, seconds, concurrency, rate)
                       : run_http(to, argv[2], hashes, seconds, concurrency, rate);
}
