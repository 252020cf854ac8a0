// Unit tests of the DNS pieces that need no network: rendering of responses
// (hand-built wire packets), negative TTLs, the answer cache and the
// reverse-name helpers, plus Resolver behaviour that never leaves the process.

#include "core/dns/answer_cache.hpp"
#include "core/dns/resolver.hpp"
#include "core/dns/response_parser.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::dns {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<unsigned char>;

constexpr uint16_t kA = 1, kNs = 2, kCname = 5, kSoa = 6, kPtr = 12, kMx = 15, kTxt = 16, kAaaa = 28,
                   kSrv = 33, kTlsa = 52, kCaa = 257;

void put16(Bytes& out, unsigned v) {
  out.push_back(static_cast<unsigned char>(v >> 8));
  out.push_back(static_cast<unsigned char>(v));
}

void put32(Bytes& out, uint32_t v) {
  put16(out, v >> 16);
  put16(out, v & 0xffff);
}

// Uncompressed wire form; "" and "." are the root.
Bytes wire_name(std::string_view name) {
  Bytes out;
  while (!name.empty() && name != ".") {
    const size_t dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    out.push_back(static_cast<unsigned char>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
  }
  out.push_back(0);
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes u16(unsigned v) {
  Bytes out;
  put16(out, v);
  return out;
}

Bytes u32(uint32_t v) {
  Bytes out;
  put32(out, v);
  return out;
}

Bytes rd_a(const char* ip) {
  Bytes out(4);
  inet_pton(AF_INET, ip, out.data());
  return out;
}

Bytes rd_aaaa(const char* ip) {
  Bytes out(16);
  inet_pton(AF_INET6, ip, out.data());
  return out;
}

Bytes rd_txt(std::initializer_list<std::string_view> strings) {
  Bytes out;
  for (std::string_view s : strings) {
    out.push_back(static_cast<unsigned char>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

Bytes rd_soa(std::string_view mname, std::string_view rname, uint32_t serial, uint32_t refresh, uint32_t retry,
             uint32_t expire, uint32_t minimum) {
  return concat({wire_name(mname), wire_name(rname), u32(serial), u32(refresh), u32(retry), u32(expire),
                 u32(minimum)});
}

// A response as a server would send it: header, one question, answer and
// authority sections.
class Packet {
 public:
  Packet(std::string_view qname, uint16_t qtype, unsigned rcode = 0)
      : question_(concat({wire_name(qname), u16(qtype), u16(1)})), rcode_(rcode) {}

  Packet& answer(std::string_view owner, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    add(answers_, owner, type, ttl, rdata);
    ++ancount_;
    return *this;
  }
  Packet& authority(std::string_view owner, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    add(authority_, owner, type, ttl, rdata);
    ++nscount_;
    return *this;
  }
  Bytes bytes() const {
    Bytes out;
    put16(out, 0x1234);
    out.push_back(0x81);  // QR, RD
    out.push_back(static_cast<unsigned char>(0x80 | rcode_));  // RA, RCODE
    put16(out, 1);
    put16(out, ancount_);
    put16(out, nscount_);
    put16(out, 0);
    out.insert(out.end(), question_.begin(), question_.end());
    out.insert(out.end(), answers_.begin(), answers_.end());
    out.insert(out.end(), authority_.begin(), authority_.end());
    return out;
  }

 private:
  static void add(Bytes& section, std::string_view owner, uint16_t type, uint32_t ttl, const Bytes& rdata) {
    const Bytes name = wire_name(owner);
    section.insert(section.end(), name.begin(), name.end());
    put16(section, type);
    put16(section, 1);
    put32(section, ttl);
    put16(section, static_cast<unsigned>(rdata.size()));
    section.insert(section.end(), rdata.begin(), rdata.end());
  }

  Bytes question_, answers_, authority_;
  unsigned rcode_;
  unsigned ancount_ = 0, nscount_ = 0;
};

Answer parse(std::string_view name, uint16_t type, int status, const Packet& packet,
             std::chrono::seconds max_ttl = 86400s) {
  const Bytes wire = packet.bytes();
  return make_answer(name, type, status, wire.data(), static_cast<int>(wire.size()), max_ttl);
}

std::vector<std::string> data_of(const Answer& answer) {
  std::vector<std::string> out;
  for (const Record& r : answer.records) out.push_back(r.data);
  return out;
}

using Strings = std::vector<std::string>;

TEST(DnsResponseParserTest, RendersAddressesWithTheirTtl) {
  const Answer a = parse("host.example", kA, ARES_SUCCESS,
                         Packet("host.example", kA)
                             .answer("host.example", kA, 300, rd_a("192.0.2.1"))
                             .answer("host.example", kA, 300, rd_a("192.0.2.2")));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(a.name, "host.example");
  EXPECT_EQ(a.type, kA);
  EXPECT_EQ(a.min_ttl, 300u);
  EXPECT_EQ(data_of(a), (Strings{"192.0.2.1", "192.0.2.2"}));
  EXPECT_EQ(a.records[0].type, kA);
  EXPECT_EQ(a.records[0].ttl, 300u);

  const Answer aaaa = parse("host.example", kAaaa, ARES_SUCCESS,
                            Packet("host.example", kAaaa).answer("host.example", kAaaa, 60, rd_aaaa("2001:db8::1")));
  EXPECT_EQ(aaaa.status, Status::Ok);
  EXPECT_EQ(data_of(aaaa), (Strings{"2001:db8::1"}));
  EXPECT_EQ(aaaa.records[0].ttl, 60u);
}

TEST(DnsResponseParserTest, FollowsACnameChainAndTakesItsSmallestTtl) {
  const Answer a = parse("alias.example", kA, ARES_SUCCESS,
                         Packet("alias.example", kA)
                             .answer("alias.example", kCname, 60, wire_name("host.example"))
                             .answer("host.example", kA, 3600, rd_a("192.0.2.7")));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"192.0.2.7"}));
  EXPECT_EQ(a.min_ttl, 60u);
}

TEST(DnsResponseParserTest, SortsMxByPreference) {
  const Answer a = parse("example.org", kMx, ARES_SUCCESS,
                         Packet("example.org", kMx)
                             .answer("example.org", kMx, 600, concat({u16(20), wire_name("mx2.example.org")}))
                             .answer("example.org", kMx, 600, concat({u16(10), wire_name("mx1.example.org")}))
                             .answer("example.org", kMx, 600, concat({u16(20), wire_name("mx3.example.org")})));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"10 mx1.example.org", "20 mx2.example.org", "20 mx3.example.org"}));
  EXPECT_EQ(a.records[0].ttl, 600u);
  EXPECT_EQ(a.min_ttl, 600u);
}

