#pragma once
// IMAP's view of one stored message (RFC 3501 §6.4.5, §7.4.2; RFC 9051):
// the MIME tree with offsets into the raw octets, ENVELOPE, BODY and
// BODYSTRUCTURE, BODY[section]<partial> extraction, and the text a SEARCH
// key matches against. Pure functions over the raw message: no I/O, no SDK.
//
// CONTRACT between plugins/imap's protocol side (session.cpp, parser.cpp)
// and the message side (message.cpp, search.cpp). Owned by the message side;
// the signatures below may be extended, not changed.
//
// DESIGN
// - The MIME structure comes from the mail library (postern::mail::Message,
//   docs/mail-library.md), parsed with MessageOptions::keep_junk_header_lines
//   (Dovecot's reading of a header block: a line that is no field stays in
//   it, only a blank line or a delimiter ends it), parse_encoded_messages
//   (a base64 message/rfc822 is still a nested message, so BODYSTRUCTURE
//   has its envelope and body), exact_boundaries (boundaries as written,
//   anything after a close delimiter) and limits of kMaxMimeDepth
//   nesting levels and kMaxMimeParts parts. ParsedMessage is IMAP's view of
//   that tree: a MimePart per library Part, with the Content-* fields read the
//   strict way Dovecot reads them (mail::parse_media_type, parse_raw_params,
//   parse_raw_disposition), which is what BODYSTRUCTURE is compared with
//   (tests/integration/imap/test_imap_dovecot_structure.py).
// - Defaults (RFC 2045/2046): text/plain; charset=us-ascii, 7bit;
//   message/rfc822 inside multipart/digest; a Content-Type that is not
//   type/subtype is text/plain. Content-* fields are honoured without
//   MIME-Version. A multipart or message part at depth kMaxMimeDepth is
//   sent as an opaque application/octet-stream leaf.
// - Sizes and line counts are of the octets as sent: every bare LF counts as
//   CRLF, because section_text() converts bare LF to CRLF on the way out.
//   Lines = number of LFs in the body (the last line before a delimiter has
//   none), as Dovecot counts (mail::Part::body_lines).
// - Section numbers (RFC 3501 §6.4.5): a non-multipart message has only part
//   1 (its body); the parts of a message/rfc822 part are those of the
//   message it holds; anything else (e.g. 1.1 below a text/plain part 1)
//   does not exist and yields "" (Dovecot is lenient there; we are not).
//   HEADER/HEADER.FIELDS/TEXT with a part number need a message/rfc822 part.
// - BODY/BODYSTRUCTURE are written with upper-case type, subtype, encoding,
//   parameter and disposition names, values as written (RFC 3501 §7.4.2
//   examples). A text part without a charset parameter gets
//   "CHARSET" "us-ascii" appended. RFC 2231 parameters are merged; a value
//   that decodes to ASCII is sent plainly, other values keep the extended
//   form NAME* "charset'lang'%XX" (as Dovecot), since IMAP4rev1 quoted
//   strings cannot carry 8-bit. A multipart without parts is sent with one
//   empty text/plain part (the grammar needs one). Content-Language is
//   always a list.
// - ENVELOPE: Date, Subject, In-Reply-To, Message-ID from the first field of
//   that name, raw and unfolded; From/Sender/Reply-To/To/Cc/Bcc from all
//   fields of that name (joined) through mail::parse_address_list; Sender
//   and Reply-To fall back to From; the obsolete route as written; groups as
//   (NIL NIL "name" NIL) ... (NIL NIL NIL NIL); a missing local part or
//   domain is sent as "MISSING_MAILBOX" / "MISSING_DOMAIN" (Dovecot's
//   markers, so that no host is NIL outside group syntax).
// - Strings are quoted when 7-bit printable and at most 1024 octets,
//   otherwise sent as a literal {n}CRLF; absent values are NIL.
// - Cost: FETCH FLAGS, UID, INTERNALDATE and RFC822.SIZE need no parse; the
//   protocol side calls parse() only for ENVELOPE, BODY, BODYSTRUCTURE,
//   BODY[...] and SEARCH keys that needs_message().
// - Thread safety: a ParsedMessage is immutable after parse(); all functions
//   are reentrant.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <postern/mail/mime.hpp>

