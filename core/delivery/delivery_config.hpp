#pragma once
// The manifest's <delivery> section (docs/delivery.md): the SMTP client's
// settings, the smarthost, forward routes by address mask (first match wins,
// Kaspersky ForwardRoute) and pipe routes; and the routing decision for an
// address that leaves this server.
//
// STATUS: contract fixed by the session plan; delivery_config.cpp implements it.

#include "core/config/diagnostics.hpp"
#include "core/delivery/transport.hpp"

#include <pugixml.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::core::delivery {

/** SMTP client settings (RFC 5321 §4.5.3.2 timeouts, client side). */
struct ClientOptions {
  std::string helo_name;  // empty: the manifest's server name
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds greeting_timeout{std::chrono::minutes(5)};
  std::chrono::milliseconds command_timeout{std::chrono::minutes(5)};  // MAIL, RCPT, ...
  std::chrono::milliseconds data_block_timeout{std::chrono::minutes(3)};
  std::chrono::milliseconds data_end_timeout{std::chrono::minutes(10)};
  size_t max_messages_per_connection = 100;
  std::chrono::milliseconds idle_connection_time{std::chrono::seconds(5)};  // cached connection reuse
  bool ipv6 = true;
  size_t max_addresses = 5;        // MX hosts/addresses tried per attempt (RFC 5321 §5.1)
  bool allow_loopback_mx = false;  // MX resolving to loopback is a mail loop (5.4.6) unless true
};

/** One <route match="*@example.com" to="[host:port]" | to="example.com" | pipe="/path args"/>. */
struct Route {
  std::string match;  // address mask: `*` and `?` wildcards, case-insensitive
  enum class Kind { Direct, Domain, Pipe } kind = Kind::Direct;
  NextHop hop;                    // Direct and Domain (Mx of another domain)
  std::vector<std::string> argv;  // Pipe: program and arguments (no shell)
  uint32_t line = 0;
};

struct DeliveryConfig {
  ClientOptions client;
  std::optional<NextHop> smarthost;  // every non-local address goes here unless a route matches
  std::vector<Route> routes;
  std::chrono::milliseconds pipe_timeout{std::chrono::minutes(5)};
  uint16_t mx_port = 25;  // port of MX hosts (tests point it at smtp-sink)
};

/** Reads <delivery>; an empty node gives the defaults. Errors go to `diag` with lines. */
DeliveryConfig parse_delivery_config(const pugi::xml_node& node, config::Diagnostics& diag);

/** How one outbound address travels. */
struct Decision {
  enum class Via { Smtp, Pipe } via = Via::Smtp;
  NextHop hop;                    // Smtp
  std::vector<std::string> argv;  // Pipe
};

/** Routes first (first match), then the smarthost, then MX of the address's domain. */
Decision route(const DeliveryConfig& cfg, std::string_view address);

/** Address mask match: `*` any run, `?` one octet, ASCII case-insensitive, whole address. */
bool mask_matches(std::string_view mask, std::string_view address);

/**
 * Splits a pipe command line into argv without a shell: blanks separate words,
 * '...' and "..." quote, backslash escapes (not inside '...').
 * @return nullopt (and `error` set) for an unterminated quote or a trailing backslash.
 */
std::optional<std::vector<std::string>> split_command_line(std::string_view text, std::string* error = nullptr);

/**
 * Parses a direct route target: "[host]", "[host:port]", "[host]:port", "[ipv6]",
 * "[ipv6]:port" (port 25 when absent). @return lower-cased host and port, nullopt if malformed.
 */
std::optional<std::pair<std::string, uint16_t>> parse_bracket_host(std::string_view text);

}  // namespace postern::core::delivery
