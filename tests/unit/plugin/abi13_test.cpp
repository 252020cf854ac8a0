// ABI 1.3 in posternd's host table: pending edits and mailbox events, through
// a real shared object built with the C++ SDK (tests/abi/events_probe.cpp),
// and the null/invalid-argument paths of each new call.
#include "core/plugin/loader.hpp"
#include "core/plugin/mailbox_events.hpp"

#include <boost/asio/thread_pool.hpp>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

namespace postern::core::plugin {
namespace {

using namespace std::chrono_literals;

TEST(Abi13HostTableTest, NewCallsArePresentAndRefuseNullHandles) {
  const postern_host_api_v1_t* api = host_api();
  ASSERT_EQ(api->abi_minor, 3u);
  ASSERT_GE(api->struct_size, offsetof(postern_host_api_v1_t, mbox_events_unsubscribe) + sizeof(void*));
  const postern_str_t name{"X-A", 3};
  const postern_str_t addr{"a@b.example", 11};
  EXPECT_EQ(api->pending_header_add(nullptr, name, name, 1), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_header_change(nullptr, name, 0, name), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_header_remove(nullptr, name, -1), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_rcpt_add(nullptr, addr), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_rcpt_remove(nullptr, addr), POSTERN_ERR_INVALID);
  auto cb = [](void*, const postern_mbox_event_t*) {};
  EXPECT_EQ(api->mbox_events_subscribe(nullptr, POSTERN_MBOX_MASK_ALL, cb, nullptr), 0u);
  api->mbox_events_unsubscribe(nullptr, 1);  // ignored
}

class Abi13Test : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = std::filesystem::temp_directory_path() /
             ("postern-abi13-" + std::to_string(::getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(state_);
    services_.workers = &workers_;
    services_.state_root = state_;
  }
  void TearDown() override {
    workers_.join();
    std::filesystem::remove_all(state_);
  }
  std::variant<std::unique_ptr<LoadedPlugin>, std::string> load(const char* xml) {
    EXPECT_TRUE(doc_.load_string(xml));
    LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "events_probe.so";
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "events_probe.plugin.xml";
    r.name = "events_probe";
    r.config = doc_.document_element();
    return LoadedPlugin::load(r, services_);
  }

  boost::asio::thread_pool workers_{2};
  HostServices services_;
  std::filesystem::path state_;
  pugi::xml_document doc_;
};

TEST_F(Abi13Test, SubscriberSeesStoreEventsUntilUnloaded) {
  services_.mailbox_events = std::make_shared<MailboxEventBus>(workers_);
  auto loaded = load(R"(<plugin events-log="events.log"/>)");
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) << std::get<std::string>(loaded);
  auto& bus = *services_.mailbox_events;
  EXPECT_EQ(bus.subscriptions(), 1u);

  mailstore::MailboxEvent e;
  e.kind = mailstore::MailboxEvent::Kind::Moved;
  e.account = "bob@example.net";
  e.folder = "INBOX";
  e.target_folder = "Archive";
  e.actor = "imap";
  e.uids = {3};
  e.target_uids = {9};
  e.size = 42;
  bus.sink()(e);
  const auto log = state_ / "events_probe" / "events.log";
  std::string line;
  for (int i = 0; i < 500 && line.empty(); ++i) {
    std::this_thread::sleep_for(10ms);
    std::ifstream in(log);
    std::getline(in, line);
  }
  EXPECT_EQ(line, "moved actor=imap account=bob@example.net folder=INBOX target=Archive uids=3 target-uids=9 size=42");

  std::get<0>(loaded).reset();  // quiesce + on_destroy: no call after this
  bus.deliver(e);
  EXPECT_EQ(bus.subscriptions(), 0u);
}

TEST_F(Abi13Test, SubscribingFailsWithoutAMailboxStore) {
  auto loaded = load(R"(<plugin events-log="events.log"/>)");
  ASSERT_TRUE(std::holds_alternative<std::string>(loaded));
  EXPECT_NE(std::get<std::string>(loaded).find("refused mbox_events_subscribe"), std::string::npos)
      << std::get<std::string>(loaded);
}

}  // namespace
}  // namespace postern::core::plugin
