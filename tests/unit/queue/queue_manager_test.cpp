// Queue manager, retry schedule, state file and DSNs, against a fake transport
// and a manual clock (docs/queue.md).

#include "core/config/diagnostics.hpp"
#include "core/event/chain.hpp"
#include "core/plugin/loader.hpp"
#include "tests/unit/temp_dir.hpp"
#include "core/mime/mime.hpp"
#include "core/queue/dsn.hpp"
#include "core/queue/manager.hpp"
#include "core/queue/queue_config.hpp"
#include "core/queue/spool.hpp"
#include "core/queue/state.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <variant>

namespace postern::core::queue {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using TimePoint = std::chrono::system_clock::time_point;

using postern::testing::TempDir;

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir, ec)) ++n;
  return n;
}

template <typename Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5000ms) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (p()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return p();
}

// ---------------------------------------------------------------- schedule

TEST(QueueConfigTest, DefaultRetryScheduleIs30m1h2h3hThenEvery4h) {
  QueueConfig cfg;
  EXPECT_EQ(cfg.backoff(1), 30min);
  EXPECT_EQ(cfg.backoff(2), 1h);
  EXPECT_EQ(cfg.backoff(3), 2h);
  EXPECT_EQ(cfg.backoff(4), 3h);
  EXPECT_EQ(cfg.backoff(5), 4h);
  EXPECT_EQ(cfg.backoff(40), 4h);
  EXPECT_EQ(cfg.lifetime, 168h);
  EXPECT_EQ(cfg.delay_warning, 4h);
}

TEST(QueueConfigTest, ParsesAttributesAndClampsBackoff) {
  const std::string text =
      R"(<queue max-connections="20" max-per-destination="3" retry="1m 5m 2h" min-backoff="2m" max-backoff="1h" lifetime="2d" delay-warning="0"/>)";
  pugi::xml_document doc;
  ASSERT_TRUE(doc.load_string(text.c_str()));
  config::Diagnostics diag("t.xml", text);
  QueueConfig cfg = parse_queue_config(doc.child("queue"), diag);
  EXPECT_TRUE(diag.ok());
  EXPECT_EQ(cfg.max_connections, 20u);
  EXPECT_EQ(cfg.max_per_destination, 3u);
  EXPECT_EQ(cfg.backoff(1), 2min);  // min-backoff raises 1m
  EXPECT_EQ(cfg.backoff(2), 5min);
  EXPECT_EQ(cfg.backoff(3), 1h);    // max-backoff caps 2h
  EXPECT_EQ(cfg.backoff(9), 1h);
  EXPECT_EQ(cfg.lifetime, 48h);
  EXPECT_EQ(cfg.delay_warning, 0s);
}

TEST(QueueConfigTest, ReportsBadAttributesWithTheirName) {
  const std::string text = R"(<queue retry="30m soon" max-connections="0" colour="red"/>)";
  pugi::xml_document doc;
  ASSERT_TRUE(doc.load_string(text.c_str()));
  config::Diagnostics diag("t.xml", text);
  parse_queue_config(doc.child("queue"), diag);
  ASSERT_EQ(diag.errors().size(), 3u);
  EXPECT_NE(diag.errors()[0].message.find("soon"), std::string::npos);
  EXPECT_NE(diag.errors()[1].message.find("max-connections"), std::string::npos);
  EXPECT_NE(diag.errors()[2].message.find("colour"), std::string::npos);
}

// ---------------------------------------------------------------- state file

MessageState sample_state() {
  MessageState st;
  st.attempts = 2;
  st.next_try = TimePoint(std::chrono::seconds(1763810157));
  st.last_attempt = TimePoint(std::chrono::seconds(1763800000));
  st.delay_warned = true;
  Unit a;
  a.rcpt = 0;
  a.target = "\"john doe\"@example.net";
  a.status = UnitStatus::Relayed;
  a.code = 250;
  a.enhanced = "2.0.0";
  a.text = "ok queued as X";
  a.remote = "mx.example.net[192.0.2.1]:25";
  a.reported = true;
  Unit b;
  b.rcpt = 1;
  b.target = "carol@example.org";
  b.local = true;
  b.code = 452;
  b.enhanced = "4.2.2";
  b.text = "mailbox full\r\nsecond line";
  b.remote = "local";
  Unit c;  // unresolved
  c.rcpt = 2;
  st.units = {a, b, c};
  return st;
}

