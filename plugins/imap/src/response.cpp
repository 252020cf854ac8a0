#include "response.hpp"

#include "mutf7.hpp"

#include <postern/abi/v1/postern_abi.h>


namespace postern::imap {

bool is_atom_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7F) return false;
  switch (c) {
    case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']':
      return false;
    default:
      return true;
  }
}

bool is_atom(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_atom_char(c)) return false;
  }
  return true;
}

std::string imap_string(std::string_view s) {
  bool quotable = s.size() <= 1024;
  for (size_t i = 0; quotable && i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u == 0 || u == '\r' || u == '\n' || u >= 0x80) quotable = false;
  }
  if (!quotable) return "{" + std::to_string(s.size()) + "}\r\n" + std::string(s);
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string astring(std::string_view s) {
  // "NIL" as an atom would read as nil where a string is allowed (nstring contexts).
  if (is_atom(s) && !iequals(s, "NIL")) {
    bool has_bracket = false;
    for (char c : s) has_bracket |= (c == '[');
    if (!has_bracket) return std::string(s);
  }
  return imap_string(s);
}

std::string nstring(const std::optional<std::string>& s) { return s ? imap_string(*s) : std::string("NIL"); }

std::string flag_list(uint32_t flags, const std::vector<std::string>& keywords, bool recent) {
  std::string out = "(";
  auto add = [&out](std::string_view f) {
    if (out.size() > 1) out += ' ';
    out += f;
  };
  if (flags & POSTERN_FLAG_SEEN) add("\\Seen");
  if (flags & POSTERN_FLAG_ANSWERED) add("\\Answered");
  if (flags & POSTERN_FLAG_FLAGGED) add("\\Flagged");
  if (flags & POSTERN_FLAG_DELETED) add("\\Deleted");
  if (flags & POSTERN_FLAG_DRAFT) add("\\Draft");
  if (recent) add("\\Recent");
  for (const auto& k : keywords) add(k);
  out += ')';
  return out;
}

std::string sequence_set_text(const std::vector<uint32_t>& numbers) {
  std::string out;
  size_t i = 0;
  while (i < numbers.size()) {
    size_t j = i;
    while (j + 1 < numbers.size() && numbers[j + 1] == numbers[j] + 1) ++j;
    if (!out.empty()) out += ',';
    if (j == i) {
      out += std::to_string(numbers[i]);
    } else {
      out += std::to_string(numbers[i]) + ":" + std::to_string(numbers[j]);
    }
    i = j + 1;
  }
  return out;
}

std::string mailbox_name(std::string_view utf8_name) { return imap_string(mutf7_encode(utf8_name)); }

std::string ascii_upper(std::string_view s) { return mail::to_upper(s); }

}  // namespace postern::imap
