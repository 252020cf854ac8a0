// Tests of sdk::testing::FakeHost: every test plugin below is called through
// its static ABI table, exactly as posternd calls a loaded .so.
// The example plugin is compiled into this test without its entry symbol.
#define POSTERN_SDK_NO_ENTRY
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include "../../../sdk/examples/hello_filter/hello_filter.cpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace postern::sdk::testing {
namespace {

using namespace std::chrono_literals;

/** Reads its config in init and exposes what it read. */
class ConfigProbe {
 public:
  static constexpr const char* kName = "config_probe";
  static constexpr const char* kVersion = "1.0.0";

  Status init(InitContext& ctx) {
    Config c = ctx.config();
    root_name = std::string(c.name());
    greeting = c.attr_or("greeting", "world");
    missing = c.attr("missing").has_value();
    limit = c.integer("limit");
    bad_limit = c.integer("bad-limit");
    enabled = c.boolean("enabled");
    delay = c.duration("delay");
    fast = c.duration("fast");
    for (const Config& zone : c.children("zone")) {
      zones.emplace_back(zone.attr_or("name", "?"));
      zone_lines.push_back(zone.line());
    }
    all_children = c.children().size();
    note = std::string(c.child("note").text());
    no_child = !c.child("absent").valid();
    state_dir = ctx.state_dir();
    return Status::ok();
  }

  std::string root_name;
  std::string greeting;
  bool missing = true;
  std::optional<int64_t> limit;
  std::optional<int64_t> bad_limit;
  std::optional<bool> enabled;
  std::optional<std::chrono::milliseconds> delay;
  std::optional<std::chrono::milliseconds> fast;
  std::vector<std::string> zones;
  std::vector<uint32_t> zone_lines;
  size_t all_children = 0;
  std::string note;
  bool no_child = false;
  std::filesystem::path state_dir;
};

/** Subscribes to connect and propagates a refusal as its init failure. */
class ConnectOnly {
 public:
  static constexpr const char* kName = "connect_only";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_connect([](Event&) { return HookResult::reject("5.7.1", "go away", 554).disconnect(); });
  }
};

/** One handler per interesting behaviour, chosen by the peer IP or stage. */
class Verdicts {
 public:
  static constexpr const char* kName = "verdicts";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    if (auto s = ctx.on_connect([](Event& ev) -> HookResult {
          if (ev.peer_ip() == "192.0.2.1") return HookResult::reject();
          if (ev.peer_ip() == "192.0.2.2") return HookResult::tempfail("4.7.0", "try later", 421).disconnect();
          if (ev.peer_ip() == "192.0.2.3") return HookResult::accept();
          if (ev.peer_ip() == "192.0.2.4") throw std::runtime_error("database gone");
          if (ev.peer_ip() == "192.0.2.5") return HookResult::failed("no backend");
          return HookResult::continue_();
        });
        !s)
      return s;
    if (auto s = ctx.on_rcpt_to([](Event& ev) -> HookResult {
          if (ev.rcpt() == "nobody@example.net") return HookResult::reject("5.1.1", "no such user", 550);
          return {};
        });
        !s)
      return s;
    return ctx.on_data_end([](Event& ev) -> HookResult {
      auto msg = ev.message();
      if (!msg) return HookResult::failed("no message at data_end");
      ev.add_header("X-Probe", std::string("subject=") + std::string(msg->header("subject").value_or("?")));
      ev.change_header("Subject", 0, "[tagged] " + std::string(msg->header("subject").value_or("")));
      ev.remove_header("X-Spam-Flag");
      ev.add_header("X-Trailer", "bottom", false);
      ev.add_symbol("PROBE_A", 1.5, "first");
      ev.add_symbol("PROBE_B", -0.5);
      ev.add_recipient("archive@example.org");
      ev.remove_recipient("bob@example.net");
      score_seen = ev.score();
      bad_header_refused = !ev.add_header("Bad\nName", "x") && !ev.add_header("X-Inject", "a\r\nBcc: evil@example.com");
      return ev.score() > 5 ? HookResult::quarantine("scored high") : HookResult::continue_();
    });
  }
  static inline double score_seen = 0;
  static inline bool bad_header_refused = false;
};

/** Defers every connect; the test drives completion through `next`. */
class Deferring {
 public:
  static constexpr const char* kName = "deferring";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_connect([this](Event& ev) {
      Pending p = ev.defer();
      ev.add_symbol("BEFORE_DEFER", 0.25);
      held = p;
      return p.result();
    });
  }
  Pending held;
};

