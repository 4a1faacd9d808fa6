#include "voxd/common/files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace voxd {

namespace fs = std::filesystem;

namespace {
error io_error(const std::string& what, const fs::path& p, int err) {
  return make_error(err == EACCES || err == EPERM ? errc::permission_denied : errc::io,
                    fmt::format("{} {}: {}", what, p.string(), errno_text(err)));
}
}  // namespace

status fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open directory", dir, errno);
  ::fsync(fd);  // some filesystems refuse fsync on directories; the rename is still done
  ::close(fd);
  return ok();
}

status write_file_atomic(const fs::path& path, std::string_view content) {
  const auto tmp =
      path.parent_path() / fmt::format(".{}.tmp-{}", path.filename().string(), ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot create", tmp, errno);
  std::size_t off = 0;
  while (off < content.size()) {
    const auto n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return io_error("cannot write", tmp, err);
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return io_error("cannot fsync", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return io_error("cannot rename into", path, err);
  }
  return fsync_dir(path.parent_path());
}

result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(errc::io,
                      fmt::format("cannot read {}: {}", path.string(), errno_text(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

result<std::string> read_token_file(const fs::path& path) {
  auto content = read_file(path);
  if (!content) return make_error(errc::config, content.err().message);
  auto t = std::move(*content);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' '))
    t.pop_back();
  return t;
}

}  // namespace voxd
