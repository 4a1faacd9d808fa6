#pragma once
// Content hashing through OpenSSL EVP: SHA-256 for LFS/Xet files, git blob SHA-1 for the rest.

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "voxd/common/ids.hpp"

struct evp_md_ctx_st;

namespace voxd {

class content_hasher {
 public:
  // A git_sha1 hasher is primed with the "blob <size>\0" header git hashes before the content.
  content_hasher(blob_kind kind, std::uint64_t size);
  ~content_hasher();
  content_hasher(content_hasher&&) noexcept;
  content_hasher& operator=(content_hasher&&) noexcept;

  void update(std::span<const char> data);
  std::string finish_hex();  // lowercase hex digest; the hasher is spent afterwards

 private:
  struct ctx_deleter {
    void operator()(evp_md_ctx_st* c) const;
  };
  std::unique_ptr<evp_md_ctx_st, ctx_deleter> ctx_;
};

std::string to_hex(std::span<const unsigned char> bytes);
std::string sha256_hex(std::span<const char> data);
std::string git_blob_sha1_hex(std::span<const char> data);

}  // namespace voxd
