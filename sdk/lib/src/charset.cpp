// Charset conversion to UTF-8 through iconv, and UTF-8 checks.
#include "postern/mail/charset.hpp"

#include <iconv.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "postern/mail/ascii.hpp"

namespace postern::mail {
namespace {

// Long enough for every IANA charset name; anything longer is not a charset.
constexpr size_t kMaxCharsetName = 64;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

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

// nullopt when iconv does not know the charset.
std::optional<std::string> convert_with_iconv(std::string_view in, std::string_view name) {
  const std::string from(name);
  iconv_t cd = iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;

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

}  // namespace

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

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

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

std::optional<std::string> convert_to_utf8(std::string_view in, std::string_view charset) {
  const std::string cs = normalize_charset(charset);
  if (cs.empty() || is_unknown_charset(cs)) return std::nullopt;
  if (is_one_of(cs, {"utf-8", "utf8", "unicode-1-1-utf-8", "x-utf-8"})) return sanitize_utf8(in);
  if (is_one_of(cs, {"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us", "iso-ir-6",
                     "cp367", "ibm367", "csascii"})) {
    // 8-bit text labelled us-ascii is usually UTF-8, else windows-1252.
    if (is_ascii(in) || is_valid_utf8(in)) return std::string(in);
    return convert_with_iconv(in, "WINDOWS-1252");
  }
  return convert_with_iconv(in, iconv_name(cs));
}

std::string to_utf8(std::string_view in, std::string_view charset) {
  if (in.empty()) return {};
  std::optional<std::string> out = convert_to_utf8(in, charset);
  return out ? std::move(*out) : std::string(in);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace postern::mail
