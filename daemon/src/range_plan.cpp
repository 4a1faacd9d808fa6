#include "voxd/daemon/range_plan.hpp"

#include <algorithm>

namespace voxd {

range_plan::range_plan(std::uint64_t size, std::uint64_t max_request, std::uint64_t min_split)
    : size_(size),
      max_request_(std::max(max_request, block)),
      min_split_(std::max(min_split, block)),
      valid_(static_cast<std::size_t>((size + block - 1) / block), 0),
      wanted_(valid_.size(), true),
      owner_(valid_.size(), 0) {}

std::uint64_t range_plan::block_end(std::size_t b) const {
  return std::min(size_, (b + 1) * block);
}

void range_plan::set_valid(std::size_t b, std::uint64_t bytes) {
  if (b < valid_.size()) valid_[b] = std::min(bytes, block_end(b) - block_begin(b));
}

std::vector<std::uint64_t> range_plan::want_only(
    const std::vector<std::pair<std::uint64_t, std::uint64_t>>& r) {
  std::fill(wanted_.begin(), wanted_.end(), false);
  for (const auto& [from, to] : r)
    for (auto b = block_of(from); b < valid_.size() && block_begin(b) < to; ++b)
      wanted_[b] = true;
  scan_from_ = 0;
  std::vector<std::uint64_t> cancel;
  for (auto& [id, f] : ranges_) {
    std::lock_guard lock(f.cursor->m);
    const auto first = block_of(f.cursor->pos);
    if (f.cursor->pos >= f.cursor->end || !wanted_[first]) {
      cancel.push_back(id);
      continue;
    }
    for (auto b = first + 1; b < valid_.size() && block_begin(b) < f.cursor->end; ++b) {
      if (wanted_[b]) continue;
      for (auto k = b; k < valid_.size() && block_begin(k) < f.cursor->end; ++k)
        if (owner_[k] == id) owner_[k] = 0;
      f.cursor->end = block_begin(b);
      break;
    }
  }
  return cancel;
}

bool range_plan::has_unstarted() const {
  for (auto b = scan_from_; b < valid_.size(); ++b)
    if (wanted_[b] && owner_[b] == 0 && valid_[b] < block_end(b) - block_begin(b)) return true;
  return false;
}

namespace {
// A range younger than this has no rate to judge it by yet.
constexpr auto min_age = std::chrono::milliseconds(250);
// ... and one due to end sooner than this is not worth a new connection.
constexpr double min_eta_s = 1.0;
}  // namespace

std::uint64_t range_plan::split_point(const flight& f, steady_time now) const {
  const auto& c = *f.cursor;
  if (!splitting_ || c.pos >= c.end || c.end - c.pos < 2 * min_split_) return 0;
  const auto age = now - f.since;
  if (age < min_age) return 0;
  const auto rem = c.end - c.pos;
  const double rate =
      static_cast<double>(c.pos - f.begin) / std::chrono::duration<double>(age).count();
  if (static_cast<double>(rem) <= rate * min_eta_s) return 0;
  // The old range keeps half, and at least three times its bytes in the pipe (the sender's
  // buffer is about as much again as the network holds).
  const auto in_pipe = static_cast<std::uint64_t>(rate * c.rtt_us * 3e-6);
  const auto keep = std::max(rem / 2, in_pipe + block);
  const auto split = (c.pos + keep + block - 1) / block * block;
  return split < c.end && c.end - split >= min_split_ ? split : 0;
}

std::uint64_t range_plan::splittable(steady_time now) const {
  std::uint64_t best = 0;
  for (const auto& [id, f] : ranges_) {
    std::lock_guard lock(f.cursor->m);
    if (const auto s = split_point(f, now)) best = std::max(best, f.cursor->end - s);
  }
  return best;
}

std::uint64_t range_plan::unstarted_bytes() const {
  std::uint64_t n = 0;
  for (auto b = scan_from_; b < valid_.size(); ++b)
    if (wanted_[b] && owner_[b] == 0) n += block_end(b) - block_begin(b) - valid_[b];
  return n;
}

std::optional<range_plan::range> range_plan::take(steady_time now, int connections) {
  // The next unstarted range: from the first block nobody fetches that is not on disk, over the
  // following untouched blocks, up to a share of what is left (so the last ranges are small).
  const auto share =
      std::clamp(unstarted_bytes() / static_cast<std::uint64_t>(std::max(1, connections)),
                 min_split_, max_request_);
  for (auto b = scan_from_; b < valid_.size(); ++b) {
    scan_from_ = b;
    if (!wanted_[b] || owner_[b] != 0 || valid_[b] == block_end(b) - block_begin(b)) continue;
    const auto id = next_id_++;
    range r{id, block_begin(b) + valid_[b], block_end(b), std::make_shared<range_cursor>()};
    owner_[b] = id;
    for (auto k = b + 1; k < valid_.size() && wanted_[k] && owner_[k] == 0 && valid_[k] == 0 &&
                         block_end(k) - r.begin <= share;
         ++k) {
      owner_[k] = id;
      r.end = block_end(k);
    }
    r.cursor->pos = r.begin;
    r.cursor->end = r.end;
    ranges_.emplace(id, flight{r.begin, r.begin, r.cursor, now});
    return r;
  }
  scan_from_ = valid_.size();
  // None left: take over the second half of the largest range still in flight.
  flight* victim = nullptr;
  std::uint64_t victim_id = 0, most = 0, split = 0;
  for (auto& [id, f] : ranges_) {
    std::lock_guard lock(f.cursor->m);
    const auto s = split_point(f, now);
    if (s != 0 && f.cursor->end - s > most) {
      most = f.cursor->end - s;
      victim = &f;
      victim_id = id;
      split = s;
    }
  }
  if (!victim) return std::nullopt;
  std::uint64_t end = 0;
  {
    // The HTTP thread may have written on since: cut only where it has not reached.
    std::lock_guard lock(victim->cursor->m);
    end = victim->cursor->end;
    if (victim->cursor->pos >= split || split >= end) return std::nullopt;
    victim->cursor->end = split;
  }
  const auto id = next_id_++;
  range r{id, split, end, std::make_shared<range_cursor>()};
  r.cursor->pos = split;
  r.cursor->end = end;
  for (auto b = block_of(split); b < valid_.size() && block_begin(b) < end; ++b)
    if (owner_[b] == victim_id) owner_[b] = id;
  ranges_.emplace(id, flight{split, split, r.cursor, now});
  return r;
}

void range_plan::credit(flight& f, std::uint64_t pos) {
  for (auto b = block_of(f.credited); b < valid_.size() && block_begin(b) < pos; ++b)
    valid_[b] = std::max(valid_[b], std::min(pos, block_end(b)) - block_begin(b));
  f.credited = std::max(f.credited, pos);
}

void range_plan::finished(std::uint64_t id, bool keep) {
  auto it = ranges_.find(id);
  if (it == ranges_.end()) return;
  auto& f = it->second;
  std::uint64_t pos = 0, end = 0;
  {
    std::lock_guard lock(f.cursor->m);
    pos = f.cursor->pos;
    end = std::max(f.cursor->end, pos);
  }
  if (keep) {
    credit(f, pos);
  } else {
    // What sync() credited of this answer goes back: the block prefix it started from stays.
    const auto first = block_of(f.begin);
    for (auto b = first; b < valid_.size() && block_begin(b) < f.credited; ++b)
      valid_[b] = b == first ? f.begin - block_begin(b) : 0;
  }
  for (auto b = block_of(f.begin); b < valid_.size() && block_begin(b) < end; ++b)
    if (owner_[b] == id) owner_[b] = 0;
  scan_from_ = std::min(scan_from_, block_of(f.begin));
  ranges_.erase(it);
}

void range_plan::sync() {
  for (auto& [id, f] : ranges_) {
    std::uint64_t pos = 0;
    {
      std::lock_guard lock(f.cursor->m);
      pos = f.cursor->pos;
    }
    credit(f, pos);
  }
}

void range_plan::reset() {
  std::fill(valid_.begin(), valid_.end(), 0);
  for (auto& [id, f] : ranges_)
    f.credited = f.begin;
  scan_from_ = 0;
}

std::uint64_t range_plan::done_bytes() const {
  std::uint64_t n = 0;
  for (auto v : valid_)
    n += v;
  for (const auto& [id, f] : ranges_) {
    std::lock_guard lock(f.cursor->m);
    n += f.cursor->pos - std::min(f.cursor->pos, f.credited);
  }
  return n;
}

bool range_plan::complete() const {
  for (std::size_t b = 0; b < valid_.size(); ++b)
    if (wanted_[b] && valid_[b] < block_end(b) - block_begin(b)) return false;
  return true;
}

std::uint64_t range_plan::valid_prefix() const {
  std::uint64_t n = 0;
  for (std::size_t b = 0; b < valid_.size(); ++b) {
    n += valid_[b];
    if (valid_[b] < block_end(b) - block_begin(b)) break;
  }
  return n;
}

bool range_plan::all_valid(std::uint64_t from, std::uint64_t to) const {
  for (auto b = block_of(from); b < valid_.size() && block_begin(b) < to; ++b)
    if (valid_[b] < block_end(b) - block_begin(b)) return false;
  return true;
}

bool range_plan::untouched(std::uint64_t from, std::uint64_t to) const {
  for (auto b = block_of(from); b < valid_.size() && block_begin(b) < to; ++b)
    if (!wanted_[b] || owner_[b] != 0 || valid_[b] != 0) return false;
  return true;
}

}  // namespace voxd
