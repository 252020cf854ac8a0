// The message side of plugins/imap: MIME tree, ENVELOPE, BODY[STRUCTURE],
// BODY[section] and dates (see message.hpp for the design).
#include "message.hpp"

#include <postern/mail/ascii.hpp>
#include <postern/mail/charset.hpp>
#include <postern/mail/codec.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>

namespace postern::imap {
namespace {

using mail::ascii_upper;
using mail::iequals;
using mail::is_wsp;
using mail::trim;

std::string lower(std::string_view s) { return mail::to_lower(s); }
std::string upper(std::string_view s) { return mail::to_upper(s); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Unfolds a header value (RFC 5322 §2.2.3: drop CRLF before WSP) and trims it.
std::string unfold(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c != '\r' && c != '\n') out.push_back(c);
  }
  return std::string(trim(out));
}

// An IMAP string: quoted when 7-bit printable (at most 1024 octets), else a literal.
std::string quote(std::string_view in) {
  // RFC 3501 §4.3: no string may hold NUL (CHAR8 is %x01-ff); drop it.
  std::string without_nul;
  if (in.find('\0') != std::string_view::npos) {
    without_nul.assign(in);
    without_nul.erase(std::remove(without_nul.begin(), without_nul.end(), '\0'), without_nul.end());
    in = without_nul;
  }
  std::string_view s = in;
  bool quotable = s.size() <= 1024;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0 || u == '\r' || u == '\n' || u >= 0x80) {
      quotable = false;
      break;
    }
  }
  std::string out;
  if (!quotable) {
    out.reserve(s.size() + 16);
    out += '{';
    out += std::to_string(s.size());
    out += "}\r\n";
    out += s;
    return out;
  }
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string nquote(const std::optional<std::string>& s) { return s ? quote(*s) : std::string("NIL"); }

// Number of LF octets in `s` (= lines of a body as sent, RFC 3501 body-fld-lines).
size_t count_lines(std::string_view s) {
  size_t n = 0;
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (nl == nullptr) break;
    ++n;
    p = static_cast<const char*>(nl) + 1;
  }
  return n;
}

// ---------------------------------------------------------------- header lexer (RFC 5322 / RFC 2045)

// Skips whitespace and (nested) comments from `i`; the last comment's text goes to *comment.
void skip_cfws(std::string_view s, size_t& i, std::string* comment = nullptr) {
  while (i < s.size()) {
    if (is_space(s[i])) {
      ++i;
    } else if (s[i] == '(') {
      int depth = 0;
      size_t start = i + 1;
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
}

// Reads a quoted string at s[i] == '"' (unescaped content); stops at the closing quote or the end.
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

// RFC 2045 token characters: anything printable but tspecials and space.
bool is_token_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u == 0x7F) return false;
  return std::strchr("()<>@,;:\\\"/[]?=", c) == nullptr;
}

std::string read_token(std::string_view s, size_t& i) {
  size_t start = i;
  while (i < s.size() && is_token_char(s[i])) ++i;
  return std::string(s.substr(start, i - start));
}

