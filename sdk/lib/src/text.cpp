// Text extraction for content filters: the text parts of a message as UTF-8, and HTML
// reduced to text.
#include "postern/mail/text.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "postern/mail/ascii.hpp"
#include "postern/mail/charset.hpp"

namespace postern::mail {
namespace {

constexpr bool is_html_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

constexpr bool is_alnum(char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

// Cuts `s` to at most `max` octets without splitting a UTF-8 sequence.
void cut_utf8(std::string& s, size_t max) {
  if (s.size() <= max) return;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
}

struct Entity {
  std::string_view name;
  uint32_t cp;
};

// The references mail actually carries (HTML §13.5 has 2231; these cover Latin-1 text,
// typography and the usual symbols). Sorted by name for the binary search.
constexpr Entity kEntities[] = {
    {"AElig", 0xC6},   {"Aacute", 0xC1}, {"Acirc", 0xC2},  {"Agrave", 0xC0}, {"Aring", 0xC5},
    {"Atilde", 0xC3},  {"Auml", 0xC4},   {"Ccedil", 0xC7}, {"Eacute", 0xC9}, {"Ecirc", 0xCA},
    {"Egrave", 0xC8},  {"Euml", 0xCB},   {"Iacute", 0xCD}, {"Icirc", 0xCE},  {"Iuml", 0xCF},
    {"Ntilde", 0xD1},  {"Oacute", 0xD3}, {"Ocirc", 0xD4},  {"Ograve", 0xD2}, {"Oslash", 0xD8},
    {"Otilde", 0xD5},  {"Ouml", 0xD6},   {"Uacute", 0xDA}, {"Ucirc", 0xDB},  {"Ugrave", 0xD9},
    {"Uuml", 0xDC},    {"Yacute", 0xDD}, {"aacute", 0xE1}, {"acirc", 0xE2},  {"acute", 0xB4},
    {"aelig", 0xE6},   {"agrave", 0xE0}, {"amp", 0x26},    {"apos", 0x27},   {"aring", 0xE5},
    {"atilde", 0xE3},  {"auml", 0xE4},   {"bdquo", 0x201E}, {"brvbar", 0xA6}, {"bull", 0x2022},
    {"ccedil", 0xE7},  {"cedil", 0xB8},  {"cent", 0xA2},   {"copy", 0xA9},   {"curren", 0xA4},
    {"dagger", 0x2020}, {"deg", 0xB0},   {"divide", 0xF7}, {"eacute", 0xE9}, {"ecirc", 0xEA},
    {"egrave", 0xE8},  {"emsp", 0x2003}, {"ensp", 0x2002}, {"eth", 0xF0},    {"euml", 0xEB},
    {"euro", 0x20AC},  {"frac12", 0xBD}, {"frac14", 0xBC}, {"frac34", 0xBE}, {"gt", 0x3E},
    {"hellip", 0x2026}, {"iacute", 0xED}, {"icirc", 0xEE}, {"iexcl", 0xA1},  {"igrave", 0xEC},
    {"iquest", 0xBF},  {"iuml", 0xEF},   {"laquo", 0xAB},  {"ldquo", 0x201C}, {"lsaquo", 0x2039},
    {"lsquo", 0x2018}, {"lt", 0x3C},     {"macr", 0xAF},   {"mdash", 0x2014}, {"micro", 0xB5},
    {"middot", 0xB7},  {"nbsp", 0xA0},   {"ndash", 0x2013}, {"not", 0xAC},   {"ntilde", 0xF1},
    {"oacute", 0xF3},  {"ocirc", 0xF4},  {"ograve", 0xF2}, {"ordf", 0xAA},   {"ordm", 0xBA},
    {"oslash", 0xF8},  {"otilde", 0xF5}, {"ouml", 0xF6},   {"para", 0xB6},   {"permil", 0x2030},
    {"plusmn", 0xB1},  {"pound", 0xA3},  {"quot", 0x22},   {"raquo", 0xBB},  {"rdquo", 0x201D},
    {"reg", 0xAE},     {"rsaquo", 0x203A}, {"rsquo", 0x2019}, {"sbquo", 0x201A}, {"sect", 0xA7},
    {"shy", 0xAD},     {"sup1", 0xB9},   {"sup2", 0xB2},   {"sup3", 0xB3},   {"szlig", 0xDF},
    {"thinsp", 0x2009}, {"thorn", 0xFE}, {"times", 0xD7},  {"trade", 0x2122}, {"uacute", 0xFA},
    {"ucirc", 0xFB},   {"ugrave", 0xF9}, {"uml", 0xA8},    {"uuml", 0xFC},   {"yacute", 0xFD},
    {"yen", 0xA5},     {"yuml", 0xFF},   {"zwj", 0x200D},  {"zwnj", 0x200C},
};

static_assert(std::is_sorted(std::begin(kEntities), std::end(kEntities),
                             [](const Entity& a, const Entity& b) { return a.name < b.name; }));

// Legacy references a browser also takes without the ';' (HTML §13.5, the common ones).
bool legacy_without_semicolon(std::string_view name) {
  return name == "amp" || name == "lt" || name == "gt" || name == "quot" || name == "nbsp" || name == "copy" ||
         name == "reg";
}

// HTML §13.2.5.80: numeric references 0x80-0x9F mean windows-1252.
constexpr uint32_t kC1[32] = {0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                              0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,   0x017D, 0x8F,
                              0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                              0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D,   0x017E, 0x0178};

// Decodes the character reference at s[i] == '&'; returns its code point and sets `end`,
// or returns 0 when there is none (the '&' is then text).
uint32_t read_reference(std::string_view s, size_t i, size_t& end) {
  size_t j = i + 1;
  if (j < s.size() && s[j] == '#') {
    ++j;
    const bool hex = j < s.size() && (s[j] == 'x' || s[j] == 'X');
    if (hex) ++j;
    const size_t digits = j;
    uint32_t cp = 0;
    while (j < s.size()) {
      const char c = s[j];
      int v = -1;
      if (c >= '0' && c <= '9') v = c - '0';
      if (hex && c >= 'a' && c <= 'f') v = c - 'a' + 10;
      if (hex && c >= 'A' && c <= 'F') v = c - 'A' + 10;
      if (v < 0) break;
      if (cp <= 0x10FFFF) cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(v);
      ++j;
    }
    if (j == digits) return 0;
    if (j < s.size() && s[j] == ';') ++j;
    end = j;
    if (cp >= 0x80 && cp <= 0x9F) return kC1[cp - 0x80];
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
    return cp;
  }
  while (j < s.size() && j - i <= 10 && is_alnum(s[j])) ++j;
  const std::string_view name = s.substr(i + 1, j - i - 1);
  const bool semicolon = j < s.size() && s[j] == ';';
  if (!semicolon && !legacy_without_semicolon(name)) return 0;
  const auto* it = std::lower_bound(std::begin(kEntities), std::end(kEntities), name,
                                    [](const Entity& e, std::string_view n) { return e.name < n; });
  if (it == std::end(kEntities) || it->name != name) return 0;
  end = semicolon ? j + 1 : j;
  return it->cp;
}

enum class Block { None, Cell, Line, Paragraph };

Block block_of(std::string_view tag) {
  static constexpr std::string_view kParagraph[] = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                                                    "table", "ul", "ol", "dl", "pre", "hr"};
  static constexpr std::string_view kLine[] = {"br", "div", "li", "tr", "dt", "dd", "title", "section",
                                               "article", "header", "footer", "nav", "aside", "form",
                                               "fieldset", "address", "figure", "figcaption", "main",
                                               "center", "option", "caption", "body", "html", "head"};
  for (std::string_view t : kParagraph) {
    if (tag == t) return Block::Paragraph;
  }
  for (std::string_view t : kLine) {
    if (tag == t) return Block::Line;
  }
  if (tag == "td" || tag == "th") return Block::Cell;
  return Block::None;
}

// Writes text with HTML's whitespace rules, capped at max octets.
class TextWriter {
 public:
  explicit TextWriter(size_t max) : max_(max) {}