/** Uses the worker pool: answers from the pool task. */
class Worker {
 public:
  static constexpr const char* kName = "worker";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_mail_from([](Event& ev) {
      Pending p = ev.defer();
      ev.host().post_work([p] { p.complete(HookResult::tempfail("4.3.0", "pool said no")); });
      return p.result();
    });
  }
};

/** Timers: logs at 1 s and 10 s after init; tempfails helo until the 10 s timer fired. */
class Timed {
 public:
  static constexpr const char* kName = "timed";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    Host host = ctx.host();
    host.after(10s, [this, host] {
      ready = true;
      host.info("ready at " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                   host.now().time_since_epoch()).count()));
    });
    host.after(1s, [host] { host.info("one second"); });
    return ctx.on_helo([this](Event&) { return ready ? HookResult{} : HookResult::tempfail(); });
  }
  bool ready = false;
};

/** A DNSBL in the STYLE.md model: symbol per listing zone, complete when the last answer comes. */
class Dnsbl {
 public:
  static constexpr const char* kName = "dnsbl";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_connect([this](Event& ev) {
      Pending pending = ev.defer();
      const std::string ip(ev.peer_ip());
      for (const char* zone : {"zen.example", "bl.example"}) {
        ev.host().dns_query("7.2.0.192." + std::string(zone), POSTERN_DNS_A, 2s,
                            [this, pending, zone](const DnsAnswer& a) {
                              statuses.push_back(a.status);
                              if (a.status == POSTERN_DNS_CANCELLED) ++cancelled;
                              if (a.has_records()) pending.add_symbol(std::string("LISTED_") + zone, 3.0, a.records[0].data);
                            });
      }
      return pending.result();
    });
  }
  std::vector<postern_dns_status_t> statuses;
  static inline std::atomic<int> cancelled{0};
};

/** Init failure paths. */
class FailsInit {
 public:
  static constexpr const char* kName = "fails_init";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return Status::error("missing attribute 'zone' at line " + std::to_string(ctx.config().line()));
  }
};
class ThrowsInit {
 public:
  static constexpr const char* kName = "throws_init";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext&) { throw std::invalid_argument("bad regex"); }
};

/** Logs, reads the state dir, and checks the message view. */
class MessageReader {
 public:
  static constexpr const char* kName = "message_reader";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_data_end([this](Event& ev) {
      auto m = ev.message();
      raw_size = m->raw().size();
      headers = m->header_count();
      folded = std::string(m->header("x-folded").value_or(""));
      second_received = std::string(m->header("Received", 1).value_or(""));
      part = m->part(0);
      content_type = std::string(part.content_type);
      charset = std::string(part.charset);
      body = std::string(m->part_body(0));
      parts = m->part_count();
      recipients = ev.recipients().size();
      queue_id = std::string(ev.queue_id());
      ev.host().warn("read " + std::to_string(headers) + " headers");
      return HookResult{};
    });
  }
  size_t raw_size = 0, headers = 0, parts = 0, recipients = 0;
  std::string folded, second_received, content_type, charset, body, queue_id;
  MimePart part;
};

class LateEditor {
 public:
  static constexpr const char* kName = "late_editor";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_queued([](Event& ev) {
      return ev.add_header("X-Late", "1") || ev.add_recipient("x@example.org") ? HookResult::reject()
                                                                                : HookResult::continue_();
    });
  }
};

class Observer {
 public:
  static constexpr const char* kName = "observer";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_delivered([](Event& ev) { return ev.defer().result(); });
  }
};

const char* kMessage =
    "Received: from a by b; Mon, 1 Jan 2026 00:00:00 +0000\n"
    "Received: from c by d; Mon, 1 Jan 2026 00:00:01 +0000\n"
    "Subject: hello there\n"
    "X-Folded: first\n"
    "\tsecond\n"
    "Content-Type: text/plain; charset=\"UTF-8\"\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9 soft=\n"
    "break\n";

