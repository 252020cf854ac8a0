#include "codec.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::plugins::pop3 {
namespace {

struct EncodeCase {
  const char* name;
  std::string raw;
  std::string wire;  // without the terminating ".\r\n"
};

TEST(Pop3CodecTest, EncodesCrlfLinesDotStuffedAndTerminated) {
  const EncodeCase cases[] = {
      {"crlf unchanged", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n"},
      {"bare lf becomes crlf", "Subject: a\n\nbody\nmore\n", "Subject: a\r\n\r\nbody\r\nmore\r\n"},
      {"mixed endings", "A: 1\r\nB: 2\n\r\nx\n", "A: 1\r\nB: 2\r\n\r\nx\r\n"},
      {"leading dot doubled", "A: 1\r\n\r\n.\r\n..x\r\n.y\n", "A: 1\r\n\r\n..\r\n...x\r\n..y\r\n"},
      {"no final line end", "A: 1\r\n\r\nlast", "A: 1\r\n\r\nlast\r\n"},
      {"truncated crlf at the end", "A: 1\r\n\r\nlast\r", "A: 1\r\n\r\nlast\r\n"},
      {"lone cr inside a line is data", "A: 1\r\n\r\na\rb\r\n", "A: 1\r\n\r\na\rb\r\n"},
      {"empty message", "", ""},
      {"dot only line without end", ".", "..\r\n"},
  };
  for (const auto& c : cases) {
    std::string out;
    encode_message(c.raw, std::nullopt, out);
    EXPECT_EQ(out, c.wire + ".\r\n") << c.name;
  }
}

TEST(Pop3CodecTest, WireSizeCountsCrlfLinesWithoutStuffing) {
  EXPECT_EQ(wire_size("Subject: a\r\n\r\nbody\r\n"), 20u);
  EXPECT_EQ(wire_size("Subject: a\n\nbody\n"), 20u);
  EXPECT_EQ(wire_size(".x\n"), 4u);  // the stuffed dot is not part of the message
  EXPECT_EQ(wire_size("no end"), 8u);
  EXPECT_EQ(wire_size(""), 0u);
  // The size equals the octets RETR sends minus the stuffing and the terminator.
  const std::string raw = "A: 1\n\nbody\n.dot\nend";
  std::string out;
  encode_message(raw, std::nullopt, out);
  EXPECT_EQ(wire_size(raw), out.size() - 1 /* stuffed dot */ - 3 /* ".\r\n" */);
}

TEST(Pop3CodecTest, TopSendsHeaderBlankLineAndNBodyLines) {
  const std::string raw = "A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
  struct {
    uint64_t n;
    std::string want;
  } cases[] = {
      {0, "A: 1\r\nB: 2\r\n\r\n.\r\n"},
      {1, "A: 1\r\nB: 2\r\n\r\nl1\r\n.\r\n"},
      {2, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"},
      {99, "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\nl3\r\n.\r\n"},
  };
  for (const auto& c : cases) {
    std::string out;
    encode_message(raw, c.n, out);
    EXPECT_EQ(out, c.want) << c.n;
  }
  std::string headers_only;
  encode_message("A: 1\nB: 2\n", 5, headers_only);
  EXPECT_EQ(headers_only, "A: 1\r\nB: 2\r\n.\r\n");
}

TEST(Pop3CodecTest, ParsesCommandsCaseInsensitively) {
  auto c = parse_command("retr 3");
  EXPECT_EQ(c.keyword, "RETR");
  EXPECT_EQ(c.args, "3");
  c = parse_command("PASS  two spaces ");
  EXPECT_EQ(c.keyword, "PASS");
  EXPECT_EQ(c.args, " two spaces ");
  c = parse_command("");
  EXPECT_EQ(c.keyword, "");
  c = parse_command("Quit");
  EXPECT_EQ(c.keyword, "QUIT");
  EXPECT_EQ(c.args, "");
}

TEST(Pop3CodecTest, ParsesNumbersStrictly) {
  EXPECT_EQ(parse_number("1"), 1u);
  EXPECT_EQ(parse_number("000042"), 42u);
  EXPECT_EQ(parse_number("999999999"), 999999999u);
  for (const char* bad : {"", "-1", "+1", "1a", " 1", "1 ", "1234567890", "0x10"}) {
    EXPECT_FALSE(parse_number(bad).has_value()) << bad;
  }
  auto two = split_two("3 10");
  ASSERT_TRUE(two);
  EXPECT_EQ(two->first, "3");
  EXPECT_EQ(two->second, "10");
  EXPECT_FALSE(split_two("3"));
  EXPECT_FALSE(split_two("3 10 2"));
}

}  // namespace
}  // namespace postern::plugins::pop3