TEST(QueueStateTest, RoundTripsEveryField) {
  const MessageState st = sample_state();
  auto back = parse_state(format_state(st));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->attempts, 2u);
  EXPECT_EQ(back->next_try, st.next_try);
  EXPECT_EQ(back->last_attempt, st.last_attempt);
  EXPECT_TRUE(back->delay_warned);
  ASSERT_EQ(back->units.size(), 3u);
  EXPECT_EQ(back->units[0].target, "\"john doe\"@example.net");
  EXPECT_EQ(back->units[0].status, UnitStatus::Relayed);
  EXPECT_TRUE(back->units[0].reported);
  EXPECT_EQ(back->units[0].remote, "mx.example.net[192.0.2.1]:25");
  EXPECT_TRUE(back->units[1].local);
  EXPECT_EQ(back->units[1].code, 452);
  EXPECT_EQ(back->units[1].text, "mailbox full  second line");  // one line
  EXPECT_EQ(back->units[2].target, "");
  EXPECT_EQ(back->units[2].status, UnitStatus::Pending);
}

TEST(QueueStateTest, EveryTruncationOfTheFileIsRejected) {
  // A crash while writing can only leave the tmp file short; the reader must
  // never take a prefix for a whole state (it would forget pending recipients).
  const std::string text = format_state(sample_state());
  for (size_t n = 0; n < text.size(); ++n) EXPECT_FALSE(parse_state(text.substr(0, n))) << n;
  EXPECT_TRUE(parse_state(text));
}

TEST(QueueStateTest, WriteReplacesAtomicallyAndLeavesNoTmp) {
  TempDir tmp;
  const fs::path file = tmp.path / "id1";
  MessageState st = sample_state();
  write_state_file(file, st);
  st.attempts = 3;
  // A stale tmp from an interrupted write is simply overwritten.
  std::ofstream(file.string() + ".tmp") << "postern-state 1\nattempts: 9\n";
  write_state_file(file, st);
  EXPECT_FALSE(fs::exists(file.string() + ".tmp"));
  auto back = read_state_file(file);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->attempts, 3u);
}

// ---------------------------------------------------------------- DSN

Envelope original_envelope() {
  Envelope e;
  e.queue_id = "18a2b3c4d5e6f0001a3c";
  e.mail_from = "alice@example.org";
  e.recipients = {{"bob@example.net", "FAILURE", "rfc822;bob+2Bx@example.net"}, {"carol@example.net", "", ""}};
  e.envid = "QQ+2B314";
  e.received_at = TimePoint(std::chrono::seconds(1763810157));
  return e;
}

const std::string kOriginal =
    "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\n"
    "body line 1\r\nbody line 2\r\n";

DsnRequest failure_request(const Envelope& env) {
  DsnRequest rq;
  rq.kind = DsnKind::Failure;
  rq.original = &env;
  rq.original_message = kOriginal;
  rq.to = env.mail_from;
  rq.reporting_mta = "mx.example.test";
  rq.queue_id = "18a2b3c4d5e6f0001fff";
  rq.now = env.received_at + 1h;
  DsnRecipient r;
  r.final_recipient = "bob@example.net";
  r.orcpt = "rfc822;bob+2Bx@example.net";
  r.action = "failed";
  r.status = "5.1.1";
  r.remote_mta = "mx.example.net";
  r.diagnostic = "550 5.1.1 <bob@example.net>: user unknown";
  r.last_attempt = rq.now;
  rq.recipients.push_back(r);
  return rq;
}

std::vector<std::string> status_lines(const mime::Message& msg, size_t part) {
  std::string body = msg.decoded_body(part);
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) eol = body.size();
    lines.push_back(body.substr(pos, eol - pos));
    pos = eol + 2;
  }
  return lines;
}

