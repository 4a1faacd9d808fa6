#include "voxd/common/blob_torrent.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <random>
#include <string>

namespace voxd {
namespace {

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s)
    c = static_cast<char>(rng());
  return s;
}

std::vector<sha1_digest> pieces_of(const std::string& data, int piece) {
  std::vector<sha1_digest> out;
  for (std::size_t off = 0; off < data.size(); off += static_cast<std::size_t>(piece)) {
    sha1_digest d{};
    const auto n = std::min<std::size_t>(static_cast<std::size_t>(piece), data.size() - off);
    SHA1(reinterpret_cast<const unsigned char*>(data.data() + off), n, d.data());
    out.push_back(d);
  }
  return out;
}

const blob_id blob = *blob_id::parse(std::string(64, 'b'));

TEST(BlobTorrent, PieceSizeRule) {
  EXPECT_EQ(piece_size_for(1), 256 << 10);
  EXPECT_EQ(piece_size_for(256ull << 20), 256 << 10);        // 1024 pieces
  EXPECT_EQ(piece_size_for((256ull << 20) + 1), 512 << 10);  // one more byte: bigger pieces
  EXPECT_EQ(piece_size_for(1600ull << 20), 2 << 20);         // VoxCPM-1.5 weights: 800 pieces
  EXPECT_EQ(piece_size_for(1ull << 40), 8 << 20);            // capped
}

TEST(BlobTorrent, BuildIsDeterministicAndValidates) {
  const auto data = random_bytes(700'000, 1);
  const int piece = piece_size_for(data.size());
  const auto hashes = pieces_of(data, piece);
  auto a = build_blob_torrent(blob, data.size(), piece, hashes);
  auto b = build_blob_torrent(blob, data.size(), piece, hashes);
  ASSERT_TRUE(a) << a.err().message;
  ASSERT_TRUE(b);
  EXPECT_EQ(*a, *b);
  const std::string text(a->begin(), a->end());
  EXPECT_EQ(text.find("creation date"), std::string::npos);
  EXPECT_EQ(text.find("created by"), std::string::npos);
  auto info = validate_blob_torrent(*a, blob);
  ASSERT_TRUE(info) << info.err().message;
  EXPECT_EQ(info->length, data.size());
  EXPECT_EQ(info->piece_length, piece);
  // The info dict holds exactly what defines the content: name, length, piece length, pieces.
  const std::string expected_prefix =
      "d6:lengthi700000e4:name64:" + blob.str() + "12:piece lengthi262144e6:pieces60:";
  EXPECT_EQ(info->info_section.substr(0, expected_prefix.size()), expected_prefix);
}

TEST(BlobTorrent, WrongHashCountIsRefused) {
  const auto data = random_bytes(600'000, 2);
  auto hashes = pieces_of(data, 256 << 10);
  hashes.pop_back();
  auto t = build_blob_torrent(blob, data.size(), 256 << 10, hashes);
  ASSERT_FALSE(t);
  EXPECT_NE(t.err().message.find("2 piece hashes for 600000 bytes"), std::string::npos);
}

TEST(BlobTorrent, ValidationNamesTheProblem) {
  const auto data = random_bytes(300'000, 3);
  auto t = build_blob_torrent(blob, data.size(), 256 << 10, pieces_of(data, 256 << 10));
  ASSERT_TRUE(t);
  const auto other = *blob_id::parse(std::string(64, 'c'));
  auto r = validate_blob_torrent(*t, other);
  ASSERT_FALSE(r);
  EXPECT_NE(r.err().message.find("must be named after the blob id"), std::string::npos);
  const std::string junk = "d4:infod4:name3:abcee";
  EXPECT_FALSE(validate_blob_torrent(junk, blob));
}

TEST(BlobTorrent, PieceHasherSlicesAnyWay) {
  const auto data = random_bytes(1'000'003, 4);
  const auto want = pieces_of(data, 256 << 10);
  piece_hasher whole(data.size(), 256 << 10);
  whole.update(data);
  EXPECT_EQ(whole.pieces(), want);
  piece_hasher sliced(data.size(), 256 << 10);
  std::mt19937 rng(5);
  for (std::size_t off = 0; off < data.size();) {
    const auto n = std::min<std::size_t>(rng() % 100'000 + 1, data.size() - off);
    sliced.update(std::span<const char>(data.data() + off, n));
    off += n;
  }
  EXPECT_EQ(sliced.pieces(), want);
}

}  // namespace
}  // namespace voxd

TEST(BlobTorrent, pieceRunsJoinConsecutivePieces) {
  const auto runs = voxd::piece_runs(10, [](int p) { return p < 3 || p == 5 || p >= 8; });
  EXPECT_EQ(runs, (std::vector<std::pair<int, int>>{{0, 3}, {5, 6}, {8, 10}}));
  EXPECT_TRUE(voxd::piece_runs(4, [](int) { return false; }).empty());
}
