// libFuzzer target for the DATA state machine (core/smtp/data_decoder.*) and the
// BDAT line-ending check. Checks that the result never depends on how the socket
// split the input, that an accepted message has only CRLF line endings, that
// re-stuffing an accepted message and decoding it again gives it back exactly
// (RFC 5321 §4.5.2), and that the size limit bounds memory. A broken promise aborts.
// Input: one octet of flags (mode, limit), one of chunking seed, then the octets
// the client sent after "354".
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/smtp/data_decoder.hpp"

namespace smtp = postern::core::smtp;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "smtp data invariant broken: %s\n", what);
    std::abort();
  }
}

struct Run {
  size_t consumed = 0;
  bool done = false;
  std::string message;
  uint64_t size = 0;
  bool too_big = false, bare_lf = false, bare_cr = false, nul = false, failed = false;
};

Run decode(std::string_view in, size_t max_size, smtp::BareLineEnding mode, uint8_t seed) {
  smtp::DataDecoder dec(max_size, mode);
  Run r;
  size_t pos = 0;
  uint32_t state = seed | 1u;
  while (pos < in.size() && !dec.done()) {
    // Chunk sizes 1..64 from a tiny LCG: the socket can split anywhere.
    size_t chunk = seed == 0 ? in.size() - pos : 1 + (state >> 16) % 64;
    state = state * 1103515245u + 12345u;
    chunk = std::min(chunk, in.size() - pos);
    const size_t n = dec.feed(in.substr(pos, chunk));
    require(n <= chunk, "feed consumes at most its input");
    require(n == chunk || dec.done(), "feed stops early only at the end marker");
    pos += n;
  }
  r.consumed = pos;
  r.done = dec.done();
  r.size = dec.size();
  r.too_big = dec.too_big();
  r.bare_lf = dec.bare_lf();
  r.bare_cr = dec.bare_cr();
  r.nul = dec.nul();
  r.failed = dec.failed();
  r.message = dec.take_message();
  return r;
}

bool crlf_only(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

std::string stuff(std::string_view message) {
  // RFC 5321 §4.5.2: a line that starts with a dot gets one more.
  std::string out;
  bool line_start = true;
  for (char c : message) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  return out + ".\r\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t seed = data[1];
  const std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  const auto mode = (flags & 1) ? smtp::BareLineEnding::Normalize : smtp::BareLineEnding::Reject;
  const size_t max_size = (flags & 2) ? (flags >> 2) : 1u << 20;

  const Run whole = decode(in, max_size, mode, 0);
  const Run split = decode(in, max_size, mode, seed);
  require(whole.consumed == split.consumed && whole.done == split.done, "chunking does not move the end");
  require(whole.message == split.message && whole.size == split.size, "chunking does not change the message");
  require(whole.too_big == split.too_big && whole.bare_lf == split.bare_lf && whole.bare_cr == split.bare_cr &&
              whole.nul == split.nul,
          "chunking does not change the verdict");

  const Run& r = whole;
  require(r.message.size() <= max_size, "the limit bounds what is kept");
  require(r.too_big == (r.size > max_size), "too_big means over the limit");
  if (r.done) {
    // The marker is the last thing consumed, and only CRLF . CRLF ends the data.
    require(r.consumed >= 3 && in.substr(r.consumed - 3, 3) == ".\r\n", "ends with .CRLF");
    require(r.consumed == 3 || (r.consumed >= 5 && in.substr(r.consumed - 5, 2) == "\r\n"), "marker after CRLF");
  } else {
    require(r.consumed == in.size(), "everything consumed while not done");
  }
  if (!r.failed) {
    require(r.message.size() == r.size, "kept everything when nothing failed");
    require(r.nul == false, "NUL always fails");
    require(crlf_only(r.message), "accepted message has only CRLF line endings");
    if (r.done) {
      require(r.message.empty() || r.message.size() >= 2, "non-empty message ends in CRLF");
      if (!r.message.empty()) require(r.message.substr(r.message.size() - 2) == "\r\n", "message ends in CRLF");
      // Round trip: stuffing the accepted message and decoding again gives it back.
      const std::string again_in = stuff(r.message);
      const Run again = decode(again_in, 1u << 21, smtp::BareLineEnding::Reject, seed);
      require(again.done && again.consumed == again_in.size(), "re-stuffed message ends at its marker");
      require(!again.failed && again.message == r.message, "stuffing round trip");
    }
  }
  if (mode == smtp::BareLineEnding::Reject && (r.bare_lf || r.bare_cr)) require(r.failed, "bare line endings fail");

  // BDAT: the delimited message (no stuffing) goes through check_line_endings.
  std::string bdat(in);
  const smtp::LineCheck lc = smtp::check_line_endings(bdat, mode);
  require(lc.nul == (in.find('\0') != std::string_view::npos), "NUL detection");
  if (mode == smtp::BareLineEnding::Reject) {
    require(bdat == in, "reject mode never rewrites");
    require((lc.bare_cr || lc.bare_lf) == !crlf_only(in), "bare endings detected exactly");
  } else {
    require(crlf_only(bdat), "normalize leaves only CRLF");
    std::string twice = bdat;
    const smtp::LineCheck lc2 = smtp::check_line_endings(twice, mode);
    require(!lc2.bare_cr && !lc2.bare_lf && twice == bdat, "normalizing is idempotent");
  }
  return 0;
}
