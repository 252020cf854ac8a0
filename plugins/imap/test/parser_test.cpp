#include "parser.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <gtest/gtest.h>

namespace postern::imap {
namespace {

using Kind = CommandReader::Output::Kind;

Command parse_ok(const std::string& line) {
  auto r = parse_command(line);
  if (auto* e = std::get_if<ParseError>(&r)) {
    ADD_FAILURE() << line << " -> " << e->text;
    return {};
  }
  return std::get<Command>(std::move(r));
}

ParseError parse_err(const std::string& line) {
  auto r = parse_command(line);
  if (!std::holds_alternative<ParseError>(r)) {
    ADD_FAILURE() << line << " parsed";
    return {};
  }
  return std::get<ParseError>(std::move(r));
}

TEST(CommandReaderTest, SplitsPipelinedLinesAcrossArbitraryChunks) {
  CommandReader r;
  r.feed("a1 NOOP\r\na2 CAP");
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  EXPECT_EQ(o.data, "a1 NOOP\r\n");
  EXPECT_EQ(r.next().kind, Kind::NeedMore);
  r.feed("ABILITY\r\n");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  EXPECT_EQ(o.data, "a2 CAPABILITY\r\n");
}

TEST(CommandReaderTest, SynchronizingLiteralAsksForContinuation) {
  CommandReader r;
  r.feed("a LOGIN {5}\r\n");
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Continuation);
  EXPECT_EQ(o.data.substr(0, 2), "+ ");
  EXPECT_EQ(r.next().kind, Kind::NeedMore);
  r.feed("alice {6+}\r\nsecret\r\n");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  EXPECT_EQ(o.data, "a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n");
  auto c = parse_ok(o.data);
  EXPECT_EQ(c.arg1, "alice");
  EXPECT_EQ(c.arg2, "secret");
}

TEST(CommandReaderTest, LiteralsMayHoldLineBreaksAndZeroLength) {
  CommandReader r;
  r.feed("a SEARCH TEXT {4+}\r\n\r\n\r\n SUBJECT {0+}\r\n\r\n");
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  auto c = parse_ok(o.data);
  ASSERT_EQ(c.search.children.size(), 2u);
  EXPECT_EQ(c.search.children[0].text, "\r\n\r\n");
  EXPECT_EQ(c.search.children[1].text, "");
}

TEST(CommandReaderTest, RefusesOverLongLineWithoutBuffering) {
  Limits l;
  l.max_line = 100;
  CommandReader r(l);
  r.feed("t1 NOOP " + std::string(200, 'x'));
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Error);
  EXPECT_EQ(o.data, "t1 BAD Command line too long\r\n");
  EXPECT_LT(r.buffered(), 100u);
  r.feed(std::string(5000, 'y'));
  EXPECT_EQ(r.next().kind, Kind::NeedMore);
  EXPECT_LT(r.buffered(), 100u);
  r.feed("zz\r\nt2 NOOP\r\n");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  EXPECT_EQ(o.data, "t2 NOOP\r\n");
}

TEST(CommandReaderTest, RefusesTooLargeLiterals) {
  Limits l;
  l.max_literal = 10;
  l.append_limit = 20;
  CommandReader r(l);
  r.feed("a LOGIN {11}\r\n");
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Error);
  EXPECT_EQ(o.data, "a BAD Literal too large (limit 10 octets)\r\n");
  r.feed("b APPEND INBOX {21}\r\n");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Error);
  EXPECT_EQ(o.data.substr(0, 14), "b NO [TOOBIG] ");
  // A non-synchronizing one is read and dropped, with the rest of its line.
  r.feed("c APPEND INBOX {21+}\r\n" + std::string(21, 'm') + " trailing\r\nd NOOP\r\n");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Error);
  EXPECT_EQ(o.data.substr(0, 14), "c NO [TOOBIG] ");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Command);
  EXPECT_EQ(o.data, "d NOOP\r\n");
}

TEST(CommandReaderTest, LineModeReturnsRawLines) {
  CommandReader r;
  r.set_line_mode(true);
  r.feed("AGFsaWNlAHNlY3JldA==\r\nDONE\n");
  auto o = r.next();
  ASSERT_EQ(o.kind, Kind::Line);
  EXPECT_EQ(o.data, "AGFsaWNlAHNlY3JldA==");
  o = r.next();
  ASSERT_EQ(o.kind, Kind::Line);
  EXPECT_EQ(o.data, "DONE");
}

