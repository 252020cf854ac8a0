#pragma once
/**
 * @file settings.hpp
 * The dnsbl plugin's configuration (its <plugin> element), parsed and
 * validated once in init; immutable afterwards and shared by every lookup.
 * The format is documented in plugins/dnsbl/README.md.
 */

#include "address.hpp"

#include <postern/sdk/sdk.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace postern::plugins::dnsbl {

namespace sdk = postern::sdk;

/** What a list is asked about. */
enum class ListType {
  Ip,   ///< the client's address, at connect (RFC 5782 §2.1, §2.4)
  Rhs,  ///< the MAIL FROM domain and optionally the HELO name, at mail_from (RFC 5782 §2.2)
  Uri,  ///< registered domains and IPv4 hosts of URLs in the body, at data_end
};

/** What a hit does. */
enum class Action { Reject, TempFail, Score };

std::string_view to_string(ListType t);
std::string_view to_string(Action a);

/** Which A answers of a list count as a listing. */
struct AnswerFilter {
  /** Explicit answers (`answers="127.0.0.2 127.0.0.4-127.0.0.11"`); empty = the default set. */
  AddressSet answers;
  bool has_answers = false;
  /** `mask="0x0c"`: hit when (answer as a 32-bit number & mask) != 0; 0 = no mask. */
  uint32_t mask = 0;

  /**
   * Whether `answer` (an IPv4 address in text form) is a listing. Without
   * `answers`, any address in 127.0.0.0/8 counts except 127.0.0.1 (RFC 5782
   * §5) and 127.255.255.0/24 (error codes of Spamhaus and others); addresses
   * outside 127.0.0.0/8 never count unless listed in `answers` (a resolver
   * that rewrites NXDOMAIN must not block everyone).
   */
  bool matches(std::string_view answer) const;
};

/** Counters of a list's failed lookups, for the rate-limited warning. */
struct ListHealth {
  std::atomic<uint64_t> failures_since_report{0};
  std::atomic<int64_t> last_report_ms{0};
};

/** One <list> element. */
struct List {
  std::string zone;
  ListType type = ListType::Ip;
  AnswerFilter filter;
  Action action = Action::Reject;
  std::string symbol;  ///< score action: the symbol's name
  double weight = 0;   ///< score action: its weight
  std::chrono::milliseconds timeout{2000};
  /** Reply text template; empty = the built-in one for the type (see README). */
  std::string message;
  bool txt = true;        ///< reject/tempfail: fetch the TXT record for the reply
  bool ipv4 = true;       ///< ip lists: query IPv4 clients
  bool ipv6 = true;       ///< ip lists: query IPv6 clients
  bool sender = true;     ///< rhs lists: query the MAIL FROM domain
  bool helo = false;      ///< rhs lists: query the HELO/EHLO name
  uint32_t line = 0;
  std::shared_ptr<ListHealth> health = std::make_shared<ListHealth>();
};

/** Static addresses and resolved domains of a <whitelist>, <blacklist> or <exceptions>. */
struct AddressList {
  AddressSet addresses;
  std::vector<std::string> domains;     ///< whitelist/blacklist: their A/AAAA; exceptions: names not looked up
  std::vector<std::string> mx_domains;  ///< exceptions only: clients that are MX hosts of these domains
};

struct Settings {
  std::vector<List> lists;
  AddressList whitelist;
  AddressList blacklist;
  AddressList exceptions;
  std::string blacklist_message = "Service unavailable; client [%ip] is blacklisted";
  /** Distinct URL domains looked up per message (each against every uri list). */
  size_t max_uri_names = 20;
  /** Answers the plugin keeps for their TTL (0: ask the daemon's resolver every time). */
  size_t cache_entries = 10000;
  /** Octets of decoded text scanned for URLs per message. */
  size_t max_scan_bytes = 2 * 1024 * 1024;
  /** Longest interval between two resolutions of a whitelist/blacklist/MX domain. */
  std::chrono::milliseconds refresh_max{3'600'000};
  /** Shortest interval (TTLs below it are raised to it). */
  std::chrono::milliseconds refresh_min{60'000};
  /** The plugin's hook timeout from the manifest (default 5 s). */
  std::chrono::milliseconds hook_timeout{5000};

  bool has(ListType t) const;
};

/**
 * Reads and validates the configuration. @return the settings, or an error
 * naming the element and its manifest line, one line.
 */
std::optional<Settings> parse_settings(const sdk::Config& root, std::string& error);

/**
 * Expands a reply template: %s the listed item (address or name), %ip the
 * client's address, %z the zone, %a the answer, %t the list's TXT text, %% a
 * percent sign. The result is one printable line.
 */
std::string expand_message(std::string_view tmpl, std::string_view item, std::string_view client_ip,
                           std::string_view zone, std::string_view answer, std::string_view txt);

}  // namespace postern::plugins::dnsbl
