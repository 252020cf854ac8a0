#pragma once

#include <string>
#include <string_view>

/**
 * ASCII helpers of the mail library (Postern::mail): the case-insensitive comparisons and
 * trimming that protocol and header code needs. Mail protocols are case-insensitive in
 * ASCII only (RFC 5321 §2.4, RFC 5322 §1.2.2, RFC 3501 §9), so nothing here looks at a
 * locale. All functions are reentrant and never throw except std::bad_alloc.
 */
namespace postern::mail {

/** @return c lower-cased if it is an ASCII letter, else c. */
constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/** @return c upper-cased if it is an ASCII letter, else c. */
constexpr char ascii_upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

/** @return true for SP and HTAB (RFC 5234 WSP). */
constexpr bool is_wsp(char c) { return c == ' ' || c == '\t'; }

/**
 * Compares two strings, ASCII letters case-insensitively, everything else octet for octet.
 * @return true when they are equal that way.
 */
constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

/** @return true when `s` begins with `prefix`, compared as iequals() does. */
constexpr bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

/** @return `s` with its ASCII letters lower-cased. */
std::string to_lower(std::string_view s);

/** @return `s` with its ASCII letters upper-cased. */
std::string to_upper(std::string_view s);

/** @return `s` without leading and trailing SP, HTAB, CR and LF. */
std::string_view trim(std::string_view s);

}  // namespace postern::mail
