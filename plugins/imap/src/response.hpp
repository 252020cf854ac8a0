#pragma once
// Formatting of IMAP response data (RFC 3501 §4, §9): strings are written as
// atoms, quoted strings or literals by what they contain.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <postern/mail/ascii.hpp>

namespace postern::imap {

/** Whether `c` may appear in an atom (ATOM-CHAR: no specials, CTL, SP or 8-bit). */
bool is_atom_char(char c);
/** Whether `s` is a non-empty atom. */
bool is_atom(std::string_view s);

/**
 * A `string`: quoted when it holds only 7-bit TEXT-CHARs and is at most 1024
 * octets, else a literal ("{n}\r\n" + octets).
 */
std::string imap_string(std::string_view s);
/** A `string`, always quoted or literal (never an atom). Same as imap_string. */
inline std::string quoted_or_literal(std::string_view s) { return imap_string(s); }
/** An `astring`: an atom when possible, else imap_string. */
std::string astring(std::string_view s);
/** An `nstring`: NIL when absent. */
std::string nstring(const std::optional<std::string>& s);

/** The system flags (POSTERN_FLAG_* bits) and keywords as a parenthesised flag list. */
std::string flag_list(uint32_t flags, const std::vector<std::string>& keywords, bool recent);

/** A compact sequence set of ascending-or-not numbers ("1:3,7"); order is kept, runs merged. */
std::string sequence_set_text(const std::vector<uint32_t>& numbers);

/** The mailbox name for a response: UTF-8 store name -> modified UTF-7 -> quoted string. */
std::string mailbox_name(std::string_view utf8_name);

/** Upper-cases ASCII letters. */
std::string ascii_upper(std::string_view s);
/** ASCII case-insensitive equality (the mail library's). */
using mail::iequals;

}  // namespace postern::imap