TEST(FakeHostTest, ConfigAccessorsReadThePluginElement) {
  FakeHost host;
  auto p = host.load<ConfigProbe>(R"(<plugin name="config_probe" enabled="yes" greeting="hi" limit="-42"
      bad-limit="4x" delay="5m" fast="250ms">
    <zone name="zen.example"/>
    <note>first <![CDATA[and]]> second</note>
    <zone name="bl.example"/>
  </plugin>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const ConfigProbe& c = p->plugin<ConfigProbe>();
  EXPECT_EQ(c.root_name, "plugin");
  EXPECT_EQ(c.greeting, "hi");
  EXPECT_FALSE(c.missing);
  EXPECT_EQ(c.limit, -42);
  EXPECT_EQ(c.bad_limit, std::nullopt);
  EXPECT_EQ(c.enabled, true);
  EXPECT_EQ(c.delay, std::chrono::minutes{5});
  EXPECT_EQ(c.fast, std::chrono::milliseconds{250});
  EXPECT_EQ(c.zones, (std::vector<std::string>{"zen.example", "bl.example"}));
  EXPECT_EQ(c.zone_lines, (std::vector<uint32_t>{3, 5}));
  EXPECT_EQ(c.all_children, 3u);
  EXPECT_EQ(c.note, "first and second");
  EXPECT_TRUE(c.no_child);
  EXPECT_EQ(c.state_dir, host.root_dir() / "config_probe");
  EXPECT_TRUE(std::filesystem::is_directory(c.state_dir));
}

TEST(FakeHostTest, StateDirIsRemovedWithTheHost) {
  std::filesystem::path dir;
  {
    FakeHost host;
    auto p = host.load<ConfigProbe>("<plugin/>");
    ASSERT_TRUE(p.ok()) << p.error();
    dir = p->state_dir();
    std::ofstream(dir / "file") << "x";
    EXPECT_TRUE(std::filesystem::exists(dir / "file"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(FakeHostTest, SubscriptionRefusedForUndeclaredStage) {
  FakeHost host;
  host.set_declared_stages({Stage::RcptTo, Stage::DataEnd});
  auto refused = host.load<ConnectOnly>("<plugin/>");
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("descriptor does not list"), std::string::npos) << refused.error();

  host.allow_all_stages();
  auto accepted = host.load<ConnectOnly>("<plugin/>");
  ASSERT_TRUE(accepted.ok()) << accepted.error();
  EXPECT_TRUE(accepted->subscribed(Stage::Connect));
  EXPECT_FALSE(accepted->subscribed(Stage::Helo));
}

TEST(FakeHostTest, DeclaredStagesComeFromADescriptorFile) {
  FakeHost host;
  const auto desc = host.root_dir() / "connect_only.plugin.xml";
  std::ofstream(desc) << R"(<?xml version="1.0"?>
<plugin-descriptor name="connect_only" version="1.0.0" abi="1.0" kind="filter">
  <hooks><hook stage="helo"/></hooks>
</plugin-descriptor>)";
  EXPECT_EQ(host.declare_from_descriptor(desc), "");
  EXPECT_FALSE(host.load<ConnectOnly>("<plugin/>").ok());
}

TEST(FakeHostTest, UnsubscribedStageIsNotCalled) {
  FakeHost host;
  auto p = host.load<ConnectOnly>("<plugin/>");
  const FakeResult r = host.run(*p, host.make_helo("192.0.2.9", "client.example"));
  EXPECT_FALSE(r.called());
  EXPECT_EQ(r.verdict(), Verdict::Continue);
}

TEST(FakeHostTest, NameDifferentFromDescriptorIsRefused) {
  FakeHost host;
  auto p = host.load<ConnectOnly>("<plugin/>", "other_name");
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.error().find("other_name"), std::string::npos);
}

TEST(FakeHostTest, SyncVerdictsAndReplyOverrides) {
  FakeHost host;
  auto p = host.load<Verdicts>("<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();

  const FakeResult plain_reject = host.run(*p, host.make_connect("192.0.2.1"));
  EXPECT_TRUE(plain_reject.called());
  EXPECT_EQ(plain_reject.verdict(), Verdict::Reject);
  EXPECT_EQ(plain_reject.code(), 0);
  EXPECT_EQ(plain_reject.enhanced(), "");
  EXPECT_FALSE(plain_reject.disconnects());

  const FakeResult temp = host.run(*p, host.make_connect("192.0.2.2"));
  EXPECT_EQ(temp.verdict(), Verdict::TempFail);
  EXPECT_EQ(temp.code(), 421);
  EXPECT_EQ(temp.enhanced(), "4.7.0");
  EXPECT_EQ(temp.text(), "try later");
  EXPECT_TRUE(temp.disconnects());

  EXPECT_EQ(host.run(*p, host.make_connect("192.0.2.3")).verdict(), Verdict::Accept);
  EXPECT_EQ(host.run(*p, host.make_connect("198.51.100.1")).verdict(), Verdict::Continue);

  const FakeResult rcpt = host.run(*p, host.make_rcpt("198.51.100.1", "a@example.org", "nobody@example.net"));
  EXPECT_EQ(rcpt.verdict(), Verdict::Reject);
  EXPECT_EQ(rcpt.code(), 550);
  EXPECT_EQ(rcpt.enhanced(), "5.1.1");
  EXPECT_EQ(rcpt.text(), "no such user");
  EXPECT_FALSE(host.logged("does not match"));
}

TEST(FakeHostTest, HeaderEditsAndRecipientEditsAreRecorded) {
  FakeHost host;
  auto p = host.load<Verdicts>("<plugin/>");
  FakeEvent data = host.make_data("198.51.100.1", "alice@example.org", {"bob@example.net"},
                                  "Subject: hi\nX-Spam-Flag: YES\n\nbody\n");
  const FakeResult r = host.run(*p, data);
  ASSERT_FALSE(r.failed()) << r.text();
  const auto edits = r.header_edits();
  ASSERT_EQ(edits.size(), 4u);
  EXPECT_EQ(edits[0].kind, HeaderEdit::Kind::Add);
  EXPECT_EQ(edits[0].name, "X-Probe");
  EXPECT_EQ(edits[0].value, "subject=hi");
  EXPECT_TRUE(edits[0].prepend);
  EXPECT_EQ(edits[1].kind, HeaderEdit::Kind::Change);
  EXPECT_EQ(edits[1].value, "[tagged] hi");
  EXPECT_EQ(edits[2].kind, HeaderEdit::Kind::Remove);
  EXPECT_EQ(edits[2].index, -1);
  EXPECT_FALSE(edits[3].prepend);
  EXPECT_EQ(r.added_header("x-probe"), "subject=hi");
  EXPECT_TRUE(Verdicts::bad_header_refused);
  EXPECT_EQ(r.recipients_added(), std::vector<std::string>{"archive@example.org"});
  EXPECT_EQ(r.recipients_removed(), std::vector<std::string>{"bob@example.net"});
  // The event itself is a value: run() does not change it.
  EXPECT_EQ(data.recipients(), std::vector<std::string>{"bob@example.net"});
}

TEST(FakeHostTest, HeaderEditsRefusedAfterTheMessageIsStored) {
  FakeHost host;
  auto p = host.load<LateEditor>("<plugin/>");
  const auto data = host.make_data("198.51.100.1", "a@example.org", {"b@example.net"}, "Subject: x\n\nbody\n");
  const FakeResult r = host.run(*p, data.at(Stage::Queued));
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_TRUE(r.header_edits().empty());
}

TEST(FakeHostTest, SymbolsAndScoreAddUp) {
  FakeHost host;
  auto p = host.load<Verdicts>("<plugin/>");
  FakeEvent data = host.make_data("198.51.100.1", "alice@example.org", {"bob@example.net"}, "Subject: s\n\nb\n");
  data.set_score(2.0);
  FakeResult r = host.run(*p, data);
  EXPECT_EQ(r.symbol("PROBE_A"), 1.5);
  EXPECT_EQ(r.symbol("PROBE_B"), -0.5);
  EXPECT_FALSE(r.has_symbol("PROBE_C"));
  ASSERT_EQ(r.symbols().size(), 2u);
  EXPECT_EQ(r.symbols()[0].detail, "first");
  EXPECT_DOUBLE_EQ(r.score(), 3.0);
  EXPECT_DOUBLE_EQ(Verdicts::score_seen, 3.0);
  EXPECT_EQ(r.verdict(), Verdict::Continue);

  data.set_score(4.5);
  r = host.run(*p, data);
  EXPECT_EQ(r.verdict(), Verdict::Quarantine);
  EXPECT_EQ(r.text(), "scored high");
}

TEST(FakeHostTest, MessageViewHasUnfoldedHeadersAndOneDecodedPart) {
  FakeHost host;
  auto p = host.load<MessageReader>("<plugin/>");
  FakeEvent data = host.make_data("198.51.100.1", "a@example.org", {"b@example.net", "c@example.net"}, kMessage);
  ASSERT_FALSE(host.run(*p, data).failed());
  const MessageReader& m = p->plugin<MessageReader>();
  EXPECT_EQ(m.raw_size, data.message_raw()->size());
  EXPECT_NE(data.message_raw()->find("\r\n\tsecond\r\n"), std::string::npos);
  EXPECT_EQ(m.headers, 6u);
  EXPECT_EQ(m.folded, "first\tsecond");
  EXPECT_EQ(m.second_received, "from c by d; Mon, 1 Jan 2026 00:00:01 +0000");
  EXPECT_EQ(m.parts, 1u);
  EXPECT_EQ(m.content_type, "text/plain");
  EXPECT_EQ(m.charset, "utf-8");
  EXPECT_EQ(m.part.parent, -1);
  EXPECT_EQ(m.part.raw_length, m.raw_size);
  EXPECT_EQ(m.body, "caf\xC3\xA9 softbreak\r\n");
  EXPECT_EQ(m.recipients, 2u);
  EXPECT_FALSE(m.queue_id.empty());
  const auto logs = host.logs();
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].level, LogLevel::Warn);
  EXPECT_EQ(logs[0].plugin, "message_reader");
  EXPECT_EQ(logs[0].text, "read 6 headers");
}

TEST(FakeHostTest, PendingCompletedFromAnotherThread) {
  FakeHost host;
  auto p = host.load<Deferring>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  EXPECT_TRUE(r.is_pending());
  EXPECT_TRUE(r.has_symbol("BEFORE_DEFER"));

  Pending pending = std::move(p->plugin<Deferring>().held);
  std::thread t([pending = std::move(pending)]() mutable {
    pending.add_symbol("FROM_THREAD", 1.0);
    EXPECT_TRUE(pending.complete(HookResult::reject("5.7.1", "listed", 554)));
  });
  EXPECT_TRUE(r.wait());
  t.join();
  EXPECT_FALSE(r.is_pending());
  EXPECT_TRUE(r.was_deferred());
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.code(), 554);
  EXPECT_EQ(r.text(), "listed");
  EXPECT_TRUE(r.has_symbol("FROM_THREAD"));
  EXPECT_FALSE(r.released_without_completion());
  EXPECT_EQ(host.late_completions(), 0u);
}

