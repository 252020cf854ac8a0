// greylist against the SDK's FakeHost: manual clock, real SQLite in the
// FakeHost's temporary state directory, the same C ABI path as posternd.
#include "greylist.hpp"

#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <chrono>

namespace postern::plugins::greylist {
namespace {

using namespace std::chrono_literals;
using sdk::Verdict;
using sdk::testing::FakeHost;
using sdk::testing::FakeResult;

constexpr const char* kDefault = R"(<plugin name="greylist"/>)";

class GreylistTest : public ::testing::Test {
 protected:
  sdk::testing::Loaded load(const std::string& xml = kDefault) {
    auto p = host_.load<GreylistPlugin>(xml);
    EXPECT_TRUE(p.ok()) << p.error();
    return p;
  }
  FakeResult rcpt(sdk::testing::Loaded& p, const char* ip, const char* from, const char* to) {
    FakeResult r = host_.run(*p, host_.make_rcpt(ip, from, to));
    EXPECT_TRUE(r.completed());
    return r;
  }
  FakeHost host_;
};

TEST_F(GreylistTest, FirstSightTempFailsThenPassesAfterDelay) {
  auto p = load();
  FakeResult first = rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net");
  EXPECT_EQ(first.verdict(), Verdict::TempFail);
  EXPECT_EQ(first.code(), 451);
  EXPECT_EQ(first.enhanced(), "4.7.1");
  EXPECT_EQ(first.text(), "Greylisted, try again in 300 seconds");
  EXPECT_TRUE(first.was_deferred());  // the database is queried off the session thread

  host_.clock().advance(2min);
  FakeResult early = rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net");
  EXPECT_EQ(early.verdict(), Verdict::TempFail);
  EXPECT_EQ(early.text(), "Greylisted, try again in 180 seconds");

  host_.clock().advance(3min + 1s);
  EXPECT_EQ(rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net").verdict(), Verdict::Continue);
  EXPECT_TRUE(host_.logged("passed after 301s"));
}

TEST_F(GreylistTest, RetryFromTheSameSlash24PassesAndAnotherNetworkDoesNot) {
  auto p = load();
  EXPECT_EQ(rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net").verdict(), Verdict::TempFail);
  host_.clock().advance(6min);
  // A different host of the same /24 (a mail cluster) retries.
  EXPECT_EQ(rcpt(p, "192.0.2.200", "alice@example.org", "bob@example.net").verdict(), Verdict::Continue);
  EXPECT_EQ(rcpt(p, "198.51.100.7", "alice@example.org", "bob@example.net").verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, RetryAfterTheWindowStartsOver) {
  auto p = load(R"(<plugin name="greylist" delay="5m" window="1h" auto-whitelist-after="0"/>)");
  EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
  host_.clock().advance(2h);
  FakeResult r = rcpt(p, "192.0.2.7", "a@example.org", "b@example.net");
  EXPECT_EQ(r.verdict(), Verdict::TempFail);
  EXPECT_EQ(r.text(), "Greylisted, try again in 300 seconds");
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::Continue);
}

TEST_F(GreylistTest, NetworkIsAutoWhitelistedAfterNPasses) {
  auto p = load(R"(<plugin name="greylist" auto-whitelist-after="2" auto-whitelist-for="36d"/>)");
  for (const char* to : {"one@example.net", "two@example.net"}) {
    EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", to).verdict(), Verdict::TempFail) << to;
  }
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "one@example.net").verdict(), Verdict::Continue);
  // One pass is not enough for N = 2.
  EXPECT_EQ(rcpt(p, "203.0.113.9", "new@example.org", "x@example.net").verdict(), Verdict::TempFail);
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "two@example.net").verdict(), Verdict::Continue);
  // Now the /24 is whitelisted: unseen triplets pass at once.
  EXPECT_EQ(rcpt(p, "203.0.113.77", "other@example.com", "y@example.net").verdict(), Verdict::Continue);
  // ... until the whitelist entry expires (the cache lives a minute).
  host_.clock().advance(std::chrono::hours(24 * 37));
  EXPECT_EQ(rcpt(p, "203.0.113.78", "third@example.com", "z@example.net").verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, Ipv6ClientsAreGroupedBySlash64) {
  auto p = load();
  EXPECT_EQ(rcpt(p, "2001:db8:1:2::10", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "2001:db8:1:2:ffff::1", "a@example.org", "b@example.net").verdict(), Verdict::Continue);
  EXPECT_EQ(rcpt(p, "2001:db8:1:3::10", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, ExceptionsSkipGreylisting) {
  auto p = load(R"(<plugin name="greylist">
      <except ip="192.0.2.1"/>
      <except cidr="10.0.0.0/8"/>
      <except cidr="2001:db8:ffff::/48"/>
      <except sender-domain="trusted.example"/>
      <except sender="boss@partner.example"/>
      <except recipient="postmaster@example.net"/>
      <except recipient="@abuse.example.net"/>
    </plugin>)");
  struct Case {
    const char* ip;
    const char* from;
    const char* to;
    Verdict expected;
  };
  const Case cases[] = {
      {"192.0.2.1", "x@example.org", "y@example.net", Verdict::Continue},
      {"192.0.2.2", "x@example.org", "y@example.net", Verdict::TempFail},
      {"10.20.30.40", "x@example.org", "y@example.net", Verdict::Continue},
      {"2001:db8:ffff:1::5", "x@example.org", "y@example.net", Verdict::Continue},
      {"198.51.100.1", "x@trusted.example", "y@example.net", Verdict::Continue},
      {"198.51.100.1", "x@mx.trusted.example", "y@example.net", Verdict::Continue},
      {"198.51.100.1", "x@untrusted.example", "y@example.net", Verdict::TempFail},
      {"198.51.100.1", "BOSS@partner.example", "y@example.net", Verdict::Continue},
      {"198.51.100.1", "x@example.org", "Postmaster@example.net", Verdict::Continue},
      {"198.51.100.1", "x@example.org", "anyone@abuse.example.net", Verdict::Continue},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(rcpt(p, c.ip, c.from, c.to).verdict(), c.expected) << c.ip << " " << c.from << " " << c.to;
  }
}

TEST_F(GreylistTest, WhitelistedSessionTagAndAuthenticatedClientsSkip) {
  auto p = load();
  auto ev = host_.make_rcpt("192.0.2.50", "a@example.org", "b@example.net");
  ev.set_whitelisted();
  EXPECT_EQ(host_.run(*p, ev).verdict(), Verdict::Continue);
  auto authed = host_.make_rcpt("192.0.2.51", "a@example.org", "b@example.net");
  authed.set(POSTERN_PROP_AUTH_USER, "alice");
  EXPECT_EQ(host_.run(*p, authed).verdict(), Verdict::Continue);
  // Other tag values do not count.
  auto other = host_.make_rcpt("192.0.2.52", "a@example.org", "b@example.net");
  other.set_tag("postern.whitelisted", "0");
  EXPECT_EQ(host_.run(*p, other).verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, NullSenderIsGreylistedAsItsOwnTriplet) {
  auto p = load();
  EXPECT_EQ(rcpt(p, "192.0.2.9", "", "b@example.net").verdict(), Verdict::TempFail);
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "192.0.2.9", "", "b@example.net").verdict(), Verdict::Continue);
}

TEST_F(GreylistTest, PruneCronJobDeletesExpiredEntries) {
  auto p = load(R"(<plugin name="greylist" window="1h" prune="*/10 * * * *"/>)");
  const auto jobs = host_.cron_jobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].name, "prune");
  EXPECT_EQ(jobs[0].expr, "*/10 * * * *");
  EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
  EXPECT_EQ(host_.run_cron("prune"), 1u);
  EXPECT_FALSE(host_.logged("pruned"));  // nothing expired yet
  host_.clock().advance(2h);
  host_.run_cron("prune");
  EXPECT_TRUE(host_.logged("pruned 1 expired entry"));
  // The pruned triplet is a first sight again.
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
  p.unload();
  EXPECT_TRUE(host_.cron_jobs().empty());
}