namespace postern::imap {

/** IMAP's view of one MIME part (RFC 2045), made from a mail::Part: offsets are into the raw message. */
struct MimePart {
  size_t index = 0;         // of the mail::Part in ParsedMessage::mime().parts()
  size_t header_begin = 0;  // first octet of the part's header block
  size_t header_end = 0;    // one past the blank line that ends it (== body_begin)
  size_t body_begin = 0;
  size_t body_end = 0;      // one past the last octet of the body (before the next boundary's CRLF)
  std::string type = "text";     // lower case
  std::string subtype = "plain"; // lower case
  std::vector<std::pair<std::string, std::string>> params;  // lower-case names, decoded values (RFC 2231)
  std::string id, description, encoding = "7bit", md5;      // encoding lower case
  std::string disposition;  // lower case, empty when absent
  std::vector<std::pair<std::string, std::string>> disposition_params;
  std::vector<std::string> language;
  std::string location;
  size_t lines = 0;                 // body lines (text/*, message/rfc822)
  std::vector<MimePart> children;   // multipart/*: the parts; message/rfc822: exactly one (the inner message)
  size_t size = 0;                  // body octets as sent (bare LF counted as CRLF)
  /** Content-Type parameters as BODYSTRUCTURE sends them (lower-case names; see DESIGN). */
  std::vector<std::pair<std::string, std::string>> params_wire;
  std::vector<std::pair<std::string, std::string>> disposition_params_wire;
  /** The decoded value of parameter `name` (lower case), or nullptr. */
  const std::string* param(std::string_view name) const;
  bool is_multipart() const { return type == "multipart"; }
  bool is_message() const { return type == "message" && (subtype == "rfc822" || subtype == "global"); }
};

/** Hostile-input limits of ParsedMessage::parse (see DESIGN). */
inline constexpr int kMaxMimeDepth = 100;
inline constexpr size_t kMaxMimeParts = 10000;

/** A parsed message: the mail library's Message and IMAP's view of its parts. */
class ParsedMessage {
 public:
  /** Parses `raw` (CRLF or bare LF; never fails: malformed MIME degrades to text/plain). */
  static std::shared_ptr<const ParsedMessage> parse(std::shared_ptr<const std::string> raw);

  std::string_view raw() const { return mime_.raw(); }
  const MimePart& root() const { return root_; }
  /** The library's parse (header fields of every part, decoded bodies). */
  const mail::Message& mime() const { return mime_; }
  /** The header fields of `p` (with the lines that are no field, see DESIGN). */
  const std::vector<mail::Header>& headers(const MimePart& p) const { return mime_.parts()[p.index].headers; }

  /** The part at an IMAP section number ("1.2" -> {1,2}); nullptr when there is none. */
  const MimePart* part(const std::vector<uint32_t>& path) const;
  /**
   * The value of the first header field `name` (case-insensitive) of the
   * top-level header, unfolded, raw (encoded words kept); nullopt if absent.
   */
  std::optional<std::string> header(std::string_view name) const;

  /** The raw header block of `p` (including the empty line that ends it). */
  std::string_view header_block(const MimePart& p) const;
  /** The raw body of `p`. */
  std::string_view body(const MimePart& p) const;

  MimePart root_;
  mail::Message mime_;
};

/** FETCH ENVELOPE: the parenthesised list, RFC 3501 §7.4.2 (NIL, quoting and literals as needed). */
std::string envelope(const ParsedMessage& m);
/** FETCH BODY (extended = false) or BODYSTRUCTURE (extended = true). */
std::string body_structure(const ParsedMessage& m, bool extended);

/** A BODY[...] section spec (RFC 3501 §6.4.5). */
struct Section {
  enum class Kind { Full, Header, HeaderFields, HeaderFieldsNot, Text, Mime };
  std::vector<uint32_t> part;  // empty = the whole message
  Kind kind = Kind::Full;
  std::vector<std::string> fields;  // HEADER.FIELDS (.NOT) names as given
};
/**
 * The octets of a section (before <partial> is applied). A part that does
 * not exist yields an empty string (RFC 3501: "", not an error).
 */
std::string section_text(const ParsedMessage& m, const Section& s);
/** Whether the part `path` (an IMAP part number, {} = the message) exists in `m`. */
bool section_exists(const ParsedMessage& m, const std::vector<uint32_t>& path);

/** RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" of `epoch_seconds` in UTC (INTERNALDATE). */
std::string format_internal_date(int64_t epoch_seconds);
/** Parses an APPEND date-time; nullopt if malformed. */
std::optional<int64_t> parse_internal_date(std::string_view text);
/** Parses a SEARCH date "1-Feb-1994" to the epoch second of its 00:00 UTC; nullopt if malformed. */
std::optional<int64_t> parse_search_date(std::string_view text);

/** `s` with every bare LF turned into CRLF. */
std::string to_crlf(std::string_view s);
/** Octets of `s` once to_crlf() is applied. */
size_t crlf_size(std::string_view s);
/** Appends code point `cp` to `out` as UTF-8 (the mail library's append_utf8). */
void append_utf8(std::string& out, uint32_t cp);

/** Converts `bytes` in `charset` to UTF-8; returns false (and leaves `out` = bytes) when the charset is unknown. */
bool charset_to_utf8(std::string_view bytes, std::string_view charset, std::string& out);
/** A part's body as UTF-8 text: transfer encoding undone, charset converted where known. */
std::string decoded_text(const ParsedMessage& m, const MimePart& p);

/** The date of an RFC 5322 Date: value as written (its own zone) as the epoch second of its 00:00 UTC; nullopt if malformed. */
std::optional<int64_t> parse_rfc5322_day(std::string_view value);

}  // namespace postern::imap
