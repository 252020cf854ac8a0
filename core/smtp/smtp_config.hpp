#pragma once
// Settings of the SMTP engine, read from the manifest's <smtp> element
// (docs/smtp.md). Defaults are production values.

#include "core/config/diagnostics.hpp"
#include "core/config/manifest.hpp"
#include "core/smtp/auth.hpp"
#include "core/smtp/data_decoder.hpp"
#include "core/smtp/recipient_policy.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <pugixml.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::smtp {

struct SmtpConfig {
  // Limits (issue 3, S4).
  uint64_t max_message_size = 25 * 1024 * 1024;  // SIZE advertised; 552 5.3.4 beyond
  size_t max_recipients = 100;                    // per message; 452 4.5.3 beyond
  size_t max_messages_per_session = 100;          // 421 4.7.0 beyond
  size_t max_hops = 100;                          // Received fields; 554 5.4.0 beyond
  size_t max_line_length = 512;                   // command line incl. CRLF; 500 5.5.2 beyond
  size_t max_sessions = 1000;                     // in total per listener; 421 4.7.0 beyond
  size_t max_sessions_per_ip = 50;                // 421 4.7.0 beyond
  size_t max_errors = 20;                         // protocol errors before 421 and close
  uint64_t min_free_disk = 64 * 1024 * 1024;      // spool file system; 452 4.3.1 below

  // RFC 5321 §4.5.3.2 timeouts, server side.
  std::chrono::milliseconds command_timeout{std::chrono::minutes(5)};  // waiting for a command
  std::chrono::milliseconds data_timeout{std::chrono::minutes(3)};     // between DATA/BDAT blocks
  std::chrono::milliseconds tls_handshake_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds greet_pause{0};  // early-talker window before the banner

  // Defences.
  size_t tarpit_after = 5;                                     // recipients before delays start
  std::chrono::milliseconds tarpit_delay{std::chrono::seconds(1)};
  BareLineEnding bare_line_ending = BareLineEnding::Reject;
  bool vrfy = false;  // false: 252 for every VRFY

  // AUTH.
  std::chrono::milliseconds auth_failure_delay{std::chrono::seconds(1)};  // doubled per failure
  std::chrono::milliseconds auth_failure_delay_max{std::chrono::seconds(15)};
  size_t auth_lockout_failures = 10;  // failures from one IP within the window → locked out
  std::chrono::milliseconds auth_lockout_time{std::chrono::minutes(10)};
  std::shared_ptr<const AuthBackend> auth;  // null: AUTH not offered

  // Relay control (S3).
  std::vector<std::string> local_domains;    // lower-case
  std::vector<std::string> relay_domains;    // gateway domains: accepted from anyone
  std::vector<config::NetRange> trusted_networks;
  // The directory's view of local recipients; null: every address in a local
  // domain is accepted (set by posternd once the directory is open).
  std::shared_ptr<const RecipientPolicy> recipients;

  // Where a session runs blocking work (RCPT lookups that need the disk, MIME
  // parsing at the end of data): posternd's worker pool. Unset: the server's
  // own one-thread pool (tests, embedders). Never the session strand.
  boost::asio::any_io_executor workers;

  // Score thresholds (the manifest's <scoring>), applied at data_end when no
  // hook decided (docs/event-bus.md).
  config::ScoringPolicy scoring;

  /** Whether mail to `domain` is accepted from anyone (local or gateway). */
  bool accepts_domain(std::string_view domain) const;
  /** Whether `ip` (textual) is in trusted_networks. */
  bool is_trusted(std::string_view ip) const;
};

/**
 * Reads the manifest's <smtp> element. An empty node gives the defaults.
 * Every invalid attribute or child is reported through `diag` with its line.
 */
SmtpConfig parse_smtp_config(const pugi::xml_node& smtp, config::Diagnostics& diag);

/** IPv4 (mapped into ::ffff:0:0/96) or IPv6 text to the 16 octets NetRange uses. */
std::optional<std::array<uint8_t, 16>> ip_bytes(std::string_view ip);

}  // namespace postern::core::smtp