TEST(FakeHostTest, PendingReleasedWithoutCompletionContinues) {
  FakeHost host;
  auto p = host.load<Deferring>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  ASSERT_TRUE(r.is_pending());
  p->plugin<Deferring>().held = Pending{};
  EXPECT_FALSE(r.is_pending());
  EXPECT_TRUE(r.released_without_completion());
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_FALSE(r.failed());
}

TEST(FakeHostTest, DoubleCompletionIsCounted) {
  FakeHost host;
  auto p = host.load<Deferring>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  const Pending& held = p->plugin<Deferring>().held;
  EXPECT_TRUE(held.complete(HookResult::accept()));
  EXPECT_FALSE(held.complete(HookResult::reject()));
  EXPECT_FALSE(held.complete(HookResult::tempfail()));
  EXPECT_EQ(r.verdict(), Verdict::Accept);
  EXPECT_EQ(host.late_completions(), 2u);
}

TEST(FakeHostTest, HookTimeoutAppliesOnFailureAndLateCompletionIsCounted) {
  FakeHost host;
  auto p = host.load<Deferring>("<plugin/>");
  p->set_timeout(5s, OnFailure::TempFail);
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  host.clock().advance(4999ms);
  EXPECT_TRUE(r.is_pending());
  host.clock().advance(1ms);
  EXPECT_FALSE(r.is_pending());
  EXPECT_TRUE(r.timed_out());
  EXPECT_TRUE(r.failed());
  EXPECT_EQ(r.effective_verdict(), Verdict::TempFail);
  EXPECT_FALSE(p->plugin<Deferring>().held.complete(HookResult::accept()));
  EXPECT_EQ(host.late_completions(), 1u);
}

