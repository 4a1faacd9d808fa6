#include "voxd/daemon/store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <set>

namespace voxd {
namespace {

error io_error(const std::string& what, const fs::path& p, int err) {
  return make_error(err == EACCES || err == EPERM ? errc::permission_denied : errc::io,
                    fmt::format("{} {}: {}", what, p.string(), errno_text(err)));
}

error io_error(const std::string& what, const fs::path& p, const std::error_code& ec) {
  return make_error(errc::io, fmt::format("{} {}: {}", what, p.string(), ec.message()));
}

status make_dirs(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  if (ec) return io_error("cannot create directory", p, ec);
  return ok();
}

status copy_durably(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return io_error("cannot copy to", to, ec);
  const int fd = ::open(to.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open", to, errno);
  const int r = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (r != 0) return io_error("cannot fsync", to, err);
  return ok();
}

}  // namespace

store::store(fs::path hub_cache, fs::path state_dir)
    : hub_cache_(std::move(hub_cache)), state_dir_(std::move(state_dir)) {}

status store::init() {
  if (auto s = make_dirs(hub_cache_); !s) return s;
  if (auto s = make_dirs(state_dir_ / "partial"); !s) return s;
  // Tags the cache for backup tools, as huggingface_hub does.
  const auto tag = hub_cache_ / "CACHEDIR.TAG";
  if (!fs::exists(tag))
    (void)write_file_atomic(tag,
                            "Signature: 8a477f597d28d172789f06886806bc55\n"
                            "# This file is a cache directory tag created by voxd.\n");
  return ok();
}

fs::path store::model_dir(const repo_id& repo) const {
  return hub_cache_ / repo.cache_dir_name();
}
fs::path store::blob_path(const repo_id& repo, const blob_id& blob) const {
  return model_dir(repo) / "blobs" / blob.str();
}
fs::path store::snapshot_dir(const repo_id& repo, const commit_id& commit) const {
  return model_dir(repo) / "snapshots" / commit.str();
}
fs::path store::partial_path(const blob_id& blob) const {
  return state_dir_ / "partial" / (blob.str() + ".part");
}
fs::path store::journal_path(const blob_id& blob) const {
  return state_dir_ / "partial" / (blob.str() + ".chunks");
}

bool store::has_blob(const repo_id& repo, const blob_id& blob, std::uint64_t size) const {
  std::error_code ec;
  const auto p = blob_path(repo, blob);
  return fs::is_regular_file(p, ec) && fs::file_size(p, ec) == size && !ec;
}

std::optional<fs::path> store::find_blob(const blob_id& blob, std::uint64_t size) const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(hub_cache_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("models--", 0) != 0) continue;
    const auto p = entry.path() / "blobs" / blob.str();
    std::error_code ec2;
    if (fs::is_regular_file(p, ec2) && fs::file_size(p, ec2) == size && !ec2) return p;
  }
  return std::nullopt;
}

status store::adopt_blob(const repo_id& repo, const blob_id& blob, const fs::path& source) {
  const auto dir = model_dir(repo) / "blobs";
  if (auto s = make_dirs(dir); !s) return s;
  const auto dest = dir / blob.str();
  if (::link(source.c_str(), dest.c_str()) == 0 || errno == EEXIST) return fsync_dir(dir);
  // No hard links across filesystems or on some mounts: copy beside the model dir, then rename.
  const auto tmp = model_dir(repo) / fmt::format(".voxd-incoming-{}", blob.str());
  if (auto s = copy_durably(source, tmp); !s) return s;
  if (::rename(tmp.c_str(), dest.c_str()) != 0) return io_error("cannot rename into", dest, errno);
  return fsync_dir(dir);
}

namespace {

// Blobs are readable by everyone the umask allows, like files the Hub's own clients write.
void make_readable(const fs::path& file) {
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::chmod(file.c_str(), 0644 & ~mask);
}

}  // namespace

status store::link_blob(const repo_id& repo, const blob_id& blob, const fs::path& file) {
  const auto dir = model_dir(repo) / "blobs";
  if (auto s = make_dirs(dir); !s) return s;
  const auto dest = dir / blob.str();
  make_readable(file);
  if (::link(file.c_str(), dest.c_str()) != 0)
    return io_error("cannot link the verified blob into", dest, errno);
  return fsync_dir(dir);
}

