// Tests for postern/mail/codec.hpp: base64 (strict, lenient, encoding), quoted-printable,
// unfolding. RFC 2047 words are covered in mime_test.cpp (DecodesRfc2047EncodedWords).
#include "postern/mail/codec.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace postern::mail {
namespace {

TEST(MailCodecTest, DecodesStrictBase64AsSaslNeedsIt) {
  struct Case {
    std::string in;
    std::optional<std::string> out;
  };
  const Case cases[] = {
      {"AGFsaWNlAHNlY3JldA==", std::string("\0alice\0secret", 13)},
      {"", std::string()},
      {"YQ==", "a"},
      {"YWI=", "ab"},
      {"YWJj", "abc"},
      {"YQ", std::nullopt},        // length not a multiple of 4
      {"Y===", std::nullopt},      // padding too early
      {"YQ==YQ==", std::nullopt},  // data after padding
      {"YW=j", std::nullopt},
      {"a b=", std::nullopt},      // whitespace
      {"!!!!", std::nullopt},
      {"YWJj\r\n", std::nullopt},  // line ends
  };
  for (const Case& c : cases) EXPECT_EQ(decode_base64_strict(c.in), c.out) << c.in;
}

TEST(MailCodecTest, EncodesBase64WithPadding) {
  const std::pair<std::string, std::string> cases[] = {
      {"", ""}, {"a", "YQ=="}, {"ab", "YWI="}, {"abc", "YWJj"},
      {std::string("\0alice\0pw", 9), "AGFsaWNlAHB3"}, {"\xff\xfe\xfd", "//79"},
  };
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(encode_base64(plain), encoded);
    EXPECT_EQ(decode_base64_strict(encoded), plain);
    EXPECT_EQ(decode_base64(encoded), plain);
  }
}

TEST(MailCodecTest, EncodesBodiesInBase64Lines) {
  EXPECT_EQ(encode_base64_lines(""), "");
  EXPECT_EQ(encode_base64_lines("abc"), "YWJj\r\n");
  // 57 octets per line = 76 characters, CRLF after every line, the last too.
  const std::string in(200, '\xa5');
  const std::string out = encode_base64_lines(in);
  size_t lines = 0;
  for (size_t pos = 0; pos < out.size();) {
    const size_t eol = out.find("\r\n", pos);
    ASSERT_NE(eol, std::string::npos);
    EXPECT_LE(eol - pos, 76u);
    pos = eol + 2;
    ++lines;
  }
  EXPECT_EQ(lines, 4u);  // 57 + 57 + 57 + 29
  EXPECT_EQ(decode_base64(out), in);
}

TEST(MailCodecTest, EncodesQuotedPrintablePerRfc2045) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"a=b\r\n", "a=3Db\r\n"},
      {"tab\t\r\nend \r\n", "tab=09\r\nend=20\r\n"},  // whitespace before a line end
      {"\xff", "=FF"},
      {"bare\nlf\n", "bare\r\nlf\r\n"},
      {".\r\n", "=2E\r\n"},  // a leading dot
      {"nul\x01", "nul=01"},
  };
  for (const Case& c : cases) EXPECT_EQ(encode_quoted_printable(c.in), c.out) << c.in;
  // Soft breaks keep lines within 76 characters and decode away.
  const std::string long_line(300, 'y');
  const std::string enc = encode_quoted_printable(long_line);
  for (size_t pos = 0, eol; (eol = enc.find("\r\n", pos)) != std::string::npos; pos = eol + 2) EXPECT_LE(eol - pos, 76u);
  EXPECT_EQ(decode_quoted_printable(enc), long_line);
  const std::string binary("\x00\x80=\t \r\n\xfe", 8);
  EXPECT_EQ(decode_quoted_printable(encode_quoted_printable(binary)), binary);
}

TEST(MailCodecTest, DecodesBodyBase64Leniently) {
  const std::pair<std::string, std::string> cases[] = {
      {"aGVs\r\nbG8=\r\n", "hello"},
      {"aGVs!!bG8", "hello"},     // junk skipped
      {"YQ==YWI=", "aab"},        // concatenated encodings
      {"YWJ", "ab"},              // a partial quantum still gives its octets
      {"", ""},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(decode_base64(in), out) << in;
}

TEST(MailCodecTest, DecodesQuotedPrintable) {
  const std::pair<std::string, std::string> cases[] = {
      {"caf=C3=A9", "caf\xC3\xA9"},
      {"caf=c3=a9", "caf\xC3\xA9"},           // lower-case hex
      {"soft=\r\nbreak", "softbreak"},         // RFC 2045 §6.7 (5)
      {"trailing   \r\nx", "trailing\r\nx"},   // §6.7 (3)
      {"a =3D b", "a = b"},
      {"stray = sign=", "stray = sign"},      // '=' without hex kept; final soft break
      {"bare\nlf", "bare\nlf"},
  };
  for (const auto& [in, out] : cases) EXPECT_EQ(decode_quoted_printable(in), out) << in;
}

TEST(MailCodecTest, UnfoldsHeaderValues) {
  EXPECT_EQ(unfold("a\r\n b"), "a b");
  EXPECT_EQ(unfold("a\n\tb"), "a\tb");
  EXPECT_EQ(unfold(" x "), " x ");
}

}  // namespace
}  // namespace postern::mail