TEST_F(GreylistTest, StateSurvivesAReload) {
  {
    auto p = load();
    EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
  }
  host_.clock().advance(5min);
  auto p = load();
  EXPECT_EQ(rcpt(p, "192.0.2.7", "a@example.org", "b@example.net").verdict(), Verdict::Continue);
}

TEST_F(GreylistTest, ConfigErrorsAreClear) {
  struct Case {
    const char* xml;
    const char* expected;
  };
  const Case cases[] = {
      {R"(<plugin name="greylist" delay="soon"/>)", "delay=\"soon\": expected a duration"},
      {R"(<plugin name="greylist" delay="2h" window="1h"/>)", "window must be longer than delay"},
      {R"(<plugin name="greylist" ipv4-prefix="33"/>)", "ipv4-prefix=\"33\": expected 0..32"},
      {R"(<plugin name="greylist" auto-whitelist-after="-1"/>)", "auto-whitelist-after=\"-1\""},
      {R"(<plugin name="greylist" skip-authenticated="maybe"/>)", "expected true or false"},
      {R"(<plugin name="greylist"><except ip="300.1.1.1"/></plugin>)", "not an IP address"},
      {R"(<plugin name="greylist"><except cidr="10.0.0.0/40"/></plugin>)", "expected address/prefix"},
      {R"(<plugin name="greylist"><except ip="1.2.3.4" sender="a@b.c"/></plugin>)", "exactly one of"},
      {R"(<plugin name="greylist"><exempt ip="1.2.3.4"/></plugin>)", "unknown element <exempt>"},
      {R"(<plugin name="greylist" prune="every hour"/>)", "prune=\"every hour\" was refused"},
  };
  for (const Case& c : cases) {
    auto p = host_.load<GreylistPlugin>(c.xml);
    EXPECT_FALSE(p.ok()) << c.xml;
    EXPECT_NE(p.error().find(c.expected), std::string::npos) << c.xml << " -> " << p.error();
  }
  // The line is named.
  auto p = host_.load<GreylistPlugin>("<plugin name=\"greylist\">\n\n  <except cidr=\"x\"/>\n</plugin>");
  EXPECT_NE(p.error().find("line 3"), std::string::npos) << p.error();
}

TEST(NetworkTest, MasksAndContains) {
  auto a = Address::parse("192.0.2.77");
  ASSERT_TRUE(a);
  EXPECT_EQ(Network::of(*a, 24).to_string(), "192.0.2.0/24");
  EXPECT_EQ(Network::of(*Address::parse("2001:db8:1:2:3:4:5:6"), 64).to_string(), "2001:db8:1:2::/64");
  const auto n = Network::parse("10.0.0.0/8");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->contains(*Address::parse("10.255.0.1")));
  EXPECT_FALSE(n->contains(*Address::parse("11.0.0.1")));
  EXPECT_FALSE(n->contains(*Address::parse("::a00:1")));  // an IPv6 address is not in an IPv4 network
  EXPECT_TRUE(Network::parse("::ffff:10.1.2.3")->contains(*Address::parse("10.1.2.3")));
  EXPECT_FALSE(Network::parse("10.0.0.0/33"));
  EXPECT_FALSE(Network::parse("10.0.0.0/"));
  EXPECT_FALSE(Address::parse("10.0.0"));
}

}  // namespace
}  // namespace postern::plugins::greylist
