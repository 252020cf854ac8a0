// The plugin side of mailbox events (ABI 1.3): masks, ordering, the worker
// thread, unsubscribe (also from inside the callback) and unload.

#include "core/plugin/mailbox_events.hpp"
#include "core/plugin/loader.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace postern::core::plugin {
namespace {

using mailstore::MailboxEvent;

struct Recorder {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> seen;  // "<kind> <folder> <target> <actor> <uids>"
  std::vector<std::thread::id> threads;
  MailboxEventBus* bus = nullptr;
  Outstanding* owner = nullptr;
  uint64_t unsubscribe_id = 0;  // unsubscribes itself on the first call when set

  static void cb(void* user, const postern_mbox_event_t* e) {
    auto* r = static_cast<Recorder*>(user);
    std::string line = std::to_string(e->kind) + " " + std::string(e->folder.ptr, e->folder.len) + " " +
                       std::string(e->target_folder.ptr, e->target_folder.len) + " " +
                       std::string(e->actor.ptr, e->actor.len);
    for (size_t i = 0; i < e->uid_count; ++i) line += " " + std::to_string(e->uids[i]);
    if (e->target_uids != nullptr)
      for (size_t i = 0; i < e->uid_count; ++i) line += " >" + std::to_string(e->target_uids[i]);
    if (r->unsubscribe_id != 0) r->bus->unsubscribe(r->owner, std::exchange(r->unsubscribe_id, 0));
    std::lock_guard lock(r->mu);
    r->seen.push_back(line);
    r->threads.push_back(std::this_thread::get_id());
    r->cv.notify_all();
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] { return seen.size() >= n; });
  }
};

MailboxEvent moved() {
  MailboxEvent e;
  e.kind = MailboxEvent::Kind::Moved;
  e.account = "bob@example.net";
  e.folder = "INBOX";
  e.target_folder = "Archive";
  e.actor = "imap";
  e.uids = {3, 4};
  e.target_uids = {10, 11};
  return e;
}

MailboxEvent stored(uint32_t uid) {
  MailboxEvent e;
  e.kind = MailboxEvent::Kind::Stored;
  e.account = "bob@example.net";
  e.folder = "INBOX";
  e.actor = "delivery";
  e.uids = {uid};
  return e;
}

class MailboxEventBusTest : public ::testing::Test {
 protected:
  boost::asio::thread_pool pool_{2};
  std::shared_ptr<MailboxEventBus> bus_ = std::make_shared<MailboxEventBus>(pool_);
  std::shared_ptr<Outstanding> owner_ = std::make_shared<Outstanding>();
  void TearDown() override { pool_.join(); }
};

TEST_F(MailboxEventBusTest, SinkDeliversOnAWorkerInOrderAndHonoursTheMask) {
  Recorder all, only_moved;
  ASSERT_NE(bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, &Recorder::cb, &all), 0u);
  ASSERT_NE(bus_->subscribe(owner_, POSTERN_MBOX_MASK_MOVED, &Recorder::cb, &only_moved), 0u);
  auto sink = bus_->sink();
  for (uint32_t uid = 1; uid <= 20; ++uid) sink(stored(uid));
  sink(moved());
  ASSERT_TRUE(all.wait_for(21));
  ASSERT_TRUE(only_moved.wait_for(1));
  for (uint32_t uid = 1; uid <= 20; ++uid) EXPECT_EQ(all.seen[uid - 1], "0 INBOX  delivery " + std::to_string(uid));
  EXPECT_EQ(all.seen[20], "2 INBOX Archive imap 3 4 >10 >11");
  EXPECT_EQ(only_moved.seen, std::vector<std::string>{"2 INBOX Archive imap 3 4 >10 >11"});
  for (auto id : all.threads) EXPECT_NE(id, std::this_thread::get_id()) << "must run on a worker";
}

TEST_F(MailboxEventBusTest, RefusesEmptyMaskNullCallbackAndClosedOwner) {
  Recorder r;
  EXPECT_EQ(bus_->subscribe(owner_, 0, &Recorder::cb, &r), 0u);
  EXPECT_EQ(bus_->subscribe(owner_, 1u << 7, &Recorder::cb, &r), 0u);  // no such kind
  EXPECT_EQ(bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, nullptr, &r), 0u);
  owner_->closed = true;
  EXPECT_EQ(bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, &Recorder::cb, &r), 0u);
  EXPECT_EQ(bus_->subscriptions(), 0u);
}

TEST_F(MailboxEventBusTest, UnsubscribeStopsCallsAlsoFromInsideTheCallback) {
  Recorder self_removing, other;
  self_removing.bus = bus_.get();
  self_removing.owner = owner_.get();
  self_removing.unsubscribe_id = bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, &Recorder::cb, &self_removing);
  const uint64_t other_id = bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, &Recorder::cb, &other);
  bus_->deliver(stored(1));
  bus_->deliver(stored(2));
  EXPECT_EQ(self_removing.seen.size(), 1u);
  EXPECT_EQ(other.seen.size(), 2u);
  // Another plugin's id is ignored.
  auto stranger = std::make_shared<Outstanding>();
  bus_->unsubscribe(stranger.get(), other_id);
  bus_->deliver(stored(3));
  EXPECT_EQ(other.seen.size(), 3u);
  bus_->unsubscribe(owner_.get(), other_id);
  bus_->deliver(stored(4));
  EXPECT_EQ(other.seen.size(), 3u);
  EXPECT_EQ(bus_->subscriptions(), 0u);
}

TEST_F(MailboxEventBusTest, UnloadingPluginIsNotCalledAndCallsAreCounted) {
  Recorder r;
  ASSERT_NE(bus_->subscribe(owner_, POSTERN_MBOX_MASK_ALL, &Recorder::cb, &r), 0u);
  bus_->deliver(stored(1));
  EXPECT_EQ(owner_->in_flight, 0u) << "a finished call leaves the plugin";
  {
    std::lock_guard lock(owner_->mutex);
    owner_->closed = true;  // what LoadedPlugin::quiesce does first
  }
  bus_->deliver(stored(2));
  EXPECT_EQ(r.seen.size(), 1u);
  EXPECT_EQ(bus_->subscriptions(), 0u) << "the closed plugin's subscription is dropped";
}

}  // namespace
}  // namespace postern::core::plugin
