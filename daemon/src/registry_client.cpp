#include "voxd/daemon/registry_client.hpp"

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "voxd/common/hash.hpp"

namespace voxd {

namespace asio = boost::asio;
using json = nlohmann::json;

result<lease_info> parse_lease_answer(long http_status, std::string_view body,
                                      const std::string& holder) {
  const auto excerpt = [&] { return std::string(body.substr(0, 200)); };
  if (http_status != 200 && http_status != 409)
    return make_error(errc::protocol, fmt::format("HTTP {}: {}", http_status, excerpt()));
  const auto j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("holder") || !j["holder"].is_string())
    return make_error(errc::protocol, fmt::format("unreadable lease answer: {}", excerpt()));
  lease_info l;
  l.holder = j["holder"].get<std::string>();
  l.ours = http_status == 200 && l.holder == holder;
  if (j.contains("bytes_done") && j["bytes_done"].is_number_unsigned())
    l.bytes_done = j["bytes_done"].get<std::uint64_t>();
  if (j.contains("bytes_total") && j["bytes_total"].is_number_unsigned())
    l.bytes_total = j["bytes_total"].get<std::uint64_t>();
  if (j.contains("expires_in") && j["expires_in"].is_number())
    l.expires_in = j["expires_in"].get<double>();
  return l;
}

result<group_view> parse_group_answer(long http_status, std::string_view body) {
  const auto excerpt = [&] { return std::string(body.substr(0, 200)); };
  if (http_status == 404 || http_status == 405)
    return make_error(errc::not_found, "the registry has no first-fetch groups (API v2)");
  if (http_status != 200)
    return make_error(errc::protocol, fmt::format("HTTP {}: {}", http_status, excerpt()));
  const auto j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("state") || !j["state"].is_string())
    return make_error(errc::protocol, fmt::format("unreadable group answer: {}", excerpt()));
  group_view v;
  const auto& state = j["state"].get_ref<const std::string&>();
  if (state == "member")
    v.k = group_view::kind::member;
  else if (state == "torrent")
    v.k = group_view::kind::torrent;
  else if (state == "solo")
    v.k = group_view::kind::solo;
  else
    return make_error(errc::protocol, fmt::format("unknown group state '{}'", state.substr(0, 40)));
  const auto count = [&](const char* k) {
    return j.contains(k) && j[k].is_number_unsigned() && j[k].get<std::uint64_t>() < (1u << 30)
               ? static_cast<int>(j[k].get<std::uint64_t>())
               : 0;
  };
  v.members = count("members");
  v.pieces = count("pieces");
  v.reported = count("reported");
  if (j.contains("claim")) {
    if (!j["claim"].is_array())
      return make_error(errc::protocol, "group answer: 'claim' is not a list");
    for (const auto& r : j["claim"]) {
      if (!r.is_array() || r.size() != 2 || !r[0].is_number_unsigned() ||
          !r[1].is_number_unsigned())
        return make_error(errc::protocol, "group answer: a claim is not a [first, last) pair");
      const auto a = r[0].get<std::uint64_t>(), b = r[1].get<std::uint64_t>();
      if (a >= b || b > static_cast<std::uint64_t>(v.pieces))
        return make_error(errc::protocol, fmt::format("group answer: claim [{}, {}) is not within "
                                                      "the blob's {} pieces",
                                                      a, b, v.pieces));
      v.claim.emplace_back(static_cast<int>(a), static_cast<int>(b));
    }
  }
  return v;
}

registry_client::registry_client(asio::io_context& io, http_engine& http, std::string base_url,
                                 std::string token, int timeout_s)
    : io_(io),
      http_(http),
      base_(std::move(base_url)),
      token_(std::move(token)),
      timeout_s_(timeout_s) {
  while (!base_.empty() && base_.back() == '/')
    base_.pop_back();
}

void registry_client::call(std::string method, std::string path, std::string body,
                           std::function<void(http_response)> done) {
  http_request req;
  req.method = std::move(method);
  req.url = base_ + path;
  req.body = std::move(body);
  if (!token_.empty()) req.headers.push_back("Authorization: Bearer " + token_);
  if (!req.body.empty() && req.method != "PUT")
    req.headers.push_back("Content-Type: application/json");
  req.max_body = 4 << 20;  // the registry's own torrent size limit
  req.connect_timeout_s = timeout_s_;
  req.stall_timeout_s = timeout_s_;
  http_.submit(std::move(req), [this, done = std::move(done)](http_response r) mutable {
    asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
  });
}

