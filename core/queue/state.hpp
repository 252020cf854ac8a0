#pragma once
// Per-message delivery state: which recipients are done, attempts, next try,
// last error. Stored as <queue>/state/<queue-id>, replaced atomically (tmp,
// fsync, rename) after each delivery round that leaves the message queued.
// No state file = nothing delivered yet (a message's first round needs none).
// Format and crash rules: docs/queue.md.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::queue {

enum class UnitStatus {
  Pending,    // not final yet (never tried, or deferred)
  Delivered,  // final delivery (local mailbox, pipe, or an SMTP peer that takes over DSN duty)
  Relayed,    // accepted by an SMTP peer (NOTIFY=SUCCESS then gives a "relayed" DSN)
  Failed,     // permanent failure, or the queue lifetime ended
  Dropped,    // removed without a DSN (a plugin discarded it, a failed bounce, ...)
};
std::string_view unit_status_name(UnitStatus s);
std::optional<UnitStatus> unit_status_from_name(std::string_view name);

/** One delivery target of one envelope recipient (aliases and lists expand to several). */
struct Unit {
  uint32_t rcpt = 0;       // index into Envelope::recipients
  std::string target;      // the address delivered to; "" = not resolved through the directory yet
  bool local = false;      // target is a local account (mailbox store)
  UnitStatus status = UnitStatus::Pending;
  int code = 0;            // last result: SMTP-style code (0 = not tried)
  std::string enhanced;    // "4.4.1"
  std::string text;        // one line
  std::string remote;      // "mx.example.net[192.0.2.1]:25", "pipe:/usr/bin/x", "local"
  bool reported = false;   // the DSN its final status needs (if any) has been spooled
  bool final() const { return status != UnitStatus::Pending; }
};

struct MessageState {
  uint32_t attempts = 0;  // delivery rounds that left something pending
  std::chrono::system_clock::time_point next_try{};
  std::chrono::system_clock::time_point last_attempt{};
  bool delay_warned = false;  // the "delayed" DSN was sent
  std::vector<Unit> units;
};

/** The file text (docs/queue.md). */
std::string format_state(const MessageState& state);
/** nullopt when the text is not a complete state file (then the message starts over). */
std::optional<MessageState> parse_state(std::string_view text);

/** Writes `state` to `file` atomically: `file`.tmp, fsync, rename. @throws std::system_error. */
void write_state_file(const std::filesystem::path& file, const MessageState& state);
/** nullopt when missing or malformed. */
std::optional<MessageState> read_state_file(const std::filesystem::path& file);

}  // namespace postern::core::queue
