// The plugin through the SDK's FakeHost: real ABI calls, fake streams, an
// in-memory directory and mailbox store, a manual clock.
#include "pop3.hpp"

#include <postern/mail/codec.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace postern::plugins::pop3 {
namespace {

using sdk::testing::FakeHost;
using sdk::testing::MemoryMailStore;
using sdk::testing::StreamOptions;

constexpr const char* kMessage = "Subject: hi\r\n\r\n.dot\r\nbody\r\n";

class Pop3PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The login throttle runs on a monotonic clock; here it follows the fake host's clock
    // unless a test moves `steady_` itself.
    mail::set_throttle_clock([this] {
      return std::chrono::steady_clock::time_point(follow_host_ ? host_.clock().now().time_since_epoch() : steady_);
    });
    store_ = std::make_shared<MemoryMailStore>();
    store_->add_account("alice@example.test", "secret");
    store_->add_account("carol@example.test", "secret", POSTERN_SERVICE_IMAP);  // no POP3
    ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
    ASSERT_TRUE(store_->deliver("alice@example.test", "Subject: two\n\nbare lf\n"));
    host_.use_mail_store(store_);
  }
  void load(const std::string& xml = R"(<plugin name="pop3" login-delay="0"/>)") {
    auto loaded = host_.load<Pop3Plugin>(xml);
    ASSERT_TRUE(loaded.ok()) << loaded.error();
    plugin_ = std::make_unique<decltype(loaded)>(std::move(loaded));
  }
  static StreamOptions cleartext() {
    StreamOptions o;
    o.cleartext_auth = true;
    return o;
  }
  /** Sends a line and returns the output it caused. */
  static std::string cmd(sdk::testing::FakeStream& c, std::string_view line) {
    c.send(std::string(line) + "\r\n");
    return c.take_output();
  }

  void TearDown() override { mail::set_throttle_clock(nullptr); }

  FakeHost host_;
  bool follow_host_ = true;
  std::chrono::milliseconds steady_{0};
  std::shared_ptr<MemoryMailStore> store_;
  std::unique_ptr<std::remove_reference_t<decltype(std::declval<FakeHost&>().load<Pop3Plugin>(""))>> plugin_;
};

