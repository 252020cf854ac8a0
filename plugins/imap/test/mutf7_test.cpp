#include "mutf7.hpp"

#include <gtest/gtest.h>

namespace postern::imap {
namespace {

TEST(Mutf7Test, RoundTripsRfc3501Examples) {
  struct Case {
    const char* wire;
    const char* utf8;
  } const cases[] = {
      {"INBOX", "INBOX"},
      {"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
      {"&-", "&"},
      {"Entw&APw-rfe", "Entw\xc3\xbc" "rfe"},
      {"A&-B", "A&B"},
      {"&2D3eAA-", "\xf0\x9f\x98\x80"},  // U+1F600, a surrogate pair
  };
  for (const auto& c : cases) {
    auto decoded = mutf7_decode(c.wire);
    ASSERT_TRUE(decoded) << c.wire;
    EXPECT_EQ(*decoded, c.utf8) << c.wire;
    EXPECT_EQ(mutf7_encode(c.utf8), c.wire) << c.wire;
  }
}

TEST(Mutf7Test, RefusesInvalidInput) {
  const char* bad[] = {
      "&",           // unterminated shift
      "&U,BTFw",     // unterminated shift
      "&AGE-",       // 'a' encoded: printable ASCII must be itself
      "&Jjo-&Jjo-",  // two adjacent shifts must be one
      "&2D0-",       // lone high surrogate
      "&3gA-",       // lone low surrogate
      "&U,BTF-",     // non-zero padding bits
      "caf\xc3\xa9", // raw 8-bit
      "a\tb",        // control character
      "&U=BT-",      // '=' is not modified base64
  };
  for (const char* b : bad) EXPECT_FALSE(mutf7_decode(b)) << b;
}

TEST(Mutf7Test, EncodesInvalidUtf8AsReplacementCharacter) {
  EXPECT_EQ(mutf7_encode("a\xff" "b"), "a&,,0-b");
}

}  // namespace
}  // namespace postern::imap