bool has_line(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

TEST(DsnTest, FailureReportIsMultipartReportWithStatusAndReturnedMessage) {
  Envelope env = original_envelope();
  env.ret = "FULL";
  DsnMessage dsn = compose_dsn(failure_request(env));
  EXPECT_EQ(dsn.envelope.mail_from, "");  // null reverse-path
  ASSERT_EQ(dsn.envelope.recipients.size(), 1u);
  EXPECT_EQ(dsn.envelope.recipients[0].address, "alice@example.org");
  EXPECT_EQ(dsn.envelope.origin, "dsn");
  auto msg = mime::Message::parse(dsn.message);
  const auto& root = msg.parts()[0];
  EXPECT_EQ(root.content_type.type, "multipart");
  EXPECT_EQ(root.content_type.subtype, "report");
  ASSERT_EQ(root.children.size(), 3u);
  EXPECT_EQ(msg.parts()[root.children[0]].content_type.subtype, "plain");
  EXPECT_EQ(msg.parts()[root.children[1]].content_type.type, "message");
  EXPECT_EQ(msg.parts()[root.children[1]].content_type.subtype, "delivery-status");
  EXPECT_EQ(msg.parts()[root.children[2]].content_type.subtype, "rfc822");
  bool report_type = false;
  for (const auto& [k, v] : root.content_type.params) report_type = report_type || (k == "report-type" && v == "delivery-status");
  EXPECT_TRUE(report_type);
  EXPECT_EQ(msg.header("Auto-Submitted").value_or(""), "auto-replied");
  const auto lines = status_lines(msg, root.children[1]);
  EXPECT_TRUE(has_line(lines, "Reporting-MTA: dns; mx.example.test"));
  EXPECT_TRUE(has_line(lines, "Original-Envelope-Id: QQ+314"));  // xtext decoded
  EXPECT_TRUE(has_line(lines, "Final-Recipient: rfc822; bob@example.net"));
  EXPECT_TRUE(has_line(lines, "Original-Recipient: rfc822;bob+x@example.net"));
  EXPECT_TRUE(has_line(lines, "Action: failed"));
  EXPECT_TRUE(has_line(lines, "Status: 5.1.1"));
  EXPECT_TRUE(has_line(lines, "Remote-MTA: dns; mx.example.net"));
  EXPECT_TRUE(has_line(lines, "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: user unknown"));
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) { return l.starts_with("Arrival-Date: "); }));
  // RET=FULL: the whole original comes back, body included.
  EXPECT_NE(msg.raw().find("body line 2"), std::string_view::npos);
  for (size_t pos = 0; pos < dsn.message.size();) {
    size_t eol = dsn.message.find("\r\n", pos);
    ASSERT_NE(eol, std::string::npos);
    EXPECT_LE(eol - pos, 998u);
    pos = eol + 2;
  }
}

TEST(DsnTest, RetHdrsAndDelayReturnOnlyTheHeaders) {
  Envelope env = original_envelope();
  env.ret = "HDRS";
  DsnMessage dsn = compose_dsn(failure_request(env));
  auto msg = mime::Message::parse(dsn.message);
  const auto& third = msg.parts()[msg.parts()[0].children.at(2)];
  EXPECT_EQ(third.content_type.type, "text");
  EXPECT_EQ(third.content_type.subtype, "rfc822-headers");
  EXPECT_NE(dsn.message.find("Subject: hello"), std::string::npos);
  EXPECT_EQ(dsn.message.find("body line 1"), std::string::npos);

  env.ret = "FULL";  // RFC 3461 §4.3: RET only applies to failures
  DsnRequest rq = failure_request(env);
  rq.kind = DsnKind::Delay;
  rq.recipients[0].action = "delayed";
  rq.recipients[0].status = "4.4.1";
  rq.recipients[0].will_retry_until = env.received_at + 168h;
  dsn = compose_dsn(rq);
  EXPECT_EQ(dsn.message.find("body line 1"), std::string::npos);
  EXPECT_NE(dsn.message.find("Action: delayed"), std::string::npos);
  EXPECT_NE(dsn.message.find("Will-Retry-Until: "), std::string::npos);
}

TEST(DsnTest, NotifyRules) {
  EXPECT_TRUE(notify_wants("", DsnKind::Failure));
  EXPECT_TRUE(notify_wants("", DsnKind::Delay));
  EXPECT_FALSE(notify_wants("", DsnKind::Success));
  EXPECT_FALSE(notify_wants("NEVER", DsnKind::Failure));
  EXPECT_TRUE(notify_wants("SUCCESS,FAILURE", DsnKind::Success));
  EXPECT_FALSE(notify_wants("SUCCESS,FAILURE", DsnKind::Delay));
  EXPECT_TRUE(notify_wants("delay", DsnKind::Delay));
  EXPECT_EQ(xtext_decode("a+2Bb+3Dc"), "a+b=c");
  EXPECT_EQ(xtext_decode("bad+zz"), "bad+zz");
}

