#pragma once
// Modified UTF-7 mailbox names (RFC 3501 §5.1.3) <-> the store's UTF-8 names.

#include <optional>
#include <string>
#include <string_view>

namespace postern::imap {

/**
 * Decodes a modified UTF-7 name to UTF-8.
 * @return nullopt for invalid input: a non-ASCII octet, an unterminated or
 *   empty-but-not-"&-" shift, a base64 run that is not a whole number of
 *   UTF-16 units or has non-zero padding bits, a printable ASCII character
 *   encoded in base64, an unpaired surrogate, or a shift that directly
 *   follows another one (RFC 3501: "&-" and shifted runs are minimal).
 */
std::optional<std::string> mutf7_decode(std::string_view in);

/** Encodes a UTF-8 name; invalid UTF-8 octets are encoded as U+FFFD. */
std::string mutf7_encode(std::string_view utf8);

}  // namespace postern::imap
