#include "voxd/tracker/server.hpp"

#include "voxd/tracker/groups.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace voxd::tracker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using udp_proto = asio::ip::udp;
using json = nlohmann::json;

namespace {

using steady = std::chrono::steady_clock;

std::uint32_t now_seconds() {
  static const auto start = steady::now();
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::seconds>(steady::now() - start).count());
}

result<asio::ip::address> parse_address(const std::string& s, unsigned short& port) {
  auto const colon = s.rfind(':');
  if (colon == std::string::npos)
    return make_error(errc::config, fmt::format("'{}' is not IP:PORT", s));
  auto host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  int p = -1;
  try {
    p = std::stoi(s.substr(colon + 1));
  } catch (...) {
  }
  if (ec || p < 0 || p > 65535)
    return make_error(errc::config, fmt::format("'{}' is not IP:PORT", s));
  port = static_cast<unsigned short>(p);
  return addr;
}

peer_address to_peer(const asio::ip::address& a, std::uint16_t port) {
  peer_address p;
  p.port = port;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    auto const b = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).to_bytes();
    std::memcpy(p.ip.data(), b.data(), 4);
  } else if (a.is_v6()) {
    auto const b = a.to_v6().to_bytes();
    std::memcpy(p.ip.data(), b.data(), 16);
    p.v6 = true;
  } else {
    auto const b = a.to_v4().to_bytes();
    std::memcpy(p.ip.data(), b.data(), 4);
  }
  return p;
}

// Prometheus metrics: plain atomics, rendered on demand.
struct metrics {
  std::array<std::atomic<std::uint64_t>, 2> announce_ok{}, announce_err{}, scrape_ok{},
      scrape_err{};  // [http, udp]
  std::map<std::string, std::atomic<std::uint64_t>> rejected;
  std::mutex rejected_mutex;
  static constexpr std::array<double, 8> buckets{0.00005, 0.0001, 0.00025, 0.0005,
                                                 0.001,   0.0025, 0.01,    0.1};
  std::array<std::atomic<std::uint64_t>, 9> latency{};
  std::atomic<std::uint64_t> latency_sum_ns{0};

  void reject(const std::string& reason) {
    std::lock_guard lock(rejected_mutex);
    rejected[reason]++;
  }
  void observe(double seconds) {
    std::size_t i = 0;
    while (i < buckets.size() && seconds > buckets[i])
      ++i;
    latency[i]++;
    latency_sum_ns += static_cast<std::uint64_t>(seconds * 1e9);
  }
};

}  // namespace

struct server::impl {
  asio::io_context& io;
  server_options opts;  // read and replaced on the io thread only (requests and SIGHUP)
  swarm_store& swarms;
  registry& reg;
  first_fetch_groups groups{reg};
  metrics m;
  tcp::acceptor acceptor{io};
  udp_proto::socket udp{io};
  asio::steady_timer housekeeping{io};
  std::array<std::uint8_t, 2048> udp_buf{};
  udp_proto::endpoint udp_from;
  // UDP connection ids: a keyed hash of the client address under a secret rotated every minute; the
  // previous secret is still accepted, so an id lives one to two minutes with no per-client state.
  std::array<std::array<std::uint8_t, 32>, 2> secrets{};
  std::mutex rate_mutex;
  struct bucket {
    double tokens;
    steady::time_point last;
  };
  std::unordered_map<std::string, bucket> rates;

  impl(asio::io_context& i, server_options o, swarm_store& s, registry& r)
      : io(i), opts(std::move(o)), swarms(s), reg(r) {
    RAND_bytes(secrets[0].data(), 32);
    rotate_secret();  // primes both hash states
  }

  const server_options& options() const { return opts; }

  int jittered_interval(const server_options& o) {
    // Spreads re-announces so a fleet that started together does not stay in step.
    static std::atomic<std::uint32_t> seq{0};
    const int span = o.interval * o.jitter_percent / 100;
    if (span <= 0) return o.interval;
    const auto r = (seq.fetch_add(2654435761u) >> 7) % static_cast<std::uint32_t>(2 * span + 1);
    return o.interval - span + static_cast<int>(r);
  }

