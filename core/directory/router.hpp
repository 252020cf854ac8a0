#pragma once
// The address router (D3, after CommuniGate Pro's Router table): an ordered
// list of rewriting rules applied to every address the directory resolves.
//
//   PATTERN = REPLACEMENT [; comment]
//   PATTERN = error[: text] [; comment]
//
// PATTERN is local@domain where '*' matches any run of characters (possibly
// none); matching is case-insensitive and each '*' takes the shortest run
// that lets the rest match. In REPLACEMENT the n-th '*' is replaced by what
// the n-th '*' of the pattern matched. The first matching rule rewrites the
// address and the result re-enters the table from the top, up to a loop
// limit. `error` refuses the address (550 5.7.1 with the text).
// Examples: "*@old.example = *@example.test", "sales@* = bob@example.test",
//           "*.*@example.test = *_*@example.test", "spam@* = error: no such user".

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::directory {

struct RouterRule {
  std::string pattern;      // lower-case
  std::string replacement;  // lower-case; empty when `error`
  bool error = false;
  std::string error_text;   // as written
  std::string source;       // the rule as stored (canonical form, see format())
  /** "pattern = replacement" / "pattern = error: text". */
  std::string format() const;
};

/** Parses one rule. @return nullopt with `error` set when the syntax is wrong. */
std::optional<RouterRule> parse_router_rule(std::string_view text, std::string* error);

/**
 * Applies one rule to a lower-case address.
 * @return the rewritten address (empty for an `error` rule) or nullopt when the pattern does not match.
 */
std::optional<std::string> apply_router_rule(const RouterRule& rule, std::string_view address);

/** The outcome of running an address through the whole table. */
struct RouteResult {
  enum class Status { Ok, Refused, Loop };
  Status status = Status::Ok;
  std::string address;             // the final address (Ok)
  std::string reason;              // Refused / Loop
  std::vector<std::string> steps;  // "rule #N: a -> b" for posternctl router test
};

/** Runs `address` (lower-case) through `rules` until no rule matches or `loop_limit` rewrites happened. */
RouteResult route_address(const std::vector<RouterRule>& rules, std::string_view address, size_t loop_limit);

}  // namespace postern::core::directory