  void space() { space_ = true; }
  void cell() { cell_ = true; }
  void line_break(int n) { breaks_ = std::min(2, std::max(breaks_, n)); }
  void br() { breaks_ = std::min(2, breaks_ + 1); }

  // Appends visible text (no whitespace handling of its own).
  void text(std::string_view s) {
    if (s.empty() || full()) return;
    if (!out_.empty()) {
      if (breaks_ > 0) {
        while (!out_.empty() && (out_.back() == ' ' || out_.back() == '\t')) out_.pop_back();
        out_.append(static_cast<size_t>(breaks_), '\n');
      } else if (cell_) {
        out_ += '\t';
      } else if (space_) {
        out_ += ' ';
      }
    }
    breaks_ = 0;
    space_ = cell_ = false;
    out_.append(s);
    if (out_.size() > max_) {
      cut_utf8(out_, max_);
      truncated_ = true;
    }
  }

  // A literal newline inside pre.
  void newline() {
    if (full()) return;
    breaks_ = 0;
    space_ = cell_ = false;
    if (!out_.empty()) out_ += '\n';
  }

  bool full() const { return truncated_ || out_.size() >= max_; }
  bool truncated() const { return truncated_; }
  std::string take() {
    while (!out_.empty() && is_html_space(out_.back())) out_.pop_back();
    size_t lead = 0;
    while (lead < out_.size() && is_html_space(out_[lead])) ++lead;
    out_.erase(0, lead);
    return std::move(out_);
  }