  bool allow_rate(const asio::ip::address& a, int per_second) {
    if (per_second <= 0) return true;
    const auto now = steady::now();
    std::lock_guard lock(rate_mutex);
    auto [it, fresh] =
        rates.try_emplace(a.to_string(), bucket{static_cast<double>(per_second), now});
    auto& b = it->second;
    b.tokens = std::min<double>(
        per_second, b.tokens + per_second * std::chrono::duration<double>(now - b.last).count());
    b.last = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  // SHA-256 states that have absorbed a 64-byte block holding each secret; per packet only the
  // client address is hashed on top (fixed-length input, so no length-extension concern).
  struct primed_hash {
    EVP_MD_CTX* base = EVP_MD_CTX_new();
    EVP_MD_CTX* work = EVP_MD_CTX_new();
    primed_hash() = default;
    primed_hash(const primed_hash&) = delete;
    primed_hash& operator=(const primed_hash&) = delete;
    ~primed_hash() {
      EVP_MD_CTX_free(base);
      EVP_MD_CTX_free(work);
    }
    void prime(const std::array<std::uint8_t, 32>& secret) {
      std::array<std::uint8_t, 64> block{};
      std::memcpy(block.data(), secret.data(), 32);
      EVP_DigestInit_ex(base, EVP_sha256(), nullptr);
      EVP_DigestUpdate(base, block.data(), block.size());
    }
  };
  std::array<primed_hash, 2> primed;

  void rotate_secret() {
    secrets[1] = secrets[0];
    RAND_bytes(secrets[0].data(), 32);
    primed[0].prime(secrets[0]);
    primed[1].prime(secrets[1]);
  }

  std::uint64_t connection_id(const udp_proto::endpoint& from, int which) {
    const auto addr = from.address();
    std::array<std::uint8_t, 16> bytes{};
    std::size_t n = 4;
    if (addr.is_v4()) {
      const auto b = addr.to_v4().to_bytes();
      std::memcpy(bytes.data(), b.data(), 4);
    } else {
      const auto b = addr.to_v6().to_bytes();
      std::memcpy(bytes.data(), b.data(), 16);
      n = 16;
    }
    auto& p = primed[static_cast<std::size_t>(which)];
    EVP_MD_CTX_copy_ex(p.work, p.base);
    EVP_DigestUpdate(p.work, bytes.data(), n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(p.work, md, &len);
    std::uint64_t id;
    std::memcpy(&id, md, 8);
    return id;
  }

  bool valid_connection(const udp_proto::endpoint& from, std::uint64_t id) {
    // Constant-time comparison: the id is a capability.
    for (int which : {0, 1}) {
      auto const want = connection_id(from, which);
      if (CRYPTO_memcmp(&want, &id, 8) == 0) return true;
    }
    return false;
  }

  // ---- shared announce / scrape logic ---------------------------------------------------------

  result<announce_reply> do_announce(const announce_request& req, const peer_address& from,
                                     const server_options& o) {
    if (o.allow_list && !reg.knows(req.hash)) {
      m.reject("unknown_info_hash");
      return make_error(errc::not_found,
                        "unknown info_hash: this tracker serves only torrents in its registry");
    }
    auto reply = swarms.announce(req, from, now_seconds());
    reply.interval = jittered_interval(o);
    reply.min_interval = o.min_interval;
    return reply;
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  struct session : std::enable_shared_from_this<session> {
    impl& owner;
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::optional<http::request_parser<http::string_body>> parser;
    http::response<http::string_body> res;
    asio::ip::address peer;

    session(impl& o, tcp::socket s) : owner(o), stream(std::move(s)) {
      boost::system::error_code ec;
      peer = stream.socket().remote_endpoint(ec).address();
    }

    void read() {
      const auto& o = owner.options();
      parser.emplace();
      parser->header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
      parser->body_limit(o.max_body_bytes);
      stream.expires_after(std::chrono::seconds(o.idle_timeout_s));
      http::async_read(
          stream, buffer, *parser,
          [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
        return close();
      }
      if (ec) {
        // Garbage, over-long headers or body: answer once, then hang up.
        owner.m.reject(ec == http::error::header_limit || ec == http::error::body_limit
                           ? "too_large"
                           : "malformed");
        res = {};
        res.version(11);
        res.result(ec == http::error::body_limit || ec == http::error::header_limit
                       ? http::status::payload_too_large
                       : http::status::bad_request);
        res.set(http::field::content_type, "text/plain");
        res.body() = fmt::format("bad request: {}\n", ec.message());
        res.keep_alive(false);
        return write();
      }
      try {
        owner.handle(parser->get(), peer, res);
      } catch (const std::exception& e) {
        spdlog::error("http: request from {} failed: {}", peer.to_string(), e.what());
        res = {};
        res.version(11);
        res.result(http::status::internal_server_error);
        res.body() = "internal error\n";
      }
      res.keep_alive(parser->get().keep_alive());
      write();
    }

    void write() {
      res.prepare_payload();
      http::async_write(stream, res,
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec || !self->res.keep_alive()) return self->close();
                          self->read();
                        });
    }

    void close() {
      beast::error_code ec;
      stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      stream.close();
    }
  };

  static void respond(http::response<http::string_body>& res, http::status st, std::string body,
                      std::string_view type = "text/plain") {
    res.version(11);
    res.result(st);
    res.set(http::field::content_type, beast::string_view(type.data(), type.size()));
    res.set(http::field::server, "voxd-tracker");
    res.body() = std::move(body);
  }

  void handle(const http::request<http::string_body>& req, const asio::ip::address& peer,
              http::response<http::string_body>& res) {
    res = {};
    const auto& o = options();
    const std::string_view target(req.target().data(), req.target().size());
    const auto qpos = target.find('?');
    const auto path = target.substr(0, qpos);
    const auto query =
        qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);
    const bool tracker_path = path.rfind("/announce", 0) == 0 || path.rfind("/scrape", 0) == 0;
    if (path == "/healthz") return respond(res, http::status::ok, "ok\n");
    if (path == "/metrics")
      return respond(res, http::status::ok, render_metrics(), "text/plain; version=0.0.4");
    // Monitoring (above) is not rate limited; everything else is.
    if (!allow_rate(peer, o.max_requests_per_second)) {
      m.reject("rate_limited");
      respond(res, http::status::too_many_requests,
              tracker_path ? encode_failure("too many requests") : "too many requests\n");
      return;
    }
    if (tracker_path) {
      const bool announce = path.rfind("/announce", 0) == 0;
      const auto rest = path.substr(announce ? 9 : 7);
      const std::string expected = o.passkey.empty() ? "" : "/" + o.passkey;
      if (rest != expected) {
        m.reject("bad_passkey");
        (announce ? m.announce_err : m.scrape_err)[0]++;
        respond(res, http::status::ok,
                encode_failure(o.passkey.empty() ? "unknown path" : "unknown passkey"));
        return;
      }
      if (req.method() != http::verb::get) {
        respond(res, http::status::method_not_allowed, encode_failure("use GET"));
        return;
      }
      return announce ? http_announce(query, peer, o, res) : http_scrape(query, o, res);
    }
    if (path.rfind("/v1/blobs/", 0) == 0) return handle_registry(req, path.substr(10), o, res);
    if (path.rfind("/v2/blobs/", 0) == 0) return handle_group(req, path.substr(10), o, res);
    m.reject("not_found");
    respond(res, http::status::not_found, "not found\n");
  }

  void http_announce(std::string_view query, const asio::ip::address& peer, const server_options& o,
                     http::response<http::string_body>& res) {
    const auto t0 = steady::now();
    auto req = parse_announce_query(query);
    if (!req) {
      m.announce_err[0]++;
      m.reject("malformed_announce");
      return respond(res, http::status::ok, encode_failure(req.err().message));
    }
    auto reply = do_announce(*req, to_peer(peer, req->port), o);
    if (!reply) {
      m.announce_err[0]++;
      return respond(res, http::status::ok, encode_failure(reply.err().message));
    }
    m.announce_ok[0]++;
    respond(res, http::status::ok, encode_announce(*reply, req->compact));
    m.observe(std::chrono::duration<double>(steady::now() - t0).count());
  }

  void http_scrape(std::string_view query, const server_options& o,
                   http::response<http::string_body>& res) {
    auto hashes = parse_scrape_query(query, 100);
    if (!hashes) {
      m.scrape_err[0]++;
      m.reject("malformed_scrape");
      return respond(res, http::status::ok, encode_failure(hashes.err().message));
    }
    std::vector<std::pair<info_hash, swarm_counts>> files;
    for (const auto& h : *hashes)
      if (!o.allow_list || reg.knows(h)) files.emplace_back(h, swarms.scrape(h));
    m.scrape_ok[0]++;
    respond(res, http::status::ok, encode_scrape(files, o.min_interval));
  }

  // Writes need the publish token when one is configured; otherwise answers 401.
  bool publisher(const http::request<http::string_body>& req, const server_options& o,
                 http::response<http::string_body>& res) {
    if (o.publish_token.empty()) return true;
    const auto auth = req[http::field::authorization];
    const std::string want = "Bearer " + o.publish_token;
    if (auth.size() == want.size() && CRYPTO_memcmp(auth.data(), want.data(), want.size()) == 0)
      return true;
    m.reject("unauthorized");
    res.set(http::field::www_authenticate, "Bearer");
    respond(res, http::status::unauthorized, "a valid publish token is required\n");
    return false;
  }

  // "<blob>/<what>" of a registry path, with `what` one of `known`; otherwise answers 404.
  std::optional<std::pair<blob_id, std::string_view>> registry_target(
      std::string_view rest, std::initializer_list<std::string_view> known,
      http::response<http::string_body>& res) {
    const auto slash = rest.find('/');
    auto blob = blob_id::parse(rest.substr(0, slash));
    const auto what = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (!blob || std::find(known.begin(), known.end(), what) == known.end()) {
      m.reject("not_found");
      respond(res, http::status::not_found, blob ? "not found\n" : blob.err().message + "\n");
      return std::nullopt;
    }
    return std::make_pair(*blob, what);
  }

  void handle_registry(const http::request<http::string_body>& req, std::string_view rest,
                       const server_options& o, http::response<http::string_body>& res) {
    const auto target = registry_target(rest, {"torrent", "lease"}, res);
    if (!target) return;
    const auto& [blob, what] = *target;
    const bool reads = req.method() == http::verb::get || req.method() == http::verb::head;
    if (!reads && !publisher(req, o, res)) return;
    if (what == "torrent") {
      if (reads) {
        auto t = reg.get(blob);
        if (!t) return respond(res, http::status::not_found, "no torrent for this blob\n");
        return respond(res, http::status::ok, std::move(*t), "application/x-bittorrent");
      }
      if (req.method() != http::verb::put)
        return respond(res, http::status::method_not_allowed, "use GET or PUT\n");
      auto r = reg.put(blob, req.body());
      if (!r) {
        m.reject("bad_torrent");
        return respond(res, http::status::bad_request, r.err().message + "\n");
      }
      if (*r == registry::put_outcome::conflict) {
        m.reject("conflict");
        return respond(res, http::status::conflict,
                       "a different torrent is registered for this blob\n");
      }
      spdlog::info("registry: {} {}", *r == registry::put_outcome::stored ? "stored" : "unchanged",
                   blob.str());
      return respond(res,
                     *r == registry::put_outcome::stored ? http::status::created : http::status::ok,
                     "ok\n");
    }
    // Leases.
    auto lease_json = [](const lease& l) {
      return json{{"holder", l.holder},
                  {"bytes_done", l.bytes_done},
                  {"bytes_total", l.bytes_total},
                  {"expires_in", std::chrono::duration<double>(l.expires - steady::now()).count()}};
    };
    if (reads) {
      auto l = reg.lease_of(blob);
      if (!l) return respond(res, http::status::not_found, "{}", "application/json");
      return respond(res, http::status::ok, lease_json(*l).dump(), "application/json");
    }
    const json body =
        json::parse(req.body().empty() ? std::string("{}") : req.body(), nullptr, false);
    if (!body.is_object() || !body.contains("holder") || !body["holder"].is_string() ||
        body["holder"].get_ref<const std::string&>().empty() ||
        body["holder"].get_ref<const std::string&>().size() > 200)
      return respond(res, http::status::bad_request,
                     "body must be a JSON object with a non-empty string 'holder'\n");
    const auto holder = body["holder"].get<std::string>();
    if (req.method() == http::verb::delete_) {
      return respond(res,
                     reg.release_lease(blob, holder) ? http::status::ok : http::status::not_found,
                     "{}", "application/json");
    }
    if (req.method() != http::verb::post)
      return respond(res, http::status::method_not_allowed, "use POST or DELETE\n");
    auto num = [&](const char* k, std::uint64_t dflt) {
      return body.contains(k) && body[k].is_number_unsigned() ? body[k].get<std::uint64_t>() : dflt;
    };
    const auto ttl = std::chrono::seconds(std::clamp<std::uint64_t>(num("ttl", 30), 1, 3600));
    lease current;
    const auto outcome =
        reg.take_lease(blob, holder, ttl, num("bytes_done", 0), num("bytes_total", 0), current);
    if (outcome == lease_outcome::held_by_other)
      return respond(res, http::status::conflict, lease_json(current).dump(), "application/json");
    respond(res, http::status::ok, lease_json(current).dump(), "application/json");
  }

  // Registry API v2: first-fetch groups (docs/tracker.md).
  void handle_group(const http::request<http::string_body>& req, std::string_view rest,
                    const server_options& o, http::response<http::string_body>& res) {
    const auto target = registry_target(rest, {"group", "withdraw"}, res);
    if (!target) return;
    const auto& [blob, what] = *target;
    if (req.method() != http::verb::post)
      return respond(res, http::status::method_not_allowed, "use POST\n");
    // Piece hashes and withdrawals shape every member's torrent: publishers only.
    if (!publisher(req, o, res)) return;
    if (what == "withdraw") {
      auto w = parse_withdraw_request(req.body());
      if (!w) {
        m.reject("malformed_group");
        return respond(res, http::status::bad_request, w.err().message + "\n");
      }
      const bool gone = groups.withdraw(blob, *w, steady::now());
      return respond(res, http::status::ok, json{{"withdrawn", gone}}.dump(), "application/json");
    }
    auto r = parse_group_request(req.body());
    if (!r) {
      m.reject("malformed_group");
      return respond(res, http::status::bad_request, r.err().message + "\n");
    }
    auto a = groups.join(blob, *r, steady::now());
    if (!a) {
      m.reject("malformed_group");
      return respond(res, http::status::bad_request, a.err().message + "\n");
    }
    respond(res, http::status::ok, encode_group_answer(*a), "application/json");
  }

  std::string render_metrics() {
    std::string out;
    // A counter by protocol (http, udp) and result (ok, error).
    auto by_protocol = [&](std::string_view name, std::string_view help, const auto& ok,
                           const auto& err) {
      out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n", name, help);
      static constexpr const char* protos[] = {"http", "udp"};
      for (int p = 0; p < 2; ++p) {
        out +=
            fmt::format("{}{{protocol=\"{}\",result=\"ok\"}} {}\n", name, protos[p], ok[p].load());
        out += fmt::format("{}{{protocol=\"{}\",result=\"error\"}} {}\n", name, protos[p],
                           err[p].load());
      }
    };
    by_protocol("voxd_tracker_announces_total", "Announces by protocol and result.", m.announce_ok,
                m.announce_err);
    by_protocol("voxd_tracker_scrapes_total", "Scrapes by protocol and result.", m.scrape_ok,
                m.scrape_err);
    const auto t = swarms.totals();
    out += fmt::format(
        "# HELP voxd_tracker_swarms Swarms with at least one peer.\n# TYPE voxd_tracker_swarms "
        "gauge\nvoxd_tracker_swarms {}\n",
        t.swarms);
    out += fmt::format(
        "# HELP voxd_tracker_peers Stored peers by address family.\n# TYPE voxd_tracker_peers "
        "gauge\n"
        "voxd_tracker_peers{{family=\"ipv4\"}} {}\nvoxd_tracker_peers{{family=\"ipv6\"}} {}\n",
        t.peers4, t.peers6);
    out += fmt::format(
        "# HELP voxd_tracker_peer_store_bytes Memory of peer records and indexes.\n# TYPE "
        "voxd_tracker_peer_store_bytes gauge\nvoxd_tracker_peer_store_bytes {}\n",
        t.index_bytes);
    out += fmt::format(
        "# HELP voxd_tracker_registry_torrents Torrents in the registry.\n# TYPE "
        "voxd_tracker_registry_torrents gauge\nvoxd_tracker_registry_torrents {}\n",
        reg.size());
    out += fmt::format(
        "# HELP voxd_tracker_leases Active first-fetch leases.\n# TYPE voxd_tracker_leases "
        "gauge\nvoxd_tracker_leases {}\n",
        reg.active_leases());
    const auto g = groups.stats(steady::now());
    out += fmt::format(
        "# HELP voxd_tracker_groups Blobs being fetched first by a group of daemons.\n"
        "# TYPE voxd_tracker_groups gauge\nvoxd_tracker_groups {}\n"
        "# HELP voxd_tracker_group_members Daemons in first-fetch groups.\n"
        "# TYPE voxd_tracker_group_members gauge\nvoxd_tracker_group_members {}\n"
        "# HELP voxd_tracker_group_claims_total Claims given to group members.\n"
        "# TYPE voxd_tracker_group_claims_total counter\nvoxd_tracker_group_claims_total {}\n"
        "# HELP voxd_tracker_group_reassigned_total Claims taken from a member (half for a "
        "newcomer, or all of one that stalled or left).\n"
        "# TYPE voxd_tracker_group_reassigned_total counter\nvoxd_tracker_group_reassigned_total "
        "{}\n"
        "# HELP voxd_tracker_group_conflicts_total Pieces reported with two different hashes.\n"
        "# TYPE voxd_tracker_group_conflicts_total counter\nvoxd_tracker_group_conflicts_total {}\n"
        "# HELP voxd_tracker_group_withdrawn_total Group torrents withdrawn after a failed check.\n"
        "# TYPE voxd_tracker_group_withdrawn_total counter\nvoxd_tracker_group_withdrawn_total "
        "{}\n",
        g.groups, g.members, g.claims, g.reassigned, g.conflicts, g.withdrawn);
    out +=
        "# HELP voxd_tracker_rejected_total Rejected requests by reason.\n# TYPE "
        "voxd_tracker_rejected_total counter\n";
    {
      std::lock_guard lock(m.rejected_mutex);
      for (const auto& [reason, n] : m.rejected)
        out += fmt::format("voxd_tracker_rejected_total{{reason=\"{}\"}} {}\n", reason, n.load());
    }
    out +=
        "# HELP voxd_tracker_http_announce_seconds HTTP announce handling time.\n# TYPE "
        "voxd_tracker_http_announce_seconds histogram\n";
    std::uint64_t cum = 0;
    for (std::size_t i = 0; i < metrics::buckets.size(); ++i) {
      cum += m.latency[i].load();
      out += fmt::format("voxd_tracker_http_announce_seconds_bucket{{le=\"{}\"}} {}\n",
                         metrics::buckets[i], cum);
    }
    cum += m.latency[metrics::buckets.size()].load();
    out += fmt::format("voxd_tracker_http_announce_seconds_bucket{{le=\"+Inf\"}} {}\n", cum);
    out += fmt::format(
        "voxd_tracker_http_announce_seconds_sum {}\nvoxd_tracker_http_announce_seconds_count {}\n",
        static_cast<double>(m.latency_sum_ns.load()) / 1e9, cum);
    return out;
  }

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<session>(*this, std::move(s))->read();
      accept();
    });
  }

  // ---- UDP -------------------------------------------------------------------------------------

  void udp_one(std::size_t n) {
    try {
      udp_handle({udp_buf.data(), n});
    } catch (const std::exception& e) {
      spdlog::error("udp: packet from {} failed: {}", udp_from.address().to_string(), e.what());
    }
  }

  void udp_receive() {
    udp.async_receive_from(
        asio::buffer(udp_buf), udp_from, [this](boost::system::error_code ec, std::size_t n) {
          if (ec == asio::error::operation_aborted || !udp.is_open()) return;
          if (!ec) udp_one(n);
          // Drain what else is queued before going back to the reactor (bounded, to stay fair to
          // HTTP).
          for (int i = 0; i < 64; ++i) {
            boost::system::error_code rec;
            const auto got = udp.receive_from(asio::buffer(udp_buf), udp_from, 0, rec);
            if (rec) break;
            udp_one(got);
          }
          udp_receive();
        });
  }

  void udp_send(const std::vector<std::uint8_t>& out) {
    boost::system::error_code ec;
    udp.send_to(asio::buffer(out), udp_from, 0, ec);  // a lost reply is retried by the client
  }

  void udp_handle(std::span<const std::uint8_t> data) {
    const auto& o = options();
    if (!allow_rate(udp_from.address(), o.max_requests_per_second)) {
      m.reject("rate_limited");
      return;
    }
    auto p = udp::parse(data);
    if (auto* bad = std::get_if<udp::bad_packet>(&p)) {
      m.reject("malformed_udp");
      if (bad->transaction) udp_send(udp::encode_error(*bad->transaction, bad->reason));
      return;
    }
    if (auto* c = std::get_if<udp::connect_request>(&p))
      return udp_send(udp::encode_connect(c->transaction, connection_id(udp_from, 0)));
    if (auto* a = std::get_if<udp::announce_packet>(&p)) {
      if (!valid_connection(udp_from, a->connection)) {
        m.reject("bad_connection_id");
        m.announce_err[1]++;
        return udp_send(udp::encode_error(a->transaction, "unknown or expired connection id"));
      }
      const auto peer = to_peer(udp_from.address(), a->req.port);
      auto reply = do_announce(a->req, peer, o);
      if (!reply) {
        m.announce_err[1]++;
        return udp_send(udp::encode_error(a->transaction, reply.err().message));
      }
      m.announce_ok[1]++;
      return udp_send(udp::encode_announce(a->transaction, reply->interval, reply->counts,
                                           peer.v6 ? reply->peers6 : reply->peers4));
    }
    auto& s = std::get<udp::scrape_packet>(p);
    if (!valid_connection(udp_from, s.connection)) {
      m.reject("bad_connection_id");
      m.scrape_err[1]++;
      return udp_send(udp::encode_error(s.transaction, "unknown or expired connection id"));
    }
    std::vector<swarm_counts> counts;
    for (const auto& h : s.hashes)
      counts.push_back(!o.allow_list || reg.knows(h) ? swarms.scrape(h) : swarm_counts{});
    m.scrape_ok[1]++;
    udp_send(udp::encode_scrape(s.transaction, counts));
  }

  // Every 50 ms one shard is swept (a full pass every 3.2 s), so expiry is prompt and no single
  // sweep over millions of peers stalls the announces queued behind it.
  std::size_t next_shard = 0;
  std::uint32_t last_rotation = 0;
  steady::time_point last_rate_cleanup = steady::now();

  void tick() {
    housekeeping.expires_after(std::chrono::milliseconds(50));
    housekeeping.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      swarms.expire_shard(next_shard++ % swarm_store::shard_count, now_seconds());
      if (now_seconds() - last_rotation >= 60) {
        last_rotation = now_seconds();
        rotate_secret();
      }
      if (steady::now() - last_rate_cleanup > std::chrono::seconds(10)) {
        last_rate_cleanup = steady::now();
        std::lock_guard lock(rate_mutex);
        const auto cutoff = last_rate_cleanup - std::chrono::seconds(10);
        std::erase_if(rates, [&](const auto& kv) { return kv.second.last < cutoff; });
      }
      tick();
    });
  }
};

