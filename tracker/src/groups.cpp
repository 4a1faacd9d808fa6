#include "voxd/tracker/groups.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>

#include "voxd/common/hash.hpp"
#include "voxd/tracker/protocol.hpp"

namespace voxd::tracker {

namespace {

using json = nlohmann::json;

// 40 lowercase hex digits, as every voxd hash is written.
bool parse_sha1(const std::string& h, sha1_digest& out) {
  const auto parsed = is_lower_hex(h) ? info_hash::from_hex(h) : std::nullopt;
  if (!parsed) return false;
  std::copy(parsed->bytes.begin(), parsed->bytes.end(), out.begin());
  return true;
}

result<std::string> member_of(const json& j) {
  if (!j.contains("member") || !j["member"].is_string())
    return make_error(errc::invalid_argument, "'member' must be a string");
  auto m = j["member"].get<std::string>();
  if (m.empty() || m.size() > 200)
    return make_error(errc::invalid_argument, "'member' must be a string of 1 to 200 bytes");
  return m;
}

}  // namespace

result<group_request> parse_group_request(std::string_view body) {
  const auto j = json::parse(body, nullptr, false);
  if (!j.is_object()) return make_error(errc::invalid_argument, "the body must be a JSON object");
  group_request r;
  auto m = member_of(j);
  if (!m) return m.err();
  r.member = std::move(*m);
  if (!j.contains("size") || !j["size"].is_number_unsigned())
    return make_error(errc::invalid_argument, "'size' must be a non-negative integer");
  r.size = j["size"].get<std::uint64_t>();
  if (!j.contains("piece_size") || !j["piece_size"].is_number_unsigned() ||
      j["piece_size"].get<std::uint64_t>() > (1u << 30))
    return make_error(errc::invalid_argument, "'piece_size' must be an integer up to 1 GiB");
  r.piece_size = static_cast<int>(j["piece_size"].get<std::uint64_t>());
  if (j.contains("leave")) {
    if (!j["leave"].is_boolean())
      return make_error(errc::invalid_argument, "'leave' must be true or false");
    r.leave = j["leave"].get<bool>();
  }
  if (j.contains("unstarted")) {
    const auto& u = j["unstarted"];
    if (!u.is_array() || u.size() > 1'000'000)
      return make_error(errc::invalid_argument,
                        "'unstarted' must be a list of [first, last) pairs");
    std::vector<std::pair<int, int>> runs;
    for (const auto& e : u) {
      if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() ||
          !e[1].is_number_unsigned() || e[0].get<std::uint64_t>() >= e[1].get<std::uint64_t>() ||
          e[1].get<std::uint64_t>() > (1u << 30))
        return make_error(errc::invalid_argument, fmt::format("'unstarted': {} is not a [first, "
                                                              "last) pair",
                                                              e.dump().substr(0, 80)));
      runs.emplace_back(static_cast<int>(e[0].get<std::uint64_t>()),
                        static_cast<int>(e[1].get<std::uint64_t>()));
    }
    r.unstarted = std::move(runs);
  }
  if (j.contains("done")) {
    const auto& d = j["done"];
    if (!d.is_array() || d.size() > 1'000'000)
      return make_error(errc::invalid_argument, "'done' must be a list of [piece, sha1] pairs");
    for (const auto& e : d) {
      if (!e.is_array() || e.size() != 2 || !e[0].is_number_unsigned() || !e[1].is_string() ||
          e[0].get<std::uint64_t>() > (1u << 30))
        return make_error(
            errc::invalid_argument,
            fmt::format("'done': {} is not a [piece, sha1] pair", e.dump().substr(0, 80)));
      const auto& h = e[1].get_ref<const std::string&>();
      sha1_digest digest{};
      if (!parse_sha1(h, digest))
        return make_error(errc::invalid_argument,
                          fmt::format("'done': '{}' is not 40 hex digits", h.substr(0, 80)));
      if (h == std::string(40, '0'))
        return make_error(errc::invalid_argument, "'done': a SHA-1 of zeros is no piece's hash");
      r.done.emplace_back(static_cast<int>(e[0].get<std::uint64_t>()), digest);
    }
  }
  return r;
}

std::string encode_group_answer(const group_answer& a) {
  static constexpr const char* kinds[] = {"member", "torrent", "solo"};
  json claim = json::array();
  for (const auto& [from, to] : a.claim)
    claim.push_back({from, to});
  return json{{"state", kinds[static_cast<int>(a.k)]},
              {"claim", claim},
              {"members", a.members},
              {"pieces", a.pieces},
              {"reported", a.reported}}
      .dump();
}