// ---------------------------------------------------------------- manager

/** A transport whose answers the test decides per recipient domain. */
class FakeTransport : public delivery::Transport {
 public:
  struct Call {
    std::string hop;
    delivery::Attempt attempt;
    delivery::AttemptDone done;
  };
  // domain -> (code, enhanced); missing = 250. "hold" = keep the attempt until release().
  std::map<std::string, std::pair<int, std::string>> answers;
  std::set<std::string> hold;
  std::set<std::string> dsn_peers;  // domains whose fake peer "offers DSN"

  void deliver(const delivery::NextHop& hop, delivery::Attempt attempt, delivery::AttemptDone done) override {
    std::lock_guard lock(mu);
    ++calls;
    const std::string domain = hop.domain;
    running[domain]++;
    max_running[domain] = std::max(max_running[domain], running[domain]);
    log.push_back({hop.key(), attempt, nullptr});
    if (hold.count(domain)) {
      held.push_back({hop.key(), std::move(attempt), std::move(done)});
      return;
    }
    answer_locked(domain, attempt, done);
  }

  void release_all() {
    std::vector<Call> h;
    {
      std::lock_guard lock(mu);
      h.swap(held);
      hold.clear();
    }
    for (auto& c : h) {
      std::lock_guard lock(mu);
      answer_locked(c.hop.substr(3), c.attempt, c.done);
    }
  }

  size_t delivered_to(const std::string& address) {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& [a, qid] : delivered) n += a == address;
    return n;
  }

  std::mutex mu;
  std::vector<Call> log, held;
  std::vector<std::pair<std::string, std::string>> delivered;  // address, queue id
  std::vector<delivery::Attempt> dsn_attempts;                 // null sender
  std::map<std::string, int> running, max_running;
  size_t calls = 0;

 private:
  void answer_locked(const std::string& domain, const delivery::Attempt& attempt, const delivery::AttemptDone& done) {
    delivery::AttemptResult result;
    auto it = answers.find(domain);
    for (const auto& r : attempt.recipients) {
      delivery::RecipientResult x;
      x.address = r.address;
      x.remote = "mx." + domain + "[192.0.2.1]:25";
      x.dsn_passed = dsn_peers.count(domain) != 0;
      if (it == answers.end()) {
        x.code = 250;
        x.enhanced = "2.0.0";
        x.text = "ok";
        delivered.emplace_back(r.address, attempt.queue_id);
      } else {
        x.code = it->second.first;
        x.enhanced = it->second.second;
        x.text = "fake answer";
      }
      result.recipients.push_back(std::move(x));
    }
    if (attempt.mail_from.empty()) dsn_attempts.push_back(attempt);
    running[domain]--;
    // Like the real client: the completion runs on another thread.
    std::thread([done, result = std::move(result)]() mutable { done(std::move(result)); }).detach();
  }
};

struct Harness {
  TempDir tmp;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard{io.get_executor()};
  boost::asio::thread_pool workers{2};
  std::thread io_thread;
  std::unique_ptr<Spool> spool;
  std::shared_ptr<FakeTransport> transport = std::make_shared<FakeTransport>();
  std::atomic<int64_t> now_s{1763810000};
  std::unique_ptr<QueueManager> qm;
  QueueConfig cfg;
  std::mutex local_mu;
  std::vector<std::pair<std::string, std::string>> local;  // account, message

  Harness() {
    spool = std::make_unique<Spool>(tmp.path / "queue", 2);
    io_thread = std::thread([this] { io.run(); });
  }
  ~Harness() {
    qm.reset();
    guard.reset();
    io.stop();
    io_thread.join();
    workers.join();
  }
  TimePoint now() const { return TimePoint(std::chrono::seconds(now_s.load())); }
  void advance(std::chrono::seconds s) {
    now_s += s.count();
    qm->wake();
  }