TEST(DnsResponseParserTest, RendersNullMxTargetAsRoot) {
  // RFC 7505: "0 ." says the domain accepts no mail.
  const Answer a = parse("nomail.example", kMx, ARES_SUCCESS,
                         Packet("nomail.example", kMx).answer("nomail.example", kMx, 600, concat({u16(0), wire_name(".")})));
  EXPECT_EQ(data_of(a), (Strings{"0 ."}));
}

TEST(DnsResponseParserTest, ConcatenatesTheStringsOfOneTxtRecord) {
  const Answer a = parse("example.org", kTxt, ARES_SUCCESS,
                         Packet("example.org", kTxt)
                             .answer("example.org", kTxt, 120, rd_txt({"v=spf1 ", "-all"}))
                             .answer("example.org", kTxt, 120, rd_txt({"second"})));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"v=spf1 -all", "second"}));
  EXPECT_EQ(a.records[1].ttl, 120u);
}

TEST(DnsResponseParserTest, RendersPtrNsAndCnameAsNames) {
  const Answer ptr = parse("7.2.0.192.in-addr.arpa", kPtr, ARES_SUCCESS,
                           Packet("7.2.0.192.in-addr.arpa", kPtr)
                               .answer("7.2.0.192.in-addr.arpa", kPtr, 900, wire_name("a.example"))
                               .answer("7.2.0.192.in-addr.arpa", kPtr, 900, wire_name("b.example")));
  EXPECT_EQ(ptr.status, Status::Ok);
  EXPECT_EQ(data_of(ptr), (Strings{"a.example", "b.example"}));
  EXPECT_EQ(ptr.records[0].ttl, 900u);

  const Answer ns = parse("example.org", kNs, ARES_SUCCESS,
                          Packet("example.org", kNs)
                              .answer("example.org", kNs, 3600, wire_name("ns1.example.org"))
                              .answer("example.org", kNs, 3600, wire_name("ns2.example.org")));
  EXPECT_EQ(data_of(ns), (Strings{"ns1.example.org", "ns2.example.org"}));

  const Answer cname = parse("www.example.org", kCname, ARES_SUCCESS,
                             Packet("www.example.org", kCname)
                                 .answer("www.example.org", kCname, 30, wire_name("web.example.net")));
  EXPECT_EQ(cname.status, Status::Ok);
  EXPECT_EQ(data_of(cname), (Strings{"web.example.net"}));
  EXPECT_EQ(cname.min_ttl, 30u);
}

