#pragma once
// Client of the blob registry (voxd-tracker's /v1 API, docs/tracker.md): fetch and publish a
// blob's torrent, take, renew and release first-fetch leases. Completions run on the io thread.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"
#include "voxd/daemon/http_engine.hpp"

namespace voxd {

struct lease_info {
  bool ours = false;  // granted or renewed to us; otherwise someone else holds it
  std::string holder;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  double expires_in = 0;
};

// The registry's answer to a first-fetch group request (registry API v2).
struct group_view {
  enum class kind { member, torrent, solo } k = kind::member;
  std::vector<std::pair<int, int>> claim;  // [first, last) runs of pieces still to fetch
  int members = 0;
  int pieces = 0;
  int reported = 0;
};

// Reads the registry's answer to a group request. errc::not_found: the registry does not speak v2
// (an older voxd-tracker, or a static file server standing in for it).
result<group_view> parse_group_answer(long http_status, std::string_view body);

// Reads the registry's answer to a lease request (HTTP status and body) made by `holder`.
result<lease_info> parse_lease_answer(long http_status, std::string_view body,
                                      const std::string& holder);

class registry_client {
 public:
  // base_url empty: no registry (every call fails with not_found).
  registry_client(boost::asio::io_context& io, http_engine& http, std::string base_url,
                  std::string token, int timeout_s);

  bool enabled() const { return !base_.empty(); }
  const std::string& base_url() const { return base_; }

  // The torrent's bytes; nullopt when the registry has none for this blob.
  void get_torrent(const blob_id& blob,
                   std::function<void(result<std::optional<std::string>>)> done);
  void put_torrent(const blob_id& blob, std::string bytes, std::function<void(status)> done);
  // Takes or renews the lease; when another holder has it, the answer names it (ours = false).
  void take_lease(const blob_id& blob, const std::string& holder, std::uint64_t bytes_done,
                  std::uint64_t bytes_total, int ttl_s,
                  std::function<void(result<lease_info>)> done);
  void release_lease(const blob_id& blob, const std::string& holder);
  // Joins or renews the blob's first-fetch group, reporting the hashes of pieces fetched since.
  // `unstarted`: runs of the claim no request has touched, which a newcomer may take.
  void join_group(const blob_id& blob, const std::string& member, std::uint64_t size,
                  int piece_size, const std::vector<std::pair<int, sha1_digest>>& done,
                  const std::optional<std::vector<std::pair<int, int>>>& unstarted, bool leave,
                  std::function<void(result<group_view>)> cb);
  // The group's torrent did not match the hub's hash: nobody should use it.
  void withdraw(const blob_id& blob, const std::string& member, const sha1_digest& info_hash,
                const std::vector<int>& bad_pieces);

 private:
  void call(std::string method, std::string path, std::string body,
            std::function<void(http_response)> done);
  std::string describe(const http_response& r, const std::string& what) const;

  boost::asio::io_context& io_;
  http_engine& http_;
  std::string base_;
  std::string token_;
  int timeout_s_;
};

}  // namespace voxd