  event::ChainPtr chain;  // optional: the delivery stage runs through it
  std::list<pugi::xml_document> docs;

  /** Loads a test plugin from tests/abi (e.g. "good") into `chain`. */
  void add_plugin(const std::string& name, const std::string& config_xml) {
    if (!chain) chain = std::make_shared<event::Chain>();
    docs.emplace_back();
    ASSERT_TRUE(docs.back().load_string(config_xml.c_str()));
    plugin::LoadRequest r;
    r.library = fs::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".so");
    r.descriptor = fs::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".plugin.xml");
    r.name = name;
    r.config = docs.back().document_element();
    auto loaded = plugin::LoadedPlugin::load(r, plugin::HostServices{});
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<plugin::LoadedPlugin>>(loaded))
        << std::get<std::string>(loaded);
    std::const_pointer_cast<event::Chain>(chain)->add(std::move(std::get<0>(loaded)), std::chrono::seconds(2),
                                                      event::OnFailure::Continue);
  }

  void start() {
    QueueHooks h;
    if (chain) h.chains = [c = chain] { return c; };
    h.expand = [](std::string_view rcpt, std::string_view) {
      RecipientRoute r;
      std::string a(rcpt);
      const std::string domain = a.substr(a.find('@') + 1);
      if (domain == "local.test") {
        r.kind = RecipientRoute::Kind::Local;
        r.address = a;
      } else if (a.starts_with("nobody@")) {
        r.kind = RecipientRoute::Kind::Fail;
        r.code = 550;
        r.enhanced = "5.1.1";
        r.text = "unknown user";
      } else {
        r.kind = RecipientRoute::Kind::Smtp;
        r.address = a;
        r.hop.kind = delivery::NextHop::Kind::Mx;
        r.hop.domain = domain;
      }
      return std::vector<RecipientRoute>{r};
    };
    h.route = [h](std::string_view target, bool) { return h.expand(target, "")[0]; };
    h.transport = [t = transport](const RecipientRoute&) { return t; };
    h.deliver_local = [this](std::string_view account, std::string_view message) {
      std::lock_guard lock(local_mu);
      local.emplace_back(std::string(account), std::string(message));
      return delivery::RecipientResult{std::string(account), 250, "2.0.0", "stored", "local", false};
    };
    h.clock = [this] { return now(); };
    qm = std::make_unique<QueueManager>(cfg, *spool, io, workers, "mx.example.test", "example.test", std::move(h));
    qm->start(false);
  }

  std::string submit(std::string from, std::vector<std::string> rcpts, std::string notify = "",
                     std::string content = "") {
    Envelope e;
    e.queue_id = spool->new_queue_id();
    e.mail_from = std::move(from);
    for (auto& r : rcpts) e.recipients.push_back({r, notify, ""});
    e.received_at = now();
    e.peer = "192.0.2.7";
    spool->store(e, content.empty() ? "Subject: test\r\nMessage-ID: <" + e.queue_id + "@x>\r\n\r\nhello\r\n" : content);
    return e.queue_id;
  }

  fs::path incoming() const { return tmp.path / "queue" / "incoming"; }
  fs::path state(const std::string& id) const { return tmp.path / "queue" / "state" / id; }
  bool idle() { return qm->stats().active == 0 && qm->stats().running == 0; }
};

TEST(QueueManagerTest, DeliversAndRemovesTheSpoolFile) {
  Harness h;
  h.start();
  const std::string id = h.submit("alice@example.org", {"bob@remote.test", "carol@remote.test", "dave@local.test"});
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
  EXPECT_EQ(h.transport->delivered_to("bob@remote.test"), 1u);
  EXPECT_EQ(h.transport->delivered_to("carol@remote.test"), 1u);
  {
    std::lock_guard lock(h.transport->mu);
    ASSERT_EQ(h.transport->log.size(), 1u);  // both remote recipients in one attempt
    EXPECT_EQ(h.transport->log[0].attempt.recipients.size(), 2u);
  }
  std::lock_guard lock(h.local_mu);
  ASSERT_EQ(h.local.size(), 1u);
  EXPECT_EQ(h.local[0].first, "dave@local.test");
  // RFC 5321 §4.4: Return-Path first, then Delivered-To.
  EXPECT_TRUE(h.local[0].second.starts_with("Return-Path: <alice@example.org>\r\nDelivered-To: dave@local.test\r\n"));
  EXPECT_TRUE(eventually([&] { return !fs::exists(h.state(id)); }));  // removed right after the spool file
}

