#pragma once
// First-fetch groups (registry API v2, docs/tracker.md): every daemon that wants a blob the
// registry has no torrent for joins its group and is given a claim, a disjoint run of pieces to
// fetch from the origins; it reports each piece's SHA-1 as it goes. A later member takes half of
// the largest unfinished claim; a member that stops renewing or advancing loses its claim to the
// others. When every piece has a hash, the group's torrent is built by the same deterministic rule
// as a single fetcher's and stored in the registry. Two different hashes for one piece are a
// conflict: the piece is fetched again. A torrent that a member finds wrong is withdrawn, and the
// blob goes to single-fetcher leases for an hour. State is in memory, like leases.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"
#include "voxd/tracker/registry.hpp"

namespace voxd::tracker {

using steady_time = std::chrono::steady_clock::time_point;

struct group_request {
  std::string member;
  std::uint64_t size = 0;
  int piece_size = 0;
  std::vector<std::pair<int, sha1_digest>> done;  // pieces fetched since the last report
  // Runs [first, last) of its claim the member has not started; absent: not known.
  std::optional<std::vector<std::pair<int, int>>> unstarted;
  bool leave = false;
};

struct group_answer {
  enum class kind { member, torrent, solo } k = kind::member;
  std::vector<std::pair<int, int>> claim;  // [first, last) runs of pieces, still to report
  int members = 0;
  int pieces = 0;
  int reported = 0;
};

struct group_stats {
  std::size_t groups = 0;
  std::size_t members = 0;
  std::uint64_t claims = 0;      // claims given out
  std::uint64_t reassigned = 0;  // claims taken from a member (half of it, or all of a stalled one)
  std::uint64_t conflicts = 0;   // pieces reported with two different hashes
  std::uint64_t withdrawn = 0;   // group torrents withdrawn after a failed check
};

// The JSON bodies of POST /v2/blobs/<blob>/group (untrusted) and its answer.
result<group_request> parse_group_request(std::string_view body);
std::string encode_group_answer(const group_answer& a);
// POST /v2/blobs/<blob>/withdraw: {"member": "...", "info_hash": "<40 hex>", "bad_pieces": [n]}.
struct withdraw_request {
  std::string member;
  sha1_digest info_hash{};  // the torrent found wrong; a newer one stays
  std::vector<int> bad_pieces;
};
result<withdraw_request> parse_withdraw_request(std::string_view body);

class first_fetch_groups {
 public:
  // A member silent this long leaves; one whose claim advances nothing this long loses it.
  static constexpr auto member_ttl = std::chrono::seconds(5);
  static constexpr auto claim_stall = std::chrono::seconds(30);
  // How long a withdrawn blob goes to single-fetcher leases.
  static constexpr auto solo_for = std::chrono::hours(1);
  // The smallest run a later member takes from another's claim, and how far from done (at the
  // rate its reports arrive) that claim must be: the victim learns of the loss only at its next
  // renewal, and until then fetches on into what is no longer its own.
  static constexpr int min_steal = 4;
  static constexpr double min_steal_eta_s = 3.0;
  // Daemons that add a model together join within this long of the group's first: each newcomer
  // then splits the blob evenly among all members again, and nobody fetches before it has passed
  // (the daemon waits as long before its first fetch, and asks for its claim only then).
  static constexpr auto settle = std::chrono::milliseconds(300);
  // Of each member's equal share, the part it is given at once; the rest stays unclaimed and goes
  // in slices to members that have started all of theirs, so faster ones fetch more and the group
  // finishes together even when the origin serves its connections unevenly.
  static constexpr int first_share_percent = 50;
  // A member with fewer unstarted pieces than this in its claim is given the next slice: its free
  // connections stay on this blob instead of starting a smaller one (see the daemon's fetcher).
  static constexpr int low_water = 2;

  explicit first_fetch_groups(registry& reg) : reg_(reg) {}

  // Joins or renews membership, applies the reports, answers the member's claim (or that the
  // torrent is ready, or that the blob is in single-fetcher mode). Errors name the bad field.
  result<group_answer> join(const blob_id& blob, const group_request& req, steady_time now);
  // A member found the blob's torrent wrong (its whole-blob check failed): the torrent goes, if it
  // is still the one the member found wrong, and the reporters of its bad pieces are logged.
  // False when it had gone already.
  bool withdraw(const blob_id& blob, const withdraw_request& w, steady_time now);
  group_stats stats(steady_time now);

 private:
  struct member_state {
    steady_time seen{};
    steady_time advanced{};
    steady_time joined{};
    steady_time first_report{};
    steady_time last_report{};
    int reported = 0;                            // pieces, since first_report (that batch included)
    std::optional<std::vector<bool>> unstarted;  // per piece, as of its last renewal
  };
  struct group {
    std::uint64_t size = 0;
    int piece_size = 0;
    std::vector<std::optional<sha1_digest>> hashes;
    std::vector<std::string> reporter;
    std::vector<std::string> owner;  // member whose claim holds the piece; empty: unclaimed
    std::map<std::string, member_state> members;
    int reported = 0;
    steady_time created{};
    // A member renewed: it acts on its claim from then on, so a newcomer no longer re-divides
    // the blob (that would hand another what it may have started).
    bool fetching = false;
  };
  void expire(group& g, steady_time now);
  void assign(group& g, const std::string& member, steady_time now);
  static void divide(group& g);
  static bool worth_stealing(const group& g, const std::string& victim, int run, steady_time now);
  static bool running_dry(const group& g, const member_state& m, const std::string& member);
  static std::vector<std::pair<int, int>> claim_of(const group& g, const std::string& member);

  registry& reg_;
  std::mutex mutex_;
  std::map<std::string, group> groups_;
  std::map<std::string, steady_time> solo_until_;
  std::map<std::string, std::vector<std::string>> reporters_;  // of built torrents, for withdraw
  group_stats totals_;
};

}  // namespace voxd::tracker
