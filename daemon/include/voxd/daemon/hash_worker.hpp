#pragma once
// Hashes ranges of partial files on a thread of its own, so verification runs while the download
// continues and costs almost no wall time at the end.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "voxd/common/blob_torrent.hpp"
#include "voxd/common/error.hpp"
#include "voxd/common/hash.hpp"

namespace voxd {

class hash_worker {
 public:
  struct job {
    int fd = -1;
    std::uint64_t from = 0;
    std::uint64_t to = 0;
    content_hasher* hasher = nullptr;  // optional; owned by the caller, untouched until done runs
    piece_hasher* pieces = nullptr;    // optional, fed the same bytes
    std::function<void(status)> done;  // called on the worker thread
  };

  hash_worker();
  ~hash_worker();
  void submit(job j);
  void stop();

 private:
  void run();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace voxd
