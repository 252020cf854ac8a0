#include "codec.hpp"

#include <cctype>

namespace postern::plugins::pop3 {
namespace {

/** Calls fn(content) for each line of `raw` (content without CR/LF); stops when fn returns false. */
template <class Fn>
void for_each_line(std::string_view raw, Fn&& fn) {
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t nl = raw.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? raw.size() : nl;
    size_t content_end = end;
    // CRLF and a bare LF both end a line; a CR at the very end of the file is a
    // truncated CRLF, not data.
    if (content_end > pos && raw[content_end - 1] == '\r') --content_end;
    if (!fn(raw.substr(pos, content_end - pos))) return;
    pos = nl == std::string_view::npos ? raw.size() : nl + 1;
  }
}

}  // namespace

Command parse_command(std::string_view line) {
  Command c;
  const size_t sp = line.find(' ');
  const std::string_view word = line.substr(0, sp);
  c.keyword.reserve(word.size());
  for (char ch : word) c.keyword.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
  if (sp != std::string_view::npos) c.args = std::string(line.substr(sp + 1));
  return c;
}

std::optional<std::pair<std::string_view, std::string_view>> split_two(std::string_view args) {
  const size_t sp = args.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  std::string_view first = args.substr(0, sp);
  std::string_view second = args.substr(sp + 1);
  while (!second.empty() && second.front() == ' ') second.remove_prefix(1);
  if (first.empty() || second.empty() || second.find(' ') != std::string_view::npos) return std::nullopt;
  return std::make_pair(first, second);
}

std::optional<uint32_t> parse_number(std::string_view text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  uint32_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint32_t>(c - '0');
  }
  return n;
}

uint64_t wire_size(std::string_view raw) {
  uint64_t size = 0;
  for_each_line(raw, [&](std::string_view line) {
    size += line.size() + 2;
    return true;
  });
  return size;
}

void encode_message(std::string_view raw, std::optional<uint64_t> body_lines, std::string& out) {
  out.reserve(out.size() + raw.size() + raw.size() / 64 + 8);
  bool in_body = false;
  uint64_t sent_body_lines = 0;
  for_each_line(raw, [&](std::string_view line) {
    if (in_body && body_lines && sent_body_lines >= *body_lines) return false;
    // RFC 1939 §3: a line starting with the termination octet is byte-stuffed.
    if (!line.empty() && line.front() == '.') out.push_back('.');
    out.append(line);
    out.append("\r\n");
    if (in_body) {
      ++sent_body_lines;
    } else if (line.empty()) {
      in_body = true;  // the blank line that ends the header (RFC 5322 §2.1)
    }
    return true;
  });
  out.append(".\r\n");
}

}  // namespace postern::plugins::pop3
