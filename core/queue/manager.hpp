#pragma once
// The queue manager (Q2, Q5): keeps an in-memory index over the spool
// (rebuilt from the files at start, fed by the spool's commit listener),
// resolves recipients, groups them by destination (next hop, pipe, local
// account), runs deliveries within per-destination and total concurrency
// limits (round robin over destinations, so a failing one cannot starve the
// others), retries on the schedule of <queue>, writes per-message state
// durably, sends DSNs, and removes a spool file only when every recipient is
// final. Design, crash rules and threading: docs/queue.md.

#include "core/delivery/transport.hpp"
#include "core/event/chain.hpp"
#include "core/queue/queue_config.hpp"
#include "core/queue/spool.hpp"
#include "core/queue/state.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::queue {

/** How one recipient (or one of its expansion targets) travels in this round. */
struct RecipientRoute {
  enum class Kind {
    Local,  // mailbox store: `address` is the account's canonical address
    Smtp,   // `hop`; `address` is the address given to the peer
    Pipe,   // `argv`; `address` is the address the program delivers to
    Fail,   // permanent failure: code/enhanced/text (e.g. 550 5.1.1 unknown user)
    Defer,  // temporary failure: code/enhanced/text (e.g. no store configured)
  };
  Kind kind = Kind::Defer;
  std::string address;
  delivery::NextHop hop;
  std::vector<std::string> argv;
  int code = 0;
  std::string enhanced;
  std::string text;
};

/** What the queue manager needs from the rest of posternd (wire_queue.cpp; fakes in tests). */
struct QueueHooks {
  /** Expands one envelope recipient into targets (directory: aliases, lists, forwards;
   *  then routes). Never empty. Called on the manager's strand: must not block. */
  std::function<std::vector<RecipientRoute>(std::string_view rcpt, std::string_view sender)> expand;
  /** Routes a target found by an earlier round again. Must not block. */
  std::function<RecipientRoute(std::string_view target, bool local)> route;
  /** Delivers into a local mailbox; blocking (runs on the worker pool). `message`
   *  already carries Return-Path and Delivered-To. Null: local delivery defers. */
  std::function<delivery::RecipientResult(std::string_view account, std::string_view message)> deliver_local;
  /** The transport for an Smtp or Pipe route; null result: the attempt defers. */
  std::function<std::shared_ptr<delivery::Transport>(const RecipientRoute& route)> transport;
  /** The current hook chain (delivery stage, observer events); may be null or return null. */
  event::ChainProvider chains;
  /** Wall clock; tests pass a manual one and call wake() after moving it. */
  std::function<std::chrono::system_clock::time_point()> clock;
};

class QueueManager {
 public:
  struct Stats {
    uint64_t messages = 0;      // in the index (incoming/)
    uint64_t active = 0;        // in a delivery round
    uint64_t attempts = 0;      // transport/local attempts started
    uint64_t delivered = 0;     // recipients delivered or relayed
    uint64_t deferred = 0;      // recipient deferrals
    uint64_t bounced = 0;       // recipients failed permanently
    uint64_t dropped = 0;       // recipients dropped without DSN
    uint64_t dsns = 0;          // DSNs spooled
    uint64_t removed = 0;       // spool files removed (all recipients final)
    uint64_t running = 0;       // deliveries running now
  };

  /**
   * @param server_name Reporting-MTA of DSNs and the postmaster fallback domain.
   * @param local_domain the domain of the default postmaster address when <queue postmaster> is unset.
   */
  QueueManager(QueueConfig cfg, Spool& spool, boost::asio::io_context& io, boost::asio::thread_pool& workers,
               std::string server_name, std::string local_domain, QueueHooks hooks);
  ~QueueManager();
  QueueManager(const QueueManager&) = delete;
  QueueManager& operator=(const QueueManager&) = delete;

  /**
   * Scans the spool (incoming/, state/), listens for commits, starts due
   * deliveries; with `signals`, SIGUSR1 runs process_requests() (posternctl
   * queue flush/hold/release/delete/resend). Blocking file I/O of the scan
   * runs on the calling thread (start-up). @throws std::filesystem_error.
   */
  void start(bool signals = true);
  /** Every deferred message is due now and suspended destinations are retried. THREADING: any. */
  void flush();
  /** Makes messages whose next try has come due (after a manual clock moved). THREADING: any. */
  void wake();
  /** Reads <queue>/requests/ (posternctl) and acts on it; no request = flush(). THREADING: any. */
  void process_requests();
  Stats stats() const;

  /** <queue>/hold, <queue>/state, <queue>/requests. */
  static std::filesystem::path hold_dir(const std::filesystem::path& queue_dir) { return queue_dir / "hold"; }
  static std::filesystem::path state_dir(const std::filesystem::path& queue_dir) { return queue_dir / "state"; }
  static std::filesystem::path requests_dir(const std::filesystem::path& queue_dir) { return queue_dir / "requests"; }

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace postern::core::queue
