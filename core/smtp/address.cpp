#include "core/smtp/address.hpp"

#include <boost/asio/ip/address.hpp>

#include <cctype>

namespace postern::core::smtp {

namespace {

bool is_alpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// RFC 5322 atext
bool is_atext(unsigned char c, bool utf8) {
  if (is_alpha(c) || is_digit(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '/': case '=': case '?': case '^': case '_': case '`': case '{': case '|': case '}': case '~':
      return true;
    default:
      return utf8 && c >= 0x80;
  }
}

bool has_non_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return true;
  return false;
}

// Validates UTF-8 well-formedness (RFC 3629) so that SMTPUTF8 does not let junk through.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { n = 1; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 2; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 3; cp = c & 0x07; }
    else return false;
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

bool is_dot_string(std::string_view s, bool utf8) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (unsigned char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(c, utf8)) {
      return false;
    }
    prev = static_cast<char>(c);
  }
  return true;
}

// RFC 5321 Quoted-string, including the quotes.
bool is_quoted_string(std::string_view s, bool utf8) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;
      unsigned char q = static_cast<unsigned char>(s[++i]);
      if (q < 32 || q > 126) return false;  // quoted-pairSMTP = %d92 %d32-126
    } else if (c == '"') {
      return false;
    } else if (!((c >= 32 && c <= 126) || (utf8 && c >= 0x80))) {
      return false;
    }
  }
  return true;
}

bool is_label(std::string_view s, bool utf8) {
  if (s.empty() || s.size() > 63) return false;
  auto ok = [utf8](unsigned char c) { return is_alpha(c) || is_digit(c) || (utf8 && c >= 0x80); };
  if (!ok(static_cast<unsigned char>(s.front())) || !ok(static_cast<unsigned char>(s.back()))) return false;
  for (unsigned char c : s)
    if (!ok(c) && c != '-') return false;
  return true;
}

bool is_address_literal(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string_view inner = s.substr(1, s.size() - 2);
  boost::system::error_code ec;
  if (inner.size() > 5 && iequals(inner.substr(0, 5), "IPv6:")) {
    // RFC 5321 §4.1.3 IPv6-addr: hex digits, ':' and the '.' of an IPv4 tail only.
    // Checked first: the parser below stops at a NUL (C string) and accepts a
    // "%scope" suffix, so "[IPv6:::\0<junk>]" or "[IPv6:fe80::1%eth0]" would pass.
    const std::string_view v6 = inner.substr(5);
    for (unsigned char c : v6) {
      if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.')) return false;
    }
    (void)boost::asio::ip::make_address_v6(std::string(v6), ec);
    return !ec;
  }
  // IPv4-address-literal: exactly four decimal octets.
  int parts = 0;
  size_t i = 0;
  while (i <= inner.size()) {
    size_t j = i;
    while (j < inner.size() && is_digit(static_cast<unsigned char>(inner[j]))) ++j;
    if (j == i || j - i > 3) return false;
    int v = std::stoi(std::string(inner.substr(i, j - i)));
    if (v > 255) return false;
    ++parts;
    if (j == inner.size()) break;
    if (inner[j] != '.') return false;
    i = j + 1;
  }
  return parts == 4;
}

}  // namespace

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}


