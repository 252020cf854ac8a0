#include "uri.hpp"

#include "address.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace postern::plugins::dnsbl {
namespace {

// Two-level public suffixes under which registrations sit at the third level.
// A small built-in subset of the Public Suffix List (see uri.hpp); sorted for
// binary search.
constexpr std::array<std::string_view, 150> kTwoLevelSuffixes = {
    "ac.id", "ac.il", "ac.in", "ac.jp", "ac.kr", "ac.nz", "ac.th", "ac.uk", "ac.za",
    "ad.jp", "asn.au", "biz.tr", "co.id", "co.il", "co.in", "co.jp", "co.ke", "co.kr",
    "co.nz", "co.th", "co.tz", "co.ug", "co.uk", "co.ve", "co.za", "co.zw", "com.ar",
    "com.au", "com.bd", "com.bo", "com.br", "com.cn", "com.co", "com.cy", "com.do", "com.ec",
    "com.eg", "com.gh", "com.gr", "com.gt", "com.hk", "com.kw", "com.lb", "com.mt", "com.mx",
    "com.my", "com.ng", "com.np", "com.pa", "com.pe", "com.ph", "com.pk", "com.pl", "com.pr",
    "com.py", "com.qa", "com.sa", "com.sg", "com.sv", "com.tr", "com.tw", "com.ua", "com.uy",
    "com.ve", "com.vn", "ed.jp", "edu.au", "edu.br", "edu.cn", "edu.hk", "edu.sg", "edu.tw",
    "firm.in", "gen.in", "gen.tr", "go.jp", "go.kr", "gob.ar", "gob.mx", "gov.au", "gov.br",
    "gov.cn", "gov.hk", "gov.in", "gov.sg", "gov.uk", "gov.za", "govt.nz", "gr.jp", "id.au",
    "idv.tw", "in.th", "ind.in", "lg.jp", "ltd.uk", "me.uk", "ne.jp", "ne.kr", "net.ar",
    "net.au", "net.br", "net.cn", "net.co", "net.hk", "net.il", "net.in", "net.mx", "net.my",
    "net.nz", "net.ph", "net.pk", "net.pl", "net.sg", "net.tr", "net.tw", "net.ua", "net.uk",
    "net.vn", "net.za", "nhs.uk", "or.id", "or.jp", "or.ke", "or.kr", "org.ar", "org.au",
    "org.br", "org.cn", "org.co", "org.hk", "org.il", "org.in", "org.mx", "org.my", "org.nz",
    "org.ph", "org.pk", "org.pl", "org.sg", "org.tr", "org.tw", "org.ua", "org.uk", "org.za",
    "plc.uk", "police.uk", "re.kr", "sch.uk", "web.id", "web.za",
};
static_assert(std::is_sorted(kTwoLevelSuffixes.begin(), kTwoLevelSuffixes.end()));

bool is_two_level_suffix(std::string_view s) {
  return std::binary_search(kTwoLevelSuffixes.begin(), kTwoLevelSuffixes.end(), s);
}

bool lower_starts(std::string_view text, size_t at, std::string_view word) {
  if (text.size() - at < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[at + i])) != word[i]) return false;
  }
  return true;
}

// Characters that may appear in a URL's authority as this scanner reads it.
bool authority_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~' || c == '%' || c == ':' || c == '@' ||
         c == '[' || c == ']';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The host of an authority ("user:pw@Host.Example:8080"), normalized, or "".
std::string host_of(std::string_view authority) {
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority.front() == '[') return {};  // IPv6 literal: not looked up
  if (auto colon = authority.find(':'); colon != std::string_view::npos) authority = authority.substr(0, colon);
  std::string host;
  host.reserve(authority.size());
  for (size_t i = 0; i < authority.size(); ++i) {
    if (authority[i] == '%') {
      if (i + 2 >= authority.size()) return {};
      const int hi = hex_value(authority[i + 1]);
      const int lo = hex_value(authority[i + 2]);
      if (hi < 0 || lo < 0) return {};
      host += static_cast<char>(hi * 16 + lo);
      i += 2;
      continue;
    }
    host += authority[i];
  }
  while (!host.empty() && host.back() == '.') host.pop_back();
  if (is_ipv4_literal(host)) {
    auto ip = IpAddress::parse(host);
    return ip ? ip->to_string() : std::string{};
  }
  auto name = normalize_domain(host);
  if (!name) return {};
  // A numeric top-level label is never a real name (RFC 3696 §2).
  const auto dot = name->rfind('.');
  const std::string_view tld = std::string_view(*name).substr(dot + 1);
  if (std::all_of(tld.begin(), tld.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
    return {};
  return *name;
}

}  // namespace

