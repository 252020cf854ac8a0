#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

/**
 * RFC 5322 §3.4 address lists as header fields carry them (From, To, Cc, Reply-To ...),
 * read the lenient way IMAP ENVELOPE needs (RFC 3501 §7.4.2): every input yields a list,
 * broken items are kept with what could be read. Nothing here throws but std::bad_alloc;
 * all functions are reentrant.
 */
namespace postern::mail {

/** One item of an address list: a mailbox, or the start or end of a group. */
struct Address {
  enum class Kind { Mailbox, GroupBegin, GroupEnd };
  Kind kind = Kind::Mailbox;
  /**
   * Mailbox: the display name (quoted strings unquoted, RFC 2047 words kept as written,
   * whitespace and comments between words as one space), or the comment after a bare
   * addr-spec ("user@host (Name)"); nullopt when there is none. GroupBegin: the group's
   * display name (never nullopt). GroupEnd: nullopt.
   */
  std::optional<std::string> display_name;
  /** The local part as written (a quoted one keeps its quotes); "" when missing. */
  std::string local_part;
  /** The domain, its dot-atoms joined (a domain literal as written); "" when missing. */
  std::string domain;
  /** The obsolete source route of RFC 5322 §4.4 ("@a,@b", no colon), "" when there is none. */
  std::string route;
};

/**
 * Parses an address-list or mailbox-list field value (unfolded).
 *
 * Accepted besides RFC 5322: the obsolete route (`<@a,@b:user@host>`, in Address::route), empty list
 * elements, a group without its closing ';' (closed at the end), words without any address
 * ("undisclosed recipients": a display name with local part and domain missing), an
 * addr-spec without '@' (domain missing), `<>` (both missing), 8-bit octets.
 * @param value the field value (after the colon, unfolded).
 * @return the items in order; a group is GroupBegin, its mailboxes, GroupEnd.
 */
std::vector<Address> parse_address_list(std::string_view value);

/**
 * Skips RFC 5322 §3.2.2 CFWS: whitespace (line ends included) and comments, nested ones
 * counted (no recursion), quoted-pairs inside them honoured.
 * @param s the text.
 * @param i where to start.
 * @param comment if not null, gets the text of the last comment skipped (trimmed).
 * @return the first position after the CFWS (s.size() at the end).
 */
size_t skip_cfws(std::string_view s, size_t i, std::string* comment = nullptr);

}  // namespace postern::mail