TEST(DnsResponseParserTest, RendersSrvSortedByPriority) {
  const Answer a = parse(
      "_submission._tcp.example.org", kSrv, ARES_SUCCESS,
      Packet("_submission._tcp.example.org", kSrv)
          .answer("_submission._tcp.example.org", kSrv, 300,
                  concat({u16(20), u16(0), u16(587), wire_name("backup.example.org")}))
          .answer("_submission._tcp.example.org", kSrv, 300,
                  concat({u16(10), u16(5), u16(587), wire_name("mail.example.org")})));
  EXPECT_EQ(data_of(a), (Strings{"10 5 587 mail.example.org", "20 0 587 backup.example.org"}));
}

TEST(DnsResponseParserTest, RendersSoaInMasterFileOrder) {
  const Answer a = parse("example.org", kSoa, ARES_SUCCESS,
                         Packet("example.org", kSoa)
                             .answer("example.org", kSoa, 3600,
                                     rd_soa("ns1.example.org", "hostmaster.example.org", 2024010101, 7200, 900,
                                            1209600, 300)));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"ns1.example.org hostmaster.example.org 2024010101 7200 900 1209600 300"}));
}

TEST(DnsResponseParserTest, RendersTlsaWithLowerCaseHex) {
  const Answer a = parse("_25._tcp.mx.example.org", kTlsa, ARES_SUCCESS,
                         Packet("_25._tcp.mx.example.org", kTlsa)
                             .answer("_25._tcp.mx.example.org", kTlsa, 300,
                                     Bytes{3, 1, 1, 0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x0a}));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"3 1 1 deadbeef000a"}));
}

TEST(DnsResponseParserTest, RendersUnknownTypesInGenericForm) {
  const Answer a = parse("example.org", kCaa, ARES_SUCCESS,
                         Packet("example.org", kCaa).answer("example.org", kCaa, 300, Bytes{0, 5, 'i', 's'}));
  EXPECT_EQ(data_of(a), (Strings{"\\# 4 00056973"}));
}

TEST(DnsResponseParserTest, NxDomainTakesTheNegativeTtlFromTheSoa) {
  // RFC 2308 §5: min(SOA TTL, SOA MINIMUM).
  const Packet minimum_wins = Packet("nope.example.org", kA, 3).authority(
      "example.org", kSoa, 3600, rd_soa("ns1.example.org", "hostmaster.example.org", 1, 2, 3, 4, 900));
  const Answer a = parse("nope.example.org", kA, ARES_ENOTFOUND, minimum_wins);
  EXPECT_EQ(a.status, Status::NxDomain);
  EXPECT_TRUE(a.records.empty());
  EXPECT_EQ(a.min_ttl, 900u);

  const Packet ttl_wins = Packet("nope.example.org", kA, 3).authority(
      "example.org", kSoa, 60, rd_soa("ns1.example.org", "hostmaster.example.org", 1, 2, 3, 4, 900));
  EXPECT_EQ(parse("nope.example.org", kA, ARES_ENOTFOUND, ttl_wins).min_ttl, 60u);
}

TEST(DnsResponseParserTest, NoDataWithoutSoaFallsBackToFiveMinutes) {
  const Answer a = parse("host.example", kMx, ARES_ENODATA, Packet("host.example", kMx));
  EXPECT_EQ(a.status, Status::NoData);
  EXPECT_EQ(a.min_ttl, kDefaultNegativeTtl);
  EXPECT_EQ(a.min_ttl, 300u);
  // No response at all (should not happen for NODATA, but be safe).
  EXPECT_EQ(make_answer("x", kA, ARES_ENOTFOUND, nullptr, 0, 86400s).min_ttl, 300u);
}

