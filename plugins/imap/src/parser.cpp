#include "parser.hpp"

#include "mutf7.hpp"
#include "response.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>

namespace postern::imap {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A tag: 1*<any ASTRING-CHAR except "+">.
bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  for (char c : t) {
    if (c == '+' || !(is_atom_char(c) || c == ']')) return false;
  }
  return true;
}

// The literal announced at the end of `line` (CRLF already removed): {n} or {n+}.
struct LiteralMark {
  uint64_t size = 0;
  bool sync = true;
};
std::optional<LiteralMark> literal_at_end(std::string_view line) {
  if (line.empty() || line.back() != '}') return std::nullopt;
  const size_t open = line.rfind('{');
  if (open == std::string_view::npos) return std::nullopt;
  std::string_view inner = line.substr(open + 1, line.size() - open - 2);
  LiteralMark m;
  if (!inner.empty() && inner.back() == '+') {
    m.sync = false;
    inner.remove_suffix(1);
  }
  if (inner.empty() || inner.size() > 19) return std::nullopt;
  for (char c : inner) {
    if (!is_digit(c)) return std::nullopt;
    m.size = m.size * 10 + static_cast<uint64_t>(c - '0');
  }
  return m;
}

}  // namespace

void CommandReader::clear() {
  in_.clear();
  pos_ = 0;
  cmd_.clear();
  text_size_ = 0;
  literal_total_ = 0;
  remaining_ = 0;
  state_ = State::Line;
}

void CommandReader::compact() {
  if (pos_ > 0 && (pos_ >= in_.size() || pos_ > 65536)) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
}

namespace {
std::string tag_from(std::string_view s) {
  const size_t sp = s.find(' ');
  std::string tag(s.substr(0, sp == std::string_view::npos ? std::min<size_t>(s.size(), 65) : sp));
  while (!tag.empty() && (tag.back() == '\r' || tag.back() == '\n')) tag.pop_back();
  return valid_tag(tag) ? tag : std::string("*");
}
}  // namespace

std::string CommandReader::tag_of_current() const { return tag_from(cmd_); }

bool CommandReader::is_append() const {
  const size_t sp = cmd_.find(' ');
  if (sp == std::string::npos) return false;
  return cmd_.size() >= sp + 8 && iequals(std::string_view(cmd_).substr(sp + 1, 7), "APPEND ");
}

CommandReader::Output CommandReader::next() {
  using Kind = Output::Kind;
  for (;;) {
    switch (state_) {
      case State::Literal:
      case State::DiscardLiteral: {
        const size_t avail = in_.size() - pos_;
        if (avail == 0 && remaining_ > 0) {
          compact();
          return {};
        }
        const size_t take = std::min(avail, remaining_);
        if (state_ == State::Literal) cmd_.append(in_, pos_, take);
        pos_ += take;
        remaining_ -= take;
        if (remaining_ > 0) {
          compact();
          return {};
        }
        // After a discarded literal the rest of that command line goes too.
        state_ = state_ == State::Literal ? State::Line : State::SkipLine;
        continue;
      }
      case State::SkipLine: {
        const size_t nl = in_.find('\n', pos_);
        if (nl == std::string::npos) {
          pos_ = in_.size();
          compact();
          return {};
        }
        pos_ = nl + 1;
        state_ = State::Line;
        cmd_.clear();
        text_size_ = literal_total_ = 0;
        continue;
      }
      case State::Line:
        break;
    }

    const size_t nl = in_.find('\n', pos_);
    if (nl == std::string::npos) {
      if (text_size_ + (in_.size() - pos_) > limits_.max_line) {
        // RFC 7162 §4 / RFC 2683 §3.2.1.5: refuse rather than buffer without bound.
        Output out{Kind::Error, ""};
        out.data = (line_mode_ ? std::string("*") : (cmd_.empty() ? tag_from(std::string_view(in_).substr(pos_)) : tag_of_current())) +
                   " BAD Command line too long\r\n";
        pos_ = in_.size();
        state_ = State::SkipLine;
        cmd_.clear();
        text_size_ = literal_total_ = 0;
        compact();
        return out;
      }
      compact();
      return {};
    }
    const size_t len = nl + 1 - pos_;
    if (text_size_ + len > limits_.max_line) {
      Output out{Kind::Error, ""};
      cmd_.append(in_, pos_, std::min<size_t>(len, 80));
      out.data = tag_of_current() + " BAD Command line too long\r\n";
      pos_ = nl + 1;
      cmd_.clear();
      text_size_ = literal_total_ = 0;
      compact();
      return out;
    }
    if (line_mode_) {
      std::string line = in_.substr(pos_, len);
      pos_ = nl + 1;
      compact();
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      return Output{Kind::Line, std::move(line)};
    }
    cmd_.append(in_, pos_, len);
    text_size_ += len;
    pos_ = nl + 1;
    std::string_view line(cmd_);
    line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const auto mark = literal_at_end(line);
    if (!mark) {
      Output out{Kind::Command, std::move(cmd_)};
      cmd_.clear();
      text_size_ = literal_total_ = 0;
      compact();
      return out;
    }
    const bool append = is_append();
    const uint64_t one_limit = append ? limits_.append_limit : limits_.max_literal;
    const uint64_t total_limit = append ? limits_.append_limit : limits_.max_command_literals;
    if (mark->size > one_limit || literal_total_ + mark->size > total_limit) {
      Output out{Kind::Error, ""};
      out.data = tag_of_current() +
                 (append ? " NO [TOOBIG] Message too large (limit " + std::to_string(limits_.append_limit) + " octets)\r\n"
                         : " BAD Literal too large (limit " + std::to_string(one_limit) + " octets)\r\n");
      cmd_.clear();
      text_size_ = literal_total_ = 0;
      if (!mark->sync) {
        // RFC 7888 §4: the client sends a non-synchronizing literal anyway; read and drop it.
        remaining_ = mark->size;
        state_ = State::DiscardLiteral;
      }
      compact();
      return out;
    }
    literal_total_ += mark->size;
    remaining_ = mark->size;
    state_ = State::Literal;
    if (mark->sync) {
      compact();
      return Output{Kind::Continuation, "+ Ready for literal data\r\n"};
    }
  }
}

}  // namespace postern::imap