TEST(QueueManagerTest, FinalDeliveryReplacesAReturnPathThatCameWithTheMessage) {
  Harness h;
  h.start();
  // RFC 5321 §4.4: the sender's own Return-Path (folded, in any case, with the
  // obsolete space before the colon) goes; ours, from the envelope, is the only one.
  h.submit("alice@example.org", {"dave@local.test"}, "",
           "Return-Path: <forged@evil.test>\r\nSubject: hi\r\nreturn-path :\r\n <x@evil.test>\r\n"
           "X-Keep: Return-Path: <kept in a value>\r\n\r\nReturn-Path: <in the body, kept>\r\n");
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
  std::lock_guard lock(h.local_mu);
  ASSERT_EQ(h.local.size(), 1u);
  EXPECT_EQ(h.local[0].second,
            "Return-Path: <alice@example.org>\r\nDelivered-To: dave@local.test\r\nSubject: hi\r\n"
            "X-Keep: Return-Path: <kept in a value>\r\n\r\nReturn-Path: <in the body, kept>\r\n");
}

// The delivery stage gets the parsed message (parsed on the worker pool, not
// the scheduling strand): a hook that refuses by Subject: sees it.
TEST(QueueManagerTest, DeliveryStageHookSeesTheParsedMessage) {
  Harness h;
  h.add_plugin("good", R"(<plugin delivery-reject-subject="test"/>)");
  h.start();
  h.submit("alice@example.org", {"bob@remote.test"});  // Subject: test
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0 && h.idle(); }));
  EXPECT_EQ(h.transport->delivered_to("bob@remote.test"), 0u);
  std::lock_guard lock(h.transport->mu);
  ASSERT_EQ(h.transport->dsn_attempts.size(), 1u);  // the refusal bounced to the sender (its own Subject: passes)
  EXPECT_NE(h.transport->dsn_attempts[0].message->find("delivery refused by good"), std::string::npos);
}

TEST(QueueManagerTest, TemporaryFailureFollowsTheRetryScheduleThenDelivers) {
  Harness h;
  h.transport->answers["slow.test"] = {451, "4.3.0"};
  h.start();
  const std::string id = h.submit("alice@example.org", {"bob@slow.test", "carol@fast.test"});
  ASSERT_TRUE(eventually([&] { return fs::exists(h.state(id)) && h.idle(); }));
  auto st = read_state_file(h.state(id));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->attempts, 1u);
  EXPECT_EQ(st->next_try, h.now() + 30min);
  EXPECT_EQ(h.transport->delivered_to("carol@fast.test"), 1u);
  // Not before its time.
  h.advance(29min);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(read_state_file(h.state(id))->attempts, 1u);
  h.advance(2min);
  ASSERT_TRUE(eventually([&] { auto s = read_state_file(h.state(id)); return s && s->attempts == 2; }));
  EXPECT_EQ(read_state_file(h.state(id))->next_try, h.now() + 1h);  // second delay: 1h
  h.transport->answers.erase("slow.test");
  h.advance(1h);
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
  EXPECT_EQ(h.transport->delivered_to("bob@slow.test"), 1u);
  EXPECT_EQ(h.transport->delivered_to("carol@fast.test"), 1u);  // never re-delivered
}

TEST(QueueManagerTest, PermanentFailureSendsOneDsnToTheSender) {
  Harness h;
  h.transport->answers["bad.test"] = {550, "5.1.1"};
  h.start();
  h.submit("alice@sender.test", {"bob@bad.test", "nobody@remote.test", "carol@remote.test"});
  // The DSN is itself a message: it is delivered to alice's domain.
  ASSERT_TRUE(eventually([&] { std::lock_guard l(h.transport->mu); return h.transport->dsn_attempts.size() == 1; }));
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
  std::lock_guard lock(h.transport->mu);
  const delivery::Attempt& dsn = h.transport->dsn_attempts[0];
  EXPECT_EQ(dsn.mail_from, "");
  ASSERT_EQ(dsn.recipients.size(), 1u);
  EXPECT_EQ(dsn.recipients[0].address, "alice@sender.test");
  auto msg = mime::Message::parse(*dsn.message);
  const auto lines = status_lines(msg, msg.parts()[0].children.at(1));
  EXPECT_TRUE(has_line(lines, "Final-Recipient: rfc822; bob@bad.test"));
  EXPECT_TRUE(has_line(lines, "Final-Recipient: rfc822; nobody@remote.test"));
  EXPECT_FALSE(has_line(lines, "Final-Recipient: rfc822; carol@remote.test"));
  EXPECT_TRUE(has_line(lines, "Status: 5.1.1"));
  EXPECT_EQ(h.qm->stats().dsns, 1u);
}

