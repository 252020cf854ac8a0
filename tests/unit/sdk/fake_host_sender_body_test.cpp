// ABI 1.3 sender and body edits through the SDK and FakeHost: Event's and
// Pending's set_mail_from / replace_body, with posternd's stage rule (data_end
// only) and checks; and the contract fix (enum values taken as integers).
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace postern::sdk::testing {
namespace {

using namespace std::chrono_literals;

const char* kRaw = "From: a@example.org\nSubject: hi\n\nbody\n";

/**
 * Edits synchronously at data_end (and tries at rcpt_to) from its config; in
 * `body`, '|' stands for LF and '^' for CR (XML attributes cannot hold them).
 */
class Editor {
 public:
  static constexpr const char* kName = "editor";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    from_ = ctx.config().attr_or("from", "");
    args_ = ctx.config().attr_or("args", "");
    body_ = ctx.config().attr_or("body", "");
    for (char& c : body_) c = c == '|' ? '\n' : c == '^' ? '\r' : c;
    auto edit = [this](Event& ev) {
      sender_ok = ev.set_mail_from(from_, args_);
      seen_from = std::string(ev.mail_from());
      body_ok = ev.replace_body(body_);
      return HookResult{};
    };
    ctx.on_data_end(edit);
    ctx.on_rcpt_to(edit);
    return Status::ok();
  }
  bool sender_ok = false;
  bool body_ok = false;
  std::string seen_from;

 private:
  std::string from_, args_, body_;
};

/** Defers data_end and rcpt_to and keeps the handle for the test. */
class Holder {
 public:
  static constexpr const char* kName = "holder";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    auto hold = [this](Event& ev) {
      pending = ev.defer();
      return pending.result();
    };
    ctx.on_data_end(hold);
    ctx.on_rcpt_to(hold);
    return Status::ok();
  }
  Pending pending;
};

TEST(FakeHostSenderBodyTest, DataEndHookChangesSenderAndBody) {
  FakeHost host;
  auto p = host.load<Editor>(R"(<plugin from="bounce@example.net" args="RET=HDRS ENVID=x1" body="new|body"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw));
  EXPECT_TRUE(p->plugin<Editor>().sender_ok);
  EXPECT_TRUE(p->plugin<Editor>().body_ok);
  EXPECT_EQ(p->plugin<Editor>().seen_from, "bounce@example.net") << "the hook reads its change back";
  ASSERT_TRUE(r.sender_change().has_value());
  EXPECT_EQ(r.sender_change()->address, "bounce@example.net");
  EXPECT_EQ(r.sender_change()->esmtp_args, "RET=HDRS ENVID=x1");
  EXPECT_EQ(r.replaced_body(), std::optional<std::string>("new\r\nbody\r\n")) << "LF becomes CRLF, a final one is added";
}

TEST(FakeHostSenderBodyTest, NullSenderAndEmptyBodyAreAllowed) {
  FakeHost host;
  auto p = host.load<Editor>(R"(<plugin from="" body=""/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw));
  ASSERT_TRUE(r.sender_change().has_value());
  EXPECT_EQ(r.sender_change()->address, "");
  EXPECT_EQ(r.replaced_body(), std::optional<std::string>(""));
}

TEST(FakeHostSenderBodyTest, EditsAreRefusedBeforeDataEnd) {
  FakeHost host;
  auto p = host.load<Editor>(R"(<plugin from="bounce@example.net" body="x"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "bob@example.net"));
  EXPECT_FALSE(p->plugin<Editor>().sender_ok);
  EXPECT_FALSE(p->plugin<Editor>().body_ok);
  EXPECT_FALSE(r.sender_change().has_value());
  EXPECT_FALSE(r.replaced_body().has_value());
}

struct BadEdit {
  const char* config;
  bool sender_ok;
  bool body_ok;
};

class FakeHostBadEditTest : public ::testing::TestWithParam<BadEdit> {};

TEST_P(FakeHostBadEditTest, InvalidInputIsRefused) {
  FakeHost host;
  auto p = host.load<Editor>(GetParam().config);
  ASSERT_TRUE(p.ok()) << p.error();
  FakeEvent ev = host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw);
  ev.set_max_message_size(16);
  const FakeResult r = host.run(*p, ev);
  EXPECT_EQ(p->plugin<Editor>().sender_ok, GetParam().sender_ok);
  EXPECT_EQ(p->plugin<Editor>().body_ok, GetParam().body_ok);
  EXPECT_EQ(r.sender_change().has_value(), GetParam().sender_ok);
  EXPECT_EQ(r.replaced_body().has_value(), GetParam().body_ok);
}

INSTANTIATE_TEST_SUITE_P(
    Table, FakeHostBadEditTest,
    ::testing::Values(BadEdit{R"(<plugin from="no-at-sign" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="&lt;a@b.example&gt;" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a b@c.example" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a@b.example" args="RET=MAYBE" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a@b.example" args="NOTIFY=NEVER" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a@b.example" args="BODY=7BIT BODY=8BITMIME" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a@b.example" args="SMTPUTF8=yes" body="ok"/>)", false, true},
                      BadEdit{R"(<plugin from="a@b.example" body="bare^cr"/>)", true, false},
                      BadEdit{R"(<plugin from="a@b.example" body="seventeen octets!"/>)", true, false},
                      BadEdit{R"(<plugin from="a@b.example" args="SIZE=10 AUTH=&lt;&gt; smtputf8" body="sixteen octets!!"/>)",
                              true, false}));

TEST(FakeHostSenderBodyTest, PendingEditsFromAnotherThreadApplyWithTheCompletion) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw));
  ASSERT_TRUE(r.is_pending());
  Pending pending = p->plugin<Holder>().pending;
  p->plugin<Holder>().pending = Pending();
  ASSERT_TRUE(pending.can_edit_sender_and_body());
  std::thread worker([pending, r] {
    EXPECT_FALSE(pending.set_mail_from("not an address"));
    EXPECT_FALSE(pending.replace_body(std::string("nul\0", 4)));
    EXPECT_TRUE(pending.set_mail_from("first@example.net"));
    EXPECT_TRUE(pending.set_mail_from("srs@example.net", "RET=HDRS")) << "the last change wins";
    EXPECT_TRUE(pending.replace_body("clean\r\n"));
    EXPECT_FALSE(r.sender_change().has_value()) << "edits wait for the completion";
    EXPECT_TRUE(pending.complete(HookResult::quarantine("held")));
    EXPECT_FALSE(pending.set_mail_from("after@example.net")) << "refused once completed";
    EXPECT_FALSE(pending.replace_body("after"));
  });
  worker.join();
  EXPECT_EQ(r.verdict(), Verdict::Quarantine);
  ASSERT_TRUE(r.sender_change().has_value());
  EXPECT_EQ(r.sender_change()->address, "srs@example.net");
  EXPECT_EQ(r.sender_change()->esmtp_args, "RET=HDRS");
  EXPECT_EQ(r.replaced_body(), std::optional<std::string>("clean\r\n"));
}

