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
  // What `posternctl greylist allow` does: a manual row, written by another
  // connection to the live database.
  static void allow(const sdk::testing::Loaded& p, const char* cidr) {
    std::string error;
    auto store = TripletStore::open(p.state_dir() / "greylist.sqlite", &error);
    ASSERT_TRUE(store) << error;
    const auto net = Network::parse(cidr);
    ASSERT_TRUE(net);
    store->db().with([&](sdk::storage::Database& d) {
      d.prepared("INSERT INTO whitelist (network, lo, hi, passes, expires, manual, created) VALUES (?1, ?2, ?3, 0, 0, 1, 0)")
          .bind(1, net->to_string())
          .bind(2, net->lo.blob())
          .bind(3, net->hi.blob())
          .run();
    });
  }
  // What `posternctl greylist flush --all` does to the whitelist.
  static void flush_whitelist(const sdk::testing::Loaded& p) {
    std::string error;
    auto store = TripletStore::open(p.state_dir() / "greylist.sqlite", &error);
    ASSERT_TRUE(store) << error;
    store->db().with([&](sdk::storage::Database& d) { d.prepared("DELETE FROM whitelist").run(); });
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

TEST_F(GreylistTest, ManualAllowIsAnsweredFromMemoryWithoutDeferring) {
  {
    auto p = load();
    allow(p, "10.0.0.0/8");
  }
  // Loaded at init: the first attempt is decided on the session strand.
  auto p = load();
  FakeResult r = rcpt(p, "10.20.30.40", "a@example.org", "b@example.net");
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_FALSE(r.was_deferred());
  FakeResult r6 = rcpt(p, "10.255.0.1", "c@example.org", "d@example.net");
  EXPECT_EQ(r6.verdict(), Verdict::Continue);
  EXPECT_FALSE(r6.was_deferred());
  // Outside the network: the database decides, off the session strand.
  FakeResult other = rcpt(p, "11.0.0.1", "a@example.org", "b@example.net");
  EXPECT_EQ(other.verdict(), Verdict::TempFail);
  EXPECT_TRUE(other.was_deferred());
  // An IPv6 address is not in the IPv4 network.
  EXPECT_EQ(rcpt(p, "::a14:1e28", "a@example.org", "b@example.net").verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, AllowOfARunningDaemonIsLearnedOnTheFirstMiss) {
  auto p = load();
  allow(p, "198.51.100.0/24");
  // The memory copy does not know it yet: the database answers (at once) ...
  FakeResult first = rcpt(p, "198.51.100.7", "a@example.org", "b@example.net");
  EXPECT_EQ(first.verdict(), Verdict::Continue);
  EXPECT_TRUE(first.was_deferred());
  // ... and the entry is in memory from then on, for every triplet.
  FakeResult next = rcpt(p, "198.51.100.8", "x@example.com", "y@example.net");
  EXPECT_EQ(next.verdict(), Verdict::Continue);
  EXPECT_FALSE(next.was_deferred());
}

TEST_F(GreylistTest, AutoWhitelistedNetworkAndPassedTripletAnswerWithoutDeferring) {
  auto p = load(R"(<plugin name="greylist" auto-whitelist-after="2"/>)");
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "one@example.net").verdict(), Verdict::TempFail);
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "two@example.net").verdict(), Verdict::TempFail);
  host_.clock().advance(5min);
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "one@example.net").verdict(), Verdict::Continue);
  // A passed triplet is in the pass cache; the network (1 pass of 2) is not whitelisted.
  FakeResult again = rcpt(p, "203.0.113.5", "a@example.org", "one@example.net");
  EXPECT_EQ(again.verdict(), Verdict::Continue);
  EXPECT_FALSE(again.was_deferred());
  FakeResult unknown = rcpt(p, "203.0.113.6", "new@example.org", "x@example.net");
  EXPECT_EQ(unknown.verdict(), Verdict::TempFail);
  EXPECT_TRUE(unknown.was_deferred());
  // The second pass whitelists the /24: learned at once, no reload needed.
  EXPECT_EQ(rcpt(p, "203.0.113.5", "a@example.org", "two@example.net").verdict(), Verdict::Continue);
  FakeResult listed = rcpt(p, "203.0.113.77", "other@example.com", "y@example.net");
  EXPECT_EQ(listed.verdict(), Verdict::Continue);
  EXPECT_FALSE(listed.was_deferred());
  EXPECT_EQ(rcpt(p, "203.0.114.1", "other@example.com", "y@example.net").verdict(), Verdict::TempFail);
  // A restart loads it from the database.
  p.unload();
  auto q = load(R"(<plugin name="greylist" auto-whitelist-after="2"/>)");
  FakeResult reloaded = rcpt(q, "203.0.113.78", "third@example.com", "z@example.net");
  EXPECT_EQ(reloaded.verdict(), Verdict::Continue);
  EXPECT_FALSE(reloaded.was_deferred());
  // The memory copy honours the entry's expiry without a reload.
  host_.clock().advance(std::chrono::hours(24 * 36) + 1min);
  EXPECT_EQ(rcpt(q, "203.0.113.79", "fourth@example.com", "z@example.net").verdict(), Verdict::TempFail);
}

