#include "core/smtp/smtp_config.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

struct Parsed {
  SmtpConfig cfg;
  std::vector<std::string> errors;
};

Parsed parse(const std::string& xml) {
  pugi::xml_document doc;
  EXPECT_TRUE(doc.load_string(xml.c_str()));
  config::Diagnostics diag("test.xml", xml);
  Parsed p;
  p.cfg = parse_smtp_config(doc.child("smtp"), diag);
  for (const auto& e : diag.errors()) p.errors.push_back(e.str());
  return p;
}

TEST(SmtpConfigTest, DefaultsAreProductionValues) {
  Parsed p = parse("<smtp/>");
  EXPECT_TRUE(p.errors.empty());
  EXPECT_EQ(p.cfg.max_line_length, 512u);
  EXPECT_EQ(p.cfg.max_hops, 100u);
  EXPECT_EQ(p.cfg.tarpit_after, 5u);
  EXPECT_EQ(p.cfg.bare_line_ending, BareLineEnding::Reject);
  EXPECT_FALSE(p.cfg.vrfy);
  EXPECT_FALSE(p.cfg.auth);
  EXPECT_TRUE(p.cfg.trusted_networks.empty());
}

TEST(SmtpConfigTest, ReadsAttributesAndChildren) {
  const std::string hash = hash_password("pw", 1000);
  Parsed p = parse("<smtp max-message-size='10M' max-recipients='7' command-timeout='30s' bare-lf='normalize'\n"
                   "      tarpit-after='3' tarpit-delay='250ms'>\n"
                   "  <local-domain>Example.TEST</local-domain>\n"
                   "  <relay-domain>gw.example</relay-domain>\n"
                   "  <trusted-network>127.0.0.1/32 10.0.0.0/8</trusted-network>\n"
                   "  <account user='alice@example.test' password-hash='" + hash + "' addresses='a@example.test'/>\n"
                   "</smtp>");
  EXPECT_TRUE(p.errors.empty()) << (p.errors.empty() ? "" : p.errors[0]);
  EXPECT_EQ(p.cfg.max_message_size, 10u * 1024 * 1024);
  EXPECT_EQ(p.cfg.max_recipients, 7u);
  EXPECT_EQ(p.cfg.command_timeout, std::chrono::seconds(30));
  EXPECT_EQ(p.cfg.tarpit_delay, std::chrono::milliseconds(250));
  EXPECT_EQ(p.cfg.bare_line_ending, BareLineEnding::Normalize);
  EXPECT_TRUE(p.cfg.accepts_domain("example.test"));
  EXPECT_TRUE(p.cfg.accepts_domain("GW.example"));
  EXPECT_FALSE(p.cfg.accepts_domain("other.example"));
  EXPECT_TRUE(p.cfg.is_trusted("127.0.0.1"));
  EXPECT_TRUE(p.cfg.is_trusted("10.1.2.3"));
  EXPECT_FALSE(p.cfg.is_trusted("127.0.0.2"));
  ASSERT_TRUE(p.cfg.auth);
  EXPECT_TRUE(p.cfg.auth->authenticate("alice@example.test", "pw"));
}

TEST(SmtpConfigTest, ReportsErrorsWithLines) {
  const struct {
    const char* xml;
    const char* expect;
  } cases[] = {
      {"<smtp max-message-size='big'/>", "test.xml:1: <smtp max-message-size"},
      {"<smtp max-line-length='100'/>", "max-line-length"},
      {"<smtp bare-lf='maybe'/>", "bare-lf"},
      {"<smtp command-timeout='soon'/>", "command-timeout"},
      {"<smtp colour='blue'/>", "unknown attribute colour"},
      {"<smtp>\n<trusted-network>not-an-ip</trusted-network></smtp>", "test.xml:2: <trusted-network>"},
      {"<smtp>\n\n<account user='a' password-hash='plain'/></smtp>", "test.xml:3: <account>"},
      {"<smtp><local-domain>bad..domain</local-domain></smtp>", "not a valid domain"},
      {"<smtp><frobnicate/></smtp>", "unknown element <frobnicate>"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.xml);
    Parsed p = parse(c.xml);
    ASSERT_EQ(p.errors.size(), 1u);
    EXPECT_NE(p.errors[0].find(c.expect), std::string::npos) << p.errors[0];
  }
}

}  // namespace
}  // namespace postern::core::smtp
