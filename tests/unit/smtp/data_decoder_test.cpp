#include "core/smtp/data_decoder.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

struct DataCase {
  const char* name;
  std::string input;
  BareLineEnding mode;
  bool done;
  std::string message;
  size_t consumed;  // npos: all
  bool bare_lf;
  bool bare_cr;
  bool nul;
};

TEST(DataDecoderTest, StateMachineTable) {
  constexpr size_t all = std::string::npos;
  const DataCase cases[] = {
      {"empty message", ".\r\n", BareLineEnding::Reject, true, "", all, false, false, false},
      {"simple", "Subject: x\r\n\r\nbody\r\n.\r\n", BareLineEnding::Reject, true, "Subject: x\r\n\r\nbody\r\n", all,
       false, false, false},
      {"dot unstuffing", "..leading\r\n...\r\n.x\r\n.\r\n", BareLineEnding::Reject, true, ".leading\r\n..\r\nx\r\n", all,
       false, false, false},
      {"stops at end marker", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", BareLineEnding::Reject, true, "a\r\n", 6, false, false,
       false},
      {"not ended", "a\r\n.", BareLineEnding::Reject, false, "a\r\n", all, false, false, false},
      {"dot inside line is data", "a.\r\n.\r\n", BareLineEnding::Reject, true, "a.\r\n", all, false, false, false},
      // SMTP smuggling: LF.LF and LF.CRLF and CR.CR never end the data.
      {"LF.LF is not the end", "a\n.\nMAIL FROM:<x@y>\r\n", BareLineEnding::Reject, false, "a", all, true, false, false},
      {"LF.CRLF is not the end", "a\n.\r\nRCPT\r\n.\r\n", BareLineEnding::Reject, true, "a", all, true, false, false},
      {"CRLF.LF is not the end", "a\r\n.\nb\r\n.\r\n", BareLineEnding::Reject, true, "a\r\n", all, true, false, false},
      {"CR.CR is not the end", "a\r.\rb\r\n.\r\n", BareLineEnding::Reject, true, "a", all, false, true, false},
      {"bare CR", "a\rb\r\n.\r\n", BareLineEnding::Reject, true, "a", all, false, true, false},
      {"NUL", "a\0b\r\n.\r\n", BareLineEnding::Reject, true, "a", all, false, false, true},
      {"normalize bare LF", "a\nb\r\n.\r\n", BareLineEnding::Normalize, true, "a\r\nb\r\n", all, true, false, false},
      {"normalize: dot after bare LF is kept", "a\n.\r\n.\r\n", BareLineEnding::Normalize, true, "a\r\n.\r\n", all, true,
       false, false},
      {"normalize bare CR", "a\rb\r\n.\r\n", BareLineEnding::Normalize, true, "a\r\nb\r\n", all, false, true, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string input = c.name == std::string("NUL") ? std::string("a\0b\r\n.\r\n", 8) : c.input;
    DataDecoder d(1 << 20, c.mode);
    size_t used = d.feed(input);
    EXPECT_EQ(d.done(), c.done);
    EXPECT_EQ(used, c.consumed == std::string::npos ? input.size() : c.consumed);
    EXPECT_EQ(d.bare_lf(), c.bare_lf);
    EXPECT_EQ(d.bare_cr(), c.bare_cr);
    EXPECT_EQ(d.nul(), c.nul);
    EXPECT_EQ(d.message().substr(0, c.message.size()), c.message);
    if (!c.bare_lf && !c.bare_cr && !c.nul) {
      EXPECT_EQ(d.message(), c.message);
    }
  }
}

TEST(DataDecoderTest, SameResultOctetByOctet) {
  const std::string input = "A: b\r\n\r\n..x\r\nline\r\n.\r\n";
  DataDecoder whole(1 << 20, BareLineEnding::Reject);
  whole.feed(input);
  DataDecoder split(1 << 20, BareLineEnding::Reject);
  size_t total = 0;
  for (char c : input) total += split.feed(std::string_view(&c, 1));
  EXPECT_EQ(total, input.size());
  EXPECT_TRUE(split.done());
  EXPECT_EQ(split.message(), whole.message());
  EXPECT_EQ(split.message(), "A: b\r\n\r\n.x\r\nline\r\n");
}

TEST(DataDecoderTest, OverSizeIsReadToTheEndAndFlagged) {
  DataDecoder d(10, BareLineEnding::Reject);
  std::string big = std::string(100, 'x') + "\r\n.\r\nNOOP\r\n";
  size_t used = d.feed(big);
  EXPECT_TRUE(d.done());
  EXPECT_TRUE(d.too_big());
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(used, big.size() - 6);
  EXPECT_LE(d.message().size(), 10u);
  EXPECT_EQ(d.size(), 102u);
}

TEST(LineCheckTest, FindsBareLineEndingsInChunks) {
  std::string ok = "a\r\nb\r\n";
  auto r = check_line_endings(ok, BareLineEnding::Reject);
  EXPECT_FALSE(r.bare_lf || r.bare_cr || r.nul);
  std::string lf = "a\nb\r\n";
  EXPECT_TRUE(check_line_endings(lf, BareLineEnding::Reject).bare_lf);
  std::string cr = "a\rb";
  EXPECT_TRUE(check_line_endings(cr, BareLineEnding::Reject).bare_cr);
  std::string fix = "a\nb\rc\r\n";
  auto n = check_line_endings(fix, BareLineEnding::Normalize);
  EXPECT_TRUE(n.bare_lf);
  EXPECT_EQ(fix, "a\r\nb\r\nc\r\n");
}

}  // namespace
}  // namespace postern::core::smtp