namespace postern::imap {
namespace {

// Thrown inside the parser only; parse_command turns it into a ParseError.
struct SyntaxError {
  std::string text;
  bool bad = true;
};

[[noreturn]] void fail(std::string text, bool bad = true) { throw SyntaxError{std::move(text), bad}; }

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// The character-level reader over one command buffer.
class Tokenizer {
 public:
  Tokenizer(std::string_view s, const Limits& limits) : s_(s), limits_(limits) {}

  bool at_end() const {
    std::string_view rest = s_.substr(p_);
    return rest.empty() || rest == "\r\n" || rest == "\n";
  }
  char peek() const { return p_ < s_.size() ? s_[p_] : '\0'; }
  size_t pos() const { return p_; }
  bool consume(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  void expect(char c, const char* what) {
    if (!consume(c)) fail(std::string("Expected ") + what);
  }
  void sp() { expect(' ', "a space"); }
  void end() {
    if (!at_end()) fail("Unexpected extra arguments");
  }

  // Any run of atom characters (plus ']' when allowed: astring).
  std::string_view atom(bool allow_bracket = false) {
    const size_t b = p_;
    while (p_ < s_.size() && (is_atom_char(s_[p_]) || (allow_bracket && s_[p_] == ']'))) ++p_;
    if (p_ == b) fail("Expected an atom");
    return s_.substr(b, p_ - b);
  }
  // A word made of letters, digits and dots (FETCH item names, keywords).
  std::string word() {
    const size_t b = p_;
    while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) || s_[p_] == '.' || s_[p_] == '-'))
      ++p_;
    if (p_ == b) fail("Expected a keyword");
    return ascii_upper(s_.substr(b, p_ - b));
  }
  uint64_t number(uint64_t max = std::numeric_limits<uint32_t>::max()) {
    const size_t b = p_;
    uint64_t n = 0;
    while (p_ < s_.size() && is_digit(s_[p_])) {
      if (p_ - b >= 20) fail("Number too large");
      n = n * 10 + static_cast<uint64_t>(s_[p_] - '0');
      if (n > max) fail("Number out of range");
      ++p_;
    }
    if (p_ == b) fail("Expected a number");
    return n;
  }
  uint32_t nz_number() {
    const auto n = number();
    if (n == 0) fail("Expected a non-zero number");
    return static_cast<uint32_t>(n);
  }

