// Transfer and header encodings: base64, quoted-printable, RFC 2047 encoded-words and
// unfolding.
#include "postern/mail/codec.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "postern/mail/ascii.hpp"
#include "postern/mail/charset.hpp"

namespace postern::mail {
namespace {

// Long enough for every IANA charset name; anything longer is not a charset.
constexpr size_t kMaxCharsetName = 64;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::array<int8_t, 256> make_base64_table() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}
constexpr std::array<int8_t, 256> kBase64 = make_base64_table();

void decode_q(std::string_view text, std::string& out) {
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '_') {
      out += ' ';  // RFC 2047 §4.2 (2)
    } else if (c == '=' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
}

struct EncodedWord {
  std::string charset;  // normalized, RFC 2231 §5 language suffix removed
  std::string bytes;    // decoded octets, still in charset
  size_t end = 0;       // one past the closing "?="
};

enum class WordResult { Ok, Invalid, InvalidToWhitespace };

// Parses "=?charset?encoding?text?=" at s[start] (RFC 2047 §2). On InvalidToWhitespace
// no encoded word can begin before `end`, which keeps the scan linear.
WordResult parse_encoded_word(std::string_view s, size_t start, EncodedWord& word) {
  size_t i = start + 2;
  const size_t cs_begin = i;
  while (i < s.size() && i - cs_begin <= kMaxCharsetName && s[i] != '?') {
    const char c = s[i];
    if (is_wsp(c) || c == '\r' || c == '\n' || c == '=' || c == '"' ||
        static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) {
      return WordResult::Invalid;
    }
    ++i;
  }
  if (i >= s.size() || s[i] != '?' || i == cs_begin) return WordResult::Invalid;
  std::string_view charset = s.substr(cs_begin, i - cs_begin);
  if (const size_t star = charset.find('*'); star != std::string_view::npos) {
    charset = charset.substr(0, star);
  }
  ++i;
  if (i + 1 >= s.size() || s[i + 1] != '?') return WordResult::Invalid;
  const char encoding = ascii_lower(s[i]);
  if (encoding != 'b' && encoding != 'q') return WordResult::Invalid;
  i += 2;
  const size_t text_begin = i;
  while (i < s.size()) {
    const char c = s[i];
    if (is_wsp(c) || c == '\r' || c == '\n') {
      word.end = i;
      return WordResult::InvalidToWhitespace;
    }
    if (c == '?' && i + 1 < s.size() && s[i + 1] == '=') break;
    ++i;
  }
  if (i >= s.size()) {
    word.end = s.size();
    return WordResult::InvalidToWhitespace;
  }
  const std::string_view text = s.substr(text_begin, i - text_begin);
  word.charset = normalize_charset(charset);
  if (word.charset.empty()) return WordResult::Invalid;
  word.bytes.clear();
  if (encoding == 'b') {
    word.bytes = decode_base64(text);
  } else {
    decode_q(text, word.bytes);
  }
  word.end = i + 2;
  return WordResult::Ok;
}

}  // namespace

std::string decode_base64(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int n = 0;
  auto flush_partial = [&] {
    // A partial quantum: 2 symbols carry one octet, 3 symbols two (RFC 2045 §6.8).
    if (n == 2) {
      out += static_cast<char>((acc >> 4) & 0xFF);
    } else if (n == 3) {
      out += static_cast<char>((acc >> 10) & 0xFF);
      out += static_cast<char>((acc >> 2) & 0xFF);
    }
    acc = 0;
    n = 0;
  };
  for (char c : in) {
    if (c == '=') {
      flush_partial();
      continue;
    }
    const int8_t v = kBase64[static_cast<unsigned char>(c)];
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    if (++n == 4) {
      out += static_cast<char>((acc >> 16) & 0xFF);
      out += static_cast<char>((acc >> 8) & 0xFF);
      out += static_cast<char>(acc & 0xFF);
      acc = 0;
      n = 0;
    }
  }
  flush_partial();
  return out;
}

