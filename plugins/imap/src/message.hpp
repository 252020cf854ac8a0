#pragma once
// IMAP's view of one stored message (RFC 3501 §6.4.5, §7.4.2; RFC 9051):
// the MIME tree with offsets into the raw octets, ENVELOPE, BODY and
// BODYSTRUCTURE, BODY[section]<partial> extraction, and the text a SEARCH
// key matches against. Pure functions over the raw message: no I/O, no SDK.
//
// CONTRACT between plugins/imap's protocol side (session.cpp, parser.cpp)
// and the message side (message.cpp, search.cpp). Owned by the message side;
// the signatures below may be extended, not changed.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::imap {

/** One MIME part (RFC 2045): offsets are into the raw message. */
struct MimePart {
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
  bool is_multipart() const { return type == "multipart"; }
  bool is_message() const { return type == "message" && (subtype == "rfc822" || subtype == "global"); }
};

/** A parsed message. Keeps a copy of (or shares) the raw octets. */
class ParsedMessage {
 public:
  /** Parses `raw` (CRLF or bare LF; never fails: malformed MIME degrades to text/plain). */
  static std::shared_ptr<const ParsedMessage> parse(std::shared_ptr<const std::string> raw);

  const std::string& raw() const { return *raw_; }
  const MimePart& root() const { return root_; }

  /** The part at an IMAP section number ("1.2" -> {1,2}); nullptr when there is none. */
  const MimePart* part(const std::vector<uint32_t>& path) const;
  /**
   * The value of the first header field `name` (case-insensitive) of the
   * top-level header, unfolded, raw (encoded words kept); nullopt if absent.
   */
  std::optional<std::string> header(std::string_view name) const;

  MimePart root_;
  std::shared_ptr<const std::string> raw_;
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

/** RFC 3501 date-time "dd-Mon-yyyy hh:mm:ss +zzzz" of `epoch_seconds` in UTC (INTERNALDATE). */
std::string format_internal_date(int64_t epoch_seconds);
/** Parses an APPEND date-time; nullopt if malformed. */
std::optional<int64_t> parse_internal_date(std::string_view text);
/** Parses a SEARCH date "1-Feb-1994" to the epoch second of its 00:00 UTC; nullopt if malformed. */
std::optional<int64_t> parse_search_date(std::string_view text);

}  // namespace postern::imap