bool is_ipv4_literal(std::string_view host) {
  int dots = 0;
  size_t digits = 0;
  for (char c : host) {
    if (c == '.') {
      if (digits == 0) return false;
      ++dots;
      digits = 0;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      if (++digits > 3) return false;
    } else {
      return false;
    }
  }
  return dots == 3 && digits > 0;
}

namespace {

// URL candidates examined per call: bounds the work on a body made of URLs.
constexpr size_t kMaxCandidates = 4096;

struct ScanState {
  size_t candidates = 0;
  std::string_view last_authority;  // repeated URLs are common; skip re-parsing them
};

// Takes the authority at `start`; false when `limit` or the candidate budget is reached.
bool take_host(std::string_view text, size_t start, size_t limit, std::vector<std::string>& out, size_t& next,
               ScanState& st) {
  size_t end = start;
  while (end < text.size() && end - start < 512 && authority_char(text[end])) ++end;
  next = std::max(end, start + 1);
  if (++st.candidates > kMaxCandidates) return false;
  const std::string_view authority = text.substr(start, end - start);
  if (authority == st.last_authority) return true;
  st.last_authority = authority;
  // A host cut short by a non-ASCII octet (a Unicode IDN) is not the real host.
  if (end < text.size() && static_cast<unsigned char>(text[end]) >= 0x80) return true;
  std::string host = host_of(authority);
  if (host.empty() || std::find(out.begin(), out.end(), host) != out.end()) return true;
  out.push_back(std::move(host));
  return out.size() < limit;
}

}  // namespace

bool extract_url_hosts(std::string_view text, size_t limit, std::vector<std::string>& out) {
  if (out.size() >= limit) return false;
  ScanState st;
  // Searching for the rare "://" and "www." (memchr-based finds) instead of
  // looking at every octet keeps a 2 MiB body to a few milliseconds.
  for (size_t pos = text.find("://"); pos != std::string_view::npos; pos = text.find("://", pos)) {
    const bool http = pos >= 4 && lower_starts(text, pos - 4, "http");
    const bool https = pos >= 5 && lower_starts(text, pos - 5, "https");
    if (!http && !https) {
      pos += 3;
      continue;
    }
    size_t next = 0;
    if (!take_host(text, pos + 3, limit, out, next, st)) return false;
    pos = next;
  }
  for (std::string_view www : {"www.", "WWW."}) {
    for (size_t pos = text.find(www); pos != std::string_view::npos; pos = text.find(www, pos)) {
      // A bare www. name only at a word start ("awww.x" is not one, nor the host of a URL found above).
      const char before = pos == 0 ? ' ' : text[pos - 1];
      const bool word_start = !(std::isalnum(static_cast<unsigned char>(before)) || before == '.' || before == '-' ||
                                before == '_' || before == '@' || before == '/');
      if (!word_start) {
        pos += 4;
        continue;
      }
      size_t next = 0;
      if (!take_host(text, pos, limit, out, next, st)) return false;
      pos = next;
    }
  }
  return true;
}

std::string registered_domain(std::string_view host) {
  if (is_ipv4_literal(host)) return std::string(host);
  const size_t last = host.rfind('.');
  if (last == std::string_view::npos || last == 0) return std::string(host);
  const size_t second = host.rfind('.', last - 1);
  if (second == std::string_view::npos) return std::string(host);
  const std::string_view two = host.substr(second + 1);
  if (!is_two_level_suffix(two)) return std::string(two);
  if (second == 0) return std::string(host);
  const size_t third = host.rfind('.', second - 1);
  return std::string(third == std::string_view::npos ? host : host.substr(third + 1));
}

}  // namespace postern::plugins::dnsbl
