#pragma once
// Turns what c-ares hands to a query callback (status + raw response) into an
// Answer: records rendered as text, TTLs, NoData vs NxDomain, negative TTL.
// Pure functions, no I/O, so the rendering and TTL rules are unit-testable.

#include "core/dns/resolver.hpp"

#include <chrono>
#include <cstdint>
#include <string_view>

namespace postern::core::dns {

/** Negative TTL used when a NoData/NxDomain response carries no SOA. */
inline constexpr uint32_t kDefaultNegativeTtl = 300;

/**
 * Builds the Answer for one finished c-ares query.
 * @param name the name as queried (copied into the answer)
 * @param type the type as queried
 * @param ares_status the status c-ares passed to the query callback
 * @param abuf the raw response c-ares passed (may be null, e.g. on timeout)
 * @param alen its length
 * @param max_ttl every TTL in the answer is capped to this
 * @return Ok with at least one record, NoData/NxDomain with the negative TTL
 *   in min_ttl, or Timeout/ServFail/Cancelled without records
 */
Answer make_answer(std::string_view name, uint16_t type, int ares_status, const unsigned char* abuf,
                   int alen, std::chrono::seconds max_ttl);

/**
 * The negative-caching TTL of a response (RFC 2308 §5): min(SOA TTL, SOA
 * MINIMUM) of the first SOA in the authority section, else kDefaultNegativeTtl.
 * @return seconds; kDefaultNegativeTtl when `abuf` is null or malformed
 */
uint32_t negative_ttl(const unsigned char* abuf, int alen);

}  // namespace postern::core::dns
