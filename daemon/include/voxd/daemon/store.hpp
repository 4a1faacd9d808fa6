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
#include "voxd/common/ids.hpp"

namespace voxd {

namespace fs = std::filesystem;

class store {
 public:
  store(fs::path hub_cache, fs::path state_dir);
  status init();

  fs::path const& hub_cache() const { return hub_cache_; }
  fs::path model_dir(repo_id const& repo) const;
  fs::path blob_path(repo_id const& repo, blob_id const& blob) const;
  fs::path snapshot_dir(repo_id const& repo, commit_id const& commit) const;
  fs::path partial_path(blob_id const& blob) const;
  fs::path journal_path(blob_id const& blob) const;

  bool has_blob(repo_id const& repo, blob_id const& blob, std::uint64_t size) const;
  // A verified copy of the blob in any model directory of this cache.
  std::optional<fs::path> find_blob(blob_id const& blob, std::uint64_t size) const;
  // Makes repo's blobs/<id> from a verified copy elsewhere in the cache (hard link, else copy).
  status adopt_blob(repo_id const& repo, blob_id const& blob, fs::path const& source);
  // Moves a verified partial file into blobs/ atomically (copy + rename across filesystems).
  status commit_blob(repo_id const& repo, blob_id const& blob, fs::path const& partial);
  status link_snapshot(repo_id const& repo, commit_id const& commit, std::string const& path,
                       blob_id const& blob);
  status write_ref(repo_id const& repo, std::string const& revision, commit_id const& commit);
  // Removes the snapshot, the refs that point at it, and blobs no remaining snapshot links to.
  status remove_snapshot(repo_id const& repo, commit_id const& commit);

 private:
  fs::path hub_cache_;
  fs::path state_dir_;
};

// Writes a file atomically: temp file in the same directory, fsync, rename, fsync the directory.
status write_file_atomic(fs::path const& path, std::string_view content);
status fsync_dir(fs::path const& dir);

// Durable record of which chunks of a partial file are complete, so a restart after kill -9 does
// not fetch them again. Header line, then one little-endian u32 chunk index per completed chunk.
class chunk_journal {
 public:
  chunk_journal() = default;
  ~chunk_journal();
  chunk_journal(chunk_journal const&) = delete;
  chunk_journal& operator=(chunk_journal const&) = delete;

  // Opens (creating if needed). A journal for another size/chunk size is reset.
  status open(fs::path const& path, std::uint64_t size, std::uint64_t chunk_size);
  std::vector<bool> const& done() const { return done_; }
  // Appends records and fdatasyncs; the caller must have synced the data file first.
  status append(std::vector<std::uint32_t> const& chunks);
  status reset();
  void close();

 private:
  int fd_ = -1;
  std::string header_;
  std::vector<bool> done_;
};

}  // namespace voxd
