// Tests for postern/mail/charset.hpp: conversion to UTF-8 and the UTF-8 helpers.
#include "postern/mail/charset.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace postern::mail {
namespace {

TEST(MailCharsetTest, ConvertsKnownCharsetsAndRefusesUnknownOnes) {
  struct Case {
    std::string in, charset;
    std::optional<std::string> out;
  };
  const Case cases[] = {
      {"caf\xE9", "ISO-8859-1", "caf\xC3\xA9"},
      {"\x80", "iso-8859-1", "\xE2\x82\xAC"},           // read as windows-1252
      {"\xA4", "iso-8859-15", "\xE2\x82\xAC"},
      {"\xF0\xD2\xC9", "koi8-r", "\xD0\x9F\xD1\x80\xD0\xB8"},
      {"plain", "us-ascii", "plain"},
      {"\xC3\xA9", "us-ascii", "\xC3\xA9"},             // mislabelled UTF-8 kept
      {"\xE9", "us-ascii", "\xC3\xA9"},                 // else windows-1252
      {"ok\xFF", "utf-8", "ok\xEF\xBF\xBD"},            // invalid UTF-8 marked
      {"abc", "", std::nullopt},
      {"abc", "x-no-such-charset", std::nullopt},
      {"abc", "unknown-8bit", std::nullopt},
      {"abc", "utf-8//TRANSLIT", std::nullopt},         // no iconv flags through a label
  };
  for (const Case& c : cases) EXPECT_EQ(convert_to_utf8(c.in, c.charset), c.out) << c.charset;
  EXPECT_EQ(to_utf8("abc\xE9", "x-no-such-charset"), "abc\xE9");
  EXPECT_EQ(to_utf8("", "utf-8"), "");
}

TEST(MailCharsetTest, ChecksAndRepairsUtf8) {
  const std::pair<std::string, bool> cases[] = {
      {"", true}, {"abc", true}, {"\xC3\xA9", true}, {"\xF0\x9F\x98\x80", true},
      {"\xC0\xAF", false},          // overlong
      {"\xED\xA0\x80", false},      // surrogate
      {"\xF4\x90\x80\x80", false},  // past U+10FFFF
      {"\xC3", false},              // cut short
  };
  for (const auto& [s, valid] : cases) EXPECT_EQ(is_valid_utf8(s), valid);
  EXPECT_EQ(sanitize_utf8("a\xC3z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(normalize_charset(" \"UTF-8\" "), "utf-8");
  EXPECT_EQ(normalize_charset("utf-8//IGNORE"), "");
}

TEST(MailCharsetTest, AppendsCodePointsAsUtf8) {
  const std::pair<uint32_t, std::string> cases[] = {
      {0x41, "A"}, {0xE9, "\xC3\xA9"}, {0x20AC, "\xE2\x82\xAC"}, {0x1F600, "\xF0\x9F\x98\x80"},
  };
  for (const auto& [cp, utf8] : cases) {
    std::string out;
    append_utf8(out, cp);
    EXPECT_EQ(out, utf8) << cp;
  }
}

}  // namespace
}  // namespace postern::mail
