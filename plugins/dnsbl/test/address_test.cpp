// Addresses, ranges, DNSBL query names and domain names (table-driven).
#include "address.hpp"

#include <gtest/gtest.h>

namespace postern::plugins::dnsbl {
namespace {

TEST(DnsblAddressTest, ParsesIpv4Ipv6AndLiterals) {
  struct Case {
    const char* in;
    const char* canonical;  // nullptr: refused
    bool v6;
  };
  const Case cases[] = {
      {"192.0.2.7", "192.0.2.7", false},
      {" 192.0.2.7 ", "192.0.2.7", false},
      {"2001:DB8::7", "2001:db8::7", true},
      {"[2001:db8::7]", "2001:db8::7", true},
      {"IPv6:2001:db8::7", "2001:db8::7", true},
      {"[IPv6:::1]", "::1", true},
      {"::ffff:192.0.2.9", "192.0.2.9", false},  // mapped: listed as IPv4
      {"fe80::1%eth0", "fe80::1", true},
      {"192.0.2", nullptr, false},
      {"192.0.2.256", nullptr, false},
      {"example.org", nullptr, false},
      {"", nullptr, false},
  };
  for (const Case& c : cases) {
    auto ip = IpAddress::parse(c.in);
    if (c.canonical == nullptr) {
      EXPECT_FALSE(ip.has_value()) << c.in;
      continue;
    }
    ASSERT_TRUE(ip.has_value()) << c.in;
    EXPECT_EQ(ip->to_string(), c.canonical) << c.in;
    EXPECT_EQ(ip->v6, c.v6) << c.in;
  }
}

TEST(DnsblAddressTest, ReversedLabelsFollowRfc5782) {
  // RFC 5782 §2.1 and §2.4 examples.
  EXPECT_EQ(reversed_labels(*IpAddress::parse("192.168.42.23")), "23.42.168.192");
  EXPECT_EQ(reversed_labels(*IpAddress::parse("2001:db8:1:2:3:4:567:89ab")),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2");
  EXPECT_EQ(reversed_labels(*IpAddress::parse("::1")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0");
  EXPECT_EQ(reversed_labels(*IpAddress::parse("127.0.0.1")), "1.0.0.127");
}

TEST(DnsblAddressTest, ParsesRanges) {
  std::string err;
  auto cidr = parse_range("192.0.2.77/24", err);
  ASSERT_TRUE(cidr) << err;
  EXPECT_EQ(cidr->first.to_string(), "192.0.2.0");
  EXPECT_EQ(cidr->last.to_string(), "192.0.2.255");
  auto v6 = parse_range("2001:db8::/32", err);
  ASSERT_TRUE(v6) << err;
  EXPECT_EQ(v6->last.to_string(), "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
  auto odd = parse_range("10.0.0.0/9", err);
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->last.to_string(), "10.127.255.255");
  auto dash = parse_range("192.0.2.10-192.0.2.20", err);
  ASSERT_TRUE(dash);
  EXPECT_TRUE(dash->contains(*IpAddress::parse("192.0.2.15")));
  EXPECT_FALSE(dash->contains(*IpAddress::parse("192.0.2.21")));
  EXPECT_FALSE(dash->contains(*IpAddress::parse("::1")));

  for (const char* bad : {"192.0.2.0/33", "192.0.2.0/", "192.0.2.20-192.0.2.10", "192.0.2.1-::1", "x/8", "nonsense"}) {
    err.clear();
    EXPECT_FALSE(parse_range(bad, err)) << bad;
    EXPECT_NE(err.find(bad), std::string::npos) << err;
  }
}

TEST(DnsblAddressTest, AddressSetMergesAndFinds) {
  AddressSet set;
  std::string err;
  for (const char* r : {"192.0.2.0/25", "192.0.2.128-192.0.2.130", "10.0.0.1", "2001:db8::/64", "192.0.2.100"}) {
    set.add(*parse_range(r, err));
  }
  set.seal();
  EXPECT_EQ(set.size(), 3u);  // the two adjacent IPv4 blocks and the single inside them merge
  EXPECT_TRUE(set.contains(*IpAddress::parse("192.0.2.0")));
  EXPECT_TRUE(set.contains(*IpAddress::parse("192.0.2.130")));
  EXPECT_FALSE(set.contains(*IpAddress::parse("192.0.2.131")));
  EXPECT_TRUE(set.contains(*IpAddress::parse("10.0.0.1")));
  EXPECT_FALSE(set.contains(*IpAddress::parse("10.0.0.2")));
  EXPECT_TRUE(set.contains(*IpAddress::parse("2001:db8::ffff")));
  EXPECT_FALSE(set.contains(*IpAddress::parse("2001:db8:0:1::")));
  EXPECT_FALSE(set.contains(*IpAddress::parse("9.255.255.255")));
  AddressSet empty;
  empty.seal();
  EXPECT_FALSE(empty.contains(*IpAddress::parse("10.0.0.1")));
}

TEST(DnsblAddressTest, NormalizesDomains) {
  EXPECT_EQ(normalize_domain("Mail.Example.ORG."), "mail.example.org");
  EXPECT_EQ(normalize_domain("_dmarc.example.org"), "_dmarc.example.org");
  EXPECT_FALSE(normalize_domain("localhost"));  // one label
  EXPECT_FALSE(normalize_domain("a..b"));
  EXPECT_FALSE(normalize_domain("exa mple.org"));
  EXPECT_FALSE(normalize_domain("b\xc3\xbc" "cher.example"));
  EXPECT_FALSE(normalize_domain(std::string(64, 'a') + ".org"));
  EXPECT_TRUE(in_domain("mail.example.org", "example.org"));
  EXPECT_TRUE(in_domain("example.org", "example.org"));
  EXPECT_FALSE(in_domain("badexample.org", "example.org"));
  EXPECT_FALSE(in_domain("org", "example.org"));
}

TEST(DnsblAddressTest, SanitizesReplyText) {
  EXPECT_EQ(sanitize_reply_text("listed\r\n250 OK\tnow"), "listed  250 OK now");
  EXPECT_EQ(sanitize_reply_text("caf\xc3\xa9 "), "caf");
  EXPECT_EQ(sanitize_reply_text(std::string(500, 'x'), 10).size(), 10u);
}

}  // namespace
}  // namespace postern::plugins::dnsbl
