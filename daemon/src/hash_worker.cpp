#include "voxd/daemon/hash_worker.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace voxd {

hash_worker::hash_worker() : thread_([this] { run(); }) {}

hash_worker::~hash_worker() {
  stop();
}

void hash_worker::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void hash_worker::submit(job j) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(j));
  }
  cv_.notify_one();
}

void hash_worker::run() {
  std::vector<char> buf(1 << 20);
  for (;;) {
    job j;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    status result = ok();
    for (std::uint64_t off = j.from; off < j.to;) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), j.to - off));
      const auto n = ::pread(j.fd, buf.data(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        result = make_error(errc::io,
                            fmt::format("reading the partial file to hash it failed: {}",
                                        n == 0 ? "unexpected end of file" : errno_text(errno)));
        break;
      }
      if (j.hasher) j.hasher->update({buf.data(), static_cast<std::size_t>(n)});
      if (j.pieces) j.pieces->update({buf.data(), static_cast<std::size_t>(n)});
      off += static_cast<std::uint64_t>(n);
    }
    j.done(std::move(result));
  }
}

}  // namespace voxd
