#pragma once
// Mailbox events (ABI 1.3, docs/mailstore.md "Events"): what the store raises
// after each committed change — a message stored, copied, moved, expunged, or
// its flags changed — with the account, the folders, the UIDs and who acted.
// The store hands each event to one sink (posternd's plugin event bus) after
// the SQLite transaction committed and the account's write lock is released;
// the sink only queues it, and plugins see it later on a worker thread.

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::mailstore {

/** One committed change. Values of Kind equal postern_mbox_event_kind_t. */
struct MailboxEvent {
  enum class Kind : uint32_t { Stored = 0, Copied = 1, Moved = 2, Expunged = 3, Flags = 4 };
  Kind kind = Kind::Stored;
  std::string account;
  std::string folder;         // copied/moved: the source
  std::string target_folder;  // copied/moved: the target
  std::string actor;          // "delivery", "imap", "pop3", "admin", "system", or a plugin's name
  uint32_t uidvalidity = 0;
  uint32_t target_uidvalidity = 0;
  std::vector<uint32_t> uids;         // stored: [uid]; copied/moved: sources; expunged; flags: changed
  std::vector<uint32_t> target_uids;  // copied/moved: the new UIDs, parallel to `uids`
  uint64_t size = 0;                  // stored/copied/moved: octets
};

/** "stored", "copied", "moved", "expunged", "flags". */
std::string_view event_kind_name(MailboxEvent::Kind kind);

/**
 * Receives the store's events on the thread that made the change, with no
 * store lock held. It must not block or call back into the store: queue and return.
 */
using EventSink = std::function<void(MailboxEvent)>;

/**
 * Names who acts for the store calls this thread makes while the object
 * lives (the mbox_* host functions name the calling plugin; retention
 * "system"). Nests; the innermost wins. Without one, deliver() says
 * "delivery" and other calls "unknown".
 */
class ActingAs {
 public:
  explicit ActingAs(std::string_view actor);
  ~ActingAs();
  ActingAs(const ActingAs&) = delete;
  ActingAs& operator=(const ActingAs&) = delete;

 private:
  std::string previous_;
};

/** The actor set on this thread by ActingAs, or `fallback`. */
std::string current_actor(std::string_view fallback = "unknown");

/** Where a store's events go; shared by MailStore and its accounts. Thread-safe. */
class EventRelay {
 public:
  void set_sink(EventSink sink);
  /** Whether a sink is set (so callers can skip building events nobody wants). */
  bool active() const;
  /** Hands `event` to the sink, if any. Call with no store lock held. */
  void publish(MailboxEvent event) const;

 private:
  mutable std::mutex mu_;
  EventSink sink_;
};

}  // namespace postern::core::mailstore