TEST(FakeHostTest, WorkerPoolRunsImmediatelyOrOnDemand) {
  FakeHost host;
  auto p = host.load<Worker>("<plugin/>");
  FakeResult now = host.run(*p, host.make_mail("192.0.2.7", "a@example.org"));
  EXPECT_TRUE(now.was_deferred());
  EXPECT_FALSE(now.is_pending());
  EXPECT_EQ(now.verdict(), Verdict::TempFail);

  host.set_work_mode(WorkMode::Manual);
  FakeResult later = host.run(*p, host.make_mail("192.0.2.7", "a@example.org"));
  EXPECT_TRUE(later.is_pending());
  EXPECT_EQ(host.queued_work(), 1u);
  EXPECT_EQ(host.run_pending_work(), 1u);
  EXPECT_FALSE(later.is_pending());
  EXPECT_EQ(later.enhanced(), "4.3.0");
}

TEST(FakeHostTest, InitFailureMessage) {
  FakeHost host;
  auto p = host.load<FailsInit>("<plugin>\n</plugin>");
  EXPECT_FALSE(p.ok());
  EXPECT_FALSE(static_cast<bool>(p));
  EXPECT_EQ(p.error(), "missing attribute 'zone' at line 1");
  EXPECT_TRUE(host.run(*p, host.make_connect("192.0.2.7")).failed());
}

