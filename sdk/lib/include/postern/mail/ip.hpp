#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

/**
 * IP addresses and address ranges of the mail library (Postern::mail): the one parser for
 * access lists, trusted networks, greylist networks and DNSBL white/black lists. All
 * functions are reentrant and never throw except std::bad_alloc.
 */
namespace postern::mail {

/**
 * An IPv4 or IPv6 address as 16 octets in network order; IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so one order and one memcmp cover both families.
 */
struct IpAddress {
  std::array<uint8_t, 16> octets{};

  /**
   * Parses a textual address (inet_pton syntax): "192.0.2.7", "2001:db8::7". An
   * IPv4-mapped IPv6 address is the IPv4 address.
   * @return the address, or nullopt when `text` is not one (no brackets, prefixes, zones).
   */
  static std::optional<IpAddress> parse(std::string_view text);

  /** @return true for an IPv4 address (an IPv4-mapped octet pattern). */
  bool is_v4() const;

  /** @return "192.0.2.7" for IPv4, the RFC 5952 form (inet_ntop) for IPv6. */
  std::string to_string() const;

  auto operator<=>(const IpAddress&) const = default;
};

/** An inclusive range [first, last] of addresses of one family. */
struct IpRange {
  IpAddress first;
  IpAddress last;

  /**
   * The CIDR block of `address` with `prefix` network bits, counted in the address's own
   * family (0-32 for IPv4, 0-128 for IPv6; larger values are clamped).
   */
  static IpRange block(const IpAddress& address, unsigned prefix);

  /**
   * Parses "192.0.2.7" (one address), "192.0.2.0/24" or "2001:db8::/32" (a CIDR block;
   * host bits are cleared) or "192.0.2.10-192.0.2.20" (both ends of one family, first <=
   * last). No whitespace is skipped.
   * @return the range, or nullopt when `text` is none of these.
   */
  static std::optional<IpRange> parse(std::string_view text);

  /** @return true when `address` lies in the range. */
  bool contains(const IpAddress& address) const { return first <= address && address <= last; }

  /** @return the prefix length (in the family's own bits) when the range is one CIDR block, else -1. */
  int prefix_length() const;

  bool operator==(const IpRange&) const = default;
};

}  // namespace postern::mail