result<withdraw_request> parse_withdraw_request(std::string_view body) {
  const auto j = json::parse(body, nullptr, false);
  if (!j.is_object()) return make_error(errc::invalid_argument, "the body must be a JSON object");
  withdraw_request w;
  auto m = member_of(j);
  if (!m) return m.err();
  w.member = std::move(*m);
  if (!j.contains("info_hash") || !j["info_hash"].is_string() ||
      !parse_sha1(j["info_hash"].get<std::string>(), w.info_hash))
    return make_error(errc::invalid_argument, "'info_hash' must be 40 hex digits");
  if (j.contains("bad_pieces")) {
    if (!j["bad_pieces"].is_array() || j["bad_pieces"].size() > 1'000'000)
      return make_error(errc::invalid_argument, "'bad_pieces' must be a list of piece numbers");
    for (const auto& p : j["bad_pieces"]) {
      if (!p.is_number_unsigned() || p.get<std::uint64_t>() > (1u << 30))
        return make_error(errc::invalid_argument, "'bad_pieces' must be a list of piece numbers");
      w.bad_pieces.push_back(static_cast<int>(p.get<std::uint64_t>()));
    }
  }
  return w;
}

std::vector<std::pair<int, int>> first_fetch_groups::claim_of(const group& g,
                                                              const std::string& member) {
  return piece_runs(static_cast<int>(g.hashes.size()), [&](int p) {
    const auto i = static_cast<std::size_t>(p);
    return g.owner[i] == member && !g.hashes[i];
  });
}

void first_fetch_groups::expire(group& g, steady_time now) {
  for (auto it = g.members.begin(); it != g.members.end();) {
    const bool gone = now - it->second.seen > member_ttl;
    const bool stalled = now - it->second.advanced > claim_stall;
    if (!gone && !stalled) {
      ++it;
      continue;
    }
    bool had = false;
    for (std::size_t i = 0; i < g.owner.size(); ++i)
      if (g.owner[i] == it->first && !g.hashes[i]) {
        g.owner[i].clear();
        had = true;
      }
    if (had) {
      ++totals_.reassigned;
      spdlog::info("registry: {} {}; its claim goes to the others", it->first,
                   gone ? "stopped renewing" : "made no progress for 30 s");
    }
    if (gone) {
      it = g.members.erase(it);
    } else {
      it->second.advanced = now;  // may be given a claim again
      ++it;
    }
  }
}

bool first_fetch_groups::worth_stealing(const group& g, const std::string& victim, int run,
                                        steady_time now) {
  if (run < 2 * min_steal) return false;
  const auto it = g.members.find(victim);
  if (it == g.members.end()) return true;
  // No report yet: still settling (it has fetched nothing), or slow (2 s without a piece); in
  // between it may be fetching fast with its first report on the way.
  if (it->second.reported == 0)
    return now - it->second.joined < settle || now - it->second.joined > std::chrono::seconds(2);
  const double secs =
      std::chrono::duration<double>(it->second.last_report - it->second.first_report).count();
  // Reports in one burst: too fast to tell, and fast claims end before a newcomer could help.
  if (secs < 0.4) return false;
  int left = 0;
  for (std::size_t i = 0; i < g.owner.size(); ++i)
    left += g.owner[i] == victim && !g.hashes[i] ? 1 : 0;
  const double rate = it->second.reported / secs;  // pieces per second
  return left / rate > min_steal_eta_s;
}

// Every unreported piece, in equal contiguous runs, to the members in the order they joined, as if
// they had agreed before starting: each is given the front of its run, the rest is the pool that
// assign() hands out in slices.
void first_fetch_groups::divide(group& g) {
  std::vector<std::pair<steady_time, const std::string*>> order;
  for (const auto& [name, m] : g.members)
    order.emplace_back(m.joined, &name);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first < b.first || (a.first == b.first && *a.second < *b.second);
  });
  std::vector<std::size_t> open;
  for (std::size_t i = 0; i < g.hashes.size(); ++i)
    if (!g.hashes[i]) open.push_back(i);
  const auto n = open.size(), m = order.size();
  for (std::size_t j = 0; j < m; ++j) {
    const auto from = j * n / m, to = (j + 1) * n / m;
    const auto given = from + std::max<std::size_t>(1, (to - from) * first_share_percent / 100);
    for (auto k = from; k < to; ++k)
      g.owner[open[k]] = k < given ? *order[j].second : std::string();
  }
}

bool first_fetch_groups::running_dry(const group& g, const member_state& m,
                                     const std::string& member) {
  if (!m.unstarted) return false;
  int left = 0;
  for (std::size_t i = 0; i < g.owner.size() && left < low_water; ++i)
    left += g.owner[i] == member && !g.hashes[i] && (*m.unstarted)[i] ? 1 : 0;
  return left < low_water;
}

