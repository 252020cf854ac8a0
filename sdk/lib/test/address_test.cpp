#include "postern/mail/address.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::mail {
namespace {

// One item as text: "name|route|local|domain" for mailboxes, "group:name" and "end" for groups.
std::string show(const Address& a) {
  switch (a.kind) {
    case Address::Kind::GroupBegin:
      return "group:" + a.display_name.value_or("<nil>");
    case Address::Kind::GroupEnd:
      return "end";
    case Address::Kind::Mailbox:
      break;
  }
  return a.display_name.value_or("<nil>") + "|" + a.route + "|" + a.local_part + "|" + a.domain;
}

std::vector<std::string> parse(std::string_view value) {
  std::vector<std::string> out;
  for (const Address& a : parse_address_list(value)) out.push_back(show(a));
  return out;
}

TEST(AddressListTest, ReadsMailboxesGroupsAndBrokenItems) {
  struct Case {
    std::string value;
    std::vector<std::string> items;
  };
  const std::vector<Case> cases = {
      {"alice@example.org", {"<nil>||alice|example.org"}},
      {"Alice Example <alice@example.org>", {"Alice Example||alice|example.org"}},
      {"\"Last, First\" <first.last@example.org>", {"Last, First||first.last|example.org"}},
      {"\"quoted \\\"name\\\"\" <q@example.org>", {"quoted \"name\"||q|example.org"}},
      // RFC 5322 §3.4: a comment after a bare addr-spec names the mailbox.
      {"user@example.org (Real Name)", {"Real Name||user|example.org"}},
      {"a@example.org, b@example.net,, c@example.com",
       {"<nil>||a|example.org", "<nil>||b|example.net", "<nil>||c|example.com"}},
      // RFC 5322 §3.4 groups, and an empty one.
      {"Team: m1@example.org, \"Two, Quoted\" <m2@example.org>;, last@example.org",
       {"group:Team", "<nil>||m1|example.org", "Two, Quoted||m2|example.org", "end", "<nil>||last|example.org"}},
      {"undisclosed-recipients:;", {"group:undisclosed-recipients", "end"}},
      {"open group: x@example.org", {"group:open group", "<nil>||x|example.org", "end"}},
      // RFC 5322 §4.4: the obsolete route is kept apart.
      {"<@route.example,@r2.example:user@example.org>", {"<nil>|@route.example,@r2.example|user|example.org"}},
      // Quoted local parts keep their quotes; domain literals stay as written.
      {"\"local part\"@example.org, a@[192.0.2.1]", {"<nil>||\"local part\"|example.org", "<nil>||a|[192.0.2.1]"}},
      // What is missing stays empty: the caller decides how to show it.
      {"<>", {"<nil>|||"}},
      {"bare", {"<nil>||bare|"}},
      {"missingdomain@", {"<nil>||missingdomain|"}},
      {"evil doer", {"evil doer|||"}},
      // Encoded words are kept as written (decoding is the reader's choice).
      {"=?UTF-8?B?SsO8cmdlbg==?= <j@example.de>", {"=?UTF-8?B?SsO8cmdlbg==?=||j|example.de"}},
      {"", {}},
      {";,,", {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    EXPECT_EQ(parse(c.value), c.items);
  }
}

TEST(AddressListTest, SkipsCommentsAndWhitespace) {
  std::string comment;
  const std::string s = "  (one (nested) \\) )\t(two) x";
  EXPECT_EQ(skip_cfws(s, 0, &comment), s.size() - 1);
  EXPECT_EQ(comment, "two");
  EXPECT_EQ(skip_cfws("(unterminated", 0), 13u);
  EXPECT_EQ(skip_cfws("", 0), 0u);
}

TEST(AddressListTest, SurvivesHostileInput) {
  const std::vector<std::string> inputs = {std::string(10000, '<'), std::string(10000, '('), std::string(5000, ':') + ";",
                                           "\"unterminated", "[unterminated", std::string("a\0b@c", 5), "@@@,,,;;;<<>>"};
  for (const std::string& in : inputs) {
    const std::vector<Address> list = parse_address_list(in);
    EXPECT_LE(list.size(), in.size() + 1);
  }
}

}  // namespace
}  // namespace postern::mail
