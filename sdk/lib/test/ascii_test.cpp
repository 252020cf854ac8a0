// Tests for postern/mail/ascii.hpp.
#include "postern/mail/ascii.hpp"

#include <gtest/gtest.h>

namespace postern::mail {
namespace {

TEST(MailAsciiTest, ComparesCaseInsensitivelyInAsciiOnly) {
  struct Case {
    const char* a;
    const char* b;
    bool equal;
  };
  const Case cases[] = {
      {"Content-Type", "content-type", true}, {"", "", true},       {"INBOX", "inbox", true},
      {"abc", "abd", false},                   {"abc", "ab", false}, {"\xC3\xA9", "\xC3\x89", false},
      {"[", "{", false},  // only letters fold: '[' + 32 is '{'
  };
  for (const Case& c : cases) EXPECT_EQ(iequals(c.a, c.b), c.equal) << c.a << " / " << c.b;
  static_assert(iequals("Subject", "SUBJECT"));
  EXPECT_TRUE(istarts_with("Content-ID", "content-"));
  EXPECT_FALSE(istarts_with("Cont", "content-"));
}

TEST(MailAsciiTest, MapsCaseAndTrims) {
  EXPECT_EQ(to_lower("MiXed \xC3\x89"), "mixed \xC3\x89");
  EXPECT_EQ(to_upper("mixed"), "MIXED");
  EXPECT_EQ(trim(" \t\r\nx y\r\n"), "x y");
  EXPECT_EQ(trim(" \t"), "");
}

}  // namespace
}  // namespace postern::mail
