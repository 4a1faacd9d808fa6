#pragma once
// The blob registry: one torrent per blob (PUT/GET /v1/blobs/<blob>/torrent) and first-fetch
// leases (POST/DELETE /v1/blobs/<blob>/lease). Torrents are validated, stored atomically under
// data_dir/torrents/, and reloaded at start; a damaged file is reported and skipped.

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/ids.hpp"
#include "voxd/tracker/protocol.hpp"

namespace voxd::tracker {

struct torrent_record {
  std::string bytes;         // the .torrent as published
  std::string info_section;  // the bencoded info dict, which defines identity
  info_hash hash;            // v1 info-hash
  std::uint64_t length = 0;
  int piece_length = 0;
};

// Checks that `bytes` is a torrent for `blob`: parses (bounded), v1, one file named after the blob
// id, a length between 1 byte and 1 TiB, a power-of-two piece size from 16 KiB to 64 MiB.
result<torrent_record> validate_torrent(std::span<const char> bytes, const blob_id& blob);

struct lease {
  std::string holder;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::chrono::steady_clock::time_point expires;
};

enum class lease_outcome { granted, renewed, held_by_other };

class registry {
 public:
  explicit registry(std::filesystem::path data_dir);
  // Loads every stored torrent; returns how many were loaded, logging each one skipped.
  result<std::size_t> load();

  // ok when stored or identical to what is stored; errc::invalid_argument for a bad torrent;
  // errc::failure with "conflict" for a different info dict under the same blob.
  enum class put_outcome { stored, unchanged, conflict };
  result<put_outcome> put(const blob_id& blob, std::span<const char> bytes);
  std::optional<std::string> get(const blob_id& blob) const;
  // Forgets the blob's torrent (withdrawn after a failed check), on disk too.
  void remove(const blob_id& blob);
  bool knows(const info_hash& h) const;
  std::size_t size() const;

  lease_outcome take_lease(const blob_id& blob, const std::string& holder, std::chrono::seconds ttl,
                           std::uint64_t done, std::uint64_t total, lease& current);
  std::optional<lease> lease_of(const blob_id& blob);
  bool release_lease(const blob_id& blob, const std::string& holder);
  std::size_t active_leases();

 private:
  std::filesystem::path dir_;
  mutable std::mutex mutex_;
  std::map<std::string, torrent_record> torrents_;
  std::unordered_set<info_hash, info_hash_hasher> hashes_;
  std::map<std::string, lease> leases_;
};

}  // namespace voxd::tracker