  // quoted / literal
  std::string string() {
    if (peek() == '"') return quoted();
    if (peek() == '{') return std::string(literal());
    fail("Expected a string");
  }
  std::string quoted() {
    expect('"', "a quote");
    std::string out;
    for (;;) {
      if (p_ >= s_.size()) fail("Unterminated quoted string");
      const char c = s_[p_++];
      if (c == '"') return out;
      if (c == '\r' || c == '\n' || c == '\0') fail("Line break in a quoted string");
      if (c == '\\') {
        if (p_ >= s_.size() || (s_[p_] != '"' && s_[p_] != '\\')) fail("Invalid escape in a quoted string");
        out += s_[p_++];
        continue;
      }
      out += c;
    }
  }
  // The literal's octets (the reader guaranteed they are all present).
  std::string_view literal() {
    expect('{', "a literal");
    const uint64_t n = number(std::numeric_limits<uint64_t>::max() / 2);
    consume('+');
    expect('}', "'}'");
    consume('\r');
    expect('\n', "a line break after the literal size");
    if (s_.size() - p_ < n) fail("Truncated literal");
    std::string_view out = s_.substr(p_, n);
    p_ += n;
    if (out.find('\0') != std::string_view::npos) fail("NUL in a literal");
    return out;
  }
  size_t literal_offset(size_t& size) {
    expect('{', "a literal");
    const uint64_t n = number(std::numeric_limits<uint64_t>::max() / 2);
    consume('+');
    expect('}', "'}'");
    consume('\r');
    expect('\n', "a line break after the literal size");
    if (s_.size() - p_ < n) fail("Truncated literal");
    const size_t off = p_;
    size = n;
    p_ += n;
    return off;
  }
  std::string astring() {
    if (peek() == '"' || peek() == '{') return string();
    return std::string(atom(true));
  }
  std::optional<std::string> nstring() {
    if (peek() == '"' || peek() == '{') return string();
    const auto a = atom();
    if (!iequals(a, "NIL")) fail("Expected a string or NIL");
    return std::nullopt;
  }
  // list-mailbox: 1*list-char / string; list-char adds % * ] to atom chars.
  std::string list_mailbox() {
    if (peek() == '"' || peek() == '{') return string();
    const size_t b = p_;
    while (p_ < s_.size() && (is_atom_char(s_[p_]) || s_[p_] == '%' || s_[p_] == '*' || s_[p_] == ']')) ++p_;
    if (p_ == b) fail("Expected a mailbox pattern");
    return std::string(s_.substr(b, p_ - b));
  }

  SequenceSet sequence_set() {
    SequenceSet set;
    for (;;) {
      uint32_t lo = seq_number();
      uint32_t hi = lo;
      if (consume(':')) hi = seq_number();
      if (lo > hi) std::swap(lo, hi);
      if (set.ranges.size() >= limits_.max_ranges) fail("Too many ranges in the sequence set");
      set.ranges.emplace_back(lo, hi);
      if (!consume(',')) break;
    }
    return set;
  }
  uint32_t seq_number() {
    if (consume('*')) return std::numeric_limits<uint32_t>::max();
    if (!is_digit(peek())) fail("Invalid sequence set");
    return nz_number();
  }

  // date = date-text / DQUOTE date-text DQUOTE
  int64_t date() {
    std::string text;
    if (peek() == '"') {
      text = quoted();
    } else {
      const size_t b = p_;
      while (p_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[p_])) || s_[p_] == '-')) ++p_;
      text = std::string(s_.substr(b, p_ - b));
    }
    auto d = parse_date_text(text);
    if (!d) fail("Invalid date (expected d-Mon-yyyy)");
    return *d;
  }

  void enter() {
    if (++depth_ > limits_.max_depth) fail("Too deeply nested");
  }
  void leave() { --depth_; }

  std::string_view rest() const { return s_.substr(p_); }
  const Limits& limits() const { return limits_; }

 private:
  std::string_view s_;
  size_t p_ = 0;
  const Limits& limits_;
  size_t depth_ = 0;
};

std::string mailbox_arg(Tokenizer& t, bool allow_trailing_separator = false) {
  std::string wire = t.astring();
  // RFC 3501 §6.3.3: "CREATE foo/" creates foo (meant to hold children).
  if (allow_trailing_separator && wire.size() > 1 && wire.back() == '/') wire.pop_back();
  auto r = decode_mailbox_name(wire);
  if (auto* err = std::get_if<1>(&r)) fail(*err, false);
  return std::get<0>(std::move(r));
}

// flag (STORE, APPEND): system flags and keywords. \Recent and unknown \flags are refused.
void parse_flag(Tokenizer& t, Command& c) {
  if (t.consume('\\')) {
    const std::string name = ascii_upper(t.atom());
    if (name == "SEEN") c.flags |= POSTERN_FLAG_SEEN;
    else if (name == "ANSWERED") c.flags |= POSTERN_FLAG_ANSWERED;
    else if (name == "FLAGGED") c.flags |= POSTERN_FLAG_FLAGGED;
    else if (name == "DELETED") c.flags |= POSTERN_FLAG_DELETED;
    else if (name == "DRAFT") c.flags |= POSTERN_FLAG_DRAFT;
    else if (name == "RECENT") fail("\\Recent cannot be set by a client");
    else fail("Unknown system flag \\" + name);
    return;
  }
  const std::string_view kw = t.atom();
  if (kw.size() > 128) fail("Keyword too long (at most 128 octets)");
  for (const auto& k : c.keywords) {
    if (iequals(k, kw)) return;
  }
  if (c.keywords.size() >= 256) fail("Too many keywords");
  c.keywords.emplace_back(kw);
}

