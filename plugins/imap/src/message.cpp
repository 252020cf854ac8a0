// The message side of plugins/imap: IMAP's view of the mail library's MIME tree,
// ENVELOPE, BODY[STRUCTURE], BODY[section] and dates (see message.hpp for the design).
#include "message.hpp"

#include <postern/mail/address.hpp>
#include <postern/mail/ascii.hpp>
#include <postern/mail/charset.hpp>
#include <postern/mail/codec.hpp>
#include <postern/mail/mime.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>

namespace postern::imap {
namespace {

using mail::iequals;
using mail::trim;

std::string upper(std::string_view s) { return mail::to_upper(s); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

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

using Params = std::vector<std::pair<std::string, std::string>>;

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// A field value: unfolded (RFC 5322 §2.2.3), surrounding whitespace removed, encoded words kept.
std::string field_value(const mail::Header& h) { return std::string(trim(mail::unfold(h.raw_value))); }

const mail::Header* first_field(const std::vector<mail::Header>& headers, std::string_view name) {
  for (const mail::Header& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

// The parameters of a Content-Type or Content-Disposition as looked up (UTF-8 where the
// charset is known) and as BODYSTRUCTURE sends them (see DESIGN).
void add_params(const std::vector<mail::RawParam>& raw, Params& decoded, Params& wire) {
  for (const mail::RawParam& r : raw) {
    if (!r.extended) {
      decoded.emplace_back(r.name, r.value);
      wire.emplace_back(r.name, r.value);
      continue;
    }
    std::string utf8;
    const bool known = charset_to_utf8(r.octets, r.charset, utf8);
    decoded.emplace_back(r.name, known ? utf8 : r.octets);
    if (known && is_ascii(utf8)) {
      wire.emplace_back(r.name, std::move(utf8));
    } else {
      wire.emplace_back(r.name + "*", r.value);
    }
  }
}

void set_opaque(MimePart& part) {
  part.type = "application";
  part.subtype = "octet-stream";
  part.params.clear();
  part.params_wire.clear();
  part.children.clear();
}

// IMAP's view of mail part `index` and, below it, of its children.
void build_view(const mail::Message& m, size_t index, bool bare_lf, bool digest_child, MimePart& part) {
  const mail::Part& p = m.parts()[index];
  part.index = index;
  part.header_begin = p.raw_offset;
  part.header_end = part.body_begin = p.body_offset;
  part.body_end = p.body_offset + p.body_length;

  std::optional<mail::MediaType> media;
  if (const mail::Header* h = first_field(p.headers, "content-type")) {
    media = mail::parse_media_type(field_value(*h));
    if (!media) {
      // RFC 2045 §5.2: a syntactically invalid Content-Type means text/plain; charset=us-ascii.
      media = mail::MediaType{"text", "plain", {}};
      media->params.push_back(mail::RawParam{"charset", false, "us-ascii", {}, {}, {}});
    }
  } else if (digest_child) {
    // RFC 2046 §5.1.5: the default type in multipart/digest is message/rfc822.
    media = mail::MediaType{"message", "rfc822", {}};
  } else {
    media = mail::MediaType{"text", "plain", {}};
    media->params.push_back(mail::RawParam{"charset", false, "us-ascii", {}, {}, {}});
  }
  part.type = std::move(media->type);
  part.subtype = std::move(media->subtype);
  add_params(media->params, part.params, part.params_wire);
  part.encoding = p.transfer_encoding;
  part.id = p.content_id;
  part.md5 = p.md5;
  if (const mail::Header* h = first_field(p.headers, "content-description")) part.description = field_value(*h);
  if (const mail::Header* h = first_field(p.headers, "content-disposition")) {
    mail::RawDisposition d = mail::parse_raw_disposition(field_value(*h));
    part.disposition = std::move(d.type);
    add_params(d.params, part.disposition_params, part.disposition_params_wire);
  }
  if (const mail::Header* h = first_field(p.headers, "content-language")) {
    part.language = mail::parse_content_language(field_value(*h));
  }
  // RFC 2557 §4.4.1: a folded URI is unfolded by removing the whitespace too.
  part.location = p.location;
  part.location.erase(std::remove_if(part.location.begin(), part.location.end(), is_space), part.location.end());

  const std::string_view body = m.raw().substr(p.body_offset, p.body_length);
  part.size = bare_lf ? crlf_size(body) : body.size();
  if (part.type == "text" || part.is_message()) part.lines = p.body_lines;

  if ((part.is_multipart() || part.is_message()) && p.depth >= static_cast<unsigned>(kMaxMimeDepth)) {
    set_opaque(part);
    return;
  }
  if (!part.is_multipart() && !part.is_message()) return;
  const bool digest = part.is_multipart() && part.subtype == "digest";
  part.children.reserve(p.children.size());
  for (size_t c : p.children) {
    part.children.emplace_back();
    build_view(m, c, bare_lf, digest, part.children.back());
  }
}

// ---------------------------------------------------------------- ENVELOPE (RFC 3501 §7.4.2)

void append_addresses(std::string& out, const std::optional<std::string>& value) {
  if (!value) {
    out += "NIL";
    return;
  }
  const std::vector<mail::Address> list = mail::parse_address_list(*value);
  if (list.empty()) {
    out += "NIL";
    return;
  }
  out += '(';
  for (const mail::Address& a : list) {
    switch (a.kind) {
      case mail::Address::Kind::GroupBegin:
        out += "(NIL NIL " + quote(a.display_name.value_or("")) + " NIL)";
        break;
      case mail::Address::Kind::GroupEnd:
        out += "(NIL NIL NIL NIL)";
        break;
      case mail::Address::Kind::Mailbox:
        out += '(';
        out += nquote(a.display_name);
        out += ' ';
        out += a.route.empty() ? std::string("NIL") : quote(a.route);
        out += ' ';
        out += quote(a.local_part.empty() ? std::string_view("MISSING_MAILBOX") : std::string_view(a.local_part));
        out += ' ';
        out += quote(a.domain.empty() ? std::string_view("MISSING_DOMAIN") : std::string_view(a.domain));
        out += ')';
        break;
    }
  }
  out += ')';
}

std::optional<std::string> header_of(const std::vector<mail::Header>& headers, std::string_view name) {
  if (const mail::Header* h = first_field(headers, name)) return field_value(*h);
  return std::nullopt;
}

// All fields `name`, their values joined by ", " (RFC 5322 allows one To/Cc/...; a
// message with several gets the union, as in Dovecot).
std::optional<std::string> address_header(const std::vector<mail::Header>& headers, std::string_view name) {
  std::optional<std::string> out;
  for (const mail::Header& h : headers) {
    if (!iequals(h.name, name)) continue;
    if (out) {
      *out += ", ";
      *out += field_value(h);
    } else {
      out = field_value(h);
    }
  }
  return out;
}

void append_envelope(std::string& out, const std::vector<mail::Header>& headers) {
  auto from = address_header(headers, "from");
  auto sender = address_header(headers, "sender");
  auto reply_to = address_header(headers, "reply-to");
  // RFC 3501 §7.4.2: absent or empty Sender/Reply-To take the value of From.
  auto empty_list = [](const std::optional<std::string>& v) { return !v || mail::parse_address_list(*v).empty(); };
  if (empty_list(sender)) sender = from;
  if (empty_list(reply_to)) reply_to = from;
  out += '(';
  out += nquote(header_of(headers, "date"));
  out += ' ';
  out += nquote(header_of(headers, "subject"));
  out += ' ';
  append_addresses(out, from);
  out += ' ';
  append_addresses(out, sender);
  out += ' ';
  append_addresses(out, reply_to);
  out += ' ';
  append_addresses(out, address_header(headers, "to"));
  out += ' ';
  append_addresses(out, address_header(headers, "cc"));
  out += ' ';
  append_addresses(out, address_header(headers, "bcc"));
  out += ' ';
  out += nquote(header_of(headers, "in-reply-to"));
  out += ' ';
  out += nquote(header_of(headers, "message-id"));
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

void append_body(std::string& out, const mail::Message& m, const MimePart& p, bool extended) {
  out += '(';
  if (p.is_multipart()) {
    if (p.children.empty()) {
      out += extended ? R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL))"
                      : R"(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0))";
    }
    for (const MimePart& c : p.children) append_body(out, m, c, extended);
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
    append_envelope(out, m.parts()[inner.index].headers);
    out += ' ';
    append_body(out, m, inner, extended);
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

std::string decoded_text(const ParsedMessage& m, const MimePart& p) {
  const std::string bytes = m.mime().decoded_body(p.index);
  const std::string* cs = p.param("charset");
  std::string out;
  charset_to_utf8(bytes, cs != nullptr ? std::string_view(*cs) : std::string_view("us-ascii"), out);
  return out;
}

// ---------------------------------------------------------------- public: ParsedMessage

std::shared_ptr<const ParsedMessage> ParsedMessage::parse(std::shared_ptr<const std::string> raw) {
  auto m = std::make_shared<ParsedMessage>();
  mail::Message::Limits limits;
  limits.max_depth = static_cast<size_t>(kMaxMimeDepth);
  limits.max_parts = kMaxMimeParts;
  // Header blocks are as long as the message makes them (the message size is bounded).
  limits.max_headers = static_cast<size_t>(-1);
  limits.max_header_bytes = static_cast<size_t>(-1);
  mail::Message::Options options;
  options.keep_junk_header_lines = true;
  options.parse_encoded_messages = true;
  options.exact_boundaries = true;
  m->mime_ = mail::Message::parse(raw ? std::string(*raw) : std::string(), limits, options);
  const std::string_view octets = m->mime_.raw();
  build_view(m->mime_, 0, crlf_size(octets) != octets.size(), false, m->root_);
  return m;
}

std::string_view ParsedMessage::header_block(const MimePart& p) const {
  return raw().substr(p.header_begin, p.header_end - p.header_begin);
}

std::string_view ParsedMessage::body(const MimePart& p) const { return raw().substr(p.body_begin, p.body_end - p.body_begin); }

std::optional<std::string> ParsedMessage::header(std::string_view name) const { return header_of(mime_.headers(), name); }

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
  append_envelope(out, m.mime().headers());
  return out;
}

std::string body_structure(const ParsedMessage& m, bool extended) {
  std::string out;
  append_body(out, m.mime(), m.root(), extended);
  return out;
}

namespace {

std::string header_fields_text(const ParsedMessage& m, const MimePart& msg, const std::vector<std::string>& names,
                               bool exclude) {
  const std::string_view block = m.header_block(msg);
  std::string out;
  for (const mail::Header& f : m.headers(msg)) {
    bool listed = std::any_of(names.begin(), names.end(), [&](const std::string& n) { return iequals(n, f.name); });
    if (listed != exclude) {
      const std::string_view raw = m.raw().substr(f.raw_offset, f.raw_length);
      out += raw;
      if (raw.empty() || raw.back() != '\n') out += "\r\n";  // a last field without line end
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
      return header_fields_text(m, *msg, s.fields, false);
    case Section::Kind::HeaderFieldsNot:
      return header_fields_text(m, *msg, s.fields, true);
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
  i = mail::skip_cfws(v, i);
  if (i < v.size() && ((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z'))) {
    while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
    i = mail::skip_cfws(v, i);
    if (i < v.size() && v[i] == ',') ++i;
    i = mail::skip_cfws(v, i);
  }
  auto d = read_number(v, i, 1, 2);
  if (!d) return std::nullopt;
  i = mail::skip_cfws(v, i);
  if (i < v.size() && v[i] == '-') ++i;  // "13-Feb-2023" seen in the wild
  size_t ms = i;
  while (i < v.size() && std::isalpha(static_cast<unsigned char>(v[i]))) ++i;
  int m = month_number(std::string_view(v).substr(ms, i - ms));
  if (m == 0) return std::nullopt;
  i = mail::skip_cfws(v, i);
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
