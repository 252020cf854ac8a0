#pragma once
// pop3: the pure parts of the protocol — command lines, message encoding
// (RFC 1939 §3 byte-stuffing, CRLF lines), sizes as sent. SASL PLAIN is the
// mail library's (postern/mail/sasl.hpp).
// No I/O, no host: table-driven unit tests cover all of it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::plugins::pop3 {

/** One command line split into its keyword (upper-cased) and the rest. */
struct Command {
  std::string keyword;  // "RETR"; empty for an empty line
  std::string args;     // everything after the first space, unchanged
};

/**
 * Splits a command line (without CRLF). RFC 1939 §3: a keyword of 3-4
 * printable characters, case-insensitive, then arguments separated by one
 * space. Leading/trailing spaces of the argument string are kept for PASS
 * (a password may contain spaces); callers trim where the syntax says so.
 */
Command parse_command(std::string_view line);

/** Splits arguments at runs of spaces (LIST, TOP...). */
std::optional<std::pair<std::string_view, std::string_view>> split_two(std::string_view args);

/**
 * A message number or a line count: 1*DIGIT without sign, at most 9 digits.
 * @return nullopt for anything else.
 */
std::optional<uint32_t> parse_number(std::string_view text);

/**
 * Octets of `raw` as RETR sends them before byte-stuffing: every line ends
 * in CRLF (a bare LF becomes CRLF; a last line without a line end gets one).
 * This is the size LIST and STAT report (RFC 1939 §5: "exact size").
 */
uint64_t wire_size(std::string_view raw);

/**
 * Appends `raw` to `out` as a multi-line response body: CRLF lines,
 * a leading '.' doubled (RFC 1939 §3), then the terminating ".\r\n".
 * @param body_lines nullopt = the whole message (RETR); n = the header, the
 *   blank line and at most n body lines (TOP msg n).
 */
void encode_message(std::string_view raw, std::optional<uint64_t> body_lines, std::string& out);

}  // namespace postern::plugins::pop3