TEST(FakeHostTest, InitThrowsGivesMessage) {
  FakeHost host;
  auto p = host.load<ThrowsInit>("<plugin/>");
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.error(), "init threw: bad regex");
}

TEST(FakeHostTest, InvalidConfigXmlFailsLoad) {
  FakeHost host;
  auto p = host.load<ConfigProbe>("<plugin><unclosed></plugin>");
  EXPECT_FALSE(p.ok());
  EXPECT_NE(p.error().find("config XML"), std::string::npos);
}

TEST(FakeHostTest, HookThrowsIsFailed) {
  FakeHost host;
  auto p = host.load<Verdicts>("<plugin/>");
  const FakeResult thrown = host.run(*p, host.make_connect("192.0.2.4"));
  EXPECT_TRUE(thrown.failed());
  EXPECT_EQ(thrown.text(), "hook threw: database gone");
  EXPECT_EQ(thrown.effective_verdict(), Verdict::Continue);

  p->set_on_failure(OnFailure::TempFail);
  const FakeResult failed = host.run(*p, host.make_connect("192.0.2.5"));
  EXPECT_TRUE(failed.failed());
  EXPECT_EQ(failed.effective_verdict(), Verdict::TempFail);
}

TEST(FakeHostTest, TimersFireWithTheManualClock) {
  FakeHost host;
  const auto start = host.clock().now();
  auto p = host.load<Timed>("<plugin/>");
  const auto helo = host.make_helo("192.0.2.7", "client.example");
  EXPECT_EQ(host.run(*p, helo).verdict(), Verdict::TempFail);
  EXPECT_EQ(host.scheduled(), 2u);
  EXPECT_EQ(host.clock().advance(9s), 1u);
  EXPECT_TRUE(host.logged("one second"));
  EXPECT_EQ(host.run(*p, helo).verdict(), Verdict::TempFail);
  EXPECT_EQ(host.clock().advance(2s), 1u);
  EXPECT_EQ(host.run(*p, helo).verdict(), Verdict::Continue);
  // The clock reads the timer's due time while it fires, not the advance target.
  const auto ready_at = std::chrono::duration_cast<std::chrono::seconds>((start + 10s).time_since_epoch()).count();
  EXPECT_TRUE(host.logged("ready at " + std::to_string(ready_at)));
  EXPECT_EQ(host.clock().now(), start + 11s);
}

TEST(FakeHostTest, ClockSetMovesTime) {
  FakeHost host;
  const auto t = std::chrono::system_clock::time_point(std::chrono::hours{24 * 365 * 60});
  host.clock().set(t);
  EXPECT_EQ(host.clock().now(), t);
  host.clock().advance(std::chrono::minutes{6});
  EXPECT_EQ(host.clock().now(), t + std::chrono::minutes{6});
}

TEST(FakeHostTest, DnsFakeAnswersArriveOnRunPendingWork) {
  FakeHost host;
  host.dns().set_records("7.2.0.192.zen.example.", POSTERN_DNS_A, {"127.0.0.2"});
  auto p = host.load<Dnsbl>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  EXPECT_TRUE(r.is_pending());
  EXPECT_TRUE(p->plugin<Dnsbl>().statuses.empty());  // never inside dns_query
  EXPECT_EQ(host.run_pending_work(), 2u);
  EXPECT_FALSE(r.is_pending());
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_EQ(p->plugin<Dnsbl>().statuses, (std::vector<postern_dns_status_t>{POSTERN_DNS_OK, POSTERN_DNS_NXDOMAIN}));
  EXPECT_EQ(r.symbol("LISTED_zen.example"), 3.0);
  EXPECT_FALSE(r.has_symbol("LISTED_bl.example"));
  const auto queries = host.dns().queries();
  ASSERT_EQ(queries.size(), 2u);
  EXPECT_EQ(queries[0].first, "7.2.0.192.zen.example");
}

