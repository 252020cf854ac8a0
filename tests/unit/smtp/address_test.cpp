#include "core/smtp/address.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

struct PathCase {
  const char* input;
  bool allow_null;
  bool utf8;
  PathStatus status;
  const char* local;
  const char* domain;
};

TEST(AddressParserTest, ParsesPathsStrictly) {
  const PathCase cases[] = {
      {"<alice@example.org>", false, false, PathStatus::Ok, "alice", "example.org"},
      {" <alice@example.org> SIZE=10", false, false, PathStatus::Ok, "alice", "example.org"},
      {"<a.b+tag@sub.example.org>", false, false, PathStatus::Ok, "a.b+tag", "sub.example.org"},
      {"<\"john doe\"@example.org>", false, false, PathStatus::Ok, "\"john doe\"", "example.org"},
      {"<\"a\\\"b\"@example.org>", false, false, PathStatus::Ok, "\"a\\\"b\"", "example.org"},
      {"<user@[192.0.2.1]>", false, false, PathStatus::Ok, "user", "[192.0.2.1]"},
      {"<user@[IPv6:2001:db8::1]>", false, false, PathStatus::Ok, "user", "[IPv6:2001:db8::1]"},
      // Found by the fuzzer: a scope id or trailing junk in an address literal.
      {"<root@[IPv6:fe80::1%eth0]>", false, false, PathStatus::Syntax, "", ""},
      {"<root@[IPv6:::1 x]>", false, false, PathStatus::Syntax, "", ""},
      {"<>", true, false, PathStatus::Null, "", ""},
      {"<>", false, false, PathStatus::Syntax, "", ""},
      {"alice@example.org", false, false, PathStatus::Syntax, "", ""},
      {"<alice@example.org", false, false, PathStatus::Syntax, "", ""},
      {"<alice>", false, false, PathStatus::Syntax, "", ""},
      {"<.alice@example.org>", false, false, PathStatus::Syntax, "", ""},
      {"<alice.@example.org>", false, false, PathStatus::Syntax, "", ""},
      {"<al..ice@example.org>", false, false, PathStatus::Syntax, "", ""},
      {"<alice@-example.org>", false, false, PathStatus::Syntax, "", ""},
      {"<alice@exa_mple.org>", false, false, PathStatus::Syntax, "", ""},
      {"<alice@example..org>", false, false, PathStatus::Syntax, "", ""},
      {"<alice@[300.1.1.1]>", false, false, PathStatus::Syntax, "", ""},
      {"<ali ce@example.org>", false, false, PathStatus::Syntax, "", ""},
      {"<a<b@example.org>", false, false, PathStatus::Syntax, "", ""},
      // Relay tricks are recognised as such.
      {"<user@other.example@local.example>", false, false, PathStatus::Suspicious, "user", "local.example"},
      {"<user@local.example.>", false, false, PathStatus::Suspicious, "user", "local.example"},
      // Source routes are dropped (RFC 5321 §4.1.1.3): what remains is the real destination.
      {"<@local.example:user@other.example>", false, false, PathStatus::Ok, "user", "other.example"},
      {"<@a.example,@b.example:user@other.example>", false, false, PathStatus::Ok, "user", "other.example"},
      {"<@:user@other.example>", false, false, PathStatus::Syntax, "", ""},
      // RFC 6531
      {"<jörg@example.org>", false, false, PathStatus::NonAscii, "", ""},
      {"<jörg@exämple.org>", false, true, PathStatus::Ok, "jörg", "exämple.org"},
      {"<j\xff@example.org>", false, true, PathStatus::Syntax, "", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    PathResult r = parse_path(c.input, c.allow_null, c.utf8);
    EXPECT_EQ(r.status, c.status);
    if (c.status == PathStatus::Ok || c.status == PathStatus::Suspicious) {
      EXPECT_EQ(r.mailbox.local, c.local);
      EXPECT_EQ(r.mailbox.domain, c.domain);
    }
  }
}

TEST(AddressParserTest, ReportsSourceRouteAndRest) {
  std::string_view rest;
  PathResult r = parse_path("<@relay.example:bob@example.net> NOTIFY=NEVER", false, false, &rest);
  EXPECT_EQ(r.status, PathStatus::Ok);
  EXPECT_TRUE(r.had_source_route);
  EXPECT_EQ(rest, " NOTIFY=NEVER");
}

TEST(AddressParserTest, RejectsOverlongParts) {
  std::string local(65, 'a');
  EXPECT_EQ(parse_path("<" + local + "@example.org>", false, false).status, PathStatus::Syntax);
  std::string label(64, 'b');
  EXPECT_EQ(parse_path("<a@" + label + ".org>", false, false).status, PathStatus::Syntax);
  const std::string label63(63, 'c');
  std::string longpath = "<a@" + label63 + "." + label63 + "." + label63 + "." + label63 + ".org>";
  EXPECT_EQ(parse_path(longpath, false, false).status, PathStatus::Syntax);
}

TEST(AddressParserTest, FlagsRoutingLocalParts) {
  const struct {
    const char* input;
    bool routing;
  } cases[] = {
      {"<user%other.example@local.example>", true},
      {"<other.example!user@local.example>", true},
      {"<\"user@other.example\"@local.example>", true},
      {"<user@local.example>", false},
      {"<user+tag@local.example>", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    PathResult r = parse_path(c.input, false, false);
    ASSERT_EQ(r.status, PathStatus::Ok);
    EXPECT_EQ(local_part_is_routing(r.mailbox), c.routing);
  }
}

TEST(EsmtpParamsTest, SplitsAndValidates) {
  auto p = parse_params(" SIZE=1000 body=8BITMIME SMTPUTF8", false);
  ASSERT_TRUE(p);
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].key, "SIZE");
  EXPECT_EQ((*p)[0].value, "1000");
  EXPECT_EQ((*p)[1].key, "BODY");
  EXPECT_EQ((*p)[2].key, "SMTPUTF8");
  EXPECT_FALSE((*p)[2].value);
  EXPECT_FALSE(parse_params(" SIZE=", false));
  EXPECT_FALSE(parse_params(" -X=1", false));
  EXPECT_FALSE(parse_params(" X=a=b", false));
  EXPECT_FALSE(parse_params(" X=\xc3\xa4", false));
  EXPECT_TRUE(parse_params(" X=\xc3\xa4", true));
  EXPECT_TRUE(parse_params("", false)->empty());
}

TEST(XtextTest, DecodesAndValidates) {
  const struct {
    const char* input;
    bool valid;
    const char* decoded;
  } cases[] = {
      {"abc", true, "abc"},
      {"a+2Bb", true, "a+b"},
      {"rfc822+3Bx", true, "rfc822;x"},
      {"a+2b", false, ""},
      {"a+2", false, ""},
      {"a=b", false, ""},
      {"a b", false, ""},
      {"", true, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    auto d = decode_xtext(c.input);
    EXPECT_EQ(d.has_value(), c.valid);
    if (d) {
      EXPECT_EQ(*d, c.decoded);
    }
  }
}

}  // namespace
}  // namespace postern::core::smtp
