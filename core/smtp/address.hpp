#pragma once

// Strict RFC 5321 §4.1.2 path parsing (with RFC 6531 UTF-8 when SMTPUTF8 is
// in effect) and the classification the relay check needs: forms that are
// classic relay tricks (%-hack, bang paths, quoted "@", user@a@b, trailing
// dots) are reported as such instead of being silently accepted.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postern/mail/ascii.hpp"

namespace postern::core::smtp {

/** A parsed mailbox. `local` is as written (quotes kept); `domain` as written. */
struct Mailbox {
  std::string local;
  std::string domain;
  bool quoted = false;  // local part is a quoted-string
  std::string str() const { return local + "@" + domain; }
};

enum class PathStatus {
  Ok,          // a mailbox
  Null,        // "<>" (only where allowed)
  Syntax,      // not a path at all
  Suspicious,  // user@a@b, trailing dot, empty label: a relay trick, never local
  NonAscii,    // UTF-8 without SMTPUTF8 (RFC 6531 §3.4: 553 5.6.7)
};

struct PathResult {
  PathStatus status = PathStatus::Syntax;
  Mailbox mailbox;
  bool had_source_route = false;  // "<@a,@b:user@c>": the route was dropped (RFC 5321 §4.1.1.3)
};

/**
 * Parses "<...>" at the start of `text`.
 * @param text the argument after "MAIL FROM:" / "RCPT TO:" (leading spaces skipped).
 * @param allow_null whether "<>" is acceptable.
 * @param utf8 SMTPUTF8 in effect: UTF-8 octets allowed in local part and domain.
 * @param rest receives what follows the closing '>' (the ESMTP parameters).
 */
PathResult parse_path(std::string_view text, bool allow_null, bool utf8, std::string_view* rest = nullptr);

/** RFC 5321 Domain or address-literal (no trailing dot). */
bool is_valid_domain(std::string_view domain, bool utf8);

/**
 * True when the local part would route somewhere else on a lenient MTA:
 * '%' (percent hack), '!' (bang path) or '@' (quoted) in it.
 */
bool local_part_is_routing(const Mailbox& mailbox);

/** One ESMTP parameter "KEY[=VALUE]"; the key is upper-cased. */
struct EsmtpParam {
  std::string key;
  std::optional<std::string> value;
};

/**
 * Splits the parameters after the path (RFC 5321 §4.1.2 Mail-parameters).
 * @return nullopt on a syntax error (bad keyword, empty or illegal value).
 */
std::optional<std::vector<EsmtpParam>> parse_params(std::string_view text, bool utf8);

/** RFC 3461 §4 xtext: printable ASCII except '+' and '=', or "+HH" (upper-case hex). */
bool is_valid_xtext(std::string_view text);
/** Decodes xtext; nullopt if invalid. */
std::optional<std::string> decode_xtext(std::string_view text);

/** Lower-cases ASCII letters (domains compare case-insensitively). */
std::string ascii_lower(std::string_view text);
/** ASCII case-insensitive equality (the mail library's). */
using ::postern::mail::iequals;

}  // namespace postern::core::smtp