TEST(DnsResponseParserTest, AnswerWithOnlyACnameIsNoData) {
  const Answer a = parse("alias.example", kA, ARES_SUCCESS,
                         Packet("alias.example", kA)
                             .answer("alias.example", kCname, 120, wire_name("host.example"))
                             .authority("example", kSoa, 3600, rd_soa("ns.example", "hm.example", 1, 2, 3, 4, 600)));
  EXPECT_EQ(a.status, Status::NoData);
  EXPECT_TRUE(a.records.empty());
  EXPECT_EQ(a.min_ttl, 120u);  // the CNAME expires first
}

TEST(DnsResponseParserTest, CapsTtlsAtMaxTtl) {
  const Answer a = parse("host.example", kA, ARES_SUCCESS,
                         Packet("host.example", kA).answer("host.example", kA, 604800, rd_a("192.0.2.1")), 3600s);
  EXPECT_EQ(a.min_ttl, 3600u);
  EXPECT_EQ(a.records[0].ttl, 3600u);
  const Answer neg = parse("nope.example", kA, ARES_ENOTFOUND,
                           Packet("nope.example", kA, 3).authority(
                               "example", kSoa, 86400, rd_soa("ns.example", "hm.example", 1, 2, 3, 4, 86400)),
                           600s);
  EXPECT_EQ(neg.min_ttl, 600u);
}

TEST(DnsResponseParserTest, TreatsATtlWithTheHighBitSetAsZero) {
  // RFC 2181 §8.
  const Answer a = parse("host.example", kTxt, ARES_SUCCESS,
                         Packet("host.example", kTxt).answer("host.example", kTxt, 0x80000001u, rd_txt({"x"})));
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(a.min_ttl, 0u);
}

TEST(DnsResponseParserTest, MapsAresErrorsToStatuses) {
  EXPECT_EQ(make_answer("x", kA, ARES_ETIMEOUT, nullptr, 0, 86400s).status, Status::Timeout);
  EXPECT_EQ(make_answer("x", kA, ARES_ESERVFAIL, nullptr, 0, 86400s).status, Status::ServFail);
  EXPECT_EQ(make_answer("x", kA, ARES_EREFUSED, nullptr, 0, 86400s).status, Status::ServFail);
  EXPECT_EQ(make_answer("x", kA, ARES_ECONNREFUSED, nullptr, 0, 86400s).status, Status::ServFail);
  EXPECT_EQ(make_answer("x", kA, ARES_EBADNAME, nullptr, 0, 86400s).status, Status::ServFail);
  EXPECT_EQ(make_answer("x", kA, ARES_ECANCELLED, nullptr, 0, 86400s).status, Status::Cancelled);
  EXPECT_EQ(make_answer("x", kA, ARES_EDESTRUCTION, nullptr, 0, 86400s).status, Status::Cancelled);
  EXPECT_EQ(make_answer("x", kA, ARES_ETIMEOUT, nullptr, 0, 86400s).min_ttl, 0u);
}

TEST(DnsResponseParserTest, MalformedResponseIsServFail) {
  Bytes wire = Packet("host.example", kA).answer("host.example", kA, 300, rd_a("192.0.2.1")).bytes();
  // Cut into the RDATA (erase, not resize: GCC 12 with ASan misreads resize's bound).
  wire.erase(wire.end() - 3, wire.end());
  const Answer a = make_answer("host.example", kA, ARES_SUCCESS, wire.data(), static_cast<int>(wire.size()), 86400s);
  EXPECT_EQ(a.status, Status::ServFail);
  EXPECT_TRUE(a.records.empty());
  const Bytes tiny{0x12, 0x34, 0x81};
  EXPECT_EQ(make_answer("host.example", kA, ARES_SUCCESS, tiny.data(), 3, 86400s).status, Status::ServFail);
}

Answer make(std::string name, uint16_t type, Status status, uint32_t ttl, std::vector<Record> records = {}) {
  Answer a;
  a.status = status;
  a.name = std::move(name);
  a.type = type;
  a.min_ttl = ttl;
  a.records = std::move(records);
  return a;
}

