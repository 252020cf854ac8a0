#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "postern/mail/charset.hpp"
#include "postern/mail/codec.hpp"

/**
 * The MIME parser of the mail library (Postern::mail): splits raw RFC 5322 / MIME octets
 * into a tree of parts that keeps exact raw offsets and line counts (what IMAP
 * BODYSTRUCTURE and BODY[section] need), and decodes header values, parameters and bodies
 * on request. See docs/mail-library.md.
 *
 * Nothing in this namespace throws on malformed input: every input yields a result, the
 * only exception that can escape is std::bad_alloc. All functions are reentrant.
 */
namespace postern::mail {

/** One header field of one part. */
struct Header {
  /** The field name as written, minus any whitespace before the colon. */
  std::string name;
  /** Everything after the colon up to the final line end, folding (CRLF or LF + WSP) kept. */
  std::string raw_value;
  /** Unfolded, leading/trailing WSP trimmed, RFC 2047 encoded-words decoded to UTF-8. */
  std::string value;
  /** The whole field in Message::raw(): from its name to its last line end, included. */
  size_t raw_offset = 0, raw_length = 0;
};

/** A parsed Content-Type (or, with type/subtype unused, Content-Disposition parameters). */
struct ContentType {
  /** Lower-case media type. */
  std::string type = "text";
  /** Lower-case media subtype. */
  std::string subtype = "plain";
  /** Parameters in first-appearance order; names lower-case, values fully decoded. */
  std::vector<std::pair<std::string, std::string>> params;
};

/**
 * One entity of the MIME tree. Offsets index Message::raw(), so a Part stays valid when the
 * Message is moved.
 */
struct Part {
  /** Index of the enclosing part in Message::parts(), -1 for the root. */
  int parent = -1;
  /** 0 for the root, 1 for its children, ... */
  unsigned depth = 0;
  /**
   * IMAP part number (RFC 3501 §6.4.5): "" for the root, "1", "1.2", ... The entity
   * encapsulated by a message/rfc822 part shares that part's number (it is what
   * BODY[n.HEADER] and BODY[n.TEXT] address) and its own children are numbered n.1, n.2.
   * The body of a non-multipart root (or of a non-multipart encapsulated message n) is
   * section "1" (n.1) and is not a separate Part, except when that body is itself a
   * message/rfc822 entity, which then appears as the child numbered "1" (n.1).
   */
  std::string section;
  /** This part's own header fields, in order. */
  std::vector<Header> headers;
  /**
   * From the first Content-Type field. Absent or invalid: text/plain; charset=us-ascii
   * (RFC 2045 §5.2), or message/rfc822 inside multipart/digest (RFC 2046 §5.1.5).
   */
  ContentType content_type;
  /** Lower-case charset parameter; "us-ascii" for text types without one (RFC 2046 §4.1.2). */
  std::string charset;
  /** Content-Disposition filename* / filename, else Content-Type name; decoded. */
  std::string filename;
  /** Lower-case Content-Disposition type ("inline", "attachment"), "" when absent. */
  std::string disposition;
  /** Lower-case Content-Transfer-Encoding, "7bit" when absent (RFC 2045 §6.1). */
  std::string transfer_encoding;
  /** Content-ID as written (unfolded, trimmed). */
  std::string content_id;
  /** Content-Description, decoded like Header::value. */
  std::string description;
  /** Content-MD5 as written (unfolded, trimmed). */
  std::string md5;
  /** Lower-case Content-Language (unfolded, trimmed). */
  std::string language;
  /** Content-Location (unfolded, trimmed). */
  std::string location;
  /** Content-Disposition parameters, decoded like ContentType::params. */
  std::vector<std::pair<std::string, std::string>> disposition_params;
  /** The part's header block and body in raw(). */
  size_t raw_offset = 0, raw_length = 0;
  /** Octets of the header block including the blank line that ends it, if any. */
  size_t header_length = 0;
  /**
   * The body in raw(). For a part inside a multipart, the line end before the next
   * boundary belongs to the boundary (RFC 2046 §5.1.1) and is not counted.
   */
  size_t body_offset = 0, body_length = 0;
  /**
   * Lines in the body for IMAP BODYSTRUCTURE: its line feeds. A last line without one
   * (before a boundary, or at the end of the input) is not counted, as in Dovecot and Cyrus.
   */
  size_t body_lines = 0;
  /**
   * Indices of the child parts. Empty for leaves, and also possible for a multipart or
   * message part (no boundary parameter, no delimiter found, encoded message/rfc822, or a
   * limit hit): callers must check before using children[0].
   */
  std::vector<size_t> children;

