#pragma once

#include <optional>
#include <string>
#include <string_view>

/**
 * Transfer and header encodings of the mail library (Postern::mail): base64 (lenient for
 * message bodies, strict for SASL), quoted-printable, RFC 2047 encoded-words and header
 * unfolding. Nothing here throws on malformed input (only std::bad_alloc); all functions
 * are reentrant.
 */
namespace postern::mail {

/**
 * Decodes base64 (RFC 2045 §6.8) leniently: characters outside the alphabet are skipped
 * and padding ends a quantum, so concatenated encodings decode too. For message bodies.
 * @param in encoded text.
 * @return decoded octets.
 */
std::string decode_base64(std::string_view in);

/**
 * Decodes base64 strictly (RFC 4648 §4): length a multiple of 4, only alphabet characters,
 * '=' only as the last one or two characters. For SASL responses (RFC 4954 §4, RFC 3501
 * §6.2.2, RFC 5034 §4), where anything else must be refused.
 * @param in encoded text, no line breaks.
 * @return decoded octets, or nullopt when `in` is not valid base64.
 */
std::optional<std::string> decode_base64_strict(std::string_view in);

/**
 * Encodes base64 (RFC 4648 §4) with padding and without line breaks.
 * @param data octets.
 * @return the encoding.
 */
std::string encode_base64(std::string_view data);

/**
 * Encodes a MIME body part in base64 (RFC 2045 §6.8): lines of 76 characters, each
 * ended by CRLF (also the last one; empty input gives an empty string).
 * @param body octets.
 * @return the encoded body.
 */
std::string encode_base64_lines(std::string_view body);

/**
 * Encodes a MIME body part in quoted-printable (RFC 2045 §6.7): '=' and octets outside
 * printable ASCII (but TAB) as =XX, whitespace at a line end encoded, soft line breaks
 * keep every line within 76 characters; CRLF and bare LF become CRLF line ends. A '.' at
 * the start of a line is encoded too, so that no gateway mangles it.
 * @param body octets with CRLF or LF line ends.
 * @return the encoded body.
 */
std::string encode_quoted_printable(std::string_view body);

/**
 * Decodes quoted-printable (RFC 2045 §6.7): =XX (either case), soft line breaks, trailing
 * whitespace removed; an '=' that starts no valid escape is kept literally.
 * @param in encoded text, CRLF or LF line ends.
 * @return decoded octets, line ends as in the input.
 */
std::string decode_quoted_printable(std::string_view in);

/**
 * Decodes RFC 2047 encoded-words anywhere in a header value (also inside quotes and
 * glued to other text, as real clients send them). Whitespace between adjacent encoded
 * words is dropped (§6.2); words in the same charset are joined before conversion so a
 * character split across words survives; invalid words are left as is.
 * @param value an unfolded header value.
 * @return UTF-8; text outside encoded words kept raw; a word in a charset to_utf8() does
 *         not know gives its decoded octets unconverted.
 */
std::string decode_rfc2047(std::string_view value);

/**
 * Undoes header folding (RFC 5322 §2.2.3): removes every CRLF or bare LF, keeping the
 * whitespace that follows it.
 * @param raw_value a folded header value.
 * @return the value on one line, not trimmed.
 */
std::string unfold(std::string_view raw_value);

}  // namespace postern::mail
