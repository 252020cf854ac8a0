// Tests for plugins/imap/src/message.cpp: MIME tree, ENVELOPE, BODY and
// BODYSTRUCTURE, BODY[section], dates, decoding. Expected BODYSTRUCTUREs of
// the multipart messages were checked against Dovecot 2.3 (case aside).
#include "message.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>

namespace postern::imap {
namespace {

std::shared_ptr<const ParsedMessage> parse(std::string raw) {
  return ParsedMessage::parse(std::make_shared<const std::string>(std::move(raw)));
}

std::string section(const ParsedMessage& m, std::vector<uint32_t> part, Section::Kind kind = Section::Kind::Full,
                    std::vector<std::string> fields = {}) {
  Section s;
  s.part = std::move(part);
  s.kind = kind;
  s.fields = std::move(fields);
  return section_text(m, s);
}

// Whether the parenthesised output is balanced outside quoted strings and literals.
bool balanced(const std::string& s) {
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\') ++i;
      }
    } else if (c == '{') {
      size_t close = s.find("}\r\n", i);
      if (close == std::string::npos) return false;
      size_t n = std::stoul(s.substr(i + 1, close - i - 1));
      i = close + 2 + n;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')') {
      if (--depth < 0) return false;
    }
  }
  return depth == 0;
}

const char* kAlternativeWithAttachment =
    "From: Alice Example <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: Report\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n"
    "\r\n"
    "This is the preamble.\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Gr=C3=BC=C3=9Fe\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=UTF-8\r\n"
    "\r\n"
    "<p>Hi</p>\r\n"
    "<p>there</p>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-ID: <part3@example.org>\r\n"
    "Content-Description: The report\r\n"
    "\r\n"
    "JVBERi0xLjQK\r\n"
    "--outer--\r\n"
    "This is the epilogue.\r\n";

TEST(MessageTest, SimpleTextBodyAndBodystructureFollowRfc3501) {
  auto m = parse("From: a@b.example\r\nSubject: hi\r\n\r\nHello world\r\n");
  EXPECT_EQ(body_structure(*m, false), R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1))");
  EXPECT_EQ(body_structure(*m, true), R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL))");
}

TEST(MessageTest, TextWithoutCharsetGetsUsAsciiAppended) {
  auto m = parse("Content-Type: text/plain; format=flowed\r\n\r\nx\r\n");
  EXPECT_EQ(body_structure(*m, false),
            R"(("TEXT" "PLAIN" ("FORMAT" "flowed" "CHARSET" "us-ascii") NIL NIL "7BIT" 3 1))");
}

TEST(MessageTest, MultipartAlternativeWithAttachment) {
  auto m = parse(kAlternativeWithAttachment);
  EXPECT_EQ(body_structure(*m, true),
            "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"QUOTED-PRINTABLE\" 15 0 NIL NIL NIL NIL)"
            "(\"TEXT\" \"HTML\" (\"CHARSET\" \"UTF-8\") NIL NIL \"7BIT\" 23 1 NIL NIL NIL NIL)"
            " \"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)"
            "(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<part3@example.org>\" \"The report\" \"BASE64\" 12"
            " NIL (\"ATTACHMENT\" (\"FILENAME\" \"report.pdf\")) NIL NIL)"
            " \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)");
  EXPECT_EQ(body_structure(*m, false),
            "(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"QUOTED-PRINTABLE\" 15 0)"
            "(\"TEXT\" \"HTML\" (\"CHARSET\" \"UTF-8\") NIL NIL \"7BIT\" 23 1) \"ALTERNATIVE\")"
            "(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<part3@example.org>\" \"The report\" \"BASE64\" 12)"
            " \"MIXED\")");
  EXPECT_EQ(section(*m, {1, 1}), "Gr=C3=BC=C3=9Fe");  // the CRLF before a delimiter is the delimiter's
  EXPECT_EQ(section(*m, {1, 2}), "<p>Hi</p>\r\n<p>there</p>");
  EXPECT_EQ(section(*m, {2}), "JVBERi0xLjQK");
  EXPECT_EQ(section(*m, {2}, Section::Kind::Mime),
            "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
            "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-ID: <part3@example.org>\r\n"
            "Content-Description: The report\r\n\r\n");
  EXPECT_EQ(section(*m, {3}), "");
  EXPECT_EQ(section(*m, {1, 3}), "");
  EXPECT_EQ(section(*m, {2, 1}), "");  // a leaf has no sub-parts
  EXPECT_EQ(section(*m, {1, 1}, Section::Kind::Header), "");  // HEADER needs a message/rfc822 part
  EXPECT_EQ(decoded_text(*m, *m->part({1, 1})), "Gr\xC3\xBC\xC3\x9F" "e");
}

