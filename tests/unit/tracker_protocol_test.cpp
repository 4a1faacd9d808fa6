#include <gtest/gtest.h>

#include <cstring>

#include "voxd/tracker/protocol.hpp"

using namespace voxd;
using namespace voxd::tracker;

namespace {

const std::string hash20 = "%01%02%03%04%05%06%07%08%09%10%11%12%13%14%15%16%17%18%19%20";
const std::string peer20 = "-LT2080-abcdefghijkl";

std::string announce_query(const std::string& extra = "") {
  return "info_hash=" + hash20 + "&peer_id=" + peer20 +
         "&port=6881&uploaded=0&downloaded=0&left=947912704" + extra;
}

}  // namespace

TEST(TrackerProtocolTest, parsesWhatLibtorrentSends) {
  auto r =
      parse_announce_query(announce_query("&event=started&key=1A2B3C4D&numwant=200&compact=1&no_"
                                          "peer_id=1&supportcrypto=1&redundant=0&corrupt=0"));
  ASSERT_TRUE(r) << r.err().message;
  EXPECT_EQ(r->hash.bytes[0], 0x01);
  EXPECT_EQ(r->hash.bytes[19], 0x20);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(r->peer_id.data()), 20), peer20);
  EXPECT_EQ(r->port, 6881);
  EXPECT_EQ(r->left, 947912704u);
  EXPECT_EQ(r->event, announce_event::started);
  EXPECT_EQ(r->numwant, 200);
  EXPECT_TRUE(r->compact);
  EXPECT_TRUE(r->no_peer_id);
  EXPECT_EQ(parse_announce_query(announce_query("&event=paused"))->event, announce_event::paused);
  auto huge = parse_announce_query("info_hash=" + hash20 + "&peer_id=" + peer20 +
                                   "&port=1&left=18446744073709551615");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->left, UINT64_MAX);
}

TEST(TrackerProtocolTest, adversarialAnnouncesAreRefusedWithTheReason) {
  struct bad_case {
    std::string query, reason;
  };
  const std::vector<bad_case> cases = {
      {"", "missing parameter 'info_hash'"},
      {"info_hash=abc&peer_id=" + peer20 + "&port=1", "'info_hash' must be 20 bytes, got 3"},
      {"info_hash=" + hash20 + "%2&peer_id=" + peer20 + "&port=1", "malformed %-escape"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20, "missing parameter 'port'"},
      {announce_query("&port=7"), "'port' appears twice"},
      {announce_query("&info_hash=" + hash20), "'info_hash' appears twice"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=65536", "port number"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=0", "port number"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=-1", "port number"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=1&uploaded=99999999999999999999999",
       "'uploaded' must be a non-negative integer"},
      {"info_hash=" + hash20 + "&peer_id=" + peer20 + "&port=1&left=18446744073709551616",
       "'left' must be a non-negative integer"},
      {announce_query("&event=exploded"), "'event' must be started"},
      {"info_hash=" + hash20 + "&peer_id=short&port=1", "'peer_id' must be 20 bytes"},
  };
  for (const auto& c : cases) {
    auto r = parse_announce_query(c.query);
    ASSERT_FALSE(r) << c.query;
    EXPECT_NE(r.err().message.find(c.reason), std::string::npos)
        << c.query << " -> " << r.err().message;
  }
}

TEST(TrackerProtocolTest, scrapeTakesSeveralHashesUpToALimit) {
  auto r = parse_scrape_query("info_hash=" + hash20 + "&info_hash=" + hash20, 100);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->size(), 2u);
  EXPECT_TRUE(parse_scrape_query("", 100)->empty());
  EXPECT_FALSE(parse_scrape_query("info_hash=" + hash20 + "&info_hash=" + hash20, 1));
  EXPECT_FALSE(parse_scrape_query("info_hash=short", 100));
}

