#pragma once
// The manifest's <queue> element (docs/queue.md): concurrency limits, the
// retry schedule (UserGate: 30m, 1h, 2h, 3h, then every 4h), the queue
// lifetime, the delay warning and DSN settings.

#include "core/config/diagnostics.hpp"

#include <pugixml.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace postern::core::queue {

struct QueueConfig {
  size_t max_connections = 100;      // deliveries running at once, all destinations together
  size_t max_per_destination = 10;   // deliveries running at once to one destination
  size_t recipients_per_attempt = 50;// recipients of one message in one attempt (one SMTP transaction)
  size_t max_active_messages = 10000;// messages loaded for delivery at once; the rest wait their turn
  /** Delay after the 1st, 2nd, ... failed attempt; the last one repeats. */
  std::vector<std::chrono::seconds> retry{std::chrono::minutes(30), std::chrono::hours(1), std::chrono::hours(2),
                                          std::chrono::hours(3), std::chrono::hours(4)};
  std::chrono::seconds min_backoff{0};
  std::chrono::seconds max_backoff{std::chrono::hours(4)};
  std::chrono::seconds lifetime{std::chrono::hours(168)};
  std::chrono::seconds delay_warning{std::chrono::hours(4)};  // 0 = no delay DSNs
  /** A destination that failed at connection level is not tried again for this long. */
  std::chrono::seconds destination_backoff{std::chrono::seconds(60)};
  /** RET absent: the whole message is returned when not larger than this, else its headers. */
  uint64_t bounce_size_limit = 64 * 1024;
  /** RET=FULL: the whole message is returned when not larger than this, else its headers. */
  uint64_t full_return_limit = 10 * 1024 * 1024;
  /** false: accept and keep every message but attempt no delivery (maintenance, tests
   *  that inspect the spool); posternctl queue flush then delivers nothing either. */
  bool deliver = true;
  std::string postmaster;  // double bounces; empty: postmaster@<first local domain or server name>

  /** The delay before the next attempt after `failed_attempts` (>= 1) failures. */
  std::chrono::seconds backoff(uint32_t failed_attempts) const;
};

/** Reads <queue>; an empty node gives the defaults. Errors go to `diag` with lines. */
QueueConfig parse_queue_config(const pugi::xml_node& node, config::Diagnostics& diag);

}  // namespace postern::core::queue