TEST_F(GreylistTest, RemovedEntriesStopCountingAtTheNextReload) {
  auto p = load(R"(<plugin name="greylist" whitelist-refresh="45s"/>)");
  allow(p, "192.0.2.0/24");
  p.unload();
  p = load(R"(<plugin name="greylist" whitelist-refresh="45s"/>)");
  EXPECT_FALSE(rcpt(p, "192.0.2.1", "a@example.org", "b@example.net").was_deferred());
  flush_whitelist(p);  // posternctl greylist flush --all
  host_.clock().advance(44s);
  FakeResult stale = rcpt(p, "192.0.2.2", "a@example.org", "b@example.net");
  EXPECT_EQ(stale.verdict(), Verdict::Continue);  // the documented propagation delay
  EXPECT_FALSE(stale.was_deferred());
  host_.clock().advance(1s);  // the refresh timer fires and reloads on the worker pool
  FakeResult fresh = rcpt(p, "192.0.2.3", "a@example.org", "b@example.net");
  EXPECT_EQ(fresh.verdict(), Verdict::TempFail);
  EXPECT_TRUE(fresh.was_deferred());
  // ... and keeps doing so: a new allow is picked up by a later reload too.
  allow(p, "192.0.2.0/24");
  host_.clock().advance(45s);
  FakeResult allowed = rcpt(p, "192.0.2.4", "a@example.org", "b@example.net");
  EXPECT_EQ(allowed.verdict(), Verdict::Continue);
  EXPECT_FALSE(allowed.was_deferred());
}

