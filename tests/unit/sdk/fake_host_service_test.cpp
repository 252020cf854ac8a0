// Tests of FakeHost's ABI 1.2 side: service registration, FakeStream (input,
// output, STARTTLS, stream_post, pause, drain, close, unload) and the
// directory and mailbox answers (MemoryMailStore and std::function overrides),
// through a small line-based SDK service plugin called via its ABI table.
#define POSTERN_SDK_NO_ENTRY
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace postern::sdk::testing {
namespace {

/**
 * A line protocol: "LOGIN user pass" (worker + post), "COUNT" (mailbox
 * INBOX size through a view), "TLS" (STARTTLS), "BYE" (close), "SLOW"
 * (pause until a posted function resumes), anything else is echoed.
 */
class LineConn : public Connection {
 public:
  LineConn(Host host, Stream stream, std::vector<std::string>* events)
      : host_(host), stream_(std::move(stream)), events_(events) {
    stream_.write("* hello " + stream_.get(POSTERN_STREAM_PROTOCOL) + " " + stream_.get(POSTERN_STREAM_LOCAL_PORT) +
                  "\r\n");
  }
  ~LineConn() override { *alive_ = false; }
  void on_data(std::string_view data) override {
    buffer_.append(data);
    process();
  }
  void on_tls() override {
    events_->push_back("tls " + stream_.get(POSTERN_STREAM_TLS_PROTOCOL));
    stream_.write("* secure\r\n");
  }
  void on_drain() override { events_->push_back("drain"); }
  void on_close(CloseReason r) override { events_->push_back("close " + std::to_string(static_cast<int>(r))); }

 private:
  /** Runs the buffered lines until one has to wait for the worker pool. */
  void process() {
    while (!busy_) {
      const size_t eol = buffer_.find("\r\n");
      if (eol == std::string::npos) return;
      std::string line = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 2);
      if (!command(line)) {
        buffer_.clear();  // RFC 3207 §4.2: nothing pipelined after STARTTLS survives
        return;
      }
    }
  }

  bool command(const std::string& line) {
    if (line.rfind("LOGIN ", 0) == 0) {
      const auto sp = line.find(' ', 6);
      const std::string user = line.substr(6, sp - 6), pass = sp == std::string::npos ? "" : line.substr(sp + 1);
      busy_ = true;
      stream_.pause(true);
      Stream s = stream_;
      Host h = host_;
      auto alive = alive_;
      host_.post_work([this, alive, h, s, user, pass] {
        auto acct = authenticate(h, user, pass, POSTERN_SERVICE_POP3);
        const std::string reply = acct ? "OK " + acct->address + "\r\n"
                                       : "NO " + std::to_string(acct.error().code) + " " + acct.error().detail + "\r\n";
        s.post([this, alive, s, reply] {
          if (!*alive) return;  // closed meanwhile
          s.write(reply);
          busy_ = false;
          s.pause(false);
          process();
        });
      });
      return true;
    }
    if (line.rfind("COUNT ", 0) == 0) {
      auto mb = Mailbox::open(host_, line.substr(6));
      if (!mb) {
        stream_.write("NO " + mb.error().detail + "\r\n");
        return true;
      }
      auto opened = mb->open_folder("INBOX");
      if (!opened) {
        stream_.write("NO " + opened.error().detail + "\r\n");
        return true;
      }
      view_ = std::move(opened->first);
      mailbox_.emplace(std::move(*mb));
      stream_.write("OK " + std::to_string(opened->second.messages.size()) + "\r\n");
      return true;
    }
    if (line == "REFRESH") {
      auto up = view_.refresh();
      stream_.write(up ? "OK +" + std::to_string(up->added.size()) + " -" + std::to_string(up->expunged.size()) + "\r\n"
                       : "NO\r\n");
      return true;
    }
    if (line == "TLS") {
      stream_.write("OK go ahead\r\n");
      if (!stream_.starttls()) stream_.write("NO tls\r\n");
      return false;
    }
    if (line == "BYE") {
      stream_.write("OK bye\r\n");
      stream_.close();
      return false;
    }
    if (line == "DRAIN") {
      stream_.want_drain();
      return true;
    }
    if (line == "IDLE") {
      stream_.set_idle_timeout(std::chrono::seconds(5));
      return true;
    }
    stream_.write("echo " + line + "\r\n");
    return true;
  }

  Host host_;
  Stream stream_;
  std::vector<std::string>* events_;
  std::string buffer_;
  bool busy_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::optional<Mailbox> mailbox_;
  FolderView view_;
};

class LineService {
 public:
  static constexpr const char* kName = "line";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    Host host = ctx.host();
    auto* events = &events_;
    if (auto st = ctx.serve("pop3", [host, events](Stream s) -> std::unique_ptr<Connection> {
          if (s.peer_ip() == "203.0.113.9") return nullptr;  // refused
          return std::make_unique<LineConn>(host, std::move(s), events);
        });
        !st.ok())
      return st;
    return Status::ok();
  }
  std::vector<std::string> events_;
};

class FakeHostServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_shared<MemoryMailStore>();
    store_->add_account("alice@example.test", "secret");
    store_->add_account("bob@example.test", "builder", POSTERN_SERVICE_IMAP);
    plugin_ = host_.load<LineService>(R"(<plugin name="line"/>)");
    ASSERT_TRUE(plugin_.ok()) << plugin_.error();
  }
  std::vector<std::string>& events() { return plugin_->plugin<LineService>().events_; }

  FakeHost host_;
  std::shared_ptr<MemoryMailStore> store_;
  Loaded plugin_;
};

TEST_F(FakeHostServiceTest, ServiceRegisterRecordsTheProtocol) {
  EXPECT_EQ(host_.services(), (std::vector<std::string>{"pop3"}));
  EXPECT_EQ(host_.service_owner("POP3"), "line");
  auto none = host_.connect("imap");
  EXPECT_FALSE(none.opened());
  EXPECT_EQ(none.error(), "no plugin serves protocol 'imap'");
}

TEST_F(FakeHostServiceTest, ConnectFeedAndCaptureOutput) {
  auto c = host_.connect("pop3");
  ASSERT_TRUE(c.opened()) << c.error();
  EXPECT_EQ(c.take_output(), "* hello pop3 110\r\n");
  EXPECT_EQ(c.prop(POSTERN_STREAM_PEER_IP), "192.0.2.10");
  EXPECT_EQ(c.prop(POSTERN_STREAM_TLS_MODE), "starttls");
  EXPECT_EQ(c.prop(POSTERN_STREAM_TLS_PROTOCOL), "");
  // Input split anywhere; two lines in one chunk.
  EXPECT_TRUE(c.send("hel"));
  EXPECT_EQ(c.take_output(), "");
  EXPECT_TRUE(c.send("lo\r\nworld\r\n"));
  EXPECT_EQ(c.take_output(), "echo hello\r\necho world\r\n");
  EXPECT_EQ(c.output(), "* hello pop3 110\r\necho hello\r\necho world\r\n");
  c.send("IDLE\r\n");
  EXPECT_EQ(c.idle_timeout_ms(), 5000u);
}

TEST_F(FakeHostServiceTest, OnOpenMayRefuse) {
  StreamOptions o;
  o.peer_ip = "203.0.113.9";
  auto c = host_.connect("pop3", o);
  EXPECT_FALSE(c.opened());
  EXPECT_TRUE(c.closed());
  EXPECT_FALSE(c.send("x\r\n"));
  EXPECT_TRUE(events().empty());  // on_close is not called for a refused connection
}

