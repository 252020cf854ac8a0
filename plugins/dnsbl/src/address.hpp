#pragma once
/**
 * @file address.hpp
 * IP addresses, address ranges and domain names as the dnsbl plugin needs
 * them: parsing, DNSBL query names (RFC 5782 §2.1 / §2.4), sets of ranges
 * (addresses, CIDR blocks, `a-b` ranges) and domain matching.
 */

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::plugins::dnsbl {

/** An IPv4 or IPv6 address. IPv4-mapped IPv6 (::ffff:a.b.c.d) is stored as IPv4. */
struct IpAddress {
  bool v6 = false;
  /** Network byte order; IPv4 uses the first 4 octets, the rest are zero. */
  std::array<uint8_t, 16> bytes{};

  /**
   * Parses "192.0.2.7", "2001:db8::7", "[2001:db8::7]" or "IPv6:2001:db8::7"
   * (an SMTP address literal's content). A zone index ("%eth0") is ignored.
   */
  static std::optional<IpAddress> parse(std::string_view text);

  /** Canonical text (inet_ntop). */
  std::string to_string() const;

  size_t size() const { return v6 ? 16 : 4; }
  bool operator==(const IpAddress&) const = default;
  auto operator<=>(const IpAddress&) const = default;
};

/**
 * The DNSBL query label sequence for an address (RFC 5782 §2.1, §2.4):
 * "7.2.0.192" for 192.0.2.7; for IPv6 the 32 nibbles of the full address in
 * reverse order, dot-separated. Append "." + zone for the query name.
 */
std::string reversed_labels(const IpAddress& ip);

/** An inclusive range of addresses of one family. */
struct IpRange {
  IpAddress first;
  IpAddress last;
  bool contains(const IpAddress& ip) const { return ip.v6 == first.v6 && first <= ip && ip <= last; }
};

/**
 * Parses "192.0.2.7", "192.0.2.0/24", "2001:db8::/32" or
 * "192.0.2.10-192.0.2.20". @return the range, or nullopt with `error` set to
 * a short reason.
 */
std::optional<IpRange> parse_range(std::string_view text, std::string& error);

/**
 * A set of address ranges. Built once (add, then seal), then read from any
 * thread: lookups are a binary search over merged ranges.
 */
class AddressSet {
 public:
  void add(const IpRange& r) { ranges_.push_back(r); sealed_ = false; }
  void add(const IpAddress& ip) { add(IpRange{ip, ip}); }
  /** Sorts and merges overlapping ranges; call after the last add(). */
  void seal();
  bool contains(const IpAddress& ip) const;
  bool empty() const { return ranges_.empty(); }
  size_t size() const { return ranges_.size(); }

 private:
  std::vector<IpRange> ranges_;
  bool sealed_ = true;
};

/**
 * Lower-cases a host or domain name and strips one trailing dot. @return
 * nullopt unless it is a syntactically valid DNS name of at least two labels
 * (labels of 1..63 octets of letters, digits, '-' and '_', 253 octets total).
 */
std::optional<std::string> normalize_domain(std::string_view name);

/** `name` equals `domain` or is a subdomain of it (both normalized). */
bool in_domain(std::string_view name, std::string_view domain);

/** Replaces CR, LF, control octets and non-ASCII with spaces and caps the length (SMTP reply text). */
std::string sanitize_reply_text(std::string_view text, size_t max_len = 200);

}  // namespace postern::plugins::dnsbl
