// The hook chain: verdicts, order, reply overrides, pending completions,
// timeouts, late and double completions, failures and on-failure policies.
#include "core/event/chain.hpp"
#include "tests/unit/event/run_chain.hpp"
#include "core/log/log.hpp"
#include "core/plugin/loader.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <unistd.h>
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

  Outcome run(Stage stage) { return event::testing::run_chain(chain_, stage, ev_); }

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
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue)
      << "the probe rejects when a recipient, sender or body edit is accepted at rcpt_to";
  EXPECT_TRUE(txn_.recipients_added.empty());
  EXPECT_FALSE(txn_.sender_change.has_value());
  EXPECT_FALSE(txn_.body_replacement.has_value());
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

// --- ABI 1.3: sender and body edits through the pending handle ---------------

TEST_F(ChainTest, PendingSenderAndBodyEditsApplyWithTheCompletion) {
  txn_.recipients = {"bob@example.net"};
  add("events_probe", R"(<plugin mail-from="bounces+srs@example.net" mail-from-args="RET=HDRS ENVID=q+2B1"
                                 replace-body="scanned" verdict="quarantine"/>)");
  Outcome o = run(Stage::DataEnd);
  EXPECT_EQ(o.verdict, Verdict::Quarantine) << "the completion's verdict still decides";
  ASSERT_TRUE(txn_.sender_change.has_value());
  EXPECT_EQ(txn_.sender_change->address, "bounces+srs@example.net");
  EXPECT_EQ(txn_.sender_change->ret, std::optional<std::string>("HDRS"));
  EXPECT_EQ(txn_.sender_change->envid, std::optional<std::string>("q+2B1"));
  EXPECT_FALSE(txn_.sender_change->body.has_value()) << "BODY was not named: the transaction's stays";
  EXPECT_EQ(txn_.sender_change->plugin, "events_probe");
  EXPECT_EQ(txn_.mail_from, std::optional<std::string>("bounces+srs@example.net"))
      << "hooks after the completion read the new sender";
  ASSERT_TRUE(txn_.body_replacement.has_value());
  EXPECT_EQ(*txn_.body_replacement, "scanned\r\n") << "a final line end is added";
  EXPECT_EQ(txn_.body_replaced_by, "events_probe");
  EXPECT_TRUE(txn_.header_edits.empty()) << "no edit was refused (the probe adds X-Probe-Refused then)";
}

TEST_F(ChainTest, PendingNullSenderIsAReversePath) {
  add("events_probe", R"(<plugin mail-from=""/>)");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  ASSERT_TRUE(txn_.sender_change.has_value());
  EXPECT_EQ(txn_.sender_change->address, "");
  EXPECT_EQ(txn_.mail_from, std::optional<std::string>(""));
}

TEST_F(ChainTest, PendingBodyAboveTheSizeLimitIsRefused) {
  txn_.max_message_size = 8;
  add("events_probe", R"(<plugin replace-body="longer than eight octets"/>)");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  EXPECT_FALSE(txn_.body_replacement.has_value());
  ASSERT_EQ(txn_.header_edits.size(), 1u);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Probe-Refused");
  EXPECT_EQ(txn_.header_edits[0].value, "body");
}

TEST_F(ChainTest, PendingUtf8SenderNeedsSmtputf8) {
  add("events_probe", R"(<plugin mail-from="jos&#xE9;@example.net"/>)");
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  EXPECT_FALSE(txn_.sender_change.has_value()) << "UTF-8 without SMTPUTF8 (RFC 6531 §3.4)";
  txn_ = Transaction{};
  txn_.smtputf8 = true;
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  ASSERT_TRUE(txn_.sender_change.has_value());
  EXPECT_EQ(txn_.sender_change->address, "jos\xC3\xA9@example.net");
}

TEST_F(ChainTest, PendingSenderAndBodyEditsOfAFailedHookAreDropped) {
  add("events_probe", R"(<plugin mode="error" mail-from="other@example.net" replace-body="x"/>)", 2s,
      OnFailure::Continue);
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  EXPECT_FALSE(txn_.sender_change.has_value());
  EXPECT_FALSE(txn_.body_replacement.has_value());
  EXPECT_EQ(txn_.mail_from, std::optional<std::string>("alice@example.org"));
}

TEST_F(ChainTest, PendingSenderAndBodyEditsOfALateCompletionAreDropped) {
  add("events_probe", R"(<plugin mode="late" delay="60" mail-from="other@example.net" replace-body="x"/>)", 30ms,
      OnFailure::Continue);
  const uint64_t before = bus_stats().late_completions.load();
  EXPECT_EQ(run(Stage::DataEnd).verdict, Verdict::Continue);
  for (int i = 0; i < 200 && bus_stats().late_completions.load() == before; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_FALSE(txn_.sender_change.has_value());
  EXPECT_FALSE(txn_.body_replacement.has_value());
}

// --- ABI 1.3 contract fix: enum values from a plugin are range-checked integers --

TEST_F(ChainTest, UnknownVerdictIsAPluginFaultAndOnFailureApplies) {
  const auto log_file = std::filesystem::temp_directory_path() /
                        ("postern-chain-log-" + std::to_string(::getpid()) + ".log");
  log::configure(log::Level::Info, log_file, false);
  add("bad_verdict", "<plugin/>", 1s, OnFailure::TempFail);
  const uint64_t before = bus_stats().hook_failures.load();
  Outcome o = rcpt("bob@example.net");
  EXPECT_EQ(o.verdict, Verdict::TempFail) << "on-failure=tempfail";
  EXPECT_EQ(o.code, 451);
  EXPECT_EQ(o.enhanced, "4.3.0");
  EXPECT_EQ(bus_stats().hook_failures.load(), before + 1);

  chain_ = std::make_shared<Chain>();
  add("bad_verdict", "<plugin/>", 1s, OnFailure::Continue);
  EXPECT_EQ(rcpt("bob@example.net").verdict, Verdict::Continue) << "on-failure=continue";
  log::configure(log::Level::Info, {}, true);

  std::ifstream in(log_file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(log_file);
  EXPECT_NE(text.find("plugin=bad_verdict stage=rcpt_to returned verdict 42, which is not a postern_verdict_t"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("invalid log level 9: bad_verdict: a line at level 9"), std::string::npos) << text;
  EXPECT_NE(text.find("name=bad_verdict dns_query with invalid record type 0"), std::string::npos) << text;
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
