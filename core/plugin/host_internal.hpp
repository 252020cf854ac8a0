#pragma once
// Definitions of the ABI's opaque handles (event, pending, message, timer)
// shared by the host API (host_api.cpp) and the chain runner (chain.cpp).

#include "core/event/event.hpp"
#include "core/plugin/loader.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::plugin {

/** A hook's answer, owned (copied out of postern_hook_result_t). */
struct HookAnswer {
  uint32_t verdict = POSTERN_VERDICT_CONTINUE;
  uint32_t flags = 0;
  uint32_t code = 0;
  std::string enhanced;
  std::string text;
  std::vector<event::Symbol> symbols;  // added through the pending handle
  // Edits made through the pending handle (ABI 1.3), applied with the answer.
  std::vector<event::HeaderEdit> header_edits;
  std::vector<std::string> recipients_added;
  std::vector<std::string> recipients_removed;
  std::optional<event::SenderChange> sender_change;
  std::optional<std::string> body_replacement;
  std::string body_replaced_by;

  static HookAnswer copy(const postern_hook_result_t& r) {
    HookAnswer a;
    a.verdict = r.verdict;
    a.flags = r.flags;
    a.code = r.smtp_code;
    if (r.enhanced.ptr != nullptr) a.enhanced.assign(r.enhanced.ptr, r.enhanced.len);
    if (r.text.ptr != nullptr) a.text.assign(r.text.ptr, r.text.len);
    return a;
  }
};

/**
 * The session side of a pending hook: the chain runner waits on `timer`
 * (on the session's strand); a completion posts the answer there and cancels it.
 */
struct PendingWait {
  explicit PendingWait(boost::asio::any_io_executor ex) : executor(std::move(ex)) {}
  boost::asio::any_io_executor executor;
  // The timer lives in the runner's coroutine frame, never here: a plugin
  // thread may drop the last reference to this object, and an Asio timer must
  // not be destroyed there. Valid while !done; both touched on the strand only.
  boost::asio::steady_timer* timer = nullptr;
  bool done = false;
  std::optional<HookAnswer> answer;
};

/** One timer of a plugin; its callback runs exactly once (fired 1 or 0). */
struct TimerState {
  explicit TimerState(boost::asio::any_io_executor ex) : timer(ex) {}
  boost::asio::steady_timer timer;
  postern_timer_cb fn = nullptr;
  void* user = nullptr;
  std::atomic<bool> done{false};
  void finish(uint32_t fired) {
    if (!done.exchange(true)) fn(user, fired);
  }
};

/** One DNS query of a plugin. */
struct DnsCall {
  postern_dns_cb cb = nullptr;
  void* user = nullptr;
  std::string name;
  uint16_t type = 0;
};

/** State shared by the plugin's handle and the waiting chain runner. */
struct PendingCore {
  enum class State { Open, Completed, Abandoned };
  std::mutex mutex;
  State state = State::Open;
  std::string plugin;
  std::vector<event::Symbol> symbols;
  // ABI 1.3 pending edits: what the stage allows is fixed at event_defer;
  // `recipients` is the transaction's list then (for rcpt_remove's NOT_FOUND).
  event::Stage stage = event::Stage::Connect;
  bool has_transaction = false;
  std::vector<std::string> recipients;
  std::vector<event::HeaderEdit> header_edits;
  std::vector<std::string> recipients_added;
  std::vector<std::string> recipients_removed;
  bool smtputf8 = false;            // the transaction's at event_defer
  uint64_t max_message_size = 0;    // the transaction's at event_defer
  std::optional<event::SenderChange> sender_change;
  std::optional<std::string> body_replacement;
  std::optional<HookAnswer> early;     // completed before the runner attached
  // While `waiting`, the runner's io_context is alive and a completion may be
  // posted to it. A plugin thread never holds a strong reference to the
  // PendingWait (nor a copy of its strand): their destruction must happen on
  // the I/O side, which may destroy the io_context right after.
  boost::asio::io_context* io = nullptr;
  std::weak_ptr<PendingWait> waiter;
  bool waiting = false;

  /** Completes (first wins). @return false if already completed or abandoned. */
  bool complete(HookAnswer answer, bool counts_as_late_if_refused);
  /** The runner starts waiting on `io`; delivers an early completion at once. */
  void attach(const std::shared_ptr<PendingWait>& wait, boost::asio::io_context& io);
  /** The runner stops waiting; with `abandon`, later completions are refused. */
  void stop_waiting(bool abandon);
  /** The hook did not return Pending after all: later completions are refused. */
  void abandon();
};

}  // namespace postern::core::plugin

/** The opaque postern_pending_t: the plugin's reference-counted handle. */
struct postern_pending {
  std::atomic<int> refs{1};
  std::shared_ptr<postern::core::plugin::PendingCore> core;
};

/** The opaque postern_message_t: a parsed message plus caches for the ABI. */
struct postern_message;

/** The opaque postern_event_t: valid during one on_hook call. */
struct postern_event {
  postern::core::event::EventData* data = nullptr;
  postern::core::event::Stage stage = postern::core::event::Stage::Connect;
  const postern::core::plugin::LoadedPlugin* plugin = nullptr;
  std::shared_ptr<postern::core::plugin::PendingCore> pending;  // set by event_defer
  std::shared_ptr<postern_message> message;                    // created on first use
  std::string peer_port;
  std::string local_port;
};

namespace postern::core::plugin {
/** Completes an outstanding DNS query with CANCELLED (unload). */
void cancel_dns_call(const DnsCall& call);
/** Completes a connect taken out of Outstanding::connects with CANCELLED and stops its I/O (unload). */
void cancel_connect_call(ConnectCall& call);
/** Applies the symbols added during a hook that ran without a transaction to the session. */
void add_symbol(event::EventData& ev, event::Symbol symbol);
}  // namespace postern::core::plugin
