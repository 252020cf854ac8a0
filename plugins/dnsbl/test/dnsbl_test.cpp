// The dnsbl plugin through the SDK's FakeHost: the same C ABI path posternd
// uses, with a manual clock and canned DNS answers.
#include "dnsbl.hpp"

#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>

namespace postern::plugins::dnsbl {
namespace {

using namespace std::chrono_literals;
using sdk::Verdict;
using sdk::testing::FakeHost;

class DnsblPluginTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(host_.declare_from_descriptor(DNSBL_DESCRIPTOR), ""); }
  // Every deferred hook completes once: no second or late completion.
  void TearDown() override { EXPECT_EQ(host_.late_completions(), 0u); }

  sdk::testing::Loaded load(const std::string& inner, const std::string& attrs = "") {
    auto p = host_.load<DnsblPlugin>("<plugin name=\"dnsbl\"" + attrs + ">\n" + inner + "\n</plugin>");
    if (p.ok()) p.set_timeout(5s);
    return p;
  }

  bool queried(const std::string& name, postern_dns_type_t type = POSTERN_DNS_A) {
    const auto q = host_.dns().queries();
    return std::find(q.begin(), q.end(), std::make_pair(name, type)) != q.end();
  }

  FakeHost host_;
};

TEST_F(DnsblPluginTest, ListedIpv4IsRejectedAtConnectWithTheListsTxt) {
  auto p = load(R"(<list zone="zen.test" action="reject" timeout="2s"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_records("7.2.0.192.zen.test", POSTERN_DNS_A, {"127.0.0.2"});
  host_.dns().set_records("7.2.0.192.zen.test", POSTERN_DNS_TXT, {"Listed; see https://zen.test/q?192.0.2.7"});

  auto r = host_.run(*p, host_.make_connect("192.0.2.7"));
  ASSERT_TRUE(r.is_pending());
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.code(), 554);
  EXPECT_EQ(r.enhanced(), "5.7.1");
  EXPECT_EQ(r.text(),
            "Service unavailable; client [192.0.2.7] blocked using zen.test; Listed; see https://zen.test/q?192.0.2.7");
  EXPECT_FALSE(r.failed());
  EXPECT_TRUE(host_.logged("hit list=zen.test type=ip ip=192.0.2.7 answer=127.0.0.2 action=reject"));
}