 private:
  size_t max_;
  std::string out_;
  bool space_ = false, cell_ = false;
  int breaks_ = 0;
  bool truncated_ = false;
};

// Finds the case-insensitive "</name" at or after `from`; npos when absent.
size_t find_end_tag(std::string_view s, size_t from, std::string_view name) {
  for (size_t i = s.find("</", from); i != std::string_view::npos; i = s.find("</", i + 2)) {
    if (istarts_with(s.substr(i + 2), name)) {
      const size_t after = i + 2 + name.size();
      if (after >= s.size() || !is_alnum(s[after])) return i;
    }
  }
  return std::string_view::npos;
}

std::string convert_html(std::string_view s, size_t max_bytes, bool& truncated) {
  TextWriter w(max_bytes);
  int pre = 0;
  size_t i = 0;
  std::string run;  // pending visible text, flushed at whitespace and tags
  auto flush = [&] {
    w.text(run);
    run.clear();
  };
  while (i < s.size() && !w.full()) {
    const char c = s[i];
    if (c == '<') {
      const size_t n = i + 1;
      if (s.compare(n, 3, "!--") == 0) {
        flush();
        const size_t close = s.find("-->", n + 3);
        i = close == std::string_view::npos ? s.size() : close + 3;
        continue;
      }
      if (n < s.size() && (s[n] == '!' || s[n] == '?')) {
        flush();
        const size_t close = s.find('>', n);
        i = close == std::string_view::npos ? s.size() : close + 1;
        continue;
      }
      const bool closing = n < s.size() && s[n] == '/';
      size_t k = closing ? n + 1 : n;
      if (k >= s.size() || !is_alpha(s[k])) {
        run += c;  // a lone '<' is text
        ++i;
        continue;
      }
      flush();
      const size_t name_begin = k;
      while (k < s.size() && (is_alnum(s[k]) || s[k] == '-' || s[k] == ':')) ++k;
      const std::string tag = to_lower(s.substr(name_begin, k - name_begin));
      // Attributes: skip to the '>' that is not inside a quoted value.
      char quote = 0;
      while (k < s.size()) {
        const char d = s[k];
        if (quote != 0) {
          if (d == quote) quote = 0;
        } else if (d == '"' || d == '\'') {
          if (k > 0 && s[k - 1] == '=') quote = d;
        } else if (d == '>') {
          break;
        }
        ++k;
      }
      i = k < s.size() ? k + 1 : s.size();
      if (!closing && (tag == "script" || tag == "style" || tag == "template")) {
        const size_t end = find_end_tag(s, i, tag);
        i = end == std::string_view::npos ? s.size() : end;
        continue;
      }
      if (tag == "pre") pre = closing ? std::max(0, pre - 1) : pre + 1;
      switch (block_of(tag)) {
        case Block::Paragraph: w.line_break(2); break;
        case Block::Line:
          if (tag == "br") {
            w.br();
          } else {
            w.line_break(1);
          }
          break;
        case Block::Cell:
          if (!closing) w.cell();
          break;
        case Block::None: break;
      }
      continue;
    }
    if (c == '&') {
      size_t end = 0;
      const uint32_t cp = read_reference(s, i, end);
      if (cp != 0) {
        if (cp == 0xA0) {
          flush();
          w.space();  // a no-break space is a space to a filter
        } else {
          append_utf8(run, cp);
        }
        i = end;
        continue;
      }
    }
    if (is_html_space(c)) {
      flush();
      if (pre > 0 && c == '\n') {
        w.newline();
      } else if (pre > 0 && c != '\r') {
        w.text(std::string(1, c));
      } else {
        w.space();
      }
      ++i;
      continue;
    }
    run += c;
    ++i;
  }
  flush();
  truncated = w.truncated() || i < s.size();
  return w.take();
}

bool is_text_part(const Part& p, bool html) {
  if (p.content_type.type != "text") return false;
  return p.content_type.subtype == "plain" || (html && p.content_type.subtype == "html");
}

// A leaf: a part with a body of its own (not a container with parts below it).
bool is_leaf(const Part& p) { return !p.is_multipart() && !(p.is_message() && !p.children.empty()); }

std::string lf_only(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '\r'), s.end());
  return s;
}

}  // namespace

