// The hook chain: verdicts, order, reply overrides, pending completions,
// timeouts, late and double completions, failures and on-failure policies.
#include "core/event/chain.hpp"
#include "core/plugin/loader.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <filesystem>
#include <list>
#include <thread>

namespace postern::core::event {
namespace {

using namespace std::chrono_literals;

class ChainTest : public ::testing::Test {
 protected:
  void add(const std::string& name, const std::string& config_xml, std::chrono::milliseconds timeout = 2s,
           OnFailure on_failure = OnFailure::Continue) {
    docs_.emplace_back();
    ASSERT_TRUE(docs_.back().load_string(config_xml.c_str()));
    plugin::LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".so");
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".plugin.xml");
    r.name = name;
    r.config = docs_.back().document_element();
    auto loaded = plugin::LoadedPlugin::load(r, plugin::HostServices{});
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<plugin::LoadedPlugin>>(loaded))
        << std::get<std::string>(loaded);
    chain_->add(std::move(std::get<0>(loaded)), timeout, on_failure);
  }

  Outcome run(Stage stage) {
    boost::asio::io_context io;
    Outcome out;
    bool finished = false;
    ChainPtr chain = chain_;
    boost::asio::co_spawn(
        boost::asio::make_strand(io),
        [&]() -> boost::asio::awaitable<void> {
          out = co_await chain->run(stage, ev_);
          finished = true;
        },
        boost::asio::detached);
    io.run();
    EXPECT_TRUE(finished);
    return out;
  }

  Outcome rcpt(const std::string& address) {
    ev_.current_rcpt = address;
    return run(Stage::RcptTo);
  }

  void SetUp() override {
    session_.peer_ip = "192.0.2.7";
    txn_.mail_from = "alice@example.org";
    txn_.queue_id = "Q1";
    ev_.session = &session_;
    ev_.transaction = &txn_;
  }

  std::list<pugi::xml_document> docs_;
  std::shared_ptr<Chain> chain_ = std::make_shared<Chain>();
  SessionInfo session_;
  Transaction txn_;
  EventData ev_;
};

TEST_F(ChainTest, EmptyChainContinues) { EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue); }

TEST_F(ChainTest, RejectCarriesThePluginsCodeAndText) {
  add("good", R"(<plugin reject-local="bob"/>)");
  Outcome o = rcpt("bob@example.net");
  EXPECT_EQ(o.verdict, Verdict::Reject);
  EXPECT_EQ(o.code, 550);
  EXPECT_EQ(o.enhanced, "5.7.1");
  EXPECT_EQ(o.text, "rejected by good");
  EXPECT_EQ(o.decided_by, "good");
  EXPECT_EQ(rcpt("carol@example.net").verdict, Verdict::Continue);
}

TEST_F(ChainTest, FirstDecisionEndsTheStageInManifestOrder) {
  add("good", R"(<plugin reject-local="bob"/>)");
  add("async", R"(<plugin mode="complete" verdict="tempfail" delay="1"/>)");
  const uint64_t pending_before = bus_stats().hooks_pending.load();
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Reject);
  EXPECT_EQ(bus_stats().hooks_pending.load(), pending_before) << "async must not be called after a reject";
  EXPECT_EQ(rcpt("carol@example.net").verdict, Verdict::TempFail);
}

TEST_F(ChainTest, DataEndHookEditsHeadersAndAddsSymbols) {
  add("good", "<plugin/>");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  ASSERT_EQ(txn_.header_edits.size(), 1u);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Good");
  EXPECT_EQ(txn_.header_edits[0].value, "seen");
  ASSERT_EQ(txn_.symbols.size(), 1u);
  EXPECT_EQ(txn_.symbols[0].name, "GOOD_SEEN");
  EXPECT_EQ(txn_.symbols[0].plugin, "good");
  EXPECT_DOUBLE_EQ(txn_.score, 0.5);
}

