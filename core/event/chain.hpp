#pragma once
// The hook chain of one manifest generation: the loaded plugins in manifest
// order and, per stage, the subscribers. Immutable once built; sessions hold a
// ChainPtr for as long as they may call into it, so a reload (SIGHUP) builds a
// new chain while the old one drains and is unloaded with its last user.
// Design: docs/event-bus.md.

#include "core/event/event.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace postern::core::plugin {
class LoadedPlugin;
}

namespace postern::core::event {

/** One subscriber of a stage. */
struct HookSlot {
  plugin::LoadedPlugin* plugin = nullptr;
  std::chrono::milliseconds timeout{5000};
  OnFailure on_failure = OnFailure::Continue;
};

/** Counters shared by all chains (process-wide). */
struct BusStats {
  std::atomic<uint64_t> hooks_called{0};
  std::atomic<uint64_t> hooks_pending{0};
  std::atomic<uint64_t> hook_timeouts{0};
  std::atomic<uint64_t> hook_failures{0};     // threw or flagged an error
  std::atomic<uint64_t> late_completions{0};  // after timeout or a second completion
};
BusStats& bus_stats();

class Chain {
 public:
  Chain() = default;
  ~Chain();
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;

  /** Adds a loaded plugin (takes ownership) with its per-manifest settings. */
  void add(std::unique_ptr<plugin::LoadedPlugin> plugin, std::chrono::milliseconds timeout,
           OnFailure on_failure);

  const std::vector<HookSlot>& subscribers(Stage stage) const {
    return by_stage_[static_cast<size_t>(stage)];
  }
  const std::vector<std::unique_ptr<plugin::LoadedPlugin>>& plugins() const { return plugins_; }

  /**
   * Runs `stage` for `ev` on the caller's executor (the session's strand):
   * hooks are called inline in manifest order until one decides; a hook that
   * pends suspends the coroutine until it completes, times out, or fails
   * (then its on-failure applies). Observer events run every subscriber and
   * always yield Continue. The caller must hold a ChainPtr to this chain
   * until the awaitable completes.
   */
  boost::asio::awaitable<Outcome> run(Stage stage, EventData& ev) const;

  /**
   * The synchronous part of run(): calls hooks from `first` on; returns the
   * outcome, or the index of the hook that returned Pending in `*pending_at`
   * together with the pending state to wait on (see chain.cpp).
   * Exposed for the dispatch benchmark and for observers.
   */
  Outcome run_sync(Stage stage, EventData& ev) const;

  /** Observer events: calls every subscriber, ignores verdicts. */
  void notify(Stage stage, EventData& ev) const;

 private:
  std::vector<std::unique_ptr<plugin::LoadedPlugin>> plugins_;
  std::array<std::vector<HookSlot>, kStageCount> by_stage_;
};

using ChainPtr = std::shared_ptr<const Chain>;

/** Gives the current chain; a session calls it once per transaction. */
using ChainProvider = std::function<ChainPtr()>;

}  // namespace postern::core::event
