#include "core/directory/router.hpp"

#include "core/smtp/address.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace postern::core::directory {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

bool valid_address_pattern(std::string_view p) {
  const size_t at = p.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == p.size()) return false;
  for (unsigned char c : p) {
    if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '=' || c == ';' || c == '"' || c == '\\') return false;
  }
  return true;
}

// Glob match with captures: each '*' takes the shortest run that lets the rest match.
bool match(std::string_view pat, std::string_view s, std::vector<std::string_view>& caps) {
  if (pat.empty()) return s.empty();
  if (pat.front() == '*') {
    for (size_t n = 0; n <= s.size(); ++n) {
      caps.push_back(s.substr(0, n));
      if (match(pat.substr(1), s.substr(n), caps)) return true;
      caps.pop_back();
    }
    return false;
  }
  if (s.empty() || pat.front() != s.front()) return false;
  return match(pat.substr(1), s.substr(1), caps);
}

}  // namespace

std::string RouterRule::format() const {
  if (!error) return pattern + " = " + replacement;
  return error_text.empty() ? pattern + " = error" : pattern + " = error: " + error_text;
}

std::optional<RouterRule> parse_router_rule(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<RouterRule> {
    if (error) *error = fmt::format("router rule '{}': {}", trim(text), why);
    return std::nullopt;
  };
  std::string_view body = text;
  if (size_t sc = body.find(';'); sc != std::string_view::npos) body = body.substr(0, sc);
  const size_t eq = body.find('=');
  if (eq == std::string_view::npos) return fail("expected PATTERN = REPLACEMENT");
  RouterRule r;
  r.pattern = smtp::ascii_lower(trim(body.substr(0, eq)));
  std::string_view right = trim(body.substr(eq + 1));
  if (!valid_address_pattern(r.pattern)) return fail("the pattern must be local@domain (with '*' wildcards)");
  if (r.pattern.find("**") != std::string::npos) return fail("'**' is ambiguous; use one '*'");
  // Matching costs O(n^k) for k wildcards; four cover every practical rewrite.
  if (std::count(r.pattern.begin(), r.pattern.end(), '*') > 4) return fail("at most four '*' in a pattern");
  const std::string right_lower = smtp::ascii_lower(right);
  if (right_lower == "error" || right_lower.starts_with("error:")) {
    r.error = true;
    if (right.size() > 6) r.error_text = std::string(trim(right.substr(6)));
    for (unsigned char c : r.error_text)
      if (c < ' ' || c == 0x7f) return fail("control characters in the error text");
  } else {
    r.replacement = right_lower;
    if (!valid_address_pattern(r.replacement)) return fail("the replacement must be local@domain or error[: text]");
    const auto stars = [](std::string_view s) { return std::count(s.begin(), s.end(), '*'); };
    if (stars(r.replacement) > stars(r.pattern)) {
      return fail(fmt::format("the replacement uses {} '*' but the pattern captures only {}", stars(r.replacement),
                              stars(r.pattern)));
    }
  }
  r.source = r.format();
  return r;
}

std::optional<std::string> apply_router_rule(const RouterRule& rule, std::string_view address) {
  std::vector<std::string_view> caps;
  if (!match(rule.pattern, address, caps)) return std::nullopt;
  if (rule.error) return std::string();
  std::string out;
  size_t next = 0;
  for (char c : rule.replacement) {
    if (c == '*') out += caps[next++];
    else out += c;
  }
  return out;
}

RouteResult route_address(const std::vector<RouterRule>& rules, std::string_view address, size_t loop_limit) {
  RouteResult res;
  res.address = std::string(address);
  for (size_t rewrites = 0;; ++rewrites) {
    const RouterRule* hit = nullptr;
    std::optional<std::string> out;
    size_t index = 0;
    for (size_t i = 0; i < rules.size() && !hit; ++i) {
      out = apply_router_rule(rules[i], res.address);
      if (out) {
        hit = &rules[i];
        index = i + 1;
      }
    }
    if (!hit) return res;
    if (hit->error) {
      res.steps.push_back(fmt::format("rule #{}: {} -> error", index, res.address));
      res.status = RouteResult::Status::Refused;
      res.reason = hit->error_text.empty() ? "Address refused by the router" : hit->error_text;
      return res;
    }
    // A rule that maps an address to itself would loop forever: it ends routing.
    if (*out == res.address) return res;
    if (rewrites >= loop_limit) {
      res.status = RouteResult::Status::Loop;
      res.reason = fmt::format("router loop: more than {} rewrites for {}", loop_limit, address);
      return res;
    }
    res.steps.push_back(fmt::format("rule #{}: {} -> {}", index, res.address, *out));
    res.address = std::move(*out);
  }
}

}  // namespace postern::core::directory