TEST_F(ChainTest, PendingCompletedFromAnotherThreadDecides) {
  add("async", R"(<plugin mode="complete" verdict="reject" delay="20"/>)");
  Outcome o = rcpt("bob@example.net");
  EXPECT_EQ(o.verdict, Verdict::Reject);
  EXPECT_EQ(o.code, 554);
  EXPECT_EQ(o.text, "async says no");
  ASSERT_EQ(txn_.symbols.size(), 1u);
  EXPECT_EQ(txn_.symbols[0].name, "ASYNC_DONE");
}

TEST_F(ChainTest, PendingCompletedInsideTheHookNeedsNoWait) {
  add("async", R"(<plugin mode="sync" verdict="tempfail"/>)");
  Outcome o = rcpt("bob@example.net");
  EXPECT_EQ(o.verdict, Verdict::TempFail);
  EXPECT_EQ(o.code, 0) << "no code given: the engine's default applies";
  EXPECT_EQ(o.enhanced, "4.7.1");
  ASSERT_EQ(txn_.symbols.size(), 1u);
  EXPECT_EQ(txn_.symbols[0].name, "ASYNC_SYNC");
}

TEST_F(ChainTest, PendingReleasedWithoutCompletionContinues) {
  add("async", R"(<plugin mode="release"/>)");
  add("good", R"(<plugin reject-local="bob"/>)");
  EXPECT_EQ(rcpt("bob@example.net").decided_by, "good");
}

TEST_F(ChainTest, TimeoutAppliesOnFailureContinue) {
  add("async", R"(<plugin mode="never"/>)", 50ms, OnFailure::Continue);
  const uint64_t before = bus_stats().hook_timeouts.load();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 45ms);
  EXPECT_EQ(bus_stats().hook_timeouts.load(), before + 1);
}

TEST_F(ChainTest, TimeoutAppliesOnFailureTempFail) {
  add("async", R"(<plugin mode="never"/>)", 50ms, OnFailure::TempFail);
  Outcome o = rcpt("bob@example.net");
  EXPECT_EQ(o.verdict, Verdict::TempFail);
  EXPECT_EQ(o.code, 451);
  EXPECT_EQ(o.enhanced, "4.3.0");
}

TEST_F(ChainTest, LateCompletionIsIgnoredAndCounted) {
  add("async", R"(<plugin mode="complete" verdict="reject" delay="150"/>)", 30ms, OnFailure::Continue);
  const uint64_t before = bus_stats().late_completions.load();
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue);
  for (int i = 0; i < 100 && bus_stats().late_completions.load() == before; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(bus_stats().late_completions.load(), before + 1);
  EXPECT_TRUE(txn_.symbols.empty()) << "a late completion's symbols are dropped";
}

TEST_F(ChainTest, SecondCompletionIsIgnoredAndCounted) {
  add("async", R"(<plugin mode="double" verdict="tempfail" delay="5"/>)");
  const uint64_t before = bus_stats().late_completions.load();
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::TempFail);
  for (int i = 0; i < 100 && bus_stats().late_completions.load() == before; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(bus_stats().late_completions.load(), before + 1);
}

// --- ABI 1.3: edits through the pending handle --------------------------------

TEST_F(ChainTest, PendingEditsFromAThreadApplyInOrderWithTheCompletion) {
  txn_.recipients = {"bob@example.net", "old@example.net"};
  add("events_probe",
      R"(<plugin add-header="X-Scanned: clean" remove-header="X-Spam" add-rcpt="carol@example.net"
                 remove-rcpt="old@example.net" verdict="quarantine"/>)");
  Outcome o = run(Stage::DataEnd);
  EXPECT_EQ(o.verdict, Verdict::Quarantine) << "the completion's verdict still decides";
  ASSERT_EQ(txn_.header_edits.size(), 2u);
  EXPECT_EQ(txn_.header_edits[0].kind, HeaderEdit::Kind::Remove);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Spam");
  EXPECT_EQ(txn_.header_edits[0].index, -1);
  EXPECT_EQ(txn_.header_edits[1].kind, HeaderEdit::Kind::Add);
  EXPECT_EQ(txn_.header_edits[1].name, "X-Scanned");
  EXPECT_EQ(txn_.header_edits[1].value, "clean");
  EXPECT_TRUE(txn_.header_edits[1].prepend);
  EXPECT_EQ(txn_.recipients_added, std::vector<std::string>{"carol@example.net"});
  EXPECT_EQ(txn_.recipients_removed, std::vector<std::string>{"old@example.net"});
}