TEST(FakeHostSenderBodyTest, PendingEditsAreDroppedOnTimeoutAndRefusedBeforeDataEnd) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  p->set_timeout(5s);
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw));
  Pending& pending = p->plugin<Holder>().pending;
  EXPECT_TRUE(pending.set_mail_from("srs@example.net"));
  EXPECT_TRUE(pending.replace_body("x"));
  host.clock().advance(6s);
  EXPECT_TRUE(r.timed_out());
  EXPECT_FALSE(r.sender_change().has_value());
  EXPECT_FALSE(r.replaced_body().has_value());
  pending = Pending();

  const FakeResult rr = host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "bob@example.net"));
  Pending& at_rcpt = p->plugin<Holder>().pending;
  EXPECT_FALSE(at_rcpt.set_mail_from("srs@example.net"));
  EXPECT_FALSE(at_rcpt.replace_body("x"));
  at_rcpt = Pending();
  EXPECT_TRUE(rr.completed());
}

TEST(FakeHostSenderBodyTest, PendingBodyKeepsTheSizeLimitKnownAtDefer) {
  FakeHost host;
  auto p = host.load<Holder>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  FakeEvent ev = host.make_data("192.0.2.7", "a@example.org", {"bob@example.net"}, kRaw);
  ev.set_max_message_size(4);
  const FakeResult r = host.run(*p, ev);
  Pending pending = p->plugin<Holder>().pending;
  p->plugin<Holder>().pending = Pending();
  EXPECT_FALSE(pending.replace_body("too long"));
  EXPECT_TRUE(pending.replace_body("ok"));
  EXPECT_TRUE(pending.complete(HookResult{}));
  EXPECT_EQ(r.replaced_body(), std::optional<std::string>("ok\r\n"));
}

// --- ABI 1.3 contract fix: enum values from a plugin are integers, range-checked.

/** Passes out-of-range values for every enum parameter, through the raw table. */
class Raw {
 public:
  static constexpr const char* kName = "raw";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    const postern_host_api_v1_t* api = ctx.host().api();
    postern_host_t* h = ctx.host().handle();
    subscribe_status = api->subscribe(h, 99u);
    dns_status = api->dns_query(h, to_abi("example.org"), 0u, 0, [](void*, const postern_dns_answer_t*) {}, nullptr);
    api->log(h, 7u, to_abi("odd level"));
    return Status::ok();
  }
  postern_status_t subscribe_status = POSTERN_OK;
  postern_status_t dns_status = POSTERN_OK;
};

TEST(FakeHostContractTest, OutOfRangeEnumValuesAreRefusedOrReported) {
  FakeHost host;
  auto p = host.load<Raw>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->plugin<Raw>().subscribe_status, POSTERN_ERR_INVALID);
  EXPECT_EQ(p->plugin<Raw>().dns_status, POSTERN_ERR_INVALID);
  bool stage_logged = false;
  bool level_logged = false;
  for (const auto& line : host.logs()) {
    if (line.text.find("subscribe to stage 99, which is not a postern_stage_t") != std::string::npos)
      stage_logged = true;
    if (line.level == LogLevel::Error && line.text == "invalid log level 7: odd level") level_logged = true;
  }
  EXPECT_TRUE(stage_logged);
  EXPECT_TRUE(level_logged);
}

}  // namespace
}  // namespace postern::sdk::testing
