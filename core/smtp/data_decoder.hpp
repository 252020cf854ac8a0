#pragma once
// The DATA state machine (RFC 5321 §4.1.1.4, §4.5.2): finds the end of data
// (only CRLF "." CRLF), undoes dot-stuffing exactly, and detects what the
// SMTP-smuggling class of attacks (CVE-2023-51764 etc.) relies on: bare LF and
// bare CR. NUL octets are flagged too. Pure and incremental: feed it whatever
// the socket produced; it says how much it consumed and whether the end was seen.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::core::smtp {

/** What to do with a bare LF or bare CR inside the message. */
enum class BareLineEnding {
  Reject,     // flag it; the engine answers 5xx after the end of data
  Normalize,  // turn it into CRLF (a dot after it is never an end marker)
};

class DataDecoder {
 public:
  /**
   * @param max_size octets of unstuffed message kept; beyond it the rest is read and discarded.
   * @param mode what to do with bare LF / bare CR.
   */
  DataDecoder(size_t max_size, BareLineEnding mode) : max_size_(max_size), mode_(mode) {}

  /**
   * Consumes octets up to and including the end-of-data marker.
   * @return octets of `in` consumed; less than in.size() only when done() became true
   *   (the rest belongs to the next command).
   */
  size_t feed(std::string_view in);

  bool done() const { return state_ == State::Done; }
  /** The unstuffed message (CRLF line endings). Stops growing once an error is flagged. */
  const std::string& message() const { return out_; }
  std::string take_message() { return std::move(out_); }
  /** Octets of the unstuffed message, counted even after storing stopped. */
  uint64_t size() const { return size_; }

  bool too_big() const { return too_big_; }
  bool bare_lf() const { return bare_lf_; }
  bool bare_cr() const { return bare_cr_; }
  bool nul() const { return nul_; }
  bool failed() const { return too_big_ || nul_ || (mode_ == BareLineEnding::Reject && (bare_lf_ || bare_cr_)); }

 private:
  enum class State { LineStart, Text, CR, Dot, DotCR, Done };
  void emit(char c);
  void emit_crlf();
  void text_octet(char c);

  size_t max_size_;
  BareLineEnding mode_;
  State state_ = State::LineStart;
  std::string out_;
  uint64_t size_ = 0;
  bool too_big_ = false;
  bool bare_lf_ = false;
  bool bare_cr_ = false;
  bool nul_ = false;
};

/**
 * Checks an already delimited message (BDAT chunks) for bare LF / bare CR / NUL.
 * In Normalize mode bare line endings are rewritten to CRLF in place.
 * @return false when the message must be rejected.
 */
struct LineCheck {
  bool bare_lf = false;
  bool bare_cr = false;
  bool nul = false;
};
LineCheck check_line_endings(std::string& message, BareLineEnding mode);

}  // namespace postern::core::smtp
