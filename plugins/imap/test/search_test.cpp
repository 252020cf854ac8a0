// Tests for plugins/imap/src/search.cpp: every SearchKey::Op, decoding and
// case folding of string keys, and when the message is loaded.
#include "search.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <gtest/gtest.h>

namespace postern::imap {
namespace {

using Op = SearchKey::Op;

SearchKey key(Op op, std::string text = {}) {
  SearchKey k;
  k.op = op;
  k.text = std::move(text);
  return k;
}
SearchKey date_key(Op op, const char* date) {
  SearchKey k;
  k.op = op;
  k.date = parse_search_date(date).value();
  return k;
}
SearchKey number_key(Op op, uint64_t n) {
  SearchKey k;
  k.op = op;
  k.number = n;
  return k;
}
SearchKey header_key(std::string field, std::string text) {
  SearchKey k = key(Op::Header, std::move(text));
  k.field = std::move(field);
  return k;
}
SearchKey set_key(Op op, std::vector<std::pair<uint32_t, uint32_t>> ranges) {
  SearchKey k;
  k.op = op;
  k.set.ranges = std::move(ranges);
  return k;
}
SearchKey node(Op op, std::vector<SearchKey> children) {
  SearchKey k;
  k.op = op;
  k.children = std::move(children);
  return k;
}

const char* kMessage =
    "Date: Tue, 1 Feb 1994 23:30:00 -0800\r\n"
    "From: =?ISO-8859-1?Q?Andr=E9?= Muller <andre@example.org>\r\n"
    "To: Bob <bob@example.net>, carol@example.com\r\n"
    "Cc: =?UTF-8?B?0JjQstCw0L0=?= <ivan@example.ru>\r\n"
    "Subject: =?UTF-8?Q?=C3=89T=C3=89_report?= for Q1\r\n"
    "X-Priority: 1\r\n"
    "X-Empty:\r\n"
    "Content-Type: multipart/mixed; boundary=s\r\n"
    "\r\n"
    "--s\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Le caf=E9 est pr=EAt, soft=\r\nbroken word.\r\n"
    "--s\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "PHA+zrrOsc67zrfOvM6tz4HOsTwvcD4=\r\n"
    "--s\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "c2VjcmV0IGluIGJpbmFyeQ==\r\n"
    "--s\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "Subject: forwarded thing\r\n"
    "\r\n"
    "inner body text\r\n"
    "--s--\r\n";

class SearchTest : public ::testing::Test {
 protected:
  SearchTest() {
    subject_.msn = 3;
    subject_.uid = 30;
    subject_.flags = POSTERN_FLAG_SEEN | POSTERN_FLAG_FLAGGED;
    subject_.recent = false;
    subject_.keywords = &keywords_;
    subject_.internal_date = parse_internal_date("02-Feb-1994 07:30:00 +0000").value();
    subject_.size = 1500;
    subject_.modseq = 77;
    subject_.max_msn = 10;
    subject_.max_uid = 100;
    subject_.load = [this] {
      ++loads_;
      return ParsedMessage::parse(std::make_shared<const std::string>(raw_));
    };
  }

  bool match(const SearchKey& k) { return matches(k, subject_); }

