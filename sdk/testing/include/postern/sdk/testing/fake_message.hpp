#pragma once
/**
 * @file fake_message.hpp
 * The minimal message view FakeHost hands to plugins through the message_*
 * functions of the ABI.
 *
 * It is deliberately small: header fields are split and unfolded (RFC 5322
 * §2.2.3) but RFC 2047 encoded words are NOT decoded, and the whole message is
 * exposed as one MIME part (part 0) whose body has base64 or quoted-printable
 * undone (by the mail library's decoders, Postern::mail). posternd uses the
 * library's MIME parser for the rest (full tree, RFC 2231
 * parameters, RFC 2047 words): a plugin that walks multipart trees must be
 * tested against the real host too (tests/integration).
 */

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <postern/mail/ascii.hpp>
#include <postern/mail/codec.hpp>

namespace postern::sdk::testing {

/** Turns bare LF line ends into CRLF (the host hands plugins CRLF messages). */
inline std::string to_crlf(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 32);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out.push_back('\r');
    out.push_back(in[i]);
  }
  return out;
}

/** ASCII case-insensitive comparison (header and attribute names): the mail library's. */
using ::postern::mail::iequals;

/** A parsed message: header fields, one part, the decoded body. Immutable after construction. */
class FakeMessage {
 public:
  struct Header {
    std::string name;
    std::string value;  // unfolded, surrounding white space trimmed, not RFC 2047 decoded
  };

  /** @param raw the message with CRLF line ends (use to_crlf() first). */
  explicit FakeMessage(std::string raw) : raw_(std::move(raw)) { parse(); }

  const std::string& raw() const { return raw_; }
  const std::vector<Header>& headers() const { return headers_; }

  /** The nth (0-based) field named `name` (case-insensitive), or nullptr. */
  const Header* find(std::string_view name, size_t nth = 0) const {
    for (const Header& h : headers_) {
      if (iequals(h.name, name) && nth-- == 0) return &h;
    }
    return nullptr;
  }

  const std::string& content_type() const { return content_type_; }
  const std::string& charset() const { return charset_; }
  const std::string& filename() const { return filename_; }
  const std::string& disposition() const { return disposition_; }
  const std::string& transfer_encoding() const { return transfer_encoding_; }
  /** Offset of the body (after the blank line) in raw(). */
  size_t body_offset() const { return body_offset_; }
  /** The body with base64 / quoted-printable undone. */
  const std::string& decoded_body() const { return decoded_body_; }

 private:
  static std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n')) --e;
    return std::string(s.substr(b, e - b));
  }
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  /** "text/plain; charset=UTF-8" → main value "text/plain" and parameter lookup. */
  static std::string main_value(std::string_view v) { return lower(trim(v.substr(0, v.find(';')))); }
  static std::string param(std::string_view v, std::string_view name) {
    size_t pos = v.find(';');
    while (pos != std::string_view::npos) {
      const size_t next = v.find(';', pos + 1);
      std::string_view item = v.substr(pos + 1, next == std::string_view::npos ? std::string_view::npos : next - pos - 1);
      const size_t eq = item.find('=');
      if (eq != std::string_view::npos && iequals(trim(item.substr(0, eq)), name)) {
        std::string value = trim(item.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
        return value;
      }
      pos = next;
    }
    return {};
  }

  void parse() {
    // RFC 5322 §2.2.3: a line starting with WSP continues the previous field.
    size_t pos = 0;
    body_offset_ = raw_.size();
    while (pos < raw_.size()) {
      size_t eol = raw_.find('\n', pos);
      const size_t line_end = eol == std::string::npos ? raw_.size() : eol;
      const size_t next = eol == std::string::npos ? raw_.size() : eol + 1;
      std::string_view line(raw_.data() + pos, line_end - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {
        body_offset_ = next;
        break;
      }
      if ((line[0] == ' ' || line[0] == '\t') && !headers_.empty()) {
        headers_.back().value += std::string(line);
      } else {
        const size_t colon = line.find(':');
        // A line without a colon is not a field; broken mail is tolerated by skipping it.
        if (colon != std::string_view::npos) headers_.push_back({trim(line.substr(0, colon)), std::string(line.substr(colon + 1))});
      }
      pos = next;
    }
    for (Header& h : headers_) h.value = trim(h.value);

    if (const Header* ct = find("Content-Type")) {
      content_type_ = main_value(ct->value);
      charset_ = lower(param(ct->value, "charset"));
      filename_ = param(ct->value, "name");
    } else {
      content_type_ = "text/plain";  // RFC 2045 §5.2
    }
    if (const Header* cd = find("Content-Disposition")) {
      disposition_ = main_value(cd->value);
      if (std::string f = param(cd->value, "filename"); !f.empty()) filename_ = f;
    }
    if (const Header* te = find("Content-Transfer-Encoding")) transfer_encoding_ = lower(trim(te->value));

    const std::string_view body = std::string_view(raw_).substr(std::min(body_offset_, raw_.size()));
    if (transfer_encoding_ == "base64") {
      decoded_body_ = ::postern::mail::decode_base64(body);
    } else if (transfer_encoding_ == "quoted-printable") {
      decoded_body_ = ::postern::mail::decode_quoted_printable(body);
    } else {
      decoded_body_ = std::string(body);
    }
  }

  std::string raw_;
  std::vector<Header> headers_;
  size_t body_offset_ = 0;
  std::string content_type_;
  std::string charset_;
  std::string filename_;
  std::string disposition_;
  std::string transfer_encoding_;
  std::string decoded_body_;
};

}  // namespace postern::sdk::testing