const char* kNestedMessage =
    "From: outer@example.org\r\n"
    "Subject: Fwd: inner\r\n"
    "Content-Type: multipart/mixed; boundary=b1\r\n"
    "\r\n"
    "--b1\r\n"
    "\r\n"
    "See attached.\r\n"
    "--b1\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Description: forwarded\r\n"
    "\r\n"
    "From: \"Inner, Sender\" <inner@example.com>\r\n"
    "To: group: a@x.example, b@y.example;\r\n"
    "Subject: inner\r\n"
    "Message-ID: <inner@example.com>\r\n"
    "Content-Type: multipart/alternative; boundary=b2\r\n"
    "\r\n"
    "--b2\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "plain\r\n"
    "--b2\r\n"
    "Content-Type: text/html\r\n"
    "\r\n"
    "<b>html</b>\r\n"
    "--b2--\r\n"
    "--b1--\r\n";

TEST(MessageTest, NestedMessageRfc822) {
  auto m = parse(kNestedMessage);
  EXPECT_EQ(body_structure(*m, false),
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 0)"
            "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded\" \"7BIT\" 277"
            " (NIL \"inner\" ((\"Inner, Sender\" NIL \"inner\" \"example.com\")) ((\"Inner, Sender\" NIL \"inner\" "
            "\"example.com\")) ((\"Inner, Sender\" NIL \"inner\" \"example.com\")) ((NIL NIL \"group\" NIL)"
            "(NIL NIL \"a\" \"x.example\")(NIL NIL \"b\" \"y.example\")(NIL NIL NIL NIL)) NIL NIL NIL "
            "\"<inner@example.com>\")"
            " ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 0)"
            "(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 11 0) \"ALTERNATIVE\") 15)"
            " \"MIXED\")");
  // RFC 3501 §6.4.5 part numbering through an encapsulated message.
  EXPECT_EQ(section(*m, {1}), "See attached.");
  EXPECT_EQ(section(*m, {1}, Section::Kind::Mime), "\r\n");
  EXPECT_EQ(section(*m, {2}, Section::Kind::Mime), "Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n");
  EXPECT_EQ(section(*m, {2}, Section::Kind::HeaderFields, {"subject", "MESSAGE-ID"}),
            "Subject: inner\r\nMessage-ID: <inner@example.com>\r\n\r\n");
  EXPECT_EQ(section(*m, {2}, Section::Kind::Header).substr(0, 43), "From: \"Inner, Sender\" <inner@example.com>\r\n");
  EXPECT_TRUE(section(*m, {2}, Section::Kind::Text).starts_with("--b2\r\n"));
  EXPECT_EQ(section(*m, {2, 1}), "plain");
  EXPECT_EQ(section(*m, {2, 2}), "<b>html</b>");
  EXPECT_EQ(section(*m, {2, 2}, Section::Kind::Mime), "Content-Type: text/html\r\n\r\n");
  EXPECT_EQ(section(*m, {2, 3}), "");
  EXPECT_TRUE(section(*m, {2}).starts_with("From: \"Inner, Sender\""));
  EXPECT_EQ(section(*m, {2}).size(), m->part({2})->size);
}

TEST(MessageTest, NonMultipartMessageHasOnlyPartOne) {
  auto m = parse("Subject: x\r\nX-Other: y\r\n\r\nbody\r\n");
  EXPECT_EQ(section(*m, {1}), "body\r\n");
  EXPECT_EQ(section(*m, {1}, Section::Kind::Mime), "Subject: x\r\nX-Other: y\r\n\r\n");
  EXPECT_EQ(section(*m, {2}), "");
  EXPECT_EQ(section(*m, {1, 1}), "");
  EXPECT_EQ(section(*m, {}), "Subject: x\r\nX-Other: y\r\n\r\nbody\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::Header), "Subject: x\r\nX-Other: y\r\n\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::Text), "body\r\n");
  EXPECT_EQ(m->part({0}), nullptr);
}

