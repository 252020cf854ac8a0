// libFuzzer target for the SMTP command-argument parser (core/smtp/address.*):
// parse_path, parse_params, the domain/xtext helpers. Checks the promises the
// engine relies on (an accepted path re-parses to itself, parameters re-join to
// the same list, xtext round-trips); a broken promise aborts like a crash.
// Input: one octet of flags, then the argument text as the client sent it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/smtp/address.hpp"

namespace smtp = postern::core::smtp;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "smtp command invariant broken: %s\n", what);
    std::abort();
  }
}

bool ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

std::string encode_xtext(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c >= 33 && c <= 126 && c != '+' && c != '=') {
      out += static_cast<char>(c);
    } else {
      out += '+';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

void check_path(std::string_view text, bool allow_null, bool utf8) {
  std::string_view rest = "unset";
  const smtp::PathResult r = smtp::parse_path(text, allow_null, utf8, &rest);
  if (r.status == smtp::PathStatus::Syntax || r.status == smtp::PathStatus::NonAscii) return;
  // What follows the path is a suffix of the input (the parameters).
  require(rest.data() >= text.data() && rest.data() + rest.size() == text.data() + text.size(), "rest is a suffix");
  if (r.status == smtp::PathStatus::Null) {
    require(allow_null, "null path only where allowed");
    return;
  }
  const smtp::Mailbox& m = r.mailbox;
  require(!m.local.empty() && m.local.size() <= 64, "local part length");
  require(m.quoted == (m.local.front() == '"'), "quoted flag");
  if (!utf8) require(ascii(m.local) && ascii(m.domain), "ASCII without SMTPUTF8");
  require(m.local.find_first_of("\r\n") == std::string::npos, "no CR/LF in a local part");
  (void)smtp::local_part_is_routing(m);
  if (r.status == smtp::PathStatus::Ok) {
    require(m.domain.find_first_of(" \r\n<>") == std::string::npos, "domain has no delimiters");
    require(smtp::is_valid_domain(m.domain, utf8), "accepted domain is valid");
    // The mailbox the engine stores must parse back to itself (the spool and the
    // queue manager re-read it).
    const std::string again_text = "<" + m.str() + ">";
    const smtp::PathResult again = smtp::parse_path(again_text, false, utf8, nullptr);
    require(again.status == smtp::PathStatus::Ok, "accepted mailbox re-parses");
    require(again.mailbox.local == m.local && again.mailbox.domain == m.domain, "re-parse is identical");
    require(!again.had_source_route, "no route after re-parse");
  }
}

void check_params(std::string_view text, bool utf8) {
  const auto params = smtp::parse_params(text, utf8);
  if (!params) return;
  std::string joined;
  for (const smtp::EsmtpParam& p : *params) {
    require(!p.key.empty(), "key present");
    for (unsigned char c : p.key) require(!(c >= 'a' && c <= 'z') && c != ' ' && c != '=', "key upper-cased");
    if (p.value) {
      require(!p.value->empty(), "value not empty");
      require(p.value->find_first_of(" =\r\n") == std::string::npos, "value has no delimiters");
      if (!utf8) require(ascii(*p.value), "ASCII value without SMTPUTF8");
    }
    if (!joined.empty()) joined += ' ';
    joined += p.key;
    if (p.value) joined += "=" + *p.value;
  }
  const auto again = smtp::parse_params(joined, utf8);
  require(again && again->size() == params->size(), "parameters re-join");
  for (size_t i = 0; i < params->size(); ++i)
    require((*again)[i].key == (*params)[i].key && (*again)[i].value == (*params)[i].value, "re-join identical");
}

void check_xtext(std::string_view text) {
  const auto decoded = smtp::decode_xtext(text);
  require(decoded.has_value() == smtp::is_valid_xtext(text), "is_valid_xtext agrees with decode_xtext");
  if (decoded) require(decoded->size() <= text.size(), "decoding never grows");
  // Any octet string survives encode + decode.
  const auto round = smtp::decode_xtext(encode_xtext(text));
  require(round && *round == text, "xtext round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool utf8 = flags & 1;
  const bool allow_null = flags & 2;

  // The engine hands parse_path what follows "MAIL FROM:" / "RCPT TO:"; the
  // input may also be a whole command line, so try both.
  check_path(input, allow_null, utf8);
  const size_t colon = input.find(':');
  if (colon != std::string::npos) check_path(std::string_view(input).substr(colon + 1), allow_null, utf8);

  std::string_view rest;
  const smtp::PathResult r = smtp::parse_path(input, allow_null, utf8, &rest);
  if (r.status != smtp::PathStatus::Syntax && r.status != smtp::PathStatus::NonAscii) check_params(rest, utf8);
  check_params(input, utf8);

  const bool valid = smtp::is_valid_domain(input, utf8);
  if (valid && !utf8) require(ascii(input), "ASCII domain");
  require(smtp::ascii_lower(input).size() == input.size(), "ascii_lower keeps the length");
  require(smtp::iequals(input, smtp::ascii_lower(input)), "iequals ignores ASCII case");
  check_xtext(input);
  return 0;
}