std::string html_to_text(std::string_view html, size_t max_bytes) {
  bool truncated = false;
  return convert_html(html, max_bytes, truncated);
}

ExtractedText extract_text(const Message& message, const TextExtractOptions& options) {
  const std::vector<Part>& parts = message.parts();
  const size_t n = parts.size();
  auto readable = [&](size_t i) {
    const Part& p = parts[i];
    if (!is_leaf(p) || !is_text_part(p, options.include_html)) return false;
    return options.include_attachments || p.disposition != "attachment";
  };
  // Which subtrees hold a readable text/plain or text/html part (children follow their
  // parent in pre-order, so one backward pass sees them first).
  std::vector<char> has_plain(n, 0), has_html(n, 0);
  for (size_t i = n; i-- > 0;) {
    if (readable(i)) (parts[i].content_type.subtype == "plain" ? has_plain : has_html)[i] = 1;
    for (size_t c : parts[i].children) {
      has_plain[i] |= has_plain[c];
      has_html[i] |= has_html[c];
    }
  }
  // RFC 2046 §5.1.4: one alternative is read, text/plain first (what filters digest best).
  std::vector<size_t> chosen(n, static_cast<size_t>(-1));
  for (size_t i = 0; i < n; ++i) {
    const Part& p = parts[i];
    if (!p.is_multipart() || p.content_type.subtype != "alternative") continue;
    for (size_t c : p.children) {
      if (has_plain[c]) {
        chosen[i] = c;
        break;
      }
    }
    if (chosen[i] != static_cast<size_t>(-1)) continue;
    for (size_t c : p.children) {
      if (has_html[c]) chosen[i] = c;
    }
  }
  auto in_chosen_alternatives = [&](size_t i) {
    for (size_t child = i; parts[child].parent >= 0;) {
      const auto parent = static_cast<size_t>(parts[child].parent);
      if (chosen[parent] != static_cast<size_t>(-1) && chosen[parent] != child) return false;
      child = parent;
    }
    return true;
  };

  ExtractedText result;
  for (size_t i = 0; i < n; ++i) {
    if (!readable(i) || !in_chosen_alternatives(i)) continue;
    if (result.text.size() >= options.max_bytes) {
      result.truncated = true;
      break;
    }
    const Part& p = parts[i];
    std::string utf8 = to_utf8(message.decoded_body(i), p.charset);
    const std::string_view separator = result.text.empty() ? "" : "\n\n";
    const size_t room = options.max_bytes - result.text.size();
    std::string text;
    bool cut = false;
    if (p.content_type.subtype == "html") {
      text = convert_html(utf8, room > separator.size() ? room - separator.size() : 0, cut);
    } else {
      text = lf_only(std::move(utf8));
      while (!text.empty() && is_html_space(text.back())) text.pop_back();
    }
    if (text.empty()) {
      if (!cut) continue;
      result.truncated = true;
      break;
    }
    result.text += separator;
    result.text += text;
    ++result.parts;
    if (cut || result.text.size() > options.max_bytes) {
      cut_utf8(result.text, options.max_bytes);
      result.truncated = true;
      break;
    }
  }
  return result;
}

}  // namespace postern::mail
