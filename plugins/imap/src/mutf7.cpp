#include "mutf7.hpp"

#include <postern/mail/charset.hpp>

#include <cstdint>
#include <vector>

namespace postern::imap {
namespace {

constexpr std::string_view kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == ',') return 63;
  return -1;
}


// Next code point of UTF-8 `s` at `i` (advanced); U+FFFD for a bad sequence.
uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i++]);
  if (c < 0x80) return c;
  int extra = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    extra = 1;
    cp = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    extra = 2;
    cp = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    extra = 3;
    cp = c & 0x07;
    min = 0x10000;
  } else {
    return 0xFFFD;
  }
  for (int k = 0; k < extra; ++k) {
    if (i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (static_cast<unsigned char>(s[i++]) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
  return cp;
}

void flush_utf16(std::string& out, const std::vector<uint16_t>& units) {
  out += '&';
  uint32_t bits = 0;
  int nbits = 0;
  for (uint16_t u : units) {
    bits = (bits << 16) | u;
    nbits += 16;
    while (nbits >= 6) {
      nbits -= 6;
      out += kB64[(bits >> nbits) & 0x3F];
    }
  }
  if (nbits > 0) out += kB64[(bits << (6 - nbits)) & 0x3F];
  out += '-';
}

}  // namespace

std::optional<std::string> mutf7_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  bool last_was_shift = false;
  for (size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x20 || c > 0x7E) return std::nullopt;
    if (c != '&') {
      out += static_cast<char>(c);
      ++i;
      last_was_shift = false;
      continue;
    }
    const size_t end = in.find('-', i + 1);
    if (end == std::string_view::npos) return std::nullopt;
    if (end == i + 1) {  // "&-" is "&"
      out += '&';
      i = end + 1;
      last_was_shift = false;
      continue;
    }
    // RFC 3501 §5.1.3: consecutive shifted runs are not allowed (they must be one run).
    if (last_was_shift) return std::nullopt;
    uint32_t bits = 0;
    int nbits = 0;
    std::vector<uint16_t> units;
    for (size_t k = i + 1; k < end; ++k) {
      const int v = b64_value(in[k]);
      if (v < 0) return std::nullopt;
      bits = (bits << 6) | static_cast<uint32_t>(v);
      nbits += 6;
      if (nbits >= 16) {
        nbits -= 16;
        units.push_back(static_cast<uint16_t>((bits >> nbits) & 0xFFFF));
      }
    }
    // Left-over bits must be fewer than 6 and zero.
    if (nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0 || units.empty()) return std::nullopt;
    for (size_t k = 0; k < units.size(); ++k) {
      uint32_t cp = units[k];
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (k + 1 >= units.size() || units[k + 1] < 0xDC00 || units[k + 1] > 0xDFFF) return std::nullopt;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (units[k + 1] - 0xDC00);
        ++k;
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return std::nullopt;
      } else if (cp >= 0x20 && cp <= 0x7E) {
        return std::nullopt;  // printable US-ASCII must be itself
      }
      mail::append_utf8(out, cp);
    }
    i = end + 1;
    last_was_shift = true;
  }
  return out;
}

std::string mutf7_encode(std::string_view utf8) {
  std::string out;
  out.reserve(utf8.size() + 8);
  std::vector<uint16_t> pending;
  for (size_t i = 0; i < utf8.size();) {
    const uint32_t cp = next_code_point(utf8, i);
    if (cp >= 0x20 && cp <= 0x7E) {
      if (!pending.empty()) {
        flush_utf16(out, pending);
        pending.clear();
      }
      if (cp == '&') {
        out += "&-";
      } else {
        out += static_cast<char>(cp);
      }
      continue;
    }
    if (cp >= 0x10000) {
      const uint32_t v = cp - 0x10000;
      pending.push_back(static_cast<uint16_t>(0xD800 + (v >> 10)));
      pending.push_back(static_cast<uint16_t>(0xDC00 + (v & 0x3FF)));
    } else {
      pending.push_back(static_cast<uint16_t>(cp));
    }
  }
  if (!pending.empty()) flush_utf16(out, pending);
  return out;
}

}  // namespace postern::imap