  /** @return true when the media type is multipart (any subtype). */
  bool is_multipart() const;
  /** @return true for message/rfc822 and message/global (RFC 6532). */
  bool is_message() const;
};

/** Resource limits for Message::parse; hitting one sets Message::truncated(). */
struct MessageLimits {
  /** Parts in the whole tree, the root included. */
  size_t max_parts = 10000;
  /** Deepest part that is still split further; deeper content stays an opaque body. */
  size_t max_depth = 50;
  /** Header fields in the whole message, all parts together. */
  size_t max_headers = 10000;
  /** Octets of any one header block. */
  size_t max_header_bytes = 1 << 20;
};

/** Readings of malformed input where mail readers differ; the defaults suit content filters. */
struct MessageOptions {
  /**
   * Dovecot's reading of a header block, which IMAP clients compare BODYSTRUCTURE with: a
   * line that is no header field stays in the block as a Header (name: the line up to its
   * first colon, or the whole line, trimmed; raw_value: the rest), folded lines after it
   * included, and only a blank line or a delimiter ends the block. Default (false): such
   * a line is skipped when a field follows it, otherwise the body starts there.
   */
  bool keep_junk_header_lines = false;
  /**
   * Parse a message/rfc822 body in base64 or quoted-printable (forbidden by RFC 2046
   * §5.2.1) as a nested message all the same, as Dovecot does: IMAP BODYSTRUCTURE must
   * describe an encapsulated message for every message/rfc822 part (RFC 3501 §7.4.2
   * body-type-msg). Default (false): such a body stays a leaf.
   */
  bool parse_encoded_messages = false;
  /**
   * Dovecot's boundaries: a boundary parameter is used as written, trailing whitespace
   * included (RFC 2046 §5.1.1 forbids it; by default it is dropped), and a close
   * delimiter may be followed by anything, not only by whitespace.
   */
  bool exact_boundaries = false;
};

/**
 * A parsed message: owns the raw octets and the flat part list that indexes them.
 * Cheap to move; parts hold offsets, never pointers into the buffer.
 */
class Message {
 public:
  using Limits = MessageLimits;
  using Options = MessageOptions;

  /** An empty message, the same as parse(""): one text/plain root part, no headers. */
  Message();

  /**
   * Parses raw octets; CRLF and bare LF line ends are both tolerated, and so are missing
   * blank lines, missing closing boundaries, junk header lines and truncated input.
   * Runs in time linear in the input times the nesting depth, without recursion.
   * @param raw the message, taken over by the result.
   * @param limits bounds on parts, depth and header volume; the content past a limit is
   *        kept as an opaque body and truncated() is set.
   * @param options readings of malformed input (MessageOptions).
   * @return the parsed message; never fails. Throws only std::bad_alloc.
   */
  static Message parse(std::string raw, Limits limits = {}, Options options = {});

  /** @return the raw octets every offset refers to. */
  std::string_view raw() const { return raw_; }

  /** @return the root's header fields (== parts()[0].headers). */
  const std::vector<Header>& headers() const { return parts_.front().headers; }

  /**
   * Looks up a root header field.
   * @param name field name, compared case-insensitively.
   * @param nth which occurrence, 0 for the first.
   * @return the decoded value (Header::value), or nullopt when there is no such field.
   *         The view lives as long as this Message.
   */
  std::optional<std::string_view> header(std::string_view name, size_t nth = 0) const;

  /** @return all parts in depth-first pre-order; parts()[0] is the whole message. */
  const std::vector<Part>& parts() const { return parts_; }

  /**
   * The part's body with its transfer encoding undone (base64 and quoted-printable
   * decoded leniently, 7bit / 8bit / binary / unknown as is). Multipart and message
   * bodies are returned raw: RFC 2045 §6.4 forbids encoding them.
   * @param part_index index into parts(); out of range yields "".
   * @return the decoded octets (charset untouched).
   */
  std::string decoded_body(size_t part_index) const;

