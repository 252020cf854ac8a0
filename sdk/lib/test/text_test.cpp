// Tests for postern/mail/text.hpp: HTML to text and text extraction from messages.
#include "postern/mail/text.hpp"

#include <gtest/gtest.h>

#include <string>

namespace postern::mail {
namespace {

TEST(MailTextTest, ReducesHtmlToText) {
  const std::pair<std::string, std::string> cases[] = {
      {"<p>Hello <b>world</b></p>", "Hello world"},
      {"<p>one</p><p>two</p>", "one\n\ntwo"},
      {"a<br>b<br/><br>c", "a\nb\n\nc"},
      {"<div>x</div><div>y</div>", "x\ny"},
      {"<ul><li>1</li><li>2</li></ul>", "1\n2"},
      {"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a\tb\nc"},
      {"x<script>var s = '<p>no</p>';</script>y", "xy"},
      {"x<STYLE type=text/css>p { color: red }</STYLE>y", "xy"},
      {"<!-- hidden <p> -->shown", "shown"},
      {"<!DOCTYPE html><html><head><title>T</title></head><body>B</body></html>", "T\nB"},
      {"&lt;tag&gt; &amp; &quot;q&quot; &#65;&#x42;&euro;", "<tag> & \"q\" AB\xE2\x82\xAC"},
      {"caf&eacute; &copy 2024", "caf\xC3\xA9 \xC2\xA9 2024"},      // legacy reference without ';'
      {"&#150; &#x80;", "\xE2\x80\x93 \xE2\x82\xAC"},                    // C1 numbers as windows-1252
      {"&nosuch; & alone", "&nosuch; & alone"},
      {"a&nbsp;&nbsp;b", "a b"},
      {"  lots \r\n of\t\tspace  ", "lots of space"},
      {"<pre>  keep\n  this</pre>", "keep\n  this"},
      {"<a href=\"x>y\" title='a>b'>link</a>", "link"},
      {"1 < 2 and 3 > 2", "1 < 2 and 3 > 2"},
      {"<p>unclosed", "unclosed"},
      {"x<script>never closed", "x"},
  };
  for (const auto& [html, text] : cases) EXPECT_EQ(html_to_text(html), text) << html;
}

TEST(MailTextTest, CapsHtmlOutputAtACharacterBoundary) {
  EXPECT_EQ(html_to_text("<p>abcdef</p>", 3), "abc");
  // "é" is two octets: a cap inside it drops the whole character.
  EXPECT_EQ(html_to_text("ab&eacute;", 3), "ab");
}

Message parse(std::string raw) { return Message::parse(std::move(raw)); }

TEST(MailTextTest, ExtractsPlainTextDecodedAndConverted) {
  const Message m = parse(
      "Subject: x\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
      "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\nline two\r\n");
  const ExtractedText t = extract_text(m);
  EXPECT_EQ(t.text, "caf\xC3\xA9\nline two");
  EXPECT_EQ(t.parts, 1u);
  EXPECT_FALSE(t.truncated);
}

TEST(MailTextTest, PrefersThePlainAlternativeAndSkipsAttachments) {
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
      "--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
      "--alt\r\nContent-Type: text/plain\r\n\r\nplain body\r\n"
      "--alt\r\nContent-Type: text/html\r\n\r\n<p>html body</p>\r\n"
      "--alt--\r\n"
      "--outer\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nattached\r\n"
      "--outer\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
      "PHA+c2Vjb25kPC9wPg==\r\n"
      "--outer\r\nContent-Type: image/png\r\n\r\nPNG\r\n"
      "--outer--\r\n";
  const Message m = parse(raw);
  ExtractedText t = extract_text(m);
  EXPECT_EQ(t.text, "plain body\n\nsecond");
  EXPECT_EQ(t.parts, 2u);
  TextExtractOptions all;
  all.include_attachments = true;
  EXPECT_EQ(extract_text(m, all).text, "plain body\n\nattached\n\nsecond");
  TextExtractOptions no_html;
  no_html.include_html = false;
  EXPECT_EQ(extract_text(m, no_html).text, "plain body");
}

TEST(MailTextTest, ReadsHtmlWhenItIsTheOnlyAlternativeAndDescendsIntoMessages) {
  const std::string raw =
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n"
      "--a\r\nContent-Type: text/html\r\n\r\n<b>only</b> html\r\n--a--\r\n"
      "--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"
      "--b--\r\n";
  EXPECT_EQ(extract_text(parse(raw)).text, "only html\n\ninner text");
}

TEST(MailTextTest, CapsTheExtractedText) {
  const Message m = parse("Content-Type: text/plain; charset=utf-8\r\n\r\n\xC3\xA9\xC3\xA9\xC3\xA9");
  TextExtractOptions cap;
  cap.max_bytes = 3;
  const ExtractedText t = extract_text(m, cap);
  EXPECT_EQ(t.text, "\xC3\xA9");
  EXPECT_TRUE(t.truncated);
  EXPECT_EQ(extract_text(parse("")).text, "");
}

}  // namespace
}  // namespace postern::mail
