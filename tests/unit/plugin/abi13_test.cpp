// ABI 1.3 in posternd's host table: pending edits and mailbox events, through
// a real shared object built with the C++ SDK (tests/abi/events_probe.cpp),
// and the null/invalid-argument paths of each new call.
#include "core/plugin/host_internal.hpp"
#include "core/plugin/loader.hpp"
#include "core/plugin/mailbox_events.hpp"

#include <boost/asio/io_context.hpp>
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
  const postern_bytes_t body{reinterpret_cast<const uint8_t*>("x"), 1};
  EXPECT_EQ(api->event_mail_from_set(nullptr, addr, {}), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api->event_body_replace(nullptr, body), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api->pending_mail_from_set(nullptr, addr, {}), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_body_replace(nullptr, body), POSTERN_ERR_INVALID);
}

// --- ABI 1.3 sender and body edits, straight through posternd's host table --

postern_str_t S(std::string_view s) { return {s.data(), s.size()}; }
postern_bytes_t B(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

/** An event of posternd's bus at one stage, as the chain runner builds it. */
struct BusEvent {
  explicit BusEvent(event::Stage stage) {
    txn.mail_from = "alice@example.org";
    txn.max_message_size = 64;
    data.session = &session;
    data.transaction = &txn;
    ev.data = &data;
    ev.stage = stage;
  }
  event::SessionInfo session;
  event::Transaction txn;
  event::EventData data;
  postern_event ev;
};

struct SenderCase {
  const char* address;
  const char* args;
  postern_status_t expected;
};

class HostSenderChangeTest : public ::testing::TestWithParam<SenderCase> {};

TEST_P(HostSenderChangeTest, ChecksTheReversePathAndParameters) {
  const SenderCase& c = GetParam();
  BusEvent e(event::Stage::DataEnd);
  EXPECT_EQ(host_api()->event_mail_from_set(&e.ev, S(c.address), S(c.args)), c.expected) << c.address << " " << c.args;
  EXPECT_EQ(e.txn.sender_change.has_value(), c.expected == POSTERN_OK);
  if (c.expected != POSTERN_OK) {
    EXPECT_EQ(e.txn.mail_from, std::optional<std::string>("alice@example.org"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, HostSenderChangeTest,
    ::testing::Values(SenderCase{"srs0=x@example.net", "", POSTERN_OK}, SenderCase{"", "", POSTERN_OK},
                      SenderCase{"a@b.example", "RET=hdrs ENVID=a+2Bb BODY=8bitmime SMTPUTF8", POSTERN_OK},
                      SenderCase{"a@b.example", "SIZE=100 AUTH=<>", POSTERN_OK},
                      SenderCase{"a@[192.0.2.1]", "", POSTERN_OK},
                      SenderCase{"no-at-sign", "", POSTERN_ERR_INVALID},
                      SenderCase{"<a@b.example>", "", POSTERN_ERR_INVALID},
                      SenderCase{"a b@c.example", "", POSTERN_ERR_INVALID},
                      SenderCase{"@relay.example:a@b.example", "", POSTERN_ERR_INVALID},
                      SenderCase{"a@b@c.example", "", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example.", "", POSTERN_ERR_INVALID},
                      SenderCase{"j\xC3\xB6@b.example", "", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "RET=MAYBE", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "BODY=BINARYMIME", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "ENVID=a=b", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "SMTPUTF8=1", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "NOTIFY=NEVER", POSTERN_ERR_INVALID},
                      SenderCase{"a@b.example", "RET=FULL ret=HDRS", POSTERN_ERR_INVALID}));

TEST(HostSenderBodyTest, SenderChangeIsReadBackAndKeepsUnnamedParameters) {
  BusEvent e(event::Stage::DataEnd);
  ASSERT_EQ(host_api()->event_mail_from_set(&e.ev, S("bounce@example.net"), S("RET=HDRS")), POSTERN_OK);
  postern_str_t out{};
  ASSERT_EQ(host_api()->event_get(&e.ev, POSTERN_PROP_MAIL_FROM, &out), POSTERN_OK);
  EXPECT_EQ(std::string_view(out.ptr, out.len), "bounce@example.net") << "later hooks read the new sender";
  ASSERT_TRUE(e.txn.sender_change.has_value());
  EXPECT_EQ(e.txn.sender_change->ret, std::optional<std::string>("HDRS"));
  EXPECT_FALSE(e.txn.sender_change->envid.has_value());
  EXPECT_FALSE(e.txn.sender_change->body.has_value());
  // UTF-8 needs SMTPUTF8: from the transaction or named in the change.
  EXPECT_EQ(host_api()->event_mail_from_set(&e.ev, S("j\xC3\xB6@b.example"), S("SMTPUTF8")), POSTERN_OK);
  EXPECT_EQ(host_api()->event_mail_from_set(&e.ev, S("j\xC3\xB6@b.example"), {}), POSTERN_OK)
      << "the previous change turned SMTPUTF8 on";
}

TEST(HostSenderBodyTest, BodyIsNormalizedAndChecked) {
  BusEvent e(event::Stage::DataEnd);
  const postern_host_api_v1_t* api = host_api();
  EXPECT_EQ(api->event_body_replace(&e.ev, B("one\ntwo")), POSTERN_OK);
  EXPECT_EQ(e.txn.body_replacement, std::optional<std::string>("one\r\ntwo\r\n"));
  EXPECT_EQ(api->event_body_replace(&e.ev, B("")), POSTERN_OK);
  EXPECT_EQ(e.txn.body_replacement, std::optional<std::string>("")) << "an empty body, the last one wins";
  EXPECT_EQ(api->event_body_replace(&e.ev, B(std::string_view("a\0b", 3))), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->event_body_replace(&e.ev, B("bare\rcr")), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->event_body_replace(&e.ev, B("ends in cr\r")), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->event_body_replace(&e.ev, postern_bytes_t{nullptr, 3}), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->event_body_replace(&e.ev, B(std::string(65, 'x'))), POSTERN_ERR_INVALID) << "max-message-size 64";
  EXPECT_EQ(api->event_body_replace(&e.ev, B(std::string(63, 'x'))), POSTERN_ERR_INVALID)
      << "63 octets and the CRLF added make 65";
  EXPECT_EQ(api->event_body_replace(&e.ev, B(std::string(62, 'x'))), POSTERN_OK);
  EXPECT_EQ(e.txn.body_replacement->size(), 64u);
}

TEST(HostSenderBodyTest, OnlyDataEndMayEditSenderAndBody) {
  for (event::Stage stage : {event::Stage::MailFrom, event::Stage::RcptTo, event::Stage::DataStart,
                             event::Stage::Headers, event::Stage::Queued, event::Stage::Delivery}) {
    BusEvent e(stage);
    SCOPED_TRACE(std::string(event::stage_name(stage)));
    EXPECT_EQ(host_api()->event_mail_from_set(&e.ev, S("a@b.example"), {}), POSTERN_ERR_UNAVAILABLE);
    EXPECT_EQ(host_api()->event_body_replace(&e.ev, B("x")), POSTERN_ERR_UNAVAILABLE);
    postern_pending_t* p = host_api()->event_defer(&e.ev);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(host_api()->pending_mail_from_set(p, S("a@b.example"), {}), POSTERN_ERR_UNAVAILABLE);
    EXPECT_EQ(host_api()->pending_body_replace(p, B("x")), POSTERN_ERR_UNAVAILABLE);
    e.ev.pending->abandon();
    host_api()->pending_release(p);
  }
  BusEvent no_txn(event::Stage::DataEnd);
  no_txn.data.transaction = nullptr;
  EXPECT_EQ(host_api()->event_mail_from_set(&no_txn.ev, S("a@b.example"), {}), POSTERN_ERR_UNAVAILABLE);
}

TEST(HostSenderBodyTest, PendingEditsAreCheckedAndRecordedUntilCompletion) {
  BusEvent e(event::Stage::DataEnd);
  const postern_host_api_v1_t* api = host_api();
  postern_pending_t* p = api->event_defer(&e.ev);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(api->pending_mail_from_set(p, S("not an address"), {}), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_mail_from_set(p, S("a@b.example"), S("X=1")), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_body_replace(p, B(std::string(100, 'x'))), POSTERN_ERR_INVALID) << "limit at defer: 64";
  EXPECT_EQ(api->pending_body_replace(p, B("bare\rcr")), POSTERN_ERR_INVALID);
  EXPECT_EQ(api->pending_mail_from_set(p, S("srs@example.net"), S("ENVID=e2")), POSTERN_OK);
  EXPECT_EQ(api->pending_body_replace(p, B("clean")), POSTERN_OK);
  EXPECT_FALSE(e.txn.sender_change.has_value()) << "recorded, applied with the completion on the strand";
  postern_hook_result_t r{};
  r.struct_size = sizeof r;
  r.verdict = POSTERN_VERDICT_QUARANTINE;
  ASSERT_EQ(api->pending_complete(p, &r), POSTERN_OK);
  EXPECT_EQ(api->pending_mail_from_set(p, S("late@example.net"), {}), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api->pending_body_replace(p, B("late")), POSTERN_ERR_UNAVAILABLE);
  // The runner takes the early completion when it attaches (chain.cpp).
  boost::asio::io_context io;
  auto wait = std::make_shared<PendingWait>(io.get_executor());
  e.ev.pending->attach(wait, io);
  ASSERT_TRUE(wait->done);
  ASSERT_TRUE(wait->answer.has_value());
  EXPECT_EQ(wait->answer->verdict, static_cast<uint32_t>(POSTERN_VERDICT_QUARANTINE));
  ASSERT_TRUE(wait->answer->sender_change.has_value());
  EXPECT_EQ(wait->answer->sender_change->address, "srs@example.net");
  EXPECT_EQ(wait->answer->sender_change->envid, std::optional<std::string>("e2"));
  EXPECT_EQ(wait->answer->body_replacement, std::optional<std::string>("clean\r\n"));
  api->pending_release(p);
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
