#pragma once
// The plugin side of mailbox events (ABI 1.3: mbox_events_subscribe): the
// mailbox store's sink queues each committed change here, and one strand on
// the worker pool hands it to every subscribed plugin, in the order the store
// raised them. Nothing runs inside a store call or on a session's strand.
// Design: docs/event-bus.md "Mailbox events".

#include "core/mailstore/events.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace postern::core::plugin {

struct Outstanding;

class MailboxEventBus : public std::enable_shared_from_this<MailboxEventBus> {
 public:
  /** Callbacks run on a strand of `workers`, which must outlive every queued event. */
  explicit MailboxEventBus(boost::asio::thread_pool& workers);

  /**
   * The sink to give MailStore::set_event_sink: queues an event when anyone
   * subscribed (else drops it at once) and returns. Holds the bus weakly.
   */
  mailstore::EventSink sink();

  /**
   * Adds a subscriber. `owner` is the plugin's Outstanding: a call enters it
   * (so unload waits for a running one) and none starts once it is closed.
   * @return the id (never 0), or 0 when fn is null, mask empty or owner closed.
   */
  uint64_t subscribe(std::shared_ptr<Outstanding> owner, uint32_t mask, postern_mbox_event_cb fn, void* user);
  /**
   * Removes a subscription of `owner` (other owners' ids are ignored). No call
   * starts after it returns; a running one is waited for, unless this thread
   * is the one running it (unsubscribe from inside the callback).
   */
  void unsubscribe(const Outstanding* owner, uint64_t id);

  /** Delivers one event to the subscribers (what the strand runs; tests call it directly). */
  void deliver(const mailstore::MailboxEvent& event);
  /** Number of live subscriptions. */
  size_t subscriptions() const;

 private:
  struct Subscription {
    uint64_t id = 0;
    std::shared_ptr<Outstanding> owner;
    uint32_t mask = 0;
    postern_mbox_event_cb fn = nullptr;
    void* user = nullptr;
  };

  boost::asio::strand<boost::asio::thread_pool::executor_type> strand_;
  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::map<uint64_t, std::shared_ptr<Subscription>> subs_;
  uint64_t next_id_ = 1;
  uint64_t running_ = 0;  // id of the subscription whose fn runs now, 0 if none
  std::thread::id running_thread_;
};

}  // namespace postern::core::plugin
