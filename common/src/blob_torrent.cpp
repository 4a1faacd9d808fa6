#include "voxd/common/blob_torrent.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <libtorrent/bdecode.hpp>
#include <libtorrent/bencode.hpp>
#include <libtorrent/create_torrent.hpp>
#include <libtorrent/torrent_info.hpp>

#include <algorithm>
#include <cstring>
#include <iterator>

namespace voxd {

int piece_size_for(std::uint64_t blob_size) {
  constexpr std::uint64_t min = 256 << 10, max = 8 << 20;
  std::uint64_t p = min;
  while (p < max && (blob_size + p - 1) / p > 1024)
    p *= 2;
  return static_cast<int>(p);
}

result<std::vector<char>> build_blob_torrent(const blob_id& blob, std::uint64_t size,
                                             int piece_size, std::span<const sha1_digest> pieces) {
  const auto expected =
      (size + static_cast<std::uint64_t>(piece_size) - 1) / static_cast<std::uint64_t>(piece_size);
  if (size == 0 || pieces.size() != expected)
    return make_error(errc::invalid_argument,
                      fmt::format("blob {}: {} piece hashes for {} bytes in {}-byte pieces",
                                  blob.str(), pieces.size(), size, piece_size));
  // libtorrent takes an all-zero hash for one never set (and throws): a real SHA-1 is never zero.
  for (std::size_t i = 0; i < pieces.size(); ++i)
    if (std::all_of(pieces[i].begin(), pieces[i].end(), [](unsigned char b) { return b == 0; }))
      return make_error(errc::invalid_argument,
                        fmt::format("blob {}: piece {} has an all-zero hash", blob.str(), i));
  lt::file_storage fs;
  fs.add_file(blob.str(), static_cast<std::int64_t>(size));
  lt::create_torrent ct(fs, piece_size,
                        lt::create_torrent::v1_only | lt::create_torrent::no_attributes);
  ct.set_creation_date(0);
  for (std::size_t i = 0; i < pieces.size(); ++i)
    ct.set_hash(lt::piece_index_t{static_cast<int>(i)},
                lt::sha1_hash(reinterpret_cast<const char*>(pieces[i].data())));
  std::vector<char> out;
  lt::bencode(std::back_inserter(out), ct.generate());
  return out;
}

result<blob_torrent_info> validate_blob_torrent(std::span<const char> bytes, const blob_id& blob) {
  auto const bad = [](std::string what) {
    return make_error(errc::invalid_argument, "torrent " + what);
  };
  if (bytes.size() > (4 << 20)) return bad("is larger than 4 MiB");
  lt::error_code ec;
  int pos = 0;
  // Bounded decode: untrusted input must not buy deep recursion or huge token tables.
  auto const node =
      lt::bdecode({bytes.data(), static_cast<std::ptrdiff_t>(bytes.size())}, ec, &pos, 20, 200'000);
  if (ec) return bad(fmt::format("is not valid bencode ({} at byte {})", ec.message(), pos));
  lt::torrent_info ti(node, ec);
  if (ec) return bad(fmt::format("is not a valid torrent: {}", ec.message()));
  if (!ti.info_hashes().has_v1()) return bad("has no v1 info-hash (voxd swarms are v1)");
  if (ti.num_files() != 1 || ti.files().pad_file_at(lt::file_index_t{0}))
    return bad(fmt::format("must hold exactly one file, holds {}", ti.num_files()));
  if (ti.name() != blob.str())
    return bad(fmt::format("is named '{}', must be named after the blob id {}",
                           ti.name().substr(0, 80), blob.str()));
  if (ti.files().file_path(lt::file_index_t{0}) != blob.str())
    return bad("must be a single-file torrent (no directory)");
  auto const length = ti.total_size();
  if (length < 1 || length > (std::int64_t{1} << 40))
    return bad(fmt::format("has an implausible length {}", length));
  auto const piece = ti.piece_length();
  if (piece < (16 << 10) || piece > (64 << 20) || (piece & (piece - 1)) != 0)
    return bad(
        fmt::format("has piece size {}; it must be a power of two from 16 KiB to 64 MiB", piece));
  blob_torrent_info r;
  auto const info = ti.info_section();
  r.info_section.assign(info.data(), static_cast<std::size_t>(info.size()));
  auto const v1 = ti.info_hashes().v1;
  std::memcpy(r.info_hash.data(), v1.data(), 20);
  r.length = static_cast<std::uint64_t>(length);
  r.piece_length = piece;
  return r;
}

piece_hasher::piece_hasher(std::uint64_t size, int piece_size)
    : size_(size), piece_size_(piece_size) {
  ctx_ = EVP_MD_CTX_new();
  if (!ctx_) throw std::bad_alloc();
  start();
}

piece_hasher::~piece_hasher() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}

void piece_hasher::start() {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha1(), nullptr);
  in_piece_ = 0;
}

void piece_hasher::update(std::span<const char> data) {
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_);
  while (!data.empty() && fed_ < size_) {
    const auto room =
        std::min<std::uint64_t>(static_cast<std::uint64_t>(piece_size_) - in_piece_, size_ - fed_);
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(room, data.size()));
    EVP_DigestUpdate(ctx, data.data(), n);
    data = data.subspan(n);
    in_piece_ += n;
    fed_ += n;
    if (in_piece_ == static_cast<std::uint64_t>(piece_size_) || fed_ == size_) {
      sha1_digest d{};
      unsigned int len = 0;
      EVP_DigestFinal_ex(ctx, d.data(), &len);
      done_.push_back(d);
      start();
    }
  }
}

std::vector<std::pair<int, int>> piece_runs(int n, const std::function<bool(int)>& in) {
  std::vector<std::pair<int, int>> runs;
  for (int p = 0; p < n; ++p) {
    if (!in(p)) continue;
    if (!runs.empty() && runs.back().second == p)
      runs.back().second = p + 1;
    else
      runs.emplace_back(p, p + 1);
  }
  return runs;
}

}  // namespace voxd