  std::string raw_ = kMessage;
  std::vector<std::string> keywords_ = {"$Forwarded", "Project-X"};
  SearchSubject subject_;
  int loads_ = 0;
};

TEST(SequenceSetTest, ResolvesStarAndReversedRanges) {
  SequenceSet set;
  set.ranges = {{1, 3}, {7, 7}, {9, UINT32_MAX}};
  EXPECT_TRUE(set.contains(1, 20));
  EXPECT_TRUE(set.contains(3, 20));
  EXPECT_FALSE(set.contains(4, 20));
  EXPECT_TRUE(set.contains(7, 20));
  EXPECT_TRUE(set.contains(20, 20));
  EXPECT_FALSE(set.contains(21, 20));
  // "9:*" with '*' = 5 is 5:9 (RFC 3501 §9 seq-range).
  EXPECT_TRUE(set.contains(5, 5));
  EXPECT_FALSE(set.contains(4, 5));
  SequenceSet star;
  star.ranges = {{UINT32_MAX, UINT32_MAX}};
  EXPECT_TRUE(star.contains(42, 42));
  EXPECT_FALSE(star.contains(41, 42));
  EXPECT_FALSE(SequenceSet{}.contains(1, 1));
}

TEST_F(SearchTest, SystemFlags) {
  EXPECT_TRUE(match(key(Op::All)));
  EXPECT_TRUE(match(key(Op::Seen)));
  EXPECT_TRUE(match(key(Op::Flagged)));
  EXPECT_FALSE(match(key(Op::Answered)));
  EXPECT_FALSE(match(key(Op::Deleted)));
  EXPECT_FALSE(match(key(Op::Draft)));
  EXPECT_FALSE(match(key(Op::Unseen)));
  EXPECT_FALSE(match(key(Op::Unflagged)));
  EXPECT_TRUE(match(key(Op::Unanswered)));
  EXPECT_TRUE(match(key(Op::Undeleted)));
  EXPECT_TRUE(match(key(Op::Undraft)));
  subject_.flags = POSTERN_FLAG_ANSWERED | POSTERN_FLAG_DELETED | POSTERN_FLAG_DRAFT;
  EXPECT_TRUE(match(key(Op::Answered)));
  EXPECT_TRUE(match(key(Op::Deleted)));
  EXPECT_TRUE(match(key(Op::Draft)));
  EXPECT_TRUE(match(key(Op::Unseen)));
  EXPECT_EQ(loads_, 0);
}

TEST_F(SearchTest, RecentNewOld) {
  EXPECT_FALSE(match(key(Op::Recent)));
  EXPECT_TRUE(match(key(Op::Old)));
  EXPECT_FALSE(match(key(Op::New)));
  subject_.recent = true;
  EXPECT_TRUE(match(key(Op::Recent)));
  EXPECT_FALSE(match(key(Op::Old)));
  EXPECT_FALSE(match(key(Op::New)));  // NEW is RECENT UNSEEN and this one is seen
  subject_.flags = 0;
  EXPECT_TRUE(match(key(Op::New)));
}

TEST_F(SearchTest, KeywordsMatchCaseInsensitively) {
  EXPECT_TRUE(match(key(Op::Keyword, "$forwarded")));
  EXPECT_TRUE(match(key(Op::Keyword, "PROJECT-X")));
  EXPECT_FALSE(match(key(Op::Keyword, "Project")));
  EXPECT_TRUE(match(key(Op::Unkeyword, "$Junk")));
  EXPECT_FALSE(match(key(Op::Unkeyword, "project-x")));
  subject_.keywords = nullptr;
  EXPECT_FALSE(match(key(Op::Keyword, "$Forwarded")));
  EXPECT_TRUE(match(key(Op::Unkeyword, "$Forwarded")));
}

TEST_F(SearchTest, InternalDateComparesUtcDays) {
  // Internal date 1994-02-02 07:30 UTC.
  EXPECT_TRUE(match(date_key(Op::On, "2-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::On, "1-Feb-1994")));
  EXPECT_TRUE(match(date_key(Op::Since, "2-Feb-1994")));
  EXPECT_TRUE(match(date_key(Op::Since, "1-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::Since, "3-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::Before, "2-Feb-1994")));
  EXPECT_TRUE(match(date_key(Op::Before, "3-Feb-1994")));
  EXPECT_EQ(loads_, 0);
}

TEST_F(SearchTest, SentDateUsesTheDateFieldInItsOwnZone) {
  // Date: Tue, 1 Feb 1994 23:30:00 -0800 is 2 Feb in UTC, but SENTON compares the date as written.
  EXPECT_TRUE(match(date_key(Op::SentOn, "1-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::SentOn, "2-Feb-1994")));
  EXPECT_TRUE(match(date_key(Op::SentBefore, "2-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::SentBefore, "1-Feb-1994")));
  EXPECT_TRUE(match(date_key(Op::SentSince, "1-Feb-1994")));
  EXPECT_FALSE(match(date_key(Op::SentSince, "2-Feb-1994")));
}

TEST_F(SearchTest, SentDateFallsBackToTheInternalDate) {
  raw_ = "Subject: no date\r\n\r\nx\r\n";
  EXPECT_TRUE(match(date_key(Op::SentOn, "2-Feb-1994")));
  raw_ = "Date: garbage\r\n\r\nx\r\n";
  EXPECT_TRUE(match(date_key(Op::SentOn, "2-Feb-1994")));
}

TEST_F(SearchTest, SizeUidSequenceAndModseq) {
  EXPECT_TRUE(match(number_key(Op::Larger, 1499)));
  EXPECT_FALSE(match(number_key(Op::Larger, 1500)));
  EXPECT_TRUE(match(number_key(Op::Smaller, 1501)));
  EXPECT_FALSE(match(number_key(Op::Smaller, 1500)));
  EXPECT_TRUE(match(set_key(Op::Uid, {{1, 30}})));
  EXPECT_FALSE(match(set_key(Op::Uid, {{31, UINT32_MAX}})));
  EXPECT_TRUE(match(set_key(Op::SequenceNumbers, {{2, 4}})));
  EXPECT_FALSE(match(set_key(Op::SequenceNumbers, {{UINT32_MAX, UINT32_MAX}})));
  subject_.msn = 10;
  EXPECT_TRUE(match(set_key(Op::SequenceNumbers, {{UINT32_MAX, UINT32_MAX}})));
  EXPECT_TRUE(match(number_key(Op::ModSeq, 77)));
  EXPECT_TRUE(match(number_key(Op::ModSeq, 1)));
  EXPECT_FALSE(match(number_key(Op::ModSeq, 78)));
  EXPECT_EQ(loads_, 0);
}

TEST_F(SearchTest, NotOrAnd) {
  EXPECT_FALSE(match(node(Op::Not, {key(Op::Seen)})));
  EXPECT_TRUE(match(node(Op::Not, {key(Op::Deleted)})));
  EXPECT_TRUE(match(node(Op::Or, {key(Op::Deleted), key(Op::Seen)})));
  EXPECT_FALSE(match(node(Op::Or, {key(Op::Deleted), key(Op::Draft)})));
  EXPECT_TRUE(match(node(Op::And, {key(Op::Seen), key(Op::Flagged)})));
  EXPECT_FALSE(match(node(Op::And, {key(Op::Seen), key(Op::Deleted)})));
  EXPECT_TRUE(match(node(Op::And, {})));
  EXPECT_TRUE(match(node(Op::Or, {node(Op::Not, {key(Op::Seen)}), node(Op::And, {key(Op::Flagged)})})));
}

TEST_F(SearchTest, SubjectIsDecodedAndFoldedBeyondAscii) {
  EXPECT_TRUE(match(key(Op::Subject, "\xC3\xA9t\xC3\xA9 REPORT")));  // "été REPORT" against "ÉTÉ report"
  EXPECT_TRUE(match(key(Op::Subject, "for q1")));
  EXPECT_FALSE(match(key(Op::Subject, "=?UTF-8?Q?")));
  EXPECT_FALSE(match(key(Op::Subject, "Q2")));
}

TEST_F(SearchTest, AddressFieldsMatchDecodedNamesAndAddresses) {
  EXPECT_TRUE(match(key(Op::From, "andr\xC3\xA9")));
  EXPECT_TRUE(match(key(Op::From, "ANDRE@EXAMPLE")));
  EXPECT_FALSE(match(key(Op::From, "bob")));
  EXPECT_TRUE(match(key(Op::To, "carol@")));
  EXPECT_TRUE(match(key(Op::To, "Bob <bob")));
  EXPECT_TRUE(match(key(Op::Cc, "\xD0\xB8\xD0\xB2\xD0\xB0\xD0\xBD")));  // "иван" against "Иван"
  EXPECT_FALSE(match(key(Op::Bcc, "a")));
}

TEST_F(SearchTest, HeaderKeyFindsFieldsAndEmptyStringMeansPresent) {
  EXPECT_TRUE(match(header_key("x-priority", "1")));
  EXPECT_FALSE(match(header_key("X-Priority", "2")));
  EXPECT_TRUE(match(header_key("X-Empty", "")));
  EXPECT_TRUE(match(header_key("x-priority", "")));
  EXPECT_FALSE(match(header_key("X-Missing", "")));
  EXPECT_TRUE(match(header_key("Content-Type", "MULTIPART")));
}

TEST_F(SearchTest, BodySearchesDecodedTextParts) {
  EXPECT_TRUE(match(key(Op::Body, "CAF\xC3\x89 EST PR\xC3\x8AT")));  // quoted-printable, iso-8859-1
  EXPECT_TRUE(match(key(Op::Body, "softbroken")));                   // soft line break undone
  EXPECT_TRUE(match(key(Op::Body, "\xCE\x9A\xCE\xB1\xCE\xBB\xCE\xB7\xCE\xBC\xCE\xAD\xCF\x81\xCE\xB1")));  // base64 html, Greek
  EXPECT_TRUE(match(key(Op::Body, "inner body")));                   // encapsulated message
  EXPECT_TRUE(match(key(Op::Body, "forwarded thing")));              // its header is in the outer body
  EXPECT_FALSE(match(key(Op::Body, "secret")));                      // not a text part
  EXPECT_FALSE(match(key(Op::Body, "Muller")));                      // top-level header only
  EXPECT_FALSE(match(key(Op::Body, "=E9")));                         // the encoded form
}

TEST_F(SearchTest, TextSearchesHeaderAndBody) {
  EXPECT_TRUE(match(key(Op::Text, "muller")));
  EXPECT_TRUE(match(key(Op::Text, "x-priority: 1")));
  EXPECT_TRUE(match(key(Op::Text, "broken word")));
  EXPECT_TRUE(match(key(Op::Text, "application/octet-stream")));  // a part's MIME header
  EXPECT_FALSE(match(key(Op::Body, "application/octet-stream")));
  EXPECT_FALSE(match(key(Op::Text, "nowhere to be found")));
}

TEST_F(SearchTest, MessageIsLoadedOnlyWhenNeededAndOnce) {
  SearchKey flags_only = node(Op::And, {key(Op::Seen), node(Op::Not, {key(Op::Deleted)}), number_key(Op::Larger, 1)});
  EXPECT_FALSE(needs_message(flags_only));
  EXPECT_TRUE(match(flags_only));
  EXPECT_EQ(loads_, 0);
  SearchKey strings = node(Op::And, {key(Op::Subject, "report"), key(Op::Body, "caf"), key(Op::Text, "q1"),
                                     header_key("X-Priority", ""), date_key(Op::SentOn, "1-Feb-1994")});
  EXPECT_TRUE(needs_message(strings));
  EXPECT_TRUE(needs_message(node(Op::Or, {key(Op::Seen), node(Op::Not, {key(Op::From, "x")})})));
  EXPECT_TRUE(match(strings));
  EXPECT_EQ(loads_, 1);
}

TEST_F(SearchTest, AMessageThatCannotBeLoadedMatchesNoStringKey) {
  subject_.load = [] { return std::shared_ptr<const ParsedMessage>(); };
  EXPECT_FALSE(match(key(Op::Body, "x")));
  EXPECT_TRUE(match(node(Op::Not, {key(Op::Subject, "x")})));
  subject_.load = nullptr;
  EXPECT_FALSE(match(key(Op::Text, "x")));
}

TEST(FoldCaseTest, FoldsAsciiLatinGreekCyrillicAndKeepsInvalidOctets) {
  EXPECT_EQ(fold_case("HeLLo"), "hello");
  EXPECT_EQ(fold_case("\xC3\x89T\xC3\x89"), "\xC3\xA9t\xC3\xA9");                   // ÉTÉ -> été
  EXPECT_EQ(fold_case("\xC5\x81\xC3\x93" "D\xC5\xB9"), "\xC5\x82\xC3\xB3" "d\xC5\xBA");  // ŁÓDŹ -> łódź
  EXPECT_EQ(fold_case("\xCE\xA3\xCE\x9F\xCF\x82"), "\xCF\x83\xCE\xBF\xCF\x83");       // ΣΟς -> σοσ
  EXPECT_EQ(fold_case("\xD0\x81\xD0\x96"), "\xD1\x91\xD0\xB6");                       // ЁЖ -> ёж
  EXPECT_EQ(fold_case("\xFF\xC3"), "\xFF\xC3");
  EXPECT_EQ(fold_case("\xC0\x80"), "\xC0\x80");  // overlong NUL stays as it is
}

}  // namespace
}  // namespace postern::imap
