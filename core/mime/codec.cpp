// Transfer and header encodings: base64, quoted-printable, RFC 2047 encoded-words,
// unfolding, and charset conversion to UTF-8 through iconv.
#include <iconv.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "core/mime/mime.hpp"

namespace postern::core::mime {
namespace {

// Long enough for every IANA charset name; anything longer is not a charset.
constexpr size_t kMaxCharsetName = 64;

constexpr bool is_wsp(char c) { return c == ' ' || c == '\t'; }

constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

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

// Length of the valid UTF-8 sequence at s[i], or 0 when it is invalid (overlong forms,
// surrogates and code points past U+10FFFF are invalid, RFC 3629 §4).
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return len;
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string sanitize_utf8(std::string_view s) {
  if (is_valid_utf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Lower-cases and checks a charset label. Only names iconv could mean are let through:
// glibc reads "//" and "," in a name as conversion flags.
std::string normalize_charset(std::string_view charset) {
  while (!charset.empty() && (is_wsp(charset.front()) || charset.front() == '"')) charset.remove_prefix(1);
  while (!charset.empty() && (is_wsp(charset.back()) || charset.back() == '"')) charset.remove_suffix(1);
  if (charset.size() > kMaxCharsetName) return {};
  std::string out;
  out.reserve(charset.size());
  for (char c : charset) {
    const char l = ascii_lower(c);
    const bool ok = (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '-' || l == '_' ||
                    l == '.' || l == ':' || l == '+';
    if (!ok) return {};
    out += l;
  }
  return out;
}

bool is_one_of(std::string_view s, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (s == n) return true;
  }
  return false;
}

// Labels that mean "no idea": the octets are passed through.
bool is_unknown_charset(std::string_view cs) {
  return is_one_of(cs, {"unknown-8bit", "x-unknown", "unknown", "binary", "8bit", "7bit",
                        "x-user-defined", "default", "charset", "none"});
}

// Maps labels that senders use loosely to the superset they actually mean (the same
// choices as the WHATWG Encoding Standard), or to names glibc knows.
std::string_view iconv_name(std::string_view cs) {
  if (is_one_of(cs, {"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "cp819",
                     "iso-ir-100", "ibm819", "csisolatin1"})) {
    return "WINDOWS-1252";
  }
  if (is_one_of(cs, {"gb2312", "gbk", "x-gbk", "euc-cn", "cp936", "csgb2312", "gb_2312-80"})) {
    return "GB18030";
  }
  if (is_one_of(cs, {"ks_c_5601-1987", "ks_c_5601", "ksc5601", "ksc_5601", "euc-kr", "cp949",
                     "x-windows-949", "windows-949"})) {
    return "CP949";
  }
  if (is_one_of(cs, {"shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "windows-31j",
                     "csshiftjis", "cp932"})) {
    return "CP932";
  }
  if (is_one_of(cs, {"tis-620", "windows-874", "iso-8859-11", "x-windows-874"})) return "CP874";
  if (is_one_of(cs, {"iso-8859-8-i", "iso-8859-8-e"})) return "ISO-8859-8";
  if (is_one_of(cs, {"iso-8859-6-i", "iso-8859-6-e"})) return "ISO-8859-6";
  if (is_one_of(cs, {"x-mac-roman", "mac", "macintosh", "x-mac"})) return "MACINTOSH";
  if (is_one_of(cs, {"big5", "x-x-big5", "cn-big5", "csbig5"})) return "BIG5-HKSCS";
  if (is_one_of(cs, {"unicode-1-1-utf-7", "utf7"})) return "UTF-7";
  return cs;
}

std::string convert_with_iconv(std::string_view in, std::string_view name) {
  const std::string from(name);
  iconv_t cd = iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::string(in);

  std::string out(in.size() * 2 + 16, '\0');
  size_t used = 0;
  auto ensure = [&](size_t room) {
    if (out.size() - used < room) out.resize(out.size() * 2 + room);
  };
  // iconv takes char** although it never writes the input.
  char* inbuf = const_cast<char*>(in.data());
  size_t inleft = in.size();
  while (inleft > 0) {
    char* outbuf = out.data() + used;
    size_t outleft = out.size() - used;
    const size_t rc = iconv(cd, &inbuf, &inleft, &outbuf, &outleft);
    used = static_cast<size_t>(outbuf - out.data());
    if (rc != static_cast<size_t>(-1)) break;
    if (errno == E2BIG) {
      ensure(out.size());
    } else if (errno == EILSEQ) {
      // An invalid octet: mark it and go on with the next one.
      ensure(kReplacement.size());
      out.replace(used, kReplacement.size(), kReplacement);
      used += kReplacement.size();
      ++inbuf;
      --inleft;
    } else {
      // EINVAL: the input ends inside a character.
      ensure(kReplacement.size());
      out.replace(used, kReplacement.size(), kReplacement);
      used += kReplacement.size();
      break;
    }
  }
  // Return a stateful encoding (ISO-2022-JP, UTF-7) to its initial state.
  for (int tries = 0; tries < 8; ++tries) {
    char* outbuf = out.data() + used;
    size_t outleft = out.size() - used;
    const size_t rc = iconv(cd, nullptr, nullptr, &outbuf, &outleft);
    used = static_cast<size_t>(outbuf - out.data());
    if (rc != static_cast<size_t>(-1) || errno != E2BIG) break;
    ensure(out.size());
  }
  iconv_close(cd);
  out.resize(used);
  return out;
}

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

std::string to_utf8(std::string_view in, std::string_view charset) {
  if (in.empty()) return {};
  const std::string cs = normalize_charset(charset);
  if (cs.empty() || is_unknown_charset(cs)) return std::string(in);
  if (is_one_of(cs, {"utf-8", "utf8", "unicode-1-1-utf-8", "x-utf-8"})) return sanitize_utf8(in);
  if (is_one_of(cs, {"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "iso-ir-6",
                     "cp367", "ibm367", "csascii"})) {
    // 8-bit text labelled us-ascii is usually UTF-8, else windows-1252.
    if (is_ascii(in) || is_valid_utf8(in)) return std::string(in);
    return convert_with_iconv(in, "WINDOWS-1252");
  }
  return convert_with_iconv(in, iconv_name(cs));
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

}  // namespace postern::core::mime