using Params = std::vector<std::pair<std::string, std::string>>;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() + 0 && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Parses "; name=value" parameters (RFC 2045 §5.1) from s[i], then merges
// RFC 2231 continuations and decodes extended values. `decoded` gets UTF-8
// values for lookups, `wire` the form BODYSTRUCTURE sends (see DESIGN).
void parse_params(std::string_view s, size_t i, Params& decoded, Params& wire) {
  struct Raw {
    std::string name, value;
  };
  std::vector<Raw> raw;
  while (i < s.size()) {
    skip_cfws(s, i);
    if (i >= s.size()) break;
    if (s[i] != ';') {
      // Junk between parameters: skip to the next ';'.
      while (i < s.size() && s[i] != ';') {
        if (s[i] == '"') {
          read_quoted(s, i);
        } else {
          ++i;
        }
      }
      continue;
    }
    ++i;
    skip_cfws(s, i);
    std::string name = lower(read_token(s, i));
    skip_cfws(s, i);
    if (name.empty() || i >= s.size() || s[i] != '=') continue;
    ++i;
    skip_cfws(s, i);
    std::string value;
    if (i < s.size() && s[i] == '"') {
      value = read_quoted(s, i);
    } else {
      // Be lenient with unquoted values holding tspecials or spaces
      // (boundary=----=_Part_1, name=a b.pdf): take up to ';', less a
      // trailing comment ("charset=us-ascii (Plain text)").
      size_t start = i;
      while (i < s.size() && s[i] != ';') ++i;
      std::string_view v = s.substr(start, i - start);
      for (size_t k = 1; k < v.size(); ++k) {
        if (v[k] == '(' && is_space(v[k - 1])) {
          v = v.substr(0, k);
          break;
        }
      }
      value = std::string(trim(v));
    }
    raw.push_back({std::move(name), std::move(value)});
  }

  // RFC 2231: name*N[*] sections and name* extended values, merged per base name.
  struct Merged {
    std::string base;
    std::map<unsigned, std::pair<bool, std::string>> sections;  // number -> (extended, value)
    bool plain_seen = false;
    std::string plain;
  };
  std::vector<Merged> merged;
  auto find = [&](const std::string& base) -> Merged& {
    for (Merged& m : merged) {
      if (m.base == base) return m;
    }
    merged.push_back(Merged{base, {}, false, {}});
    return merged.back();
  };
  for (Raw& r : raw) {
    size_t star = r.name.find('*');
    if (star == std::string::npos) {
      Merged& m = find(r.name);
      if (!m.plain_seen) {
        m.plain_seen = true;
        m.plain = r.value;
      }
      continue;
    }
    std::string base = r.name.substr(0, star);
    std::string_view rest = std::string_view(r.name).substr(star + 1);
    bool extended = false;
    unsigned number = 0;
    if (rest.empty()) {
      extended = true;  // name*=charset'lang'value
    } else {
      size_t digits = 0;
      while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9' && digits < 6) {
        number = number * 10 + static_cast<unsigned>(rest[digits] - '0');
        ++digits;
      }
      if (digits == 0) continue;
      std::string_view tail = rest.substr(digits);
      if (tail == "*") {
        extended = true;
      } else if (!tail.empty()) {
        continue;
      }
    }
    Merged& m = find(base);
    m.sections.emplace(number, std::make_pair(extended, r.value));
  }

  for (Merged& m : merged) {
    if (m.sections.empty() || !m.sections.count(0)) {
      if (m.plain_seen) {
        decoded.emplace_back(m.base, m.plain);
        wire.emplace_back(m.base, m.plain);
      }
      continue;
    }
    std::string charset;
    std::string bytes;        // decoded octets in `charset`
    std::string wire_value;   // merged extended form
    bool any_extended = false;
    unsigned expect = 0;
    for (auto& [number, sec] : m.sections) {
      if (number != expect) break;  // a gap ends the value (RFC 2231 §3)
      ++expect;
      std::string_view v = sec.second;
      if (sec.first) {
        if (number == 0) {
          size_t q1 = v.find('\'');
          size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
          if (q2 != std::string_view::npos) {
            charset = std::string(v.substr(0, q1));
            wire_value = std::string(v.substr(0, q2 + 1));
            v = v.substr(q2 + 1);
          }
        }
        any_extended = true;
        bytes += percent_decode(v);
        wire_value += v;
      } else {
        bytes += v;
        // A plain section inside an extended value: percent-encode what needs it.
        for (char c : v) {
          auto u = static_cast<unsigned char>(c);
          if (u < 0x21 || u > 0x7E || std::strchr("*'%()<>@,;:\\\"/[]?=", c) != nullptr) {
            static const char* kHex = "0123456789ABCDEF";
            wire_value.push_back('%');
            wire_value.push_back(kHex[u >> 4]);
            wire_value.push_back(kHex[u & 15]);
          } else {
            wire_value.push_back(c);
          }
        }
      }
    }
    std::string utf8;
    bool known = charset_to_utf8(bytes, charset, utf8);
    decoded.emplace_back(m.base, known ? utf8 : bytes);
    if (!any_extended || (known && is_ascii(utf8))) {
      wire.emplace_back(m.base, any_extended ? utf8 : bytes);
    } else {
      if (wire_value.find('\'') == std::string::npos) wire_value = "''" + wire_value;
      wire.emplace_back(m.base + "*", wire_value);
    }
  }
}

// ---------------------------------------------------------------- MIME parser

// The parse walks the octets once, front to back. Every line that starts
// with "--" is checked against the boundaries of the open multiparts,
// innermost first (so a nested multipart that reuses its parent's boundary
// gets the lines, as in Dovecot), and ends every part inside the multipart
// it belongs to.
struct ParseContext {
  std::string_view raw;
  size_t parts = 0;
  std::vector<std::string> boundaries;  // of the open multiparts, outermost first
  bool bare_lf = false;                 // whether sizes need the CRLF correction at all
};

constexpr size_t kNone = static_cast<size_t>(-1);

// Where a scan stopped: at a boundary line of an open multipart, or the end.
struct Stop {
  size_t line = kNone;   // start of the boundary line; kNone = end of data
  size_t before = 0;     // where the content before it ends (its preceding line end excluded)
  size_t next = 0;       // start of the line after the boundary line
  size_t level = kNone;  // index into ParseContext::boundaries
  bool close = false;
};

// Whether the line [p, eol) (line end excluded) is a delimiter for
// `boundary`: "--" boundary, then "--" (close) or only transport padding
// (RFC 2046 §5.1.1).
bool is_delimiter(std::string_view raw, size_t p, size_t eol, std::string_view boundary, bool* close) {
  size_t need = 2 + boundary.size();
  if (eol - p < need) return false;
  if (raw.compare(p + 2, boundary.size(), boundary) != 0) return false;
  size_t q = p + need;
  *close = false;
  if (eol - q >= 2 && raw[q] == '-' && raw[q + 1] == '-') {
    *close = true;
    return true;
  }
  for (; q < eol; ++q) {
    if (!is_space(raw[q])) return false;
  }
  return true;
}

