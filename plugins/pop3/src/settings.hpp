#pragma once
// pop3: the <plugin name="pop3" .../> attributes (see ../README.md).

#include <postern/sdk/host.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace postern::plugins::pop3 {

struct Settings {
  /** RFC 1939 §3: the autologout timer is at least 10 minutes. */
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  /** Failed logins on one connection before it is closed. */
  uint32_t max_failures = 3;
  /** Bad commands (unknown, syntax, overlong, NUL) on one connection before it is closed. */
  uint32_t max_bad_commands = 20;
  /** Delay before the reply to the first failed login; doubles with each further failure. */
  std::chrono::milliseconds login_delay{std::chrono::seconds(1)};
  /** The doubling stops here. */
  std::chrono::milliseconds login_delay_max{std::chrono::seconds(30)};
  /** A peer IP's failures are forgotten after this long without a new one. */
  std::chrono::milliseconds failure_window{std::chrono::minutes(15)};
  /**
   * Failed logins from one peer address (IPv6: one /64) within failure_window that lock it
   * out for login_lockout_time: its logins are refused before any password is checked.
   * 0: no lockout (the default).
   */
  uint32_t login_lockout_failures = 0;
  /** How long an address lockout lasts. */
  std::chrono::milliseconds login_lockout_time{std::chrono::minutes(10)};
  /** Keep the sizes as sent in <state>/pop3/sizes.sqlite (else they are recomputed at each login). */
  bool size_cache = true;
};

/**
 * Reads the plugin element's attributes.
 * @return the settings, or nullopt with a one-line `error` naming the line.
 */
std::optional<Settings> parse_settings(const sdk::Config& config, std::string* error);

}  // namespace postern::plugins::pop3
