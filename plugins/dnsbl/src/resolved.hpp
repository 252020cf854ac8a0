#pragma once
/**
 * @file resolved.hpp
 * Addresses of configured domains, kept fresh through the host's resolver:
 * the <domain> entries of <whitelist>/<blacklist> (their A and AAAA records)
 * and the <mx> entries of <exceptions> (the A/AAAA of their MX hosts; the
 * domain itself when it has no MX, RFC 5321 §5.1).
 *
 * Each domain is resolved when the plugin starts and again when the shortest
 * TTL of its answers has passed (kept between refresh_min and refresh_max).
 * A failed resolution (timeout, SERVFAIL) keeps the previous addresses and
 * is retried after refresh_min. Until the first answer a domain matches
 * nothing. Lookups never block: answers arrive on I/O threads; contains()
 * may be called from any thread.
 */

#include "address.hpp"

#include <postern/sdk/sdk.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace postern::plugins::dnsbl {

class ResolvedDomains {
 public:
  enum class Mode {
    Address,  ///< the domain's own A/AAAA
    Mx,       ///< the A/AAAA of its MX hosts
  };

  /** @param what names the set in log lines ("whitelist", "blacklist", "exceptions mx"). */
  ResolvedDomains(std::string what, Mode mode) : what_(std::move(what)), mode_(mode) {}
  ResolvedDomains(const ResolvedDomains&) = delete;
  ResolvedDomains& operator=(const ResolvedDomains&) = delete;

  /**
   * Starts resolving `domains`. The host's DNS callbacks and timers are all
   * finished before the plugin is destroyed (postern_abi.h, on_destroy), so
   * they may refer to this object.
   */
  void start(sdk::Host host, const std::vector<std::string>& domains, std::chrono::milliseconds timeout,
             std::chrono::milliseconds refresh_min, std::chrono::milliseconds refresh_max);

  /** The address belongs to one of the domains (as last resolved). */
  bool contains(const IpAddress& ip) const;
  /** The domain whose addresses include `ip`, or "" (for log lines). */
  std::string domain_of(const IpAddress& ip) const;
  /** How many domains have been resolved at least once. */
  size_t resolved_count() const;

 private:
  struct Entry {
    std::string domain;
    std::vector<IpAddress> addresses;
    bool resolved = false;
  };
  struct Gather;

  void resolve(size_t index);
  void resolve_hosts(size_t index, std::vector<std::string> hosts, uint32_t ttl);
  void finish(size_t index, Gather& g);
  void schedule(size_t index, uint32_t ttl_seconds, bool failed);

  std::string what_;
  Mode mode_;
  sdk::Host host_{nullptr, nullptr};
  std::chrono::milliseconds timeout_{2000};
  std::chrono::milliseconds refresh_min_{60'000};
  std::chrono::milliseconds refresh_max_{3'600'000};
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
};

}  // namespace postern::plugins::dnsbl