TEST(ParserTest, ParsesSimpleCommands) {
  const char* lines[] = {"a CAPABILITY\r\n", "a noop\r\n", "a LOGOUT\r\n", "a STARTTLS\r\n", "a CHECK\r\n",
                         "a CLOSE\r\n",      "a UNSELECT\r\n", "a NAMESPACE\r\n", "a IDLE\r\n", "a EXPUNGE\r\n"};
  for (const char* l : lines) {
    auto c = parse_ok(l);
    EXPECT_EQ(c.tag, "a");
  }
  EXPECT_EQ(parse_ok("x1 noop\r\n").name, "NOOP");
  EXPECT_EQ(parse_err("a NOOP extra\r\n").text, "Unexpected extra arguments");
}

TEST(ParserTest, BadTagsAndUnknownCommands) {
  EXPECT_EQ(parse_err("\r\n").tag, "*");
  EXPECT_EQ(parse_err("+a NOOP\r\n").tag, "*");
  EXPECT_EQ(parse_err("a{ NOOP\r\n").tag, "*");
  auto e = parse_err("a FROB\r\n");
  EXPECT_EQ(e.tag, "a");
  EXPECT_TRUE(e.bad);
  EXPECT_EQ(e.text, "Unknown command FROB");
  EXPECT_EQ(parse_err("a UID NOOP\r\n").text, "Unknown UID command NOOP");
}

TEST(ParserTest, LoginTakesAstrings) {
  auto c = parse_ok("a LOGIN \"al\\\"ice\" pass]word\r\n");
  EXPECT_EQ(c.arg1, "al\"ice");
  EXPECT_EQ(c.arg2, "pass]word");
  EXPECT_TRUE(parse_err("a LOGIN alice\r\n").bad);
  EXPECT_TRUE(parse_err("a LOGIN \"unterminated\r\n").bad);
}

TEST(ParserTest, MailboxNamesAreDecodedAndChecked) {
  EXPECT_EQ(parse_ok("a SELECT inbox\r\n").mailbox, "INBOX");
  EXPECT_EQ(parse_ok("a SELECT Inbox/Sub\r\n").mailbox, "INBOX/Sub");
  EXPECT_EQ(parse_ok("a CREATE \"Entw&APw-rfe\"\r\n").mailbox, "Entw\xc3\xbc" "rfe");
  struct Bad {
    const char* line;
  } const bad[] = {{"a CREATE \"../etc\"\r\n"},   {"a CREATE /etc/passwd\r\n"}, {"a CREATE a//b\r\n"},
                   {"a CREATE \"a/./b\"\r\n"},   {"a SELECT a/\r\n"},          {"a CREATE &Jjo\r\n"},
                   {"a CREATE \"&AGE-\"\r\n"},   {"a CREATE \"\"\r\n"}};
  for (const auto& b : bad) {
    auto e = parse_err(b.line);
    EXPECT_FALSE(e.bad) << b.line;  // NO: well-formed but unacceptable
    EXPECT_FALSE(e.text.empty());
  }
  EXPECT_FALSE(parse_err("a CREATE " + std::string(1001, 'x') + "\r\n").bad);
  // RFC 3501 §6.3.3: a trailing separator on CREATE declares a parent; the name is without it.
  EXPECT_EQ(parse_ok("a CREATE a/\r\n").mailbox, "a");
}

