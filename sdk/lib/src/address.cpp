// RFC 5322 §3.4 address lists: a token lexer (atoms, quoted strings, domain literals,
// specials, comments) and a reader of mailboxes and groups on top of it.
#include "postern/mail/address.hpp"

#include "postern/mail/ascii.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

namespace postern::mail {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A quoted string at s[i] == '"': its content with quoted-pairs undone and line ends dropped.
std::string read_quoted(std::string_view s, size_t& i) {
  std::string out;
  ++i;
  while (i < s.size() && s[i] != '"') {
    if (s[i] == '\\' && i + 1 < s.size()) ++i;
    if (s[i] != '\r' && s[i] != '\n') out.push_back(s[i]);
    ++i;
  }
  if (i < s.size()) ++i;
  return out;
}

struct Token {
  enum Kind { Atom, Quoted, Special, DomainLiteral } kind;
  std::string text;      // unquoted for Quoted
  std::string_view raw;  // as written
  std::string comment;   // the comment that followed the token, if any
};

std::vector<Token> tokenize(std::string_view s, std::string* first_comment) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    std::string comment;
    i = skip_cfws(s, i, &comment);
    if (!comment.empty()) {
      if (!out.empty()) {
        out.back().comment = comment;
      } else {
        *first_comment = comment;
      }
    }
    if (i >= s.size()) break;
    const size_t start = i;
    const char c = s[i];
    if (c == '"') {
      std::string q = read_quoted(s, i);
      out.push_back({Token::Quoted, std::move(q), s.substr(start, i - start), {}});
    } else if (c == '[') {
      while (i < s.size() && s[i] != ']') ++i;
      if (i < s.size()) ++i;
      out.push_back({Token::DomainLiteral, std::string(s.substr(start, i - start)), s.substr(start, i - start), {}});
    } else if (std::strchr("<>@,;:.", c) != nullptr) {
      ++i;
      out.push_back({Token::Special, std::string(1, c), s.substr(start, 1), {}});
    } else {
      while (i < s.size() && !is_space(s[i]) && std::strchr("<>@,;:.\"()[", s[i]) == nullptr) ++i;
      if (i == start) ++i;  // a stray ')' or the like
      out.push_back({Token::Atom, std::string(s.substr(start, i - start)), s.substr(start, i - start), {}});
    }
  }
  return out;
}

bool is_special(const Token& t, char c) { return t.kind == Token::Special && t.text[0] == c; }

// Display-name words, one space where the value had whitespace or a comment between them.
std::string phrase(const std::vector<Token>& t, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i) {
    if (i > b && t[i].raw.data() > t[i - 1].raw.data() + t[i - 1].raw.size()) out += ' ';
    out += t[i].text;
  }
  return out;
}

// local-part "@" domain from tokens [b, e): the local part as written, the domain joined.
void addr_spec(const std::vector<Token>& t, size_t b, size_t e, Address& a) {
  size_t at = e;
  for (size_t i = e; i > b; --i) {
    if (is_special(t[i - 1], '@')) {
      at = i - 1;
      break;
    }
  }
  for (size_t i = b; i < at; ++i) a.local_part += t[i].raw;
  for (size_t i = at + 1; i < e && at < e; ++i) a.domain += t[i].text;
}

// One mailbox from tokens [b, e) (no top-level ',' inside).
std::optional<Address> mailbox(const std::vector<Token>& t, size_t b, size_t e, const std::string& lead_comment) {
  if (b >= e) return std::nullopt;
  Address a;
  size_t lt = e;
  for (size_t i = b; i < e; ++i) {
    if (is_special(t[i], '<')) {
      lt = i;
      break;
    }
  }
  if (lt < e) {
    size_t gt = lt + 1;
    while (gt < e && !is_special(t[gt], '>')) ++gt;
    size_t spec_b = lt + 1;
    // RFC 5322 §4.4 obsolete route "@a,@b:" before the addr-spec.
    for (size_t i = spec_b; i < gt; ++i) {
      if (is_special(t[i], ':')) {
        for (size_t r = lt + 1; r < i; ++r) a.route += t[r].raw;
        spec_b = i + 1;
        break;
      }
    }
    if (lt > b) a.display_name = std::string(trim(phrase(t, b, lt)));
    if (spec_b < gt) addr_spec(t, spec_b, gt, a);
    return a;
  }
  const bool has_at = std::any_of(t.begin() + static_cast<std::ptrdiff_t>(b), t.begin() + static_cast<std::ptrdiff_t>(e),
                                  [](const Token& x) { return is_special(x, '@'); });
  if (!has_at && e - b > 1) {
    // Words without an address ("Sender: evil doer"): a display name, the address missing.
    a.display_name = std::string(trim(phrase(t, b, e)));
    return a;
  }
  addr_spec(t, b, e, a);
  // "user@host (Name)": the comment is the display name.
  if (!t[e - 1].comment.empty()) {
    a.display_name = t[e - 1].comment;
  } else if (b == 0 && !lead_comment.empty()) {
    a.display_name = lead_comment;
  }
  return a;
}

}  // namespace

size_t skip_cfws(std::string_view s, size_t i, std::string* comment) {
  while (i < s.size()) {
    if (is_space(s[i])) {
      ++i;
    } else if (s[i] == '(') {
      int depth = 0;
      const size_t start = i + 1;
      while (i < s.size()) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          i += 2;
          continue;
        }
        if (s[i] == '(') ++depth;
        if (s[i] == ')' && --depth == 0) break;
        ++i;
      }
      if (comment != nullptr) *comment = std::string(trim(s.substr(start, std::min(i, s.size()) - start)));
      if (i < s.size()) ++i;
    } else {
      break;
    }
  }
  return std::min(i, s.size());
}

std::vector<Address> parse_address_list(std::string_view value) {
  std::string lead_comment;
  const std::vector<Token> t = tokenize(value, &lead_comment);
  std::vector<Address> out;
  size_t i = 0;
  bool in_group = false;
  auto group_end = [&] {
    Address end;
    end.kind = Address::Kind::GroupEnd;
    out.push_back(std::move(end));
  };
  while (i < t.size()) {
    if (is_special(t[i], ',') || (!in_group && is_special(t[i], ';'))) {
      ++i;  // an empty list element, or a stray ';'
      continue;
    }
    if (in_group && is_special(t[i], ';')) {
      group_end();
      in_group = false;
      ++i;
      continue;
    }
    // The end of this item: ',' or ';' outside <>; a ':' before it opens a group.
    size_t j = i;
    bool angle = false;
    size_t colon = t.size();
    while (j < t.size()) {
      if (is_special(t[j], '<')) angle = true;
      if (is_special(t[j], '>')) angle = false;
      if (!angle && (is_special(t[j], ',') || is_special(t[j], ';'))) break;
      if (!angle && !in_group && is_special(t[j], ':')) {
        colon = j;
        break;
      }
      ++j;
    }
    if (colon < t.size()) {
      Address g;
      g.kind = Address::Kind::GroupBegin;
      g.display_name = phrase(t, i, colon);
      out.push_back(std::move(g));
      in_group = true;
      i = colon + 1;
      continue;
    }
    if (auto a = mailbox(t, i, j, lead_comment)) out.push_back(std::move(*a));
    i = std::max(j, i + 1);
  }
  if (in_group) group_end();
  return out;
}

}  // namespace postern::mail