server::server(asio::io_context& io, server_options opts, swarm_store& swarms, registry& reg)
    : impl_(std::make_unique<impl>(io, std::move(opts), swarms, reg)) {}

server::~server() = default;

status server::start() {
  auto& i = *impl_;
  const auto& o = i.options();
  if (!o.http_listen.empty()) {
    unsigned short port = 0;
    auto addr = parse_address(o.http_listen, port);
    if (!addr) return addr.err();
    boost::system::error_code ec;
    tcp::endpoint ep(*addr, port);
    i.acceptor.open(ep.protocol(), ec);
    if (!ec) i.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) i.acceptor.bind(ep, ec);
    if (!ec) i.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return make_error(errc::io,
                        fmt::format("cannot listen on {} (HTTP): {}", o.http_listen, ec.message()));
    i.accept();
  }
  if (!o.udp_listen.empty()) {
    unsigned short port = 0;
    auto addr = parse_address(o.udp_listen, port);
    if (!addr) return addr.err();
    boost::system::error_code ec;
    udp_proto::endpoint ep(*addr, port);
    i.udp.open(ep.protocol(), ec);
    if (!ec) i.udp.bind(ep, ec);
    if (!ec) i.udp.non_blocking(true, ec);
    if (ec)
      return make_error(errc::io,
                        fmt::format("cannot bind {} (UDP): {}", o.udp_listen, ec.message()));
    i.udp_receive();
  }
  i.tick();
  return ok();
}

void server::stop() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  impl_->udp.close(ec);
  impl_->housekeeping.cancel();
}

void server::set_options(const server_options& opts) {
  auto& o = impl_->opts;
  // Listen addresses cannot change without a restart; everything else can.
  const auto http = o.http_listen, udpl = o.udp_listen;
  o = opts;
  o.http_listen = http;
  o.udp_listen = udpl;
}

unsigned short server::http_port() const {
  boost::system::error_code ec;
  return impl_->acceptor.is_open() ? impl_->acceptor.local_endpoint(ec).port() : 0;
}

unsigned short server::udp_port() const {
  boost::system::error_code ec;
  return impl_->udp.is_open() ? impl_->udp.local_endpoint(ec).port() : 0;
}

}  // namespace voxd::tracker