TEST_F(Pop3PluginTest, SessionRetrievesDeletesAtQuitAndKeepsOnDrop) {
  load();
  auto c = host_.connect("pop3", cleartext());
  EXPECT_EQ(c.take_output(), "+OK mx.fake.test POP3 server ready\r\n");
  EXPECT_EQ(c.idle_timeout_ms(), 600'000u);
  EXPECT_EQ(cmd(c, "USER alice@example.test"), "+OK Send PASS\r\n");
  // Sizes as sent: the bare-LF message grows by one octet per line.
  EXPECT_EQ(cmd(c, "PASS secret"), "+OK Logged in, 2 messages (52 octets)\r\n");
  EXPECT_EQ(cmd(c, "LIST"), "+OK 2 messages (52 octets)\r\n1 27\r\n2 25\r\n.\r\n");
  EXPECT_EQ(cmd(c, "RETR 1"), "+OK 27 octets\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n");
  EXPECT_EQ(cmd(c, "RETR 2"), "+OK 25 octets\r\nSubject: two\r\n\r\nbare lf\r\n.\r\n");
  EXPECT_EQ(cmd(c, "DELE 1"), "+OK Message 1 deleted\r\n");
  c.close();  // dropped: nothing happens

  auto d = host_.connect("pop3", cleartext());
  d.take_output();
  cmd(d, "USER alice@example.test");
  EXPECT_EQ(cmd(d, "PASS secret"), "+OK Logged in, 2 messages (52 octets)\r\n");
  cmd(d, "DELE 1");
  EXPECT_EQ(cmd(d, "QUIT"), "+OK Bye, 1 messages deleted\r\n");
  EXPECT_TRUE(d.closed());

  auto e = host_.connect("pop3", cleartext());
  e.take_output();
  cmd(e, "USER alice@example.test");
  EXPECT_EQ(cmd(e, "PASS secret"), "+OK Logged in, 1 messages (25 octets)\r\n");
}

TEST_F(Pop3PluginTest, SecondSessionIsInUseUntilTheFirstEnds) {
  load();
  auto a = host_.connect("pop3", cleartext());
  cmd(a, "USER alice@example.test");
  ASSERT_TRUE(cmd(a, "PASS secret").starts_with("+OK Logged in"));
  auto b = host_.connect("pop3", cleartext());
  b.take_output();
  cmd(b, "USER alice@example.test");
  EXPECT_EQ(cmd(b, "PASS secret"), "-ERR [IN-USE] The maildrop is in use by another POP3 session\r\n");
  a.close();
  cmd(b, "USER alice@example.test");
  EXPECT_TRUE(cmd(b, "PASS secret").starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, EveryRefusalSaysTheSameText) {
  load();
  store_->add_account("dave@example.test", "secret");
  store_->set_enabled("dave@example.test", false);
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  for (auto [user, pw] : {std::pair{"carol@example.test", "secret"}, {"dave@example.test", "secret"},
                          {"alice@example.test", "wrong"}}) {
    cmd(c, std::string("USER ") + user);
    EXPECT_EQ(cmd(c, std::string("PASS ") + pw), "-ERR [AUTH] Login failure or POP3 disabled\r\n") << user;
  }
  // max-failures (3) reached: closed.
  EXPECT_TRUE(c.closed());
}

TEST_F(Pop3PluginTest, FailedLoginsAreAnsweredAfterAGrowingDelay) {
  load(R"(<plugin name="pop3" login-delay="1s" login-delay-max="4s"/>)");
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  cmd(c, "USER alice@example.test");
  EXPECT_EQ(cmd(c, "PASS wrong"), "");
  EXPECT_TRUE(c.paused());
  host_.clock().advance(std::chrono::milliseconds(999));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  c.pump();
  EXPECT_EQ(c.take_output(), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
  cmd(c, "USER alice@example.test");
  EXPECT_EQ(cmd(c, "PASS wrong"), "");
  host_.clock().advance(std::chrono::milliseconds(1999));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  c.pump();
  EXPECT_EQ(c.take_output(), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
  // A new connection from the same peer starts at the peer's count (3 -> 4 s).
  auto d = host_.connect("pop3", cleartext());
  d.take_output();
  cmd(d, "USER alice@example.test");
  EXPECT_EQ(cmd(d, "PASS wrong"), "");
  host_.clock().advance(std::chrono::milliseconds(3999));
  d.pump();
  EXPECT_EQ(d.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  d.pump();
  EXPECT_EQ(d.take_output(), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
}

TEST_F(Pop3PluginTest, DroppingTheConnectionDoesNotSkipThePenalty) {
  load(R"(<plugin name="pop3" login-delay="1s" login-delay-max="4s"/>)");
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  cmd(c, "USER alice@example.test");
  EXPECT_EQ(cmd(c, "PASS wrong"), "");
  c.close();  // the guesser does not wait for the -ERR
  // The next password from that peer is checked only once the penalty is paid.
  auto d = host_.connect("pop3", cleartext());
  d.take_output();
  cmd(d, "USER alice@example.test");
  EXPECT_EQ(cmd(d, "PASS secret"), "");
  host_.clock().advance(std::chrono::milliseconds(999));
  d.pump();
  EXPECT_EQ(d.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  d.pump();
  EXPECT_TRUE(d.take_output().starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, OverlongLoginNamesAreRefusedAtOnce) {
  load();
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  // USER is bounded by the command line (255 octets); AUTH PLAIN's response line is not:
  // "\0" + 2000 x's + "\0secret" is refused before any lookup.
  const std::string plain = std::string(1, '\0') + std::string(2000, 'x') + std::string(1, '\0') + "secret";
  EXPECT_EQ(cmd(c, "AUTH PLAIN"), "+ \r\n");
  EXPECT_EQ(cmd(c, mail::encode_base64(plain)), "-ERR [AUTH] Login name too long\r\n");
  cmd(c, "USER alice@example.test");
  EXPECT_TRUE(cmd(c, "PASS secret").starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, LockedPeerIsRefusedBeforeThePasswordAndIgnoresClockSteps) {
  follow_host_ = false;
  load(R"(<plugin name="pop3" login-delay="0" login-lockout-failures="2" login-lockout-time="10m"/>)");
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  for (int i = 0; i < 2; ++i) {
    cmd(c, "USER alice@example.test");
    EXPECT_EQ(cmd(c, "PASS wrong"), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
  }
  auto d = host_.connect("pop3", cleartext());
  d.take_output();
  cmd(d, "USER alice@example.test");
  EXPECT_EQ(cmd(d, "PASS secret"), "-ERR [SYS/TEMP] Too many failed logins from your address, try again later\r\n");
  // The system clock jumps an hour ahead: the lockout does not end with it.
  host_.clock().set(host_.clock().now() + std::chrono::hours(1));
  cmd(d, "USER alice@example.test");
  EXPECT_TRUE(cmd(d, "PASS secret").starts_with("-ERR [SYS/TEMP]"));
  // Ten minutes of monotonic time end it.
  steady_ += std::chrono::minutes(10) + std::chrono::milliseconds(1);
  cmd(d, "USER alice@example.test");
  EXPECT_TRUE(cmd(d, "PASS secret").starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, StlsDropsPipelinedInputAndThenAllowsLogin) {
  load();
  auto c = host_.connect("pop3");  // starttls listener, no cleartext auth
  c.take_output();
  EXPECT_TRUE(cmd(c, "USER alice@example.test").starts_with("-ERR [AUTH] Plaintext"));
  c.send("STLS\r\nUSER alice@example.test\r\n");
  EXPECT_EQ(c.take_output(), "+OK Begin TLS negotiation\r\n");
  EXPECT_TRUE(c.tls_active());
  EXPECT_EQ(cmd(c, "PASS secret"), "-ERR Send USER first\r\n");
  cmd(c, "USER alice@example.test");
  EXPECT_TRUE(cmd(c, "PASS secret").starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, SlowReaderPausesPipelinedRetrs) {
  load();
  const std::string big = "Subject: big\r\n\r\n" + std::string(300 * 1024, 'x') + "\r\n";
  ASSERT_TRUE(store_->deliver("alice@example.test", big));
  StreamOptions o = cleartext();
  o.hold_output = true;
  auto c = host_.connect("pop3", o);
  c.flush_output();
  c.set_hold_output(true);
  cmd(c, "USER alice@example.test");
  c.send("PASS secret\r\n");
  c.flush_output();
  c.set_hold_output(true);
  c.send("RETR 3\r\nRETR 1\r\n");
  // Above the high-water mark: input stops until the client reads.
  EXPECT_TRUE(c.paused());
  EXPECT_GT(c.queued(), kOutputHighWater);
  c.set_hold_output(false);
  c.pump();
  const std::string out = c.take_output();
  EXPECT_NE(out.find("+OK 27 octets\r\nSubject: hi"), std::string::npos);
  EXPECT_FALSE(c.paused());
}

TEST_F(Pop3PluginTest, StoreFailureIsSysTemp) {
  load();
  auto c = host_.connect("pop3", cleartext());
  c.take_output();
  store_->fail_next_calls(POSTERN_ERR_TEMPORARY, "disk on fire");
  cmd(c, "USER alice@example.test");
  EXPECT_TRUE(cmd(c, "PASS secret").starts_with("-ERR [SYS/TEMP] "));
  store_->fail_next_calls(POSTERN_OK);
  cmd(c, "USER alice@example.test");
  EXPECT_TRUE(cmd(c, "PASS secret").starts_with("+OK Logged in"));
}

TEST_F(Pop3PluginTest, BadConfigurationNamesTheAttribute) {
  auto loaded = host_.load<Pop3Plugin>(R"(<plugin name="pop3" max-failures="x"/>)");
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().find("max-failures=\"x\""), std::string::npos) << loaded.error();
}

}  // namespace
}  // namespace postern::plugins::pop3