std::string registry_client::describe(const http_response& r, const std::string& what) const {
  if (!r.transport_ok()) return fmt::format("registry {}: {}: {}", base_, what, r.curl_error);
  auto body = r.body.substr(0, 200);
  return fmt::format("registry {}: {}: HTTP {}{}{}", base_, what, r.status,
                     body.empty() ? "" : ": ", body);
}

void registry_client::get_torrent(const blob_id& blob,
                                  std::function<void(result<std::optional<std::string>>)> done) {
  if (!enabled()) return done(make_error(errc::not_found, "no registry configured"));
  call("GET", "/v1/blobs/" + blob.str() + "/torrent", {},
       [this, done = std::move(done), blob](http_response r) {
         if (r.transport_ok() && r.status == 200) return done(std::optional<std::string>(r.body));
         if (r.transport_ok() && r.status == 404) return done(std::optional<std::string>());
         done(make_error(errc::protocol, describe(r, "torrent of " + blob.str().substr(0, 12))));
       });
}

void registry_client::put_torrent(const blob_id& blob, std::string bytes,
                                  std::function<void(status)> done) {
  if (!enabled()) return done(make_error(errc::not_found, "no registry configured"));
  call("PUT", "/v1/blobs/" + blob.str() + "/torrent", std::move(bytes),
       [this, done = std::move(done), blob](http_response r) {
         if (r.transport_ok() && (r.status == 200 || r.status == 201 || r.status == 204))
           return done(ok());
         done(make_error(errc::protocol, describe(r, "publishing " + blob.str().substr(0, 12))));
       });
}

void registry_client::take_lease(const blob_id& blob, const std::string& holder,
                                 std::uint64_t bytes_done, std::uint64_t bytes_total, int ttl_s,
                                 std::function<void(result<lease_info>)> done) {
  if (!enabled()) return done(make_error(errc::not_found, "no registry configured"));
  json body{
      {"holder", holder}, {"ttl", ttl_s}, {"bytes_done", bytes_done}, {"bytes_total", bytes_total}};
  call("POST", "/v1/blobs/" + blob.str() + "/lease", body.dump(),
       [this, done = std::move(done), blob, holder](http_response r) {
         if (!r.transport_ok())
           return done(
               make_error(errc::protocol, describe(r, "lease on " + blob.str().substr(0, 12))));
         auto l = parse_lease_answer(r.status, r.body, holder);
         if (!l)
           return done(
               make_error(errc::protocol, fmt::format("registry {}: lease on {}: {}", base_,
                                                      blob.str().substr(0, 12), l.err().message)));
         done(*l);
       });
}

void registry_client::join_group(const blob_id& blob, const std::string& member, std::uint64_t size,
                                 int piece_size,
                                 const std::vector<std::pair<int, sha1_digest>>& done,
                                 const std::optional<std::vector<std::pair<int, int>>>& unstarted,
                                 bool leave, std::function<void(result<group_view>)> cb) {
  if (!enabled()) return cb(make_error(errc::not_found, "no registry configured"));
  json reports = json::array();
  for (const auto& [p, h] : done)
    reports.push_back({p, to_hex(h)});
  json body{{"member", member},
            {"size", size},
            {"piece_size", piece_size},
            {"done", reports},
            {"leave", leave}};
  if (unstarted) {
    json runs = json::array();
    for (const auto& [from, to] : *unstarted)
      runs.push_back({from, to});
    body["unstarted"] = std::move(runs);
  }
  call("POST", "/v2/blobs/" + blob.str() + "/group", body.dump(),
       [this, cb = std::move(cb), blob](http_response r) {
         if (!r.transport_ok())
           return cb(make_error(errc::protocol,
                                describe(r, "first-fetch group of " + blob.str().substr(0, 12))));
         auto v = parse_group_answer(r.status, r.body);
         if (!v)
           return cb(
               make_error(v.err().code, fmt::format("registry {}: group of {}: {}", base_,
                                                    blob.str().substr(0, 12), v.err().message)));
         cb(*v);
       });
}

void registry_client::withdraw(const blob_id& blob, const std::string& member,
                               const sha1_digest& info_hash, const std::vector<int>& bad_pieces) {
  if (!enabled()) return;
  call(
      "POST", "/v2/blobs/" + blob.str() + "/withdraw",
      json{{"member", member}, {"info_hash", to_hex(info_hash)}, {"bad_pieces", bad_pieces}}.dump(),
      [](http_response) {});
}

void registry_client::release_lease(const blob_id& blob, const std::string& holder) {
  if (!enabled()) return;
  call("DELETE", "/v1/blobs/" + blob.str() + "/lease", json{{"holder", holder}}.dump(),
       [](http_response) {});
}

}  // namespace voxd