TEST_F(FakeHostServiceTest, LoginThroughWorkerAndPostWithPause) {
  host_.use_mail_store(store_);
  auto c = host_.connect("pop3");
  c.take_output();
  // The post_work task runs inline, the reply comes through stream_post after on_data returns,
  // and the line pipelined behind LOGIN waits for the resume.
  c.send("LOGIN alice secret\r\nafter\r\n");
  EXPECT_EQ(c.take_output(), "OK alice@example.test\r\necho after\r\n");
  EXPECT_FALSE(c.paused());
  c.send("LOGIN alice wrong\r\n");
  EXPECT_EQ(c.take_output(), "NO 2 authentication failed\r\n");
  c.send("LOGIN bob builder\r\n");  // bob may not use POP3: the same answer
  EXPECT_EQ(c.take_output(), "NO 2 authentication failed\r\n");
}

TEST_F(FakeHostServiceTest, ManualPostsWaitForTheTest) {
  host_.use_mail_store(store_);
  StreamOptions o;
  o.manual_posts = true;
  auto c = host_.connect("pop3", o);
  c.take_output();
  c.send("LOGIN alice secret\r\n");
  EXPECT_EQ(c.take_output(), "");
  EXPECT_TRUE(c.paused());
  EXPECT_EQ(c.posted(), 1u);
  c.send("next\r\n");  // paused: the host keeps it
  EXPECT_EQ(c.take_output(), "");
  EXPECT_EQ(c.run_posted(), 2u);  // the post (which resumes), then the waiting input
  EXPECT_EQ(c.take_output(), "OK alice@example.test\r\necho next\r\n");
}

TEST_F(FakeHostServiceTest, DirectoryAnswersUnavailableUntilInstalled) {
  auto c = host_.connect("pop3");
  c.take_output();
  c.send("LOGIN alice secret\r\n");
  EXPECT_EQ(c.take_output(), "NO 3 no directory is configured\r\n");
  host_.set_authenticate([](std::string_view login, std::string_view, uint32_t service) -> Expected<Account> {
    if (service != POSTERN_SERVICE_POP3) return MailError{POSTERN_ERR_NOT_FOUND, "wrong service"};
    if (login == "down") return MailError{POSTERN_ERR_TEMPORARY, "directory busy"};
    return Account{std::string(login) + "@scripted.test", "", 0, POSTERN_SERVICE_POP3, true};
  });
  c.send("LOGIN carol x\r\nLOGIN down x\r\n");
  EXPECT_EQ(c.take_output(), "OK carol@scripted.test\r\nNO 10 directory busy\r\n");
  c.send("COUNT carol@scripted.test\r\n");
  EXPECT_EQ(c.take_output(), "NO no mailbox store is configured\r\n");
}

TEST_F(FakeHostServiceTest, StartTlsMarksTheStreamSecureAndDropsPipelinedInput) {
  auto c = host_.connect("pop3");
  c.take_output();
  c.send("TLS\r\nsmuggled\r\n");
  EXPECT_TRUE(c.tls_active());
  EXPECT_EQ(c.prop(POSTERN_STREAM_TLS_PROTOCOL), "TLSv1.3");
  EXPECT_EQ(c.take_output(), "OK go ahead\r\n* secure\r\n");
  EXPECT_EQ(c.output_after_tls(), "* secure\r\n");
  EXPECT_EQ(events(), (std::vector<std::string>{"tls TLSv1.3"}));
  c.send("TLS\r\n");  // a second STARTTLS is refused by the host
  EXPECT_EQ(c.take_output(), "OK go ahead\r\nNO tls\r\n");
}

TEST_F(FakeHostServiceTest, ManualHandshakeCanFail) {
  StreamOptions o;
  o.auto_tls = false;
  auto c = host_.connect("pop3", o);
  c.send("TLS\r\n");
  EXPECT_TRUE(c.tls_pending());
  c.send("queued\r\n");  // waits: no input during the handshake
  c.fail_tls();
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(c.close_reason(), CloseReason::TlsFailed);
  EXPECT_EQ(events(), (std::vector<std::string>{"close 5"}));
  EXPECT_EQ(c.output().find("echo queued"), std::string::npos);
}