TEST_F(DnsblPluginTest, NotListedContinuesWithoutCompletion) {
  auto p = load(R"(<list zone="zen.test"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  auto r = host_.run(*p, host_.make_connect("192.0.2.8"));  // NXDOMAIN
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_TRUE(r.released_without_completion());
  EXPECT_TRUE(queried("8.2.0.192.zen.test"));
  EXPECT_FALSE(queried("8.2.0.192.zen.test", POSTERN_DNS_TXT));
  EXPECT_FALSE(host_.logged("hit "));
}

TEST_F(DnsblPluginTest, Ipv6ClientIsLookedUpByReversedNibbles) {
  auto p = load(R"(<list zone="v6.test" action="score" weight="2.5" symbol="V6_LISTED"/>
                   <list zone="v4only.test" ipv6="false"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const std::string name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.test";
  host_.dns().set_records(name, POSTERN_DNS_A, {"127.0.0.2"});
  auto r = host_.run(*p, host_.make_connect("2001:db8::1"));
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_EQ(r.symbol("V6_LISTED"), 2.5);
  EXPECT_TRUE(queried(name));
  EXPECT_EQ(host_.dns().queries().size(), 1u);  // not the IPv4-only list
  EXPECT_TRUE(host_.logged("hit list=v6.test type=ip ip=2001:db8::1 answer=127.0.0.2 action=score symbol=V6_LISTED"));
}

TEST_F(DnsblPluginTest, AnswerCodesAndBitmasksSelectHits) {
  auto p = load(R"(<list zone="codes.test" answers="127.0.0.2, 127.0.0.10-127.0.0.11" action="score" weight="1" symbol="CODES"/>
                   <list zone="mask.test" mask="0x08" action="score" weight="1" symbol="MASK"/>
                   <list zone="any.test" action="score" weight="1" symbol="ANY"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  struct Case {
    const char* answer;
    bool codes, mask, any;
  };
  const Case cases[] = {
      {"127.0.0.2", true, false, true},
      {"127.0.0.4", false, false, true},
      {"127.0.0.10", true, true, true},
      {"127.0.0.8", false, true, true},
      {"127.0.0.1", false, false, false},        // RFC 5782 §5: never a listing
      {"127.255.255.254", false, false, false},  // Spamhaus "query refused": an error code, not a listing
      {"192.0.2.99", false, false, false},       // outside 127/8: an NXDOMAIN-rewriting resolver
  };
  int n = 1;
  for (const Case& c : cases) {
    const std::string ip = "198.51.100." + std::to_string(n++);
    const std::string rev = ip.substr(11) + ".100.51.198.";
    for (const char* zone : {"codes.test", "mask.test", "any.test"}) host_.dns().set_records(rev + zone, POSTERN_DNS_A, {c.answer});
    auto r = host_.run(*p, host_.make_connect(ip));
    host_.settle();
    EXPECT_EQ(r.has_symbol("CODES"), c.codes) << c.answer;
    EXPECT_EQ(r.has_symbol("MASK"), c.mask) << c.answer;
    EXPECT_EQ(r.has_symbol("ANY"), c.any) << c.answer;
  }
}

TEST_F(DnsblPluginTest, LookupsRunInParallelAndADeadListCostsOnlyItsTimeout) {
  auto p = load(R"(<list zone="dead.test" timeout="1500ms"/>
                   <list zone="slowok.test" action="score" weight="3" symbol="SLOW"/>
                   <list zone="nx.test"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_timeout("9.2.0.192.dead.test", POSTERN_DNS_A);
  host_.dns().set_latency(200ms);
  host_.dns().set_records("9.2.0.192.slowok.test", POSTERN_DNS_A, {"127.0.0.3"});
  const int64_t start = host_.clock().now_ms();
  auto r = host_.run(*p, host_.make_connect("192.0.2.9"));
  // All three were asked before any answer came.
  EXPECT_EQ(host_.dns().queries().size(), 3u);
  host_.settle();
  EXPECT_EQ(host_.clock().now_ms() - start, 1500);  // the dead list's timeout, not the sum
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_FALSE(r.failed());
  EXPECT_FALSE(r.timed_out());
  EXPECT_EQ(r.symbol("SLOW"), 3.0);
  EXPECT_TRUE(host_.logged("list dead.test is not answering: 1 lookups failed"));
}

TEST_F(DnsblPluginTest, FirstRejectInListOrderWinsOverTempfailAndScores) {
  auto p = load(R"(<list zone="soft.test" action="tempfail" txt="false"/>
                   <list zone="score.test" action="score" weight="1"/>
                   <list zone="hard.test" action="reject" message="Blocked by %z (%a) for %ip"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  for (const char* z : {"soft.test", "score.test", "hard.test"}) {
    host_.dns().set_records(std::string("5.2.0.192.") + z, POSTERN_DNS_A, {"127.0.0.4"});
  }
  auto r = host_.run(*p, host_.make_connect("192.0.2.5"));
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.text(), "Blocked by hard.test (127.0.0.4) for 192.0.2.5");
  EXPECT_TRUE(r.has_symbol("DNSBL_SCORE_TEST"));
  EXPECT_FALSE(queried("5.2.0.192.soft.test", POSTERN_DNS_TXT));
  EXPECT_FALSE(queried("5.2.0.192.score.test", POSTERN_DNS_TXT));

  auto soft = load(R"(<list zone="soft.test" action="tempfail"/>)");
  auto r2 = host_.run(*soft, host_.make_connect("192.0.2.5"));
  host_.settle();
  EXPECT_EQ(r2.verdict(), Verdict::TempFail);
  EXPECT_EQ(r2.code(), 451);
  EXPECT_EQ(r2.enhanced(), "4.7.1");
}

TEST_F(DnsblPluginTest, TxtLookupGetsOnlyWhatIsLeftOfTheTimeout) {
  auto p = load(R"(<list zone="zen.test" timeout="1s"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_records("6.2.0.192.zen.test", POSTERN_DNS_A, {"127.0.0.2"});
  host_.dns().set_timeout("6.2.0.192.zen.test", POSTERN_DNS_TXT);
  host_.dns().set_latency(300ms);
  const int64_t start = host_.clock().now_ms();
  auto r = host_.run(*p, host_.make_connect("192.0.2.6"));
  host_.settle();
  EXPECT_EQ(host_.clock().now_ms() - start, 1000);
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.text(), "Service unavailable; client [192.0.2.6] blocked using zen.test");
}

TEST_F(DnsblPluginTest, RhsblChecksSenderDomainAndHeloAtMailFrom) {
  auto p = load(R"(<list zone="dbl.test" type="rhs" helo="true"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  ASSERT_TRUE(p.subscribed(sdk::Stage::MailFrom));
  EXPECT_FALSE(p.subscribed(sdk::Stage::DataEnd));
  host_.dns().set_records("spam.example.dbl.test", POSTERN_DNS_A, {"127.0.1.2"});

  auto r = host_.run(*p, host_.make_mail("192.0.2.10", "Alice@Spam.Example"));
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.code(), 550);
  EXPECT_EQ(r.text(), "Service unavailable; sender domain spam.example blocked using dbl.test");
  EXPECT_TRUE(queried("client.fake.test.dbl.test"));  // the HELO name
  EXPECT_TRUE(host_.logged("hit list=dbl.test type=rhs name=spam.example answer=127.0.1.2 action=reject client=192.0.2.10 source=sender"));

  auto helo = host_.make_mail("192.0.2.10", "bob@clean.example");
  helo.set(POSTERN_PROP_HELO, "spam.example");
  auto r2 = host_.run(*p, helo);
  host_.settle();
  EXPECT_EQ(r2.verdict(), Verdict::Reject);
  EXPECT_EQ(r2.text(), "Service unavailable; HELO name spam.example blocked using dbl.test");

  // The null sender and an address literal have no domain; a literal HELO is not a name.
  const size_t before = host_.dns().queries().size();
  auto bounce = host_.make_mail("192.0.2.10", "");
  bounce.set(POSTERN_PROP_HELO, "[192.0.2.10]");
  auto r3 = host_.run(*p, bounce);
  EXPECT_EQ(r3.verdict(), Verdict::Continue);
  EXPECT_FALSE(r3.was_deferred());
  auto literal = host_.make_mail("192.0.2.10", "postmaster@[192.0.2.1]");
  literal.set(POSTERN_PROP_HELO, "localhost");
  EXPECT_FALSE(host_.run(*p, literal).was_deferred());
  EXPECT_EQ(host_.dns().queries().size(), before);
}

TEST_F(DnsblPluginTest, UriListsCheckRegisteredDomainsOfUrlsInTheBody) {
  auto p = load(R"(<list zone="uri.test" type="uri" action="score" weight="5" symbol="URI_BL"/>
                   <exceptions><domain>trusted.example</domain></exceptions>)",
                " max-uri-names=\"3\"");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_records("spam.co.uk.uri.test", POSTERN_DNS_A, {"127.0.0.2"});
  const std::string body =
      "Subject: offer\n\n"
      "Buy at https://www.Spam.co.uk/x and http://img.spam.co.uk/y.png\n"
      "see www.trusted.example and http://192.0.2.77/login\n"
      "http://one.example http://two.example http://three.example\n";
  auto r = host_.run(*p, host_.make_data("192.0.2.11", "a@example.org", {"b@example.net"}, body));
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_EQ(r.symbol("URI_BL"), 5.0);
  EXPECT_TRUE(queried("spam.co.uk.uri.test"));
  EXPECT_TRUE(queried("77.2.0.192.uri.test"));
  EXPECT_TRUE(queried("one.example.uri.test"));
  EXPECT_FALSE(queried("two.example.uri.test"));  // max-uri-names="3"
  EXPECT_FALSE(queried("trusted.example.uri.test"));
  EXPECT_EQ(host_.dns().queries().size(), 3u);
  EXPECT_TRUE(host_.logged("hit list=uri.test type=uri name=spam.co.uk answer=127.0.0.2 action=score symbol=URI_BL"));
}

TEST_F(DnsblPluginTest, UriRejectAtDataEnd) {
  auto p = load(R"(<list zone="uri.test" type="uri" txt="false"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_records("phish.example.uri.test", POSTERN_DNS_A, {"127.0.0.2"});
  auto r = host_.run(*p, host_.make_data("192.0.2.12", "a@example.org", {"b@example.net"},
                                          "Content-Type: text/html\n\n<a href=\"http://login.phish.example/\">x</a>\n"));
  host_.settle();
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.code(), 550);
  EXPECT_EQ(r.text(), "Message refused; it contains a URL of phish.example, blocked using uri.test");
  // An attachment is not scanned.
  auto r2 = host_.run(*p, host_.make_data("192.0.2.12", "a@example.org", {"b@example.net"},
                                           "Content-Disposition: attachment; filename=a.txt\n\nhttp://phish.example/\n"));
  EXPECT_FALSE(r2.was_deferred());
}

TEST_F(DnsblPluginTest, ExceptionsAreCheckedBeforeAnyLookup) {
  host_.dns().set_records("mxpartner.example", POSTERN_DNS_MX, {"10 mx1.mxpartner.example", "20 mx2.elsewhere.example"}, 600);
  host_.dns().set_records("mx1.mxpartner.example", POSTERN_DNS_A, {"203.0.113.5"}, 600);
  host_.dns().set_records("mx2.elsewhere.example", POSTERN_DNS_AAAA, {"2001:db8::25"}, 600);
  auto p = load(R"(<list zone="zen.test"/>
                   <list zone="dbl.test" type="rhs"/>
                   <exceptions>
                     <address>192.0.2.0/28 198.51.100.1-198.51.100.3</address>
                     <domain>partner.example</domain>
                     <mx>mxpartner.example</mx>
                   </exceptions>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.run_pending_work();  // the MX, then the MX hosts' addresses
  const size_t before = host_.dns().queries().size();

  for (const char* ip : {"192.0.2.3", "198.51.100.2", "203.0.113.5", "2001:db8::25"}) {
    auto r = host_.run(*p, host_.make_connect(ip));
    EXPECT_EQ(r.verdict(), Verdict::Continue) << ip;
    EXPECT_FALSE(r.was_deferred()) << ip;
    EXPECT_FALSE(host_.run(*p, host_.make_mail(ip, "x@spam.example")).was_deferred()) << ip;
  }
  EXPECT_FALSE(host_.run(*p, host_.make_mail("192.0.2.99", "x@sub.partner.example")).was_deferred());
  EXPECT_EQ(host_.dns().queries().size(), before);
  EXPECT_TRUE(host_.run(*p, host_.make_connect("198.51.100.4")).was_deferred());
}

TEST_F(DnsblPluginTest, BlacklistRejectsAtConnectAndWhitelistSkipsLookups) {
  host_.dns().set_records("relay.example", POSTERN_DNS_A, {"203.0.113.10"}, 120);
  host_.dns().set_records("bad.example", POSTERN_DNS_A, {"203.0.113.66"}, 120);
  auto p = load(R"(<list zone="zen.test"/>
                   <whitelist><address>192.0.2.66</address><domain>relay.example</domain></whitelist>
                   <blacklist message="Go away, %ip"><address>192.0.2.0/24</address><domain>bad.example</domain></blacklist>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.run_pending_work();
  const size_t before = host_.dns().queries().size();

  auto black = host_.run(*p, host_.make_connect("192.0.2.1"));
  EXPECT_EQ(black.verdict(), Verdict::Reject);
  EXPECT_EQ(black.code(), 554);
  EXPECT_EQ(black.enhanced(), "5.7.1");
  EXPECT_EQ(black.text(), "Go away, 192.0.2.1");
  EXPECT_TRUE(host_.logged("hit list=blacklist type=local ip=192.0.2.1 answer=local entry=address action=reject"));

  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.66")).verdict(), Verdict::Reject);
  EXPECT_TRUE(host_.logged("entry=domain:bad.example"));

  // The whitelist wins over the blacklisted range; whitelisted clients cause no
  // lookups and their session is tagged for later filters (greylist).
  for (const char* ip : {"192.0.2.66", "203.0.113.10"}) {
    auto r = host_.run(*p, host_.make_connect(ip));
    EXPECT_EQ(r.verdict(), Verdict::Continue) << ip;
    EXPECT_FALSE(r.was_deferred()) << ip;
    EXPECT_EQ(r.tags()[std::string(sdk::kTagWhitelisted)], "1") << ip;
  }
  EXPECT_EQ(host_.dns().queries().size(), before);
  EXPECT_TRUE(host_.run(*p, host_.make_connect("198.51.100.7")).tags().empty());
}

TEST_F(DnsblPluginTest, ASessionTaggedWhitelistedByAnotherFilterIsNotLookedUp) {
  auto p = load(R"(<list zone="zen.test"/><list zone="dbl.test" type="rhs"/><list zone="uri.test" type="uri"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  auto connect = host_.make_connect("192.0.2.20");
  connect.set_whitelisted();
  EXPECT_FALSE(host_.run(*p, connect).was_deferred());
  auto mail = host_.make_mail("192.0.2.20", "a@spam.example");
  mail.set_whitelisted();
  EXPECT_FALSE(host_.run(*p, mail).was_deferred());
  auto data = host_.make_data("192.0.2.20", "a@spam.example", {"b@example.net"}, "Subject: x\n\nhttp://phish.example/\n");
  data.set_whitelisted();
  EXPECT_FALSE(host_.run(*p, data).was_deferred());
  EXPECT_TRUE(host_.dns().queries().empty());
}

TEST_F(DnsblPluginTest, DomainsAreRefreshedWhenTheirTtlPasses) {
  host_.dns().set_records("bad.example", POSTERN_DNS_A, {"203.0.113.1"}, 300);
  auto p = load(R"(<blacklist><domain>bad.example</domain></blacklist>)", " refresh=\"1h\"");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.run_pending_work();
  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.1")).verdict(), Verdict::Reject);

  host_.dns().set_records("bad.example", POSTERN_DNS_A, {"203.0.113.2"}, 300);
  host_.clock().advance(299s);
  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.2")).verdict(), Verdict::Continue);
  host_.clock().advance(1s);  // the TTL passed: resolved again
  host_.run_pending_work();
  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.2")).verdict(), Verdict::Reject);
  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.1")).verdict(), Verdict::Continue);

  // A failed refresh keeps the known addresses and retries after a minute.
  host_.dns().set_timeout("bad.example", POSTERN_DNS_A);
  host_.dns().set_timeout("bad.example", POSTERN_DNS_AAAA);
  host_.clock().advance(302s);
  EXPECT_EQ(host_.run(*p, host_.make_connect("203.0.113.2")).verdict(), Verdict::Reject);
  EXPECT_TRUE(host_.logged("blacklist domain bad.example: lookup failed; keeping 1 known addresses"));
}

TEST_F(DnsblPluginTest, BadConfigurationRefusesToStartNamingTheLine) {
  struct Case {
    std::string inner;
    std::string attrs;
    std::string expect;
  };
  const Case cases[] = {
      {"<list/>", "", "<list> (line 2): the zone attribute is required"},
      {"<list zone=\"zen.test\" action=\"drop\"/>", "", "<list> (line 2): action=\"drop\" is not reject, tempfail or score"},
      {"<list zone=\"zen.test\" type=\"spf\"/>", "", "type=\"spf\" is not ip, rhs or uri"},
      {"<list zone=\"zen.test\" action=\"score\"/>", "", "action=\"score\" needs a weight"},
      {"<list zone=\"zen.test\" action=\"score\" weight=\"lots\"/>", "", "weight=\"lots\" is not a number"},
      {"<list zone=\"zen.test\" weight=\"1\"/>", "", "symbol and weight only apply to action=\"score\""},
      {"<list zone=\"zen.test\" answers=\"127.0.0.300\"/>", "", "answers:"},
      {"<list zone=\"zen.test\" mask=\"0xZZ\"/>", "", "mask=\"0xZZ\" is not a non-zero number"},
      {"<list zone=\"zen.test\" timeout=\"5s\"/>", "", "must be shorter than the plugin's hook timeout"},
      {"<list zone=\"zen.test\" timeout=\"2s\"/>", " timeout=\"2s\"", "must be shorter than the plugin's hook timeout"},
      {"<list zone=\"zen.test\" timeout=\"soon\"/>", "", "timeout=\"soon\" is not a positive duration"},
      {"<list zone=\"zen.test\"/><list zone=\"ZEN.test.\"/>", "", "zone zen.test of type ip is listed twice"},
      {"<list zone=\"zen.test\" ipv4=\"no\" ipv6=\"no\"/>", "", "would never be asked"},
      {"<list zone=\"zen.test\" txt=\"maybe\"/>", "", "txt=\"maybe\" is not a boolean"},
      {"<zone name=\"zen.test\"/>", "", "<zone> (line 2): unknown element"},
      {"<whitelist><address>10.0.0.0/40</address></whitelist>", "", "<address> (line 2): \"10.0.0.0/40\" is not a CIDR block"},
      {"<blacklist><domain>not a domain</domain></blacklist>", "", "\"not\" is not a domain name"},  // items split on spaces
      {"<whitelist><mx>example.org</mx></whitelist>", "", "unknown element in <whitelist>"},
      {"<exceptions><address></address></exceptions>", "", "<address> (line 2): empty"},
      {"<whitelist/><whitelist/>", "", "only one <whitelist> is allowed"},
      {"", " max-uri-names=\"0\"", "max-uri-names=\"0\" is not a number from 1 to 1000"},
      {"", "", "nothing to do"},
  };
  for (const Case& c : cases) {
    auto p = load(c.inner, c.attrs);
    EXPECT_FALSE(p.ok()) << c.inner;
    EXPECT_NE(p.error().find(c.expect), std::string::npos) << c.inner << " -> " << p.error();
    EXPECT_EQ(p.error().find('\n'), std::string::npos) << p.error();
  }
}

TEST_F(DnsblPluginTest, SubscribesOnlyToTheStagesItsListsNeed) {
  auto p = load(R"(<blacklist><address>192.0.2.1</address></blacklist>)");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_TRUE(p.subscribed(sdk::Stage::Connect));
  EXPECT_FALSE(p.subscribed(sdk::Stage::MailFrom));
  EXPECT_FALSE(p.subscribed(sdk::Stage::DataEnd));
  auto all = load(R"(<list zone="a.test"/><list zone="b.test" type="rhs"/><list zone="c.test" type="uri"/>)");
  ASSERT_TRUE(all.ok()) << all.error();
  EXPECT_TRUE(all.subscribed(sdk::Stage::MailFrom));
  EXPECT_TRUE(all.subscribed(sdk::Stage::DataEnd));
}

TEST_F(DnsblPluginTest, UnloadingWithLookupsInFlightIsClean) {
  auto p = load(R"(<list zone="dead.test" timeout="1s"/><blacklist><domain>slow.example</domain></blacklist>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_timeout("4.2.0.192.dead.test", POSTERN_DNS_A);
  auto r = host_.run(*p, host_.make_connect("192.0.2.4"));
  EXPECT_TRUE(r.is_pending());
  p.unload();  // DNS answers CANCELLED, timers dropped, then on_destroy
  EXPECT_TRUE(r.completed());
  EXPECT_EQ(r.effective_verdict(), Verdict::Continue);
}

}  // namespace
}  // namespace postern::plugins::dnsbl

namespace postern::plugins::dnsbl {
namespace {

TEST_F(DnsblPluginTest, CachedAnswersDecideWithoutDeferringUntilTheirTtlPasses) {
  auto p = load(R"(<list zone="zen.test"/><list zone="score.test" action="score" weight="1.5" symbol="SC"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_records("30.2.0.192.zen.test", POSTERN_DNS_A, {"127.0.0.2"}, 120);
  host_.dns().set_records("30.2.0.192.zen.test", POSTERN_DNS_TXT, {"listed"}, 120);
  sdk::DnsAnswer nx;
  nx.status = POSTERN_DNS_NXDOMAIN;
  nx.min_ttl = 60;  // the negative TTL of the list's SOA
  host_.dns().set("30.2.0.192.score.test", POSTERN_DNS_A, nx);
  host_.dns().set_records("31.2.0.192.score.test", POSTERN_DNS_A, {"127.0.0.2"}, 120);
  host_.dns().set("31.2.0.192.zen.test", POSTERN_DNS_A, nx);

  auto first = host_.run(*p, host_.make_connect("192.0.2.30"));
  host_.settle();
  EXPECT_EQ(first.verdict(), Verdict::Reject);
  const size_t queries = host_.dns().queries().size();
  EXPECT_EQ(queries, 3u);  // two lists, and the TXT of the hit

  auto again = host_.run(*p, host_.make_connect("192.0.2.30"));
  EXPECT_FALSE(again.was_deferred());
  EXPECT_EQ(again.verdict(), Verdict::Reject);
  EXPECT_EQ(again.text(), first.text());
  EXPECT_EQ(host_.dns().queries().size(), queries);
  EXPECT_TRUE(host_.logged("hit list=zen.test type=ip ip=192.0.2.30 answer=127.0.0.2 action=reject"));
  EXPECT_TRUE(host_.logged("cached=yes"));

  // Scores from the cache go straight onto the event.
  host_.run(*p, host_.make_connect("192.0.2.31"));
  host_.settle();
  auto score = host_.run(*p, host_.make_connect("192.0.2.31"));
  EXPECT_FALSE(score.was_deferred());
  EXPECT_EQ(score.symbol("SC"), 1.5);

  // The negative answer expires after 60 s: asked again (only that list).
  host_.clock().advance(61s);
  auto later = host_.run(*p, host_.make_connect("192.0.2.30"));
  EXPECT_TRUE(later.was_deferred());
  host_.settle();
  EXPECT_EQ(later.verdict(), Verdict::Reject);
}

TEST_F(DnsblPluginTest, FailedLookupsAreNotCached) {
  auto p = load(R"(<list zone="dead.test" timeout="500ms"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  host_.dns().set_timeout("32.2.0.192.dead.test", POSTERN_DNS_A);
  for (int i = 0; i < 2; ++i) {
    auto r = host_.run(*p, host_.make_connect("192.0.2.32"));
    EXPECT_TRUE(r.was_deferred());
    host_.settle();
    EXPECT_EQ(r.verdict(), Verdict::Continue);
  }
}

}  // namespace
}  // namespace postern::plugins::dnsbl
