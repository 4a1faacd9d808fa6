#pragma once
// One swarm per blob: a single-file v1 torrent named after the blob id. Built deterministically
// (fixed piece-size rule, no creation date, creator, comment or attributes), so the same bytes give
// the same info-hash on every machine; and checked the same way by the daemon and the registry.

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"

namespace voxd {

using sha1_digest = std::array<unsigned char, 20>;

// Smallest power of two giving at most 1024 pieces, clamped to [256 KiB, 8 MiB]: few pieces keep
// HAVE traffic and the torrent small, small pieces let peers share a piece soon after it lands.
int piece_size_for(std::uint64_t blob_size);

// The .torrent file for a blob from its v1 piece hashes (SHA-1 of each piece, in order).
result<std::vector<char>> build_blob_torrent(const blob_id& blob, std::uint64_t size,
                                             int piece_size, std::span<const sha1_digest> pieces);

struct blob_torrent_info {
  std::string info_section;  // the bencoded info dict, which defines identity
  sha1_digest info_hash{};   // v1
  std::uint64_t length = 0;
  int piece_length = 0;
};

// Checks that untrusted `bytes` are a torrent for `blob`: parses (bounded), v1, one file named
// after the blob id, a length between 1 byte and 1 TiB, a power-of-two piece size from 16 KiB to
// 64 MiB. Errors name what was wrong.
result<blob_torrent_info> validate_blob_torrent(std::span<const char> bytes, const blob_id& blob);

// The pieces p of [0, n) with in(p), as [first, last) runs: how the registry's group API lists a
// claim and the pieces a member has not started.
std::vector<std::pair<int, int>> piece_runs(int n, const std::function<bool(int)>& in);

// SHA-1 of consecutive pieces of a byte stream fed in order, in any slicing.
class piece_hasher {
 public:
  piece_hasher(std::uint64_t size, int piece_size);
  ~piece_hasher();
  piece_hasher(const piece_hasher&) = delete;
  piece_hasher& operator=(const piece_hasher&) = delete;

  void update(std::span<const char> data);
  // Digests of the pieces completed so far; all of them once `size` bytes were fed.
  const std::vector<sha1_digest>& pieces() const { return done_; }
  int piece_size() const { return piece_size_; }

 private:
  void start();
  std::uint64_t size_;
  int piece_size_;
  std::uint64_t fed_ = 0;
  std::uint64_t in_piece_ = 0;
  void* ctx_ = nullptr;  // EVP_MD_CTX
  std::vector<sha1_digest> done_;
};

}  // namespace voxd