TEST_F(FakeHostServiceTest, ImplicitTlsAndNoCertificate) {
  StreamOptions o;
  o.tls_mode = "implicit";
  auto c = host_.connect("pop3", o);
  EXPECT_TRUE(c.tls_active());
  EXPECT_EQ(c.take_output(), "* hello pop3 995\r\n");
  StreamOptions none;
  none.tls_mode = "none";
  auto d = host_.connect("pop3", none);
  d.take_output();
  d.send("TLS\r\n");
  EXPECT_EQ(d.take_output(), "OK go ahead\r\nNO tls\r\n");
  EXPECT_FALSE(d.tls_active());
}

TEST_F(FakeHostServiceTest, PluginCloseFlushesAndEndsTheStream) {
  auto c = host_.connect("pop3");
  c.take_output();
  c.send("BYE\r\nignored\r\n");
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(c.close_reason(), CloseReason::Plugin);
  EXPECT_EQ(c.take_output(), "OK bye\r\n");
  EXPECT_FALSE(c.send("more\r\n"));
  EXPECT_EQ(events(), (std::vector<std::string>{"close 3"}));
}

TEST_F(FakeHostServiceTest, PeerCloseTimeoutAndDestruction) {
  {
    auto c = host_.connect("pop3");
    c.expire_idle();
    EXPECT_EQ(c.close_reason(), CloseReason::Timeout);
  }
  { auto d = host_.connect("pop3"); }  // dropped by the test: the peer went away
  EXPECT_EQ(events(), (std::vector<std::string>{"close 2", "close 0"}));
}

TEST_F(FakeHostServiceTest, HeldOutputDrainsOnFlush) {
  StreamOptions o;
  o.hold_output = true;
  auto c = host_.connect("pop3", o);
  c.send("DRAIN\r\n");
  EXPECT_EQ(c.output(), "");
  EXPECT_GT(c.queued(), 0u);
  EXPECT_TRUE(events().empty());
  c.flush_output();
  EXPECT_EQ(c.output(), "* hello pop3 110\r\n");
  EXPECT_EQ(events(), (std::vector<std::string>{"drain"}));
}

TEST_F(FakeHostServiceTest, UnloadClosesStreamsWithShutdown) {
  auto c = host_.connect("pop3");
  plugin_.unload();
  EXPECT_TRUE(c.closed());
  EXPECT_EQ(c.close_reason(), CloseReason::Shutdown);
  EXPECT_TRUE(host_.services().empty());
}

TEST_F(FakeHostServiceTest, MailboxViewThroughMemoryStore) {
  host_.use_mail_store(store_);
  ASSERT_TRUE(store_->deliver("alice@example.test", "Subject: 1\r\n\r\nx\r\n").ok());
  auto c = host_.connect("pop3");
  c.take_output();
  c.send("COUNT alice@example.test\r\n");
  EXPECT_EQ(c.take_output(), "OK 1\r\n");
  ASSERT_TRUE(store_->deliver("alice@example.test", "Subject: 2\r\n\r\ny\r\n").ok());
  c.send("REFRESH\r\n");
  EXPECT_EQ(c.take_output(), "OK +1 -0\r\n");
  c.send("COUNT nobody@example.test\r\n");
  EXPECT_EQ(c.take_output(), "NO no such account\r\n");
}

/** Keeps the host handle its init saw, to call the SDK's mailbox wrappers directly. */
class Probe {
 public:
  static constexpr const char* kName = "probe";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    handle = ctx.host().handle();
    return Status::ok();
  }
  postern_host_t* handle = nullptr;
};

// MemoryMailStore through the SDK wrappers, the way IMAP/POP3 tests drive it.
class MemoryMailStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_shared<MemoryMailStore>([] { return int64_t{1767225600}; });
    store_->add_account("alice@example.test", "secret", POSTERN_SERVICE_IMAP | POSTERN_SERVICE_POP3, 0, "Alice");
    host_.use_mail_store(store_);
    probe_ = host_.load<Probe>(R"(<plugin name="probe"/>)");
    ASSERT_TRUE(probe_.ok()) << probe_.error();
  }
  Host host() { return Host(probe_->plugin<Probe>().handle, FakeHost::api()); }

  FakeHost host_;
  std::shared_ptr<MemoryMailStore> store_;
  Loaded probe_;
};