TEST(DnsAnswerCacheTest, ReturnsTheAnswerWithTtlsReducedByItsAge) {
  AnswerCache cache(10);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("host.example", kA, Status::Ok, 300, {{kA, 300, "192.0.2.1"}, {kA, 400, "192.0.2.2"}}), t0);
  auto hit = cache.get("host.example", kA, t0 + 100s + 500ms);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->status, Status::Ok);
  EXPECT_EQ(hit->min_ttl, 200u);
  EXPECT_EQ(hit->records[0].ttl, 200u);
  EXPECT_EQ(hit->records[1].ttl, 300u);
  EXPECT_EQ(hit->records[0].data, "192.0.2.1");
}

TEST(DnsAnswerCacheTest, ExpiresAfterMinTtl) {
  AnswerCache cache(10);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("host.example", kA, Status::Ok, 60, {{kA, 60, "192.0.2.1"}}), t0);
  EXPECT_TRUE(cache.get("host.example", kA, t0 + 59s + 999ms));
  EXPECT_FALSE(cache.get("host.example", kA, t0 + 60s));
  EXPECT_EQ(cache.size(), 0u);  // dropped on the expired lookup
}

TEST(DnsAnswerCacheTest, KeysIgnoreCaseAndTrailingDotButAnswerWithTheAskedName) {
  AnswerCache cache(10);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("Host.Example", kA, Status::Ok, 60, {{kA, 60, "192.0.2.1"}}), t0);
  auto hit = cache.get("host.EXAMPLE.", kA, t0);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->name, "host.EXAMPLE.");
  EXPECT_FALSE(cache.get("host.example", kAaaa, t0));  // the type is part of the key
  EXPECT_EQ(AnswerCache::key("A.b.", 1), AnswerCache::key("a.B", 1));
  EXPECT_NE(AnswerCache::key("a.b", 1), AnswerCache::key("a.b", 28));
}

TEST(DnsAnswerCacheTest, CachesNegativeAnswers) {
  AnswerCache cache(10);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("nope.example", kA, Status::NxDomain, 300), t0);
  cache.put(make("host.example", kMx, Status::NoData, 120), t0);
  auto nx = cache.get("nope.example", kA, t0 + 10s);
  ASSERT_TRUE(nx);
  EXPECT_EQ(nx->status, Status::NxDomain);
  EXPECT_EQ(nx->min_ttl, 290u);
  auto nodata = cache.get("host.example", kMx, t0 + 10s);
  ASSERT_TRUE(nodata);
  EXPECT_EQ(nodata->status, Status::NoData);
  EXPECT_FALSE(cache.get("host.example", kMx, t0 + 120s));
}

TEST(DnsAnswerCacheTest, IgnoresFailuresAndZeroTtl) {
  AnswerCache cache(10);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("a.example", kA, Status::Timeout, 300), t0);
  cache.put(make("b.example", kA, Status::ServFail, 300), t0);
  cache.put(make("c.example", kA, Status::Cancelled, 300), t0);
  cache.put(make("d.example", kA, Status::Ok, 0, {{kA, 0, "192.0.2.1"}}), t0);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(DnsAnswerCacheTest, EvictsTheLeastRecentlyUsedEntry) {
  AnswerCache cache(2);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("a.example", kA, Status::Ok, 300, {{kA, 300, "192.0.2.1"}}), t0);
  cache.put(make("b.example", kA, Status::Ok, 300, {{kA, 300, "192.0.2.2"}}), t0);
  EXPECT_TRUE(cache.get("a.example", kA, t0));  // a is now the most recent
  cache.put(make("c.example", kA, Status::Ok, 300, {{kA, 300, "192.0.2.3"}}), t0);
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_TRUE(cache.get("a.example", kA, t0));
  EXPECT_FALSE(cache.get("b.example", kA, t0));
  EXPECT_TRUE(cache.get("c.example", kA, t0));
}

TEST(DnsAnswerCacheTest, ReplacingAnEntryRestartsItsClock) {
  AnswerCache cache(2);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("a.example", kA, Status::Ok, 60, {{kA, 60, "192.0.2.1"}}), t0);
  cache.put(make("a.example", kA, Status::Ok, 60, {{kA, 60, "192.0.2.9"}}), t0 + 50s);
  EXPECT_EQ(cache.size(), 1u);
  auto hit = cache.get("a.example", kA, t0 + 100s);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->records[0].data, "192.0.2.9");
  EXPECT_EQ(hit->min_ttl, 10u);
}