TEST(FakeHostTest, DnsTimeoutAfterTheQueryTimeoutOnTheManualClock) {
  FakeHost host;
  host.dns().set_timeout("7.2.0.192.zen.example", POSTERN_DNS_A);
  host.dns().set_records("7.2.0.192.bl.example", POSTERN_DNS_A, {"127.0.0.4"});
  auto p = host.load<Dnsbl>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  host.run_pending_work();
  EXPECT_TRUE(r.is_pending());  // the zen query still holds a reference
  EXPECT_EQ(host.clock().advance(1999ms), 0u);
  EXPECT_EQ(host.clock().advance(1ms), 1u);
  EXPECT_FALSE(r.is_pending());
  EXPECT_EQ(p->plugin<Dnsbl>().statuses, (std::vector<postern_dns_status_t>{POSTERN_DNS_OK, POSTERN_DNS_TIMEOUT}));
  EXPECT_TRUE(r.has_symbol("LISTED_bl.example"));
}

TEST(FakeHostTest, SettleRunsEverythingAPendingHookWaitsFor) {
  FakeHost host;
  host.dns().set_timeout("7.2.0.192.zen.example", POSTERN_DNS_A);
  auto p = host.load<Dnsbl>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  const auto before = host.clock().now();
  host.settle();
  EXPECT_FALSE(r.is_pending());
  EXPECT_EQ(host.clock().now(), before + 2s);
}

TEST(FakeHostTest, UnloadCancelsOutstandingDnsQueries) {
  FakeHost host;
  auto p = host.load<Dnsbl>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  Dnsbl::cancelled = 0;
  p.unload();
  EXPECT_EQ(Dnsbl::cancelled, 2);
  EXPECT_FALSE(p.ok());
  EXPECT_FALSE(r.is_pending());
  EXPECT_EQ(host.scheduled(), 0u);
}

/** A raw C plugin: loaded through load_table, no C++ SDK. */
struct RawC {
  static postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char* err,
                               size_t cap) {
    if (api->subscribe(host, POSTERN_STAGE_HELO) != POSTERN_OK) {
      std::snprintf(err, cap, "raw: subscribe failed");
      return POSTERN_ERR_FAILED;
    }
    *inst = const_cast<postern_host_api_v1_t*>(api);
    return POSTERN_OK;
  }
  static postern_verdict_t hook(void* inst, postern_stage_t, postern_event_t* ev, postern_hook_result_t* out) {
    auto* api = static_cast<const postern_host_api_v1_t*>(inst);
    postern_str_t helo{};
    if (api->event_get(ev, POSTERN_PROP_HELO, &helo) == POSTERN_OK && std::string_view(helo.ptr, helo.len) == "localhost") {
      out->smtp_code = 550;
      out->enhanced = {"5.7.1", 5};
      out->text = {"no localhost", 12};
      return POSTERN_VERDICT_REJECT;
    }
    return POSTERN_VERDICT_CONTINUE;
  }
  static void destroy(void*) {}
  static const postern_plugin_v1_t* table() {
    static const postern_plugin_v1_t t = {sizeof t, POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR, "raw_c", "0.1",
                                          &init, &hook, &destroy};
    return &t;
  }
};

TEST(FakeHostTest, RawCTableLoadsThroughTheSamePath) {
  FakeHost host;
  auto p = host.load_table(RawC::table(), "<plugin/>");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r = host.run(*p, host.make_helo("192.0.2.7", "localhost"));
  EXPECT_EQ(r.verdict(), Verdict::Reject);
  EXPECT_EQ(r.text(), "no localhost");
  EXPECT_EQ(host.run(*p, host.make_helo("192.0.2.7", "mx.example")).verdict(), Verdict::Continue);

  EXPECT_FALSE(host.load_table(nullptr, "<plugin/>").ok());
  postern_plugin_v1_t future = *RawC::table();
  future.abi_major = 2;
  EXPECT_NE(host.load_table(&future, "<plugin/>").error().find("ABI major"), std::string::npos);
}

TEST(FakeHostTest, ObserverEventsCannotBeDeferred) {
  FakeHost host;
  auto p = host.load<Observer>("<plugin/>");
  const FakeResult r = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"b@example.net"}, "S: x\n\nb\n")
                                        .at(Stage::Delivered));
  EXPECT_FALSE(r.was_deferred());
  EXPECT_EQ(r.verdict(), Verdict::Continue);
}

