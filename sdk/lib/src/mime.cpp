// The MIME structure parser and the Content-Type / parameter parsers it relies on.
// One pass over the lines of the raw message with an explicit stack of open entities:
// no recursion, so no input can exhaust the call stack.
#include "postern/mail/mime.hpp"

#include "postern/mail/address.hpp"
#include "postern/mail/ascii.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace postern::mail {
namespace {

std::string lower(std::string_view s) { return to_lower(s); }

// RFC 2045 §5.1 token: printable ASCII without space and tspecials. The strict readings
// (Dovecot's) also take 8-bit octets into a token.
bool is_token_char(char c, bool allow_8bit) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u == 0x7F || (u > 0x7F && !allow_8bit)) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

std::string_view read_token(std::string_view s, size_t& i, bool allow_8bit = false) {
  const size_t begin = i;
  while (i < s.size() && is_token_char(s[i], allow_8bit)) ++i;
  return s.substr(begin, i - begin);
}

std::string percent_decode(std::string_view s) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string_view find_param(const std::vector<std::pair<std::string, std::string>>& params,
                            std::string_view name) {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return {};
}

std::string boundary_of(const ContentType& ct, bool exact) {
  // RFC 2046 §5.1.1: a boundary never ends in a space, so trailing blanks are noise
  // (MessageOptions::exact_boundaries keeps them, as Dovecot does).
  std::string_view b = find_param(ct.params, "boundary");
  while (!exact && !b.empty() && (is_wsp(b.back()) || b.back() == '\r' || b.back() == '\n')) b.remove_suffix(1);
  return std::string(b);
}

struct Line {
  size_t begin = 0;        // first octet
  size_t content_end = 0;  // before the CR LF or LF
  size_t next = 0;         // first octet of the next line
  bool has_lf = false;
};

Line line_at(std::string_view raw, size_t pos) {
  Line line;
  line.begin = pos;
  const void* lf = std::memchr(raw.data() + pos, '\n', raw.size() - pos);
  if (lf == nullptr) {
    line.content_end = raw.size();
    line.next = raw.size();
    return line;
  }
  const size_t at = static_cast<size_t>(static_cast<const char*>(lf) - raw.data());
  line.has_lf = true;
  line.next = at + 1;
  line.content_end = (at > pos && raw[at - 1] == '\r') ? at - 1 : at;
  return line;
}

// A header field line: a name of RFC 5322 §3.6.8 ftext, optional WSP before the colon
// (the obsolete syntax of §4.5), then ':'.
bool field_start(std::string_view text, size_t& name_end, size_t& colon) {
  size_t i = 0;
  while (i < text.size()) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u < 33 || u > 126 || u == ':') break;
    ++i;
  }
  name_end = i;
  while (i < text.size() && is_wsp(text[i])) ++i;
  if (name_end == 0 || i >= text.size() || text[i] != ':') return false;
  colon = i;
  return true;
}

enum class Delimiter { None, Part, Close };

// RFC 2046 §5.1.1: "--" boundary, "--" again for the close delimiter, then only
// transport padding (whitespace) up to the line end. With exact (Dovecot's reading) a
// close delimiter may be followed by anything.
Delimiter match_delimiter(std::string_view text, std::string_view boundary, bool exact) {
  if (boundary.empty() || text.size() < boundary.size() + 2 || text[0] != '-' || text[1] != '-') {
    return Delimiter::None;
  }
  if (text.compare(2, boundary.size(), boundary) != 0) return Delimiter::None;
  std::string_view rest = text.substr(boundary.size() + 2);
  Delimiter kind = Delimiter::Part;
  if (rest.size() >= 2 && rest[0] == '-' && rest[1] == '-') {
    if (exact) return Delimiter::Close;
    kind = Delimiter::Close;
    rest.remove_prefix(2);
  }
  for (char c : rest) {
    if (!is_wsp(c) && c != '\r') return Delimiter::None;
  }
  return kind;
}