TEST(DnsAnswerCacheTest, CapacityZeroDisablesTheCache) {
  AnswerCache cache(0);
  const auto t0 = AnswerCache::Clock::now();
  cache.put(make("a.example", kA, Status::Ok, 300, {{kA, 300, "192.0.2.1"}}), t0);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.get("a.example", kA, t0));
}

TEST(DnsReverseNameTest, ReversesIpv4) {
  EXPECT_EQ(reverse_ipv4("1.2.3.4"), "4.3.2.1");
  EXPECT_EQ(reverse_ipv4("192.0.2.255"), "255.2.0.192");
  EXPECT_EQ(reverse_ipv4("0.0.0.0"), "0.0.0.0");
}

TEST(DnsReverseNameTest, RejectsInvalidIpv4) {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1.2.3.4 ", "::1", "01.2.3.4"})
    EXPECT_EQ(reverse_ipv4(bad), "") << bad;
}

TEST(DnsReverseNameTest, ReversesIpv6IntoNibbles) {
  EXPECT_EQ(reverse_ipv6("2001:db8::567:89ab"),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2");
  EXPECT_EQ(reverse_ipv6("::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0");
  EXPECT_EQ(reverse_ipv6("2001:DB8::1").substr(48), "8.b.d.0.1.0.0.2");
  EXPECT_EQ(reverse_ipv6("::ffff:192.0.2.1").substr(0, 15), "1.0.2.0.0.0.0.c");
}

TEST(DnsReverseNameTest, RejectsInvalidIpv6) {
  for (const char* bad : {"", "1.2.3.4", "2001:db8::g", "1::2::3", "[::1]", "fe80::1%eth0"})
    EXPECT_EQ(reverse_ipv6(bad), "") << bad;
}

TEST(ResolverTest, RejectsMalformedServers) {
  boost::asio::io_context io;
  for (const char* bad : {"not-an-ip", "127.0.0.1:0", "127.0.0.1:70000", "[::1", "[::1]x", "1.2.3.4:53x"}) {
    ResolverOptions options;
    options.servers = {bad};
    EXPECT_THROW((Resolver{io, options}), std::invalid_argument) << bad;
  }
  ResolverOptions good;
  good.servers = {"127.0.0.1:5353", "[::1]:53", "10.0.0.1", "::1"};
  EXPECT_NO_THROW((Resolver{io, good}));
}

// Runs `io` until `done` or a deadline; the resolver keeps sockets watched, so
// io.run() alone would not return.
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done() && std::chrono::steady_clock::now() < deadline) io.run_one_for(20ms);
  return done();
}

TEST(ResolverTest, InvalidNameFailsWithoutTouchingTheNetwork) {
  boost::asio::io_context io;
  ResolverOptions options;
  options.servers = {"127.0.0.1:9"};  // never contacted
  Resolver resolver(io, options);
  std::optional<Answer> got;
  // A label longer than 63 octets: c-ares fails the query inline (ARES_EBADNAME).
  resolver.query(std::string(64, 'a') + ".example", kA, 0ms, [&](const Answer& a) { got = a; });
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->status, Status::ServFail);
  EXPECT_EQ(resolver.stats().failures, 1u);
}

TEST(ResolverTest, AnswersCancelledAfterShutdown) {
  boost::asio::io_context io;
  ResolverOptions options;
  options.servers = {"127.0.0.1:9"};
  Resolver resolver(io, options);
  resolver.shutdown();
  std::optional<Answer> got;
  resolver.query("host.example", kA, 0ms, [&](const Answer& a) { got = a; });
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }));
  EXPECT_EQ(got->status, Status::Cancelled);
  EXPECT_EQ(got->name, "host.example");
  EXPECT_EQ(got->type, kA);
}

TEST(ResolverTest, NeverCallsBackInsideQuery) {
  boost::asio::io_context io;
  ResolverOptions options;
  options.servers = {"127.0.0.1:9"};
  Resolver resolver(io, options);
  resolver.shutdown();
  bool called = false;
  resolver.query("host.example", kA, 0ms, [&](const Answer&) { called = true; });
  EXPECT_FALSE(called);
  run_until(io, [&] { return called; });
  EXPECT_TRUE(called);
}

}  // namespace
}  // namespace postern::core::dns
