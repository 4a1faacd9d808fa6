#include "voxd/common/hash.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <stdexcept>

namespace voxd {

void content_hasher::ctx_deleter::operator()(evp_md_ctx_st* c) const {
  EVP_MD_CTX_free(c);
}

content_hasher::content_hasher(blob_kind kind, std::uint64_t size) : ctx_(EVP_MD_CTX_new()) {
  // Allocation failure here is a programming/resource error, not an expected outcome.
  if (!ctx_) throw std::bad_alloc();
  EVP_MD const* md = kind == blob_kind::sha256 ? EVP_sha256() : EVP_sha1();
  if (EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1)
    throw std::runtime_error("EVP_DigestInit_ex");
  if (kind == blob_kind::git_sha1) {
    const auto header = fmt::format("blob {}", size);
    EVP_DigestUpdate(ctx_.get(), header.data(), header.size() + 1);  // include the NUL
  }
}

content_hasher::~content_hasher() = default;
content_hasher::content_hasher(content_hasher&&) noexcept = default;
content_hasher& content_hasher::operator=(content_hasher&&) noexcept = default;

void content_hasher::update(std::span<const char> data) {
  EVP_DigestUpdate(ctx_.get(), data.data(), data.size());
}

std::string content_hasher::finish_hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  return to_hex({md, len});
}

std::string to_hex(std::span<const unsigned char> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0xf];
  }
  return out;
}

std::string sha256_hex(std::span<const char> data) {
  content_hasher h(blob_kind::sha256, data.size());
  h.update(data);
  return h.finish_hex();
}

std::string git_blob_sha1_hex(std::span<const char> data) {
  content_hasher h(blob_kind::git_sha1, data.size());
  h.update(data);
  return h.finish_hex();
}

}  // namespace voxd
