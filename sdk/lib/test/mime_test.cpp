#include "postern/mail/mime.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::mail {
namespace {

std::string read_sample(const std::string& name) {
  std::ifstream in(std::string(POSTERN_MAIL_TEST_DATA_DIR) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string crlf(std::string_view lf_text) {
  std::string out;
  for (char c : lf_text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

std::string type_of(const Part& p) { return p.content_type.type + "/" + p.content_type.subtype; }

std::string raw_of(const Message& m, size_t i) {
  const Part& p = m.parts()[i];
  return std::string(m.raw().substr(p.raw_offset, p.raw_length));
}

std::string body_of(const Message& m, size_t i) {
  const Part& p = m.parts()[i];
  return std::string(m.raw().substr(p.body_offset, p.body_length));
}

std::string param(const std::vector<std::pair<std::string, std::string>>& params, std::string_view name) {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return "<absent>";
}

// The structural promises every parse keeps, whatever the input.
void expect_invariants(const Message& m) {
  ASSERT_FALSE(m.parts().empty());
  const auto& parts = m.parts();
  EXPECT_EQ(parts[0].raw_offset, 0u);
  EXPECT_EQ(parts[0].raw_length, m.raw().size());
  EXPECT_EQ(parts[0].parent, -1);
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& p = parts[i];
    SCOPED_TRACE("part " + std::to_string(i) + " section " + p.section);
    EXPECT_LE(p.raw_offset + p.raw_length, m.raw().size());
    EXPECT_EQ(p.body_offset, p.raw_offset + p.header_length);
    EXPECT_EQ(p.body_offset + p.body_length, p.raw_offset + p.raw_length);
    if (i > 0) {
      ASSERT_GE(p.parent, 0);
      ASSERT_LT(static_cast<size_t>(p.parent), i);
      const Part& parent = parts[static_cast<size_t>(p.parent)];
      EXPECT_EQ(p.depth, parent.depth + 1);
      EXPECT_GE(p.raw_offset, parent.body_offset);
      EXPECT_LE(p.raw_offset + p.raw_length, parent.body_offset + parent.body_length);
    }
    size_t previous_end = p.body_offset;
    for (size_t c : p.children) {
      ASSERT_LT(c, parts.size());
      EXPECT_EQ(parts[c].parent, static_cast<int>(i));
      EXPECT_GE(parts[c].raw_offset, previous_end);
      previous_end = parts[c].raw_offset + parts[c].raw_length;
    }
  }
}

Message parse_checked(std::string raw, Message::Limits limits = {}) {
  Message m = Message::parse(std::move(raw), limits);
  expect_invariants(m);
  return m;
}

struct ExpectedPart {
  std::string section;
  std::string type;
};

struct StructureCase {
  std::string file;
  std::vector<ExpectedPart> parts;
};

TEST(MimeParserTest, ParsesTheStructureOfEverySample) {
  const std::vector<StructureCase> cases = {
      {"simple.eml", {{"", "text/plain"}}},
      {"multipart_mixed.eml", {{"", "multipart/mixed"}, {"1", "text/plain"}, {"2", "application/pdf"}}},
      {"nested_alternative.eml",
       {{"", "multipart/mixed"},
        {"1", "multipart/alternative"},
        {"1.1", "text/plain"},
        {"1.2", "text/html"},
        {"2", "image/png"}}},
      // RFC 3501 §6.4.5: the message inside part 3 is addressed as 3 (3.HEADER, 3.TEXT).
      {"rfc3501_example.eml",
       {{"", "multipart/mixed"},
        {"1", "text/plain"},
        {"2", "application/octet-stream"},
        {"3", "message/rfc822"},
        {"3", "multipart/mixed"},
        {"3.1", "text/plain"},
        {"3.2", "application/octet-stream"},
        {"4", "multipart/mixed"},
        {"4.1", "image/gif"},
        {"4.2", "message/rfc822"},
        {"4.2", "multipart/mixed"},
        {"4.2.1", "text/plain"},
        {"4.2.2", "multipart/alternative"},
        {"4.2.2.1", "text/plain"},
        {"4.2.2.2", "text/richtext"}}},
      {"rfc2231.eml",
       {{"", "multipart/mixed"},
        {"1", "application/octet-stream"},
        {"2", "text/plain"},
        {"3", "application/octet-stream"}}},
      {"missing_close_boundary.eml", {{"", "multipart/mixed"}, {"1", "text/plain"}, {"2", "text/plain"}}},
      {"bare_lf.eml", {{"", "multipart/alternative"}, {"1", "text/plain"}, {"2", "text/html"}}},
      {"header_only.eml", {{"", "text/plain"}}},
      // RFC 2046 §5.1.5: digest parts default to message/rfc822.
      {"digest.eml",
       {{"", "multipart/digest"},
        {"1", "message/rfc822"},
        {"1", "text/plain"},
        {"2", "message/rfc822"},
        {"2", "text/plain"},
        {"3", "text/plain"}}},
      {"broken_headers.eml", {{"", "text/plain"}}},
  };
  for (const StructureCase& c : cases) {
    SCOPED_TRACE(c.file);
    const Message m = parse_checked(read_sample(c.file));
    EXPECT_FALSE(m.truncated());
    ASSERT_EQ(m.parts().size(), c.parts.size());
    for (size_t i = 0; i < c.parts.size(); ++i) {
      EXPECT_EQ(m.parts()[i].section, c.parts[i].section) << "part " << i;
      EXPECT_EQ(type_of(m.parts()[i]), c.parts[i].type) << "part " << i;
    }
  }
}

TEST(MimeParserTest, ParsesASimpleTextMessage) {
  const std::string raw = read_sample("simple.eml");
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.parts().size(), 1u);
  ASSERT_EQ(m.headers().size(), 6u);
  EXPECT_EQ(m.headers()[3].name, "Subject");
  EXPECT_EQ(m.headers()[3].raw_value, " Lunch on\r\n Friday?");
  EXPECT_EQ(m.header("subject"), "Lunch on Friday?");
  EXPECT_EQ(m.header("FROM"), "Alice Example <alice@example.org>");
  EXPECT_EQ(m.header("Cc"), std::nullopt);
  EXPECT_EQ(m.header("To", 1), std::nullopt);
  const Part& root = m.parts()[0];
  EXPECT_EQ(root.charset, "us-ascii");
  EXPECT_EQ(param(root.content_type.params, "charset"), "us-ascii");
  EXPECT_EQ(root.transfer_encoding, "7bit");
  EXPECT_EQ(root.header_length, raw.find("\r\n\r\n") + 4);
  EXPECT_EQ(body_of(m, 0), "Hi Bob,\r\n\r\nare we still on for lunch on Friday?\r\n\r\nAlice\r\n");
  EXPECT_EQ(root.body_lines, 5u);
  EXPECT_EQ(m.decoded_body(0), body_of(m, 0));
  EXPECT_EQ(m.decoded_body(7), "");
}

TEST(MimeParserTest, DecodesABase64AttachmentAndItsFilename) {
  const Message m = parse_checked(read_sample("multipart_mixed.eml"));
  ASSERT_EQ(m.parts().size(), 3u);
  const Part& text = m.parts()[1];
  EXPECT_EQ(text.charset, "utf-8");
  EXPECT_EQ(text.transfer_encoding, "quoted-printable");
  EXPECT_EQ(m.decoded_body(1), "Here is the report \xE2\x80\x94 see attachment.\r\nRegards, Alice");

  const Part& pdf = m.parts()[2];
  EXPECT_EQ(pdf.disposition, "attachment");
  EXPECT_EQ(pdf.filename, "report 2025.pdf");
  EXPECT_EQ(param(pdf.disposition_params, "filename"), "report 2025.pdf");
  EXPECT_EQ(param(pdf.content_type.params, "name"), "ignored.pdf");
  EXPECT_EQ(pdf.content_id, "<report@example.org>");
  EXPECT_EQ(pdf.description, "Quarterly report");
  EXPECT_EQ(pdf.charset, "");
  std::string expected;
  for (int round = 0; round < 3; ++round) {
    for (int b = 0; b < 256; ++b) expected += static_cast<char>(b);
  }
  EXPECT_EQ(m.decoded_body(2), expected);
  // The root body spans preamble, parts and epilogue.
  EXPECT_NE(body_of(m, 0).find("This epilogue is ignored."), std::string::npos);
  EXPECT_EQ(body_of(m, 1).find("--==outer=="), std::string::npos);
}

TEST(MimeParserTest, NestsAlternativeInsideMixed) {
  const Message m = parse_checked(read_sample("nested_alternative.eml"));
  ASSERT_EQ(m.parts().size(), 5u);
  EXPECT_EQ(m.parts()[0].children, (std::vector<size_t>{1, 4}));
  EXPECT_EQ(m.parts()[1].children, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(body_of(m, 2), "Plain version.");
  EXPECT_EQ(body_of(m, 3), "<p>HTML version.</p>");
  EXPECT_EQ(m.parts()[3].charset, "utf-8");
  EXPECT_EQ(m.parts()[4].filename, "dot.png");
  EXPECT_EQ(m.parts()[4].disposition, "inline");
  EXPECT_EQ(m.decoded_body(4), std::string("\x89PNG\r\n\x1a\n", 8));
  // The alternative part ends before the line end that precedes the outer delimiter.
  EXPECT_EQ(raw_of(m, 1).substr(raw_of(m, 1).size() - 11), "--alt-b--\r\n");
}

TEST(MimeParserTest, NumbersMessageRfc822PartsLikeRfc3501) {
  const Message m = parse_checked(read_sample("rfc3501_example.eml"));
  ASSERT_EQ(m.parts().size(), 15u);
  const Part& attached = m.parts()[3];
  ASSERT_TRUE(attached.is_message());
  ASSERT_EQ(attached.children, (std::vector<size_t>{4}));
  const Part& inner = m.parts()[4];
  // The encapsulated message is the message/rfc822 part's body, octet for octet.
  EXPECT_EQ(inner.raw_offset, attached.body_offset);
  EXPECT_EQ(inner.raw_length, attached.body_length);
  EXPECT_EQ(inner.headers.size(), 4u);
  EXPECT_EQ(inner.headers[1].value, "part 3");
  EXPECT_EQ(body_of(m, 5), "part 3.1");
  EXPECT_EQ(body_of(m, 6), "part 3.2");
  EXPECT_EQ(m.parts()[10].headers[1].value, "part 4.2");
  EXPECT_EQ(body_of(m, 13), "part 4.2.2.1");
  EXPECT_EQ(body_of(m, 14), "part 4.2.2.2");
  EXPECT_EQ(m.parts()[14].depth, 5u);
  EXPECT_EQ(m.decoded_body(2), "part 2");
  // message/rfc822 carries a line count for BODYSTRUCTURE (RFC 3501 §7.4.2).
  EXPECT_EQ(attached.body_lines, 14u);
}

struct SectionCase {
  std::string name;
  std::string raw;
  std::vector<std::string> sections;
};

TEST(MimeParserTest, NumbersSectionsOfMessagesInsideMessages) {
  const std::vector<SectionCase> cases = {
      // A message/rfc822 root: its body is part 1, the inner message's parts are 1.x.
      {"rfc822 root",
       "Content-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\na\n--x\n\nb\n--x--\n",
       {"", "1", "1.1", "1.2"}},
      // Part 2 is a message whose own body is a message: that one is 2.1.
      {"message in message",
       "Content-Type: multipart/mixed; boundary=x\n\n--x\n\na\n--x\nContent-Type: message/rfc822\n\n"
       "Content-Type: message/rfc822\n\nSubject: deepest\n\nz\n--x--\n",
       {"", "1", "2", "2", "2.1"}},
      {"empty attached message",
       "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n--x--\n",
       {"", "1", "1"}},
  };
  for (const SectionCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Message m = parse_checked(c.raw);
    std::vector<std::string> sections;
    for (const Part& p : m.parts()) sections.push_back(p.section);
    EXPECT_EQ(sections, c.sections);
  }
}

struct ParamCase {
  std::string input;
  std::vector<std::pair<std::string, std::string>> expected;
};

TEST(MimeParserTest, DecodesRfc2231AndRfc2047Parameters) {
  const std::vector<ParamCase> cases = {
      {"; charset=\"UTF-8\"; format=flowed", {{"charset", "UTF-8"}, {"format", "flowed"}}},
      {"; Name = \"a \\\"quoted\\\" name\"", {{"name", "a \"quoted\" name"}}},
      {"; filename=\"C:\\temp\\x.txt\"", {{"filename", "C:\\temp\\x.txt"}}},
      {"; filename=my file.txt ;size=12", {{"filename", "my file.txt"}, {"size", "12"}}},
      {"; charset=us-ascii (Plain text)", {{"charset", "us-ascii"}}},
      // RFC 2231 §3: continuations, in any order.
      {"; title*1=\"second \"; title*0=\"first \"; title*2=third", {{"title", "first second third"}}},
      // RFC 2231 §4: charset and language, percent-encoded octets.
      {"; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A", {{"title", "This is ***fun***"}}},
      // RFC 2231 §4.1: encoded and plain sections mixed.
      {"; title*0*=us-ascii'en'This%20is%20even%20more%20; title*1*=%2A%2A%2Afun%2A%2A%2A%20; "
       "title*2=\"isn't it!\"",
       {{"title", "This is even more ***fun*** isn't it!"}}},
      {"; name*0*=UTF-8''%E6%97%A5%E6%9C%AC; name*1*=%E8%AA%9E.txt", {{"name", "日本語.txt"}}},
      {"; filename*=iso-8859-1''r%E9sum%E9.txt", {{"filename", "résumé.txt"}}},
      {"; filename*=koi8-r''%F0%D2%C9%D7%C5%D4", {{"filename", "Привет"}}},
      // An extended value wins over a plain one of the same name.
      {"; filename=\"fallback.txt\"; filename*=UTF-8''real%20name.txt", {{"filename", "real name.txt"}}},
      // Quoted encoded-words, as many clients send them.
      {"; name=\"=?UTF-8?B?0J/RgNC40LLQtdGCLnR4dA==?=\"", {{"name", "Привет.txt"}}},
      {"; boundary=\"=?not-decoded?=\"", {{"boundary", "=?not-decoded?="}}},
      {"; broken; =novalue; x=1;;", {{"x", "1"}}},
      {"; a=\"unterminated", {{"a", "unterminated"}}},
      {"", {}},
  };
  for (const ParamCase& c : cases) {
    SCOPED_TRACE(c.input);
    EXPECT_EQ(parse_params(c.input), c.expected);
  }

  const Message m = parse_checked(read_sample("rfc2231.eml"));
  ASSERT_EQ(m.parts().size(), 4u);
  EXPECT_EQ(m.parts()[1].filename, "very long file name.txt");
  EXPECT_EQ(param(m.parts()[1].content_type.params, "name"), "日本語.txt");
  EXPECT_EQ(m.parts()[2].filename, "résumé.txt");
  EXPECT_EQ(m.parts()[2].charset, "été");
  EXPECT_EQ(param(m.parts()[2].content_type.params, "format"), "flowed");
  EXPECT_EQ(m.parts()[3].filename, "Привет.txt");
}

struct TextCase {
  std::string input;
  std::string expected;
};

TEST(MimeParserTest, DecodesRfc2047EncodedWords) {
  const std::vector<TextCase> cases = {
      {"plain text", "plain text"},
      {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"},
      {"=?iso-8859-1?q?this=20is=20some=20text?=", "this is some text"},
      // RFC 2047 §8 examples: space between adjacent words disappears.
      {"(=?ISO-8859-1?Q?a?= b)", "(a b)"},
      {"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},
      {"(=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=)", "(ab)"},
      {"(=?ISO-8859-1?Q?a_b?=)", "(a b)"},
      {"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"},
      {"=?UTF-8?B?0J/RgNC40LLQtdGCINC80LjRgA==?=", "Привет мир"},
      {"=?koi8-r?B?8NLJ18XU?=", "Привет"},
      {"=?KOI8-R?Q?=F0=D2=C9=D7=C5=D4?=", "Привет"},
      // A character split across two words survives.
      {"=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café"},
      {"=?UTF-8?B?Y2Fmw6k=?= and more", "café and more"},
      {"Re:=?UTF-8?Q?_caf=C3=A9?=", "Re: café"},
      {"=?us-ascii*en?Q?lang_tag?=", "lang tag"},
      {"=?x-no-such-charset?Q?keep_raw?=", "keep raw"},
      {"=?UTF-8?X?bad_encoding?=", "=?UTF-8?X?bad_encoding?="},
      {"=?UTF-8?Q?no end", "=?UTF-8?Q?no end"},
      {"=?UTF-8?Q?has space?=", "=?UTF-8?Q?has space?="},
      {"=??Q?empty_charset?=", "=??Q?empty_charset?="},
      {"=?UTF-8?Q?" "?=", ""},  // split: "??=" is a trigraph
      {"=?UTF-8?Q?Really?" "?=", "Really?"},
      {"=?windows-1252?Q?=80?=", "€"},
      {"=?iso-8859-1?Q?=80?=", "€"},
      {"=?utf-8?q?bad=FFbyte?=", "bad\xEF\xBF\xBD" "byte"},
      {"a =?utf-8?q?x?= b =?utf-8?q?y?= c", "a x b y c"},
  };
  for (const TextCase& c : cases) {
    SCOPED_TRACE(c.input);
    EXPECT_EQ(decode_rfc2047(c.input), c.expected);
  }

  const Message m = parse_checked(crlf(
      "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\n =?iso-8859-1?q?_aus_K=F6ln?=\n"
      "From: =?koi8-r?B?8NLJ18XU?= <ivan@example.ru>\n\nbody\n"));
  EXPECT_EQ(m.header("Subject"), "Grüße aus Köln");
  EXPECT_EQ(m.header("From"), "Привет <ivan@example.ru>");
}

TEST(MimeParserTest, ToleratesAMissingClosingBoundary) {
  const Message m = parse_checked(read_sample("missing_close_boundary.eml"));
  ASSERT_EQ(m.parts().size(), 3u);
  EXPECT_EQ(body_of(m, 1), "first");
  EXPECT_EQ(body_of(m, 2), "second, and the closing delimiter never comes\r\n");
  EXPECT_EQ(m.parts()[2].raw_offset + m.parts()[2].raw_length, m.raw().size());
  EXPECT_FALSE(m.truncated());
}

TEST(MimeParserTest, ParsesABareLfMessage) {
  const std::string raw = read_sample("bare_lf.eml");
  ASSERT_EQ(raw.find('\r'), std::string::npos);
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.parts().size(), 3u);
  EXPECT_EQ(m.header("Subject"), "Bare LF");
  EXPECT_EQ(body_of(m, 1), "line one\nline two");
  EXPECT_EQ(m.parts()[1].body_lines, 1u);
  EXPECT_EQ(m.parts()[1].header_length, std::string("Content-Type: text/plain\n\n").size());
  EXPECT_EQ(body_of(m, 2), "<b>hi</b>");
}

TEST(MimeParserTest, ParsesAHeaderWithoutBody) {
  const std::string raw = read_sample("header_only.eml");
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.parts().size(), 1u);
  EXPECT_EQ(m.headers().size(), 3u);
  EXPECT_EQ(m.header("Subject"), "No body at all");
  EXPECT_EQ(m.parts()[0].header_length, raw.size());
  EXPECT_EQ(m.parts()[0].body_length, 0u);
  EXPECT_EQ(m.parts()[0].body_lines, 0u);
  EXPECT_EQ(m.decoded_body(0), "");
}

TEST(MimeParserTest, ParsesEmptyInput) {
  const Message m = parse_checked("");
  ASSERT_EQ(m.parts().size(), 1u);
  EXPECT_TRUE(m.headers().empty());
  EXPECT_EQ(type_of(m.parts()[0]), "text/plain");
  EXPECT_EQ(m.parts()[0].charset, "us-ascii");
  EXPECT_EQ(m.parts()[0].body_length, 0u);
  EXPECT_EQ(m.header("Subject"), std::nullopt);
  EXPECT_FALSE(m.truncated());

  const Message empty;
  ASSERT_EQ(empty.parts().size(), 1u);
  EXPECT_EQ(empty.parts()[0].charset, "us-ascii");
  EXPECT_EQ(empty.parts()[0].transfer_encoding, "7bit");
}

struct LinesCase {
  std::string name;
  std::string raw;
  size_t part;
  std::string body;
  size_t lines;
};

TEST(MimeParserTest, CountsBodyLines) {
  const std::vector<LinesCase> cases = {
      {"crlf terminated", "A: b\r\n\r\none\r\ntwo\r\n", 0, "one\r\ntwo\r\n", 2},
      {"last line unterminated", "A: b\r\n\r\none\r\ntwo", 0, "one\r\ntwo", 1},
      {"empty body", "A: b\r\n\r\n", 0, "", 0},
      {"one empty line", "A: b\r\n\r\n\r\n", 0, "\r\n", 1},
      {"bare lf", "A: b\n\nx\ny\nz\n", 0, "x\ny\nz\n", 3},
      {"part before delimiter", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\ny\n--b--\n", 1, "x\ny", 1},
      {"blank last line in part", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n\n--b--\n", 1, "x\n", 1},
      {"empty part", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--b--\n", 1, "", 0},
  };
  for (const LinesCase& c : cases) {
    SCOPED_TRACE(c.name);
    const Message m = parse_checked(c.raw);
    ASSERT_LT(c.part, m.parts().size());
    EXPECT_EQ(body_of(m, c.part), c.body);
    EXPECT_EQ(m.parts()[c.part].body_lines, c.lines);
  }
}

TEST(MimeParserTest, HandlesBoundaryEdgeCases) {
  struct Case {
    std::string name;
    std::string raw;
    std::vector<std::string> bodies;  // of parts 1..n
  };
  const std::vector<Case> cases = {
      {"trailing whitespace after delimiters",
       "Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\none\n--b--  \nepilogue\n--b\n\nnot a part\n",
       {"one"}},
      {"boundary missing: one opaque body", "Content-Type: multipart/mixed\n\n--b\n\none\n--b--\n", {}},
      {"delimiter-like lines are not delimiters", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--bx\n--b-\n--b--\n",
       {"--bx\n--b-"}},
      {"inner boundary extends the outer one",
       "Content-Type: multipart/mixed; boundary=ab\n\n--ab\nContent-Type: multipart/mixed; boundary=abc\n\n"
       "--abc\n\ninner\n--abc--\n--ab\n\nsecond\n--ab--\n",
       // The line end after "--abc--" is that delimiter line's own, not the next one's.
       {"--abc\n\ninner\n--abc--\n", "inner", "second"}},
      {"outer delimiter closes an unfinished inner multipart",
       "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n"
       "--i\n\ninner\n--o\n\nafter\n--o--\n",
       {"--i\n\ninner", "inner", "after"}},
      {"part without header block", "Content-Type: multipart/mixed; boundary=b\n\n--b\nno headers here\n--b--\n",
       {"no headers here"}},
      {"delimiter right after the header", "Content-Type: multipart/mixed; boundary=b\n--b\n\nx\n--b--\n", {"x"}},
      {"quoted boundary with spaces", "Content-Type: multipart/mixed; boundary=\"a b \"\n\n--a b\n\nx\n--a b--\n", {"x"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Message m = parse_checked(c.raw);
    std::vector<std::string> bodies;
    for (size_t i = 1; i < m.parts().size(); ++i) bodies.push_back(body_of(m, i));
    EXPECT_EQ(bodies, c.bodies);
  }
}

TEST(MimeParserTest, KeepsTheBlankLineThatEndsAHeaderBeforeADelimiter) {
  // Found by fuzzing: the blank line ending a header is also the line before the next
  // delimiter. It stays the header's (Dovecot counts it so) and the part stays inside
  // its parent.
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\n--b\n"
      "Content-Type: multipart/mixed; boundary=c\n\n--b--\n";
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.parts().size(), 4u);
  EXPECT_EQ(raw_of(m, 1), "Content-Type: message/rfc822\n\n");
  EXPECT_EQ(m.parts()[1].header_length, m.parts()[1].raw_length);
  EXPECT_EQ(m.parts()[2].section, "1");
  EXPECT_EQ(m.parts()[2].raw_length, 0u);
  EXPECT_EQ(raw_of(m, 3), "Content-Type: multipart/mixed; boundary=c\n\n");
  EXPECT_TRUE(m.parts()[3].children.empty());
}

TEST(MimeParserTest, ToleratesBrokenHeaders) {
  const std::string raw = read_sample("broken_headers.eml");
  const Message m = parse_checked(raw);
  // The mbox "From " line and the unfolded line are skipped; the body starts at the first
  // line that is no header field even though the blank line is missing.
  ASSERT_EQ(m.headers().size(), 4u);
  EXPECT_EQ(m.header("From"), "alice@example.org");
  EXPECT_EQ(m.header("To"), "bob@example.net");
  // 8-bit header text is kept as it came, valid UTF-8 or not.
  EXPECT_EQ(m.header("Subject"), "Broken \xC3\xA9t\xC3\xA9 and \xE9");
  EXPECT_EQ(body_of(m, 0), "Body starts without a blank line.\r\nSecond body line.\r\n");
  EXPECT_EQ(m.parts()[0].body_lines, 2u);

  const Message spaced = parse_checked("Subject : spaced\nX-Empty:\n\tfolded only\n\nbody");
  ASSERT_EQ(spaced.headers().size(), 2u);
  EXPECT_EQ(spaced.headers()[0].name, "Subject");
  EXPECT_EQ(spaced.header("subject"), "spaced");
  EXPECT_EQ(spaced.headers()[1].raw_value, "\n\tfolded only");
  EXPECT_EQ(spaced.header("X-Empty"), "folded only");
  EXPECT_EQ(body_of(spaced, 0), "body");

  const Message no_headers = parse_checked("Just some text\nwithout headers\n");
  EXPECT_TRUE(no_headers.headers().empty());
  EXPECT_EQ(no_headers.parts()[0].header_length, 0u);
  EXPECT_EQ(no_headers.parts()[0].body_lines, 2u);
}

TEST(MimeParserTest, ParsesContentTypes) {
  struct Case {
    std::string input;
    std::string type;
    std::string charset;
  };
  const std::vector<Case> cases = {
      {"text/plain", "text/plain", "<absent>"},
      {"TEXT/HTML; CHARSET=UTF-8", "text/html", "UTF-8"},
      {" text / plain (comment) ; charset = \"koi8-r\"", "text/plain", "koi8-r"},
      {"text", "text/plain", "<absent>"},
      {"multipart; boundary=x", "multipart/mixed", "<absent>"},
      {"image", "text/plain", "us-ascii"},
      {"", "text/plain", "us-ascii"},
      {"/plain", "text/plain", "us-ascii"},
      {"text/plain charset=utf-8", "text/plain", "utf-8"},
      {"application/vnd.ms-excel.sheet.macroEnabled.12", "application/vnd.ms-excel.sheet.macroenabled.12",
       "<absent>"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    const ContentType ct = parse_content_type(c.input);
    EXPECT_EQ(ct.type + "/" + ct.subtype, c.type);
    EXPECT_EQ(param(ct.params, "charset"), c.charset);
  }
}

TEST(MimeParserTest, DecodesTransferEncodings) {
  const std::vector<TextCase> base64 = {
      {"aGVsbG8gd29ybGQ=", "hello world"},
      {"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", "hello world"},
      {"aGVsbG8*gd29y!bGQ", "hello world"},
      {"YQ==YQ==", "aa"},
      {"", ""},
      {"Y", ""},
  };
  for (const TextCase& c : base64) {
    SCOPED_TRACE(c.input);
    EXPECT_EQ(decode_base64(c.input), c.expected);
  }
  const std::vector<TextCase> qp = {
      {"caf=C3=A9", "café"},
      {"caf=c3=a9", "café"},
      {"soft=\r\nbreak\r\nhard", "softbreak\r\nhard"},
      {"soft=\nbreak", "softbreak"},
      {"trailing   \r\nspace=20\r\n", "trailing\r\nspace \r\n"},
      {"bad=ZZescape and = alone", "bad=ZZescape and = alone"},
      {"ends with =", "ends with "},
      {"=4", "=4"},
  };
  for (const TextCase& c : qp) {
    SCOPED_TRACE(c.input);
    EXPECT_EQ(decode_quoted_printable(c.input), c.expected);
  }
  EXPECT_EQ(unfold("a\r\n b\n\tc\r"), "a b\tc\r");
}

TEST(MimeParserTest, ConvertsCharsetsToUtf8) {
  struct Case {
    std::string input;
    std::string charset;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"caf\xE9", "ISO-8859-1", "café"},
      {"\x80", "iso-8859-1", "€"},
      {"\xF0\xD2\xC9\xD7\xC5\xD4", "koi8-r", "Привет"},
      {"caf\xC3\xA9", "utf-8", "café"},
      {"caf\xC3\xA9", "us-ascii", "café"},
      {"caf\xE9", "us-ascii", "café"},
      {"ok\xFF", "UTF-8", "ok\xEF\xBF\xBD"},
      {"\xC4\xE3\xBA\xC3", "gb2312", "你好"},
      {"\x1B$B$3$s$K$A$O\x1B(B", "iso-2022-jp", "こんにちは"},
      {"raw\xFF", "x-unknown-charset", "raw\xFF"},
      {"raw\xFF", "", "raw\xFF"},
      {"raw\xFF", "utf-8//TRANSLIT", "raw\xFF"},
      {"", "koi8-r", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.charset);
    EXPECT_EQ(to_utf8(c.input, c.charset), c.expected);
  }
}

std::string nested_multiparts(size_t levels) {
  std::string raw;
  for (size_t i = 0; i < levels; ++i) {
    raw += "Content-Type: multipart/mixed; boundary=\"b" + std::to_string(i) + "\"\r\n\r\n--b" +
           std::to_string(i) + "\r\n";
  }
  raw += "\r\ninnermost\r\n";
  for (size_t i = levels; i-- > 0;) raw += "--b" + std::to_string(i) + "--\r\n";
  return raw;
}

TEST(MimeParserTest, TruncatesDeepNestingWithoutCrashing) {
  const Message deep = parse_checked(nested_multiparts(1000));
  EXPECT_TRUE(deep.truncated());
  EXPECT_EQ(deep.parts().size(), 51u);
  EXPECT_EQ(deep.parts().back().depth, 50u);
  std::string deepest = "1";
  for (int i = 1; i < 50; ++i) deepest += ".1";
  EXPECT_EQ(deep.parts().back().section, deepest);

  std::string messages;
  for (int i = 0; i < 1000; ++i) messages += "Content-Type: message/rfc822\n\n";
  messages += "Subject: innermost\n\nbody\n";
  const Message nested = parse_checked(messages);
  EXPECT_TRUE(nested.truncated());
  EXPECT_EQ(nested.parts().size(), 51u);

  const Message shallow = parse_checked(nested_multiparts(10));
  EXPECT_FALSE(shallow.truncated());
  EXPECT_EQ(shallow.parts().size(), 11u);
  EXPECT_EQ(body_of(shallow, 10), "innermost");
}

TEST(MimeParserTest, KeepsTheRestOpaqueWhenALimitIsHit) {
  std::string many = "Content-Type: multipart/mixed; boundary=b\n\n";
  for (int i = 0; i < 100; ++i) many += "--b\n\npart " + std::to_string(i) + "\n";
  many += "--b--\n";

  Message::Limits parts_limit;
  parts_limit.max_parts = 10;
  const Message few = parse_checked(many, parts_limit);
  EXPECT_TRUE(few.truncated());
  EXPECT_EQ(few.parts().size(), 10u);
  EXPECT_EQ(body_of(few, 9), "part 8");
  EXPECT_EQ(few.parts()[0].body_length, many.size() - few.parts()[0].header_length);

  Message::Limits header_limit;
  header_limit.max_headers = 2;
  const Message headers = parse_checked("A: 1\nB: 2\nC: 3\n\nbody\n", header_limit);
  EXPECT_TRUE(headers.truncated());
  EXPECT_EQ(headers.headers().size(), 2u);
  EXPECT_EQ(body_of(headers, 0), "C: 3\n\nbody\n");

  Message::Limits bytes_limit;
  bytes_limit.max_header_bytes = 12;
  const Message bytes = parse_checked("A: 1\nB: 2\nC: 3\n\nbody\n", bytes_limit);
  EXPECT_TRUE(bytes.truncated());
  EXPECT_EQ(bytes.headers().size(), 2u);

  const Message within = parse_checked(many);
  EXPECT_FALSE(within.truncated());
  EXPECT_EQ(within.parts().size(), 101u);
  EXPECT_EQ(within.parts()[100].section, "100");
}

TEST(MimeParserTest, StaysValidAfterAMove) {
  Message original = parse_checked(read_sample("nested_alternative.eml"));
  const std::string body = body_of(original, 2);
  Message moved = std::move(original);
  EXPECT_EQ(body_of(moved, 2), body);
  std::vector<Message> many;
  many.push_back(std::move(moved));
  many.push_back(parse_checked("Subject: x\n\ny"));
  EXPECT_EQ(body_of(many[0], 3), "<p>HTML version.</p>");
  EXPECT_EQ(many[1].header("subject"), "x");
}

TEST(MimeParserTest, SurvivesHostileInputs) {
  const std::vector<std::string> inputs = {
      std::string(1, '\0'),
      "\r\n",
      "\n\n\n",
      "\r",
      ":",
      ": no name\n\n",
      "Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\n--\n",
      "Content-Type: multipart/mixed; boundary=b\n\n--b",
      "Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n--b\n",
      "Content-Type: message/rfc822\n",
      "Content-Type: message/rfc822; x\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQ==",
      "Subject: =?=?=?=?=?=?=?=?=?=?utf-8?q?x?=?=\n\n",
      "Content-Type: text/plain; a*0*=''%; a*1*=%Z; a*99999999999*=x\n\n",
      "Content-Type: (((((\n\n",
      "Content-Disposition: ;;;=;=\"\n\n",
      std::string(100000, '-'),
      std::string("A:") + std::string(100000, '=') + "\n\n",
  };
  for (const std::string& input : inputs) {
    SCOPED_TRACE(input.substr(0, 60));
    const Message m = parse_checked(input);
    for (size_t i = 0; i < m.parts().size(); ++i) (void)m.decoded_body(i);
  }
}

}  // namespace
}  // namespace postern::mail

namespace postern::mail {
namespace {

std::string show(const std::vector<RawParam>& params) {
  std::string out;
  for (const RawParam& p : params) {
    if (!out.empty()) out += "; ";
    out += p.name + (p.extended ? "*=" : "=") + p.value;
    if (p.extended) out += " [" + p.charset + "|" + p.language + "|" + p.octets + "]";
  }
  return out;
}

TEST(MimeParserTest, ReadsRawParametersTheStrictWay) {
  struct Case {
    std::string input;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"; charset=\"UTF-8\"; format=flowed", "charset=UTF-8; format=flowed"},
      // Every quoted-pair is undone (RFC 5322 §3.2.4), as Dovecot reads it.
      {"; filename=\"C:\\temp\\x.txt\"", "filename=C:tempx.txt"},
      // Each parameter needs its ';'.
      {" charset=utf-8", ""},
      {"; name=a (1) b.pdf", "name=a"},
      // RFC 2047 words are not decoded here.
      {"; name=\"=?UTF-8?B?w6QudHh0?=\"", "name==?UTF-8?B?w6QudHh0?="},
      // RFC 2231: sections joined, the written form kept, plain sections percent-encoded.
      {"; name*0*=UTF-8''%E2%82%AC%20rates; name*1=\".txt\"",
       "name*=UTF-8''%E2%82%AC%20rates.txt [UTF-8||\xE2\x82\xAC rates.txt]"},
      {"; name*0*=UTF-8''a; name*1=\"b c\"", "name*=UTF-8''ab%20c [UTF-8||ab c]"},
      {"; title*=us-ascii'en'plain%20ascii", "title*=us-ascii'en'plain%20ascii [us-ascii|en|plain ascii]"},
      {"; title*=''x%41", "title*=''x%41 [||xA]"},
      {"; title*=x%41", "title*=''x%41 [||xA]"},
      // A gap ends the value; without section 0 the plain value stays.
      {"; name*1=\"b\"; name*0=\"a\"; name*3=\"gap\"", "name=ab"},
      {"; name=plain; name*1=x", "name=plain"},
      {"; junk here; x=1", "x=1"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.input);
    EXPECT_EQ(show(parse_raw_params(c.input)), c.expected);
  }
}

TEST(MimeParserTest, ReadsMediaTypesDispositionsAndLanguagesStrictly) {
  auto mt = parse_media_type(" Text / HTML ; charset=utf-8");
  ASSERT_TRUE(mt);
  EXPECT_EQ(mt->type + "/" + mt->subtype, "text/html");
  EXPECT_EQ(show(mt->params), "charset=utf-8");
  EXPECT_FALSE(parse_media_type("text"));
  EXPECT_FALSE(parse_media_type("multipart; boundary=x"));
  EXPECT_FALSE(parse_media_type("garbage"));
  EXPECT_FALSE(parse_media_type("/plain"));

  const RawDisposition d = parse_raw_disposition("Attachment; filename*=iso-8859-1'fr'caf%E9.txt; size=3");
  EXPECT_EQ(d.type, "attachment");
  EXPECT_EQ(show(d.params), "filename*=iso-8859-1'fr'caf%E9.txt [iso-8859-1|fr|caf\xE9.txt]; size=3");
  EXPECT_TRUE(parse_raw_disposition("; filename=x").params.empty());

  EXPECT_EQ(parse_content_language("en, de (German)"), (std::vector<std::string>{"en", "de"}));
  EXPECT_EQ(parse_content_language(" (c) fr-CA"), (std::vector<std::string>{"fr-CA"}));
  EXPECT_TRUE(parse_content_language("").empty());
}

TEST(MimeParserTest, GivesEachHeaderFieldItsRawRange) {
  const std::string raw = "Subject: a\r\n folded\r\nTo: b@example.org\nX: last";
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.headers().size(), 3u);
  auto range = [&](size_t i) {
    return std::string(m.raw().substr(m.headers()[i].raw_offset, m.headers()[i].raw_length));
  };
  EXPECT_EQ(range(0), "Subject: a\r\n folded\r\n");
  EXPECT_EQ(range(1), "To: b@example.org\n");
  EXPECT_EQ(range(2), "X: last");
}

TEST(MimeParserTest, KeepsJunkHeaderLinesWhenAsked) {
  const std::string raw =
      "From x@example.org Mon Dec  7 10:00:00 2026\nFrom: x@example.org\nno colon here\n  folded junk\n"
      "Subject: after junk\nanother junk line\nand one more\n\nbody\n";
  Message::Options options;
  options.keep_junk_header_lines = true;
  const Message m = Message::parse(raw, {}, options);
  expect_invariants(m);
  std::vector<std::string> names;
  for (const Header& h : m.headers()) names.push_back(h.name);
  EXPECT_EQ(names, (std::vector<std::string>{"From x@example.org Mon Dec  7 10", "From", "no colon here", "Subject",
                                             "another junk line", "and one more"}));
  EXPECT_EQ(m.header("Subject"), "after junk");
  EXPECT_EQ(body_of(m, 0), "body\n");
  EXPECT_EQ(m.raw().substr(m.headers()[2].raw_offset, m.headers()[2].raw_length), "no colon here\n  folded junk\n");

  // The default reading: the mbox line is skipped, and the first junk line that no field
  // follows starts the body (as if the blank line had been left out).
  const Message lenient = parse_checked(raw);
  EXPECT_EQ(lenient.headers().size(), 1u);
}

TEST(MimeParserTest, ParsesEncodedMessagePartsWhenAsked) {
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=z\n\n--z\nContent-Type: message/rfc822\n"
      "Content-Transfer-Encoding: base64\n\nRnJvbTogYg==\n--z--\n";
  EXPECT_TRUE(parse_checked(raw).parts()[1].children.empty());
  Message::Options options;
  options.parse_encoded_messages = true;
  const Message m = Message::parse(raw, {}, options);
  expect_invariants(m);
  ASSERT_EQ(m.parts()[1].children.size(), 1u);
  EXPECT_EQ(m.parts()[2].section, "1");
}

TEST(MimeParserTest, UsesBoundariesAsWrittenWhenAsked) {
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=\"sp \"\n\n--sp \n\none\n--sp\t\n\ntwo\n--sp --junk after\nepilogue\n";
  // Default: the trailing space of the boundary is dropped, "--sp\t" is a delimiter and
  // "--sp --junk after" is none.
  const Message lenient = parse_checked(raw);
  ASSERT_EQ(lenient.parts().size(), 3u);
  EXPECT_EQ(body_of(lenient, 1), "one");
  Message::Options options;
  options.exact_boundaries = true;
  const Message exact = Message::parse(raw, {}, options);
  expect_invariants(exact);
  ASSERT_EQ(exact.parts().size(), 2u);
  EXPECT_EQ(body_of(exact, 1), "one\n--sp\t\n\ntwo");
}

TEST(MimeParserTest, LeavesADelimiterLineEndToThePartBeforeTheNextDelimiter) {
  // "--in--\n--out--": the line end after the inner close delimiter is that line's own;
  // the inner multipart (part 1) ends after it, as Dovecot and Cyrus count its size.
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=out\n\n--out\nContent-Type: multipart/mixed; boundary=in\n\n"
      "--in\n\nx\n--in--\n--out--\n";
  const Message m = parse_checked(raw);
  ASSERT_EQ(m.parts().size(), 3u);
  EXPECT_EQ(body_of(m, 1), "--in\n\nx\n--in--\n");
  EXPECT_EQ(body_of(m, 2), "x");
  // A part whose header block is cut by a delimiter keeps its last line end.
  const Message cut = parse_checked("Content-Type: multipart/mixed; boundary=b\n\n--b\nX: y\n--b--\n");
  ASSERT_EQ(cut.parts().size(), 2u);
  EXPECT_EQ(raw_of(cut, 1), "X: y\n");
}

}  // namespace
}  // namespace postern::mail
