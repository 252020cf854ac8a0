#include "address.hpp"

#include <arpa/inet.h>

#include <postern/mail/ascii.hpp>
#include <postern/mail/ip.hpp>

#include <algorithm>
#include <cctype>

namespace postern::plugins::dnsbl {
namespace {

using mail::istarts_with;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// The dnsbl form of a library address: IPv4 in the first 4 octets.
IpAddress from_mail(const mail::IpAddress& a) {
  IpAddress out;
  if (a.is_v4()) {
    std::copy_n(a.octets.begin() + 12, 4, out.bytes.begin());
  } else {
    out.bytes = a.octets;
    out.v6 = true;
  }
  return out;
}

// The address right after `ip`; false when `ip` is the family's last.
bool next_address(IpAddress& ip) {
  for (size_t i = ip.size(); i-- > 0;) {
    if (++ip.bytes[i] != 0) return true;
  }
  return false;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  text = trim(text);
  if (istarts_with(text, "ipv6:")) text.remove_prefix(5);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  if (istarts_with(text, "ipv6:")) text.remove_prefix(5);
  if (auto pct = text.find('%'); pct != std::string_view::npos) text = text.substr(0, pct);
  const auto a = mail::IpAddress::parse(text);
  if (!a) return std::nullopt;
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket: listed as IPv4.
  return from_mail(*a);
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof buf);
  return buf;
}

std::string reversed_labels(const IpAddress& ip) {
  std::string out;
  if (!ip.v6) {
    for (int i = 3; i >= 0; --i) {
      out += std::to_string(ip.bytes[static_cast<size_t>(i)]);
      if (i != 0) out += '.';
    }
    return out;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(63);
  for (int i = 15; i >= 0; --i) {
    const uint8_t b = ip.bytes[static_cast<size_t>(i)];
    out += kHex[b & 0x0f];
    out += '.';
    out += kHex[b >> 4];
    if (i != 0) out += '.';
  }
  return out;
}

std::optional<IpRange> parse_range(std::string_view text, std::string& error) {
  text = trim(text);
  if (const auto r = mail::IpRange::parse(text)) return IpRange{from_mail(r->first), from_mail(r->last)};
  const bool dash = text.find('-') != std::string_view::npos;
  const bool slash = text.find('/') != std::string_view::npos;
  if (!dash && !slash) {
    // One address, also as an SMTP address literal ("[IPv6:...]").
    if (auto ip = IpAddress::parse(text)) return IpRange{*ip, *ip};
  }
  error = "\"" + std::string(text) + "\" " +
          (dash    ? "is not an address range a-b (two addresses of one family, the first not after the last)"
           : slash ? "is not a CIDR block"
                   : "is not an IP address, CIDR block or a-b range");
  return std::nullopt;
}

void AddressSet::seal() {
  std::sort(ranges_.begin(), ranges_.end(), [](const IpRange& a, const IpRange& b) { return a.first < b.first; });
  std::vector<IpRange> merged;
  for (const IpRange& r : ranges_) {
    if (!merged.empty() && merged.back().first.v6 == r.first.v6) {
      IpAddress after = merged.back().last;
      const bool has_next = next_address(after);
      // Overlapping or adjacent (no address between them): one range.
      if (!has_next || r.first <= after) {
        if (merged.back().last < r.last) merged.back().last = r.last;
        continue;
      }
    }
    merged.push_back(r);
  }
  ranges_ = std::move(merged);
  sealed_ = true;
}

bool AddressSet::contains(const IpAddress& ip) const {
  if (!sealed_) {
    return std::any_of(ranges_.begin(), ranges_.end(), [&](const IpRange& r) { return r.contains(ip); });
  }
  // The last range starting at or before `ip`.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), ip,
                             [](const IpAddress& a, const IpRange& r) { return a < r.first; });
  if (it == ranges_.begin()) return false;
  return std::prev(it)->contains(ip);
}

std::optional<std::string> normalize_domain(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  size_t label = 0;
  size_t labels = 1;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '.') {
      if (label == 0) return std::nullopt;
      label = 0;
      ++labels;
      out += c;
      continue;
    }
    if (!(std::isalnum(u) || c == '-' || c == '_') || u >= 0x80) return std::nullopt;
    if (++label > 63) return std::nullopt;
    out += static_cast<char>(std::tolower(u));
  }
  if (label == 0 || labels < 2) return std::nullopt;
  return out;
}

bool in_domain(std::string_view name, std::string_view domain) {
  if (name.size() == domain.size()) return name == domain;
  return name.size() > domain.size() && name.ends_with(domain) && name[name.size() - domain.size() - 1] == '.';
}

std::string sanitize_reply_text(std::string_view text, size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len));
  for (char c : text) {
    if (out.size() >= max_len) break;
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? ' ' : c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

}  // namespace postern::plugins::dnsbl