TEST(FakeHostTest, HostApiTableIsComplete) {
  const postern_host_api_v1_t* api = FakeHost::api();
  EXPECT_EQ(api->struct_size, sizeof(postern_host_api_v1_t));
  EXPECT_EQ(api->abi_major, static_cast<uint32_t>(POSTERN_ABI_VERSION_MAJOR));
  EXPECT_EQ(api->abi_minor, static_cast<uint32_t>(POSTERN_ABI_VERSION_MINOR));
  // The table after the three header words is nothing but function pointers; none may be missing.
  constexpr size_t kHeader = offsetof(postern_host_api_v1_t, subscribe);
  constexpr size_t kCount = (sizeof(postern_host_api_v1_t) - kHeader) / sizeof(void (*)());
  // A function appended to the ABI and not yet implemented here is zero-filled: caught below.
  EXPECT_GE(kCount, 38u);
  const auto* bytes = reinterpret_cast<const unsigned char*>(api) + kHeader;
  for (size_t i = 0; i < kCount; ++i) {
    void (*fn)() = nullptr;
    std::memcpy(&fn, bytes + i * sizeof fn, sizeof fn);
    EXPECT_NE(fn, nullptr) << "host API function #" << i << " is not implemented";
  }
}

class EventHoarder {
 public:
  static constexpr const char* kName = "event_hoarder";
  static constexpr const char* kVersion = "1.0.0";
  Status init(InitContext& ctx) {
    return ctx.on_connect([this](Event& ev) {
      Pending p = ev.defer();
      // Wrong on purpose: the event is gone once the hook returns.
      ev.host().after(1s, [this, ev, p] { late_peer = std::string(ev.peer_ip()); });
      return p.result();
    });
  }
  std::string late_peer = "unset";
};

TEST(FakeHostTest, EventUsedAfterTheHookIsReported) {
  FakeHost host;
  auto p = host.load<EventHoarder>("<plugin/>");
  FakeResult r = host.run(*p, host.make_connect("192.0.2.7"));
  host.clock().advance(1s);
  EXPECT_EQ(p->plugin<EventHoarder>().late_peer, "");
  EXPECT_TRUE(host.logged("event used after on_hook returned"));
  EXPECT_TRUE(r.released_without_completion());
}

TEST(HelloFilterTest, AddsHeaderAndSymbolAtDataEnd) {
  FakeHost host;
#ifdef POSTERN_SOURCE_DIR
  ASSERT_EQ(host.declare_from_descriptor(std::filesystem::path(POSTERN_SOURCE_DIR) /
                                         "sdk/examples/hello_filter/hello_filter.plugin.xml"),
            "");
#endif
  auto p = host.load<hello::HelloFilter>(R"(<plugin name="hello_filter" greeting="from-test" weight="0.5"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult r =
      host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"b@example.net"}, "Subject: x\n\nbody\n"));
  EXPECT_EQ(r.verdict(), Verdict::Continue);
  EXPECT_EQ(r.added_header("X-Hello"), "from-test; peer=192.0.2.7");
  EXPECT_EQ(r.symbol("HELLO"), 0.5);
  // Without reject-local, no recipient is refused.
  EXPECT_EQ(host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "blocked@example.net")).verdict(),
            Verdict::Continue);
}

TEST(HelloFilterTest, DefaultsAndRejectLocal) {
  FakeHost host;
  auto p = host.load<hello::HelloFilter>(R"(<plugin name="hello_filter" reject-local="blocked"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  const FakeResult data = host.run(*p, host.make_data("192.0.2.7", "a@example.org", {"b@example.net"}, "S: x\n\nb\n"));
  EXPECT_EQ(data.added_header("X-Hello"), "world; peer=192.0.2.7");
  EXPECT_EQ(data.symbol("HELLO"), 0.1);
  const FakeResult rcpt = host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "blocked@example.net"));
  EXPECT_EQ(rcpt.verdict(), Verdict::Reject);
  EXPECT_EQ(rcpt.code(), 550);
  EXPECT_EQ(rcpt.enhanced(), "5.7.1");
  EXPECT_NE(rcpt.text().find("hello_filter"), std::string::npos);
  EXPECT_EQ(host.run(*p, host.make_rcpt("192.0.2.7", "a@example.org", "blocked2@example.net")).verdict(),
            Verdict::Continue);
  EXPECT_TRUE(host.logged("rejecting local part \"blocked\""));
}

TEST(HelloFilterTest, BadWeightFailsInit) {
  FakeHost host;
  auto p = host.load<hello::HelloFilter>("<plugin name=\"hello_filter\"\n weight=\"heavy\"/>");
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.error(), "weight=\"heavy\" is not a number (line 1)");
}

}  // namespace
}  // namespace postern::sdk::testing
