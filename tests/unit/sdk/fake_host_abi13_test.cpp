// ABI 1.3 through the SDK and FakeHost: sdk::Pending's edits (from another
// thread, with posternd's rules) and Host::on_mailbox_events.
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace postern::sdk::testing {
namespace {

using namespace std::chrono_literals;

/** Defers data_end and keeps the handle for the test to edit and complete. */
class Holder {
 public:
  static constexpr const char* kName = "holder";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    ctx.on_data_end([this](Event& ev) {
      pending = ev.defer();
      return pending.result();
    });
    ctx.on_rcpt_to([this](Event& ev) {
      pending = ev.defer();
      return pending.result();
    });
    return Status::ok();
  }
  Pending pending;
};

/** Records the mailbox events it subscribed to. */
class Watcher {
 public:
  static constexpr const char* kName = "watcher";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    const uint32_t mask = static_cast<uint32_t>(ctx.config().integer("mask").value_or(POSTERN_MBOX_MASK_ALL));
    id = ctx.host().on_mailbox_events(mask, [this](const MailboxEvent& e) {
      std::lock_guard lock(mu);
      seen.push_back(e);
    });
    return Status::ok();
  }
  Host::SubscriptionId id = 0;
  std::mutex mu;
  std::vector<MailboxEvent> seen;
};

const char* kRaw = "From: a@example.org\nSubject: hi\n\nbody\n";

TEST(FakeHostAbi13Test, PendingEditsFromAnotherThreadApplyWithTheCompletion) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r =
      host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net", "old@example.net"}, kRaw));
  ASSERT_TRUE(r.is_pending());
  Pending pending = p->plugin<Holder>().pending;
  p->plugin<Holder>().pending = Pending();
  ASSERT_TRUE(pending.can_edit());
  std::thread worker([pending, r] {
    EXPECT_TRUE(pending.add_header("X-Scanned", "clean"));
    EXPECT_TRUE(pending.change_header("Subject", 0, "[scanned] hi"));
    EXPECT_TRUE(pending.remove_header("X-Spam"));
    EXPECT_TRUE(pending.add_recipient("carol@example.net"));
    EXPECT_TRUE(pending.remove_recipient("OLD@example.net"));
    // The synchronous path's checks.
    EXPECT_FALSE(pending.add_header("Bad Name", "x"));
    EXPECT_FALSE(pending.add_header("X-Inject", "a\r\nBcc: victim@example.org"));
    EXPECT_FALSE(pending.change_header("Subject", -1, "x"));
    EXPECT_FALSE(pending.add_recipient("no-at-sign"));
    EXPECT_FALSE(pending.remove_recipient("stranger@example.net"));
    EXPECT_TRUE(r.header_edits().empty()) << "edits wait for the completion";
    EXPECT_TRUE(pending.complete(HookResult::quarantine("held")));
    EXPECT_FALSE(pending.add_header("X-After", "completion")) << "refused once completed";
  });
  worker.join();
  ASSERT_TRUE(r.completed());
  EXPECT_EQ(r.verdict(), Verdict::Quarantine);
  const auto edits = r.header_edits();
  ASSERT_EQ(edits.size(), 3u);
  EXPECT_EQ(edits[0].name, "X-Scanned");
  EXPECT_EQ(edits[1].kind, HeaderEdit::Kind::Change);
  EXPECT_EQ(edits[1].value, "[scanned] hi");
  EXPECT_EQ(edits[2].kind, HeaderEdit::Kind::Remove);
  EXPECT_EQ(r.recipients_added(), std::vector<std::string>{"carol@example.net"});
  EXPECT_EQ(r.recipients_removed(), std::vector<std::string>{"OLD@example.net"});
}

TEST(FakeHostAbi13Test, PendingEditsAreDroppedOnTimeout) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  p->set_timeout(5s);
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw));
  Pending& pending = p->plugin<Holder>().pending;
  EXPECT_TRUE(pending.add_header("X-Too", "late"));
  EXPECT_TRUE(pending.add_recipient("carol@example.net"));
  host.clock().advance(6s);
  EXPECT_TRUE(r.timed_out());
  EXPECT_FALSE(pending.add_header("X-Even", "later"));
  EXPECT_FALSE(pending.complete(HookResult{}));
  EXPECT_TRUE(r.header_edits().empty());
  EXPECT_TRUE(r.recipients_added().empty());
  EXPECT_EQ(host.late_completions(), 1u);
  pending = Pending();
}

TEST(FakeHostAbi13Test, PendingRecipientEditsOnlyAtDataEnd) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "bob@example.net"));
  Pending& pending = p->plugin<Holder>().pending;
  EXPECT_FALSE(pending.add_recipient("carol@example.net"));
  EXPECT_TRUE(pending.add_header("X-At-Rcpt", "yes")) << "headers may be edited from mail_from on";
  pending = Pending();  // released: Continue, with the header edit
  ASSERT_TRUE(r.completed());
  ASSERT_EQ(r.header_edits().size(), 1u);
  EXPECT_EQ(r.header_edits()[0].name, "X-At-Rcpt");
}

TEST(FakeHostAbi13Test, MailboxEventsReachSubscribersByMask) {
  FakeHost host;
  auto all = host.load<Watcher>("<plugin/>");
  auto moves = host.load<Watcher>(R"(<plugin mask="4"/>)");  // POSTERN_MBOX_MASK_MOVED
  ASSERT_TRUE(all.ok() && moves.ok());
  EXPECT_NE(all->plugin<Watcher>().id, 0u);
  EXPECT_EQ(host.mailbox_subscriptions(), 2u);

  MailboxEvent stored;
  stored.kind = POSTERN_MBOX_EVENT_STORED;
  stored.account = "bob@example.net";
  stored.folder = "INBOX";
  stored.actor = "delivery";
  stored.uids = {7};
  stored.size = 120;
  EXPECT_EQ(host.raise_mailbox_event(stored), 1u);

  MailboxEvent moved;
  moved.kind = POSTERN_MBOX_EVENT_MOVED;
  moved.account = "bob@example.net";
  moved.folder = "INBOX";
  moved.target_folder = "Archive";
  moved.actor = "imap";
  moved.uids = {7};
  moved.target_uids = {1};
  EXPECT_EQ(host.raise_mailbox_event(moved), 2u);

  const auto& seen = all->plugin<Watcher>().seen;
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].kind, POSTERN_MBOX_EVENT_STORED);
  EXPECT_EQ(seen[0].uids, std::vector<uint32_t>{7});
  EXPECT_EQ(seen[0].size, 120u);
  EXPECT_TRUE(seen[1].touches("bob@example.net", "Archive"));
  EXPECT_EQ(seen[1].target_uids, std::vector<uint32_t>{1});
  ASSERT_EQ(moves->plugin<Watcher>().seen.size(), 1u);
  EXPECT_EQ(moves->plugin<Watcher>().seen[0].actor, "imap");

  moves.unload();
  EXPECT_EQ(host.mailbox_subscriptions(), 1u) << "unload ends the plugin's subscriptions";
}

TEST(FakeHostAbi13Test, NoMailboxEventsWithoutAStore) {
  FakeHost host;
  host.set_mailbox_events_available(false);
  auto p = host.load<Watcher>("<plugin/>");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->plugin<Watcher>().id, 0u);
}

}  // namespace
}  // namespace postern::sdk::testing
