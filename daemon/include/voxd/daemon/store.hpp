#pragma once
// The model store is the Hugging Face cache layout itself (hub_cache):
//   models--org--name/blobs/<blob id>                 verified content, entered by rename only
//   models--org--name/snapshots/<commit>/<path>       relative symlinks to ../../blobs/<blob id>
//   models--org--name/refs/<revision>                 the commit, no trailing newline
// Partial data lives under state_dir/partial/, never under blobs/.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "voxd/common/error.hpp"
#include "voxd/common/files.hpp"
#include "voxd/common/ids.hpp"
#include "voxd/common/units.hpp"

namespace voxd {

namespace fs = std::filesystem;

class store {
 public:
  store(fs::path hub_cache, fs::path state_dir);
  status init();

  const fs::path& hub_cache() const { return hub_cache_; }
  const fs::path& state_dir() const { return state_dir_; }
  fs::path model_dir(const repo_id& repo) const;
  fs::path blob_path(const repo_id& repo, const blob_id& blob) const;
  fs::path snapshot_dir(const repo_id& repo, const commit_id& commit) const;
  fs::path partial_path(const blob_id& blob) const;
  fs::path journal_path(const blob_id& blob) const;

  bool has_blob(const repo_id& repo, const blob_id& blob, std::uint64_t size) const;
  // A verified copy of the blob in any model directory of this cache.
  std::optional<fs::path> find_blob(const blob_id& blob, std::uint64_t size) const;
  // Makes repo's blobs/<id> from a verified copy elsewhere in the cache (hard link, else copy).
  status adopt_blob(const repo_id& repo, const blob_id& blob, const fs::path& source);
  // Moves a verified partial file into blobs/ atomically (copy + rename across filesystems).
  status commit_blob(const repo_id& repo, const blob_id& blob, const fs::path& partial);
  // Hard-links a verified file that must stay where it is (a torrent seeds from it) into blobs/;
  // fails across filesystems, or when blobs/ has the blob already.
  status link_blob(const repo_id& repo, const blob_id& blob, const fs::path& file);
  status link_snapshot(const repo_id& repo, const commit_id& commit, const std::string& path,
                       const blob_id& blob);
  status write_ref(const repo_id& repo, const std::string& revision, const commit_id& commit);
  // Whether `need` more bytes fit: on the file systems of hub_cache and state_dir, leaving
  // min_free, and in the store, within max_size (both as configured; off: no check). The error
  // (errc::no_space) says which limit and by how much.
  status room_for(std::uint64_t need, const space_spec& max_size, const space_spec& min_free) const;
  // Bytes the partial file of a blob occupies on disk (its fetched part).
  std::uint64_t partial_bytes(const blob_id& blob) const;
  // Removes the snapshot, the refs that point at it, and blobs no remaining snapshot links to.
  status remove_snapshot(const repo_id& repo, const commit_id& commit);

 private:
  fs::path hub_cache_;
  fs::path state_dir_;
};

// Durable record of how many bytes at the start of each chunk of a partial file are written, so a
// restart after kill -9 fetches neither complete chunks nor the written part of incomplete ones.
// Header line, then records of two little-endian u32: chunk index, valid bytes from its start.
class chunk_journal {
 public:
  chunk_journal() = default;
  ~chunk_journal();
  chunk_journal(const chunk_journal&) = delete;
  chunk_journal& operator=(const chunk_journal&) = delete;

  // Opens (creating if needed). A journal for another size/chunk size is reset.
  status open(const fs::path& path, std::uint64_t size, std::uint64_t chunk_size);
  // Valid bytes at the start of each chunk.
  const std::vector<std::uint32_t>& valid() const { return valid_; }
  // Appends (chunk, valid bytes) records and fdatasyncs; the caller must have synced the data
  // file first, so the journal never claims bytes that are not on disk.
  status append(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& records);
  status reset();
  void close();

 private:
  int fd_ = -1;
  std::string header_;
  std::vector<std::uint32_t> valid_;
};

}  // namespace voxd