bool is_valid_domain(std::string_view domain, bool utf8) {
  if (domain.empty() || domain.size() > 255) return false;
  if (domain.front() == '[') return is_address_literal(domain);
  size_t start = 0;
  for (;;) {
    size_t dot = domain.find('.', start);
    std::string_view label = domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!is_label(label, utf8)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

bool local_part_is_routing(const Mailbox& m) {
  return m.local.find_first_of("%!@") != std::string::npos;
}

PathResult parse_path(std::string_view text, bool allow_null, bool utf8, std::string_view* rest) {
  PathResult r;
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.empty() || text.front() != '<') return r;
  // Find the closing '>' outside a quoted string.
  size_t close = std::string_view::npos;
  bool in_quote = false;
  for (size_t i = 1; i < text.size(); ++i) {
    char c = text[i];
    if (in_quote) {
      if (c == '\\') ++i;
      else if (c == '"') in_quote = false;
    } else if (c == '"') {
      in_quote = true;
    } else if (c == '>') {
      close = i;
      break;
    } else if (c == '<') {
      return r;
    }
  }
  if (close == std::string_view::npos) return r;
  if (rest) *rest = text.substr(close + 1);
  std::string_view inner = text.substr(1, close - 1);
  // RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the brackets.
  if (close + 1 > 256) return r;
  if (inner.empty()) {
    r.status = allow_null ? PathStatus::Null : PathStatus::Syntax;
    return r;
  }
  if (has_non_ascii(inner)) {
    if (!utf8) {
      r.status = PathStatus::NonAscii;
      return r;
    }
    if (!is_valid_utf8(inner)) return r;
  }
  // A-d-l: "@dom,@dom:" source route, accepted and ignored (RFC 5321 §4.1.1.3 / §C).
  if (inner.front() == '@') {
    size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return r;
    std::string_view route = inner.substr(0, colon);
    size_t pos = 0;
    while (pos < route.size()) {
      if (route[pos] != '@') return r;
      size_t comma = route.find(',', pos);
      std::string_view dom = route.substr(pos + 1, comma == std::string_view::npos ? std::string_view::npos : comma - pos - 1);
      if (!is_valid_domain(dom, utf8)) return r;
      if (comma == std::string_view::npos) break;
      pos = comma + 1;
    }
    r.had_source_route = true;
    inner = inner.substr(colon + 1);
  }
  // The local part ends at the '@' that follows it (after a quoted string if quoted).
  size_t at;
  bool quoted = !inner.empty() && inner.front() == '"';
  if (quoted) {
    size_t i = 1;
    for (; i < inner.size(); ++i) {
      if (inner[i] == '\\') ++i;
      else if (inner[i] == '"') break;
    }
    if (i >= inner.size()) return r;
    at = i + 1;
    if (at >= inner.size() || inner[at] != '@') return r;
  } else {
    at = inner.find('@');
    if (at == std::string_view::npos) return r;  // RFC 5321 needs a domain (postmaster excepted below)
  }
  std::string_view local = inner.substr(0, at);
  std::string_view domain = inner.substr(at + 1);
  if (local.size() > 64) return r;
  if (quoted ? !is_quoted_string(local, utf8) : !is_dot_string(local, utf8)) return r;
  r.mailbox.local = std::string(local);
  r.mailbox.quoted = quoted;
  r.mailbox.domain = std::string(domain);
  if (domain.find('@') != std::string_view::npos) {
    // user@other@local: a lenient parser would route to "other".
    r.mailbox.domain = std::string(domain.substr(domain.rfind('@') + 1));
    r.status = PathStatus::Suspicious;
    return r;
  }
  if (!domain.empty() && domain.back() == '.') {
    std::string_view bare = domain.substr(0, domain.size() - 1);
    if (is_valid_domain(bare, utf8)) {
      r.mailbox.domain = std::string(bare);
      r.status = PathStatus::Suspicious;
      return r;
    }
    return r;
  }
  if (!is_valid_domain(domain, utf8)) return r;
  r.status = PathStatus::Ok;
  return r;
}

std::optional<std::vector<EsmtpParam>> parse_params(std::string_view text, bool utf8) {
  std::vector<EsmtpParam> out;
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = text.find(' ', pos);
    std::string_view tok = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end;
    size_t eq = tok.find('=');
    std::string_view key = tok.substr(0, eq);
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    if (key.empty()) return std::nullopt;
    for (size_t i = 0; i < key.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(key[i]);
      if (!(is_alpha(c) || is_digit(c) || (i > 0 && c == '-'))) return std::nullopt;
    }
    EsmtpParam p;
    for (char c : key) p.key += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (eq != std::string_view::npos) {
      std::string_view value = tok.substr(eq + 1);
      // esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under SMTPUTF8 (RFC 6531 §3.3)
      if (value.empty()) return std::nullopt;
      for (unsigned char c : value) {
        if (!((c >= 33 && c <= 60) || (c >= 62 && c <= 126) || (utf8 && c >= 0x80))) return std::nullopt;
      }
      if (utf8 && has_non_ascii(value) && !is_valid_utf8(value)) return std::nullopt;
      p.value = std::string(value);
    }
    out.push_back(std::move(p));
  }
  return out;
}

bool is_valid_xtext(std::string_view text) {
  return decode_xtext(text).has_value();
}

std::optional<std::string> decode_xtext(std::string_view text) {
  std::string out;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '+') {
      if (i + 2 >= text.size()) return std::nullopt;
      int h = hex(text[i + 1]), l = hex(text[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else if (c >= 33 && c <= 126 && c != '=') {
      out += static_cast<char>(c);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

}  // namespace postern::core::smtp