TEST(ParserTest, FetchItemsAndMacros) {
  using K = FetchItem::Kind;
  auto c = parse_ok("a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE BODY.PEEK[] BODY[1.2.HEADER.FIELDS (From to)]<0.100>)\r\n");
  ASSERT_EQ(c.fetch.size(), 6u);
  EXPECT_EQ(c.fetch[0].kind, K::Flags);
  EXPECT_EQ(c.fetch[4].kind, K::BodySection);
  EXPECT_TRUE(c.fetch[4].peek);
  EXPECT_EQ(c.fetch[4].section_spec, "");
  const auto& s = c.fetch[5];
  EXPECT_FALSE(s.peek);
  EXPECT_EQ(s.section.part, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(s.section.kind, Section::Kind::HeaderFields);
  EXPECT_EQ(s.section.fields, (std::vector<std::string>{"From", "to"}));
  EXPECT_EQ(s.section_spec, "1.2.HEADER.FIELDS (FROM TO)");
  ASSERT_TRUE(s.partial);
  EXPECT_EQ(s.partial->first, 0u);
  EXPECT_EQ(s.partial->second, 100u);
  ASSERT_EQ(c.set.ranges.size(), 1u);
  EXPECT_EQ(c.set.ranges[0].first, 1u);
  EXPECT_EQ(c.set.ranges[0].second, UINT32_MAX);

  EXPECT_EQ(parse_ok("a FETCH 1 ALL\r\n").fetch.size(), 4u);
  EXPECT_EQ(parse_ok("a FETCH 1 FAST\r\n").fetch.size(), 3u);
  EXPECT_EQ(parse_ok("a FETCH 1 FULL\r\n").fetch.size(), 5u);
  EXPECT_EQ(parse_ok("a FETCH 1 body[text]\r\n").fetch[0].section.kind, Section::Kind::Text);
  EXPECT_EQ(parse_ok("a FETCH 1 BODY[2.MIME]\r\n").fetch[0].section_spec, "2.MIME");
  auto u = parse_ok("a UID FETCH 1:5 (FLAGS) (CHANGEDSINCE 12345)\r\n");
  EXPECT_TRUE(u.uid);
  EXPECT_EQ(u.changed_since, 12345u);
  EXPECT_TRUE(u.condstore);

  EXPECT_TRUE(parse_err("a FETCH 1 (FLAGS\r\n").bad);
  EXPECT_TRUE(parse_err("a FETCH 1 BODY[MIME]\r\n").bad);
  EXPECT_TRUE(parse_err("a FETCH 1 BODY.PEEK\r\n").bad);
  EXPECT_TRUE(parse_err("a FETCH 0 FLAGS\r\n").bad);
  EXPECT_TRUE(parse_err("a FETCH 4294967296 FLAGS\r\n").bad);
  EXPECT_TRUE(parse_err("a FETCH 1 BODY[]<5>\r\n").bad);
}

TEST(ParserTest, SequenceSetsAreBoundedAndNormalised) {
  auto c = parse_ok("a FETCH 5:2,*:3,7 FLAGS\r\n");
  ASSERT_EQ(c.set.ranges.size(), 3u);
  EXPECT_EQ(c.set.ranges[0], std::make_pair(2u, 5u));
  EXPECT_EQ(c.set.ranges[1], std::make_pair(3u, UINT32_MAX));
  EXPECT_EQ(c.set.ranges[2], std::make_pair(7u, 7u));
  Limits l;
  l.max_ranges = 100;
  std::string many = "a FETCH 1";
  for (int i = 0; i < 200; ++i) many += ",1";
  auto r = parse_command(many + " FLAGS\r\n", l);
  ASSERT_TRUE(std::holds_alternative<ParseError>(r));
  EXPECT_EQ(std::get<ParseError>(r).text, "Too many ranges in the sequence set");
}

TEST(ParserTest, StoreForms) {
  auto c = parse_ok("a STORE 1:3 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n");
  EXPECT_EQ(c.store_op, POSTERN_FLAGS_ADD);
  EXPECT_TRUE(c.silent);
  EXPECT_EQ(c.flags, POSTERN_FLAG_SEEN | POSTERN_FLAG_DELETED);
  EXPECT_EQ(c.keywords, std::vector<std::string>{"$Junk"});
  auto d = parse_ok("a UID STORE 9 (UNCHANGEDSINCE 20) -FLAGS \\Flagged\r\n");
  EXPECT_EQ(d.store_op, POSTERN_FLAGS_REMOVE);
  EXPECT_EQ(d.unchanged_since, 20u);
  EXPECT_EQ(d.flags, POSTERN_FLAG_FLAGGED);
  EXPECT_EQ(parse_ok("a STORE 1 FLAGS ()\r\n").store_op, POSTERN_FLAGS_REPLACE);
  EXPECT_EQ(parse_err("a STORE 1 +FLAGS (\\Recent)\r\n").text, "\\Recent cannot be set by a client");
  EXPECT_TRUE(parse_err("a STORE 1 +FLAGS (\\Bogus)\r\n").bad);
  EXPECT_TRUE(parse_err("a STORE 1 +LABELS (x)\r\n").bad);
}

TEST(ParserTest, SearchBuildsKeyTree) {
  using Op = SearchKey::Op;
  auto c = parse_ok(
      "a SEARCH CHARSET UTF-8 OR FROM alice (SUBJECT \"hi there\" UNSEEN) NOT DELETED SINCE 1-Feb-1994 "
      "LARGER 100 UID 1:* HEADER X-Spam yes 2,4 KEYWORD $Junk\r\n");
  ASSERT_EQ(c.search.op, Op::And);
  const auto& k = c.search.children;
  ASSERT_EQ(k.size(), 8u);
  EXPECT_EQ(k[0].op, Op::Or);
  EXPECT_EQ(k[0].children[0].op, Op::From);
  EXPECT_EQ(k[0].children[0].text, "alice");
  EXPECT_EQ(k[0].children[1].op, Op::And);
  EXPECT_EQ(k[0].children[1].children[0].text, "hi there");
  EXPECT_EQ(k[1].op, Op::Not);
  EXPECT_EQ(k[1].children[0].op, Op::Deleted);
  EXPECT_EQ(k[2].op, Op::Since);
  EXPECT_EQ(k[2].date, 760060800);  // 1994-02-01T00:00:00Z
  EXPECT_EQ(k[3].number, 100u);
  EXPECT_EQ(k[4].op, Op::Uid);
  EXPECT_EQ(k[5].field, "X-Spam");
  EXPECT_EQ(k[6].op, Op::SequenceNumbers);
  EXPECT_EQ(k[7].text, "$Junk");
  auto m = parse_ok("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n");
  EXPECT_TRUE(m.search_modseq);
  EXPECT_EQ(m.search.children[0].number, 620162338u);

  auto cs = parse_err("a SEARCH CHARSET KOI8-R TEXT x\r\n");
  EXPECT_FALSE(cs.bad);
  EXPECT_EQ(cs.text.substr(0, 12), "[BADCHARSET ");
  EXPECT_TRUE(parse_err("a SEARCH SINCE 30-Feb-1994\r\n").bad);
  EXPECT_TRUE(parse_err("a SEARCH FROB\r\n").bad);
  EXPECT_TRUE(parse_err("a SEARCH\r\n").bad);
}

TEST(ParserTest, DeepNestingIsRefused) {
  std::string deep = "a SEARCH " + std::string(1000, '(') + "ALL" + std::string(1000, ')') + "\r\n";
  EXPECT_EQ(parse_err(deep).text, "Too deeply nested");
  std::string nots = "a SEARCH";
  for (int i = 0; i < 1000; ++i) nots += " NOT";
  EXPECT_EQ(parse_err(nots + " ALL\r\n").text, "Too deeply nested");
  std::string ok = "a SEARCH " + std::string(10, '(') + "ALL" + std::string(10, ')') + "\r\n";
  parse_ok(ok);
}

TEST(ParserTest, AppendKeepsTheMessageInPlace) {
  const std::string msg = "Subject: hi\r\n\r\nbody\r\n";
  auto c = parse_ok("a APPEND Sent (\\Seen) \"05-Jan-2024 10:00:00 +0100\" {" + std::to_string(msg.size()) + "}\r\n" +
                    msg + "\r\n");
  EXPECT_EQ(c.mailbox, "Sent");
  EXPECT_EQ(c.flags, POSTERN_FLAG_SEEN);
  EXPECT_EQ(c.date_time, "05-Jan-2024 10:00:00 +0100");
  EXPECT_EQ(c.message(), msg);
  Command moved = std::move(c);
  EXPECT_EQ(moved.message(), msg);
  EXPECT_EQ(parse_err("a APPEND INBOX message\r\n").text, "APPEND needs the message as a literal");
}

TEST(ParserTest, ListStatusEnableIdCreate) {
  auto l = parse_ok("a LIST \"\" %/*\r\n");
  EXPECT_EQ(l.arg1, "");
  EXPECT_EQ(l.arg2, "%/*");
  auto s = parse_ok("a STATUS INBOX (MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)\r\n");
  EXPECT_EQ(s.items.size(), 4u);
  EXPECT_TRUE(s.condstore);
  EXPECT_TRUE(parse_err("a STATUS INBOX (BOGUS)\r\n").bad);
  EXPECT_EQ(parse_ok("a ENABLE condstore X-OTHER\r\n").items, (std::vector<std::string>{"CONDSTORE", "X-OTHER"}));
  auto id = parse_ok("a ID (\"name\" \"mutt\" \"version\" NIL)\r\n");
  ASSERT_EQ(id.id_params.size(), 2u);
  EXPECT_FALSE(id.id_params[1].second);
  parse_ok("a ID NIL\r\n");
  EXPECT_EQ(parse_ok("a CREATE Sent2 (USE (\\Sent))\r\n").special_use, "\\Sent");
  EXPECT_FALSE(parse_err("a CREATE X (USE (\\Bogus))\r\n").bad);
  EXPECT_TRUE(parse_ok("a SELECT INBOX (CONDSTORE)\r\n").condstore);
  EXPECT_EQ(parse_ok("a AUTHENTICATE plain AGEAYg==\r\n").initial_response, "AGEAYg==");
}

TEST(ParserTest, NeverCrashesOnTruncatedInput) {
  const std::string full =
      "a UID FETCH 1:*,3 (FLAGS BODY.PEEK[1.HEADER.FIELDS.NOT (A B)]<1.2>) (CHANGEDSINCE 5)\r\n";
  for (size_t n = 0; n < full.size(); ++n) (void)parse_command(full.substr(0, n));
  const std::string lit = "a LOGIN {5}\r\nab";
  (void)parse_command(lit);
}

}  // namespace
}  // namespace postern::imap