TEST(QueueManagerTest, NeverBouncesABounceAndHonoursNotifyNever) {
  Harness h;
  h.transport->answers["bad.test"] = {550, "5.1.1"};
  h.start();
  h.submit("", {"bob@bad.test"});                               // a bounce that fails: dropped
  h.submit("alice@sender.test", {"carol@bad.test"}, "NEVER");  // no DSN wanted
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0 && h.idle(); }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.qm->stats().dsns, 0u);
  std::lock_guard lock(h.transport->mu);
  EXPECT_EQ(h.transport->calls, 2u);
}

TEST(QueueManagerTest, AFailedDsnGoesToThePostmasterOnce) {
  Harness h;
  h.transport->answers["bad.test"] = {550, "5.1.1"};
  h.transport->answers["gone.test"] = {550, "5.1.1"};
  h.start();
  h.submit("alice@gone.test", {"bob@bad.test"});
  // bounce to alice@gone.test fails -> double bounce to postmaster@example.test (delivered).
  ASSERT_TRUE(eventually([&] { return h.transport->delivered_to("postmaster@example.test") == 1; }));
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0 && h.idle(); }));
  EXPECT_EQ(h.qm->stats().dsns, 2u);
}

TEST(QueueManagerTest, SuccessDsnWhenAskedFor) {
  Harness h;
  h.start();
  h.submit("alice@sender.test", {"dave@local.test"}, "SUCCESS");
  ASSERT_TRUE(eventually([&] { std::lock_guard l(h.transport->mu); return h.transport->dsn_attempts.size() == 1; }));
  std::lock_guard lock(h.transport->mu);
  EXPECT_NE(h.transport->dsn_attempts[0].message->find("Action: delivered"), std::string::npos);
}

TEST(QueueManagerTest, RelayedDsnOnlyWhenThePeerDidNotTakeOverNotify) {
  Harness h;
  h.transport->dsn_peers.insert("dsn.test");
  h.start();
  h.submit("alice@sender.test", {"bob@dsn.test"}, "SUCCESS");
  h.submit("alice@sender.test", {"carol@plain.test"}, "SUCCESS");
  ASSERT_TRUE(eventually([&] { std::lock_guard l(h.transport->mu); return h.transport->dsn_attempts.size() == 1; }));
  ASSERT_TRUE(eventually([&] { return h.idle() && count_files(h.incoming()) == 0; }));
  std::lock_guard lock(h.transport->mu);
  ASSERT_EQ(h.transport->dsn_attempts.size(), 1u);
  EXPECT_NE(h.transport->dsn_attempts[0].message->find("Action: relayed"), std::string::npos);
  EXPECT_NE(h.transport->dsn_attempts[0].message->find("carol@plain.test"), std::string::npos);
  EXPECT_EQ(h.transport->dsn_attempts[0].message->find("bob@dsn.test"), std::string::npos);
}

