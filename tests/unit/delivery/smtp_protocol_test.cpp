#include "core/delivery/pipe.hpp"
#include "core/delivery/smtp_client.hpp"
#include "core/delivery/smtp_protocol.hpp"
#include "core/mime/mime.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sys/wait.h>

namespace postern::core::delivery {
namespace {

Reply parse_reply(std::initializer_list<const char*> lines) {
  ReplyParser p;
  size_t n = 0;
  for (const char* l : lines) {
    auto st = p.push(l);
    ++n;
    if (n < lines.size()) EXPECT_EQ(st, ReplyParser::State::More) << l;
    else EXPECT_EQ(st, ReplyParser::State::Done) << l;
  }
  return p.take();
}

TEST(SmtpReplyTest, ParsesMultilineRepliesWithEnhancedCodes) {
  Reply r = parse_reply({"250-2.1.0 first", "250-2.1.0 second", "250 2.1.0 last"});
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.1.0");
  EXPECT_EQ(r.text(), "first second last");
  EXPECT_EQ(r.str(), "250 2.1.0 first second last");

  Reply bare = parse_reply({"354"});
  EXPECT_EQ(bare.code, 354);
  EXPECT_EQ(bare.enhanced, "");

  Reply noenh = parse_reply({"550 No such user here"});
  EXPECT_EQ(noenh.enhanced, "");
  EXPECT_EQ(noenh.text(), "No such user here");

  // An enhanced code of another class than the reply is text, not a code.
  Reply wrong = parse_reply({"550 2.0.0 odd"});
  EXPECT_EQ(wrong.enhanced, "");
  Reply long_code = parse_reply({"452 4.5.3 Too many recipients"});
  EXPECT_EQ(long_code.enhanced, "4.5.3");
}

TEST(SmtpReplyTest, RejectsMalformedLines) {
  for (const char* bad : {"", "25", "abc text", "250x", "650 no such class", "199 too low"}) {
    ReplyParser p;
    EXPECT_EQ(p.push(bad), ReplyParser::State::Error) << bad;
  }
  ReplyParser mixed;
  EXPECT_EQ(mixed.push("250-first"), ReplyParser::State::More);
  EXPECT_EQ(mixed.push("251 other code"), ReplyParser::State::Error);
}

TEST(SmtpReplyTest, ParsesEhloCapabilities) {
  Reply r = parse_reply({"250-mx.example.com Hello", "250-PIPELINING", "250-SIZE 10240000", "250-8BITMIME",
                         "250-STARTTLS", "250-AUTH LOGIN PLAIN", "250-AUTH=LOGIN", "250-DSN", "250-SMTPUTF8",
                         "250-CHUNKING", "250-BINARYMIME", "250 ENHANCEDSTATUSCODES"});
  Capabilities c = parse_ehlo(r);
  EXPECT_TRUE(c.esmtp);
  EXPECT_TRUE(c.pipelining);
  EXPECT_TRUE(c.size);
  EXPECT_EQ(c.max_size, 10240000u);
  EXPECT_TRUE(c.eightbitmime && c.starttls && c.dsn && c.smtputf8 && c.chunking && c.binarymime);
  EXPECT_TRUE(c.enhanced_status);
  EXPECT_TRUE(c.auth_plain);
  EXPECT_TRUE(c.auth_login);

  Capabilities minimal = parse_ehlo(parse_reply({"250 tiny.example"}));
  EXPECT_TRUE(minimal.esmtp);
  EXPECT_FALSE(minimal.pipelining || minimal.size || minimal.starttls || minimal.auth_plain);
  Capabilities nolimit = parse_ehlo(parse_reply({"250-x", "250 SIZE"}));
  EXPECT_TRUE(nolimit.size);
  EXPECT_EQ(nolimit.max_size, 0u);
}

TEST(SmtpDotStuffTest, DoublesLeadingDotsAndNormalisesLineEnds) {
  EXPECT_EQ(dot_stuff("a\r\n.b\r\n..c\r\n"), "a\r\n..b\r\n...c\r\n.\r\n");
  EXPECT_EQ(dot_stuff(".\r\n"), "..\r\n.\r\n");
  EXPECT_EQ(dot_stuff("no final line end"), "no final line end\r\n.\r\n");
  EXPECT_EQ(dot_stuff("bare\nlf\n.dot\n"), "bare\r\nlf\r\n..dot\r\n.\r\n");
  EXPECT_EQ(dot_stuff("bare\rcr"), "bare\r\ncr\r\n.\r\n");
  EXPECT_EQ(dot_stuff(""), ".\r\n");
  EXPECT_EQ(dot_stuff("mid.dot\r\n"), "mid.dot\r\n.\r\n");
}

TEST(SmtpDowngradeTest, SevenBitMessageIsLeftAlone) {
  EXPECT_FALSE(downgrade_message("Subject: x\r\n\r\nplain ascii\r\n", false));
  EXPECT_FALSE(downgrade_message("Subject: x\r\n\r\n8bit \xc3\xa9\r\n", true));
}

TEST(SmtpDowngradeTest, ReencodesEightBitTextAsQuotedPrintable) {
  std::string in =
      "From: a@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
      "caf\xc3\xa9 = costly\r\n.leading dot\r\ntrailing space \r\n";
  auto out = downgrade_message(in, false);
  ASSERT_TRUE(out);
  EXPECT_FALSE(has_8bit(*out));
  EXPECT_EQ(out->find("Content-Transfer-Encoding: 8bit"), std::string::npos);
  auto msg = mime::Message::parse(*out);
  EXPECT_EQ(msg.parts()[0].transfer_encoding, "quoted-printable");
  EXPECT_EQ(msg.decoded_body(0), "caf\xc3\xa9 = costly\r\n.leading dot\r\ntrailing space \r\n");
  EXPECT_EQ(*msg.header("Subject"), "t");
  for (size_t pos = 0; pos < out->size();) {
    size_t nl = out->find("\r\n", pos);
    ASSERT_NE(nl, std::string::npos);
    EXPECT_LE(nl - pos, 76u);
    pos = nl + 2;
  }
}

TEST(SmtpDowngradeTest, RecursesThroughMultipartAndMessageParts) {
  std::string in =
      "Subject: multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B1\"\r\n"
      "Content-Transfer-Encoding: 8bit\r\n\r\n"
      "preamble\r\n--B1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
      "gr\xfc\xdf Gott\r\n"
      "--B1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
      "\x01\x02\xff\xfe"
      "\r\n--B1\r\nContent-Type: message/rfc822\r\n\r\n"
      "Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ninner \xe2\x82\xac\r\n"
      "--B1\r\nContent-Type: text/plain\r\n\r\nalready ascii\r\n"
      "--B1--\r\nepilogue\r\n";
  auto out = downgrade_message(in, false);
  ASSERT_TRUE(out);
  EXPECT_FALSE(has_8bit(*out));
  auto msg = mime::Message::parse(*out);
  const auto& parts = msg.parts();
  ASSERT_GE(parts.size(), 6u);
  EXPECT_EQ(parts[0].transfer_encoding, "7bit");
  std::map<std::string, size_t> by_section;
  for (size_t i = 0; i < parts.size(); ++i) by_section[parts[i].section + "/" + parts[i].content_type.subtype] = i;
  std::string all;
  for (const auto& [k, v] : by_section) all += k + " ";
  for (const char* key : {"1/plain", "2/octet-stream", "3/rfc822", "3/plain", "4/plain"})
    ASSERT_TRUE(by_section.count(key)) << key << " not in " << all;
  size_t latin = by_section.at("1/plain");
  EXPECT_EQ(parts[latin].transfer_encoding, "quoted-printable");
  EXPECT_EQ(msg.decoded_body(latin), "gr\xfc\xdf Gott");
  size_t bin = by_section.at("2/octet-stream");
  EXPECT_EQ(parts[bin].transfer_encoding, "base64");
  EXPECT_EQ(msg.decoded_body(bin), "\x01\x02\xff\xfe");
  size_t inner = by_section.at("3/plain");  // the encapsulated message shares its part's number
  EXPECT_EQ(parts[inner].transfer_encoding, "quoted-printable");
  EXPECT_EQ(msg.decoded_body(inner), "inner \xe2\x82\xac");
  size_t ascii = by_section.at("4/plain");
  EXPECT_EQ(parts[ascii].transfer_encoding, "7bit");
  EXPECT_EQ(msg.decoded_body(ascii), "already ascii");
  EXPECT_NE(out->find("preamble\r\n--B1\r\n"), std::string::npos);
  EXPECT_NE(out->find("--B1--\r\nepilogue\r\n"), std::string::npos);
}

TEST(SmtpDowngradeTest, LongLinesAreEncodedEvenForEightBitPeers) {
  std::string in = "Subject: long\r\n\r\n" + std::string(2000, 'x') + "\r\n";
  auto out = downgrade_message(in, true);
  ASSERT_TRUE(out);
  EXPECT_LE(longest_line(*out), 998u);
  auto msg = mime::Message::parse(*out);
  EXPECT_EQ(msg.decoded_body(0), std::string(2000, 'x') + "\r\n");
}

TEST(MxOrderTest, SortsByPreferenceAndShufflesTies) {
  std::mt19937 rng(42);
  std::set<std::string> firsts;
  for (int i = 0; i < 50; ++i) {
    MxSet s = order_mx({"20 c.example.", "10 a.example", "10 B.example", "30 d.example"}, rng);
    ASSERT_EQ(s.hosts.size(), 4u);
    EXPECT_FALSE(s.null_mx);
    EXPECT_EQ(s.hosts[0].preference, 10);
    EXPECT_EQ(s.hosts[1].preference, 10);
    EXPECT_EQ(s.hosts[2].host, "c.example");
    EXPECT_EQ(s.hosts[3].host, "d.example");
    firsts.insert(s.hosts[0].host);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"a.example", "b.example"}));
}

