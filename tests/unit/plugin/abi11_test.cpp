// ABI 1.1 in posternd's host: cron jobs (registered, run on the pool, removed
// and waited for before on_destroy) and session tags shared along the chain,
// through a real shared object built with the C++ SDK (tests/abi/abi11.cpp).
#include "core/event/chain.hpp"
#include "core/plugin/loader.hpp"
#include "core/scheduler/scheduler.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace postern::core::plugin {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

class Abi11Test : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = std::filesystem::temp_directory_path() /
             ("postern-abi11-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(state_);
    services_.io = &io_;
    services_.workers = &workers_;
    services_.scheduler = &scheduler_;
    services_.state_root = state_;
  }
  void TearDown() override {
    workers_.join();
    std::filesystem::remove_all(state_);
  }

  std::variant<std::unique_ptr<LoadedPlugin>, std::string> load(const char* xml) {
    EXPECT_TRUE(doc_.load_string(xml));
    LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "abi11.so";
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "abi11.plugin.xml";
    r.name = "abi11";
    r.config = doc_.document_element();
    return LoadedPlugin::load(r, services_);
  }

  std::filesystem::path log_file() const { return state_ / "abi11" / "abi11.log"; }

  std::atomic<int64_t> now_ms_{1767225600000};  // 2026-01-01T00:00:00Z
  boost::asio::io_context io_;
  boost::asio::thread_pool workers_{2};
  scheduler::Scheduler scheduler_{io_, workers_, [this] {
                                    return std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms_.load()));
                                  }};
  HostServices services_;
  std::filesystem::path state_;
  pugi::xml_document doc_;
};

TEST_F(Abi11Test, CronJobRunsOnThePoolAndIsRemovedAndAwaitedBeforeDestroy) {
  auto loaded = load(R"(<plugin name="abi11" cron="*/5 * * * *" sleep-ms="300"/>)");
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) << std::get<std::string>(loaded);
  auto plugin = std::move(std::get<0>(loaded));
  ASSERT_EQ(scheduler_.jobs().size(), 1u);
  EXPECT_EQ(scheduler_.jobs()[0].name, "abi11/tick");
  EXPECT_EQ(scheduler_.jobs()[0].cron, "*/5 * * * *");

  now_ms_ += 5 * 60'000;
  EXPECT_EQ(scheduler_.run_due(), 1u);
  // Unload while the run sleeps: the job is removed at once and on_destroy
  // waits for the run to end.
  for (int i = 0; i < 200 && read_lines(log_file()).empty(); ++i) std::this_thread::sleep_for(5ms);
  plugin.reset();
  EXPECT_TRUE(scheduler_.jobs().empty());
  EXPECT_EQ(read_lines(log_file()), (std::vector<std::string>{"cron start", "cron end", "destroyed"}));
}

TEST_F(Abi11Test, BadCronExpressionIsRefused) {
  auto loaded = load(R"(<plugin name="abi11" cron="61 * * * *"/>)");
  ASSERT_TRUE(std::holds_alternative<std::string>(loaded));
  EXPECT_NE(std::get<std::string>(loaded).find("cron refused: '61 * * * *'"), std::string::npos);
  EXPECT_TRUE(scheduler_.jobs().empty());
}

TEST_F(Abi11Test, NoSchedulerMeansCronAddFails) {
  services_.scheduler = nullptr;
  auto loaded = load(R"(<plugin name="abi11" cron="* * * * *"/>)");
  ASSERT_TRUE(std::holds_alternative<std::string>(loaded));
  EXPECT_NE(std::get<std::string>(loaded).find("cron refused"), std::string::npos);
}

class SessionTagTest : public Abi11Test {
 protected:
  event::Outcome run(event::Stage stage) {
    boost::asio::io_context io;
    event::Outcome out;
    boost::asio::co_spawn(
        boost::asio::make_strand(io),
        [&]() -> boost::asio::awaitable<void> { out = co_await chain_->run(stage, ev_); }, boost::asio::detached);
    io.run();
    return out;
  }
  void start(const std::string& peer) {
    auto loaded = load(R"(<plugin name="abi11"/>)");
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) << std::get<std::string>(loaded);
    chain_->add(std::move(std::get<0>(loaded)), 2s, event::OnFailure::Continue);
    session_.session_id = "S1";
    session_.peer_ip = peer;
    txn_.mail_from = "alice@example.org";
    ev_.session = &session_;
  }
  std::shared_ptr<event::Chain> chain_ = std::make_shared<event::Chain>();
  event::SessionInfo session_;
  event::Transaction txn_;
  event::EventData ev_;
};

TEST_F(SessionTagTest, TagSetAtConnectIsSeenAtRcptTo) {
  start("192.0.2.1");
  EXPECT_EQ(run(event::Stage::Connect).verdict, event::Verdict::Continue);
  EXPECT_EQ(session_.tags.at("postern.whitelisted"), "1");
  EXPECT_EQ(session_.tags.at("abi11.seen"), "192.0.2.1");
  ev_.transaction = &txn_;
  ev_.current_rcpt = "bob@example.net";
  EXPECT_EQ(run(event::Stage::RcptTo).verdict, event::Verdict::Accept);
}

TEST_F(SessionTagTest, UnwhitelistedSessionSeesItsOwnTagAndBadKeysAreRefused) {
  start("198.51.100.9");
  run(event::Stage::Connect);
  EXPECT_FALSE(session_.tags.contains("postern.whitelisted"));
  ev_.transaction = &txn_;
  ev_.current_rcpt = "bob@example.net";
  const event::Outcome o = run(event::Stage::RcptTo);
  EXPECT_EQ(o.verdict, event::Verdict::TempFail);
  EXPECT_EQ(o.text, "seen=198.51.100.9");
}

}  // namespace
}  // namespace postern::core::plugin