bool identity_encoding(std::string_view cte) {
  return cte != "base64" && cte != "quoted-printable";
}

}  // namespace

bool Part::is_multipart() const { return content_type.type == "multipart"; }

bool Part::is_message() const {
  return content_type.type == "message" &&
         (content_type.subtype == "rfc822" || content_type.subtype == "global");
}

namespace {

// One parameter as written: the name lower-case, the value with its quoted-pairs still in.
struct LexedParam {
  std::string name;
  std::string value;
  bool quoted = false;
};

// Where a parameter list is read (RFC 2045 §5.1: *(";" parameter)). Strict is the reading
// of Dovecot that IMAP BODYSTRUCTURE is compared with: each parameter needs its ';' and an
// unquoted value ends at a comment. Lenient also takes a parameter after plain whitespace
// and drops only a comment that ends the value ("charset=us-ascii (Plain text)").
std::vector<LexedParam> lex_params(std::string_view s, bool strict) {
  std::vector<LexedParam> out;
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    i = skip_cfws(s, i);
    if (i >= s.size()) break;
    if (s[i] == ';') {
      ++i;
    } else if (strict || !first) {
      // Junk between parameters: skip to the next ';'.
      while (i < s.size() && s[i] != ';') {
        if (s[i] == '"') {
          ++i;
          while (i < s.size() && s[i] != '"') i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
        }
        if (i < s.size()) ++i;
      }
      continue;
    }
    first = false;
    i = skip_cfws(s, i);
    std::string name = lower(read_token(s, i, strict));
    i = skip_cfws(s, i);
    if (name.empty() || i >= s.size() || s[i] != '=') continue;
    i = skip_cfws(s, i + 1);
    LexedParam p;
    p.name = std::move(name);
    if (i < s.size() && s[i] == '"') {
      p.quoted = true;
      ++i;
      while (i < s.size() && s[i] != '"') {
        if (s[i] == '\\' && i + 1 < s.size()) p.value += s[i++];
        if (s[i] != '\r' && s[i] != '\n') p.value += s[i];
        ++i;
      }
      if (i < s.size()) ++i;
    } else {
      // Unquoted values with tspecials or spaces (boundary=----=_Part_1, name=a b.pdf)
      // are taken up to the ';'.
      const size_t begin = i;
      while (i < s.size() && s[i] != ';') ++i;
      std::string_view v = trim(s.substr(begin, i - begin));
      if (strict) {
        for (size_t k = 1; k < v.size(); ++k) {
          if (v[k] == '(' && is_wsp(v[k - 1])) {
            v = trim(v.substr(0, k));
            break;
          }
        }
      } else if (!v.empty() && v.back() == ')') {
        const size_t open = v.rfind('(');
        if (open != std::string_view::npos && open > 0 && is_wsp(v[open - 1])) v = trim(v.substr(0, open));
      }
      p.value = std::string(v);
    }
    out.push_back(std::move(p));
  }
  return out;
}

// The content of a quoted string: RFC 5322 quoted-pairs undone. all_pairs = false undoes
// only \" and \\ and keeps other backslashes, as in the Windows paths clients send unescaped.
std::string unescape(const LexedParam& p, bool all_pairs) {
  if (!p.quoted) return p.value;
  std::string out;
  out.reserve(p.value.size());
  for (size_t i = 0; i < p.value.size(); ++i) {
    if (p.value[i] == '\\' && i + 1 < p.value.size() &&
        (all_pairs || p.value[i + 1] == '"' || p.value[i + 1] == '\\')) {
      ++i;
    }
    out += p.value[i];
  }
  return out;
}