status store::commit_blob(const repo_id& repo, const blob_id& blob, const fs::path& partial) {
  const auto dir = model_dir(repo) / "blobs";
  if (auto s = make_dirs(dir); !s) return s;
  const auto dest = dir / blob.str();
  make_readable(partial);
  if (::rename(partial.c_str(), dest.c_str()) == 0) return fsync_dir(dir);
  if (errno != EXDEV) return io_error("cannot move the verified blob into", dest, errno);
  const auto tmp = model_dir(repo) / fmt::format(".voxd-incoming-{}", blob.str());
  if (auto s = copy_durably(partial, tmp); !s) return s;
  if (::rename(tmp.c_str(), dest.c_str()) != 0) return io_error("cannot rename into", dest, errno);
  ::unlink(partial.c_str());
  return fsync_dir(dir);
}

status store::link_snapshot(const repo_id& repo, const commit_id& commit, const std::string& path,
                            const blob_id& blob) {
  const auto link = snapshot_dir(repo, commit) / path;
  if (auto s = make_dirs(link.parent_path()); !s) return s;
  // ../../blobs/<id> from snapshots/<commit>/, one more ../ per sub-directory of path.
  fs::path const rel(path);
  fs::path target = "../..";
  for (auto it = rel.begin(); std::next(it) != rel.end(); ++it)
    target = ".." / target;
  target = target / "blobs" / blob.str();
  std::error_code ec;
  if (fs::is_symlink(link, ec) && fs::read_symlink(link, ec) == target) return ok();
  const auto tmp = link.parent_path() / fmt::format(".{}.voxd-link", link.filename().string());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0)
    return io_error("cannot create symlink", tmp, errno);
  if (::rename(tmp.c_str(), link.c_str()) != 0)
    return io_error("cannot rename symlink into", link, errno);
  return ok();
}

status store::write_ref(const repo_id& repo, const std::string& revision, const commit_id& commit) {
  const auto ref = model_dir(repo) / "refs" / revision;
  if (auto s = make_dirs(ref.parent_path()); !s) return s;
  return write_file_atomic(ref, commit.str());  // no newline: Python reads it verbatim
}

std::uint64_t store::partial_bytes(const blob_id& blob) const {
  struct stat sb {};
  if (::stat(partial_path(blob).c_str(), &sb) != 0) return 0;
  return static_cast<std::uint64_t>(sb.st_blocks) * 512;  // partial files are sparse
}

status store::room_for(std::uint64_t need, const space_spec& max_size,
                       const space_spec& min_free) const {
  if (need == 0) return ok();
  // Partial files grow under state_dir, verified blobs end under hub_cache: both must have room
  // (once when they share a file system).
  std::set<unsigned long> seen;
  for (const auto& dir : {hub_cache_, state_dir_}) {
    struct statvfs sv {};
    if (::statvfs(dir.c_str(), &sv) != 0 || !seen.insert(sv.f_fsid).second) continue;
    const auto total = static_cast<std::uint64_t>(sv.f_blocks) * sv.f_frsize;
    const auto free = static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize;
    const auto keep = min_free.of(total);
    if (free < need + keep)
      return make_error(
          errc::no_space,
          fmt::format("disk full: need {}, have {} free on {}{}", format_bytes(need),
                      format_bytes(free), dir.string(),
                      keep > 0 ? fmt::format(" (store.min_free keeps {})", format_bytes(keep))
                               : std::string()));
    if (max_size.type == space_spec::kind::off || dir != hub_cache_) continue;
    std::uint64_t used = 0;
    std::error_code ec;
    std::set<std::string> counted;  // a blob two models share is one file (hard links)
    for (const auto& m : fs::directory_iterator(hub_cache_, ec))
      for (const auto& b : fs::directory_iterator(m.path() / "blobs", ec))
        if (b.is_regular_file(ec) && counted.insert(b.path().filename().string()).second)
          used += b.file_size(ec);
    const auto most = max_size.of(total);
    if (used + need > most)
      return make_error(errc::no_space,
                        fmt::format("store full: need {}, the store holds {} of its "
                                    "store.max_size {}",
                                    format_bytes(need), format_bytes(used), format_bytes(most)));
  }
  return ok();
}

