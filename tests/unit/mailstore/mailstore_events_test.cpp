// Mailbox events (ABI 1.3): what the store announces after each committed
// change, who it names as the actor, and that the sink is called with no
// store lock and no transaction held.

#include "core/mailstore/mailstore.hpp"
#include "tests/unit/temp_dir.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

using namespace postern::core::mailstore;

namespace {

using postern::testing::TempDir;

constexpr std::string_view kMessage = "From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

class MailstoreEventsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<MailStore>(MailStore::Options{.root = (dir_.path / "mail").string()});
    store_->set_event_sink([this](MailboxEvent ev) {
      std::lock_guard lock(mu_);
      events_.push_back(std::move(ev));
    });
    auto a = store_->open_account("bob@example.net");
    ASSERT_TRUE(a.ok());
    account_ = *a;
  }
  std::vector<MailboxEvent> take() {
    std::lock_guard lock(mu_);
    return std::exchange(events_, {});
  }

  TempDir dir_{"postern-mailstore-events"};
  std::unique_ptr<MailStore> store_;
  std::shared_ptr<AccountStore> account_;
  std::mutex mu_;
  std::vector<MailboxEvent> events_;
};

TEST_F(MailstoreEventsTest, DeliveryRaisesStoredNamingDelivery) {
  DeliverResult r = store_->deliver("bob@example.net", kMessage, 0);
  ASSERT_EQ(r.status, DeliverResult::Status::Ok) << r.detail;
  auto evs = take();
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].kind, MailboxEvent::Kind::Stored);
  EXPECT_EQ(evs[0].account, "bob@example.net");
  EXPECT_EQ(evs[0].folder, "INBOX");
  EXPECT_EQ(evs[0].actor, "delivery");
  EXPECT_EQ(evs[0].uids, std::vector<uint32_t>{r.uid});
  EXPECT_EQ(evs[0].size, kMessage.size());
  EXPECT_NE(evs[0].uidvalidity, 0u);
}

TEST_F(MailstoreEventsTest, EveryChangeRaisesOneEventWithTheActingProtocol) {
  const ActingAs acting("imap");
  auto a1 = account_->append("INBOX", kMessage, 0, {}, std::nullopt, 0);
  auto a2 = account_->append("INBOX", kMessage, 0, {}, std::nullopt, 0);
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto f = account_->store_flags("INBOX", {a1->uid, a2->uid}, FlagOp::Add, kSeen, {});
  ASSERT_TRUE(f.ok());
  // A store that changes nothing raises nothing.
  ASSERT_TRUE(account_->store_flags("INBOX", {a1->uid}, FlagOp::Add, kSeen, {}).ok());
  auto c = account_->copy("INBOX", {a1->uid}, "Archive", 0);
  ASSERT_TRUE(c.ok());
  auto m = account_->move("INBOX", {a2->uid}, "Trash");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(account_->store_flags("INBOX", {a1->uid}, FlagOp::Add, kDeleted, {}).ok());
  auto x = account_->expunge_deleted("INBOX");
  ASSERT_TRUE(x.ok());

  auto evs = take();
  ASSERT_EQ(evs.size(), 7u);
  for (const auto& e : evs) EXPECT_EQ(e.actor, "imap");
  EXPECT_EQ(evs[0].kind, MailboxEvent::Kind::Stored);
  EXPECT_EQ(evs[1].kind, MailboxEvent::Kind::Stored);
  EXPECT_EQ(evs[2].kind, MailboxEvent::Kind::Flags);
  EXPECT_EQ(evs[2].uids, (std::vector<uint32_t>{a1->uid, a2->uid}));
  EXPECT_EQ(evs[3].kind, MailboxEvent::Kind::Copied);
  EXPECT_EQ(evs[3].folder, "INBOX");
  EXPECT_EQ(evs[3].target_folder, "Archive");
  EXPECT_EQ(evs[3].uids, std::vector<uint32_t>{a1->uid});
  EXPECT_EQ(evs[3].target_uids, std::vector<uint32_t>{c->uids[0].second});
  EXPECT_EQ(evs[3].target_uidvalidity, c->dest_uidvalidity);
  EXPECT_EQ(evs[3].size, kMessage.size());
  EXPECT_EQ(evs[4].kind, MailboxEvent::Kind::Moved);
  EXPECT_EQ(evs[4].folder, "INBOX");
  EXPECT_EQ(evs[4].target_folder, "Trash");
  EXPECT_EQ(evs[4].uids, std::vector<uint32_t>{a2->uid});
  EXPECT_EQ(evs[4].target_uids, std::vector<uint32_t>{m->uids[0].second});
  EXPECT_EQ(evs[5].kind, MailboxEvent::Kind::Flags);
  EXPECT_EQ(evs[6].kind, MailboxEvent::Kind::Expunged);
  EXPECT_EQ(evs[6].folder, "INBOX");
  EXPECT_EQ(evs[6].uids, std::vector<uint32_t>{a1->uid});
}