void first_fetch_groups::assign(group& g, const std::string& member, steady_time now) {
  const int n = static_cast<int>(g.hashes.size());
  // A slice of the largest run nobody claims (a share of the pool for each member, halved, so
  // that the last slices are small), else the second half of the largest run another member has
  // not reported yet.
  int best_from = 0, best_len = 0, steal_from = 0, steal_len = 0, unclaimed = 0;
  std::string victim;
  for (int p = 0; p < n;) {
    const auto i = static_cast<std::size_t>(p);
    if (g.hashes[i]) {
      ++p;
      continue;
    }
    const auto& who = g.owner[i];
    // A run is one owner's unreported pieces; of a member that says what it has not started,
    // only those, so a steal cuts none of its requests.
    const std::vector<bool>* fresh = nullptr;
    if (auto m = g.members.find(who); !who.empty() && m != g.members.end() && m->second.unstarted)
      fresh = &*m->second.unstarted;
    if (fresh && !(*fresh)[i]) {
      ++p;
      continue;
    }
    int q = p;
    while (q < n && !g.hashes[static_cast<std::size_t>(q)] &&
           g.owner[static_cast<std::size_t>(q)] == who &&
           (!fresh || (*fresh)[static_cast<std::size_t>(q)]))
      ++q;
    if (who.empty()) unclaimed += q - p;
    if (who.empty() && q - p > best_len) {
      best_from = p;
      best_len = q - p;
    } else if (!who.empty() && who != member && q - p > steal_len &&
               worth_stealing(g, who, q - p, now)) {
      steal_from = p;
      steal_len = q - p;
      victim = who;
    }
    p = q;
  }
  int from = best_from, len = best_len;
  if (len > 0) {
    const int members = std::max<int>(1, static_cast<int>(g.members.size()));
    len = std::min(len, std::max(1, (unclaimed + 2 * members - 1) / (2 * members)));
  } else {
    if (steal_len < 2 * min_steal) return;
    len = steal_len / 2;
    from = steal_from + steal_len - len;
    ++totals_.reassigned;
    spdlog::info("registry: {} takes pieces {}-{} of {}'s claim", member, from, from + len - 1,
                 victim);
  }
  for (int p = from; p < from + len; ++p)
    g.owner[static_cast<std::size_t>(p)] = member;
  // The member starts on what it was given as soon as it hears: nobody takes it back before its
  // next renewal says what it has not started.
  if (auto m = g.members.find(member); m != g.members.end() && m->second.unstarted)
    for (int p = from; p < from + len; ++p)
      (*m->second.unstarted)[static_cast<std::size_t>(p)] = false;
  ++totals_.claims;
}

