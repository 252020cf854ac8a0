// Tests of the SDK's ABI 1.3 wrappers (sdk::connect, sdk::inject) and of
// FakeHost's side of them: connect requests answered by the test as the peer
// (accept_connect / fail_connect), cancel, unload, and recorded injections.
#define POSTERN_SDK_NO_ENTRY
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace postern::sdk::testing {
namespace {

/** Sends "PING\r\n" and records every line the peer answers. */
class PingConn : public Connection {
 public:
  PingConn(Stream s, std::shared_ptr<std::vector<std::string>> events) : stream_(std::move(s)), events_(events) {
    stream_.write("PING\r\n");
  }
  void on_data(std::string_view d) override {
    events_->push_back("data " + std::string(d));
    if (d == "BYE\r\n") stream_.close();
  }
  void on_close(CloseReason r) override { events_->push_back("close " + std::to_string(static_cast<int>(r))); }

 private:
  Stream stream_;
  std::shared_ptr<std::vector<std::string>> events_;
};

class Client {
 public:
  static constexpr const char* kName = "client";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    host_ = ctx.host();
    return Status::ok();
  }
  ConnectId dial(ConnectOptions o) {
    auto events = events_;
    return connect(
        *host_, o, [events](Stream s) { return std::make_unique<PingConn>(std::move(s), events); },
        [events](ConnectStatus st, std::string_view why) {
          events->push_back("failed " + std::string(connect_status_name(st)) + " " + std::string(why));
        });
  }
  bool send(InjectMessage m) {
    auto events = events_;
    return inject(*host_, m, [events](const InjectResult& r) {
      events->push_back(r.ok() ? "queued " + r.queue_id : "inject-failed " + r.error);
    });
  }
  std::optional<Host> host_;
  std::shared_ptr<std::vector<std::string>> events_ = std::make_shared<std::vector<std::string>>();
};

class FakeHostOutboundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    plugin_ = host_.load<Client>(R"(<plugin name="client"/>)");
    ASSERT_TRUE(plugin_.ok()) << plugin_.error();
  }
  Client& client() { return plugin_->plugin<Client>(); }

  FakeHost host_;
  Loaded plugin_;
};

TEST_F(FakeHostOutboundTest, AcceptedConnectGivesThePeerTheStream) {
  ConnectOptions o = ConnectOptions::tcp("clamd.example.test", 3310);
  o.timeout = std::chrono::seconds(3);
  EXPECT_NE(client().dial(o), 0u);
  const auto reqs = host_.connect_requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].plugin, "client");
  EXPECT_EQ(reqs[0].host, "clamd.example.test");
  EXPECT_EQ(reqs[0].port, 3310);
  EXPECT_EQ(reqs[0].timeout_ms, 3000u);
  EXPECT_FALSE(reqs[0].tls);
  auto peer = host_.accept_connect();
  ASSERT_TRUE(peer.opened()) << peer.error();
  EXPECT_EQ(peer.take_output(), "PING\r\n");
  EXPECT_EQ(peer.prop(POSTERN_STREAM_PROTOCOL), "tcp");
  EXPECT_EQ(peer.prop(POSTERN_STREAM_LISTENER), "outbound");
  peer.send("PONG\r\n");
  peer.send("BYE\r\n");
  EXPECT_TRUE(peer.closed());
  EXPECT_EQ((*client().events_), (std::vector<std::string>{"data PONG\r\n", "data BYE\r\n", "close 3"}));
  EXPECT_TRUE(host_.connect_requests().empty());
}

TEST_F(FakeHostOutboundTest, FailedConnectReportsTheStatus) {
  ASSERT_NE(client().dial(ConnectOptions::tcp("127.0.0.1", 9)), 0u);
  EXPECT_TRUE(host_.fail_connect(ConnectStatus::Refused, "connection refused"));
  EXPECT_EQ((*client().events_), (std::vector<std::string>{"failed refused connection refused"}));
  EXPECT_FALSE(host_.fail_connect(ConnectStatus::Refused));  // nothing waits any more
  EXPECT_FALSE(host_.accept_connect().opened());
}

