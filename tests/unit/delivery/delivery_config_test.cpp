#include "core/delivery/delivery_config.hpp"

#include <gtest/gtest.h>

namespace postern::core::delivery {
namespace {

struct Parsed {
  DeliveryConfig cfg;
  std::vector<std::string> errors;
};

Parsed parse(const std::string& xml) {
  pugi::xml_document doc;
  EXPECT_TRUE(doc.load_string(xml.c_str()));
  config::Diagnostics diag("test.xml", xml);
  Parsed p;
  p.cfg = parse_delivery_config(doc.child("delivery"), diag);
  for (const auto& e : diag.errors()) p.errors.push_back(e.str());
  return p;
}

TEST(DeliveryConfigTest, EmptySectionGivesRfcDefaults) {
  pugi::xml_node none;
  config::Diagnostics diag("test.xml", "");
  DeliveryConfig cfg = parse_delivery_config(none, diag);
  EXPECT_TRUE(diag.ok());
  EXPECT_EQ(cfg.client.greeting_timeout, std::chrono::minutes(5));
  EXPECT_EQ(cfg.client.data_end_timeout, std::chrono::minutes(10));
  EXPECT_EQ(cfg.client.max_addresses, 5u);
  EXPECT_FALSE(cfg.smarthost);
  EXPECT_EQ(cfg.mx_port, 25);
}

TEST(DeliveryConfigTest, ReadsClientSmarthostAndRoutes) {
  auto p = parse(R"(<delivery helo="mx.example.com" connect-timeout="10s" command-timeout="2m"
      max-messages-per-connection="7" idle-connection-time="3s" ipv6="false" pipe-timeout="30s" mx-port="2525">
    <smarthost host="smtp.provider.example" port="587" tls="starttls" require-tls="true" user="u" password="p"/>
    <route match="*@example.com" to="[192.0.2.10:2525]"/>
    <route match="*@example.org" to="example.com"/>
    <route match="robot@pipe.example" pipe="/usr/local/bin/handler --flag 'two words'"/>
  </delivery>)");
  ASSERT_TRUE(p.errors.empty()) << p.errors.front();
  EXPECT_EQ(p.cfg.client.helo_name, "mx.example.com");
  EXPECT_EQ(p.cfg.client.connect_timeout, std::chrono::seconds(10));
  EXPECT_EQ(p.cfg.client.command_timeout, std::chrono::minutes(2));
  EXPECT_EQ(p.cfg.client.max_messages_per_connection, 7u);
  EXPECT_EQ(p.cfg.client.idle_connection_time, std::chrono::seconds(3));
  EXPECT_FALSE(p.cfg.client.ipv6);
  EXPECT_EQ(p.cfg.pipe_timeout, std::chrono::seconds(30));
  ASSERT_TRUE(p.cfg.smarthost);
  EXPECT_EQ(p.cfg.smarthost->host, "smtp.provider.example");
  EXPECT_EQ(p.cfg.smarthost->port, 587);
  EXPECT_TRUE(p.cfg.smarthost->require_tls);
  EXPECT_EQ(p.cfg.smarthost->auth_user, "u");
  ASSERT_EQ(p.cfg.routes.size(), 3u);
  EXPECT_EQ(p.cfg.routes[0].kind, Route::Kind::Direct);
  EXPECT_EQ(p.cfg.routes[0].hop.host, "192.0.2.10");
  EXPECT_EQ(p.cfg.routes[0].hop.port, 2525);
  EXPECT_EQ(p.cfg.routes[1].kind, Route::Kind::Domain);
  EXPECT_EQ(p.cfg.routes[1].hop.domain, "example.com");
  EXPECT_EQ(p.cfg.routes[1].hop.port, 2525);  // mx-port applies to Domain routes
  EXPECT_EQ(p.cfg.routes[2].kind, Route::Kind::Pipe);
  EXPECT_EQ(p.cfg.routes[2].argv, (std::vector<std::string>{"/usr/local/bin/handler", "--flag", "two words"}));
  EXPECT_EQ(p.cfg.routes[2].line, 6u);
}

TEST(DeliveryConfigTest, ReportsErrorsWithLines) {
  auto p = parse(R"(<delivery connect-timeout="soon" bogus="1">
    <smarthost host="bad host" tls="sometimes"/>
    <route match="example.com" to="[192.0.2.1:99999]"/>
    <route match="*@a.example" pipe="handler"/>
    <route match="*@b.example" pipe="/bin/x 'open"/>
    <route match="*@c.example"/>
    <smarthost host="second.example"/>
    <route match="*@d.example" to="[h.example]" tls="none" user="u" password="p"/>
    <relay/>
  </delivery>)");
  std::vector<std::string> expected = {
      "test.xml:1: <delivery>: unknown attribute bogus",
      "test.xml:1: <delivery connect-timeout=\"soon\">: not a positive duration (e.g. 5m, 30s, 250ms)",
      "test.xml:2: <smarthost host=\"bad host\">: expected a host name or an IP address",
      "test.xml:2: <smarthost tls=\"sometimes\">: expected starttls, implicit or none",
      "test.xml:3: <route match=\"example.com\">: a mask matches a whole address; did you mean \"*@example.com\"?",
      "test.xml:3: <route to=\"[192.0.2.1:99999]\">: expected [host], [host:port] or [ipv6]:port",
      "test.xml:4: <route pipe=\"handler\">: the program needs an absolute path (no shell, no PATH)",
      "test.xml:5: <route pipe=\"/bin/x 'open\">: unterminated single quote",
      "test.xml:6: <route>: exactly one of to=\"[host:port]\", to=\"domain\" or pipe=\"/path args\" is required",
      "test.xml:7: <smarthost>: only one smarthost may be configured",
      "test.xml:8: <route>: AUTH needs TLS; set tls=\"starttls\" or \"implicit\", or allow-cleartext-auth=\"true\"",
      "test.xml:9: <delivery>: unknown element <relay>",
  };
  EXPECT_EQ(p.errors, expected);
}

TEST(DeliveryConfigTest, ImplicitTlsSmarthostDefaultsToPort465) {
  auto p = parse(R"(<delivery><smarthost host="[192.0.2.5]" tls="implicit"/></delivery>)");
  ASSERT_TRUE(p.errors.empty()) << p.errors.front();
  EXPECT_EQ(p.cfg.smarthost->host, "192.0.2.5");
  EXPECT_EQ(p.cfg.smarthost->port, 465);
  EXPECT_EQ(p.cfg.smarthost->tls, config::TlsMode::Implicit);
}

TEST(DeliveryConfigTest, RouteFirstMatchWinsThenSmarthostThenMx) {
  auto p = parse(R"(<delivery>
    <route match="boss@example.com" to="[10.0.0.1]"/>
    <route match="*@EXAMPLE.com" to="[10.0.0.2:26]"/>
    <route match="*@*.example.net" to="relay.example.org"/>
    <route match="robot?@pipe.example" pipe="/usr/bin/robot -v"/>
  </delivery>)");
  ASSERT_TRUE(p.errors.empty()) << p.errors.front();
  auto d = route(p.cfg, "Boss@Example.COM");
  EXPECT_EQ(d.via, Decision::Via::Smtp);
  EXPECT_EQ(d.hop.key(), "direct:10.0.0.1:25");
  EXPECT_EQ(route(p.cfg, "ann@example.com").hop.key(), "direct:10.0.0.2:26");
  auto dom = route(p.cfg, "x@mail.example.net");
  EXPECT_EQ(dom.hop.kind, NextHop::Kind::Mx);
  EXPECT_EQ(dom.hop.domain, "relay.example.org");
  auto pipe = route(p.cfg, "robot7@pipe.example");
  EXPECT_EQ(pipe.via, Decision::Via::Pipe);
  EXPECT_EQ(pipe.argv, (std::vector<std::string>{"/usr/bin/robot", "-v"}));
  auto mx = route(p.cfg, "robot77@pipe.example");  // '?' is one character
  EXPECT_EQ(mx.via, Decision::Via::Smtp);
  EXPECT_EQ(mx.hop.key(), "mx:pipe.example");

  p.cfg.smarthost = NextHop{};
  p.cfg.smarthost->kind = NextHop::Kind::Direct;
  p.cfg.smarthost->host = "smarthost.example";
  EXPECT_EQ(route(p.cfg, "someone@elsewhere.example").hop.key(), "direct:smarthost.example:25");
  EXPECT_EQ(route(p.cfg, "ann@example.com").hop.key(), "direct:10.0.0.2:26");  // routes before the smarthost
}

TEST(DeliveryConfigTest, MaskMatchingIsWholeAddressAndCaseInsensitive) {
  struct Row {
    const char* mask;
    const char* address;
    bool match;
  } rows[] = {
      {"*@example.com", "a@example.com", true},     {"*@example.com", "a@sub.example.com", false},
      {"*@*example.com", "a@sub.example.com", true}, {"*", "anything@anywhere", true},
      {"a?c@x", "abc@x", true},                      {"a?c@x", "ac@x", false},
      {"*@EXAMPLE.COM", "A@example.com", true},      {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa", false},
      {"user@example.com", "user@example.com.evil", false},
  };
  for (const auto& r : rows) EXPECT_EQ(mask_matches(r.mask, r.address), r.match) << r.mask << " " << r.address;
}

TEST(DeliveryConfigTest, SplitsCommandLinesWithoutShell) {
  std::string err;
  EXPECT_EQ(*split_command_line(R"(/bin/x  a "b c" 'd e' f\ g "h\"i" '' )"),
            (std::vector<std::string>{"/bin/x", "a", "b c", "d e", "f g", "h\"i", ""}));
  EXPECT_FALSE(split_command_line("/bin/x \"open", &err));
  EXPECT_EQ(err, "unterminated double quote");
  EXPECT_FALSE(split_command_line("/bin/x \\", &err));
}

TEST(DeliveryConfigTest, ParsesBracketHosts) {
  using P = std::pair<std::string, uint16_t>;
  EXPECT_EQ(parse_bracket_host("[192.0.2.10:2525]"), P("192.0.2.10", 2525));
  EXPECT_EQ(parse_bracket_host("[Mail.Example.com]"), P("mail.example.com", 25));
  EXPECT_EQ(parse_bracket_host("[mail.example.com]:587"), P("mail.example.com", 587));
  EXPECT_EQ(parse_bracket_host("[2001:db8::1]"), P("2001:db8::1", 25));
  EXPECT_EQ(parse_bracket_host("[2001:db8::1]:2525"), P("2001:db8::1", 2525));
  EXPECT_FALSE(parse_bracket_host("mail.example.com"));
  EXPECT_FALSE(parse_bracket_host("[host:0]"));
  EXPECT_FALSE(parse_bracket_host("[]"));
  EXPECT_FALSE(parse_bracket_host("[bad host]"));
}

}  // namespace
}  // namespace postern::core::delivery