TEST_F(MailstoreEventsTest, FailedOperationsRaiseNothing) {
  EXPECT_FALSE(account_->append("NoSuchFolder", kMessage, 0, {}, std::nullopt, 0).ok());
  EXPECT_FALSE(account_->append("INBOX", kMessage, 0, {}, std::nullopt, 1).ok());  // over quota
  EXPECT_FALSE(account_->move("INBOX", {42}, "NoSuchFolder").ok());
  EXPECT_TRUE(account_->expunge("INBOX", {42}, false).ok());  // nothing to remove: no event
  EXPECT_TRUE(take().empty());
}

TEST_F(MailstoreEventsTest, RetentionNamesTheSystem) {
  auto now = std::make_shared<std::chrono::system_clock::time_point>(std::chrono::system_clock::now());
  MailStore store(MailStore::Options{.root = (dir_.path / "clocked").string(), .clock = [now] { return *now; }});
  std::vector<MailboxEvent> seen;
  store.set_event_sink([&](MailboxEvent ev) { seen.push_back(std::move(ev)); });
  auto account = store.open_account("carol@example.net");
  ASSERT_TRUE(account.ok());
  ASSERT_TRUE((*account)->append("Trash", kMessage, 0, {}, std::nullopt, 0).ok());
  *now += std::chrono::hours(24 * 31);
  EXPECT_EQ(store.run_retention({}).messages, 1u);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].kind, MailboxEvent::Kind::Expunged);
  EXPECT_EQ(seen[1].folder, "Trash");
  EXPECT_EQ(seen[1].account, "carol@example.net");
  EXPECT_EQ(seen[1].actor, "system");
}

TEST_F(MailstoreEventsTest, SinkRunsWithNoStoreLockNorTransactionHeld) {
  // The sink writes to the same account: with the account's write lock held
  // this would deadlock, inside a write transaction it would time out (busy).
  std::vector<bool> inner_ok;
  store_->set_event_sink([&](MailboxEvent ev) {
    if (ev.kind != MailboxEvent::Kind::Stored || ev.folder != "INBOX") return;
    auto r = account_->append("Drafts", kMessage, 0, {}, std::nullopt, 0);
    inner_ok.push_back(r.ok());
  });
  ASSERT_EQ(store_->deliver("bob@example.net", kMessage, 0).status, DeliverResult::Status::Ok);
  ASSERT_TRUE(account_->append("INBOX", kMessage, 0, {}, std::nullopt, 0).ok());
  EXPECT_EQ(inner_ok, (std::vector<bool>{true, true}));
}

TEST_F(MailstoreEventsTest, NoSinkNoEvents) {
  store_->set_event_sink({});
  ASSERT_TRUE(account_->append("INBOX", kMessage, 0, {}, std::nullopt, 0).ok());
  EXPECT_TRUE(take().empty());
}

}  // namespace
