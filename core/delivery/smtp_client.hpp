#pragma once
// Internals of the SMTP client (smtp_client.cpp) that the unit tests check:
// MX ordering (RFC 5321 §5.1, RFC 7505) and the client TLS context.

#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::delivery {

struct MxHost {
  int preference = 0;
  std::string host;  // lower case, no trailing dot
};

/** The MX set of a domain, parsed from resolver records "pref exchange". */
struct MxSet {
  bool null_mx = false;  // RFC 7505: the only record is "0 ." -> no mail accepted
  std::vector<MxHost> hosts;
};

/**
 * Parses MX records ("10 mx.example.com") and orders them by preference, shuffling
 * hosts of equal preference (RFC 5321 §5.1). A "." exchange next to real hosts is
 * ignored; a lone "." is a null MX. Malformed records are skipped.
 */
MxSet order_mx(const std::vector<std::string>& records, std::mt19937& rng);

}  // namespace postern::core::delivery