TEST(TrackerProtocolTest, encodesBencodedReplies) {
  announce_reply r;
  r.interval = 60;
  r.min_interval = 10;
  r.counts = {3, 4, 5};
  r.peers4 = std::string("\x7f\x00\x00\x01\x1a\xe1", 6);
  const auto body = encode_announce(r, true);
  EXPECT_EQ(body, std::string("d8:completei3e10:downloadedi5e10:incompletei4e8:intervali60e12:min "
                              "intervali10e5:peers6:") +
                      std::string("\x7f\x00\x00\x01\x1a\xe1", 6) + "e");
  EXPECT_EQ(encode_failure("no"), "d14:failure reason2:noe");
  info_hash h;
  h.bytes.fill('A');
  EXPECT_EQ(
      encode_scrape({{h, {1, 2, 3}}}, 10),
      "d5:filesd20:" + std::string(20, 'A') +
          "d8:completei1e10:downloadedi3e10:incompletei2eee5:flagsd20:min_request_intervali10eee");
  const auto list = encode_announce(r, false);
  EXPECT_NE(list.find("2:ip9:127.0.0.14:porti6881e"), std::string::npos) << list;
}

TEST(TrackerProtocolTest, udpConnectAnnounceAndScrapeRoundTrip) {
  std::vector<std::uint8_t> connect = {0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80,
                                       0, 0, 0,    0,    0xde, 0xad, 0xbe, 0xef};
  auto c = udp::parse(connect);
  ASSERT_TRUE(std::holds_alternative<udp::connect_request>(c));
  EXPECT_EQ(std::get<udp::connect_request>(c).transaction, 0xdeadbeefu);

  std::vector<std::uint8_t> a(98 + 12, 0);                 // with BEP 41 option bytes after the 98
  a[7] = 42;                                               // connection id
  a[11] = 1;                                               // announce
  a[15] = 7;                                               // transaction
  a[16] = 0xaa;                                            // info-hash first byte
  a[83] = 2;                                               // event started
  a[92] = 0xff, a[93] = 0xff, a[94] = 0xff, a[95] = 0xff;  // numwant -1
  a[96] = 0x1a, a[97] = 0xe1;                              // port 6881
  a[98] = 2, a[99] = 9;                                    // option: URL data, 9 bytes
  auto p = udp::parse(a);
  ASSERT_TRUE(std::holds_alternative<udp::announce_packet>(p));
  const auto& ap = std::get<udp::announce_packet>(p);
  EXPECT_EQ(ap.connection, 42u);
  EXPECT_EQ(ap.transaction, 7u);
  EXPECT_EQ(ap.req.hash.bytes[0], 0xaa);
  EXPECT_EQ(ap.req.event, announce_event::started);
  EXPECT_EQ(ap.req.numwant, -1);
  EXPECT_EQ(ap.req.port, 6881);

  const auto reply = udp::encode_announce(7, 60, {1, 2, 0}, std::string(6, 'x'));
  EXPECT_EQ(reply.size(), 26u);
  EXPECT_EQ(reply[3], 1);
  EXPECT_EQ(reply[15], 2);  // leechers
  EXPECT_EQ(reply[19], 1);  // seeders
  EXPECT_EQ(udp::encode_scrape(9, {{1, 2, 3}}).size(), 20u);
}

TEST(TrackerProtocolTest, truncatedAndHostileUdpPacketsAreBadPackets) {
  EXPECT_TRUE(
      std::holds_alternative<udp::bad_packet>(udp::parse(std::vector<std::uint8_t>(15, 0))));
  std::vector<std::uint8_t> wrong_magic(16, 0);
  EXPECT_TRUE(std::holds_alternative<udp::bad_packet>(udp::parse(wrong_magic)));
  std::vector<std::uint8_t> short_announce(97, 0);
  short_announce[11] = 1;
  auto b = std::get<udp::bad_packet>(udp::parse(short_announce));
  EXPECT_TRUE(b.transaction.has_value());  // answerable with an error packet
  std::vector<std::uint8_t> ragged_scrape(16 + 25, 0);
  ragged_scrape[11] = 2;
  EXPECT_TRUE(std::holds_alternative<udp::bad_packet>(udp::parse(ragged_scrape)));
  std::vector<std::uint8_t> huge_scrape(16 + 20 * 75, 0);
  huge_scrape[11] = 2;
  EXPECT_TRUE(std::holds_alternative<udp::bad_packet>(udp::parse(huge_scrape)));
  std::vector<std::uint8_t> unknown(16, 0);
  unknown[11] = 9;
  EXPECT_TRUE(std::holds_alternative<udp::bad_packet>(udp::parse(unknown)));
  std::vector<std::uint8_t> bad_event(98, 0);
  bad_event[11] = 1;
  bad_event[83] = 4;
  bad_event[97] = 1;
  EXPECT_TRUE(std::holds_alternative<udp::bad_packet>(udp::parse(bad_event)));
}