TEST(MxOrderTest, RecognisesNullMx) {
  std::mt19937 rng(1);
  EXPECT_TRUE(order_mx({"0 ."}, rng).null_mx);
  MxSet mixed = order_mx({"0 .", "10 mx.example"}, rng);  // not a null MX: the "." is ignored
  EXPECT_FALSE(mixed.null_mx);
  ASSERT_EQ(mixed.hosts.size(), 1u);
  EXPECT_EQ(mixed.hosts[0].host, "mx.example");
  EXPECT_TRUE(order_mx({"garbage", "x y"}, rng).hosts.empty());
}

TEST(PipeExitTest, MapsSysexits) {
  auto exited = [](int code) { return code << 8; };  // the wait status of exit(code)
  EXPECT_EQ(map_pipe_exit(exited(0)).code, 250);
  auto temp = map_pipe_exit(exited(75));
  EXPECT_EQ(temp.code, 451);
  EXPECT_EQ(temp.enhanced, "4.3.0");
  EXPECT_EQ(temp.description, "exit 75 (EX_TEMPFAIL)");
  auto nouser = map_pipe_exit(exited(67));
  EXPECT_EQ(nouser.code, 550);
  EXPECT_EQ(nouser.enhanced, "5.1.1");
  auto other = map_pipe_exit(exited(1));
  EXPECT_EQ(other.code, 554);
  EXPECT_EQ(other.enhanced, "5.3.0");
  EXPECT_EQ(map_pipe_exit(9 /* killed by SIGKILL */).code, 451);
}

}  // namespace
}  // namespace postern::core::delivery
