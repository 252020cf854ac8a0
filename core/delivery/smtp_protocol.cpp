// SMTP client wire helpers (smtp_protocol.hpp).

#include "core/delivery/smtp_protocol.hpp"

#include "core/mime/mime.hpp"

#include <postern/mail/codec.hpp>

#include <fmt/format.h>

#include <cctype>

namespace postern::core::delivery {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

/** RFC 3463 status-code at the start of `text` ("2.1.5 "): its length, 0 if none. */
size_t enhanced_prefix(std::string_view text, char cls) {
  size_t i = 0;
  if (text.size() < 5 || text[0] != cls || text[1] != '.') return 0;
  i = 2;
  size_t d = 0;
  while (i < text.size() && is_digit(text[i]) && d < 3) ++i, ++d;
  if (d == 0 || i >= text.size() || text[i] != '.') return 0;
  ++i;
  d = 0;
  while (i < text.size() && is_digit(text[i]) && d < 3) ++i, ++d;
  if (d == 0) return 0;
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

}  // namespace

std::string Reply::text() const {
  std::string out;
  const char cls = static_cast<char>('0' + code / 100);
  for (const auto& l : lines) {
    std::string_view t = l;
    if (size_t n = enhanced_prefix(t, cls)) {
      t.remove_prefix(n);
      while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    }
    if (t.empty()) continue;
    if (!out.empty()) out += ' ';
    out += t;
  }
  return one_line(out);
}

std::string Reply::str() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) out += " " + enhanced;
  std::string t = text();
  if (!t.empty()) out += " " + t;
  return out;
}

ReplyParser::State ReplyParser::push(std::string_view line) {
  // RFC 5321 §4.2: Reply-code [ SP / "-" text ]; a bare code ends the reply.
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) || line[0] < '2' ||
      line[0] > '5')
    return State::Error;
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!cur_.lines.empty() && code != cur_.code) return State::Error;
  char sep = line.size() > 3 ? line[3] : ' ';
  if (sep != ' ' && sep != '-') return State::Error;
  std::string text(line.size() > 4 ? line.substr(4) : std::string_view{});
  if (cur_.lines.empty()) {
    cur_.code = code;
    if (size_t n = enhanced_prefix(text, line[0])) cur_.enhanced = text.substr(0, n);
  }
  cur_.lines.push_back(std::move(text));
  return sep == '-' ? State::More : State::Done;
}

Reply ReplyParser::take() {
  Reply r = std::move(cur_);
  cur_ = Reply{};
  return r;
}

Capabilities parse_ehlo(const Reply& reply) {
  Capabilities c;
  c.esmtp = reply.code == 250;
  if (!c.esmtp) return c;
  // The first line is the greeting ("mx.example.com Hello"); keywords follow.
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view l = reply.lines[i];
    size_t sp = l.find_first_of(" =");
    std::string kw = upper(l.substr(0, sp));
    std::string_view rest = sp == std::string_view::npos ? std::string_view{} : l.substr(sp + 1);
    if (kw == "PIPELINING") c.pipelining = true;
    else if (kw == "STARTTLS") c.starttls = true;
    else if (kw == "8BITMIME") c.eightbitmime = true;
    else if (kw == "BINARYMIME") c.binarymime = true;
    else if (kw == "CHUNKING") c.chunking = true;
    else if (kw == "SMTPUTF8") c.smtputf8 = true;
    else if (kw == "DSN") c.dsn = true;
    else if (kw == "ENHANCEDSTATUSCODES") c.enhanced_status = true;
    else if (kw == "SIZE") {
      c.size = true;
      uint64_t n = 0;
      bool digits = false;
      for (char ch : rest) {
        if (!is_digit(ch)) break;
        digits = true;
        n = n * 10 + static_cast<uint64_t>(ch - '0');
        if (n > (uint64_t{1} << 56)) break;
      }
      c.max_size = digits ? n : 0;
    } else if (kw == "AUTH") {
      std::string mechs = " " + upper(rest) + " ";
      for (auto& ch : mechs)
        if (ch == '=') ch = ' ';
      c.auth_plain = c.auth_plain || mechs.find(" PLAIN ") != std::string::npos;
      c.auth_login = c.auth_login || mechs.find(" LOGIN ") != std::string::npos;
    }
  }
  return c;
}

std::string dot_stuff(std::string_view m) {
  std::string out;
  out.reserve(m.size() + m.size() / 64 + 8);
  bool bol = true;
  for (size_t i = 0; i < m.size(); ++i) {
    char c = m[i];
    if (bol && c == '.') out += '.';
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < m.size() && m[i + 1] == '\n') ++i;
      bol = true;
    } else if (c == '\n') {
      out += "\r\n";
      bol = true;
    } else {
      out += c;
      bol = false;
    }
  }
  if (!bol) out += "\r\n";
  out += ".\r\n";
  return out;
}

bool has_8bit(std::string_view data) {
  for (unsigned char c : data)
    if (c >= 0x80 || c == 0) return true;
  return false;
}

