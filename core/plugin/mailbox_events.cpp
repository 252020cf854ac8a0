#include "core/plugin/mailbox_events.hpp"

#include "core/log/log.hpp"
#include "core/plugin/loader.hpp"

#include <boost/asio/post.hpp>

#include <vector>

namespace postern::core::plugin {
namespace {

postern_str_t abi(std::string_view s) { return postern_str_t{s.data(), s.size()}; }

}  // namespace

MailboxEventBus::MailboxEventBus(boost::asio::thread_pool& workers)
    : strand_(boost::asio::make_strand(workers.get_executor())) {}

mailstore::EventSink MailboxEventBus::sink() {
  std::weak_ptr<MailboxEventBus> weak = weak_from_this();
  return [weak](mailstore::MailboxEvent event) {
    auto bus = weak.lock();
    if (!bus || bus->subscriptions() == 0) return;
    boost::asio::post(bus->strand_, [bus, event = std::move(event)] { bus->deliver(event); });
  };
}

uint64_t MailboxEventBus::subscribe(std::shared_ptr<Outstanding> owner, uint32_t mask, postern_mbox_event_cb fn,
                                    void* user) {
  mask &= POSTERN_MBOX_MASK_ALL;
  if (!owner || fn == nullptr || mask == 0) return 0;
  {
    std::lock_guard lock(owner->mutex);
    if (owner->closed) return 0;
  }
  auto sub = std::make_shared<Subscription>();
  sub->owner = std::move(owner);
  sub->mask = mask;
  sub->fn = fn;
  sub->user = user;
  std::lock_guard lock(mu_);
  sub->id = next_id_++;
  subs_.emplace(sub->id, sub);
  return sub->id;
}

void MailboxEventBus::unsubscribe(const Outstanding* owner, uint64_t id) {
  std::unique_lock lock(mu_);
  auto it = subs_.find(id);
  if (it == subs_.end() || it->second->owner.get() != owner) return;
  subs_.erase(it);
  if (running_thread_ == std::this_thread::get_id()) return;  // from inside its own fn
  idle_.wait(lock, [&] { return running_ != id; });
}

size_t MailboxEventBus::subscriptions() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

void MailboxEventBus::deliver(const mailstore::MailboxEvent& event) {
  const uint32_t bit = 1u << static_cast<uint32_t>(event.kind);
  postern_mbox_event_t out{};
  out.struct_size = sizeof out;
  out.kind = static_cast<uint32_t>(event.kind);
  out.account = abi(event.account);
  out.folder = abi(event.folder);
  out.target_folder = abi(event.target_folder);
  out.actor = abi(event.actor);
  out.uidvalidity = event.uidvalidity;
  out.target_uidvalidity = event.target_uidvalidity;
  out.uids = event.uids.empty() ? nullptr : event.uids.data();
  out.uid_count = event.uids.size();
  out.target_uids = event.target_uids.empty() ? nullptr : event.target_uids.data();
  out.size = event.size;

  std::vector<uint64_t> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, sub] : subs_)
      if ((sub->mask & bit) != 0) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    std::shared_ptr<Subscription> sub;
    {
      std::lock_guard lock(mu_);
      auto it = subs_.find(id);
      if (it == subs_.end()) continue;  // unsubscribed meanwhile
      sub = it->second;
      // Counted as a call into the plugin: unload waits for it; none starts once unloading.
      if (!sub->owner->enter()) {
        subs_.erase(it);
        continue;
      }
      running_ = id;
      running_thread_ = std::this_thread::get_id();
    }
    try {
      sub->fn(sub->user, &out);
    } catch (...) {
      log::error("plugin", "a mailbox event callback threw; ignored");
    }
    sub->owner->leave();
    {
      std::lock_guard lock(mu_);
      running_ = 0;
      running_thread_ = std::thread::id();
    }
    idle_.notify_all();
  }
}

}  // namespace postern::core::plugin