// If the line at `p` is a boundary line of an open multipart, fills `stop`.
bool boundary_at(const ParseContext& ctx, size_t p, size_t floor, Stop& stop) {
  std::string_view raw = ctx.raw;
  if (ctx.boundaries.empty() || p + 1 >= raw.size() || raw[p] != '-' || raw[p + 1] != '-') return false;
  const void* nl = std::memchr(raw.data() + p, '\n', raw.size() - p);
  size_t eol = nl == nullptr ? raw.size() : static_cast<size_t>(static_cast<const char*>(nl) - raw.data());
  size_t content_eol = (eol > p && raw[eol - 1] == '\r') ? eol - 1 : eol;
  for (size_t level = ctx.boundaries.size(); level-- > 0;) {
    bool close = false;
    if (!is_delimiter(raw, p, content_eol, ctx.boundaries[level], &close)) continue;
    stop.line = p;
    stop.level = level;
    stop.close = close;
    stop.next = nl == nullptr ? raw.size() : eol + 1;
    // The line end before the delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    size_t before = p;
    if (before > floor && raw[before - 1] == '\n') {
      --before;
      if (before > floor && raw[before - 1] == '\r') --before;
    }
    stop.before = before;
    return true;
  }
  return false;
}

// Scans lines from `p` (a line start) to the next boundary line of an open multipart.
Stop scan_to_boundary(const ParseContext& ctx, size_t p, size_t floor) {
  std::string_view raw = ctx.raw;
  Stop stop;
  stop.before = stop.next = raw.size();
  if (ctx.boundaries.empty()) return stop;
  while (p < raw.size()) {
    if (boundary_at(ctx, p, floor, stop)) return stop;
    const void* nl = std::memchr(raw.data() + p, '\n', raw.size() - p);
    if (nl == nullptr) break;
    p = static_cast<size_t>(static_cast<const char*>(nl) - raw.data()) + 1;
  }
  return stop;
}

// The end of the header block starting at `begin`: one past the empty
// line, or the start of a boundary line (then *stop is set), or the end.
size_t find_header_end(const ParseContext& ctx, size_t begin, Stop* stop, bool* at_boundary) {
  std::string_view raw = ctx.raw;
  size_t p = begin;
  *at_boundary = false;
  while (p < raw.size()) {
    if (raw[p] == '\n') return p + 1;
    if (raw[p] == '\r' && p + 1 < raw.size() && raw[p + 1] == '\n') return p + 2;
    if (boundary_at(ctx, p, p, *stop)) {
      *at_boundary = true;
      return p;
    }
    const void* nl = std::memchr(raw.data() + p, '\n', raw.size() - p);
    if (nl == nullptr) return raw.size();
    p = static_cast<size_t>(static_cast<const char*>(nl) - raw.data()) + 1;
  }
  return raw.size();
}

void set_opaque(MimePart& part) {
  part.type = "application";
  part.subtype = "octet-stream";
  part.params.clear();
  part.params_wire.clear();
  part.children.clear();
}

void parse_content_type(std::string_view v, MimePart& part) {
  size_t i = 0;
  skip_cfws(v, i);
  std::string type = lower(read_token(v, i));
  skip_cfws(v, i);
  std::string subtype;
  if (i < v.size() && v[i] == '/') {
    ++i;
    skip_cfws(v, i);
    subtype = lower(read_token(v, i));
  }
  if (type.empty() || subtype.empty()) {
    // RFC 2045 §5.2: a syntactically invalid Content-Type means text/plain; charset=us-ascii.
    part.type = "text";
    part.subtype = "plain";
    part.params = {{"charset", "us-ascii"}};
    part.params_wire = part.params;
    return;
  }
  part.type = std::move(type);
  part.subtype = std::move(subtype);
  part.params.clear();
  part.params_wire.clear();
  parse_params(v, i, part.params, part.params_wire);
}

void parse_disposition(std::string_view v, MimePart& part) {
  size_t i = 0;
  skip_cfws(v, i);
  part.disposition = lower(read_token(v, i));
  if (part.disposition.empty()) return;
  parse_params(v, i, part.disposition_params, part.disposition_params_wire);
}

void parse_language(std::string_view v, MimePart& part) {
  // RFC 3282: Content-Language: 1#Language-tag (with CFWS).
  size_t i = 0;
  while (i < v.size()) {
    const size_t before = i;
    skip_cfws(v, i);
    size_t start = i;
    while (i < v.size() && v[i] != ',' && !is_space(v[i]) && v[i] != '(') ++i;
    if (i > start) part.language.emplace_back(v.substr(start, i - start));
    skip_cfws(v, i);
    if (i < v.size() && (v[i] == ',' || i == before)) ++i;
  }
}

void parse_mime_header(std::string_view block, MimePart& part, bool digest_child) {
  if (digest_child) {
    // RFC 2046 §5.1.5: the default type in multipart/digest is message/rfc822.
    part.type = "message";
    part.subtype = "rfc822";
  } else {
    part.params = {{"charset", "us-ascii"}};
    part.params_wire = part.params;
  }
  bool seen_type = false, seen_cte = false, seen_id = false, seen_desc = false, seen_md5 = false,
       seen_disp = false, seen_lang = false, seen_loc = false;
  for (const HeaderField& f : header_fields(block)) {
    if (f.name.size() < 8 || !iequals(f.name.substr(0, 8), "content-")) continue;
    std::string_view n = f.name.substr(8);
    if (iequals(n, "type") && !seen_type) {
      seen_type = true;
      parse_content_type(f.value(), part);
    } else if (iequals(n, "transfer-encoding") && !seen_cte) {
      seen_cte = true;
      std::string v = f.value();
      size_t i = 0;
      skip_cfws(v, i);
      std::string token = lower(read_token(v, i));
      if (!token.empty()) part.encoding = token;
    } else if (iequals(n, "id") && !seen_id) {
      seen_id = true;
      part.id = f.value();
    } else if (iequals(n, "description") && !seen_desc) {
      seen_desc = true;
      part.description = f.value();
    } else if (iequals(n, "md5") && !seen_md5) {
      seen_md5 = true;
      part.md5 = f.value();
    } else if (iequals(n, "disposition") && !seen_disp) {
      seen_disp = true;
      parse_disposition(f.value(), part);
    } else if (iequals(n, "language") && !seen_lang) {
      seen_lang = true;
      parse_language(f.value(), part);
    } else if (iequals(n, "location") && !seen_loc) {
      seen_loc = true;
      // RFC 2557 §4.4.1: a folded URI is unfolded by removing the whitespace too.
      std::string v = f.value();
      v.erase(std::remove_if(v.begin(), v.end(), is_space), v.end());
      part.location = std::move(v);
    }
  }
}