// RFC 2231 §3-4: name*=ext-value, name*0=, name*1*=ext-octets ... joined per name. A name
// whose section 0 is missing keeps its plain value; a gap in the numbers ends the value.
std::vector<RawParam> merge_params(const std::vector<LexedParam>& lexed, bool all_pairs) {
  struct Group {
    std::string name;
    bool has_plain = false;
    std::string plain;
    std::map<unsigned, std::pair<bool, std::string>> sections;  // number -> (extended, value)
  };
  std::vector<Group> groups;
  std::unordered_map<std::string, size_t> by_name;
  auto group = [&](const std::string& name) -> Group& {
    auto [it, inserted] = by_name.try_emplace(name, groups.size());
    if (inserted) groups.push_back(Group{name, false, {}, {}});
    return groups[it->second];
  };
  for (const LexedParam& p : lexed) {
    const size_t star = p.name.find('*');
    if (star == std::string::npos) {
      Group& g = group(p.name);
      if (!g.has_plain) {
        g.has_plain = true;
        g.plain = unescape(p, all_pairs);
      }
      continue;
    }
    std::string_view rest = std::string_view(p.name).substr(star + 1);
    bool extended = false;
    unsigned number = 0;
    if (rest.empty()) {
      extended = true;  // name*=charset'lang'value
    } else {
      size_t digits = 0;
      while (digits < rest.size() && digits < 6 && rest[digits] >= '0' && rest[digits] <= '9') {
        number = number * 10 + static_cast<unsigned>(rest[digits] - '0');
        ++digits;
      }
      if (digits == 0) continue;
      const std::string_view tail = rest.substr(digits);
      if (tail == "*") {
        extended = true;
      } else if (!tail.empty()) {
        continue;
      }
    }
    group(p.name.substr(0, star)).sections.emplace(number, std::make_pair(extended, unescape(p, all_pairs)));
  }

  std::vector<RawParam> out;
  out.reserve(groups.size());
  for (Group& g : groups) {
    RawParam r;
    r.name = g.name;
    if (g.sections.empty() || g.sections.count(0) == 0) {
      if (!g.has_plain) continue;
      r.value = std::move(g.plain);
      out.push_back(std::move(r));
      continue;
    }
    std::string written;  // the extended form, plain sections percent-encoded
    unsigned expect = 0;
    for (const auto& [number, section] : g.sections) {
      if (number != expect) break;
      ++expect;
      std::string_view v = section.second;
      if (section.first) {
        if (number == 0) {
          const size_t q1 = v.find('\'');
          const size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
          if (q2 != std::string_view::npos) {
            r.charset = std::string(v.substr(0, q1));
            r.language = std::string(v.substr(q1 + 1, q2 - q1 - 1));
            written = std::string(v.substr(0, q2 + 1));
            v = v.substr(q2 + 1);
          }
        }
        r.extended = true;
        r.octets += percent_decode(v);
        written += v;
      } else {
        r.octets += v;
        // RFC 2231 §7 attribute-char: what is not one is sent as %XX.
        for (const char c : v) {
          const auto u = static_cast<unsigned char>(c);
          if (u < 0x21 || u > 0x7E || std::string_view("*'%()<>@,;:\\\"/[]?=").find(c) != std::string_view::npos) {
            static constexpr char kHex[] = "0123456789ABCDEF";
            written += '%';
            written += kHex[u >> 4];
            written += kHex[u & 15];
          } else {
            written += c;
          }
        }
      }
    }
    if (r.extended) {
      if (written.find('\'') == std::string::npos) written = "''" + written;
      r.value = std::move(written);
    } else {
      r.value = r.octets;  // plain numbered sections only: the joined value
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_params(std::string_view s) {
  std::vector<std::pair<std::string, std::string>> out;
  for (RawParam& r : merge_params(lex_params(s, false), false)) {
    std::string value;
    if (r.extended) {
      value = r.charset.empty() ? std::move(r.octets) : to_utf8(r.octets, r.charset);
    } else if (r.name != "boundary" && r.value.find("=?") != std::string::npos) {
      // Clients put RFC 2047 words in quoted values although §5 forbids it; the boundary
      // is compared octet for octet and must stay as written.
      value = decode_rfc2047(r.value);
    } else {
      value = std::move(r.value);
    }
    out.emplace_back(std::move(r.name), std::move(value));
  }
  return out;
}

std::vector<RawParam> parse_raw_params(std::string_view s) { return merge_params(lex_params(s, true), true); }

RawDisposition parse_raw_disposition(std::string_view value) {
  RawDisposition d;
  size_t i = skip_cfws(value, 0);
  d.type = lower(read_token(value, i, true));
  if (!d.type.empty()) d.params = parse_raw_params(value.substr(i));
  return d;
}

std::vector<std::string> parse_content_language(std::string_view v) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < v.size()) {
    const size_t before = i;
    i = skip_cfws(v, i);
    const size_t begin = i;
    while (i < v.size() && v[i] != ',' && v[i] != '(' && !is_wsp(v[i]) && v[i] != '\r' && v[i] != '\n') ++i;
    if (i > begin) out.emplace_back(v.substr(begin, i - begin));
    i = skip_cfws(v, i);
    if (i < v.size() && (v[i] == ',' || i == before)) ++i;
  }
  return out;
}

std::optional<MediaType> parse_media_type(std::string_view value) {
  size_t i = skip_cfws(value, 0);
  MediaType mt;
  mt.type = lower(read_token(value, i, true));
  i = skip_cfws(value, i);
  if (i >= value.size() || value[i] != '/') return std::nullopt;
  i = skip_cfws(value, i + 1);
  mt.subtype = lower(read_token(value, i, true));
  if (mt.type.empty() || mt.subtype.empty()) return std::nullopt;
  mt.params = parse_raw_params(value.substr(i));
  return mt;
}

ContentType parse_content_type(std::string_view value) {
  ContentType fallback;
  fallback.params.emplace_back("charset", "us-ascii");  // RFC 2045 §5.2
  size_t i = skip_cfws(value, 0);
  std::string type = lower(read_token(value, i));
  if (type.empty()) return fallback;
  i = skip_cfws(value, i);
  std::string subtype;
  if (i < value.size() && value[i] == '/') {
    i = skip_cfws(value, i + 1);
    subtype = lower(read_token(value, i));
  }
  if (subtype.empty()) {
    // A bare "text" or "multipart" says enough; any other half type is invalid.
    if (type == "text") {
      subtype = "plain";
    } else if (type == "multipart") {
      subtype = "mixed";
    } else {
      return fallback;
    }
  }
  ContentType ct;
  ct.type = std::move(type);
  ct.subtype = std::move(subtype);
  // Parameters follow a ';', or, from careless senders, just whitespace.
  ct.params = parse_params(value.substr(i));
  return ct;
}

/** Builds a Message from raw octets; the one place that knows the parse state. */
class Parser {
 public:
  Parser(std::string raw, MessageLimits limits, MessageOptions options) : limits_(limits), options_(options) {
    msg_.raw_ = std::move(raw);
    raw_ = msg_.raw_;
  }

  Message run() {
    msg_.parts_.emplace_back();
    stack_.push_back(Frame{});
    // A line is handed on again after it ended a header block; each hand-over moves the
    // state forward, the bound only guards that promise.
    const size_t max_redispatch = std::min<size_t>(limits_.max_depth, 1u << 20) + 8;
    size_t redispatch = 0;
    while (pos_ < raw_.size()) {
      const Line line = line_at(raw_, pos_);
      if (!process(line) && ++redispatch < max_redispatch) continue;
      redispatch = 0;
      pos_ = line.next;
      if (line.has_lf) ++lf_;
    }
    while (!stack_.empty()) close_top(raw_.size());
    return std::move(msg_);
  }

 private:
  enum class State { Headers, Leaf, Multipart, Message };

  struct Frame {
    size_t part = 0;
    State state = State::Headers;
    bool digest_child = false;  // RFC 2046 §5.1.5: default type message/rfc822
    // While in Headers: the field being read (it may continue on folded lines).
    bool pending = false;
    size_t pending_begin = 0, pending_name_end = 0, pending_colon = 0, pending_end = 0, pending_next = 0;
    bool pending_junk = false;  // a line that is no field, kept (MessageOptions)
    size_t header_bytes = 0;
    bool seen_content_type = false;
    // The multipart boundary (first from the header, active once the body starts).
    std::string boundary;
    bool boundary_active = false;
    size_t child_count = 0;
    size_t body_lf = 0;  // line feeds before body_offset
  };

  // Returns false when the line must be looked at again in the new state.
  bool process(const Line& line) {
    const std::string_view text = raw_.substr(line.begin, line.content_end - line.begin);
    // RFC 2046 §5.1.1: a delimiter of any open multipart ends everything inside it;
    // the innermost is asked first, so a nested part reusing a boundary still nests.
    if (text.size() >= 2 && text[0] == '-' && text[1] == '-') {
      for (size_t k = stack_.size(); k-- > 0;) {
        if (!stack_[k].boundary_active) continue;
        const Delimiter d = match_delimiter(text, stack_[k].boundary, options_.exact_boundaries);
        if (d != Delimiter::None) {
          on_delimiter(k, d, line);
          return true;
        }
      }
    }
    if (stack_.back().state == State::Headers) return header_line(line, text);
    return true;
  }

  bool header_line(const Line& line, std::string_view text) {
    Frame& f = stack_.back();
    const size_t line_bytes = line.next - line.begin;
    if (text.empty()) {
      // RFC 5322 §2.1: the first empty line ends the header block and belongs to it.
      finish_pending(f);
      begin_body(line.next, lf_ + (line.has_lf ? 1 : 0), true);
      return true;
    }
    if (f.header_bytes + line_bytes > limits_.max_header_bytes) {
      finish_pending(f);
      msg_.truncated_ = true;
      begin_body(line.begin, lf_, false);
      return true;
    }
    if (is_wsp(text[0])) {
      if (f.pending) {
        f.pending_end = line.content_end;  // RFC 5322 §2.2.3 folding
        f.pending_next = line.next;
        f.header_bytes += line_bytes;
        return true;
      }
    } else {
      size_t name_end = 0, colon = 0;
      if (field_start(text, name_end, colon)) {
        finish_pending(f);
        if (total_headers_ >= limits_.max_headers) {
          msg_.truncated_ = true;
          begin_body(line.begin, lf_, false);
          return true;
        }
        f.pending = true;
        f.pending_junk = false;
        f.pending_begin = line.begin;
        f.pending_name_end = line.begin + name_end;
        f.pending_colon = line.begin + colon;
        f.pending_end = line.content_end;
        f.pending_next = line.next;
        f.header_bytes += line_bytes;
        return true;
      }
    }
    // Not a header line.
    finish_pending(f);
    if (options_.keep_junk_header_lines) {
      f.header_bytes += line_bytes;
      if (trim(text).empty()) return true;  // whitespace only: nothing to keep
      if (total_headers_ >= limits_.max_headers) {
        msg_.truncated_ = true;
        begin_body(line.begin, lf_, false);
        return true;
      }
      // Kept as a field named by what precedes its first colon (Dovecot's reading).
      const size_t colon = text.find(':');
      size_t name_end = colon == std::string_view::npos ? text.size() : colon;
      while (name_end > 0 && is_wsp(text[name_end - 1])) --name_end;
      f.pending = true;
      f.pending_junk = true;
      f.pending_begin = line.begin;
      f.pending_name_end = line.begin + name_end;
      f.pending_colon = colon == std::string_view::npos ? line.content_end : line.begin + colon;
      f.pending_end = line.content_end;
      f.pending_next = line.next;
      return true;
    }
    // The part's own first delimiter with the blank line left out: the body starts here.
    if (match_delimiter(text, f.boundary, options_.exact_boundaries) != Delimiter::None) {
      begin_body(line.begin, lf_, true);
      return false;
    }
    // A stray line between fields (an mbox "From " line, a fold that lost its
    // whitespace) is skipped when a field follows it, as other parsers do.
    if (line.next < raw_.size()) {
      const Line next = line_at(raw_, line.next);
      size_t name_end = 0, colon = 0;
      if (field_start(raw_.substr(next.begin, next.content_end - next.begin), name_end, colon)) {
        f.header_bytes += line_bytes;
        return true;
      }
    }
    // Otherwise it is the first body line of a part that lacks the blank line.
    begin_body(line.begin, lf_, true);
    return false;
  }

  void finish_pending(Frame& f) {
    if (!f.pending) return;
    f.pending = false;
    Header h;
    h.name = std::string(raw_.substr(f.pending_begin, f.pending_name_end - f.pending_begin));
    if (f.pending_junk) h.name = std::string(trim(h.name));
    const size_t value_begin = std::min(f.pending_colon + 1, f.pending_end);
    h.raw_value = std::string(raw_.substr(value_begin, f.pending_end - value_begin));
    h.raw_offset = f.pending_begin;
    h.raw_length = f.pending_next - f.pending_begin;
    const std::string unfolded = unfold(h.raw_value);
    h.value = decode_rfc2047(trim(unfolded));
    ++total_headers_;
    if (!f.seen_content_type && iequals(h.name, "content-type")) {
      f.seen_content_type = true;
      const ContentType ct = parse_content_type(unfolded);
      if (ct.type == "multipart") f.boundary = boundary_of(ct, options_.exact_boundaries);
    }
    msg_.parts_[f.part].headers.push_back(std::move(h));
  }

  // Ends the header block of the top frame at body_offset and enters its body.
  void begin_body(size_t body_offset, size_t body_lf, bool may_descend) {
    const size_t frame_index = stack_.size() - 1;
    const size_t index = stack_[frame_index].part;
    {
      Frame& f = stack_[frame_index];
      Part& p = msg_.parts_[index];
      p.header_length = body_offset - p.raw_offset;
      p.body_offset = body_offset;
      f.body_lf = body_lf;
      f.state = State::Leaf;
      f.boundary.clear();
      apply_mime_fields(index, f.digest_child);
    }
    if (!may_descend) return;
    const Part& p = msg_.parts_[index];
    if (p.is_multipart()) {
      std::string boundary = boundary_of(p.content_type, options_.exact_boundaries);
      if (boundary.empty()) return;  // no boundary: one opaque body
      if (p.depth >= limits_.max_depth) {
        msg_.truncated_ = true;
        return;
      }
      Frame& f = stack_[frame_index];
      f.state = State::Multipart;
      f.boundary = std::move(boundary);
      f.boundary_active = true;
    } else if (p.is_message() && (identity_encoding(p.transfer_encoding) || options_.parse_encoded_messages)) {
      // RFC 2046 §5.2.1: only 7bit, 8bit or binary message bodies are parsed; an encoded
      // one has no raw offsets to give.
      if (p.depth >= limits_.max_depth || msg_.parts_.size() >= limits_.max_parts) {
        msg_.truncated_ = true;
        return;
      }
      stack_[frame_index].state = State::Message;
      const size_t child = add_part(index, message_child_section(index), body_offset);
      Frame cf;
      cf.part = child;
      stack_.push_back(std::move(cf));
    }
  }

  void on_delimiter(size_t k, Delimiter d, const Line& line) {
    // RFC 2046 §5.1.1: the line end before a delimiter is part of the delimiter, when it
    // is a line end of the content the delimiter closes. The line end of the blank line
    // that ends a header, of a header line, or of a delimiter line right before stays
    // where it is (Dovecot and Cyrus count it so in BODYSTRUCTURE).
    size_t end = line.begin;
    const Frame& top = stack_.back();
    const bool own_line_end = top.state != State::Headers && line.begin != msg_.parts_[top.part].body_offset &&
                              line.begin != after_delimiter_;
    if (own_line_end && end > 0 && raw_[end - 1] == '\n') {
      --end;
      if (end > 0 && raw_[end - 1] == '\r') --end;
    }
    after_delimiter_ = line.next;
    while (stack_.size() > k + 1) close_top(end);
    Frame& mp = stack_[k];
    if (d == Delimiter::Close) {
      mp.boundary_active = false;  // the epilogue follows; ignored
      return;
    }
    if (msg_.parts_.size() >= limits_.max_parts) {
      msg_.truncated_ = true;
      return;
    }
    const size_t number = ++mp.child_count;
    const std::string& parent_section = msg_.parts_[mp.part].section;
    std::string section =
        parent_section.empty() ? std::to_string(number) : parent_section + "." + std::to_string(number);
    Frame cf;
    cf.digest_child = msg_.parts_[mp.part].content_type.subtype == "digest";
    cf.part = add_part(mp.part, std::move(section), line.next);
    stack_.push_back(std::move(cf));
  }

  void close_top(size_t end) {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    const size_t index = f.part;
    if (f.state == State::Headers) finish_pending(f);
    Part& p = msg_.parts_[index];
    // RFC 2046 §5.1.1 gives the line end before a delimiter to the delimiter, even when it
    // is the blank line that ended this part's header (or its parent's): the part then
    // ends before it, inside its parent.
    if (p.raw_offset > end) p.raw_offset = end;
    p.raw_length = end - p.raw_offset;
    if (f.state == State::Headers) {
      p.header_length = end - p.raw_offset;
      p.body_offset = end;
      p.body_length = 0;
      p.body_lines = 0;
      apply_mime_fields(index, f.digest_child);
      // A message part cut off after its header still encapsulates an (empty) message,
      // which IMAP BODYSTRUCTURE has to describe.
      const Part& q = msg_.parts_[index];
      if (q.is_message() && (identity_encoding(q.transfer_encoding) || options_.parse_encoded_messages)) {
        if (q.depth >= limits_.max_depth || msg_.parts_.size() >= limits_.max_parts) {
          msg_.truncated_ = true;
        } else {
          const size_t child = add_part(index, message_child_section(index), end);
          apply_mime_fields(child, false);
        }
      }
    } else if (p.body_offset > end) {
      p.body_offset = end;
      p.header_length = end - p.raw_offset;
      p.body_length = 0;
      p.body_lines = 0;
    } else {
      p.body_length = end - p.body_offset;
      p.body_lines = count_lines(f.body_lf, p.body_offset, end);
    }
  }

  // Line feeds in raw_[body_offset, end), the line count of IMAP BODYSTRUCTURE as Dovecot
  // and Cyrus report it. end lies within two octets of pos_, where the count is known.
  size_t count_lines(size_t body_lf, size_t body_offset, size_t end) const {
    if (end <= body_offset) return 0;
    size_t lf_end = lf_;
    for (size_t i = end; i < pos_; ++i) {
      if (raw_[i] == '\n') --lf_end;
    }
    for (size_t i = pos_; i < end; ++i) {
      if (raw_[i] == '\n') ++lf_end;
    }
    return lf_end - body_lf;
  }

  size_t add_part(size_t parent, std::string section, size_t raw_offset) {
    Part c;
    c.parent = static_cast<int>(parent);
    c.depth = msg_.parts_[parent].depth + 1;
    c.section = std::move(section);
    c.raw_offset = raw_offset;
    c.body_offset = raw_offset;
    msg_.parts_.push_back(std::move(c));
    const size_t index = msg_.parts_.size() - 1;
    msg_.parts_[parent].children.push_back(index);
    return index;
  }

  // RFC 3501 §6.4.5: the message inside message/rfc822 part n is addressed as n, with its
  // parts under n. Where the message/rfc822 entity is itself a whole message (the root,
  // or a message inside a message) its body is part 1 of it, so the inner one is n.1.
  std::string message_child_section(size_t index) const {
    const Part& m = msg_.parts_[index];
    const bool whole_message =
        m.parent < 0 || msg_.parts_[static_cast<size_t>(m.parent)].is_message();
    if (!whole_message) return m.section;
    return m.section.empty() ? "1" : m.section + ".1";
  }

  const Header* first_field(const Part& p, std::string_view name) const {
    for (const Header& h : p.headers) {
      if (iequals(h.name, name)) return &h;
    }
    return nullptr;
  }

  void apply_mime_fields(size_t index, bool digest_child) {
    Part& p = msg_.parts_[index];
    if (const Header* h = first_field(p, "Content-Type")) {
      p.content_type = parse_content_type(unfold(h->raw_value));
    } else if (digest_child) {
      p.content_type = ContentType{"message", "rfc822", {}};
    } else {
      p.content_type = parse_content_type("");
    }
    p.charset = lower(trim(find_param(p.content_type.params, "charset")));
    if (p.charset.empty() && p.content_type.type == "text") p.charset = "us-ascii";  // RFC 2046 §4.1.2

    p.transfer_encoding = "7bit";  // RFC 2045 §6.1
    if (const Header* h = first_field(p, "Content-Transfer-Encoding")) {
      const std::string v = unfold(h->raw_value);
      size_t i = skip_cfws(v, 0);
      while (i < v.size() && v[i] == '"') ++i;
      const std::string token = lower(read_token(v, i));
      if (!token.empty()) p.transfer_encoding = token;
    }
    if (const Header* h = first_field(p, "Content-Disposition")) {
      // RFC 2183 §2: disposition-type *(";" parameter)
      const std::string v = unfold(h->raw_value);
      size_t i = skip_cfws(v, 0);
      p.disposition = lower(read_token(v, i));
      p.disposition_params = parse_params(std::string_view(v).substr(i));
    }
    p.filename = std::string(find_param(p.disposition_params, "filename"));
    if (p.filename.empty()) p.filename = std::string(find_param(p.content_type.params, "name"));
    auto plain = [&](std::string_view name) {
      const Header* h = first_field(p, name);
      return h ? std::string(trim(unfold(h->raw_value))) : std::string();
    };
    p.content_id = plain("Content-ID");
    p.md5 = plain("Content-MD5");
    p.language = lower(plain("Content-Language"));
    p.location = plain("Content-Location");
    if (const Header* h = first_field(p, "Content-Description")) p.description = h->value;
  }

  MessageLimits limits_;
  MessageOptions options_;
  Message msg_{Message::Unparsed{}};
  std::string_view raw_;
  std::vector<Frame> stack_;
  size_t total_headers_ = 0;
  size_t after_delimiter_ = static_cast<size_t>(-1);  // the line after the last delimiter line
  size_t pos_ = 0;  // start of the current line
  size_t lf_ = 0;   // line feeds in raw_[0, pos_)
};

Message::Message() : Message(parse(std::string())) {}

Message Message::parse(std::string raw, Limits limits, Options options) {
  return Parser(std::move(raw), limits, options).run();
}

std::optional<std::string_view> Message::header(std::string_view name, size_t nth) const {
  for (const Header& h : headers()) {
    if (iequals(h.name, name) && nth-- == 0) return std::string_view(h.value);
  }
  return std::nullopt;
}

std::string Message::decoded_body(size_t part_index) const {
  if (part_index >= parts_.size()) return {};
  const Part& p = parts_[part_index];
  const std::string_view body = std::string_view(raw_).substr(p.body_offset, p.body_length);
  if (p.is_multipart()) return std::string(body);
  if (p.transfer_encoding == "base64") return decode_base64(body);
  if (p.transfer_encoding == "quoted-printable") return decode_quoted_printable(body);
  return std::string(body);
}

}  // namespace postern::mail