void parse_flag_list(Tokenizer& t, Command& c) {
  t.expect('(', "a flag list");
  if (t.consume(')')) return;
  for (;;) {
    parse_flag(t, c);
    if (t.consume(')')) return;
    t.sp();
  }
}

void parse_section(Tokenizer& t, FetchItem& item) {
  t.expect('[', "'['");
  Section& s = item.section;
  // section-part: nz-number *("." nz-number)
  while (is_digit(t.peek())) {
    if (s.part.size() >= 64) fail("Section part too deep");
    s.part.push_back(t.nz_number());
    if (!t.consume('.')) break;
    if (!is_digit(t.peek())) {
      // "1.HEADER": the dot belongs to the section text.
      break;
    }
  }
  if (t.peek() != ']') {
    const std::string text = t.word();
    if (text == "HEADER") {
      s.kind = Section::Kind::Header;
    } else if (text == "HEADER.FIELDS" || text == "HEADER.FIELDS.NOT") {
      s.kind = text == "HEADER.FIELDS" ? Section::Kind::HeaderFields : Section::Kind::HeaderFieldsNot;
      t.sp();
      t.expect('(', "a header field list");
      for (;;) {
        if (s.fields.size() >= 256) fail("Too many header fields");
        std::string f = t.astring();
        if (f.empty()) fail("Empty header field name");
        s.fields.push_back(std::move(f));
        if (t.consume(')')) break;
        t.sp();
      }
    } else if (text == "TEXT") {
      s.kind = Section::Kind::Text;
    } else if (text == "MIME" && !s.part.empty()) {
      s.kind = Section::Kind::Mime;
    } else {
      fail("Invalid section " + text);
    }
  }
  // Echo the spec in canonical form: part numbers, then upper-case section text.
  std::string spec;
  for (size_t i = 0; i < s.part.size(); ++i) {
    if (i) spec += '.';
    spec += std::to_string(s.part[i]);
  }
  const char* names[] = {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"};
  if (s.kind != Section::Kind::Full) {
    if (!spec.empty()) spec += '.';
    spec += names[static_cast<int>(s.kind)];
    if (s.kind == Section::Kind::HeaderFields || s.kind == Section::Kind::HeaderFieldsNot) {
      spec += " (";
      for (size_t i = 0; i < s.fields.size(); ++i) {
        if (i) spec += ' ';
        spec += astring(ascii_upper(s.fields[i]));
      }
      spec += ')';
    }
  }
  item.section_spec = std::move(spec);
  t.expect(']', "']'");
  if (t.consume('<')) {
    const auto origin = static_cast<uint32_t>(t.number());
    t.expect('.', "'.' in a partial range");
    const auto count = t.nz_number();
    t.expect('>', "'>'");
    item.partial = std::make_pair(origin, count);
  }
}

void add_item(Command& c, FetchItem::Kind k) {
  for (const auto& i : c.fetch) {
    if (i.kind == k && k != FetchItem::Kind::BodySection) return;
  }
  FetchItem item;
  item.kind = k;
  c.fetch.push_back(std::move(item));
}

void parse_fetch_att(Tokenizer& t, Command& c) {
  using K = FetchItem::Kind;
  const std::string name = t.word();
  if (name == "FLAGS") add_item(c, K::Flags);
  else if (name == "UID") add_item(c, K::Uid);
  else if (name == "RFC822.SIZE") add_item(c, K::Rfc822Size);
  else if (name == "INTERNALDATE") add_item(c, K::InternalDate);
  else if (name == "ENVELOPE") add_item(c, K::Envelope);
  else if (name == "BODYSTRUCTURE") add_item(c, K::BodyStructure);
  else if (name == "RFC822") add_item(c, K::Rfc822);
  else if (name == "RFC822.HEADER") add_item(c, K::Rfc822Header);
  else if (name == "RFC822.TEXT") add_item(c, K::Rfc822Text);
  else if (name == "MODSEQ") {
    add_item(c, K::ModSeq);
    c.condstore = true;
  } else if (name == "BODY" || name == "BODY.PEEK") {
    if (t.peek() != '[') {
      if (name == "BODY.PEEK") fail("BODY.PEEK needs a section");
      add_item(c, K::Body);
      return;
    }
    FetchItem item;
    item.kind = K::BodySection;
    item.peek = name == "BODY.PEEK";
    parse_section(t, item);
    if (c.fetch.size() >= 256) fail("Too many FETCH items");
    c.fetch.push_back(std::move(item));
  } else {
    fail("Unknown FETCH item " + name);
  }
}

void parse_fetch(Tokenizer& t, Command& c) {
  using K = FetchItem::Kind;
  t.sp();
  c.set = t.sequence_set();
  t.sp();
  if (t.consume('(')) {
    for (;;) {
      parse_fetch_att(t, c);
      if (t.consume(')')) break;
      t.sp();
    }
  } else {
    const std::string w = t.word();
    if (w == "ALL" || w == "FAST" || w == "FULL") {
      add_item(c, K::Flags);
      add_item(c, K::InternalDate);
      add_item(c, K::Rfc822Size);
      if (w != "FAST") add_item(c, K::Envelope);
      if (w == "FULL") add_item(c, K::Body);
    } else {
      if (w == "BODY" || w == "BODY.PEEK") {
        if (t.peek() != '[') {
          if (w == "BODY.PEEK") fail("BODY.PEEK needs a section");
          add_item(c, K::Body);
        } else {
          FetchItem item;
          item.kind = K::BodySection;
          item.peek = w == "BODY.PEEK";
          parse_section(t, item);
          c.fetch.push_back(std::move(item));
        }
      } else if (w == "FLAGS") add_item(c, K::Flags);
      else if (w == "UID") add_item(c, K::Uid);
      else if (w == "RFC822.SIZE") add_item(c, K::Rfc822Size);
      else if (w == "INTERNALDATE") add_item(c, K::InternalDate);
      else if (w == "ENVELOPE") add_item(c, K::Envelope);
      else if (w == "BODYSTRUCTURE") add_item(c, K::BodyStructure);
      else if (w == "RFC822") add_item(c, K::Rfc822);
      else if (w == "RFC822.HEADER") add_item(c, K::Rfc822Header);
      else if (w == "RFC822.TEXT") add_item(c, K::Rfc822Text);
      else if (w == "MODSEQ") {
        add_item(c, K::ModSeq);
        c.condstore = true;
      } else fail("Unknown FETCH item " + w);
    }
  }
  if (t.consume(' ')) {
    // RFC 7162 §3.1.4: FETCH modifiers.
    t.expect('(', "FETCH modifiers");
    for (;;) {
      const std::string m = t.word();
      if (m == "CHANGEDSINCE") {
        t.sp();
        c.changed_since = t.number(std::numeric_limits<int64_t>::max());
        c.condstore = true;
      } else {
        fail("Unknown FETCH modifier " + m);
      }
      if (t.consume(')')) break;
      t.sp();
    }
  }
  t.end();
}

SearchKey parse_search_key(Tokenizer& t, Command& c, size_t& count);

SearchKey text_key(SearchKey::Op op, Tokenizer& t) {
  SearchKey k;
  k.op = op;
  t.sp();
  k.text = t.astring();
  return k;
}

SearchKey parse_search_key(Tokenizer& t, Command& c, size_t& count) {
  using Op = SearchKey::Op;
  if (++count > t.limits().max_search_keys) fail("Too many search keys");
  SearchKey k;
  if (t.consume('(')) {
    t.enter();
    k.op = Op::And;
    for (;;) {
      k.children.push_back(parse_search_key(t, c, count));
      if (t.consume(')')) break;
      t.sp();
    }
    t.leave();
    return k;
  }
  if (std::isdigit(static_cast<unsigned char>(t.peek())) || t.peek() == '*') {
    k.op = Op::SequenceNumbers;
    k.set = t.sequence_set();
    return k;
  }
  const std::string name = ascii_upper(t.atom());
  static const std::pair<const char*, Op> kSimple[] = {
      {"ALL", Op::All},           {"ANSWERED", Op::Answered},     {"DELETED", Op::Deleted},
      {"DRAFT", Op::Draft},       {"FLAGGED", Op::Flagged},       {"NEW", Op::New},
      {"OLD", Op::Old},           {"RECENT", Op::Recent},         {"SEEN", Op::Seen},
      {"UNANSWERED", Op::Unanswered}, {"UNDELETED", Op::Undeleted}, {"UNDRAFT", Op::Undraft},
      {"UNFLAGGED", Op::Unflagged}, {"UNSEEN", Op::Unseen}};
  for (const auto& [n, op] : kSimple) {
    if (name == n) {
      k.op = op;
      return k;
    }
  }
  static const std::pair<const char*, Op> kText[] = {{"BCC", Op::Bcc},         {"BODY", Op::Body},
                                                     {"CC", Op::Cc},           {"FROM", Op::From},
                                                     {"SUBJECT", Op::Subject}, {"TEXT", Op::Text},
                                                     {"TO", Op::To}};
  for (const auto& [n, op] : kText) {
    if (name == n) return text_key(op, t);
  }
  static const std::pair<const char*, Op> kDate[] = {{"BEFORE", Op::Before},         {"ON", Op::On},
                                                     {"SINCE", Op::Since},           {"SENTBEFORE", Op::SentBefore},
                                                     {"SENTON", Op::SentOn},         {"SENTSINCE", Op::SentSince}};
  for (const auto& [n, op] : kDate) {
    if (name == n) {
      k.op = op;
      t.sp();
      k.date = t.date();
      return k;
    }
  }
  if (name == "KEYWORD" || name == "UNKEYWORD") {
    k.op = name == "KEYWORD" ? Op::Keyword : Op::Unkeyword;
    t.sp();
    k.text = std::string(t.atom());
    return k;
  }
  if (name == "HEADER") {
    k.op = Op::Header;
    t.sp();
    k.field = t.astring();
    t.sp();
    k.text = t.astring();
    return k;
  }
  if (name == "LARGER" || name == "SMALLER") {
    k.op = name == "LARGER" ? Op::Larger : Op::Smaller;
    t.sp();
    k.number = t.number(std::numeric_limits<int64_t>::max());
    return k;
  }
  if (name == "UID") {
    k.op = Op::Uid;
    t.sp();
    k.set = t.sequence_set();
    return k;
  }
  if (name == "NOT") {
    k.op = Op::Not;
    t.sp();
    t.enter();
    k.children.push_back(parse_search_key(t, c, count));
    t.leave();
    return k;
  }
  if (name == "OR") {
    k.op = Op::Or;
    t.enter();
    t.sp();
    k.children.push_back(parse_search_key(t, c, count));
    t.sp();
    k.children.push_back(parse_search_key(t, c, count));
    t.leave();
    return k;
  }
  if (name == "MODSEQ") {
    // RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
    k.op = Op::ModSeq;
    t.sp();
    if (t.peek() == '"') {
      t.quoted();
      t.sp();
      const std::string type = ascii_upper(t.atom());
      if (type != "PRIV" && type != "SHARED" && type != "ALL") fail("Invalid MODSEQ entry type");
      t.sp();
    }
    k.number = t.number(std::numeric_limits<int64_t>::max());
    c.search_modseq = true;
    c.condstore = true;
    return k;
  }
  fail("Unknown search key " + name);
}

void parse_search(Tokenizer& t, Command& c) {
  t.sp();
  size_t count = 0;
  c.search.op = SearchKey::Op::And;
  // CHARSET astring must come first.
  if (iequals(t.rest().substr(0, 8), "CHARSET ")) {
    t.atom();
    t.sp();
    const std::string cs = ascii_upper(t.astring());
    if (cs != "UTF-8" && cs != "US-ASCII") fail("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset " + cs, false);
    t.sp();
  }
  for (;;) {
    c.search.children.push_back(parse_search_key(t, c, count));
    if (t.at_end()) break;
    t.sp();
  }
}

void parse_store(Tokenizer& t, Command& c) {
  t.sp();
  c.set = t.sequence_set();
  t.sp();
  if (t.consume('(')) {
    const std::string m = t.word();
    if (m != "UNCHANGEDSINCE") fail("Unknown STORE modifier " + m);
    t.sp();
    c.unchanged_since = t.number(std::numeric_limits<int64_t>::max());
    c.condstore = true;
    t.expect(')', "')'");
    t.sp();
  }
  if (t.consume('+')) c.store_op = POSTERN_FLAGS_ADD;
  else if (t.consume('-')) c.store_op = POSTERN_FLAGS_REMOVE;
  else c.store_op = POSTERN_FLAGS_REPLACE;
  const std::string what = t.word();
  if (what == "FLAGS.SILENT") c.silent = true;
  else if (what != "FLAGS") fail("Expected FLAGS, +FLAGS or -FLAGS");
  t.sp();
  if (t.peek() == '(') {
    parse_flag_list(t, c);
  } else {
    for (;;) {
      parse_flag(t, c);
      if (t.at_end()) break;
      t.sp();
    }
  }
  t.end();
}

void parse_append(Tokenizer& t, Command& c) {
  t.sp();
  c.mailbox = mailbox_arg(t);
  t.sp();
  if (t.peek() == '(') {
    parse_flag_list(t, c);
    c.has_flag_list = true;
    t.sp();
  }
  if (t.peek() == '"') {
    c.date_time = t.quoted();
    t.sp();
  }
  if (t.peek() != '{') fail("APPEND needs the message as a literal");
  c.message_offset = t.literal_offset(c.message_size);
  t.end();
}

void parse_status(Tokenizer& t, Command& c) {
  t.sp();
  c.mailbox = mailbox_arg(t);
  t.sp();
  t.expect('(', "a list of status items");
  for (;;) {
    const std::string item = t.word();
    if (item != "MESSAGES" && item != "RECENT" && item != "UIDNEXT" && item != "UIDVALIDITY" && item != "UNSEEN" &&
        item != "HIGHESTMODSEQ" && item != "SIZE")
      fail("Unknown STATUS item " + item);
    if (item == "HIGHESTMODSEQ") c.condstore = true;
    if (std::find(c.items.begin(), c.items.end(), item) == c.items.end()) c.items.push_back(item);
    if (t.consume(')')) break;
    t.sp();
  }
  t.end();
}

void parse_id(Tokenizer& t, Command& c) {
  t.sp();
  if (t.peek() != '(') {
    if (!iequals(t.atom(), "NIL")) fail("ID expects a list or NIL");
    t.end();
    return;
  }
  t.expect('(', "'('");
  if (t.consume(')')) {
    t.end();
    return;
  }
  for (;;) {
    std::string field = t.string();
    t.sp();
    auto value = t.nstring();
    // RFC 2971 §3.3: at most 30 pairs, fields at most 30 octets, values at most 1024.
    if (c.id_params.size() >= 30) fail("Too many ID fields (at most 30)");
    if (field.size() > 30) fail("ID field name too long");
    if (value && value->size() > 1024) fail("ID value too long");
    c.id_params.emplace_back(std::move(field), std::move(value));
    if (t.consume(')')) break;
    t.sp();
  }
  t.end();
}

}  // namespace