// Parses the entity (header and body) starting at `begin`; returns the
// boundary line (of an enclosing multipart) or end of data that ended it.
Stop parse_entity(MimePart& part, size_t begin, int depth, ParseContext& ctx, bool digest_child) {
  ++ctx.parts;
  std::string_view raw = ctx.raw;
  Stop stop;
  bool header_cut = false;
  part.header_begin = begin;
  part.header_end = find_header_end(ctx, begin, &stop, &header_cut);
  part.body_begin = part.header_end;
  parse_mime_header(raw.substr(begin, part.header_end - begin), part, digest_child);
  if (header_cut) {
    // A boundary line inside the header: the part has no body.
    part.body_end = part.body_begin;
    if (part.is_multipart() || part.is_message()) set_opaque(part);
    return stop;
  }

  if ((part.is_multipart() || part.is_message()) && (depth >= kMaxMimeDepth || ctx.parts >= kMaxMimeParts)) {
    set_opaque(part);
  }
  const std::string* boundary = part.is_multipart() ? part.param("boundary") : nullptr;
  if (part.is_multipart() && boundary != nullptr && !boundary->empty()) {
    const bool digest = part.subtype == "digest";
    ctx.boundaries.push_back(*boundary);
    const size_t level = ctx.boundaries.size() - 1;
    stop = scan_to_boundary(ctx, part.body_begin, part.body_begin);  // the preamble is skipped
    while (stop.line != kNone && stop.level == level) {
      if (stop.close) {
        // The epilogue is skipped up to a boundary of an enclosing multipart.
        ctx.boundaries.pop_back();
        stop = scan_to_boundary(ctx, stop.next, stop.next);
        break;
      }
      if (ctx.parts >= kMaxMimeParts) {
        // Too many parts: the rest of this multipart is not split further.
        size_t from = stop.next;
        stop = scan_to_boundary(ctx, from, from);
        continue;
      }
      part.children.emplace_back();
      stop = parse_entity(part.children.back(), stop.next, depth + 1, ctx, digest);
    }
    if (ctx.boundaries.size() > level) ctx.boundaries.resize(level);
  } else if (part.is_message()) {
    part.children.emplace_back();
    stop = parse_entity(part.children.back(), part.body_begin, depth + 1, ctx, false);
  } else if (!part.is_multipart()) {
    stop = scan_to_boundary(ctx, part.body_begin, part.body_begin);
  } else {
    // multipart without a boundary: its body is opaque (sent with one empty text/plain part).
    stop = scan_to_boundary(ctx, part.body_begin, part.body_begin);
  }
  part.body_end = stop.line == kNone ? raw.size() : std::max(stop.before, part.body_begin);
  std::string_view body = raw.substr(part.body_begin, part.body_end - part.body_begin);
  part.size = ctx.bare_lf ? crlf_size(body) : body.size();
  if (part.type == "text" || part.is_message()) part.lines = count_lines(body);
  return stop;
}

// ---------------------------------------------------------------- addresses (RFC 5322 §3.4, RFC 3501 §7.4.2)

struct Token {
  enum Kind { Atom, Quoted, Special, DomainLiteral } kind;
  std::string text;  // unquoted for Quoted
  std::string_view raw;
  std::string comment;  // the comment that followed the token, if any
};

std::vector<Token> tokenize_address(std::string_view s, std::string* first_comment) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    std::string comment;
    skip_cfws(s, i, &comment);
    if (!comment.empty()) {
      if (!out.empty()) {
        out.back().comment = comment;
      } else if (first_comment != nullptr) {
        *first_comment = comment;
      }
    }
    if (i >= s.size()) break;
    size_t start = i;
    char c = s[i];
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

struct Address {
  std::optional<std::string> name, mailbox, host;  // nullopt = NIL
};

bool is_special(const Token& t, char c) { return t.kind == Token::Special && t.text[0] == c; }

// Display-name words (quoted strings unquoted, encoded words kept), one
// space where the header had whitespace or a comment between them.
std::string phrase(const std::vector<Token>& t, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i) {
    if (i > b && t[i].raw.data() > t[i - 1].raw.data() + t[i - 1].raw.size()) out += ' ';
    out += t[i].text;
  }
  return out;
}

