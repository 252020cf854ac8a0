#include "core/directory/address.hpp"

#include "core/smtp/address.hpp"

#include <fmt/format.h>

namespace postern::core::directory {

namespace {

bool is_atext(unsigned char c) {
  // RFC 5322 §3.2.3 atext, minus '%' and '!' which route on lenient MTAs.
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  if (c >= 0x80) return true;  // UTF-8 local parts (RFC 6531)
  switch (c) {
    case '#': case '$': case '&': case '\'': case '*': case '+': case '-': case '/': case '=':
    case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

}  // namespace

std::optional<SplitAddress> split_address(std::string_view address, std::string_view default_domain, bool login) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>') {
    address = address.substr(1, address.size() - 2);
  }
  std::string a = smtp::ascii_lower(address);
  size_t at = a.rfind('@');
  if (at == std::string::npos && login) at = a.rfind('%');
  SplitAddress out;
  if (at == std::string::npos) {
    if (a.empty() || default_domain.empty()) return std::nullopt;
    out.local = std::move(a);
    out.domain = smtp::ascii_lower(default_domain);
    return out;
  }
  out.local = a.substr(0, at);
  out.domain = a.substr(at + 1);
  if (out.local.empty() || out.domain.empty()) return std::nullopt;
  return out;
}

std::optional<std::string> parse_domain(std::string_view domain, std::string* error) {
  if (domain.empty() || domain.front() == '[' || !smtp::is_valid_domain(domain, true)) {
    if (error) *error = fmt::format("'{}' is not a valid domain name", domain);
    return std::nullopt;
  }
  return smtp::ascii_lower(domain);
}

std::optional<SplitAddress> parse_stored_address(std::string_view address, std::string_view default_domain,
                                                 std::string* error) {
  auto fail = [&](std::string_view why) -> std::optional<SplitAddress> {
    if (error) *error = fmt::format("'{}' is not a valid address: {}", address, why);
    return std::nullopt;
  };
  if (address.find('@') == std::string_view::npos && default_domain.empty()) return fail("no domain");
  auto s = split_address(address, default_domain);
  if (!s) return fail("expected local@domain");
  if (s->local.size() > 64) return fail("local part longer than 64 octets");
  bool dot = true;  // no leading dot, no double dot
  for (unsigned char c : s->local) {
    if (c == '.') {
      if (dot) return fail("empty dot-atom label in the local part");
      dot = true;
      continue;
    }
    if (!is_atext(c)) return fail(fmt::format("character '{}' is not allowed in a local part", static_cast<char>(c)));
    dot = false;
  }
  if (dot) return fail("the local part ends with a dot");
  std::string derr;
  if (!parse_domain(s->domain, &derr)) return fail(derr);
  return s;
}

}  // namespace postern::core::directory