result<group_answer> first_fetch_groups::join(const blob_id& blob, const group_request& req,
                                              steady_time now) {
  if (req.member.empty() || req.member.size() > 200)
    return make_error(errc::invalid_argument, "'member' must be a string of 1 to 200 bytes");
  if (req.size == 0 || req.size > (1ull << 40))
    return make_error(errc::invalid_argument,
                      fmt::format("'size' {} is not between 1 byte and 1 TiB", req.size));
  if (req.piece_size != piece_size_for(req.size))
    return make_error(errc::invalid_argument,
                      fmt::format("'piece_size' {} is not the rule's {} for {} bytes",
                                  req.piece_size, piece_size_for(req.size), req.size));
  std::lock_guard lock(mutex_);
  group_answer a;
  if (reg_.get(blob)) {
    a.k = group_answer::kind::torrent;
    return a;
  }
  if (auto it = solo_until_.find(blob.str()); it != solo_until_.end()) {
    if (it->second > now) {
      a.k = group_answer::kind::solo;
      return a;
    }
    solo_until_.erase(it);
  }
  const auto pieces = static_cast<int>((req.size + static_cast<std::uint64_t>(req.piece_size) - 1) /
                                       static_cast<std::uint64_t>(req.piece_size));
  for (const auto& [p, h] : req.done)
    if (p < 0 || p >= pieces)
      return make_error(errc::invalid_argument,
                        fmt::format("piece {} is not between 0 and {}", p, pieces - 1));
  auto it = groups_.find(blob.str());
  if (it == groups_.end()) {
    if (req.leave) return a;
    group g;
    g.size = req.size;
    g.piece_size = req.piece_size;
    g.hashes.resize(static_cast<std::size_t>(pieces));
    g.reporter.resize(g.hashes.size());
    g.owner.resize(g.hashes.size());
    g.created = now;
    it = groups_.emplace(blob.str(), std::move(g)).first;
    spdlog::info("registry: first fetch of {} ({} pieces) by a group", blob.str(), pieces);
  } else if (it->second.size != req.size) {
    return make_error(errc::invalid_argument, fmt::format("'size' {} differs from the group's {}",
                                                          req.size, it->second.size));
  }
  auto& g = it->second;
  expire(g, now);
  auto& ms = g.members[req.member];
  const bool newcomer = ms.seen == steady_time{};
  if (newcomer) ms.advanced = ms.joined = now;
  ms.seen = now;
  if (req.unstarted) {
    for (const auto& [from, to] : *req.unstarted)
      if (to > pieces)
        return make_error(
            errc::invalid_argument,
            fmt::format("'unstarted': [{}, {}) is past the blob's {} pieces", from, to, pieces));
    ms.unstarted.emplace(static_cast<std::size_t>(pieces), false);
    for (const auto& [from, to] : *req.unstarted)
      for (int p = from; p < to; ++p)
        (*ms.unstarted)[static_cast<std::size_t>(p)] = true;
  }
  for (const auto& [p, h] : req.done) {
    const auto i = static_cast<std::size_t>(p);
    if (!g.hashes[i]) {
      g.hashes[i] = h;
      g.reporter[i] = req.member;
      ++g.reported;
      if (ms.reported++ == 0) ms.first_report = now;
      ms.last_report = now;
      ms.advanced = now;
    } else if (*g.hashes[i] != h) {
      spdlog::warn("registry: {}: piece {} reported as {} by {} and {} by {}; fetching it again",
                   blob.str(), p, to_hex(*g.hashes[i]), g.reporter[i], to_hex(h), req.member);
      g.hashes[i].reset();
      g.reporter[i].clear();
      g.owner[i].clear();
      --g.reported;
      ++totals_.conflicts;
    }
  }
  if (req.leave) {
    for (std::size_t i = 0; i < g.owner.size(); ++i)
      if (g.owner[i] == req.member) g.owner[i].clear();
    g.members.erase(req.member);
  }
  a.pieces = pieces;
  a.reported = g.reported;
  a.members = static_cast<int>(g.members.size());
  if (g.reported == pieces) {
    std::vector<sha1_digest> hashes;
    for (const auto& h : g.hashes)
      hashes.push_back(*h);
    auto t = build_blob_torrent(blob, g.size, g.piece_size, hashes);
    if (!t) return t.err();
    auto put = reg_.put(blob, *t);
    if (!put) return put.err();
    spdlog::info("registry: {}: every piece reported by a group of {}; torrent stored", blob.str(),
                 a.members);
    reporters_[blob.str()] = std::move(g.reporter);
    groups_.erase(it);
    a.k = group_answer::kind::torrent;
    return a;
  }
  if (req.leave) return a;
  if (!newcomer) g.fetching = true;
  if (newcomer && !g.fetching && now - g.created < settle) {
    divide(g);
    ++totals_.claims;
  }
  a.claim = claim_of(g, req.member);
  // More work before the member's connections run dry.
  if (a.claim.empty() || (!newcomer && running_dry(g, ms, req.member))) {
    assign(g, req.member, now);
    a.claim = claim_of(g, req.member);
  }
  return a;
}

bool first_fetch_groups::withdraw(const blob_id& blob, const withdraw_request& w, steady_time now) {
  std::lock_guard lock(mutex_);
  const auto current = reg_.get(blob);
  const auto info = current ? validate_blob_torrent(*current, blob)
                            : result<blob_torrent_info>(make_error(errc::not_found, ""));
  if (!info || info->info_hash != w.info_hash) {
    spdlog::info("registry: {} withdrew a torrent of {} that is gone already", w.member,
                 blob.str());
    return false;
  }
  reg_.remove(blob);
  groups_.erase(blob.str());
  solo_until_[blob.str()] = now + solo_for;
  ++totals_.withdrawn;
  std::string who;
  if (auto it = reporters_.find(blob.str()); it != reporters_.end()) {
    std::map<std::string, int> blame;
    for (int p : w.bad_pieces)
      if (p >= 0 && static_cast<std::size_t>(p) < it->second.size())
        ++blame[it->second[static_cast<std::size_t>(p)]];
    for (const auto& [name, count] : blame)
      who += fmt::format("{}{} ({} pieces)", who.empty() ? "" : ", ", name, count);
    reporters_.erase(it);
  }
  spdlog::warn(
      "registry: {} withdrew the torrent of {} ({} bad pieces{}{}); one daemon fetches it alone "
      "for the next hour",
      w.member, blob.str(), w.bad_pieces.size(), who.empty() ? "" : ", reported by ", who);
  return true;
}

group_stats first_fetch_groups::stats(steady_time now) {
  std::lock_guard lock(mutex_);
  std::erase_if(solo_until_, [&](const auto& kv) { return kv.second <= now; });
  group_stats s = totals_;
  for (auto& [id, g] : groups_) {
    expire(g, now);
    s.members += g.members.size();
  }
  std::erase_if(groups_, [](const auto& kv) { return kv.second.members.empty(); });
  s.groups = groups_.size();
  return s;
}

}  // namespace voxd::tracker