// local-part "@" domain from tokens [b, e): raw local part (quotes kept), domain joined.
void addr_spec(const std::vector<Token>& t, size_t b, size_t e, Address& a) {
  size_t at = e;
  for (size_t i = e; i > b; --i) {
    if (is_special(t[i - 1], '@')) {
      at = i - 1;
      break;
    }
  }
  std::string local, domain;
  for (size_t i = b; i < at; ++i) local += std::string(t[i].raw);
  for (size_t i = at + 1; i < e && at < e; ++i) domain += t[i].text;
  a.mailbox = local.empty() ? "MISSING_MAILBOX" : local;
  a.host = domain.empty() ? "MISSING_DOMAIN" : domain;
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
    // Obsolete route "@a,@b:" before the addr-spec: dropped (route is NIL).
    for (size_t i = spec_b; i < gt; ++i) {
      if (is_special(t[i], ':')) {
        spec_b = i + 1;
        break;
      }
    }
    if (lt > b) a.name = std::string(trim(phrase(t, b, lt)));
    if (spec_b >= gt) {
      a.mailbox = "MISSING_MAILBOX";
      a.host = "MISSING_DOMAIN";
    } else {
      addr_spec(t, spec_b, gt, a);
    }
  } else {
    bool has_at = std::any_of(t.begin() + static_cast<std::ptrdiff_t>(b), t.begin() + static_cast<std::ptrdiff_t>(e),
                              [](const Token& x) { return is_special(x, '@'); });
    if (!has_at && e - b > 1) {
      // Words without an address ("Sender: evil doer"): a display name with
      // the address missing, as Dovecot reports it.
      a.name = std::string(trim(phrase(t, b, e)));
      a.mailbox = "MISSING_MAILBOX";
      a.host = "MISSING_DOMAIN";
      return a;
    }
    addr_spec(t, b, e, a);
    // "user@host (Name)": the comment is the display name.
    if (!t[e - 1].comment.empty()) {
      a.name = t[e - 1].comment;
    } else if (b == 0 && !lead_comment.empty()) {
      a.name = lead_comment;
    }
  }
  return a;
}

// RFC 3501 §7.4.2 address list: groups as (NIL NIL name NIL) ... (NIL NIL NIL NIL).
std::vector<Address> parse_address_list(std::string_view value) {
  std::string lead_comment;
  std::vector<Token> t = tokenize_address(value, &lead_comment);
  std::vector<Address> out;
  size_t i = 0;
  bool in_group = false;
  while (i < t.size()) {
    if (is_special(t[i], ',') || (!in_group && is_special(t[i], ';'))) {
      ++i;  // an empty list element, or a stray ';'
      continue;
    }
    if (in_group && is_special(t[i], ';')) {
      out.push_back(Address{});
      in_group = false;
      ++i;
      continue;
    }
    // Find the end of this item: ',' or ';' outside <>; note a ':' before any '<' or '@'.
    size_t j = i;
    bool angle = false;
    size_t colon = t.size();
    while (j < t.size()) {
      if (is_special(t[j], '<')) angle = true;
      if (is_special(t[j], '>')) angle = false;
      if (!angle && (is_special(t[j], ',') || is_special(t[j], ';'))) break;
      if (!angle && !in_group && colon == t.size() && is_special(t[j], ':')) {
        colon = j;
        break;
      }
      ++j;
    }
    if (colon < t.size()) {
      Address g;
      g.mailbox = phrase(t, i, colon);
      out.push_back(g);
      in_group = true;
      i = colon + 1;
      continue;
    }
    if (auto a = mailbox(t, i, j, lead_comment)) out.push_back(std::move(*a));
    i = std::max(j, i + 1);
  }
  if (in_group) out.push_back(Address{});
  return out;
}

void append_addresses(std::string& out, const std::optional<std::string>& value) {
  if (!value) {
    out += "NIL";
    return;
  }
  std::vector<Address> list = parse_address_list(*value);
  if (list.empty()) {
    out += "NIL";
    return;
  }
  out += '(';
  for (const Address& a : list) {
    out += '(';
    out += nquote(a.name);
    out += " NIL ";
    out += nquote(a.mailbox);
    out += ' ';
    out += nquote(a.host);
    out += ')';
  }
  out += ')';
}

std::optional<std::string> header_of(std::string_view block, std::string_view name) {
  for (const HeaderField& f : header_fields(block)) {
    if (iequals(f.name, name)) return f.value();
  }
  return std::nullopt;
}

// All fields `name` of a header block, their values joined by ", " (RFC
// 5322 allows one To/Cc/...; a message with several gets the union, as in Dovecot).
std::optional<std::string> address_header(std::string_view block, std::string_view name) {
  std::optional<std::string> out;
  for (const HeaderField& f : header_fields(block)) {
    if (!iequals(f.name, name)) continue;
    if (out) {
      *out += ", ";
      *out += f.value();
    } else {
      out = f.value();
    }
  }
  return out;
}

void append_envelope(std::string& out, std::string_view header_block) {
  auto from = address_header(header_block, "from");
  auto sender = address_header(header_block, "sender");
  auto reply_to = address_header(header_block, "reply-to");
  // RFC 3501 §7.4.2: absent or empty Sender/Reply-To take the value of From.
  auto empty_list = [](const std::optional<std::string>& v) { return !v || parse_address_list(*v).empty(); };
  if (empty_list(sender)) sender = from;
  if (empty_list(reply_to)) reply_to = from;
  out += '(';
  out += nquote(header_of(header_block, "date"));
  out += ' ';
  out += nquote(header_of(header_block, "subject"));
  out += ' ';
  append_addresses(out, from);
  out += ' ';
  append_addresses(out, sender);
  out += ' ';
  append_addresses(out, reply_to);
  out += ' ';
  append_addresses(out, address_header(header_block, "to"));
  out += ' ';
  append_addresses(out, address_header(header_block, "cc"));
  out += ' ';
  append_addresses(out, address_header(header_block, "bcc"));
  out += ' ';
  out += nquote(header_of(header_block, "in-reply-to"));
  out += ' ';
  out += nquote(header_of(header_block, "message-id"));
  out += ')';
}

