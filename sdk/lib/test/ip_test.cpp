// Tests for postern/mail/ip.hpp.
#include "postern/mail/ip.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace postern::mail {
namespace {

TEST(MailIpTest, ParsesAndPrintsAddresses) {
  struct Case {
    std::string in;
    std::optional<std::string> out;  // to_string(), nullopt = refused
    bool v4;
  };
  const Case cases[] = {
      {"192.0.2.7", "192.0.2.7", true},
      {"2001:DB8::7", "2001:db8::7", false},
      {"::ffff:192.0.2.7", "192.0.2.7", true},  // IPv4-mapped is IPv4
      {"::1", "::1", false},
      {"192.0.2", std::nullopt, false},
      {"192.0.2.256", std::nullopt, false},
      {"[::1]", std::nullopt, false},
      {" 192.0.2.7", std::nullopt, false},
      {"", std::nullopt, false},
      {std::string(50, '1'), std::nullopt, false},
  };
  for (const Case& c : cases) {
    const auto a = IpAddress::parse(c.in);
    ASSERT_EQ(a.has_value(), c.out.has_value()) << c.in;
    if (!a) continue;
    EXPECT_EQ(a->to_string(), *c.out) << c.in;
    EXPECT_EQ(a->is_v4(), c.v4) << c.in;
  }
}

TEST(MailIpTest, ParsesAddressesBlocksAndRanges) {
  struct Case {
    std::string in;
    std::optional<std::pair<std::string, std::string>> range;
    int prefix;
  };
  const Case cases[] = {
      {"192.0.2.7", std::pair{"192.0.2.7", "192.0.2.7"}, 32},
      {"192.0.2.77/24", std::pair{"192.0.2.0", "192.0.2.255"}, 24},
      {"10.0.0.0/8", std::pair{"10.0.0.0", "10.255.255.255"}, 8},
      {"0.0.0.0/0", std::pair{"0.0.0.0", "255.255.255.255"}, 0},
      {"2001:db8::/32", std::pair{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"}, 32},
      {"192.0.2.10-192.0.2.20", std::pair{"192.0.2.10", "192.0.2.20"}, -1},
      {"192.0.2.0-192.0.2.255", std::pair{"192.0.2.0", "192.0.2.255"}, 24},
      {"192.0.2.20-192.0.2.10", std::nullopt, 0},   // ends before it starts
      {"192.0.2.1-2001:db8::1", std::nullopt, 0},   // two families
      {"192.0.2.0/33", std::nullopt, 0},
      {"2001:db8::/129", std::nullopt, 0},
      {"192.0.2.0/", std::nullopt, 0},
      {"192.0.2.0/x", std::nullopt, 0},
      {"192.0.2.0/0024", std::nullopt, 0},
      {"host.example", std::nullopt, 0},
  };
  for (const Case& c : cases) {
    const auto r = IpRange::parse(c.in);
    ASSERT_EQ(r.has_value(), c.range.has_value()) << c.in;
    if (!r) continue;
    EXPECT_EQ(r->first.to_string(), c.range->first) << c.in;
    EXPECT_EQ(r->last.to_string(), c.range->second) << c.in;
    EXPECT_EQ(r->prefix_length(), c.prefix) << c.in;
  }
}

TEST(MailIpTest, ContainsAddressesOfItsOwnFamilyOnly) {
  const IpRange v4 = *IpRange::parse("0.0.0.0/0");
  EXPECT_TRUE(v4.contains(*IpAddress::parse("203.0.113.9")));
  EXPECT_FALSE(v4.contains(*IpAddress::parse("2001:db8::1")));
  const IpRange net = IpRange::block(*IpAddress::parse("2001:db8:1:2::99"), 64);
  EXPECT_TRUE(net.contains(*IpAddress::parse("2001:db8:1:2::1")));
  EXPECT_FALSE(net.contains(*IpAddress::parse("2001:db8:1:3::1")));
}

}  // namespace
}  // namespace postern::mail