TEST_F(FakeHostOutboundTest, TlsAndUnixOptionsReachTheRequest) {
  ConnectOptions o = ConnectOptions::unix_socket("/run/clamav/clamd.ctl");
  ASSERT_NE(client().dial(o), 0u);
  ConnectOptions t = ConnectOptions::tcp("imap.example.test", 993);
  t.tls = true;
  t.verify = false;
  ASSERT_NE(client().dial(t), 0u);
  const auto reqs = host_.connect_requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].unix_path, "/run/clamav/clamd.ctl");
  EXPECT_TRUE(reqs[1].tls);
  EXPECT_FALSE(reqs[1].verify);
  EXPECT_EQ(reqs[1].tls_name, "imap.example.test");
  auto unix_peer = host_.accept_connect();
  EXPECT_EQ(unix_peer.prop(POSTERN_STREAM_PROTOCOL), "unix");
  auto tls_peer = host_.accept_connect();
  EXPECT_TRUE(tls_peer.tls_active());
}

TEST_F(FakeHostOutboundTest, RefusedOptionsReturnZeroAndCallNothing) {
  EXPECT_EQ(client().dial(ConnectOptions::tcp("127.0.0.1", 0)), 0u);
  ConnectOptions both = ConnectOptions::tcp("127.0.0.1", 25);
  both.unix_path = "/tmp/x";
  EXPECT_EQ(client().dial(both), 0u);
  EXPECT_TRUE(host_.connect_requests().empty());
  EXPECT_TRUE((*client().events_).empty());
}

TEST_F(FakeHostOutboundTest, CancelAnswersCancelledOnPendingWork) {
  const ConnectId id = client().dial(ConnectOptions::tcp("slow.example.test", 25));
  cancel_connect(*client().host_, id);
  EXPECT_TRUE((*client().events_).empty());  // never inside the plugin's call
  host_.run_pending_work();
  EXPECT_EQ((*client().events_), (std::vector<std::string>{"failed cancelled cancelled"}));
}

TEST_F(FakeHostOutboundTest, UnloadCancelsConnectsAndEndsStreams) {
  client().dial(ConnectOptions::tcp("a.example.test", 25));
  client().dial(ConnectOptions::tcp("b.example.test", 25));
  auto peer = host_.accept_connect();
  ASSERT_TRUE(peer.opened());
  auto events = client().events_;  // outlives the plugin object
  plugin_->unload();
  EXPECT_TRUE(peer.closed());
  EXPECT_EQ(peer.close_reason(), CloseReason::Shutdown);
  EXPECT_EQ(*events, (std::vector<std::string>{"failed cancelled cancelled: the plugin is unloading", "close 4"}));
}

TEST_F(FakeHostOutboundTest, InjectRecordsTheMessage) {
  InjectMessage m;
  m.mail_from = "";
  m.recipients = {"alice@example.test"};
  m.message = "Subject: away\r\n\r\nback monday\r\n";
  m.skip_filters = {"client"};
  ASSERT_TRUE(client().send(m));
  EXPECT_EQ((*client().events_), (std::vector<std::string>{"queued fake-1"}));
  const auto got = host_.injected();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].plugin, "client");
  EXPECT_EQ(got[0].queue_id, "fake-1");
  EXPECT_EQ(got[0].mail_from, "");
  EXPECT_EQ(got[0].recipients, (std::vector<std::string>{"alice@example.test"}));
  EXPECT_EQ(got[0].message, m.message);
  EXPECT_EQ(got[0].skip_filters, (std::vector<std::string>{"client"}));

  host_.set_inject_failure(POSTERN_ERR_TEMPORARY, "disk full");
  ASSERT_TRUE(client().send(m));
  EXPECT_EQ((*client().events_).back(), "inject-failed disk full");
  EXPECT_EQ(host_.injected().size(), 1u);

  InjectMessage bad = m;
  bad.recipients = {"not an address"};
  EXPECT_FALSE(client().send(bad));
  bad.recipients.clear();
  EXPECT_FALSE(client().send(bad));
}

}  // namespace
}  // namespace postern::sdk::testing