// ---------------------------------------------------------------- BODY / BODYSTRUCTURE

void append_params(std::string& out, const Params& params) {
  if (params.empty()) {
    out += "NIL";
    return;
  }
  out += '(';
  bool first = true;
  for (const auto& [name, value] : params) {
    if (!first) out += ' ';
    first = false;
    out += quote(upper(name));
    out += ' ';
    out += quote(value);
  }
  out += ')';
}

std::optional<std::string> opt(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

void append_disposition_language_location(std::string& out, const MimePart& p) {
  out += ' ';
  if (p.disposition.empty()) {
    out += "NIL";
  } else {
    out += '(';
    out += quote(upper(p.disposition));
    out += ' ';
    append_params(out, p.disposition_params_wire);
    out += ')';
  }
  out += ' ';
  if (p.language.empty()) {
    out += "NIL";
  } else {
    out += '(';
    for (size_t i = 0; i < p.language.size(); ++i) {
      if (i > 0) out += ' ';
      out += quote(p.language[i]);
    }
    out += ')';
  }
  out += ' ';
  out += nquote(opt(p.location));
}

void append_body(std::string& out, std::string_view raw, const MimePart& p, bool extended) {
  out += '(';
  if (p.is_multipart()) {
    if (p.children.empty()) {
      out += extended ? R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL))"
                      : R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0))";
    }
    for (const MimePart& c : p.children) append_body(out, raw, c, extended);
    out += ' ';
    out += quote(upper(p.subtype));
    if (extended) {
      out += ' ';
      append_params(out, p.params_wire);
      append_disposition_language_location(out, p);
    }
    out += ')';
    return;
  }
  out += quote(upper(p.type));
  out += ' ';
  out += quote(upper(p.subtype));
  out += ' ';
  if (p.type == "text" && p.param("charset") == nullptr) {
    // RFC 2045 §5.2: the charset of text defaults to us-ascii; say so.
    Params params = p.params_wire;
    params.emplace_back("charset", "us-ascii");
    append_params(out, params);
  } else {
    append_params(out, p.params_wire);
  }
  out += ' ';
  out += nquote(opt(p.id));
  out += ' ';
  out += nquote(opt(p.description));
  out += ' ';
  out += quote(upper(p.encoding));
  out += ' ';
  out += std::to_string(p.size);
  if (p.is_message() && !p.children.empty()) {
    const MimePart& inner = p.children[0];
    out += ' ';
    append_envelope(out, raw.substr(inner.header_begin, inner.header_end - inner.header_begin));
    out += ' ';
    append_body(out, raw, inner, extended);
    out += ' ';
    out += std::to_string(p.lines);
  } else if (p.type == "text") {
    out += ' ';
    out += std::to_string(p.lines);
  }
  if (extended) {
    out += ' ';
    out += nquote(opt(p.md5));
    append_disposition_language_location(out, p);
  }
  out += ')';
}

// ---------------------------------------------------------------- dates

constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

int month_number(std::string_view s) {
  if (s.size() < 3) return 0;
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (iequals(s.substr(0, 3), kMonths[i])) return static_cast<int>(i) + 1;
  }
  return 0;
}

// Reads 1..max digits at s[i].
std::optional<int> read_number(std::string_view s, size_t& i, size_t min_digits, size_t max_digits) {
  size_t start = i;
  int v = 0;
  while (i < s.size() && i - start < max_digits && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
  if (i - start < min_digits) return std::nullopt;
  return v;
}

}  // namespace

void append_utf8(std::string& out, uint32_t cp) { mail::append_utf8(out, cp); }

// ---------------------------------------------------------------- public: helpers

const std::string* MimePart::param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return &v;
  }
  return nullptr;
}

std::string HeaderField::value() const {
  size_t colon = raw.find(':');
  if (colon == std::string_view::npos) return {};
  return unfold(raw.substr(colon + 1));
}

std::vector<HeaderField> header_fields(std::string_view block) {
  std::vector<HeaderField> out;
  size_t p = 0;
  while (p < block.size()) {
    size_t start = p;
    // A field runs until a line end not followed by WSP.
    for (;;) {
      size_t nl = block.find('\n', p);
      if (nl == std::string_view::npos) {
        p = block.size();
        break;
      }
      p = nl + 1;
      if (p >= block.size() || !is_wsp(block[p])) break;
    }
    std::string_view raw = block.substr(start, p - start);
    if (trim(raw).empty()) {
      if (raw.find('\n') == 0 || raw.substr(0, 2) == "\r\n") break;  // the empty line ends the header
      continue;
    }
    size_t colon = raw.find(':');
    size_t eol = raw.find_first_of("\r\n");
    std::string_view name;
    if (colon != std::string_view::npos && (eol == std::string_view::npos || colon < eol)) {
      name = raw.substr(0, colon);
      while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
    } else {
      name = trim(raw);
    }
    out.push_back({name, raw});
  }
  return out;
}

