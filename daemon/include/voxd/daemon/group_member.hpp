#pragma once
// This daemon's part in a blob's cooperative first fetch (docs/architecture.md, "How one blob is
// fetched"): it renews its membership of the blob's group at the registry every second, reporting
// the hashes of the pieces the fetcher finished since, and turns the claim in each answer into the
// fetcher's claim. It tells its owner (the blob broker, which decides the blob's route) when the
// group's torrent is ready, or when the registry wants a single fetcher instead.

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "voxd/daemon/blob_fetcher.hpp"
#include "voxd/daemon/registry_client.hpp"

namespace voxd {

struct group_progress {
  int pieces_claimed = 0;  // still to fetch, by this daemon
  int pieces_done = 0;     // fetched and hashed by this daemon
  int members = 0;
  int pieces = 0;
  int reported = 0;  // by the whole group
};

class group_member {
 public:
  // torrent: the registry has the blob's torrent now. solo: use a single fetcher (the registry
  // says so, has no groups, or cannot be reached for a while). `why` says which.
  enum class outcome { torrent, solo };
  using done_fn = std::function<void(outcome, const std::string& why)>;

  group_member(boost::asio::io_context& io, registry_client& registry, blob_fetcher& fetcher,
               blob_request req, std::string member, done_fn done);
  ~group_member();
  group_member(const group_member&) = delete;
  group_member& operator=(const group_member&) = delete;

  // Starts the fetcher in claim mode and joins the group.
  void start();
  // A piece the fetcher finished: reported with the next renewal.
  void on_piece(int piece, const sha1_digest& sha1);
  // Leaves the group (its unfinished claim goes to the others); the partial file stays for the
  // swarm or a single fetcher.
  void leave();
  const group_progress& progress() const { return progress_; }

 private:
  void renew();
  // settling: the wait before the first claim, else the renewal period.
  void schedule(bool settling);
  void apply(const group_view& v);
  // Little of the claim is waiting for a connection (or there is no claim).
  bool running_dry() const;

  boost::asio::io_context& io_;
  registry_client& registry_;
  blob_fetcher& fetcher_;
  blob_request req_;
  std::string member_;
  done_fn done_;
  boost::asio::steady_timer timer_;
  std::vector<std::pair<int, sha1_digest>> unreported_;
  std::vector<std::pair<int, sha1_digest>> in_flight_;  // sent, answer not yet seen
  std::set<int> done_pieces_;
  std::vector<std::pair<int, int>> claim_;
  group_progress progress_;
  std::chrono::steady_clock::time_point trouble_since_{};
  bool asking_ = false;
  bool joined_ = false;
  bool claimed_ = false;  // a claim was applied: reports of what is unstarted mean something
  bool over_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace voxd
