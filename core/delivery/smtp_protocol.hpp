#pragma once
// The SMTP client's wire helpers: reply parsing (RFC 5321 §4.2, RFC 3463
// enhanced codes), EHLO capabilities, dot-stuffing (§4.5.2), and the 7-bit
// downgrade of 8-bit MIME bodies (RFC 6152 §3). Pure functions, no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::delivery {

/** One complete (possibly multiline) SMTP reply. */
struct Reply {
  int code = 0;                    // 0: malformed
  std::string enhanced;            // "2.0.0" when the first line carried one, else ""
  std::vector<std::string> lines;  // text of each line, after the code and separator
  /** The text of all lines joined by a space, the enhanced code removed from each line. */
  std::string text() const;
  /** "250 2.0.0 text" on one line (for logs and results). */
  std::string str() const;
};

/** Assembles replies from lines; call push() per line (without CRLF). */
class ReplyParser {
 public:
  enum class State { More, Done, Error };
  /**
   * @return More while the reply continues ("250-"), Done when `line` ended it
   *   (take() it), Error on a malformed line (no 3-digit code, mismatching codes).
   */
  State push(std::string_view line);
  Reply take();

 private:
  Reply cur_;
};

/** What the server announced in its EHLO reply. */
struct Capabilities {
  bool esmtp = false;  // EHLO succeeded
  bool pipelining = false, starttls = false, eightbitmime = false, binarymime = false, chunking = false,
       smtputf8 = false, dsn = false, enhanced_status = false;
  bool size = false;
  uint64_t max_size = 0;  // 0 = SIZE without a limit
  bool auth_plain = false, auth_login = false;
};
Capabilities parse_ehlo(const Reply& reply);

/**
 * Prepares a message for DATA: bare LF and bare CR become CRLF, a line starting
 * with '.' gets another '.' (RFC 5321 §4.5.2), a missing final CRLF is added,
 * and ".\r\n" ends it.
 */
std::string dot_stuff(std::string_view message);

/** True when any octet has the high bit set or is NUL. */
bool has_8bit(std::string_view data);
/** The longest line (octets without the line end). */
size_t longest_line(std::string_view data);

/**
 * Re-encodes the message for a 7-bit path (RFC 6152 §3) and for RFC 5321 §4.5.3.1.6
 * line length: every leaf part whose body has 8-bit octets or lines longer than
 * 998 octets is re-encoded (text: quoted-printable, others: base64), recursively
 * through multipart and message/rfc822, and its Content-Transfer-Encoding fixed;
 * enclosing multipart/message parts get "7bit". Parts already base64 or
 * quoted-printable are left as they are. With `allow_8bit`, 8-bit octets are fine
 * and only over-long lines cause re-encoding.
 * @return the new message, or nullopt when nothing needed a change.
 */
std::optional<std::string> downgrade_message(std::string_view message, bool allow_8bit);

/** Collapses CR/LF and control characters to spaces (for one-line texts). */
std::string one_line(std::string_view text);

}  // namespace postern::core::delivery