TEST(MessageTest, HeaderFieldsKeepFoldingAndMatchCaseInsensitively) {
  auto m = parse(
      "Received: from a\r\n  by b\r\nSubject: folded\r\n\tsubject\r\nFrom: x@y\r\nsubject: second\r\n\r\nbody\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::HeaderFields, {"SUBJECT"}),
            "Subject: folded\r\n\tsubject\r\nsubject: second\r\n\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::HeaderFields, {"X-None"}), "\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::HeaderFieldsNot, {"subject", "received"}), "From: x@y\r\n\r\n");
  EXPECT_EQ(m->header("SUBJECT"), "folded\tsubject");
  EXPECT_EQ(m->header("x-none"), std::nullopt);
}

TEST(MessageTest, BareLfMessageIsSentWithCrlfAndSizedAsSent) {
  auto m = parse("Subject: lf\nContent-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: text/plain\n\none\ntwo\n--z--\n");
  EXPECT_EQ(section(*m, {}), "Subject: lf\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Type: "
                             "text/plain\r\n\r\none\r\ntwo\r\n--z--\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::Header), "Subject: lf\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n");
  EXPECT_EQ(section(*m, {1}), "one\r\ntwo");
  EXPECT_EQ(body_structure(*m, false), R"((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 1) "MIXED"))");
  EXPECT_EQ(to_crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
  EXPECT_EQ(crlf_size("a\nb\r\nc\n"), 9u);
}

TEST(MessageTest, MessageWithoutHeaderBodySeparatorIsAllHeader) {
  auto m = parse("Subject: only a header\r\nFrom: a@b.example\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::Header), "Subject: only a header\r\nFrom: a@b.example\r\n");
  EXPECT_EQ(section(*m, {}, Section::Kind::Text), "");
  EXPECT_EQ(body_structure(*m, false), R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0))");
  EXPECT_EQ(m->header("from"), "a@b.example");
}

TEST(MessageTest, EmptyMessage) {
  auto m = parse("");
  EXPECT_EQ(body_structure(*m, true), R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL))");
  EXPECT_EQ(envelope(*m), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  EXPECT_EQ(section(*m, {}), "");
  auto null = ParsedMessage::parse(nullptr);
  EXPECT_EQ(null->raw(), "");
}

TEST(MessageTest, MissingFinalBoundaryKeepsTheLastPart) {
  auto m = parse("Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nfirst\r\n--q\r\n\r\nsecond\r\nmore\r\n");
  ASSERT_EQ(m->root().children.size(), 2u);
  EXPECT_EQ(section(*m, {2}), "second\r\nmore\r\n");
  EXPECT_EQ(m->part({2})->lines, 2u);
}

TEST(MessageTest, BoundaryNeedsTheWholeDelimiterLine) {
  // "--q" followed by other text is not a delimiter; trailing padding is (RFC 2046 §5.1.1).
  auto m = parse("Content-Type: multipart/mixed; boundary=q\r\n\r\n--q \t\r\n\r\n--qq is not\r\n--q--\r\n");
  ASSERT_EQ(m->root().children.size(), 1u);
  EXPECT_EQ(section(*m, {1}), "--qq is not");
}

TEST(MessageTest, MultipartWithoutBoundaryIsSentWithOneEmptyPart) {
  auto m = parse("Content-Type: multipart/mixed\r\n\r\nno parts here\r\n");
  EXPECT_EQ(body_structure(*m, false), R"((("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED"))");
  EXPECT_EQ(m->part({1}), nullptr);
}

TEST(MessageTest, DigestPartsDefaultToMessageRfc822) {
  auto m = parse(
      "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody one\r\n--d\r\n"
      "Content-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n");
  ASSERT_EQ(m->root().children.size(), 2u);
  EXPECT_TRUE(m->root().children[0].is_message());
  EXPECT_EQ(m->root().children[1].type, "text");
  EXPECT_EQ(section(*m, {1}, Section::Kind::HeaderFields, {"Subject"}), "Subject: one\r\n\r\n");
  EXPECT_EQ(section(*m, {1, 1}), "body one");
}

TEST(MessageTest, NestedMultipartReusingTheParentBoundaryTakesTheLines) {
  // As Dovecot does: the innermost multipart with the boundary owns the delimiter lines.
  auto m = parse(
      "Content-Type: multipart/mixed; boundary=same\r\n\r\n--same\r\n"
      "Content-Type: multipart/alternative; boundary=same\r\n\r\n--same\r\n\r\na\r\n--same\r\n\r\nb\r\n--same--\r\n"
      "--same\r\n\r\nc\r\n--same--\r\n");
  ASSERT_EQ(m->root().children.size(), 2u);
  EXPECT_EQ(m->root().children[0].children.size(), 2u);
  EXPECT_EQ(section(*m, {2}), "c");
}

TEST(MessageTest, InnerPartEndsAtAnOuterBoundary) {
  auto m = parse(
      "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n"
      "--i\r\n\r\ninner\r\n--o\r\n\r\nouter two\r\n--o--\r\n");
  ASSERT_EQ(m->root().children.size(), 2u);
  EXPECT_EQ(section(*m, {1, 1}), "inner");
  EXPECT_EQ(section(*m, {2}), "outer two");
}

TEST(MessageTest, Rfc2231ContinuationsAndCharsets) {
  auto m = parse(
      "Content-Type: application/octet-stream;\r\n"
      " name*0*=utf-8''%C3%A9t%C3%A9;\r\n"
      " name*1=\" report.pdf\"\r\n"
      "Content-Disposition: attachment; filename*=iso-8859-1'fr'%E9t%E9.txt; size=12\r\n"
      "\r\nxx\r\n");
  const MimePart& p = m->root();
  ASSERT_NE(p.param("name"), nullptr);
  EXPECT_EQ(*p.param("name"), "\xC3\xA9t\xC3\xA9 report.pdf");
  ASSERT_EQ(p.disposition_params.size(), 2u);
  EXPECT_EQ(p.disposition_params[0].second, "\xC3\xA9t\xC3\xA9.txt");
  // Non-ASCII values keep the RFC 2231 form on the wire (8-bit is not allowed in quoted strings).
  EXPECT_EQ(body_structure(*m, true),
            "(\"APPLICATION\" \"OCTET-STREAM\" (\"NAME*\" \"utf-8''%C3%A9t%C3%A9%20report.pdf\") NIL NIL \"7BIT\" 4 NIL"
            " (\"ATTACHMENT\" (\"FILENAME*\" \"iso-8859-1'fr'%E9t%E9.txt\" \"SIZE\" \"12\")) NIL NIL)");
}

TEST(MessageTest, Rfc2231AsciiValuesAreSentPlainly) {
  auto m = parse("Content-Type: text/plain; charset*=us-ascii'en'utf-8; title*0=\"a \"; title*1=b\r\n\r\nx");
  EXPECT_EQ(body_structure(*m, false), R"(("TEXT" "PLAIN" ("CHARSET" "utf-8" "TITLE" "a b") NIL NIL "7BIT" 1 0))");
}

TEST(MessageTest, ParametersAreParsedLeniently) {
  auto m = parse(
      "Content-Type: Text/HTML (a comment); CHARSET = \"iso-8859-1\" ; boundary=----=_Part_1; name=a b.htm\r\n"
      "Content-Transfer-Encoding: Base64 (comment)\r\n"
      "Content-Disposition: inline; filename=x.txt (the file); size=3\r\n\r\n");
  EXPECT_EQ(m->root().type, "text");
  EXPECT_EQ(m->root().subtype, "html");
  EXPECT_EQ(m->root().encoding, "base64");
  ASSERT_NE(m->root().param("boundary"), nullptr);
  EXPECT_EQ(*m->root().param("boundary"), "----=_Part_1");
  EXPECT_EQ(*m->root().param("name"), "a b.htm");
  EXPECT_EQ(*m->root().param("charset"), "iso-8859-1");
  ASSERT_EQ(m->root().disposition_params.size(), 2u);
  EXPECT_EQ(m->root().disposition_params[0].second, "x.txt");
  EXPECT_EQ(m->root().disposition_params[1].second, "3");
}

TEST(MessageTest, InvalidContentTypeMeansTextPlain) {
  auto m = parse("Content-Type: text; charset=utf-8\r\n\r\nx\r\n");
  EXPECT_EQ(body_structure(*m, false), R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 3 1))");
}

TEST(MessageTest, SinglePartExtensionData) {
  auto m = parse(
      "Content-Type: image/png\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
      "Content-Disposition: inline\r\nContent-Language: en, de (German)\r\n"
      "Content-Location: http://example.org/\r\n a.png\r\n\r\niVBO\r\n");
  EXPECT_EQ(body_structure(*m, true),
            "(\"IMAGE\" \"PNG\" NIL NIL NIL \"7BIT\" 6 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"INLINE\" NIL) (\"en\" \"de\")"
            " \"http://example.org/a.png\")");
}

TEST(MessageTest, MultipartExtensionData) {
  auto m = parse(
      "Content-Type: multipart/related; boundary=r; type=\"text/html\"\r\nContent-Language: fr\r\n\r\n"
      "--r\r\nContent-Type: text/html\r\n\r\n<p>\r\n--r--\r\n");
  EXPECT_EQ(body_structure(*m, true),
            "((\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 3 0 NIL NIL NIL NIL) \"RELATED\""
            " (\"BOUNDARY\" \"r\" \"TYPE\" \"text/html\") NIL (\"fr\") NIL)");
}

TEST(MessageTest, EightBitParameterValuesAreSentAsLiterals) {
  auto m = parse("Content-Type: application/pdf; name=\"r\xC3\xA9sum\xC3\xA9.pdf\"\r\n\r\n");
  EXPECT_EQ(body_structure(*m, false),
            "(\"APPLICATION\" \"PDF\" (\"NAME\" {12}\r\nr\xC3\xA9sum\xC3\xA9.pdf) NIL NIL \"7BIT\" 0)");
}

TEST(MessageTest, DeepMultipartNestingStopsAtTheLimit) {
  std::string raw;
  for (int i = 0; i < 1000; ++i) raw += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" + std::to_string(i) + "\r\n";
  raw += "\r\ninnermost\r\n";
  auto m = parse(raw);
  int depth = 0;
  const MimePart* p = &m->root();
  while (!p->children.empty()) {
    p = &p->children[0];
    ++depth;
  }
  EXPECT_EQ(depth, kMaxMimeDepth);
  EXPECT_EQ(p->type, "application");
  EXPECT_EQ(p->subtype, "octet-stream");
  std::string bs = body_structure(*m, true);
  EXPECT_TRUE(balanced(bs));
  EXPECT_TRUE(section(*m, std::vector<uint32_t>(kMaxMimeDepth, 1)).ends_with("innermost\r\n"));
}

TEST(MessageTest, DeepMessageRfc822NestingStopsAtTheLimit) {
  std::string raw;
  for (int i = 0; i < 1000; ++i) raw += "Subject: level " + std::to_string(i) + "\r\nContent-Type: message/rfc822\r\n\r\n";
  raw += "Subject: last\r\n\r\nbody\r\n";
  auto m = parse(raw);
  EXPECT_TRUE(balanced(body_structure(*m, true)));
  EXPECT_TRUE(balanced(envelope(*m)));
}

TEST(MessageTest, PartCountIsLimited) {
  std::string raw = "Content-Type: multipart/mixed; boundary=p\r\n\r\n";
  for (size_t i = 0; i < kMaxMimeParts + 500; ++i) raw += "--p\r\n\r\nx\r\n";
  raw += "--p--\r\n";
  auto m = parse(raw);
  EXPECT_EQ(m->root().children.size(), kMaxMimeParts - 1);  // the root counts too
  EXPECT_TRUE(balanced(body_structure(*m, false)));
}

TEST(MessageTest, MalformedInputNeverBreaksTheOutput) {
  std::mt19937 rng(12345);
  const std::string seeds[] = {kAlternativeWithAttachment, kNestedMessage};
  const char alphabet[] = "-\r\n:;=\"()<>@,\\ \t*'%?Bb\x80\xff\0";
  for (int round = 0; round < 3000; ++round) {
    std::string raw = seeds[round % 2];
    int edits = 1 + static_cast<int>(rng() % 12);
    for (int e = 0; e < edits && !raw.empty(); ++e) {
      size_t pos = rng() % raw.size();
      switch (rng() % 3) {
        case 0: raw[pos] = alphabet[rng() % (sizeof alphabet - 1)]; break;
        case 1: raw.erase(pos, rng() % 20); break;
        default: raw.insert(pos, 1, alphabet[rng() % (sizeof alphabet - 1)]); break;
      }
    }
    auto m = parse(raw);
    ASSERT_TRUE(balanced(body_structure(*m, true))) << raw;
    ASSERT_TRUE(balanced(body_structure(*m, false))) << raw;
    ASSERT_TRUE(balanced(envelope(*m))) << raw;
    for (const auto& path : std::vector<std::vector<uint32_t>>{{1}, {2}, {1, 1}, {2, 1}, {2, 2}}) {
      for (auto kind : {Section::Kind::Full, Section::Kind::Header, Section::Kind::Text, Section::Kind::Mime}) {
        std::string text = section(*m, path, kind);
        ASSERT_LE(text.size(), 2 * raw.size() + 2);
      }
    }
  }
}

TEST(MessageTest, EnvelopeOfRfc3501Example) {
  auto m = parse(
      "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
      "From: Terry Gray <gray@cac.washington.edu>\r\n"
      "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
      "To: imap@cac.washington.edu\r\n"
      "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
      "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
      "\r\n");
  EXPECT_EQ(envelope(*m),
            "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\""
            " ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" "
            "\"cac.washington.edu\")) ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\"))"
            " ((NIL NIL \"imap\" \"cac.washington.edu\")) ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
            "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \"<B27397-0100000@cac.washington.edu>\")");
}

TEST(MessageTest, EnvelopeAddressForms) {
  auto m = parse(
      "From: \"Doe, \\\"J\\\"\" <john@example.org>\r\n"
      "Sender: sender@example.org (The Sender)\r\n"
      "Reply-To:\r\n"
      "To: undisclosed-recipients:;\r\n"
      "Cc: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.de>, <@route.example:user@host.example>, \"quoted local\"@x.example\r\n"
      "Bcc: Team: one@t.example, Two <two@t.example>;, after@t.example\r\n"
      "Cc: bare\r\n"
      "In-Reply-To: <parent@example.org>\r\n"
      "Subject: =?utf-8?B?w6l0w6k=?=\r\n"
      "\r\n");
  EXPECT_EQ(envelope(*m),
            "(NIL \"=?utf-8?B?w6l0w6k=?=\""
            " ((\"Doe, \\\"J\\\"\" NIL \"john\" \"example.org\"))"
            " ((\"The Sender\" NIL \"sender\" \"example.org\"))"
            " ((\"Doe, \\\"J\\\"\" NIL \"john\" \"example.org\"))"  // empty Reply-To takes From
            " ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"
            // RFC 3501 §7.4.2: the obsolete source route is the address's adl (as Dovecot sends it).
            " ((\"=?UTF-8?Q?J=C3=B6rg?=\" NIL \"joerg\" \"example.de\")(NIL \"@route.example\" \"user\" \"host.example\")"
            "(NIL NIL \"\\\"quoted local\\\"\" \"x.example\")(NIL NIL \"bare\" \"MISSING_DOMAIN\"))"
            " ((NIL NIL \"Team\" NIL)(NIL NIL \"one\" \"t.example\")(\"Two\" NIL \"two\" \"t.example\")(NIL NIL NIL NIL)"
            "(NIL NIL \"after\" \"t.example\"))"
            " \"<parent@example.org>\" NIL)");
}

TEST(MessageTest, EnvelopeUsesLiteralsForEightBitAndLineBreaks) {
  auto m = parse("Subject: caf\xC3\xA9\r\nFrom: J\xC3\xB6rg <j@example.de>\r\n\r\n");
  EXPECT_EQ(envelope(*m),
            "(NIL {5}\r\ncaf\xC3\xA9 (({5}\r\nJ\xC3\xB6rg NIL \"j\" \"example.de\")) (({5}\r\nJ\xC3\xB6rg NIL \"j\" "
            "\"example.de\")) (({5}\r\nJ\xC3\xB6rg NIL \"j\" \"example.de\")) NIL NIL NIL NIL NIL)");
}

TEST(MessageTest, NulOctetsNeverReachAString) {
  auto m = parse(std::string("Subject: a\0b\r\nContent-Type: text/plain; name=\"x\0y\"\r\n\r\n", 54));
  EXPECT_EQ(envelope(*m), "(NIL \"ab\" NIL NIL NIL NIL NIL NIL NIL NIL)");
  EXPECT_EQ(body_structure(*m, false), R"(("TEXT" "PLAIN" ("NAME" "xy" "CHARSET" "us-ascii") NIL NIL "7BIT" 0 0))");
}

TEST(MessageTest, FormatsInternalDate) {
  EXPECT_EQ(format_internal_date(0), "01-Jan-1970 00:00:00 +0000");
  EXPECT_EQ(format_internal_date(837571465), "17-Jul-1996 02:44:25 +0000");
  EXPECT_EQ(format_internal_date(951782400), "29-Feb-2000 00:00:00 +0000");
  EXPECT_EQ(format_internal_date(-1), "31-Dec-1969 23:59:59 +0000");
}

TEST(MessageTest, ParsesInternalDateWithZone) {
  EXPECT_EQ(parse_internal_date("17-Jul-1996 02:44:25 -0700"), 837596665);
  EXPECT_EQ(parse_internal_date("\"17-Jul-1996 09:44:25 +0000\""), 837596665);
  EXPECT_EQ(parse_internal_date(" 7-Jan-1970 00:00:00 +0000"), 6 * 86400);
  EXPECT_EQ(parse_internal_date("07-jan-1970 01:00:00 +0100"), 6 * 86400);
  for (const char* bad : {"", "17-Jul-1996", "17-Jul-1996 02:44:25", "32-Jul-1996 02:44:25 +0000",
                          "29-Feb-1999 00:00:00 +0000", "17-Jux-1996 02:44:25 +0000", "17-Jul-1996 24:00:00 +0000",
                          "17-Jul-96 02:44:25 +0000", "17-Jul-1996 02:44:25 +07", "17-Jul-1996 02:44:25 +0000 x"}) {
    EXPECT_EQ(parse_internal_date(bad), std::nullopt) << bad;
  }
}

TEST(MessageTest, ParsesSearchDate) {
  EXPECT_EQ(parse_search_date("1-Feb-1994"), 760060800);
  EXPECT_EQ(parse_search_date("01-FEB-1994"), 760060800);
  EXPECT_EQ(parse_search_date("\"1-Feb-1994\""), 760060800);
  EXPECT_EQ(parse_search_date("1-Feb-94"), std::nullopt);
  EXPECT_EQ(parse_search_date("30-Feb-1994"), std::nullopt);
  EXPECT_EQ(parse_search_date("1-Feb-1994 "), std::nullopt);
}

TEST(MessageTest, ParsesRfc5322DateAsWritten) {
  EXPECT_EQ(parse_rfc5322_day("Tue, 1 Feb 1994 23:59:00 -0800"), 760060800);
  EXPECT_EQ(parse_rfc5322_day("1 Feb 94 10:00 GMT"), 760060800);
  EXPECT_EQ(parse_rfc5322_day("(comment) Tue , 01 feb 1994"), 760060800);
  EXPECT_EQ(parse_rfc5322_day("yesterday"), std::nullopt);
}

TEST(MessageTest, LeavesOctetsOfAnUnknownCharsetAsTheyAre) {
  std::string out;
  EXPECT_FALSE(charset_to_utf8("abc", "x-no-such-charset", out));
  EXPECT_EQ(out, "abc");
}

TEST(MessageTest, TenMegabyteBodystructureIsFast) {
  std::string raw =
      "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\n"
      "Content-Type: text/plain\r\n\r\nsee attachment\r\n--big\r\n"
      "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n";
  const std::string line(76, 'Q');
  while (raw.size() < 10 * 1024 * 1024) {
    raw += line;
    raw += "\r\n";
  }
  raw += "--big--\r\n";
  auto shared = std::make_shared<const std::string>(std::move(raw));
  auto start = std::chrono::steady_clock::now();
  auto m = ParsedMessage::parse(shared);
  std::string bs = body_structure(*m, true);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("parse + BODYSTRUCTURE of %zu octets: %.2f ms\n", shared->size(), ms);
  EXPECT_EQ(m->root().children.size(), 2u);
  EXPECT_LT(ms, 1000.0);  // ~5 ms in a release build; generous for sanitizer builds
}

}  // namespace
}  // namespace postern::imap
