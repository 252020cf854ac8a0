#pragma once
// IP addresses and networks for greylist, on the mail library's parser
// (postern/mail/ip.hpp). Addresses are kept as 16 octets (IPv4 as
// ::ffff:a.b.c.d) so that a network is a [lo, hi] octet range that SQLite
// compares as a BLOB (memcmp order).

#include <postern/mail/ip.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::plugins::greylist {

struct Address {
  std::array<uint8_t, 16> octets{};
  bool v4 = false;

  /** "192.0.2.7" or "2001:db8::7" (an IPv4-mapped IPv6 address counts as IPv4). */
  static std::optional<Address> parse(std::string_view text) {
    const auto a = mail::IpAddress::parse(text);
    if (!a) return std::nullopt;
    return Address{a->octets, a->is_v4()};
  }

  std::string blob() const { return std::string(reinterpret_cast<const char*>(octets.data()), octets.size()); }

  std::string to_string() const { return mail::IpAddress{octets}.to_string(); }
};

/** An address range given as address/prefix (prefix counted in the address's own family). */
struct Network {
  Address lo;
  Address hi;
  unsigned prefix = 0;

  static Network of(const Address& a, unsigned prefix) {
    const mail::IpRange r = mail::IpRange::block(mail::IpAddress{a.octets}, prefix);
    return Network{Address{r.first.octets, a.v4}, Address{r.last.octets, a.v4},
                   std::min(prefix, a.v4 ? 32u : 128u)};
  }

  /** "10.0.0.0/8", "2001:db8::/32", or a bare address (a host network); not an a-b range. */
  static std::optional<Network> parse(std::string_view text) {
    if (text.find('-') != std::string_view::npos) return std::nullopt;
    const auto r = mail::IpRange::parse(text);
    if (!r) return std::nullopt;
    const bool v4 = r->first.is_v4();
    return Network{Address{r->first.octets, v4}, Address{r->last.octets, v4},
                   static_cast<unsigned>(r->prefix_length())};
  }

  bool contains(const Address& a) const { return lo.octets <= a.octets && a.octets <= hi.octets; }

  /** The canonical text, "192.0.2.0/24". */
  std::string to_string() const { return lo.to_string() + "/" + std::to_string(prefix); }
};

}  // namespace postern::plugins::greylist