TEST_F(MemoryMailStoreTest, FoldersMessagesFlagsAndViews) {
  Host host = this->host();
  auto acct = authenticate(host, "alice", "secret", POSTERN_SERVICE_IMAP);
  ASSERT_TRUE(acct.ok()) << acct.error().detail;
  EXPECT_EQ(acct->address, "alice@example.test");
  EXPECT_EQ(acct->real_name, "Alice");

  auto mb = Mailbox::open(host, "alice@example.test");
  ASSERT_TRUE(mb.ok());
  auto folders = mb->list_folders();
  ASSERT_TRUE(folders.ok());
  ASSERT_EQ(folders->size(), 6u);
  EXPECT_EQ((*folders)[0].name, "INBOX");
  EXPECT_EQ(mb->create_folder("Work/Deep").ok(), true);
  EXPECT_EQ(mb->create_folder("Work").error().code, POSTERN_ERR_EXISTS);
  EXPECT_EQ(mb->delete_folder("Work").error().code, POSTERN_ERR_HAS_CHILDREN);
  EXPECT_EQ(mb->delete_folder("INBOX").error().code, POSTERN_ERR_FORBIDDEN);

  auto a1 = mb->append("INBOX", "Subject: a\r\n\r\n1\r\n", POSTERN_FLAG_SEEN, {"$Label1"}, int64_t{1000});
  auto a2 = mb->append("INBOX", "Subject: b\r\n\r\n2\r\n", 0, {}, std::nullopt);
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_EQ(a1->uid, 1u);
  EXPECT_EQ(a2->uid, 2u);
  EXPECT_EQ(*mb->read_message("inbox", 2), "Subject: b\r\n\r\n2\r\n");

  auto opened = mb->open_folder("INBOX");
  ASSERT_TRUE(opened.ok());
  FolderView view = std::move(opened->first);
  EXPECT_EQ(opened->second.messages.size(), 2u);
  EXPECT_EQ(opened->second.messages[0].keywords, (std::vector<std::string>{"$Label1"}));
  EXPECT_EQ(opened->second.messages[0].internal_date, 1000);
  EXPECT_EQ(opened->second.messages[1].internal_date, 1767225600);

  auto st = mb->store_flags("INBOX", {1, 2}, POSTERN_FLAGS_ADD, POSTERN_FLAG_DELETED, {},
                            opened->second.highest_modseq - 1);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->modified, (std::vector<uint32_t>{2}));  // appended after `since`
  auto ex = mb->expunge("INBOX", {}, POSTERN_EXPUNGE_ALL_DELETED);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(*ex, (std::vector<uint32_t>{1}));
  auto cp = mb->copy("INBOX", {2, 9}, "Archive");
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->uids, (std::vector<std::pair<uint32_t, uint32_t>>{{2, 1}}));
  auto up = view.refresh();
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->expunged, (std::vector<uint32_t>{1}));
  EXPECT_TRUE(up->added.empty());

  store_->set_quota("alice@example.test", 10);
  EXPECT_EQ(mb->append("INBOX", "too big for ten octets", 0, {}, std::nullopt).error().code, POSTERN_ERR_OVER_QUOTA);
  store_->fail_next_calls(POSTERN_ERR_TEMPORARY, "disk on fire");
  EXPECT_EQ(mb->list_folders().error().detail, "disk on fire");
  store_->fail_next_calls(POSTERN_OK);
  EXPECT_TRUE(mb->delete_folder("Work/Deep").ok());
  EXPECT_EQ(mb->usage()->second, 10u);
}

}  // namespace
}  // namespace postern::sdk::testing