TEST(WhitelistSetTest, PrefixesMasksAndRanges) {
  auto block = [](const char* cidr) {
    const auto n = Network::parse(cidr);
    EXPECT_TRUE(n) << cidr;
    return WhitelistEntry::of(*n, WhitelistEntry::kNever);
  };
  auto addr = [](const char* a) { return *Address::parse(a); };
  EXPECT_EQ(WhitelistSet::prefix_of(block("10.0.0.0/8").lo, block("10.0.0.0/8").hi), 96 + 8);
  EXPECT_EQ(WhitelistSet::prefix_of(block("192.0.2.7").lo, block("192.0.2.7").hi), 128);
  EXPECT_EQ(WhitelistSet::prefix_of(block("2001:db8::/32").lo, block("2001:db8::/32").hi), 32);
  EXPECT_EQ(WhitelistSet::prefix_of(block("::/0").lo, block("::/0").hi), 0);
  WhitelistEntry odd = block("192.0.2.0/24");
  odd.hi = addr("192.0.3.9").octets;  // not one CIDR block
  EXPECT_EQ(WhitelistSet::prefix_of(odd.lo, odd.hi), -1);
  EXPECT_EQ(WhitelistSet::masked(addr("192.0.2.77").octets, 96 + 24), addr("192.0.2.0").octets);
  EXPECT_EQ(WhitelistSet::masked(addr("192.0.2.77").octets, 96 + 20), addr("192.0.0.0").octets);

  WhitelistSet set;
  set.add(block("10.0.0.0/8"));
  set.add(block("2001:db8::/32"));
  set.add(block("192.0.2.7"));
  set.add(WhitelistEntry::of(*Network::parse("198.51.100.0/24"), 1000));  // automatic, expires at 1000
  set.add(WhitelistEntry::of(*Network::parse("198.51.100.0/24"), 500));   // an older copy: keeps 1000
  set.add(odd);
  EXPECT_EQ(set.size(), 5u);
  EXPECT_TRUE(set.contains(addr("10.1.2.3"), 0));
  EXPECT_FALSE(set.contains(addr("11.1.2.3"), 0));
  EXPECT_TRUE(set.contains(addr("2001:db8:ffff::1"), 0));
  EXPECT_FALSE(set.contains(addr("2001:db9::1"), 0));
  EXPECT_TRUE(set.contains(addr("192.0.2.7"), 0));
  EXPECT_TRUE(set.contains(addr("192.0.3.9"), 0));  // through the odd range
  EXPECT_FALSE(set.contains(addr("192.0.3.10"), 0));
  EXPECT_TRUE(set.contains(addr("198.51.100.200"), 999));
  EXPECT_FALSE(set.contains(addr("198.51.100.200"), 1000));
  EXPECT_FALSE(set.contains(addr("::a01:203"), 0));  // IPv6 ::10.1.2.3 is not IPv4 10.1.2.3
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
      {R"(<plugin name="greylist" whitelist-refresh="500ms"/>)", "whitelist-refresh=\"500ms\": expected a duration of at least 1s"},
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

// The greylist area of the control plane, called through the C ABI as
// posternd calls it (posternctl greylist list | allow | flush).
TEST_F(GreylistTest, AdminCommandsListAllowAndFlushTheLiveDatabase) {
  auto p = load(R"(<plugin name="greylist" delay="5m"/>)");
  EXPECT_EQ(host_.commands(), (std::vector<std::string>{"greylist allow", "greylist flush", "greylist list"}));
  EXPECT_EQ(rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net").verdict(), Verdict::TempFail);

  auto list = host_.command("greylist list");
  ASSERT_TRUE(list.answered());
  ASSERT_EQ(list.exit(), sdk::CommandExit::Ok) << list.text();
  EXPECT_NE(list.json().find(R"({"triplets":[{"network":"192.0.2.0/24","sender":"alice@example.org",)"
                             R"("recipient":"bob@example.net","first_seen":"2026-01-01T00:00:00Z",)"),
            std::string::npos)
      << list.json();
  EXPECT_NE(list.json().find(R"("passed_at":null,"attempts":1}],"whitelist":[]})"), std::string::npos) << list.json();
  EXPECT_NE(list.text().find("192.0.2.0/24             alice@example.org"), std::string::npos) << list.text();
  EXPECT_NE(list.text().find("greylisted"), std::string::npos);

  // A manual allow is in force when the command answers (the memory copy is reloaded).
  auto allow = host_.command("greylist allow", {"198.51.100.77/24"});
  EXPECT_EQ(allow.exit(), sdk::CommandExit::Ok);
  EXPECT_EQ(allow.json(), R"({"allowed":"198.51.100.0/24"})");
  EXPECT_EQ(allow.text(), "allowed 198.51.100.0/24\n");
  EXPECT_EQ(rcpt(p, "198.51.100.9", "x@example.org", "y@example.net").verdict(), Verdict::Continue);
  EXPECT_NE(host_.command("greylist list", {}).json().find(
                R"({"network":"198.51.100.0/24","source":"manual","passes":0,"expires":null})"),
            std::string::npos);

  auto bad = host_.command("greylist allow", {"not-an-ip"});
  EXPECT_EQ(bad.exit(), sdk::CommandExit::Usage);
  EXPECT_EQ(bad.text(), "greylist allow: 'not-an-ip' is not an IP address or CIDR network");
  EXPECT_EQ(host_.command("greylist allow").exit(), sdk::CommandExit::Usage);  // NETWORK missing
  EXPECT_EQ(host_.command("greylist flush", {"--expired", "--all"}).exit(), sdk::CommandExit::Usage);

  // --expired keeps what is fresh; a plain flush drops triplets but keeps manual entries.
  EXPECT_EQ(host_.command("greylist flush", {"--expired"}).json(), R"({"triplets":0,"whitelist":0})");
  auto flush = host_.command("greylist flush");
  EXPECT_EQ(flush.json(), R"({"triplets":1,"whitelist":0})");
  EXPECT_EQ(flush.text(), "deleted 1 triplet(s) and 0 whitelist entries\n");
  EXPECT_EQ(rcpt(p, "198.51.100.9", "x@example.org", "z@example.net").verdict(), Verdict::Continue);
  // The flushed triplet starts over.
  EXPECT_EQ(rcpt(p, "192.0.2.7", "alice@example.org", "bob@example.net").verdict(), Verdict::TempFail);
  EXPECT_EQ(host_.command("greylist flush", {"--all"}).text(), "deleted 1 triplet(s) and 1 whitelist entry\n");
  EXPECT_EQ(rcpt(p, "198.51.100.9", "x@example.org", "w@example.net").verdict(), Verdict::TempFail);

  // The window (24 h by default) elapsed: --expired removes the one triplet left, never passed.
  host_.clock().advance(std::chrono::hours(23));
  EXPECT_EQ(host_.command("greylist flush", {"--expired"}).json(), R"({"triplets":0,"whitelist":0})");
  host_.clock().advance(std::chrono::hours(2));
  EXPECT_EQ(host_.command("greylist flush", {"--expired"}).json(), R"({"triplets":1,"whitelist":0})");
  EXPECT_NE(host_.command("greylist list").json().find(R"({"triplets":[],)"), std::string::npos);

  p.unload();
  EXPECT_TRUE(host_.commands().empty());  // removed with the plugin
}

}  // namespace
}  // namespace postern::plugins::greylist