std::optional<int64_t> parse_date_text(std::string_view text) {
  // d-Mon-yyyy with a 1- or 2-digit day.
  const size_t d1 = text.find('-');
  if (d1 == std::string_view::npos || d1 == 0 || d1 > 2) return std::nullopt;
  unsigned day = 0;
  for (size_t i = 0; i < d1; ++i) {
    if (!is_digit(text[i])) return std::nullopt;
    day = day * 10 + static_cast<unsigned>(text[i] - '0');
  }
  if (text.size() != d1 + 9 || text[d1 + 4] != '-') return std::nullopt;
  const std::string_view mon = text.substr(d1 + 1, 3);
  unsigned month = 0;
  for (unsigned m = 0; m < 12; ++m) {
    if (iequals(kMonths[m], mon)) month = m + 1;
  }
  if (month == 0) return std::nullopt;
  int64_t year = 0;
  for (size_t i = d1 + 5; i < text.size(); ++i) {
    if (!is_digit(text[i])) return std::nullopt;
    year = year * 10 + (text[i] - '0');
  }
  static const unsigned kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (day == 0 || day > kDays[month - 1]) return std::nullopt;
  return days_from_civil(year, month, day) * 86400;
}

std::variant<std::string, std::string> decode_mailbox_name(std::string_view wire) {
  using R = std::variant<std::string, std::string>;
  if (iequals(wire, "INBOX")) return R(std::in_place_index<0>, "INBOX");
  if (wire.empty()) return R(std::in_place_index<1>, "Empty mailbox name");
  if (wire.size() > 1000) return R(std::in_place_index<1>, "Mailbox name too long");
  auto utf8 = mutf7_decode(wire);
  if (!utf8) return R(std::in_place_index<1>, "Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)");
  std::string& name = *utf8;
  if (name.front() == '/' || name.back() == '/')
    return R(std::in_place_index<1>, "Mailbox name may not begin or end with the separator '/'");
  size_t start = 0;
  for (;;) {
    const size_t slash = name.find('/', start);
    const std::string_view level = std::string_view(name).substr(start, slash == std::string::npos ? std::string::npos
                                                                                                   : slash - start);
    if (level.empty()) return R(std::in_place_index<1>, "Mailbox name has an empty level ('//')");
    if (level == "." || level == "..") return R(std::in_place_index<1>, "Mailbox name may not contain '.' or '..' levels");
    if (level.size() > 255) return R(std::in_place_index<1>, "Mailbox name level too long");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return R(std::in_place_index<1>, "Mailbox name contains a control character");
  }
  // "inbox/x": the INBOX level is case-insensitive too.
  if (name.size() > 6 && iequals(std::string_view(name).substr(0, 6), "INBOX/")) name.replace(0, 5, "INBOX");
  return R(std::in_place_index<0>, std::move(name));
}

}  // namespace postern::imap

