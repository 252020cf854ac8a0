#pragma once
// IP addresses and networks for greylist: parse, mask to a prefix, contain.
// Addresses are kept as 16 octets (IPv4 as ::ffff:a.b.c.d) so that a network
// is a [lo, hi] octet range that SQLite compares as a BLOB (memcmp order).

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace postern::plugins::greylist {

struct Address {
  std::array<uint8_t, 16> octets{};
  bool v4 = false;

  /** "192.0.2.7" or "2001:db8::7" (an IPv4-mapped IPv6 address counts as IPv4). */
  static std::optional<Address> parse(std::string_view text) {
    if (text.empty() || text.size() > 45) return std::nullopt;
    const std::string s(text);
    Address a;
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
      a.v4 = true;
      a.octets[10] = a.octets[11] = 0xff;
      std::memcpy(&a.octets[12], &v4, 4);
      return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
      std::memcpy(a.octets.data(), &v6, 16);
      static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      a.v4 = std::memcmp(a.octets.data(), kMapped, 12) == 0;
      return a;
    }
    return std::nullopt;
  }

  std::string blob() const { return std::string(reinterpret_cast<const char*>(octets.data()), octets.size()); }

  std::string to_string() const {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (v4) {
      inet_ntop(AF_INET, &octets[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, octets.data(), buf, sizeof buf);
    }
    return buf;
  }
};

/** An address range given as address/prefix (prefix counted in the address's own family). */
struct Network {
  Address lo;
  Address hi;
  unsigned prefix = 0;

  static Network of(const Address& a, unsigned prefix) {
    Network n;
    n.prefix = prefix;
    const unsigned bits = a.v4 ? 96 + prefix : prefix;  // in the 128-bit form
    n.lo = a;
    n.hi = a;
    for (unsigned i = 0; i < 128; ++i) {
      if (i < bits) continue;
      const uint8_t mask = static_cast<uint8_t>(0x80u >> (i % 8));
      n.lo.octets[i / 8] &= static_cast<uint8_t>(~mask);
      n.hi.octets[i / 8] |= mask;
    }
    return n;
  }

  /** "10.0.0.0/8", "2001:db8::/32", or a bare address (a host network). */
  static std::optional<Network> parse(std::string_view text) {
    const auto slash = text.find('/');
    auto a = Address::parse(text.substr(0, slash));
    if (!a) return std::nullopt;
    const unsigned max = a->v4 ? 32 : 128;
    unsigned prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view p = text.substr(slash + 1);
      if (p.empty() || p.size() > 3) return std::nullopt;
      prefix = 0;
      for (char c : p) {
        if (c < '0' || c > '9') return std::nullopt;
        prefix = prefix * 10 + static_cast<unsigned>(c - '0');
      }
      if (prefix > max) return std::nullopt;
    }
    return of(*a, prefix);
  }

  bool contains(const Address& a) const { return lo.octets <= a.octets && a.octets <= hi.octets; }

  /** The canonical text, "192.0.2.0/24". */
  std::string to_string() const { return lo.to_string() + "/" + std::to_string(prefix); }
};

}  // namespace postern::plugins::greylist
