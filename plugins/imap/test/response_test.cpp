#include "response.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <gtest/gtest.h>

namespace postern::imap {
namespace {

TEST(ResponseTest, StringsAreQuotedOrLiteralByContent) {
  EXPECT_EQ(imap_string("hello"), "\"hello\"");
  EXPECT_EQ(imap_string(""), "\"\"");
  EXPECT_EQ(imap_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(imap_string("two\r\nlines"), "{10}\r\ntwo\r\nlines");
  EXPECT_EQ(imap_string("caf\xc3\xa9"), "{5}\r\ncaf\xc3\xa9");
  EXPECT_EQ(imap_string(std::string(1100, 'x')).substr(0, 8), "{1100}\r\n");
}

TEST(ResponseTest, AstringUsesAtomsOnlyWhereSafe) {
  EXPECT_EQ(astring("INBOX"), "INBOX");
  EXPECT_EQ(astring("two words"), "\"two words\"");
  EXPECT_EQ(astring("NIL"), "\"NIL\"");
  EXPECT_EQ(astring("a]b"), "\"a]b\"");
  EXPECT_EQ(astring(""), "\"\"");
  EXPECT_EQ(nstring(std::nullopt), "NIL");
  EXPECT_EQ(nstring(std::string("x")), "\"x\"");
}

TEST(ResponseTest, FlagListNamesSystemFlagsThenKeywords) {
  EXPECT_EQ(flag_list(0, {}, false), "()");
  EXPECT_EQ(flag_list(POSTERN_FLAG_SEEN | POSTERN_FLAG_DELETED, {"$Junk"}, true), "(\\Seen \\Deleted \\Recent $Junk)");
}

TEST(ResponseTest, SequenceSetTextMergesRuns) {
  EXPECT_EQ(sequence_set_text({1, 2, 3, 7, 9, 10}), "1:3,7,9:10");
  EXPECT_EQ(sequence_set_text({5}), "5");
  EXPECT_EQ(sequence_set_text({}), "");
}

TEST(ResponseTest, MailboxNamesAreEncodedAndQuoted) {
  EXPECT_EQ(mailbox_name("INBOX"), "\"INBOX\"");
  EXPECT_EQ(mailbox_name("Entw\xc3\xbc" "rfe/A&B"), "\"Entw&APw-rfe/A&-B\"");
}

}  // namespace
}  // namespace postern::imap
