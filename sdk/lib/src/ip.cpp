// IP addresses and ranges: parse, mask to a prefix, print.
#include "postern/mail/ip.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace postern::mail {
namespace {

constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Longer than any textual address, IPv4-mapped IPv6 with a full first part included.
constexpr size_t kMaxAddressText = 45;

bool parse_prefix(std::string_view text, unsigned& out) {
  if (text.empty() || text.size() > 3) return false;
  out = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<unsigned>(c - '0');
  }
  return true;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.empty() || text.size() > kMaxAddressText) return std::nullopt;
  char buf[kMaxAddressText + 1];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  in_addr v4{};
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    std::memcpy(a.octets.data(), kMapped, sizeof kMapped);
    std::memcpy(&a.octets[12], &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(a.octets.data(), &v6, 16);
    return a;
  }
  return std::nullopt;
}

bool IpAddress::is_v4() const { return std::memcmp(octets.data(), kMapped, sizeof kMapped) == 0; }

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    inet_ntop(AF_INET, &octets[12], buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, octets.data(), buf, sizeof buf);
  }
  return buf;
}

IpRange IpRange::block(const IpAddress& address, unsigned prefix) {
  const unsigned family_bits = address.is_v4() ? 32 : 128;
  if (prefix > family_bits) prefix = family_bits;
  const unsigned network_bits = 128 - family_bits + prefix;  // in the 128-bit form
  IpRange r{address, address};
  for (unsigned i = network_bits; i < 128; ++i) {
    const auto mask = static_cast<uint8_t>(0x80u >> (i % 8));
    r.first.octets[i / 8] &= static_cast<uint8_t>(~mask);
    r.last.octets[i / 8] |= mask;
  }
  return r;
}

std::optional<IpRange> IpRange::parse(std::string_view text) {
  if (const size_t dash = text.find('-'); dash != std::string_view::npos) {
    const auto a = IpAddress::parse(text.substr(0, dash));
    const auto b = IpAddress::parse(text.substr(dash + 1));
    if (!a || !b || a->is_v4() != b->is_v4() || *b < *a) return std::nullopt;
    return IpRange{*a, *b};
  }
  const size_t slash = text.find('/');
  const auto a = IpAddress::parse(text.substr(0, slash));
  if (!a) return std::nullopt;
  const unsigned family_bits = a->is_v4() ? 32 : 128;
  unsigned prefix = family_bits;
  if (slash != std::string_view::npos && (!parse_prefix(text.substr(slash + 1), prefix) || prefix > family_bits)) {
    return std::nullopt;
  }
  return block(*a, prefix);
}

int IpRange::prefix_length() const {
  if (first.is_v4() != last.is_v4()) return -1;
  const unsigned family_bits = first.is_v4() ? 32 : 128;
  for (unsigned prefix = 0; prefix <= family_bits; ++prefix) {
    if (block(first, prefix) == *this) return static_cast<int>(prefix);
  }
  return -1;
}

}  // namespace postern::mail