size_t longest_line(std::string_view data) {
  size_t longest = 0, cur = 0;
  for (char c : data) {
    if (c == '\n') {
      if (cur > 0 && longest < cur) longest = cur;
      cur = 0;
    } else if (c != '\r') {
      ++cur;
    }
  }
  return std::max(longest, cur);
}

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) out += (c < 32 || c == 127) ? ' ' : static_cast<char>(c);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

namespace {

constexpr size_t kMaxLine = 998;  // RFC 5321 §4.5.3.1.6, without CRLF

/** The header block with every Content-Transfer-Encoding field replaced by `cte`. */
std::string rewrite_cte(std::string_view header, std::string_view cte) {
  std::string out;
  size_t pos = 0;
  bool skipping = false;
  std::string_view eol = "\r\n";
  while (pos < header.size()) {
    size_t nl = header.find('\n', pos);
    size_t end = nl == std::string_view::npos ? header.size() : nl + 1;
    std::string_view line = header.substr(pos, end - pos);
    pos = end;
    std::string_view bare = line;
    while (!bare.empty() && (bare.back() == '\n' || bare.back() == '\r')) bare.remove_suffix(1);
    if (bare.empty()) {  // the blank line that ends the header block
      out += fmt::format("Content-Transfer-Encoding: {}{}", cte, eol);
      out += line;
      return out;
    }
    if (bare.front() == ' ' || bare.front() == '\t') {
      if (!skipping) out += line;
      continue;
    }
    size_t colon = bare.find(':');
    std::string name(bare.substr(0, colon == std::string_view::npos ? 0 : colon));
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    skipping = upper(name) == "CONTENT-TRANSFER-ENCODING";
    if (!skipping) out += line;
  }
  // No blank line (a header-only part): end the block ourselves.
  if (!out.empty() && out.back() != '\n') out += eol;
  out += fmt::format("Content-Transfer-Encoding: {}{}", cte, eol);
  out += eol;
  return out;
}

class Downgrader {
 public:
  Downgrader(const mime::Message& msg, bool allow_8bit) : msg_(msg), raw_(msg.raw()), allow_8bit_(allow_8bit) {}

  void emit(size_t index, std::string& out, unsigned depth) {
    const mime::Part& p = msg_.parts()[index];
    std::string_view header = raw_.substr(p.raw_offset, p.header_length);
    std::string_view body = raw_.substr(p.body_offset, p.body_length);
    if (!p.children.empty() && depth < 100) {
      const bool container_8bit = p.transfer_encoding == "8bit" || p.transfer_encoding == "binary";
      if (container_8bit && !allow_8bit_ && !has_8bit(header)) out += rewrite_cte(header, "7bit");
      else out += header;
      size_t pos = p.body_offset;
      for (size_t c : p.children) {
        const mime::Part& child = msg_.parts()[c];
        if (child.raw_offset < pos) continue;
        out += raw_.substr(pos, child.raw_offset - pos);
        emit(c, out, depth + 1);
        pos = child.raw_offset + child.raw_length;
      }
      const size_t end = p.body_offset + p.body_length;
      if (pos < end) out += raw_.substr(pos, end - pos);
      return;
    }
    const bool encoded = p.transfer_encoding == "base64" || p.transfer_encoding == "quoted-printable";
    const bool needs = !encoded && ((!allow_8bit_ && has_8bit(body)) || longest_line(body) > kMaxLine) &&
                       !p.is_multipart() && !p.is_message();
    if (!needs) {
      out += raw_.substr(p.raw_offset, p.raw_length);
      return;
    }
    changed_ = true;
    if (p.content_type.type == "text") {
      out += rewrite_cte(header, "quoted-printable");
      out += mail::encode_quoted_printable(body);
    } else {
      out += rewrite_cte(header, "base64");
      out += mail::encode_base64_lines(body);
    }
    // The encoders end with CRLF; the part's body did not include the line end
    // before the next delimiter, which the gap copy adds back.
    if (out.size() >= 2 && out.compare(out.size() - 2, 2, "\r\n") == 0 && !(body.size() >= 1 && body.back() == '\n'))
      out.resize(out.size() - 2);
  }

  bool changed() const { return changed_; }

 private:
  const mime::Message& msg_;
  std::string_view raw_;
  bool allow_8bit_;
  bool changed_ = false;
};

}  // namespace

std::optional<std::string> downgrade_message(std::string_view message, bool allow_8bit) {
  // Fast path: nothing to do for a 7-bit message with short lines.
  if ((allow_8bit || !has_8bit(message)) && longest_line(message) <= kMaxLine) return std::nullopt;
  mime::Message msg = mime::Message::parse(std::string(message));
  Downgrader d(msg, allow_8bit);
  std::string out;
  out.reserve(message.size() * 5 / 4);
  d.emit(0, out, 0);
  if (!d.changed()) return std::nullopt;
  return out;
}

}  // namespace postern::core::delivery