TEST(QueueManagerTest, DelayWarningOnceThenBounceAtTheEndOfTheLifetime) {
  Harness h;
  h.cfg.lifetime = 10h;
  h.transport->answers["slow.test"] = {451, "4.4.1"};
  h.start();
  const std::string id = h.submit("alice@sender.test", {"bob@slow.test"});
  ASSERT_TRUE(eventually([&] { return fs::exists(h.state(id)) && h.idle(); }));
  size_t delays = 0, failures = 0;
  for (int i = 0; i < 12 && fs::exists(h.incoming() / id); ++i) {
    h.advance(1h);
    eventually([&] { return h.idle(); }, 1000ms);
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(eventually([&] { return !fs::exists(h.incoming() / id); }));
  ASSERT_TRUE(eventually([&] { return h.idle() && count_files(h.incoming()) == 0; }));
  std::lock_guard lock(h.transport->mu);
  for (const auto& a : h.transport->dsn_attempts) {
    if (a.message->find("Action: delayed") != std::string::npos) ++delays;
    if (a.message->find("Action: failed") != std::string::npos) {
      ++failures;
      EXPECT_NE(a.message->find("Status: 4.4.7"), std::string::npos);
    }
  }
  EXPECT_EQ(delays, 1u);
  EXPECT_EQ(failures, 1u);
}

TEST(QueueManagerTest, PerDestinationLimitAndAFailingDestinationDoesNotStarveOthers) {
  Harness h;
  h.cfg.max_connections = 4;
  h.cfg.max_per_destination = 2;
  h.transport->hold.insert("stuck.test");
  h.start();
  for (int i = 0; i < 20; ++i) h.submit("alice@example.org", {"u" + std::to_string(i) + "@stuck.test"});
  for (int i = 0; i < 10; ++i) h.submit("alice@example.org", {"u" + std::to_string(i) + "@fast.test"});
  // The fast destination completes while the stuck one holds its two slots.
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(h.transport->mu);
    size_t n = 0;
    for (const auto& d : h.transport->delivered) n += d.first.ends_with("@fast.test");
    return n == 10;
  }));
  {
    std::lock_guard l(h.transport->mu);
    EXPECT_EQ(h.transport->max_running["stuck.test"], 2);
    EXPECT_LE(h.transport->max_running["fast.test"], 2);
    EXPECT_EQ(h.transport->held.size(), 2u);
  }
  h.transport->release_all();
  ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
  std::lock_guard l(h.transport->mu);
  EXPECT_EQ(h.transport->max_running["stuck.test"], 2);
}

TEST(QueueManagerTest, RestartKeepsDeliveredRecipientsDelivered) {
  auto h = std::make_unique<Harness>();
  h->transport->answers["slow.test"] = {451, "4.3.0"};
  h->start();
  const std::string id = h->submit("alice@example.org", {"bob@slow.test", "carol@fast.test"});
  ASSERT_TRUE(eventually([&] { return fs::exists(h->state(id)) && h->idle(); }));
  // "Crash": a new manager over the same files, the slow destination repaired.
  h->qm.reset();
  auto transport2 = std::make_shared<FakeTransport>();
  h->transport = transport2;
  h->now_s += 3600;
  h->start();
  ASSERT_TRUE(eventually([&] { return count_files(h->incoming()) == 0; }));
  EXPECT_EQ(transport2->delivered_to("bob@slow.test"), 1u);
  EXPECT_EQ(transport2->delivered_to("carol@fast.test"), 0u);  // not again
  // The spool file goes first, the state file right after (a crash between
  // the two leaves an orphan that the next start removes): wait for both.
  EXPECT_TRUE(eventually([&] { return !fs::exists(h->state(id)); }));
}

TEST(QueueManagerTest, StartRemovesOrphanStateFilesAndResumesUnfinishedMessages) {
  TempDir keep;
  {
    Harness h;
    // A message whose state says everything is final but that was not removed
    // before the crash, plus an orphan state file.
    Spool& spool = *h.spool;
    Envelope e;
    e.queue_id = spool.new_queue_id();
    e.mail_from = "alice@example.org";
    e.recipients = {{"bob@fast.test", "", ""}};
    e.received_at = h.now();
    spool.store(e, "Subject: x\r\n\r\nx\r\n");
    fs::create_directories(h.tmp.path / "queue" / "state");
    MessageState st;
    Unit u;
    u.target = "bob@fast.test";
    u.status = UnitStatus::Relayed;
    u.reported = true;
    st.units = {u};
    write_state_file(h.state(e.queue_id), st);
    write_state_file(h.state("0000orphan"), st);
    h.start();
    ASSERT_TRUE(eventually([&] { return count_files(h.incoming()) == 0; }));
    EXPECT_FALSE(fs::exists(h.state("0000orphan")));
    EXPECT_EQ(h.transport->calls, 0u);  // already delivered: removed without a new attempt
  }
}

}  // namespace
}  // namespace postern::core::queue
