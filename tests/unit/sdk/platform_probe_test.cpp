// sdk/examples/platform_probe under FakeHost: the verdict query over an
// outbound connection (answered, refused, closed, on-unavailable="tempfail"),
// the injected notice, the mailbox-event counters and `probe stats`.
#define POSTERN_SDK_NO_ENTRY
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include "../../../sdk/examples/platform_probe/platform_probe.cpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::sdk::testing {
namespace {

const char* kRaw = "From: Sender <s@example.org>\nSubject: hello there\nMessage-ID: <m1@example.org>\n\nbody\n";

class PlatformProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(host_.declare_from_descriptor(std::string(POSTERN_SOURCE_DIR) +
                                            "/sdk/examples/platform_probe/platform_probe.plugin.xml"),
              "");
  }
  Loaded load(const std::string& attrs) {
    auto p = host_.load<probe::PlatformProbe>("<plugin name=\"platform_probe\" " + attrs + "/>");
    EXPECT_TRUE(p.ok()) << p.error();
    return p;
  }
  FakeResult data_end(Loaded& p, std::vector<std::string> rcpts = {"bob@example.net"}) {
    return host_.run(p, host_.make_data("192.0.2.7", "s@example.org", std::move(rcpts), kRaw));
  }
  std::string stats_json() {
    const FakeCommandResult r = host_.command("probe stats");
    EXPECT_TRUE(r.answered());
    EXPECT_EQ(r.exit(), CommandExit::Ok) << r.text();
    return r.json();
  }

  FakeHost host_;
};

TEST_F(PlatformProbeTest, AnswerBecomesTheHeaderThroughThePendingHandle) {
  auto p = load(R"(verdict-host="verdict.example.test" verdict-port="7357" verdict-timeout="2s")");
  const FakeResult r = data_end(p);
  ASSERT_TRUE(r.is_pending());
  const auto reqs = host_.connect_requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].host, "verdict.example.test");
  EXPECT_EQ(reqs[0].port, 7357);
  EXPECT_EQ(reqs[0].timeout_ms, 2000u);
  auto peer = host_.accept_connect();
  ASSERT_TRUE(peer.opened()) << peer.error();
  EXPECT_EQ(peer.take_output(), "CHECK peer=192.0.2.7 from=s@example.org rcpts=1 msgid=<m1@example.org>\r\n");
  peer.send("spam");  // a line may arrive in pieces
  EXPECT_TRUE(r.is_pending());
  peer.send(" score=7.5\r\n");
  ASSERT_TRUE(r.completed());
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_EQ(r.added_header("X-Probe-Verdict"), "spam score=7.5");
  EXPECT_TRUE(peer.closed());
  EXPECT_NE(stats_json().find(R"("verdicts":{"answered":1,"unavailable":0})"), std::string::npos);
}

TEST_F(PlatformProbeTest, UnavailableServiceMarksTheMessageOrTempfails) {
  struct Case {
    const char* policy;
    bool refuse;  // else the service closes without a line
    const char* header;
  };
  for (const Case& c : {Case{"continue", true, "unavailable (refused)"},
                        Case{"continue", false, "unavailable (closed without an answer)"},
                        Case{"tempfail", true, nullptr}}) {
    SCOPED_TRACE(std::string(c.policy) + (c.refuse ? " refused" : " closed"));
    auto p = load(std::string(R"(verdict-port="7357" on-unavailable=")") + c.policy + "\"");
    const FakeResult r = data_end(p);
    if (c.refuse) {
      ASSERT_TRUE(host_.fail_connect(ConnectStatus::Refused, "connection refused"));
    } else {
      auto peer = host_.accept_connect();
      ASSERT_TRUE(peer.opened());
      peer.send("no line end");
      peer.close();
    }
    ASSERT_TRUE(r.completed());
    if (c.header != nullptr) {
      EXPECT_EQ(r.verdict(), Verdict::Continue);
      EXPECT_EQ(r.added_header("X-Probe-Verdict"), c.header);
    } else {
      EXPECT_EQ(r.verdict(), Verdict::TempFail);
      EXPECT_EQ(r.code(), 451);
      EXPECT_EQ(r.enhanced(), "4.7.0");
      EXPECT_TRUE(r.header_edits().empty());
    }
    EXPECT_NE(stats_json().find(R"("verdicts":{"answered":0,"unavailable":1})"), std::string::npos);
    p.unload();
  }
}