  /** @return true when a limit was hit while parsing. */
  bool truncated() const { return truncated_; }

 private:
  friend class Parser;
  struct Unparsed {};
  explicit Message(Unparsed) {}

  std::string raw_;
  std::vector<Part> parts_;
  bool truncated_ = false;
};

/**
 * Parses a Content-Type value (RFC 2045 §5.1), tolerating comments, missing semicolons
 * and a missing subtype for text and multipart.
 * @param value the unfolded field value.
 * @return the type; text/plain; charset=us-ascii when the value is invalid (§5.2).
 */
ContentType parse_content_type(std::string_view value);

/**
 * Parses MIME parameters (RFC 2045 §5.1) with RFC 2231 extensions: continuations
 * (name*0, name*1*), charset'lang'%XX values, and an extended value preferred over a plain
 * one of the same name. Plain values other than boundary also get RFC 2047 decoding, as
 * real clients send filename="=?UTF-8?B?...?=".
 * @param after_semicolon the text after the media type's ';' (a leading ';' is skipped).
 * @return (lower-case name, decoded value) pairs in first-appearance order, names unique.
 */
std::vector<std::pair<std::string, std::string>> parse_params(std::string_view after_semicolon);

/**
 * A MIME parameter with its RFC 2231 sections joined but nothing decoded: the form IMAP
 * BODYSTRUCTURE sends (RFC 3501 §7.4.2; a value that is not ASCII once decoded keeps the
 * extended form, as Dovecot sends it).
 */
struct RawParam {
  /** Lower-case name without the RFC 2231 '*' suffixes. */
  std::string name;
  /** Whether any section was extended (name*= or name*N*=): value is then an ext-value. */
  bool extended = false;
  /**
   * Plain: the value, quoted-pairs undone. Extended: charset'language'%XX... as written,
   * sections joined, plain sections percent-encoded ("''" put in front when section 0
   * named no charset).
   */
  std::string value;
  /** Extended: the charset and language of section 0, as written ("" when absent). */
  std::string charset, language;
  /** Extended: the octets of the value (percent-decoding undone), in `charset`. */
  std::string octets;
};

/**
 * Reads MIME parameters the strict way of RFC 2045 §5.1, as Dovecot does (what IMAP
 * BODYSTRUCTURE is compared with): every parameter after its ';' (anything else up to the
 * next ';' is skipped), an unquoted value up to the ';' less a comment, quoted-pairs
 * undone. RFC 2231 sections are joined from section 0 up to the first gap; the first of
 * two same-numbered sections wins; a name without section 0 keeps its plain value.
 * @param params the text after the media type (or the disposition type).
 * @return the parameters in first-appearance order, names unique.
 */
std::vector<RawParam> parse_raw_params(std::string_view params);

/** A Content-Type read strictly: type, subtype and raw parameters. */
struct MediaType {
  /** Lower-case type and subtype. */
  std::string type, subtype;
  std::vector<RawParam> params;
};

/**
 * Reads a Content-Type value the strict way (RFC 2045 §5.1: type "/" subtype, then
 * parse_raw_params), for IMAP BODYSTRUCTURE.
 * @param value the unfolded field value.
 * @return nullopt when the value is not type "/" subtype (RFC 2045 §5.2 then means
 *         text/plain; charset=us-ascii).
 */
std::optional<MediaType> parse_media_type(std::string_view value);

/** A Content-Disposition read strictly (RFC 2183 §2), for IMAP BODYSTRUCTURE. */
struct RawDisposition {
  /** Lower-case disposition type; "" when the value starts with no token. */
  std::string type;
  /** parse_raw_params of what follows the type; empty when the type is. */
  std::vector<RawParam> params;
};

/**
 * Reads a Content-Disposition value: type, then parse_raw_params.
 * @param value the unfolded field value.
 */
RawDisposition parse_raw_disposition(std::string_view value);

/**
 * Reads a Content-Language value (RFC 3282: 1#Language-tag, comments allowed).
 * @param value the unfolded field value.
 * @return the tags as written, in order.
 */
std::vector<std::string> parse_content_language(std::string_view value);

}  // namespace postern::mail
