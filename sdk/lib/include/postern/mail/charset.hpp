#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

/**
 * Charset conversion to UTF-8 of the mail library (Postern::mail), through iconv(3) (part
 * of glibc: no extra dependency). All functions are reentrant (each call opens its own
 * iconv descriptor) and never throw except std::bad_alloc.
 */
namespace postern::mail {

/**
 * Converts text from a charset to UTF-8. us-ascii and iso-8859-1 are read as windows-1252
 * (what senders mean; us-ascii text that is valid UTF-8 stays as it is), gb2312 as
 * gb18030, ks_c_5601-1987 as cp949, shift_jis as cp932 (the WHATWG Encoding Standard
 * choices). Invalid sequences become U+FFFD.
 * @param in octets in charset.
 * @param charset a charset name, case-insensitive; "" means unlabelled.
 * @return UTF-8; the input unchanged when the charset is unknown or unlabelled.
 */
std::string to_utf8(std::string_view in, std::string_view charset);

/**
 * Like to_utf8(), but says whether the charset was known.
 * @param in octets in charset.
 * @param charset a charset name, case-insensitive.
 * @return UTF-8, or nullopt when the charset is empty, a "don't know" label
 *         (unknown-8bit, x-unknown ...), not a plausible name, or unknown to iconv.
 */
std::optional<std::string> convert_to_utf8(std::string_view in, std::string_view charset);

/**
 * Normalises a charset label: quotes and whitespace around it removed, lower case.
 * @return the name, or "" when it holds characters no charset name has (iconv would read
 *         "//" or "," as conversion flags) or is longer than any charset name.
 */
std::string normalize_charset(std::string_view charset);

/** @return true when `s` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates). */
bool is_valid_utf8(std::string_view s);

/** @return `s` with every ill-formed UTF-8 sequence replaced by U+FFFD. */
std::string sanitize_utf8(std::string_view s);

/**
 * Appends one code point as UTF-8 (1 to 4 octets). The caller passes a Unicode scalar
 * value; nothing is checked.
 * @param out the string to append to.
 * @param cp the code point.
 */
void append_utf8(std::string& out, uint32_t cp);

}  // namespace postern::mail