TEST_F(PlatformProbeTest, WatchedRecipientInjectsANotice) {
  auto p = load(R"(watch="Probe-Notify@example.net" notify-to="ops@example.net")");
  EXPECT_EQ(data_end(p).verdict(), Verdict::Continue);  // no verdict-port: nothing deferred
  EXPECT_TRUE(host_.injected().empty());
  EXPECT_EQ(data_end(p, {"bob@example.net", "probe-notify@EXAMPLE.net"}).verdict(), Verdict::Continue);
  host_.run_pending_work();
  const auto got = host_.injected();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].mail_from, "");
  EXPECT_EQ(got[0].recipients, std::vector<std::string>{"ops@example.net"});
  EXPECT_EQ(got[0].skip_filters, std::vector<std::string>{"platform_probe"});
  EXPECT_NE(got[0].message.find("\r\nSubject: Mail for probe-notify@example.net\r\n"), std::string::npos);
  EXPECT_NE(got[0].message.find("Auto-Submitted: auto-generated\r\n"), std::string::npos);
  EXPECT_NE(got[0].message.find("  Subject:    hello there\r\n"), std::string::npos);
  EXPECT_NE(got[0].message.find("  Message-ID: <m1@example.org>\r\n"), std::string::npos);
  EXPECT_NE(stats_json().find(R"("notices":{"queued":1,"failed":0})"), std::string::npos);
}

TEST_F(PlatformProbeTest, BadConfigurationRefusesToInitialise) {
  for (const char* attrs : {R"(verdict-port="70000")", R"(verdict-timeout="soon")", R"(on-unavailable="maybe")",
                            R"(watch="x@example.net")"}) {
    SCOPED_TRACE(attrs);
    auto p = host_.load<probe::PlatformProbe>(std::string("<plugin name=\"platform_probe\" ") + attrs + "/>");
    EXPECT_FALSE(p.ok());
  }
}

TEST_F(PlatformProbeTest, MailboxEventsAreCountedForProbeStats) {
  auto p = load("");
  MailboxEvent stored;
  stored.kind = POSTERN_MBOX_EVENT_STORED;
  stored.account = "bob@example.net";
  stored.folder = "INBOX";
  stored.actor = "delivery";
  stored.uids = {7};
  host_.raise_mailbox_event(stored);
  stored.uids = {8};
  host_.raise_mailbox_event(stored);
  MailboxEvent moved = stored;
  moved.kind = POSTERN_MBOX_EVENT_MOVED;
  moved.target_folder = "Archive \"old\"";
  moved.actor = "imap";
  moved.uids = {7, 8};
  moved.target_uids = {1, 2};
  host_.raise_mailbox_event(moved);
  EXPECT_EQ(stats_json(),
            R"({"verdicts":{"answered":0,"unavailable":0},"notices":{"queued":0,"failed":0},)"
            R"("events":{"stored":2,"copied":0,"moved":1,"expunged":0,"flags":0},)"
            R"("stored":[{"folder":"INBOX","messages":2}],)"
            R"("moved":[{"from":"INBOX","to":"Archive \"old\"","actor":"imap","messages":2}],"copied":[]})");
  const FakeCommandResult text = host_.command("probe stats");
  EXPECT_NE(text.text().find("moved    INBOX -> Archive \"old\" by imap: 2\n"), std::string::npos) << text.text();
}

}  // namespace
}  // namespace postern::sdk::testing