size_t crlf_size(std::string_view s) {
  size_t n = s.size();
  const char* base = s.data();
  const char* p = base;
  const char* end = base + s.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (nl == nullptr) break;
    const char* q = static_cast<const char*>(nl);
    if (q == base || q[-1] != '\r') ++n;
    p = q + 1;
  }
  return n;
}

std::string to_crlf(std::string_view s) {
  size_t size = crlf_size(s);
  if (size == s.size()) return std::string(s);
  std::string out;
  out.reserve(size);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out += '\r';
    out += s[i];
  }
  return out;
}

bool charset_to_utf8(std::string_view bytes, std::string_view charset, std::string& out) {
  // An unlabelled RFC 2231 value (''%41) is taken as it is.
  if (trim(charset).empty()) {
    out.assign(bytes);
    return true;
  }
  std::optional<std::string> utf8 = mail::convert_to_utf8(bytes, charset);
  if (!utf8) {
    out.assign(bytes);
    return false;
  }
  out = std::move(*utf8);
  return true;
}

std::string decode_header_value(std::string_view v) { return mail::decode_rfc2047(v); }

std::string decode_transfer_encoding(std::string_view body, std::string_view encoding) {
  if (iequals(encoding, "base64")) return mail::decode_base64(body);
  if (iequals(encoding, "quoted-printable")) return mail::decode_quoted_printable(body);
  return std::string(body);
}

std::string decoded_text(const ParsedMessage& m, const MimePart& p) {
  std::string bytes = decode_transfer_encoding(m.body(p), p.encoding);
  const std::string* cs = p.param("charset");
  std::string out;
  charset_to_utf8(bytes, cs != nullptr ? std::string_view(*cs) : std::string_view("us-ascii"), out);
  return out;
}

// ---------------------------------------------------------------- public: ParsedMessage

std::shared_ptr<const ParsedMessage> ParsedMessage::parse(std::shared_ptr<const std::string> raw) {
  auto m = std::make_shared<ParsedMessage>();
  m->raw_ = raw ? std::move(raw) : std::make_shared<const std::string>();
  ParseContext ctx{*m->raw_, 0, {}, crlf_size(*m->raw_) != m->raw_->size()};
  parse_entity(m->root_, 0, 0, ctx, false);
  return m;
}

std::string_view ParsedMessage::header_block(const MimePart& p) const {
  return std::string_view(*raw_).substr(p.header_begin, p.header_end - p.header_begin);
}

std::string_view ParsedMessage::body(const MimePart& p) const {
  return std::string_view(*raw_).substr(p.body_begin, p.body_end - p.body_begin);
}

std::optional<std::string> ParsedMessage::header(std::string_view name) const {
  return header_of(header_block(root_), name);
}

const MimePart* ParsedMessage::part(const std::vector<uint32_t>& path) const {
  // RFC 3501 §6.4.5: a non-multipart message (or encapsulated message) has
  // only a part 1, its body; the parts of a message/rfc822 part are those of
  // the message it encapsulates.
  const MimePart* cur = &root_;
  bool at_message_level = true;  // `cur` is a message whose parts are being numbered
  for (uint32_t n : path) {
    if (n == 0) return nullptr;
    if (!at_message_level) {
      if (cur->is_message() && !cur->children.empty()) {
        cur = &cur->children[0];
      } else if (!cur->is_multipart()) {
        return nullptr;
      }
    }
    if (cur->is_multipart()) {
      if (n > cur->children.size()) return nullptr;
      cur = &cur->children[n - 1];
    } else if (n != 1) {
      return nullptr;
    }
    at_message_level = false;
  }
  return cur;
}

std::string envelope(const ParsedMessage& m) {
  std::string out;
  append_envelope(out, m.header_block(m.root()));
  return out;
}

std::string body_structure(const ParsedMessage& m, bool extended) {
  std::string out;
  append_body(out, m.raw(), m.root(), extended);
  return out;
}

namespace {

std::string header_fields_text(std::string_view block, const std::vector<std::string>& names, bool exclude) {
  std::string out;
  for (const HeaderField& f : header_fields(block)) {
    bool listed = std::any_of(names.begin(), names.end(), [&](const std::string& n) { return iequals(n, f.name); });
    if (listed != exclude) {
      out += f.raw;
      if (f.raw.empty() || f.raw.back() != '\n') out += "\r\n";  // a last field without line end
    }
  }
  // RFC 3501 §6.4.5: the selected fields and the empty line that ends a
  // header. HEADER.FIELDS.NOT of a header without one keeps it without (as Dovecot).
  std::string_view b = block;
  if (!exclude || out.empty() || b == "\n" || b == "\r\n" || b.ends_with("\n\n") || b.ends_with("\n\r\n")) out += "\r\n";
  return to_crlf(out);
}

}  // namespace

bool section_exists(const ParsedMessage& m, const std::vector<uint32_t>& path) { return m.part(path) != nullptr; }

