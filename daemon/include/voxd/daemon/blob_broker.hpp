#pragma once
// Decides where each blob comes from and drives it there (docs/architecture.md, "How one blob is
// fetched"):
//   - the registry knows the blob's torrent: join its swarm, and let the CDN feeder fetch from
//     the origins the pieces the peers cannot supply soon enough (origin_policy);
//   - it does not: join the blob's first-fetch group (group_member) and fetch this daemon's claim
//     from the origins, then join the group's swarm; when the registry wants a single fetcher
//     (it has no groups, or withdrew a bad group torrent lately), take the blob's lease and fetch
//     it alone, then publish the torrent and seed; or wait for the lease holder's torrent;
//   - small blobs, or no registry: straight from the origins.
// Every blob enters the store only after its full hub hash matches, whatever path it took.

#include <boost/asio/io_context.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "voxd/common/config.hpp"
#include "voxd/daemon/blob_fetcher.hpp"
#include "voxd/daemon/group_member.hpp"
#include "voxd/daemon/registry_client.hpp"
#include "voxd/daemon/swarm.hpp"

namespace voxd {

struct broker_settings {
  fetch_settings fetch;
  voxd::origin_policy policy = voxd::origin_policy::prefer_peers;
  std::string holder;  // this daemon's name in leases
  // Smaller blobs come from the origins only: for them a group and a torrent cost more than each
  // daemon's fetch. Larger ones fetched by every daemon cost the site's origin link (office: a
  // 120 KiB tokenizer.json on 8 hosts took 0.5 s of it, and 1.8% more origin bytes).
  std::uint64_t swarm_min_size = 64ull << 10;
};

struct blob_status {
  std::string phase;  // lookup, group, origin, waiting, swarm, verifying
  std::uint64_t done = 0;
  std::uint64_t from_origin = 0;
  std::uint64_t from_peers_lan = 0;
  std::uint64_t from_peers_wan = 0;
  std::uint64_t redundant = 0;  // bytes received twice (peers' end game, late origin pieces)
  int peers = 0;
  std::optional<lease_info> lease;      // ours while fetching first, the holder's while waiting
  std::optional<group_progress> group;  // our part of a cooperative first fetch
};

struct blob_outcome {
  std::uint64_t from_origin = 0;
  std::uint64_t from_peers_lan = 0;
  std::uint64_t from_peers_wan = 0;
  std::uint64_t redundant = 0;
};

class blob_broker {
 public:
  using done_fn = std::function<void(const blob_id&, const status&, const blob_outcome&)>;

  // swarm may be null (no peers): every blob then comes from the origins.
  blob_broker(boost::asio::io_context& io, http_engine& http, hash_worker& hasher, store& st,
              origin_pool& origins, registry_client& registry, swarm* peers,
              broker_settings settings, done_fn done);
  ~blob_broker();

  void want(const blob_request& req, const std::string& model, bool active);
  void set_active(const std::string& model, bool active);
  void unwant(const std::string& model);
  std::optional<blob_status> status_of(const blob_id& blob) const;

  // Seeds a stored blob whose torrent is known; stops seeding it.
  void seed(const blob_id& blob, const repo_id& repo, std::uint64_t size);
  void unseed(const blob_id& blob);

  // Events of the swarm, forwarded by the owner.
  void on_piece_failed(const blob_id& blob, int piece);
  void on_swarm_finished(const blob_id& blob);

  void set_download_cap(std::uint64_t bytes_per_second);
  // The link's rate, for origin_policy balanced.
  void set_link_rate(double bytes_per_second) { link_rate_ = bytes_per_second; }
  void set_policy(voxd::origin_policy p) { settings_.policy = p; }
  void shutdown();

 private:
  struct job;
  using job_ptr = std::shared_ptr<job>;

  job_ptr find(const std::string& blob) const;
  bool is_active(const job& j) const;
  // The fetch and the swarm follow whether any model wanting the blob is active.
  void follow_activity(const job_ptr& j);
  void kick(const job_ptr& j);
  void lookup(const job_ptr& j);
  void join_group(const job_ptr& j);
  void on_group_done(const job_ptr& j, group_member::outcome o, const std::string& why);
  void distrust_torrent(const job_ptr& j, const std::string& why, std::vector<int> bad_pieces);
  void remove_partial(const blob_id& blob);
  void take_lease(const job_ptr& j);
  void wait_for_holder(const job_ptr& j);
  void renew_lease(const job_ptr& j);
  void start_origin(const job_ptr& j, bool publish);
  void start_swarm(const job_ptr& j, std::string torrent);
  void start_feed(const job_ptr& j);
  void stop_fetch(const job_ptr& j);
  void feed(const job_ptr& j);
  void recheck(const job_ptr& j, const std::string& why);
  void reuse_partial(const job_ptr& j);
  void on_fetch_done(const blob_id& blob, const status& s, fetch_outcome out);
  void on_chunk(const blob_id& blob, std::size_t piece, std::size_t origin, std::string data);
  void verified(const job_ptr& j, const std::string& digest);
  void published(const job_ptr& j, const std::vector<sha1_digest>& pieces);
  void leave_swarm(const job_ptr& j, bool delete_data);
  void finish(const job_ptr& j, const status& s);
  fs::path torrent_path(const blob_id& blob) const;
  fs::path swarm_dir() const;

  boost::asio::io_context& io_;
  hash_worker& hasher_;
  store& store_;
  origin_pool& origins_;
  registry_client& registry_;
  swarm* swarm_;
  broker_settings settings_;
  done_fn done_;
  blob_fetcher fetcher_;
  std::map<std::string, job_ptr> jobs_;
  double link_rate_ = 0;
  bool stopping_ = false;
};

}  // namespace voxd
