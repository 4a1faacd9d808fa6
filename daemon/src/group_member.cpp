#include "voxd/daemon/group_member.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace voxd {

namespace asio = boost::asio;

namespace {
// A member learns that a newcomer took half its claim only at its next renewal; meanwhile its
// connections may fetch what is no longer its own, so renewals are frequent.
constexpr auto renew_every = std::chrono::milliseconds(500);
// A member with fewer unstarted pieces than low_water in its claim asks more often: for more work
// (the registry gives it the next slice then) before its connections run dry, and once its claim
// is done, to start its swarm soon after the last piece is reported (the peers trade only then).
constexpr auto renew_idle = std::chrono::milliseconds(100);
constexpr int low_water = 2;  // the registry's, voxd::tracker::first_fetch_groups::low_water
// Daemons that want a blob usually ask at the same moment (a fleet adding a model): the claims
// settle within this long, so nobody fetches before its claim has its final shape.
constexpr auto settle = std::chrono::milliseconds(300);
// A registry out of reach this long: go on alone rather than stall.
constexpr auto registry_patience = std::chrono::seconds(30);
}  // namespace

group_member::group_member(asio::io_context& io, registry_client& registry, blob_fetcher& fetcher,
                           blob_request req, std::string member, done_fn done)
    : io_(io),
      registry_(registry),
      fetcher_(fetcher),
      req_(std::move(req)),
      member_(std::move(member)),
      done_(std::move(done)),
      timer_(io) {}

group_member::~group_member() {
  *alive_ = false;
  timer_.cancel();
}

void group_member::start() {
  renew();
}

void group_member::schedule(bool settling) {
  timer_.expires_after(settling ? settle : running_dry() ? renew_idle : renew_every);
  timer_.async_wait([this, alive = alive_](boost::system::error_code ec) {
    if (!ec && *alive) renew();
  });
}

void group_member::renew() {
  if (asking_ || over_) return;
  asking_ = true;
  in_flight_.insert(in_flight_.end(), unreported_.begin(), unreported_.end());
  unreported_.clear();
  // What it has not started means something only once it has a claim: before that, nothing.
  std::optional<std::vector<std::pair<int, int>>> unstarted;
  if (claimed_) unstarted = fetcher_.unstarted_pieces(req_.blob);
  registry_.join_group(
      req_.blob, member_, req_.size, req_.piece_size, in_flight_, unstarted, false,
      [this, alive = alive_](result<group_view> r) {
        if (!*alive) return;
        asking_ = false;
        if (over_) return;
        const auto now = std::chrono::steady_clock::now();
        if (!r) {
          if (r.err().code == errc::not_found) {
            over_ = true;
            return done_(outcome::solo, r.err().message);
          }
          if (trouble_since_ == std::chrono::steady_clock::time_point{}) trouble_since_ = now;
          if (now - trouble_since_ > registry_patience) {
            over_ = true;
            return done_(outcome::solo, r.err().message + " for 30 s");
          }
          spdlog::warn("{}: {}", req_.path, r.err().message);
          return schedule(!joined_);
        }
        trouble_since_ = {};
        in_flight_.clear();
        if (r->k == group_view::kind::torrent) {
          over_ = true;
          return done_(outcome::torrent, "every piece is reported");
        }
        if (r->k == group_view::kind::solo) {
          over_ = true;
          return done_(outcome::solo, "the registry withdrew a group torrent of this blob lately");
        }
        // The first answer only makes this daemon a member: the claim is taken from the next,
        // a whole settle window later, when every daemon that asked together has joined.
        const bool first = !joined_;
        if (!first) apply(*r);
        joined_ = true;
        schedule(first);
      });
}

bool group_member::running_dry() const {
  if (progress_.pieces_claimed == 0) return true;
  int left = 0;
  for (const auto& [from, to] : fetcher_.unstarted_pieces(req_.blob))
    for (const auto& [cf, ct] : claim_)
      left += std::max(0, std::min(to, ct) - std::max(from, cf));
  return left < low_water;
}

void group_member::apply(const group_view& v) {
  claimed_ = true;
  progress_.members = v.members;
  progress_.pieces = v.pieces;
  progress_.reported = v.reported;
  claim_ = v.claim;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> bytes;
  const auto ps = static_cast<std::uint64_t>(req_.piece_size);
  int open = 0;
  for (const auto& [from, to] : v.claim) {
    bytes.emplace_back(static_cast<std::uint64_t>(from) * ps,
                       std::min(req_.size, static_cast<std::uint64_t>(to) * ps));
    for (int p = from; p < to; ++p)
      open += done_pieces_.count(p) ? 0 : 1;
  }
  progress_.pieces_claimed = open;
  fetcher_.set_claim(req_.blob, bytes);
}

void group_member::on_piece(int piece, const sha1_digest& sha1) {
  if (!done_pieces_.insert(piece).second) return;
  unreported_.emplace_back(piece, sha1);
  ++progress_.pieces_done;
  progress_.pieces_claimed = std::max(0, progress_.pieces_claimed - 1);
  // The claim is done: report it now and ask for more work rather than idle till the renewal.
  bool claim_done = true;
  for (const auto& [from, to] : claim_)
    for (int p = from; p < to && claim_done; ++p)
      claim_done = done_pieces_.count(p) != 0;
  if (claim_done && !asking_) {
    timer_.cancel();
    renew();
  }
}

void group_member::leave() {
  if (over_) return;
  over_ = true;
  timer_.cancel();
  auto report = in_flight_;
  report.insert(report.end(), unreported_.begin(), unreported_.end());
  registry_.join_group(req_.blob, member_, req_.size, req_.piece_size, report, {}, true,
                       [](result<group_view>) {});
}

}  // namespace voxd
