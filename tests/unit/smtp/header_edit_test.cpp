#include "core/smtp/header_edit.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

using Kind = event::HeaderEdit::Kind;

event::HeaderEdit add(const char* n, const char* v, bool prepend) { return {Kind::Add, n, v, 0, prepend}; }
event::HeaderEdit change(const char* n, int32_t i, const char* v) { return {Kind::Change, n, v, i, true}; }
event::HeaderEdit remove(const char* n, int32_t i) { return {Kind::Remove, n, "", i, true}; }

const std::string kMessage =
    "Received: from a\r\n\tby b\r\n"
    "Subject: hello\r\n"
    "X-Tag: one\r\n"
    "x-tag: two\r\n"
    "\r\n"
    "X-Tag: body line, not a header\r\n";

TEST(HeaderEditTest, AppliesEditsLikeTheAbi) {
  const struct {
    const char* name;
    std::vector<event::HeaderEdit> edits;
    std::string expected_header;
  } cases[] = {
      {"no edits", {}, "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"prepend", {add("X-Spam", "yes", true)},
       "X-Spam: yes\r\nReceived: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"append", {add("X-Spam", "yes", false)},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\nX-Spam: yes\r\n"},
      {"change second instance, case-insensitive", {change("X-TAG", 1, "2")},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: 2\r\n"},
      {"change folded field", {change("Received", 0, "x")},
       "Received: x\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"change missing adds at the bottom", {change("X-New", 0, "v")},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\nX-New: v\r\n"},
      {"change index past the end adds", {change("Subject", 3, "v")},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\nSubject: v\r\n"},
      {"remove first", {remove("x-tag", 0)}, "Received: from a\r\n\tby b\r\nSubject: hello\r\nx-tag: two\r\n"},
      {"remove all", {remove("X-Tag", -1)}, "Received: from a\r\n\tby b\r\nSubject: hello\r\n"},
      {"remove missing is a no-op", {remove("X-None", 0)},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"edits apply in order", {add("X-A", "1", true), remove("X-A", 0), add("X-B", "2", true)},
       "X-B: 2\r\nReceived: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"invalid name skipped", {add("Bad Name", "x", true), add("Bad:Name", "x", true)},
       "Received: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
      {"value line breaks are folded, never new fields", {add("X-Inject", "a\r\nBcc: evil@example.org", true)},
       "X-Inject: a\r\n\tBcc: evil@example.org\r\nReceived: from a\r\n\tby b\r\nSubject: hello\r\nX-Tag: one\r\nx-tag: two\r\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string out = apply_header_edits(kMessage, c.edits);
    EXPECT_EQ(out, c.expected_header + "\r\nX-Tag: body line, not a header\r\n");
  }
}

TEST(HeaderEditTest, MessageWithoutBodySeparator) {
  EXPECT_EQ(apply_header_edits("Subject: x\r\n", {add("X-A", "1", false)}), "Subject: x\r\nX-A: 1\r\n");
  EXPECT_EQ(apply_header_edits("Subject: x", {add("X-A", "1", false)}), "Subject: x\r\nX-A: 1\r\n");
  EXPECT_EQ(apply_header_edits("", {add("X-A", "1", true)}), "X-A: 1\r\n");
  // A line that is not a field ends the header block.
  EXPECT_EQ(apply_header_edits("Subject: x\r\nnot a header\r\n", {add("X-A", "1", false)}),
            "Subject: x\r\nX-A: 1\r\nnot a header\r\n");
}

TEST(HeaderEditTest, CountsFieldsForHopLimit) {
  EXPECT_EQ(count_header_fields(kMessage, "received"), 1u);
  EXPECT_EQ(count_header_fields(kMessage, "X-Tag"), 2u);
  std::string many;
  for (int i = 0; i < 101; ++i) many += "Received: x\r\n";
  many += "\r\nReceived: body\r\n";
  EXPECT_EQ(count_header_fields(many, "Received"), 101u);
}

}  // namespace
}  // namespace postern::core::smtp