std::optional<std::string> decode_base64_strict(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    uint32_t v[4];
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      const int8_t d = kBase64[static_cast<unsigned char>(c)];
      if (d < 0) return std::nullopt;
      v[k] = static_cast<uint32_t>(d);
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(static_cast<char>((n >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
  }
  return out;
}

std::string encode_base64(std::string_view data) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t v = (static_cast<uint32_t>(static_cast<uint8_t>(data[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<uint8_t>(data[i + 1])) << 8) |
                       static_cast<uint8_t>(data[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < data.size()) {
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(data[i])) << 16;
    if (i + 1 < data.size()) v |= static_cast<uint32_t>(static_cast<uint8_t>(data[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < data.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string encode_base64_lines(std::string_view body) {
  constexpr size_t kPerLine = 57;  // 57 octets = 76 characters
  std::string out;
  out.reserve(body.size() * 4 / 3 + body.size() / kPerLine * 2 + 8);
  for (size_t i = 0; i < body.size(); i += kPerLine) {
    out += encode_base64(body.substr(i, kPerLine));
    out += "\r\n";
  }
  return out;
}

std::string encode_quoted_printable(std::string_view body) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(body.size() * 3 / 2 + 16);
  size_t col = 0;
  auto put = [&](std::string_view piece) {
    // RFC 2045 §6.7 rule 5: lines of at most 76 characters, "=" soft breaks.
    if (col + piece.size() > 75) {
      out += "=\r\n";
      col = 0;
    }
    out += piece;
    col += piece.size();
  };
  for (size_t i = 0; i < body.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(body[i]);
    bool at_eol = i + 1 == body.size() || body[i + 1] == '\r' || body[i + 1] == '\n';
    if (c == '\r' && i + 1 < body.size() && body[i + 1] == '\n') {
      out += "\r\n";
      col = 0;
      ++i;
      continue;
    }
    if (c == '\n') {  // a bare LF is a line end too
      out += "\r\n";
      col = 0;
      continue;
    }
    // Rule 3: white space at the end of a line is encoded; rule 1: '=' and
    // non-printables are encoded; a leading '.' is encoded so no line starts
    // with one (some gateways mangle it), and "From " likewise.
    bool encode = c == '=' || c > 126 || (c < 32 && c != '\t');
    if ((c == ' ' || c == '\t') && at_eol) encode = true;
    if (c == '.' && col == 0) encode = true;
    if (encode) {
      char buf[3] = {'=', hex[c >> 4], hex[c & 15]};
      put(std::string_view(buf, 3));
    } else {
      char ch = static_cast<char>(c);
      put(std::string_view(&ch, 1));
    }
  }
  return out;
}

std::string decode_quoted_printable(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t pos = 0;
  while (pos < in.size()) {
    size_t eol = in.find('\n', pos);
    const bool has_lf = eol != std::string_view::npos;
    if (!has_lf) eol = in.size();
    size_t content_end = eol;
    const bool crlf = has_lf && content_end > pos && in[content_end - 1] == '\r';
    if (crlf) --content_end;
    std::string_view line = in.substr(pos, content_end - pos);
    // RFC 2045 §6.7 (3): trailing whitespace was added in transport and is deleted.
    while (!line.empty() && (is_wsp(line.back()) || line.back() == '\r')) line.remove_suffix(1);
    bool soft_break = false;
    if (!line.empty() && line.back() == '=') {
      soft_break = true;  // RFC 2045 §6.7 (5)
      line.remove_suffix(1);
    }
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '=' && i + 2 < line.size() && hex_value(line[i + 1]) >= 0 &&
          hex_value(line[i + 2]) >= 0) {
        out += static_cast<char>(hex_value(line[i + 1]) * 16 + hex_value(line[i + 2]));
        i += 2;
      } else {
        out += c;
      }
    }
    if (has_lf && !soft_break) out += crlf ? "\r\n" : "\n";
    pos = has_lf ? eol + 1 : in.size();
  }
  return out;
}

std::string unfold(std::string_view raw_value) {
  std::string out;
  out.reserve(raw_value.size());
  for (size_t i = 0; i < raw_value.size(); ++i) {
    const char c = raw_value[i];
    if (c == '\n') continue;
    if (c == '\r' && i + 1 < raw_value.size() && raw_value[i + 1] == '\n') continue;
    out += c;
  }
  return out;
}

std::string decode_rfc2047(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  std::string pending_bytes;
  std::string pending_charset;
  auto flush = [&] {
    if (!pending_charset.empty()) out += to_utf8(pending_bytes, pending_charset);
    pending_bytes.clear();
    pending_charset.clear();
  };

  size_t i = 0;
  bool after_word = false;
  EncodedWord word;
  while (i < value.size()) {
    const size_t start = value.find("=?", i);
    if (start == std::string_view::npos) break;
    const WordResult r = parse_encoded_word(value, start, word);
    if (r != WordResult::Ok) {
      const size_t literal_end = r == WordResult::InvalidToWhitespace ? word.end : start + 2;
      flush();
      out.append(value.substr(i, literal_end - i));
      i = literal_end;
      after_word = false;
      continue;
    }
    const std::string_view gap = value.substr(i, start - i);
    bool gap_is_space = true;
    for (char c : gap) {
      if (!is_wsp(c) && c != '\r' && c != '\n') gap_is_space = false;
    }
    // RFC 2047 §6.2: whitespace between adjacent encoded-words is not displayed.
    if (!(after_word && gap_is_space)) {
      flush();
      out.append(gap);
    }
    // Same-charset neighbours are joined first: senders split multi-octet characters.
    if (word.charset != pending_charset) {
      flush();
      pending_charset = word.charset;
    }
    pending_bytes += word.bytes;
    after_word = true;
    i = word.end;
  }
  flush();
  if (i < value.size()) out.append(value.substr(i));
  return out;
}

}  // namespace postern::mail