TEST_F(ChainTest, PendingEditsApplyWhenTheLastReferenceGoesWithoutCompletion) {
  add("events_probe", R"(<plugin mode="release" add-header="X-Released: yes" add-rcpt="carol@example.net"/>)");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  ASSERT_EQ(txn_.header_edits.size(), 1u);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Released");
  EXPECT_EQ(txn_.recipients_added, std::vector<std::string>{"carol@example.net"});
}

TEST_F(ChainTest, PendingEditsKeepTheSynchronousChecks) {
  txn_.recipients = {"bob@example.net"};
  add("events_probe", R"(<plugin mode="checks"/>)");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  ASSERT_EQ(txn_.header_edits.size(), 1u);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Checks");
  EXPECT_EQ(txn_.header_edits[0].value, "refused");
  EXPECT_TRUE(txn_.recipients_added.empty());
  EXPECT_TRUE(txn_.recipients_removed.empty());
}

TEST_F(ChainTest, PendingRecipientEditIsRefusedBeforeDataEnd) {
  add("events_probe", "<plugin/>");
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue);
  EXPECT_TRUE(txn_.recipients_added.empty());
}

TEST_F(ChainTest, PendingEditsOfALateCompletionAreDropped) {
  add("events_probe", R"(<plugin mode="late" delay="60" add-header="X-Late: yes" add-rcpt="carol@example.net"/>)",
      30ms, OnFailure::Continue);
  const uint64_t before = bus_stats().late_completions.load();
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  for (int i = 0; i < 200 && bus_stats().late_completions.load() == before; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(bus_stats().late_completions.load(), before + 1);
  EXPECT_TRUE(txn_.header_edits.empty());
  EXPECT_TRUE(txn_.recipients_added.empty());
}

TEST_F(ChainTest, PendingEditsOfAFailedHookAreDropped) {
  add("events_probe", R"(<plugin mode="error" add-header="X-Failed: yes" add-rcpt="carol@example.net"/>)", 2s,
      OnFailure::Continue);
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  EXPECT_TRUE(txn_.header_edits.empty());
  EXPECT_TRUE(txn_.recipients_added.empty());
}

TEST_F(ChainTest, ThrowingHookFollowsOnFailure) {
  add("hook_throws", "<plugin/>", 1s, OnFailure::Continue);
  const uint64_t before = bus_stats().hook_failures.load();
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue);
  EXPECT_EQ(bus_stats().hook_failures.load(), before + 1);

  chain_ = std::make_shared<Chain>();
  add("hook_throws", "<plugin/>", 1s, OnFailure::TempFail);
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::TempFail);
}

TEST_F(ChainTest, ObserverEventsIgnoreVerdicts) {
  add("good", R"(<plugin reject-local="bob"/>)");
  ev_.current_rcpt = "bob@example.net";
  EXPECT_EQ(chain_->run_sync(Stage::Delivered, ev_).verdict, Verdict::Continue);
}

TEST_F(ChainTest, ChainKeepsPluginsAliveWhileAStageRuns) {
  add("async", R"(<plugin mode="complete" verdict="reject" delay="30"/>)");
  boost::asio::io_context io;
  Outcome out;
  std::weak_ptr<Chain> weak = chain_;
  {
    ChainPtr local = std::move(chain_);
    boost::asio::co_spawn(
        boost::asio::make_strand(io),
        [&, c = local]() -> boost::asio::awaitable<void> { out = co_await c->run(Stage::RcptTo, ev_); },
        boost::asio::detached);
  }
  // The reload dropped its reference; the running stage still holds one.
  io.run();
  EXPECT_EQ(out.verdict, Verdict::Reject);
  EXPECT_TRUE(weak.expired()) << "the chain is unloaded with its last user";
}

}  // namespace
}  // namespace postern::core::event
