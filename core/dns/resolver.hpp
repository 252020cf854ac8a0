#pragma once
// The core's asynchronous DNS resolver: c-ares driven by Boost.Asio, with a
// TTL cache and coalescing of identical in-flight queries. It never blocks the
// event loop. See docs/dns.md for the design and its limits.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::dns {

/** Outcome of a query; same values and order as postern_dns_status_t. */
enum class Status { Ok, NoData, NxDomain, Timeout, ServFail, Cancelled };

/**
 * One resource record rendered as text. `data` by type:
 * A/AAAA: address text; MX: "pref exchange"; TXT: the strings of one record
 * concatenated; PTR/CNAME/NS: name; SRV: "prio weight port target";
 * SOA: "mname rname serial refresh retry expire minimum";
 * TLSA: "usage selector mtype hex" (lower-case hex); any other type:
 * RFC 3597 "\# len hex". Names have no trailing dot; the root name is ".".
 */
struct Record {
  uint16_t type;
  uint32_t ttl;  ///< seconds; on a cache hit, what is left of it
  std::string data;
};

/** A query's result. */
struct Answer {
  Status status = Status::ServFail;
  std::string name;  ///< the name as queried
  uint16_t type = 0;  ///< the type as queried
  /** Smallest TTL of the records (and of the CNAMEs leading to them); on
   *  NoData/NxDomain the negative TTL (RFC 2308 §5); 0 for other statuses. */
  uint32_t min_ttl = 0;
  std::vector<Record> records;  ///< MX and SRV sorted by preference/priority
};

/** Start-up configuration of a Resolver. */
struct ResolverOptions {
  /** "127.0.0.1:5353", "[::1]:53", "10.0.0.1", "::1"; empty = /etc/resolv.conf. */
  std::vector<std::string> servers;
  std::chrono::milliseconds timeout{5000};  ///< default per-query timeout
  int tries = 2;                            ///< c-ares attempts per server
  size_t cache_entries = 100000;            ///< 0 disables the cache
  std::chrono::seconds max_ttl{86400};      ///< TTLs above this are capped
};

/**
 * Asynchronous DNS stub resolver over c-ares.
 *
 * All c-ares work happens on an internal strand of the io_context, so the
 * io_context may be run by several threads. Names are queried as given (no
 * search list, no /etc/hosts). Destroy the Resolver before its io_context;
 * outstanding callbacks then receive Status::Cancelled.
 */
class Resolver {
 public:
  /**
   * Creates the c-ares channel (reads /etc/resolv.conf when no servers are given).
   * @param io the io_context that runs all I/O and every callback
   * @param options servers, timeouts, cache size
   * @throws std::invalid_argument for a malformed server address
   * @throws std::runtime_error when c-ares cannot be initialised
   */
  Resolver(boost::asio::io_context& io, ResolverOptions options);
  /** Equivalent to shutdown(); outstanding callbacks still run (Cancelled). */
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  using Callback = std::function<void(const Answer&)>;

  /**
   * Looks up `name`/`type` (class IN). Callable from any thread.
   * @param name a domain name; a trailing dot is optional
   * @param type an IANA RR type (1 A, 28 AAAA, 15 MX, 16 TXT, 52 TLSA, ...)
   * @param timeout Status::Timeout is reported after this long; 0 = the default
   * @param cb runs exactly once, posted to the io_context (never inline from
   *   query()): with the answer, Timeout, or Cancelled on shutdown
   * Answers (positive and negative) are cached by TTL; concurrent identical
   * queries share one lookup.
   */
  void query(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb);

  /** Cancels everything outstanding (callbacks get Cancelled); later queries
   *  are answered Cancelled too. Callable from any thread; idempotent. */
  void shutdown();

  /** Counters since construction. */
  struct Stats {
    uint64_t queries;     ///< calls to query()
    uint64_t cache_hits;  ///< queries answered from the cache
    uint64_t timeouts;    ///< callbacks that got Timeout
    uint64_t failures;    ///< callbacks that got ServFail
  };
  /** @return a snapshot of the counters; callable from any thread. */
  Stats stats() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

/**
 * Reverses an IPv4 address for in-addr.arpa / DNSBL lookups.
 * @return "4.3.2.1" for "1.2.3.4" (without a zone), empty when `ip` is not a dotted quad
 */
std::string reverse_ipv4(std::string_view ip);

/**
 * Reverses an IPv6 address into nibble format for ip6.arpa / DNSBL lookups.
 * @return 32 dot-separated lower-case nibbles, least significant first
 *   (without a zone), empty when `ip` is not an IPv6 address
 */
std::string reverse_ipv6(std::string_view ip);

}  // namespace postern::core::dns