status store::remove_snapshot(const repo_id& repo, const commit_id& commit) {
  const auto dir = model_dir(repo);
  std::error_code ec;
  fs::remove_all(snapshot_dir(repo, commit), ec);
  if (ec) return io_error("cannot remove snapshot", snapshot_dir(repo, commit), ec);
  // Refs that name the removed commit.
  for (auto it = fs::recursive_directory_iterator(dir / "refs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::string content(64, '\0');
    const int fd = ::open(it->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const auto n = ::read(fd, content.data(), content.size());
    ::close(fd);
    if (n >= 0 && content.substr(0, static_cast<std::size_t>(n)) == commit.str())
      fs::remove(it->path(), ec);
  }
  ec.clear();
  // Blobs still linked from a remaining snapshot stay.
  std::set<std::string> used;
  for (auto it = fs::recursive_directory_iterator(dir / "snapshots", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_symlink()) used.insert(fs::read_symlink(it->path(), ec).filename().string());
  }
  ec.clear();
  for (const auto& b : fs::directory_iterator(dir / "blobs", ec)) {
    if (!used.count(b.path().filename().string())) fs::remove(b.path(), ec);
  }
  ec.clear();
  bool any_snapshot = false;
  for (const auto& s [[maybe_unused]] : fs::directory_iterator(dir / "snapshots", ec))
    any_snapshot = true;
  if (!any_snapshot) fs::remove_all(dir, ec);
  return ok();
}

chunk_journal::~chunk_journal() {
  close();
}

void chunk_journal::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

status chunk_journal::open(const fs::path& path, std::uint64_t size, std::uint64_t chunk_size) {
  close();
  header_ = fmt::format("voxd-chunks 2 {} {}\n", size, chunk_size);
  const auto count = chunk_size == 0 ? 0 : (size + chunk_size - 1) / chunk_size;
  valid_.assign(count, 0);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return io_error("cannot open journal", path, errno);
  std::string content;
  std::array<char, 65536> buf{};
  for (;;) {
    const auto n = ::read(fd_, buf.data(), buf.size());
    if (n <= 0) break;
    content.append(buf.data(), static_cast<std::size_t>(n));
  }
  if (content.rfind(header_, 0) != 0) return reset();
  // A torn trailing record (crash mid-write) is ignored.
  const auto records = (content.size() - header_.size()) / 8;
  const auto u32 = [](const unsigned char* p) {
    return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  };
  for (std::size_t i = 0; i < records; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(content.data() + header_.size() + 8 * i);
    const auto idx = u32(p), bytes = u32(p + 4);
    if (idx < valid_.size() && bytes <= chunk_size) valid_[idx] = std::max(valid_[idx], bytes);
  }
  if (::ftruncate(fd_, static_cast<off_t>(header_.size() + records * 8)) != 0)
    return io_error("cannot truncate journal", path, errno);
  ::lseek(fd_, 0, SEEK_END);
  return ok();
}

status chunk_journal::reset() {
  std::fill(valid_.begin(), valid_.end(), 0);
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, header_.data(), header_.size(), 0) != static_cast<ssize_t>(header_.size()))
    return make_error(errc::io, fmt::format("cannot reset journal: {}", errno_text(errno)));
  ::lseek(fd_, 0, SEEK_END);
  ::fdatasync(fd_);
  return ok();
}

status chunk_journal::append(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& records) {
  if (records.empty()) return ok();
  std::string buf;
  for (const auto& [idx, bytes] : records) {
    if (idx < valid_.size()) valid_[idx] = std::max(valid_[idx], bytes);
    for (const auto v : {idx, bytes})
      for (int i = 0; i < 4; ++i)
        buf += static_cast<char>((v >> (8 * i)) & 0xff);
  }
  if (::write(fd_, buf.data(), buf.size()) != static_cast<ssize_t>(buf.size()))
    return make_error(errc::io, fmt::format("cannot append to journal: {}", errno_text(errno)));
  ::fdatasync(fd_);
  return ok();
}

}  // namespace voxd