namespace postern::imap {

std::variant<Command, ParseError> parse_command(std::string buffer, const Limits& limits) {
  Command c;
  c.buffer = std::move(buffer);
  Tokenizer t(c.buffer, limits);
  if (t.at_end()) return ParseError{"*", true, "Empty command line"};
  {
    const size_t sp = c.buffer.find(' ');
    std::string_view tag = std::string_view(c.buffer).substr(0, sp);
    if (sp == std::string::npos || !valid_tag(tag)) {
      return ParseError{"*", true, sp == std::string::npos ? "Missing command" : "Invalid tag"};
    }
    c.tag = std::string(tag);
  }
  try {
    t.atom(true);  // the tag
    t.sp();
    c.name = ascii_upper(t.atom());
    if (c.name == "UID") {
      c.uid = true;
      t.sp();
      c.name = ascii_upper(t.atom());
      if (c.name != "FETCH" && c.name != "STORE" && c.name != "SEARCH" && c.name != "COPY" && c.name != "MOVE" &&
          c.name != "EXPUNGE")
        fail("Unknown UID command " + c.name);
    }
    const std::string& n = c.name;
    if (n == "CAPABILITY" || n == "NOOP" || n == "LOGOUT" || n == "STARTTLS" || n == "CHECK" || n == "CLOSE" ||
        n == "UNSELECT" || n == "NAMESPACE" || n == "IDLE" || (n == "EXPUNGE" && !c.uid)) {
      t.end();
    } else if (n == "LOGIN") {
      t.sp();
      c.arg1 = t.astring();
      t.sp();
      c.arg2 = t.astring();
      t.end();
    } else if (n == "AUTHENTICATE") {
      t.sp();
      c.arg1 = ascii_upper(t.atom());
      if (t.consume(' ')) c.initial_response = std::string(t.atom());
      t.end();
    } else if (n == "SELECT" || n == "EXAMINE") {
      t.sp();
      c.mailbox = mailbox_arg(t);
      if (t.consume(' ')) {
        t.expect('(', "SELECT parameters");
        for (;;) {
          const std::string p = t.word();
          if (p != "CONDSTORE") fail("Unknown SELECT parameter " + p);
          c.condstore = true;
          if (t.consume(')')) break;
          t.sp();
        }
      }
      t.end();
    } else if (n == "CREATE") {
      t.sp();
      c.mailbox = mailbox_arg(t, true);
      if (t.consume(' ')) {
        // RFC 6154 §3: CREATE name (USE (\Sent))
        t.expect('(', "CREATE parameters");
        if (t.word() != "USE") fail("Unknown CREATE parameter");
        t.sp();
        t.expect('(', "a list of special uses");
        t.expect('\\', "a special-use attribute");
        const std::string use = ascii_upper(t.atom());
        static const char* kUses[] = {"ALL", "ARCHIVE", "DRAFTS", "FLAGGED", "JUNK", "SENT", "TRASH"};
        std::string canonical;
        for (const char* u : kUses) {
          if (use == u) {
            canonical = std::string("\\") + u[0];
            for (const char* q = u + 1; *q; ++q) canonical += static_cast<char>(std::tolower(*q));
          }
        }
        if (canonical.empty()) fail("[USEATTR] Unknown special-use attribute", false);
        c.special_use = canonical;
        if (t.peek() == ' ') fail("[USEATTR] Only one special-use attribute per mailbox", false);
        t.expect(')', "')'");
        t.expect(')', "')'");
      }
      t.end();
    } else if (n == "DELETE" || n == "SUBSCRIBE" || n == "UNSUBSCRIBE") {
      t.sp();
      c.mailbox = mailbox_arg(t);
      t.end();
    } else if (n == "RENAME") {
      t.sp();
      c.mailbox = mailbox_arg(t);
      t.sp();
      c.mailbox2 = mailbox_arg(t);
      t.end();
    } else if (n == "LIST" || n == "LSUB") {
      t.sp();
      c.arg1 = t.astring();
      t.sp();
      c.arg2 = t.list_mailbox();
      t.end();
    } else if (n == "STATUS") {
      parse_status(t, c);
    } else if (n == "APPEND") {
      parse_append(t, c);
    } else if (n == "FETCH") {
      parse_fetch(t, c);
    } else if (n == "STORE") {
      parse_store(t, c);
    } else if (n == "SEARCH") {
      parse_search(t, c);
    } else if (n == "COPY" || n == "MOVE") {
      t.sp();
      c.set = t.sequence_set();
      t.sp();
      c.mailbox = mailbox_arg(t);
      t.end();
    } else if (n == "EXPUNGE") {  // UID EXPUNGE (RFC 4315)
      t.sp();
      c.set = t.sequence_set();
      t.end();
    } else if (n == "ENABLE") {
      do {
        t.sp();
        c.items.push_back(ascii_upper(t.atom()));
        if (c.items.size() > 64) fail("Too many capabilities");
      } while (!t.at_end());
    } else if (n == "ID") {
      parse_id(t, c);
    } else {
      fail("Unknown command " + n.substr(0, 64));
    }
  } catch (const SyntaxError& e) {
    return ParseError{c.tag, e.bad, e.text};
  }
  return c;
}

}  // namespace postern::imap
