#pragma once
// The range engine's books for one blob fetched into a partial file: which bytes are on disk (per
// block of 64 KiB, the resume journal's unit), which ranges are in flight, and what a free
// connection fetches next. A free connection takes the next unstarted range (at most max_request
// bytes); when none is left it takes over the second half of the largest range still in flight,
// down to min_split bytes, so every connection stays busy to the last byte (aria2's -k). The
// request size is thus independent of the resume unit. No I/O: the blob fetcher drives it.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace voxd {

// Shared by the io thread, which may move `end` down to split the range, and the HTTP thread,
// which writes the body at `pos` and advances it; both under `m`, so a split never races a write.
struct range_cursor {
  std::mutex m;
  std::uint64_t pos = 0;  // next byte to write
  std::uint64_t end = 0;  // exclusive; bytes at or past it are not written
  // The connection's smoothed RTT (TCP_INFO), queueing included: rate x RTT is about what the
  // origin has sent that has not arrived, all of it lost when the range is cut.
  std::uint32_t rtt_us = 0;
};

using steady_time = std::chrono::steady_clock::time_point;

class range_plan {
 public:
  // Divides every piece size (256 KiB to 8 MiB), so a piece is whole blocks.
  static constexpr std::uint64_t block = 64 << 10;

  struct range {
    std::uint64_t id = 0;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;  // exclusive
    std::shared_ptr<range_cursor> cursor;
  };

  range_plan(std::uint64_t size, std::uint64_t max_request, std::uint64_t min_split);

  std::uint64_t size() const { return size_; }
  std::size_t blocks() const { return valid_.size(); }
  std::uint64_t block_begin(std::size_t b) const { return b * block; }
  std::uint64_t block_end(std::size_t b) const;

  // Resume: bytes at the start of block b that are on disk.
  void set_valid(std::size_t b, std::uint64_t bytes);
  std::uint64_t valid(std::size_t b) const { return valid_[b]; }
  // Only blocks overlapping these byte ranges are fetched (a cooperative claim); ranges in flight
  // outside them are cut short or cancelled: their ids are returned. Default: the whole blob.
  std::vector<std::uint64_t> want_only(
      const std::vector<std::pair<std::uint64_t, std::uint64_t>>& r);
  bool wanted(std::size_t b) const { return wanted_[b]; }

  // Work for a free connection, or nullopt when nothing is left to start or split. `connections`
  // is how many the blob's origin may have at once (sizes new ranges so all of them get work).
  std::optional<range> take(steady_time now, int connections = 8);
  bool has_unstarted() const;
  // Bytes left in the largest range in flight that a split may take half of (0 when none).
  std::uint64_t splittable(steady_time now) const;
  // A range's request ended; the bytes its cursor passed are on disk. `keep` false: the answer
  // was wrong (another range, a bad status), so none of its bytes count.
  void finished(std::uint64_t id, bool keep = true);
  // Credits the bytes written by ranges in flight to their blocks (before journalling or
  // hashing).
  void sync();
  // Forgets every byte (a failed whole-blob check).
  void reset();

  std::size_t in_flight() const { return ranges_.size(); }
  std::uint64_t done_bytes() const;  // on disk, including ranges in flight
  // Wanted blocks all on disk.
  bool complete() const;
  // Bytes from 0 on that are on disk with no gap.
  std::uint64_t valid_prefix() const;
  // Every block overlapping [from, to) is on disk.
  bool all_valid(std::uint64_t from, std::uint64_t to) const;
  // Every block overlapping [from, to) is wanted, empty and no range's.
  bool untouched(std::uint64_t from, std::uint64_t to) const;
  // Off: ranges in flight are never split (a claim's end is better left to a newcomer).
  void set_splitting(bool on) { splitting_ = on; }

 private:
  struct flight {
    std::uint64_t begin;
    std::uint64_t credited;  // bytes up to here are already in valid_
    std::shared_ptr<range_cursor> cursor;
    steady_time since;
  };
  void credit(flight& f, std::uint64_t pos);
  // Where f may be cut now (block-aligned), or 0. Call with f.cursor->m held.
  std::uint64_t split_point(const flight& f, steady_time now) const;
  std::uint64_t unstarted_bytes() const;
  std::size_t block_of(std::uint64_t offset) const {
    return static_cast<std::size_t>(offset / block);
  }

  std::uint64_t size_;
  std::uint64_t max_request_;
  std::uint64_t min_split_;
  std::vector<std::uint64_t> valid_;
  std::vector<bool> wanted_;
  std::vector<std::uint64_t> owner_;  // id of the range in flight over the block, 0 if none
  std::map<std::uint64_t, flight> ranges_;
  std::uint64_t next_id_ = 1;
  std::size_t scan_from_ = 0;  // no unstarted block before this one
  bool splitting_ = true;
};

}  // namespace voxd
