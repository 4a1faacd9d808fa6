#include "voxd/tracker/registry.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/files.hpp"

namespace voxd::tracker {

namespace fs = std::filesystem;

result<torrent_record> validate_torrent(std::span<const char> bytes, const blob_id& blob) {
  auto info = validate_blob_torrent(bytes, blob);
  if (!info) return info.err();
  torrent_record r;
  r.bytes.assign(bytes.data(), bytes.size());
  r.info_section = std::move(info->info_section);
  std::memcpy(r.hash.bytes.data(), info->info_hash.data(), 20);
  r.length = info->length;
  r.piece_length = info->piece_length;
  return r;
}

registry::registry(fs::path data_dir) : dir_(std::move(data_dir) / "torrents") {}

result<std::size_t> registry::load() {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec)
    return make_error(errc::io, fmt::format("cannot create {}: {}", dir_.string(), ec.message()));
  std::size_t loaded = 0;
  std::lock_guard lock(mutex_);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const auto name = e.path().filename().string();
    if (e.path().extension() != ".torrent") continue;  // temp files of an interrupted write
    auto blob = blob_id::parse(e.path().stem().string());
    const auto bytes = read_file(e.path()).value_or("");
    if (!blob) {
      spdlog::error("registry: skipping {}: the name is not a blob id", e.path().string());
      continue;
    }
    auto rec = validate_torrent(bytes, *blob);
    if (!rec) {
      spdlog::error("registry: skipping damaged {}: {}", e.path().string(), rec.err().message);
      continue;
    }
    hashes_.insert(rec->hash);
    torrents_.emplace(blob->str(), std::move(*rec));
    ++loaded;
  }
  if (ec)
    return make_error(errc::io, fmt::format("cannot read {}: {}", dir_.string(), ec.message()));
  return loaded;
}

result<registry::put_outcome> registry::put(const blob_id& blob, std::span<const char> bytes) {
  auto rec = validate_torrent(bytes, blob);
  if (!rec) return rec.err();
  std::lock_guard lock(mutex_);
  if (auto it = torrents_.find(blob.str()); it != torrents_.end()) {
    return it->second.info_section == rec->info_section ? put_outcome::unchanged
                                                        : put_outcome::conflict;
  }
  if (auto s = write_file_atomic(dir_ / (blob.str() + ".torrent"), rec->bytes); !s) return s.err();
  hashes_.insert(rec->hash);
  torrents_.emplace(blob.str(), std::move(*rec));
  return put_outcome::stored;
}

std::optional<std::string> registry::get(const blob_id& blob) const {
  std::lock_guard lock(mutex_);
  auto it = torrents_.find(blob.str());
  if (it == torrents_.end()) return std::nullopt;
  return it->second.bytes;
}

void registry::remove(const blob_id& blob) {
  std::lock_guard lock(mutex_);
  auto it = torrents_.find(blob.str());
  if (it == torrents_.end()) return;
  hashes_.erase(it->second.hash);
  torrents_.erase(it);
  std::error_code ec;
  fs::remove(dir_ / (blob.str() + ".torrent"), ec);
  if (ec) spdlog::error("registry: cannot remove the torrent of {}: {}", blob.str(), ec.message());
}

bool registry::knows(const info_hash& h) const {
  std::lock_guard lock(mutex_);
  return hashes_.count(h) != 0;
}

std::size_t registry::size() const {
  std::lock_guard lock(mutex_);
  return torrents_.size();
}

lease_outcome registry::take_lease(const blob_id& blob, const std::string& holder,
                                   std::chrono::seconds ttl, std::uint64_t done,
                                   std::uint64_t total, lease& current) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto& l = leases_[blob.str()];
  if (!l.holder.empty() && l.holder != holder && l.expires > now) {
    current = l;
    return lease_outcome::held_by_other;
  }
  const bool renewed = l.holder == holder && l.expires > now;
  l = lease{holder, done, total, now + ttl};
  current = l;
  return renewed ? lease_outcome::renewed : lease_outcome::granted;
}

std::optional<lease> registry::lease_of(const blob_id& blob) {
  std::lock_guard lock(mutex_);
  auto it = leases_.find(blob.str());
  if (it == leases_.end() || it->second.expires <= std::chrono::steady_clock::now())
    return std::nullopt;
  return it->second;
}

bool registry::release_lease(const blob_id& blob, const std::string& holder) {
  std::lock_guard lock(mutex_);
  auto it = leases_.find(blob.str());
  if (it == leases_.end() || it->second.holder != holder) return false;
  leases_.erase(it);
  return true;
}

std::size_t registry::active_leases() {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  std::erase_if(leases_, [&](const auto& kv) { return kv.second.expires <= now; });
  return leases_.size();
}

}  // namespace voxd::tracker