std::string section_text(const ParsedMessage& m, const Section& s) {
  const MimePart* p = m.part(s.part);
  if (p == nullptr) return {};
  const MimePart* msg = p;  // the message HEADER/TEXT refer to
  if (!s.part.empty() && s.kind != Section::Kind::Full && s.kind != Section::Kind::Mime) {
    if (!p->is_message() || p->children.empty()) return {};
    msg = &p->children[0];
  }
  switch (s.kind) {
    case Section::Kind::Full:
      if (s.part.empty()) return to_crlf(m.raw());
      return to_crlf(m.body(*p));
    case Section::Kind::Header:
      return to_crlf(m.header_block(*msg));
    case Section::Kind::HeaderFields:
      return header_fields_text(m.header_block(*msg), s.fields, false);
    case Section::Kind::HeaderFieldsNot:
      return header_fields_text(m.header_block(*msg), s.fields, true);
    case Section::Kind::Text:
      return to_crlf(m.body(*msg));
    case Section::Kind::Mime:
      if (s.part.empty()) return {};
      return to_crlf(m.header_block(*p));
  }
  return {};
}

// ---------------------------------------------------------------- public: dates

std::string format_internal_date(int64_t epoch_seconds) {
  int64_t days = epoch_seconds >= 0 ? epoch_seconds / 86400 : -((-epoch_seconds + 86399) / 86400);
  int64_t secs = epoch_seconds - days * 86400;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, y, m, d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%02u-%s-%04lld %02lld:%02lld:%02lld +0000", d, kMonths[m - 1],
                static_cast<long long>(y), static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return buf;
}

namespace {

// date-day "-" date-month "-" date-year (RFC 3501); day may be " 7", "7" or "07".
bool parse_imap_date(std::string_view t, size_t& i, int64_t& days) {
  if (i < t.size() && t[i] == ' ') ++i;
  auto d = read_number(t, i, 1, 2);
  if (!d || i >= t.size() || t[i] != '-') return false;
  ++i;
  if (t.size() - i < 4) return false;
  int m = month_number(t.substr(i, 3));
  if (m == 0 || t[i + 3] != '-') return false;
  i += 4;
  auto y = read_number(t, i, 4, 4);
  if (!y || *d < 1 || static_cast<unsigned>(*d) > days_in_month(*y, static_cast<unsigned>(m))) return false;
  days = days_from_civil(*y, static_cast<unsigned>(m), static_cast<unsigned>(*d));
  return true;
}

std::string_view unquote(std::string_view t) {
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') return t.substr(1, t.size() - 2);
  return t;
}

}  // namespace

std::optional<int64_t> parse_internal_date(std::string_view text) {
  std::string_view t = unquote(text);
  size_t i = 0;
  int64_t days = 0;
  if (!parse_imap_date(t, i, days)) return std::nullopt;
  if (i >= t.size() || t[i] != ' ') return std::nullopt;
  ++i;
  auto hh = read_number(t, i, 2, 2);
  if (!hh || i >= t.size() || t[i++] != ':') return std::nullopt;
  auto mm = read_number(t, i, 2, 2);
  if (!mm || i >= t.size() || t[i++] != ':') return std::nullopt;
  auto ss = read_number(t, i, 2, 2);
  if (!ss || i >= t.size() || t[i++] != ' ') return std::nullopt;
  if (i >= t.size() || (t[i] != '+' && t[i] != '-')) return std::nullopt;
  int sign = t[i++] == '-' ? -1 : 1;
  auto zh = read_number(t, i, 2, 2);
  auto zm = read_number(t, i, 2, 2);
  if (!zh || !zm || i != t.size()) return std::nullopt;
  if (*hh > 23 || *mm > 59 || *ss > 60 || *zm > 59) return std::nullopt;
  int64_t local = days * 86400 + *hh * 3600 + *mm * 60 + std::min(*ss, 59);
  return local - sign * (*zh * 3600 + *zm * 60);
}

std::optional<int64_t> parse_search_date(std::string_view text) {
  std::string_view t = unquote(text);
  size_t i = 0;
  int64_t days = 0;
  if (t.empty() || t[0] == ' ' || !parse_imap_date(t, i, days) || i != t.size()) return std::nullopt;
  return days * 86400;
}

std::optional<int64_t> parse_rfc5322_day(std::string_view value) {
  // RFC 5322 §3.3 (with §4.3 obsolete forms): [day-of-week ","] day month year ...
  std::string v(value);
  size_t i = 0;
  skip_cfws(v, i);
  if (i < v.size() && ((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z'))) {
    while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
    skip_cfws(v, i);
    if (i < v.size() && v[i] == ',') ++i;
    skip_cfws(v, i);
  }
  auto d = read_number(v, i, 1, 2);
  if (!d) return std::nullopt;
  skip_cfws(v, i);
  if (i < v.size() && v[i] == '-') ++i;  // "13-Feb-2023" seen in the wild
  size_t ms = i;
  while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
  int m = month_number(std::string_view(v).substr(ms, i - ms));
  if (m == 0) return std::nullopt;
  skip_cfws(v, i);
  if (i < v.size() && v[i] == '-') ++i;
  size_t ys = i;
  auto y = read_number(v, i, 2, 4);
  if (!y) return std::nullopt;
  int year = *y;
  if (i - ys == 2) year += year < 50 ? 2000 : 1900;  // RFC 5322 §4.3
  else if (i - ys == 3) year += 1900;
  if (*d < 1 || static_cast<unsigned>(*d) > days_in_month(year, static_cast<unsigned>(m))) return std::nullopt;
  return days_from_civil(year, static_cast<unsigned>(m), static_cast<unsigned>(*d)) * 86400;
}

}  // namespace postern::imap
