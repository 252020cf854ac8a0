#pragma once
/**
 * @file fake_host.hpp
 * FakeHost: an in-process implementation of every function of
 * postern_host_api_v1_t, for plugin unit tests. A plugin is loaded through its
 * static ABI table (detail::plugin_table<P>() or any postern_plugin_v1_t) and
 * called through exactly the C path posternd uses; nothing is mocked above
 * the ABI.
 *
 *   sdk::testing::FakeHost host;  // manual clock, temporary state dir
 *   auto plugin = host.load<GreylistPlugin>(R"(<plugin name="greylist" delay="5m"/>)");
 *   ASSERT_TRUE(plugin.ok()) << plugin.error();
 *   const auto rcpt = host.make_rcpt("192.0.2.7", "alice@example.org", "bob@example.net");
 *   EXPECT_EQ(host.run(*plugin, rcpt).verdict(), sdk::Verdict::TempFail);
 *   host.clock().advance(std::chrono::minutes{6});
 *   EXPECT_EQ(host.run(*plugin, rcpt).verdict(), sdk::Verdict::Continue);
 *
 * Determinism. Nothing runs on a thread FakeHost owns; every callback runs on
 * the thread of the test:
 *   - post_work: runs the task inside post_work() (WorkMode::Immediate, the
 *     default) or queues it until run_pending_work() (WorkMode::Manual).
 *   - timers: fire, in (due time, start order), when clock().advance() or
 *     clock().set() passes their due time; the clock reads the due time while
 *     the callback runs.
 *   - DNS: never answers inside dns_query(). A configured answer (and NXDOMAIN
 *     for an unknown name) is due dns().set_latency() after the query (0 by
 *     default) and is delivered by run_pending_work(), settle() or a clock
 *     advance; a name marked with dns().set_timeout() answers TIMEOUT when the
 *     clock reaches the query's timeout (0 = dns().set_default_timeout(), 5 s).
 *   - Pending hooks: complete when the plugin calls pending_complete (from any
 *     thread), when the last reference goes (Continue), or when the hook
 *     timeout set with Loaded::set_timeout() passes on the manual clock.
 *
 * Rules enforced as posternd enforces them: subscribe only during on_init and
 * only for declared stages (set_declared_stages()); header edits only at
 * mail_from..data_end; recipient, sender and body edits (ABI 1.3) only at
 * data_end, with posternd's checks (FakeResult::sender_change(),
 * replaced_body()); enum values a plugin passes (stage, log level, DNS type,
 * property, flag op, expunge mode) and on_hook's verdict are read as
 * integers and range-checked; one event_defer per
 * hook call; no deferral of observer events; first completion wins, later ones
 * return POSTERN_ERR_UNAVAILABLE and are counted in late_completions().
 *
 * The message view is minimal (see fake_message.hpp): no RFC 2047 decoding and
 * one MIME part. posternd uses the core MIME parser.
 *
 * Cron jobs (ABI 1.1) never fire by themselves: run_cron() runs them.
 *
 * Services (ABI 1.2): service_register records the protocol (services(),
 * service_owner()); connect("pop3") opens a FakeStream as a client would.
 * Its callbacks run on the test's thread, one at a time, as on a strand:
 *
 *   auto store = std::make_shared<sdk::testing::MemoryMailStore>();
 *   store->add_account("alice@example.test", "secret");
 *   host.use_mail_store(store);                 // dir_* and mbox_* answer from it
 *   auto pop = host.load<Pop3Plugin>(R"(<plugin name="pop3"/>)");
 *   auto c = host.connect("pop3");              // on_open; the greeting is in c.output()
 *   c.send("USER alice\r\nPASS secret\r\n");   // on_data; posted replies run after it returns
 *   EXPECT_EQ(c.take_output(), "+OK ...");
 *
 *   - stream_post: the function runs once the current plugin callback has
 *     returned (StreamOptions::manual_posts: only on FakeStream::run_posted()),
 *     and on run_pending_work().
 *   - stream_starttls: the handshake succeeds after the current callback
 *     (StreamOptions::auto_tls = false: complete_tls() / fail_tls()); then
 *     TLS_PROTOCOL reads "TLSv1.3", undelivered input is dropped, on_tls runs.
 *   - stream_close: on_close(PLUGIN) follows after the current callback.
 *   - stream_pause: input sent meanwhile waits and is delivered on resume.
 *   - Output is captured whole (output(), take_output()); hold_output keeps
 *     it "queued" until flush_output(), for want_drain / backpressure tests.
 * The directory and the mailbox store (dir_*, mbox_*, view_*) answer
 * POSTERN_ERR_UNAVAILABLE until the test installs answers: use_mail_store()
 * with a MemoryMailStore, or set_authenticate / set_account_lookup /
 * set_mailbox_opener (fake_mail.hpp).
 * Session tags start as FakeEvent::tags() and end in FakeResult::tags().
 *
 * Admin commands (ABI 1.3): command_register records the command
 * (commands()); command("greylist allow", {"192.0.2.0/24"}) parses the words
 * as posternctl does (positional arguments, --name VALUE, --flag), validates
 * them against the spec as posternd does, calls the plugin's callback on the
 * test's thread and returns a FakeCommandResult, answered() once the plugin
 * completed the reply (possibly later: run_pending_work()).
 *
 * Outbound connections and injection (ABI 1.3): stream_connect never
 * touches the network; it records the request (connect_requests()) and the
 * test plays the peer: accept_connect() answers OK and gives the peer's end
 * as a FakeStream (send() is what the peer says, take_output() what the
 * plugin wrote), fail_connect(ConnectStatus::Refused) answers a failure.
 * stream_connect_cancel answers CANCELLED on run_pending_work(); unload
 * answers every unanswered connect with CANCELLED. inject records the message
 * (injected()) with a queue id "fake-<n>" and completes like post_work
 * (WorkMode); set_inject_failure() makes it fail instead.
 *
 * Unloading (Loaded::unload(), ~Loaded, ~FakeHost) runs the plugin's queued
 * work, answers its outstanding DNS queries with POSTERN_DNS_CANCELLED, drops
 * its unfired timers (their callbacks run once with fired = 0), then calls on_destroy.
 */

#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_mail.hpp>
#include <postern/sdk/testing/fake_message.hpp>

#include <pugixml.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace postern::sdk::testing {

/** The manifest's `on-failure` for a hook that fails, throws or times out. */
enum class OnFailure { Continue, TempFail };

/** When post_work tasks run. */
enum class WorkMode {
  Immediate,  ///< inside post_work(), on the caller's thread (default)
  Manual,     ///< queued until FakeHost::run_pending_work()
};

/** One log line written by a plugin (or by FakeHost itself, plugin "fakehost"). */
struct LogLine {
  LogLevel level;
  std::string plugin;
  std::string text;
};

/** A scored symbol added by a hook. */
struct FakeSymbol {
  std::string name;
  double weight = 0;
  std::string detail;
};

/**
 * An envelope sender change requested at data_end (ABI 1.3 event_mail_from_set
 * / pending_mail_from_set), as the plugin passed it after FakeHost's checks.
 */
struct SenderChange {
  std::string address;     ///< without <>; "" = the null sender
  std::string esmtp_args;  ///< the MAIL parameters as given ("RET=HDRS ENVID=x")
};

/** A header edit requested by a hook (applied by posternd when it stores the message). */
struct HeaderEdit {
  enum class Kind { Add, Change, Remove };
  Kind kind = Kind::Add;
  std::string name;
  std::string value;
  int32_t index = 0;     ///< change/remove: which instance; remove: -1 = all
  bool prepend = false;  ///< add: at the top
};

/**
 * The data of one event: stage, properties, accepted recipients, message.
 * A plain value: edit it freely; FakeHost::run() never changes it (the
 * plugin's edits go into the FakeResult).
 */
class FakeEvent {
 public:
  explicit FakeEvent(Stage stage = Stage::Connect) : stage_(stage) {}

  Stage stage() const { return stage_; }
  /** The same session and transaction at another stage. */
  FakeEvent& set_stage(Stage s) {
    stage_ = s;
    return *this;
  }
  FakeEvent at(Stage s) const {
    FakeEvent copy = *this;
    copy.stage_ = s;
    return copy;
  }

  /** Properties read by event_get(). An absent property reads as NOT_FOUND. */
  std::map<postern_property_t, std::string>& properties() { return props_; }
  const std::map<postern_property_t, std::string>& properties() const { return props_; }
  FakeEvent& set(postern_property_t p, std::string value) {
    props_[p] = std::move(value);
    return *this;
  }
  FakeEvent& unset(postern_property_t p) {
    props_.erase(p);
    return *this;
  }
  std::optional<std::string> get(postern_property_t p) const {
    auto it = props_.find(p);
    if (it == props_.end()) return std::nullopt;
    return it->second;
  }

  /** The accepted recipients of the transaction (event_rcpt_count/at). */
  std::vector<std::string>& recipients() { return rcpts_; }
  const std::vector<std::string>& recipients() const { return rcpts_; }

  /** The message; bare LF line ends are turned into CRLF. */
  FakeEvent& set_message(std::string_view raw) {
    message_ = to_crlf(raw);
    return *this;
  }
  FakeEvent& clear_message() {
    message_.reset();
    return *this;
  }
  const std::optional<std::string>& message_raw() const { return message_; }

  /** The listener's max-message-size a replaced body must keep (ABI 1.3; 0 = none, the default). */
  FakeEvent& set_max_message_size(uint64_t octets) {
    max_message_size_ = octets;
    return *this;
  }
  uint64_t max_message_size() const { return max_message_size_; }

  /** Score of the session and transaction before this hook (event_score adds the hook's symbols). */
  FakeEvent& set_score(double s) {
    score_ = s;
    return *this;
  }
  double score() const { return score_; }

  /**
   * Session tags (event_tag_get/set, ABI 1.1) as they stand before the hook.
   * The hook's changes go into FakeResult::tags(); carry them to a later
   * stage with `next.tags() = result.tags()`.
   */
  std::map<std::string, std::string>& tags() { return tags_; }
  const std::map<std::string, std::string>& tags() const { return tags_; }
  FakeEvent& set_tag(std::string key, std::string value) {
    tags_[std::move(key)] = std::move(value);
    return *this;
  }
  /** Marks the session as whitelisted by a connection filter (postern.whitelisted = "1"). */
  FakeEvent& set_whitelisted() { return set_tag(POSTERN_TAG_WHITELISTED, "1"); }

 private:
  Stage stage_;
  std::map<postern_property_t, std::string> props_;
  std::map<std::string, std::string> tags_;
  std::vector<std::string> rcpts_;
  std::optional<std::string> message_;
  double score_ = 0;
  uint64_t max_message_size_ = 0;
};

namespace detail {

struct Core;
struct Slot;

/** The state of one hook call; shared by the FakeResult and the pending handle. */
struct RunState : std::enable_shared_from_this<RunState> {
  std::mutex mu;
  std::condition_variable cv;
  Stage stage = Stage::Connect;
  OnFailure on_failure = OnFailure::Continue;
  bool called = false;
  bool deferred = false;   // event_defer() was called and on_hook returned PENDING
  bool completed = false;
  bool released = false;   // completed because the last reference went
  bool timed_out = false;
  Verdict verdict = Verdict::Continue;
  uint16_t code = 0;
  std::string enhanced;
  std::string text;
  bool disconnect = false;
  bool failed = false;
  double base_score = 0;
  std::vector<FakeSymbol> symbols;
  std::vector<HeaderEdit> header_edits;
  std::vector<std::string> rcpt_added;
  std::vector<std::string> rcpt_removed;
  // Edits made through the pending handle (ABI 1.3): moved into the lists
  // above when the hook completes, dropped on a timeout or a failed result.
  std::vector<HeaderEdit> pending_header_edits;
  std::vector<std::string> pending_rcpt_added;
  std::vector<std::string> pending_rcpt_removed;
  // Sender and body edits (ABI 1.3, data_end): the last one wins.
  std::optional<SenderChange> sender_change;
  std::optional<std::string> body_replacement;
  std::optional<SenderChange> pending_sender_change;
  std::optional<std::string> pending_body_replacement;
  std::map<std::string, std::string> tags;  // the session's tags after the hook
  std::shared_ptr<void> event_ctx;  // keeps the event handle valid (but inactive) after on_hook
};

}  // namespace detail

/**
 * What a hook answered. Cheap to copy; all copies see the same state, which a
 * pending hook fills in later (thread-safe).
 */
class FakeResult {
 public:
  FakeResult() : s_(std::make_shared<detail::RunState>()) { s_->completed = true; }
  explicit FakeResult(std::shared_ptr<detail::RunState> s) : s_(std::move(s)) {}

  /** False when the plugin is not subscribed to the stage (on_hook was not called). */
  bool called() const { return read([](auto& s) { return s.called; }); }
  /** The hook returned Pending and has not completed yet. */
  bool is_pending() const { return read([](auto& s) { return s.deferred && !s.completed; }); }
  /** The hook returned Pending (completed or not). */
  bool was_deferred() const { return read([](auto& s) { return s.deferred; }); }
  bool completed() const { return read([](auto& s) { return s.completed; }); }
  /** Completed as Continue because the last pending reference went without a completion. */
  bool released_without_completion() const { return read([](auto& s) { return s.released; }); }
  /** The hook timeout (Loaded::set_timeout) passed before completion. */
  bool timed_out() const { return read([](auto& s) { return s.timed_out; }); }

  /** The verdict as the plugin gave it (Continue while pending, or when it failed). */
  Verdict verdict() const { return read([](auto& s) { return s.verdict; }); }
  /** The verdict posternd acts on: on failure or timeout, the manifest's on-failure. */
  Verdict effective_verdict() const {
    return read([](auto& s) {
      if (s.failed) return s.on_failure == OnFailure::TempFail ? Verdict::TempFail : Verdict::Continue;
      return s.verdict;
    });
  }
  uint16_t code() const { return read([](auto& s) { return s.code; }); }
  std::string enhanced() const { return read([](auto& s) { return s.enhanced; }); }
  std::string text() const { return read([](auto& s) { return s.text; }); }
  bool disconnects() const { return read([](auto& s) { return s.disconnect; }); }
  /** The hook failed: it threw, set POSTERN_RESULT_ERROR, broke a rule, or timed out. */
  bool failed() const { return read([](auto& s) { return s.failed; }); }

  std::vector<FakeSymbol> symbols() const { return read([](auto& s) { return s.symbols; }); }
  /** Weight of the first symbol of that name. */
  std::optional<double> symbol(std::string_view name) const {
    return read([&](auto& s) -> std::optional<double> {
      for (const FakeSymbol& sym : s.symbols)
        if (sym.name == name) return sym.weight;
      return std::nullopt;
    });
  }
  bool has_symbol(std::string_view name) const { return symbol(name).has_value(); }
  /** The event's score before the hook plus the weights of the hook's symbols. */
  double score() const {
    return read([](auto& s) {
      double total = s.base_score;
      for (const FakeSymbol& sym : s.symbols) total += sym.weight;
      return total;
    });
  }
  std::vector<HeaderEdit> header_edits() const { return read([](auto& s) { return s.header_edits; }); }
  /** Value of the first Add edit for that header name (case-insensitive). */
  std::optional<std::string> added_header(std::string_view name) const {
    return read([&](auto& s) -> std::optional<std::string> {
      for (const HeaderEdit& e : s.header_edits)
        if (e.kind == HeaderEdit::Kind::Add && iequals(e.name, name)) return e.value;
      return std::nullopt;
    });
  }
  std::vector<std::string> recipients_added() const { return read([](auto& s) { return s.rcpt_added; }); }
  std::vector<std::string> recipients_removed() const { return read([](auto& s) { return s.rcpt_removed; }); }
  /** The envelope sender change the hook made (ABI 1.3), if any. */
  std::optional<SenderChange> sender_change() const { return read([](auto& s) { return s.sender_change; }); }
  /** The replacement body the hook gave (ABI 1.3), normalized to CRLF as posternd does, if any. */
  std::optional<std::string> replaced_body() const { return read([](auto& s) { return s.body_replacement; }); }
  /** The session's tags after the hook (those of the event plus what the hook set). */
  std::map<std::string, std::string> tags() const { return read([](auto& s) { return s.tags; }); }
  std::optional<std::string> tag(const std::string& key) const {
    auto t = tags();
    auto it = t.find(key);
    if (it == t.end()) return std::nullopt;
    return it->second;
  }

  /**
   * Blocks (real time) until the hook completed; for completions from threads
   * the plugin starts. @return completed().
   */
  bool wait(std::chrono::milliseconds real_timeout = std::chrono::seconds{10}) const {
    std::unique_lock lock(s_->mu);
    return s_->cv.wait_for(lock, real_timeout, [&] { return s_->completed; });
  }

 private:
  template <class F>
  auto read(F f) const -> decltype(f(std::declval<detail::RunState&>())) {
    std::lock_guard lock(s_->mu);
    return f(*s_);
  }
  std::shared_ptr<detail::RunState> s_;
};

class FakeHost;
class Loaded;

/** A message a plugin submitted with inject (ABI 1.3), as FakeHost recorded it. */
struct InjectedMessage {
  std::string plugin;
  std::string queue_id;                   // "fake-1", "fake-2", ...
  std::string mail_from;                  // "" = the null sender
  std::vector<std::string> recipients;
  std::string message;                    // as the plugin gave it
  std::vector<std::string> skip_filters;
};

/** A stream_connect the test has not answered yet (ABI 1.3). */
struct ConnectRequest {
  uint64_t id = 0;
  std::string plugin;
  std::string host;       // empty with unix_path
  uint16_t port = 0;
  std::string unix_path;
  bool tls = false;
  bool verify = true;
  std::string tls_name;
  uint32_t timeout_ms = 0;
};

namespace detail {

struct WorkItem {
  Slot* slot;
  postern_task_cb fn;
  void* user;
};

struct DueEvent {
  enum class Kind { Timer, Dns, HookTimeout };
  Kind kind = Kind::Timer;
  int64_t due_ms = 0;
  Slot* slot = nullptr;
  postern_timer_cb timer_cb = nullptr;
  postern_dns_cb dns_cb = nullptr;
  void* user = nullptr;
  DnsAnswer answer;
  std::weak_ptr<RunState> run;
};

struct DnsEntry {
  bool timeout = false;
  DnsAnswer answer;
};

inline std::mutex& line_registry_mutex();
inline std::map<const void*, uint32_t>& line_registry();

/** One loaded plugin instance; its address is the postern_host_t* handle. */
struct Slot {
  Slot() = default;
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  ~Slot() {
    std::lock_guard lock(line_registry_mutex());
    for (auto& [node, line] : lines) line_registry().erase(node);
  }

  Core* core = nullptr;
  const postern_plugin_v1_t* table = nullptr;
  std::string name;
  void* instance = nullptr;
  bool initialising = false;
  bool alive = false;
  std::array<bool, kStageCount> subscribed{};
  pugi::xml_document doc;
  std::map<const void*, uint32_t> lines;  // element → manifest line
  std::filesystem::path state_dir;
  std::string state_dir_str;
  std::chrono::milliseconds timeout{0};
  OnFailure on_failure = OnFailure::Continue;
};

/** One hook call as the plugin sees it; its address is the postern_event_t* handle. */
struct EventCtx {
  Slot* slot = nullptr;
  FakeEvent event;
  RunState* run = nullptr;  // owns this context
  std::optional<FakeMessage> message;
  bool active = false;     // inside on_hook
  bool has_pending = false;
};

/** A pending reference counter; its address is the postern_pending_t* handle. */
struct PendingRec {
  std::atomic<int> refs{1};
  std::shared_ptr<RunState> run;
  std::shared_ptr<Core> core;
  Stage stage = Stage::Connect;         // fixes which pending edits are allowed (ABI 1.3)
  std::vector<std::string> recipients;  // at event_defer: pending_rcpt_remove's NOT_FOUND
  uint64_t max_message_size = 0;        // at event_defer: pending_body_replace's limit
};

/** One cron job registered with cron_add (ABI 1.1). */
struct CronJob {
  Slot* slot = nullptr;
  std::string name;
  std::string expr;
  postern_task_cb fn = nullptr;
  void* user = nullptr;
  uint64_t runs = 0;
};

/** One mailbox-event subscription (mbox_events_subscribe, ABI 1.3). */
struct MailboxSub {
  Slot* slot = nullptr;
  uint32_t mask = 0;
  postern_mbox_event_cb fn = nullptr;
  void* user = nullptr;
};

/** One protocol served by a plugin (service_register, ABI 1.2). */
struct ServiceReg {
  Slot* slot = nullptr;
  const postern_service_v1_t* svc = nullptr;
  void* user = nullptr;
};

/** One admin command registered with command_register (ABI 1.3). */
struct CommandArgSpec {
  std::string name;
  uint32_t type = POSTERN_ARG_STRING;
  uint32_t flags = 0;
};
struct CommandReg {
  Slot* slot = nullptr;
  std::string summary;
  std::vector<CommandArgSpec> args;
  postern_command_cb fn = nullptr;
  void* user = nullptr;
};
/** What a plugin answered to one command call. */
struct CommandOutcome {
  std::mutex mu;
  bool answered = false;
  uint32_t exit = POSTERN_COMMAND_FAIL;
  std::string json;
  std::string text;
};

/** What answers dir_* and mbox_* (fake_mail.hpp); empty members answer UNAVAILABLE. */
struct MailHooks {
  std::function<Expected<Account>(std::string_view login, std::string_view password, uint32_t service)> authenticate;
  std::function<Expected<Account>(std::string_view address)> account;
  std::function<Expected<std::shared_ptr<FakeMailbox>>(std::string_view account)> open;
};

struct StreamState;

/** One stream_connect: the request and the plugin's callback (ABI 1.3). */
struct ConnectRec {
  Slot* slot = nullptr;
  ConnectRequest request;
  postern_service_v1_t table{};
  postern_connect_cb cb = nullptr;
  void* user = nullptr;
  bool cancelled = false;  // stream_connect_cancel: CANCELLED on run_pending_work()
};

/**
 * A syntax check of a cron expression: five fields of digits, names, `*`,
 * `,`, `-` and `/`. posternd's parser (core/scheduler) also checks ranges.
 */
inline bool plausible_cron(std::string_view e) {
  size_t fields = 0;
  size_t i = 0;
  while (i < e.size()) {
    while (i < e.size() && (e[i] == ' ' || e[i] == '\t')) ++i;
    if (i == e.size()) break;
    ++fields;
    while (i < e.size() && e[i] != ' ' && e[i] != '\t') {
      const char c = e[i];
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '*' && c != ',' && c != '-' && c != '/') return false;
      ++i;
    }
  }
  return fields == 5;
}

/** State shared by FakeHost, its Loaded handles and outstanding pending handles. */
struct Core {
  mutable std::mutex mu;
  std::atomic<int64_t> now_ms{1767225600000};  // 2026-01-01T00:00:00Z
  WorkMode work_mode = WorkMode::Immediate;
  std::deque<WorkItem> work;
  std::map<uint64_t, DueEvent> events;  // key: sequence number = timer handle
  uint64_t next_seq = 1;
  std::map<std::pair<std::string, int>, DnsEntry> dns;
  std::vector<std::pair<std::string, postern_dns_type_t>> dns_queries;
  uint32_t dns_default_timeout_ms = 5000;
  uint32_t dns_latency_ms = 0;
  std::vector<LogLine> logs;
  std::atomic<size_t> late{0};
  std::optional<std::array<bool, kStageCount>> declared;
  std::filesystem::path root;
  std::list<std::unique_ptr<Slot>> slots;
  std::vector<std::weak_ptr<RunState>> deferred;
  std::map<uint64_t, CronJob> crons;  // key: the id cron_add returned
  std::map<uint64_t, MailboxSub> mailbox_subs;  // ABI 1.3; key: the id mbox_events_subscribe returned
  bool mailbox_events_available = true;
  bool cron_available = true;
  uint64_t sessions = 0;
  std::weak_ptr<Core> self;
  // ABI 1.2
  std::map<std::string, ServiceReg> services;  // key: protocol, lower case
  std::map<std::string, CommandReg> commands;  // key: "area verb" (ABI 1.3)
  std::vector<StreamState*> streams;           // open streams (not yet on_close)
  uint64_t stream_seq = 0;
  MailHooks mail;
  // ABI 1.3
  std::deque<std::shared_ptr<ConnectRec>> connects;  // not answered yet, oldest first
  uint64_t connect_seq = 0;
  std::vector<InjectedMessage> injected;
  uint64_t inject_seq = 0;
  std::optional<std::pair<postern_status_t, std::string>> inject_failure;

  void log(LogLevel level, std::string plugin, std::string text) {
    std::lock_guard lock(mu);
    logs.push_back({level, std::move(plugin), std::move(text)});
  }
};

inline Slot* slot_of(postern_host_t* h) { return reinterpret_cast<Slot*>(h); }
inline postern_host_t* handle_of(Slot* s) { return reinterpret_cast<postern_host_t*>(s); }
inline EventCtx* ctx_of(postern_event_t* e) { return reinterpret_cast<EventCtx*>(e); }
inline PendingRec* rec_of(postern_pending_t* p) { return reinterpret_cast<PendingRec*>(p); }
inline const FakeMessage* msg_of(const postern_message_t* m) { return reinterpret_cast<const FakeMessage*>(m); }
inline pugi::xml_node node_of(const postern_config_node_t* n) {
  return pugi::xml_node(reinterpret_cast<pugi::xml_node_struct*>(const_cast<postern_config_node_t*>(n)));
}
inline const postern_config_node_t* handle_of(pugi::xml_node n) {
  return n ? reinterpret_cast<const postern_config_node_t*>(n.internal_object()) : nullptr;
}
inline std::string_view sv(postern_str_t s) { return s.ptr == nullptr ? std::string_view{} : std::string_view{s.ptr, s.len}; }
inline postern_str_t str(std::string_view s) { return postern_str_t{s.data(), s.size()}; }

/** Manifest lines of config elements, found from the node alone (config_line has no host argument). */
inline std::mutex& line_registry_mutex() {
  static std::mutex m;
  return m;
}
inline std::map<const void*, uint32_t>& line_registry() {
  static std::map<const void*, uint32_t> r;
  return r;
}

inline std::string lower_dns_name(std::string_view n) {
  std::string out(n);
  while (!out.empty() && out.back() == '.') out.pop_back();
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline bool valid_header_name(std::string_view name) {
  return !name.empty() && name.size() <= 998 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c > 32 && c < 127 && c != ':'; });
}

/** A header value must not smuggle in new lines; only folding (CRLF WSP) is allowed. */
inline bool valid_header_value(std::string_view v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\0') return false;
    if (v[i] == '\r' || v[i] == '\n') {
      if (v[i] != '\r' || i + 2 >= v.size() || v[i + 1] != '\n' || (v[i + 2] != ' ' && v[i + 2] != '\t')) return false;
      ++i;
    }
  }
  return true;
}

inline bool plausible_address(std::string_view a) {
  const auto at = a.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() && a.size() <= 254 &&
         std::none_of(a.begin(), a.end(), [](char c) { return c <= 32 || c == 127 || c == '<' || c == '>'; });
}

/**
 * The checks posternd makes on a sender change (ABI 1.3): the address empty
 * (null sender) or a plausible mailbox without spaces, and MAIL parameters
 * RET=FULL|HDRS, ENVID=<xtext, 1..100>, BODY=7BIT|8BITMIME, SMTPUTF8 (no
 * value), SIZE and AUTH (ignored), each at most once. posternd's parser
 * (core/smtp/address) is stricter about the address's syntax.
 */
inline bool valid_sender_change(std::string_view address, std::string_view args) {
  if (!address.empty() && !plausible_address(address)) return false;
  auto upper = [](std::string_view v) {
    std::string u(v);
    for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return u;
  };
  std::vector<std::string> seen;
  size_t pos = 0;
  while (pos < args.size()) {
    if (args[pos] == ' ') {
      ++pos;
      continue;
    }
    const size_t end = std::min(args.find(' ', pos), args.size());
    const std::string_view tok = args.substr(pos, end - pos);
    pos = end;
    const size_t eq = tok.find('=');
    const std::string key = upper(tok.substr(0, eq));
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? tok.substr(eq + 1) : std::string_view{};
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) return false;
    seen.push_back(key);
    if (has_value && value.empty()) return false;
    if (key == "RET") {
      if (upper(value) != "FULL" && upper(value) != "HDRS") return false;
    } else if (key == "BODY") {
      if (upper(value) != "7BIT" && upper(value) != "8BITMIME") return false;
    } else if (key == "ENVID") {
      if (value.empty() || value.size() > 100 ||
          std::any_of(value.begin(), value.end(), [](char c) { return c < 33 || c > 126 || c == '='; }))
        return false;
    } else if (key == "SMTPUTF8") {
      if (has_value) return false;
    } else if (key != "SIZE" && key != "AUTH") {
      return false;
    }
  }
  return true;
}

/**
 * A replacement body as posternd takes it (ABI 1.3): NUL or a bare CR
 * refuse it, a bare LF becomes CRLF, a final line end is added; above
 * `limit` (0 = none) it is refused. @return nullopt when refused.
 */
inline std::optional<std::string> normalized_body(postern_bytes_t body, uint64_t limit) {
  if ((body.ptr == nullptr && body.len != 0) || (limit != 0 && body.len > limit)) return std::nullopt;
  const std::string_view in(reinterpret_cast<const char*>(body.ptr), body.len);
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\0') return std::nullopt;
    if (in[i] == '\r') {
      if (i + 1 >= in.size() || in[i + 1] != '\n') return std::nullopt;
      ++i;
      out += "\r\n";
    } else if (in[i] == '\n') {
      out += "\r\n";
    } else {
      out += in[i];
    }
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  if (limit != 0 && out.size() > limit) return std::nullopt;
  return out;
}

/**
 * Completes a run once. @return false (and counts a late completion when
 * `count_late`) if it was already complete.
 */
template <class Fill>
bool complete_run(Core& core, RunState& run, bool count_late, Fill fill) {
  {
    std::lock_guard lock(run.mu);
    if (run.completed) {
      if (count_late) core.late.fetch_add(1);
      return false;
    }
    fill(run);
    run.completed = true;
    // As posternd: a pending hook's edits apply with its completion, not with a timeout or a failure.
    if (!run.timed_out && !run.failed) {
      std::move(run.pending_header_edits.begin(), run.pending_header_edits.end(),
                std::back_inserter(run.header_edits));
      std::move(run.pending_rcpt_added.begin(), run.pending_rcpt_added.end(), std::back_inserter(run.rcpt_added));
      std::move(run.pending_rcpt_removed.begin(), run.pending_rcpt_removed.end(),
                std::back_inserter(run.rcpt_removed));
      if (run.pending_sender_change) run.sender_change = std::move(run.pending_sender_change);
      if (run.pending_body_replacement) run.body_replacement = std::move(run.pending_body_replacement);
    }
    run.pending_sender_change.reset();
    run.pending_body_replacement.reset();
    run.pending_header_edits.clear();
    run.pending_rcpt_added.clear();
    run.pending_rcpt_removed.clear();
  }
  run.cv.notify_all();
  return true;
}

inline void copy_result(RunState& run, const postern_hook_result_t& r) {
  run.verdict = static_cast<Verdict>(r.verdict);
  run.code = static_cast<uint16_t>(r.smtp_code);
  run.enhanced = std::string(sv(r.enhanced));
  run.text = std::string(sv(r.text));
  run.disconnect = (r.flags & POSTERN_RESULT_DISCONNECT) != 0;
  run.failed = (r.flags & POSTERN_RESULT_ERROR) != 0;
}

/** Runs one due event outside the lock. */
inline void fire(Core& core, DueEvent& ev) {
  switch (ev.kind) {
    case DueEvent::Kind::Timer:
      ev.timer_cb(ev.user, 1);
      break;
    case DueEvent::Kind::Dns: {
      std::vector<postern_dns_record_t> recs;
      recs.reserve(ev.answer.records.size());
      uint32_t min_ttl = ev.answer.min_ttl;
      for (const DnsRecord& r : ev.answer.records) {
        recs.push_back({static_cast<uint32_t>(r.type), r.ttl, str(r.data)});
        if (min_ttl == 0 || r.ttl < min_ttl) min_ttl = r.ttl;
      }
      postern_dns_answer_t a{};
      a.struct_size = sizeof a;
      a.status = static_cast<uint32_t>(ev.answer.status);
      a.name = str(ev.answer.name);
      a.type = static_cast<uint32_t>(ev.answer.type);
      a.min_ttl = min_ttl;
      a.records = recs.empty() ? nullptr : recs.data();
      a.record_count = recs.size();
      ev.dns_cb(ev.user, &a);
      break;
    }
    case DueEvent::Kind::HookTimeout:
      if (auto run = ev.run.lock()) {
        complete_run(core, *run, false, [](RunState& r) {
          r.timed_out = true;
          r.failed = true;
          r.verdict = Verdict::Continue;
          r.text = "hook timed out";
        });
      }
      break;
  }
}

/** Pops the earliest event due at or before `limit` (setting the clock to its due time). */
inline std::optional<DueEvent> pop_due(Core& core, int64_t limit) {
  std::lock_guard lock(core.mu);
  auto best = core.events.end();
  for (auto it = core.events.begin(); it != core.events.end(); ++it) {
    if (it->second.due_ms <= limit && (best == core.events.end() || it->second.due_ms < best->second.due_ms)) best = it;
  }
  if (best == core.events.end()) return std::nullopt;
  DueEvent ev = std::move(best->second);
  core.events.erase(best);
  if (ev.due_ms > core.now_ms.load()) core.now_ms.store(ev.due_ms);
  return ev;
}

inline std::optional<WorkItem> pop_work(Core& core) {
  std::lock_guard lock(core.mu);
  if (core.work.empty()) return std::nullopt;
  WorkItem w = core.work.front();
  core.work.pop_front();
  return w;
}

/** Runs queued work and everything due now until nothing is left. @return callbacks run. */
inline size_t run_ready(Core& core) {
  size_t n = 0;
  for (;;) {
    if (auto w = pop_work(core)) {
      w->fn(w->user);
      ++n;
      continue;
    }
    if (auto ev = pop_due(core, core.now_ms.load())) {
      fire(core, *ev);
      ++n;
      continue;
    }
    return n;
  }
}

/** Moves the clock to `target`, firing events in time order on the way. */
inline size_t advance_to(Core& core, int64_t target) {
  size_t n = 0;
  while (auto ev = pop_due(core, target)) {
    fire(core, *ev);
    ++n;
  }
  if (target > core.now_ms.load()) core.now_ms.store(target);
  return n;
}

inline bool any_deferred_open(Core& core) {
  std::vector<std::shared_ptr<RunState>> runs;
  {
    std::lock_guard lock(core.mu);
    std::erase_if(core.deferred, [](const std::weak_ptr<RunState>& w) { return w.expired(); });
    for (auto& w : core.deferred)
      if (auto r = w.lock()) runs.push_back(std::move(r));
  }
  for (auto& r : runs) {
    std::lock_guard lock(r->mu);
    if (!r->completed) return true;
  }
  return false;
}

inline std::optional<int64_t> next_due(Core& core) {
  std::lock_guard lock(core.mu);
  std::optional<int64_t> best;
  for (auto& [seq, ev] : core.events)
    if (!best || ev.due_ms < *best) best = ev.due_ms;
  return best;
}

/**
 * One client connection of a FakeStream; its address is the postern_stream_t*
 * handle. Reference-counted: the FakeStream holds one reference, the plugin
 * adds its own with stream_retain.
 */
struct StreamState {
  std::shared_ptr<Core> core;
  Slot* slot = nullptr;
  const postern_service_v1_t* svc = nullptr;
  void* conn = nullptr;
  std::atomic<int> refs{1};

  std::mutex mu;
  std::map<postern_stream_prop_t, std::string> props;
  bool opened = false;           // on_open returned a connection
  bool closed = false;           // on_close ran (or on_open refused)
  bool close_requested = false;  // the plugin called stream_close
  bool paused = false;
  bool drain_wanted = false;
  bool tls_pending = false;      // stream_starttls called, handshake not done
  bool tls_active = false;
  bool starttls_available = true;
  bool auto_tls = true;
  bool manual_posts = false;
  bool hold_output = false;
  std::optional<postern_close_reason_t> close_reason;
  std::string output;            // everything the client received
  size_t taken = 0;              // take_output() position
  size_t tls_at = std::string::npos;  // offset of the first octet sent under STARTTLS
  std::string held;              // written, not yet sent (hold_output)
  std::string input;             // sent by the test, not yet delivered
  uint64_t idle_timeout_ms = 30 * 60 * 1000;
  std::deque<std::pair<postern_task_cb, void*>> posted;
  size_t writes = 0;
  postern_service_v1_t own_svc{};  // an outbound stream's callbacks (svc points here)
};

inline StreamState* stream_of(postern_stream_t* s) { return reinterpret_cast<StreamState*>(s); }
inline postern_stream_t* handle_of(StreamState* s) { return reinterpret_cast<postern_stream_t*>(s); }

inline void stream_unref(StreamState* s) {
  if (s != nullptr && s->refs.fetch_sub(1) == 1) delete s;
}

/** Ends the stream: on_close(reason) once, the last callback for it. */
inline void close_stream(StreamState& s, postern_close_reason_t reason) {
  void* conn;
  bool was_open;
  {
    std::lock_guard lock(s.mu);
    if (s.closed) return;
    s.closed = true;
    s.close_reason = reason;
    // The plugin closed it itself: its output was flushed first (postern_abi.h).
    if (reason == POSTERN_CLOSE_PLUGIN) {
      s.output += s.held;
      s.held.clear();
    }
    s.input.clear();
    conn = s.conn;
    was_open = s.opened;
  }
  if (was_open) s.svc->on_close(conn, reason);
}

/** Completes a STARTTLS handshake: input not yet delivered is dropped, then on_tls. */
inline void finish_tls(StreamState& s, bool ok) {
  void* conn;
  {
    std::lock_guard lock(s.mu);
    if (s.closed || !s.tls_pending) return;
    s.tls_pending = false;
    if (ok) {
      // RFC 3207 §4.2 / RFC 2595 §3.1: nothing sent before the handshake is processed after it.
      s.output += s.held;
      s.held.clear();
      s.input.clear();
      s.tls_active = true;
      s.tls_at = s.output.size();
      s.props[POSTERN_STREAM_TLS_PROTOCOL] = "TLSv1.3";
      s.props[POSTERN_STREAM_TLS_CIPHER] = "TLS_AES_256_GCM_SHA384";
    }
    conn = s.conn;
  }
  if (!ok) {
    close_stream(s, POSTERN_CLOSE_TLS_FAILED);
    return;
  }
  if (s.svc->on_tls != nullptr) s.svc->on_tls(conn);
}

/**
 * Runs what is due on the stream's "strand", one callback at a time:
 * posted functions (unless manual), a close the plugin asked for, an
 * automatic STARTTLS handshake, on_drain, and buffered input.
 * @param posts_too run posted functions even in manual mode.
 * @return callbacks run.
 */
inline size_t pump(StreamState& s, bool posts_too = false) {
  size_t n = 0;
  for (;;) {
    enum class Next { None, Post, Close, Tls, Drain, Data } next = Next::None;
    std::pair<postern_task_cb, void*> post{};
    std::string data;
    void* conn = nullptr;
    {
      std::lock_guard lock(s.mu);
      conn = s.conn;
      if (!s.posted.empty() && (posts_too || !s.manual_posts || s.closed)) {
        next = Next::Post;
        post = s.posted.front();
        s.posted.pop_front();
      } else if (s.closed) {
        next = Next::None;
      } else if (s.close_requested) {
        next = Next::Close;
      } else if (s.tls_pending && s.auto_tls) {
        next = Next::Tls;
      } else if (s.drain_wanted && s.held.empty()) {
        s.drain_wanted = false;
        next = Next::Drain;
      } else if (!s.paused && !s.tls_pending && !s.input.empty()) {
        data.swap(s.input);
        next = Next::Data;
      }
    }
    switch (next) {
      case Next::None: return n;
      case Next::Post: post.first(post.second); break;
      case Next::Close: close_stream(s, POSTERN_CLOSE_PLUGIN); break;
      case Next::Tls: finish_tls(s, true); break;
      case Next::Drain:
        if (s.svc->on_drain != nullptr) s.svc->on_drain(conn);
        break;
      case Next::Data:
        s.svc->on_data(conn, postern_bytes_t{reinterpret_cast<const uint8_t*>(data.data()), data.size()});
        break;
    }
    ++n;
  }
}

/** Pumps every open stream until none has anything due. @return callbacks run. */
inline size_t pump_all(Core& core) {
  size_t total = 0;
  for (;;) {
    std::vector<StreamState*> live;
    {
      std::lock_guard lock(core.mu);
      for (StreamState* s : core.streams) {
        s->refs.fetch_add(1);
        live.push_back(s);
      }
    }
    size_t n = 0;
    for (StreamState* s : live) {
      n += pump(*s);
      stream_unref(s);
    }
    total += n;
    if (n == 0) return total;
  }
}

/** Closes the slot's streams, runs its queued work, cancels its DNS queries, drops its timers, calls on_destroy. */
inline void unload_slot(Core& core, Slot& slot) {
  if (!slot.alive) return;
  // As posternd at unload: the plugin's listeners stop and its open streams
  // end with on_close(SHUTDOWN) before its work drains and on_destroy runs.
  std::vector<StreamState*> streams;
  {
    std::lock_guard lock(core.mu);
    std::erase_if(core.services, [&](const auto& e) { return e.second.slot == &slot; });
    std::erase_if(core.commands, [&](const auto& e) { return e.second.slot == &slot; });
    for (StreamState* s : core.streams) {
      if (s->slot != &slot) continue;
      s->refs.fetch_add(1);
      streams.push_back(s);
    }
  }
  // ABI 1.3: unanswered connects complete with CANCELLED before the streams end.
  std::vector<std::shared_ptr<ConnectRec>> connects;
  {
    std::lock_guard lock(core.mu);
    for (auto it = core.connects.begin(); it != core.connects.end();) {
      if ((*it)->slot == &slot) {
        connects.push_back(*it);
        it = core.connects.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : connects) c->cb(c->user, POSTERN_CONNECT_CANCELLED, nullptr, str("cancelled: the plugin is unloading"));
  for (StreamState* s : streams) close_stream(*s, POSTERN_CLOSE_SHUTDOWN);
  for (;;) {
    std::optional<WorkItem> w;
    std::optional<DueEvent> dns;
    {
      std::lock_guard lock(core.mu);
      for (auto it = core.work.begin(); it != core.work.end(); ++it) {
        if (it->slot == &slot) {
          w = *it;
          core.work.erase(it);
          break;
        }
      }
      if (!w) {
        for (auto it = core.events.begin(); it != core.events.end();) {
          if (it->second.slot != &slot) {
            ++it;
          } else if (it->second.kind == DueEvent::Kind::Dns && !dns) {
            dns = std::move(it->second);
            it = core.events.erase(it);
          } else if (it->second.kind == DueEvent::Kind::Timer && !dns) {
            dns = std::move(it->second);  // fired below with fired = 0
            it = core.events.erase(it);
          } else if (it->second.kind == DueEvent::Kind::HookTimeout) {
            it = core.events.erase(it);  // hook timeouts are dropped
          } else {
            ++it;
          }
        }
      }
    }
    if (w) {
      w->fn(w->user);
    } else if (dns && dns->kind == DueEvent::Kind::Timer) {
      // postern_abi.h: an unloaded plugin's timers run once with fired = 0.
      dns->timer_cb(dns->user, 0);
    } else if (dns) {
      // postern_abi.h: the callback runs exactly once, CANCELLED when the host shuts down.
      dns->answer.status = POSTERN_DNS_CANCELLED;
      dns->answer.records.clear();
      fire(core, *dns);
    } else {
      break;
    }
  }
  {
    // As posternd: the plugin's cron jobs are removed before on_destroy.
    std::lock_guard lock(core.mu);
    std::erase_if(core.crons, [&](const auto& e) { return e.second.slot == &slot; });
    std::erase_if(core.mailbox_subs, [&](const auto& e) { return e.second.slot == &slot; });
  }
  for (StreamState* s : streams) {
    pump(*s, true);  // posted functions run exactly once, also after close
    stream_unref(s);
  }
  slot.alive = false;
  if (slot.instance != nullptr) slot.table->on_destroy(slot.instance);
  slot.instance = nullptr;
}

/** The host API table: every function of postern_host_api_v1_t. */
struct Api {
  // --- registration
  static postern_status_t subscribe(postern_host_t* h, uint32_t stage) {
    Slot* s = slot_of(h);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    if (stage >= kStageCount) {
      // As posternd: the value is range-checked as an integer and the fault logged.
      s->core->log(LogLevel::Error, "fakehost", s->name + ": subscribe to stage " + std::to_string(stage) +
                                                   ", which is not a postern_stage_t");
      return POSTERN_ERR_INVALID;
    }
    if (!s->initialising) return POSTERN_ERR_UNAVAILABLE;
    {
      std::lock_guard lock(s->core->mu);
      if (s->core->declared && !(*s->core->declared)[stage]) return POSTERN_ERR_INVALID;
    }
    s->subscribed[stage] = true;
    return POSTERN_OK;
  }

  // --- configuration and environment
  static const postern_config_node_t* config_root(postern_host_t* h) {
    return handle_of(slot_of(h)->doc.document_element());
  }
  static postern_str_t config_name(const postern_config_node_t* n) {
    if (n == nullptr) return {"", 0};
    const char* name = node_of(n).name();
    return {name, std::strlen(name)};
  }
  static postern_status_t config_attr(const postern_config_node_t* n, postern_str_t name, postern_str_t* out) {
    if (n == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
    for (pugi::xml_attribute a : node_of(n).attributes()) {
      if (sv(name) == a.name()) {
        *out = {a.value(), std::strlen(a.value())};
        return POSTERN_OK;
      }
    }
    return POSTERN_ERR_NOT_FOUND;
  }
  static postern_str_t config_text(const postern_config_node_t* n) {
    // load() merges an element's PCDATA/CDATA into its first child, so this is stable storage.
    if (n == nullptr) return {"", 0};
    const char* t = node_of(n).child_value();
    return {t, std::strlen(t)};
  }
  static bool name_matches(pugi::xml_node c, postern_str_t name) {
    return c.type() == pugi::node_element && (sv(name).empty() || sv(name) == c.name());
  }
  static const postern_config_node_t* config_child(const postern_config_node_t* n, postern_str_t name) {
    if (n == nullptr) return nullptr;
    for (pugi::xml_node c = node_of(n).first_child(); c; c = c.next_sibling())
      if (name_matches(c, name)) return handle_of(c);
    return nullptr;
  }
  static const postern_config_node_t* config_next(const postern_config_node_t* n, postern_str_t name) {
    if (n == nullptr) return nullptr;
    for (pugi::xml_node c = node_of(n).next_sibling(); c; c = c.next_sibling())
      if (name_matches(c, name)) return handle_of(c);
    return nullptr;
  }
  static uint32_t config_line(const postern_config_node_t* n) {
    std::lock_guard lock(line_registry_mutex());
    auto it = line_registry().find(n);
    return it == line_registry().end() ? 0 : it->second;
  }
  static postern_str_t state_dir(postern_host_t* h) { return str(slot_of(h)->state_dir_str); }
  static int64_t now_ms(postern_host_t* h) { return slot_of(h)->core->now_ms.load(); }
  static void log(postern_host_t* h, uint32_t level, postern_str_t message) {
    Slot* s = slot_of(h);
    if (level > POSTERN_LOG_ERROR) {  // as posternd: kept, at ERROR, with the bad level named
      s->core->log(LogLevel::Error, s->name,
                   "invalid log level " + std::to_string(level) + ": " + std::string(sv(message)));
      return;
    }
    s->core->log(static_cast<LogLevel>(level), s->name, std::string(sv(message)));
  }

  // --- asynchronous services
  static postern_status_t post_work(postern_host_t* h, postern_task_cb fn, void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr || fn == nullptr) return POSTERN_ERR_INVALID;
    {
      std::lock_guard lock(s->core->mu);
      if (s->core->work_mode == WorkMode::Manual) {
        s->core->work.push_back({s, fn, user});
        return POSTERN_OK;
      }
    }
    fn(user);
    return POSTERN_OK;
  }
  static uint64_t timer_start(postern_host_t* h, uint64_t delay_ms, postern_timer_cb fn, void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr || fn == nullptr) return 0;
    std::lock_guard lock(s->core->mu);
    const uint64_t seq = s->core->next_seq++;
    DueEvent ev;
    ev.kind = DueEvent::Kind::Timer;
    ev.due_ms = s->core->now_ms.load() + static_cast<int64_t>(delay_ms);
    ev.slot = s;
    ev.timer_cb = fn;
    ev.user = user;
    s->core->events.emplace(seq, std::move(ev));
    // The id is the sequence number, so cancelling a stale id is harmless.
    return seq;
  }
  static void timer_cancel(postern_host_t* h, uint64_t id) {
    Slot* s = slot_of(h);
    if (s == nullptr || id == 0) return;
    std::optional<DueEvent> cancelled;
    {
      std::lock_guard lock(s->core->mu);
      auto it = s->core->events.find(id);
      if (it != s->core->events.end() && it->second.kind == DueEvent::Kind::Timer && it->second.slot == s) {
        cancelled = std::move(it->second);
        s->core->events.erase(it);
      }
    }
    // postern_abi.h: a cancelled timer's callback still runs once, with fired = 0.
    if (cancelled) cancelled->timer_cb(cancelled->user, 0);
  }
  static postern_status_t dns_query(postern_host_t* h, postern_str_t name, uint32_t raw_type, uint32_t timeout_ms,
                                    postern_dns_cb cb, void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr || cb == nullptr || sv(name).empty()) return POSTERN_ERR_INVALID;
    // The type arrives as an integer (ABI 1.3). posternd takes any RR type
    // 1..65535; FakeHost answers only the postern_dns_type_t ones (its DNS
    // table is keyed by them) and refuses others as posternd refuses 0.
    static constexpr uint32_t kTypes[] = {POSTERN_DNS_A,   POSTERN_DNS_NS,  POSTERN_DNS_CNAME, POSTERN_DNS_SOA,
                                          POSTERN_DNS_PTR, POSTERN_DNS_MX,  POSTERN_DNS_TXT,   POSTERN_DNS_AAAA,
                                          POSTERN_DNS_SRV, POSTERN_DNS_TLSA};
    if (std::find(std::begin(kTypes), std::end(kTypes), raw_type) == std::end(kTypes)) return POSTERN_ERR_INVALID;
    const auto type = static_cast<postern_dns_type_t>(raw_type);  // one of its enumerators
    Core& core = *s->core;
    std::lock_guard lock(core.mu);
    const std::string key = lower_dns_name(sv(name));
    core.dns_queries.emplace_back(key, type);
    DueEvent ev;
    ev.kind = DueEvent::Kind::Dns;
    ev.slot = s;
    ev.dns_cb = cb;
    ev.user = user;
    auto it = core.dns.find({key, static_cast<int>(type)});
    const int64_t now = core.now_ms.load();
    if (it != core.dns.end() && it->second.timeout) {
      ev.answer.status = POSTERN_DNS_TIMEOUT;
      ev.due_ms = now + (timeout_ms != 0 ? timeout_ms : core.dns_default_timeout_ms);
    } else {
      if (it != core.dns.end()) {
        ev.answer = it->second.answer;
      } else {
        ev.answer.status = POSTERN_DNS_NXDOMAIN;
      }
      ev.due_ms = now + core.dns_latency_ms;
    }
    ev.answer.name = std::string(sv(name));
    ev.answer.type = type;
    core.events.emplace(core.next_seq++, std::move(ev));
    return POSTERN_OK;
  }

  // --- cron jobs (ABI 1.1)
  static uint64_t cron_add(postern_host_t* h, postern_str_t name, postern_str_t expr, postern_task_cb fn, void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr || fn == nullptr) return 0;
    if (!plausible_cron(sv(expr))) {
      s->core->log(LogLevel::Error, "fakehost", s->name + ": cron_add: bad cron expression '" + std::string(sv(expr)) + "'");
      return 0;
    }
    std::lock_guard lock(s->core->mu);
    if (!s->core->cron_available) return 0;
    const uint64_t id = s->core->next_seq++;
    s->core->crons.emplace(id, CronJob{s, std::string(sv(name)), std::string(sv(expr)), fn, user, 0});
    return id;
  }
  static void cron_cancel(postern_host_t* h, uint64_t id) {
    Slot* s = slot_of(h);
    if (s == nullptr) return;
    std::lock_guard lock(s->core->mu);
    auto it = s->core->crons.find(id);
    if (it != s->core->crons.end() && it->second.slot == s) s->core->crons.erase(it);
  }

  // --- mailbox events (ABI 1.3): FakeHost::raise_mailbox_event delivers them
  static uint64_t mbox_events_subscribe(postern_host_t* h, uint32_t mask, postern_mbox_event_cb fn, void* user) {
    Slot* s = slot_of(h);
    mask &= POSTERN_MBOX_MASK_ALL;
    if (s == nullptr || fn == nullptr || mask == 0) return 0;
    std::lock_guard lock(s->core->mu);
    if (!s->core->mailbox_events_available) return 0;
    const uint64_t id = s->core->next_seq++;
    s->core->mailbox_subs.emplace(id, MailboxSub{s, mask, fn, user});
    return id;
  }
  static void mbox_events_unsubscribe(postern_host_t* h, uint64_t id) {
    Slot* s = slot_of(h);
    if (s == nullptr) return;
    std::lock_guard lock(s->core->mu);
    auto it = s->core->mailbox_subs.find(id);
    if (it != s->core->mailbox_subs.end() && it->second.slot == s) s->core->mailbox_subs.erase(it);
  }

  // --- session tags (ABI 1.1); limits as in posternd
  static postern_status_t event_tag_set(postern_event_t* e, postern_str_t key, postern_str_t value) {
    EventCtx* c = live(e);
    if (c == nullptr) return POSTERN_ERR_INVALID;
    if (!c->event.get(POSTERN_PROP_SESSION_ID)) return POSTERN_ERR_UNAVAILABLE;
    const std::string_view k = sv(key);
    if (k.empty() || k.size() > 128 || sv(value).size() > 1024 ||
        !std::all_of(k.begin(), k.end(), [](char ch) { return ch > 32 && ch < 127; }))
      return POSTERN_ERR_INVALID;
    auto& tags = c->event.tags();
    if (!tags.contains(std::string(k)) && tags.size() >= 64) return POSTERN_ERR_INVALID;
    tags[std::string(k)] = std::string(sv(value));
    std::lock_guard lock(c->run->mu);
    c->run->tags = tags;
    return POSTERN_OK;
  }
  static postern_status_t event_tag_get(postern_event_t* e, postern_str_t key, postern_str_t* out) {
    EventCtx* c = live(e);
    if (c == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
    if (!c->event.get(POSTERN_PROP_SESSION_ID)) return POSTERN_ERR_UNAVAILABLE;
    auto it = c->event.tags().find(std::string(sv(key)));
    if (it == c->event.tags().end()) return POSTERN_ERR_NOT_FOUND;
    *out = str(it->second);
    return POSTERN_OK;
  }

  // --- the event
  static EventCtx* live(postern_event_t* e) {
    EventCtx* c = ctx_of(e);
    if (c == nullptr) return nullptr;
    if (!c->active) {
      c->slot->core->log(LogLevel::Error, "fakehost", c->slot->name + ": event used after on_hook returned");
      return nullptr;
    }
    return c;
  }
  static postern_status_t event_get(postern_event_t* e, uint32_t raw_prop, postern_str_t* out) {
    EventCtx* c = live(e);
    if (c == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
    if (raw_prop >= POSTERN_PROP_COUNT_V1_0) return POSTERN_ERR_INVALID;
    const auto prop = static_cast<postern_property_t>(raw_prop);  // in range: a valid enumerator
    auto it = c->event.properties().find(prop);
    if (it == c->event.properties().end()) return POSTERN_ERR_NOT_FOUND;
    // As in posternd: an empty value is "unset", except the null reverse-path.
    if (it->second.empty() && prop != POSTERN_PROP_MAIL_FROM) return POSTERN_ERR_NOT_FOUND;
    *out = str(it->second);
    return POSTERN_OK;
  }
  static size_t event_rcpt_count(postern_event_t* e) {
    EventCtx* c = live(e);
    return c == nullptr ? 0 : c->event.recipients().size();
  }
  static postern_status_t event_rcpt_at(postern_event_t* e, size_t i, postern_str_t* out) {
    EventCtx* c = live(e);
    if (c == nullptr || out == nullptr || i >= c->event.recipients().size()) return POSTERN_ERR_NOT_FOUND;
    *out = str(c->event.recipients()[i]);
    return POSTERN_OK;
  }
  static const postern_message_t* event_message(postern_event_t* e) {
    EventCtx* c = live(e);
    if (c == nullptr || !c->message) return nullptr;
    return reinterpret_cast<const postern_message_t*>(&*c->message);
  }
  static postern_status_t event_add_symbol(postern_event_t* e, postern_str_t name, double weight, postern_str_t detail) {
    EventCtx* c = live(e);
    if (c == nullptr || sv(name).empty()) return POSTERN_ERR_INVALID;
    std::lock_guard lock(c->run->mu);
    c->run->symbols.push_back({std::string(sv(name)), weight, std::string(sv(detail))});
    return POSTERN_OK;
  }
  static double event_score(postern_event_t* e) {
    EventCtx* c = live(e);
    if (c == nullptr) return 0;
    std::lock_guard lock(c->run->mu);
    double total = c->run->base_score;
    for (const FakeSymbol& s : c->run->symbols) total += s.weight;
    return total;
  }
  // As in posternd: edits apply when the message is stored, so only stages before that.
  static bool header_stage(Stage stage) {
    switch (stage) {
      case Stage::MailFrom:
      case Stage::RcptTo:
      case Stage::DataStart:
      case Stage::Headers:
      case Stage::DataEnd:
        return true;
      default:
        return false;
    }
  }
  static EventCtx* editable(postern_event_t* e) {
    EventCtx* c = live(e);
    return c != nullptr && header_stage(c->event.stage()) ? c : nullptr;
  }
  static postern_status_t header_edit(postern_event_t* e, HeaderEdit edit, bool check_value) {
    EventCtx* c = editable(e);
    if (c == nullptr) return POSTERN_ERR_UNAVAILABLE;
    if (!valid_header_name(edit.name) || (check_value && !valid_header_value(edit.value))) return POSTERN_ERR_INVALID;
    std::lock_guard lock(c->run->mu);
    c->run->header_edits.push_back(std::move(edit));
    return POSTERN_OK;
  }
  static postern_status_t event_header_add(postern_event_t* e, postern_str_t name, postern_str_t value, int32_t prepend) {
    return header_edit(e, {HeaderEdit::Kind::Add, std::string(sv(name)), std::string(sv(value)), 0, prepend != 0}, true);
  }
  static postern_status_t event_header_change(postern_event_t* e, postern_str_t name, int32_t index,
                                              postern_str_t value) {
    if (index < 0) return editable(e) == nullptr ? POSTERN_ERR_UNAVAILABLE : POSTERN_ERR_INVALID;
    return header_edit(e, {HeaderEdit::Kind::Change, std::string(sv(name)), std::string(sv(value)), index, false}, true);
  }
  static postern_status_t event_header_remove(postern_event_t* e, postern_str_t name, int32_t index) {
    return header_edit(e, {HeaderEdit::Kind::Remove, std::string(sv(name)), {}, index, false}, false);
  }
  static postern_status_t event_rcpt_add(postern_event_t* e, postern_str_t address) {
    EventCtx* c = live(e);
    if (c == nullptr || c->event.stage() != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    if (!plausible_address(sv(address))) return POSTERN_ERR_INVALID;
    std::lock_guard lock(c->run->mu);
    c->run->rcpt_added.emplace_back(sv(address));
    return POSTERN_OK;
  }
  static postern_status_t event_rcpt_remove(postern_event_t* e, postern_str_t address) {
    EventCtx* c = live(e);
    if (c == nullptr || c->event.stage() != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    const auto& rcpts = c->event.recipients();
    if (std::none_of(rcpts.begin(), rcpts.end(), [&](const std::string& r) { return iequals(r, sv(address)); }))
      return POSTERN_ERR_NOT_FOUND;
    std::lock_guard lock(c->run->mu);
    c->run->rcpt_removed.emplace_back(sv(address));
    return POSTERN_OK;
  }
  static postern_pending_t* event_defer(postern_event_t* e) {
    EventCtx* c = live(e);
    if (c == nullptr || c->has_pending) return nullptr;  // one deferral per hook call
    if (static_cast<uint32_t>(c->event.stage()) >= static_cast<uint32_t>(Stage::Delivered)) return nullptr;
    c->has_pending = true;
    auto* rec = new PendingRec();
    rec->run = c->run->shared_from_this();
    rec->core = c->slot->core->self.lock();
    rec->stage = c->event.stage();
    rec->recipients = c->event.recipients();
    rec->max_message_size = c->event.max_message_size();
    return reinterpret_cast<postern_pending_t*>(rec);
  }

  // --- pending edits (ABI 1.3): posternd's rules, recorded until completion
  static postern_status_t pending_header(postern_pending_t* p, HeaderEdit edit, bool check_value) {
    if (p == nullptr) return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    RunState& run = *rec->run;
    std::lock_guard lock(run.mu);
    if (run.completed || !header_stage(rec->stage)) return POSTERN_ERR_UNAVAILABLE;
    if (!valid_header_name(edit.name) || (check_value && !valid_header_value(edit.value))) return POSTERN_ERR_INVALID;
    run.pending_header_edits.push_back(std::move(edit));
    return POSTERN_OK;
  }
  static postern_status_t pending_header_add(postern_pending_t* p, postern_str_t name, postern_str_t value,
                                             int32_t prepend) {
    return pending_header(p, {HeaderEdit::Kind::Add, std::string(sv(name)), std::string(sv(value)), 0, prepend != 0},
                          true);
  }
  static postern_status_t pending_header_change(postern_pending_t* p, postern_str_t name, int32_t index,
                                                postern_str_t value) {
    if (index < 0) {
      if (p == nullptr) return POSTERN_ERR_INVALID;
      std::lock_guard lock(rec_of(p)->run->mu);
      return rec_of(p)->run->completed || !header_stage(rec_of(p)->stage) ? POSTERN_ERR_UNAVAILABLE
                                                                          : POSTERN_ERR_INVALID;
    }
    return pending_header(p, {HeaderEdit::Kind::Change, std::string(sv(name)), std::string(sv(value)), index, false},
                          true);
  }
  static postern_status_t pending_header_remove(postern_pending_t* p, postern_str_t name, int32_t index) {
    return pending_header(p, {HeaderEdit::Kind::Remove, std::string(sv(name)), {}, index, false}, false);
  }
  static postern_status_t pending_rcpt_add(postern_pending_t* p, postern_str_t address) {
    if (p == nullptr) return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    std::lock_guard lock(rec->run->mu);
    if (rec->run->completed || rec->stage != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    if (!plausible_address(sv(address))) return POSTERN_ERR_INVALID;
    rec->run->pending_rcpt_added.emplace_back(sv(address));
    return POSTERN_OK;
  }
  static postern_status_t pending_rcpt_remove(postern_pending_t* p, postern_str_t address) {
    if (p == nullptr) return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    std::lock_guard lock(rec->run->mu);
    if (rec->run->completed || rec->stage != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    if (std::none_of(rec->recipients.begin(), rec->recipients.end(),
                     [&](const std::string& r) { return iequals(r, sv(address)); }))
      return POSTERN_ERR_NOT_FOUND;
    rec->run->pending_rcpt_removed.emplace_back(sv(address));
    return POSTERN_OK;
  }

  // --- sender and body edits (ABI 1.3): data_end only, as posternd
  static postern_status_t event_mail_from_set(postern_event_t* e, postern_str_t address, postern_str_t esmtp_args) {
    EventCtx* c = live(e);
    if (c == nullptr || c->event.stage() != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    if (!valid_sender_change(sv(address), sv(esmtp_args))) return POSTERN_ERR_INVALID;
    c->event.set(POSTERN_PROP_MAIL_FROM, std::string(sv(address)));  // the hook reads its own change back
    std::lock_guard lock(c->run->mu);
    c->run->sender_change = SenderChange{std::string(sv(address)), std::string(sv(esmtp_args))};
    return POSTERN_OK;
  }
  static postern_status_t event_body_replace(postern_event_t* e, postern_bytes_t body) {
    EventCtx* c = live(e);
    if (c == nullptr || c->event.stage() != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    std::optional<std::string> normalized = normalized_body(body, c->event.max_message_size());
    if (!normalized) return POSTERN_ERR_INVALID;
    std::lock_guard lock(c->run->mu);
    c->run->body_replacement = std::move(normalized);
    return POSTERN_OK;
  }
  static postern_status_t pending_mail_from_set(postern_pending_t* p, postern_str_t address, postern_str_t esmtp_args) {
    if (p == nullptr) return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    std::lock_guard lock(rec->run->mu);
    if (rec->run->completed || rec->stage != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    if (!valid_sender_change(sv(address), sv(esmtp_args))) return POSTERN_ERR_INVALID;
    rec->run->pending_sender_change = SenderChange{std::string(sv(address)), std::string(sv(esmtp_args))};
    return POSTERN_OK;
  }
  static postern_status_t pending_body_replace(postern_pending_t* p, postern_bytes_t body) {
    if (p == nullptr) return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    std::lock_guard lock(rec->run->mu);
    if (rec->run->completed || rec->stage != Stage::DataEnd) return POSTERN_ERR_UNAVAILABLE;
    std::optional<std::string> normalized = normalized_body(body, rec->max_message_size);
    if (!normalized) return POSTERN_ERR_INVALID;
    rec->run->pending_body_replacement = std::move(normalized);
    return POSTERN_OK;
  }

  // --- pending results
  static postern_pending_t* pending_retain(postern_pending_t* p) {
    if (p != nullptr) rec_of(p)->refs.fetch_add(1);
    return p;
  }
  static void pending_release(postern_pending_t* p) {
    if (p == nullptr) return;
    PendingRec* rec = rec_of(p);
    if (rec->refs.fetch_sub(1) != 1) return;
    complete_run(*rec->core, *rec->run, false, [](RunState& r) {
      r.released = true;
      r.verdict = Verdict::Continue;
    });
    delete rec;
  }
  static postern_status_t pending_add_symbol(postern_pending_t* p, postern_str_t name, double weight,
                                             postern_str_t detail) {
    if (p == nullptr || sv(name).empty()) return POSTERN_ERR_INVALID;
    RunState& run = *rec_of(p)->run;
    std::lock_guard lock(run.mu);
    if (run.completed) return POSTERN_ERR_UNAVAILABLE;
    run.symbols.push_back({std::string(sv(name)), weight, std::string(sv(detail))});
    return POSTERN_OK;
  }
  static postern_status_t pending_complete(postern_pending_t* p, const postern_hook_result_t* result) {
    if (p == nullptr || result == nullptr) return POSTERN_ERR_INVALID;
    if (result->struct_size < sizeof(postern_hook_result_t) || result->verdict == POSTERN_VERDICT_PENDING ||
        result->verdict > POSTERN_VERDICT_PENDING)
      return POSTERN_ERR_INVALID;
    PendingRec* rec = rec_of(p);
    return complete_run(*rec->core, *rec->run, true, [&](RunState& r) { copy_result(r, *result); })
               ? POSTERN_OK
               : POSTERN_ERR_UNAVAILABLE;
  }

  // --- admin commands (ABI 1.3)
  static postern_status_t command_register(postern_host_t* h, const postern_command_spec_t* spec,
                                           postern_command_cb fn, void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    if (!s->initialising) return POSTERN_ERR_UNAVAILABLE;
    if (spec == nullptr || spec->struct_size < sizeof(postern_command_spec_t) || fn == nullptr ||
        (spec->args == nullptr && spec->arg_count != 0))
      return POSTERN_ERR_INVALID;
    auto valid_name = [](std::string_view n) {
      return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      });
    };
    const std::string area(sv(spec->area)), verb(sv(spec->verb));
    static constexpr std::string_view kCore[] = {"domain", "user",    "alias",   "list",     "router", "queue",
                                                 "relay",  "plugins", "help",    "commands", "reload", "log"};
    if (!valid_name(area) || !valid_name(verb) || std::find(std::begin(kCore), std::end(kCore), area) != std::end(kCore))
      return POSTERN_ERR_INVALID;
    CommandReg reg{s, std::string(sv(spec->summary)), {}, fn, user};
    // Step by the plugin's struct_size, as posternd does (postern_abi.h).
    const size_t stride = spec->arg_count == 0 ? sizeof(postern_command_arg_t) : spec->args[0].struct_size;
    for (size_t i = 0; i < spec->arg_count; ++i) {
      const postern_command_arg_t& a =
          *reinterpret_cast<const postern_command_arg_t*>(reinterpret_cast<const char*>(spec->args) + i * stride);
      if (stride < sizeof(postern_command_arg_t) || a.struct_size != stride || a.type > POSTERN_ARG_STRING_LIST ||
          !valid_name(sv(a.name)))
        return POSTERN_ERR_INVALID;
      if ((a.flags & POSTERN_ARG_POSITIONAL) != 0 && a.type == POSTERN_ARG_BOOLEAN) return POSTERN_ERR_INVALID;
      reg.args.push_back({std::string(sv(a.name)), a.type, a.flags});
    }
    std::lock_guard lock(s->core->mu);
    auto [it, fresh] = s->core->commands.emplace(area + " " + verb, std::move(reg));
    if (!fresh) return it->second.slot == s ? POSTERN_ERR_INVALID : POSTERN_OK;  // first plugin keeps it
    return POSTERN_OK;
  }
  static postern_status_t command_complete(postern_command_reply_t* reply, uint32_t exit_class,
                                           postern_str_t result_json, postern_str_t text) {
    if (reply == nullptr) return POSTERN_ERR_INVALID;
    std::unique_ptr<std::shared_ptr<CommandOutcome>> owned(reinterpret_cast<std::shared_ptr<CommandOutcome>*>(reply));
    CommandOutcome& o = **owned;
    std::lock_guard lock(o.mu);
    if (o.answered) return POSTERN_ERR_UNAVAILABLE;
    o.answered = true;
    o.exit = exit_class;
    o.json = std::string(sv(result_json));
    o.text = std::string(sv(text));
    if (exit_class > POSTERN_COMMAND_EXISTS) {
      o.exit = POSTERN_COMMAND_FAIL;
      return POSTERN_ERR_INVALID;
    }
    return POSTERN_OK;
  }

  // --- services and streams (ABI 1.2)
  static postern_status_t service_register(postern_host_t* h, postern_str_t protocol, const postern_service_v1_t* svc,
                                           void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    if (!s->initialising) return POSTERN_ERR_UNAVAILABLE;
    std::string proto = mail_detail::lower(sv(protocol));
    if (proto.empty() || proto == "smtp" || proto == "submission" || svc == nullptr ||
        svc->struct_size < sizeof(postern_service_v1_t) || svc->on_open == nullptr || svc->on_data == nullptr ||
        svc->on_close == nullptr)
      return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->core->mu);
    auto it = s->core->services.find(proto);
    if (it != s->core->services.end()) {
      if (it->second.slot == s) return POSTERN_ERR_INVALID;
      // One server per protocol: the first plugin keeps it (manifest order).
      s->core->logs.push_back({LogLevel::Warn, "fakehost",
                               s->name + ": protocol '" + proto + "' is already served by " + it->second.slot->name});
      return POSTERN_OK;
    }
    s->core->services.emplace(proto, ServiceReg{s, svc, user});
    return POSTERN_OK;
  }
  static postern_stream_t* stream_retain(postern_stream_t* st) {
    if (st != nullptr) stream_of(st)->refs.fetch_add(1);
    return st;
  }
  static void stream_release(postern_stream_t* st) { stream_unref(stream_of(st)); }
  static postern_status_t stream_write(postern_stream_t* st, postern_bytes_t data) {
    StreamState* s = stream_of(st);
    if (s == nullptr || (data.ptr == nullptr && data.len != 0)) return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->mu);
    if (s->closed || s->close_requested) return POSTERN_ERR_UNAVAILABLE;
    (s->hold_output ? s->held : s->output).append(reinterpret_cast<const char*>(data.ptr), data.len);
    ++s->writes;
    return POSTERN_OK;
  }
  static size_t stream_queued(postern_stream_t* st) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return 0;
    std::lock_guard lock(s->mu);
    return s->held.size();
  }
  static postern_status_t stream_want_drain(postern_stream_t* st) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->mu);
    if (s->closed) return POSTERN_ERR_UNAVAILABLE;
    s->drain_wanted = true;
    return POSTERN_OK;
  }
  static postern_status_t stream_pause(postern_stream_t* st, int32_t paused) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->mu);
    if (s->closed) return POSTERN_ERR_UNAVAILABLE;
    s->paused = paused != 0;
    return POSTERN_OK;
  }
  static postern_status_t stream_starttls(postern_stream_t* st) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->mu);
    if (s->closed || s->close_requested || s->tls_active || s->tls_pending || !s->starttls_available)
      return POSTERN_ERR_UNAVAILABLE;
    s->tls_pending = true;
    return POSTERN_OK;
  }
  static void stream_close(postern_stream_t* st) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return;
    std::lock_guard lock(s->mu);
    if (!s->closed) s->close_requested = true;
  }
  static postern_status_t stream_set_idle_timeout(postern_stream_t* st, uint64_t timeout_ms) {
    StreamState* s = stream_of(st);
    if (s == nullptr) return POSTERN_ERR_INVALID;
    std::lock_guard lock(s->mu);
    if (s->closed) return POSTERN_ERR_UNAVAILABLE;
    s->idle_timeout_ms = timeout_ms;
    return POSTERN_OK;
  }
  static postern_status_t stream_post(postern_stream_t* st, postern_task_cb fn, void* user) {
    StreamState* s = stream_of(st);
    if (s == nullptr || fn == nullptr) return POSTERN_ERR_INVALID;
    if (!s->slot->alive) return POSTERN_ERR_UNAVAILABLE;  // unloading
    std::lock_guard lock(s->mu);
    s->posted.emplace_back(fn, user);
    return POSTERN_OK;
  }
  static postern_status_t stream_get(postern_stream_t* st, uint32_t raw_prop, postern_str_t* out) {
    StreamState* s = stream_of(st);
    if (s == nullptr || out == nullptr || raw_prop > POSTERN_STREAM_CLEARTEXT_AUTH) return POSTERN_ERR_INVALID;
    const auto prop = static_cast<postern_stream_prop_t>(raw_prop);  // in range: a valid enumerator
    std::lock_guard lock(s->mu);
    auto it = s->props.find(prop);
    if (it == s->props.end() || it->second.empty()) return POSTERN_ERR_NOT_FOUND;
    *out = str(it->second);
    return POSTERN_OK;
  }

  // --- the directory and the mailbox store (ABI 1.2; fake_mail.hpp)
  // --- outbound connections and injection (ABI 1.3)
  static postern_status_t stream_connect(postern_host_t* h, const postern_connect_options_t* o,
                                         const postern_service_v1_t* svc, postern_connect_cb cb, void* user,
                                         uint64_t* id) {
    Slot* s = slot_of(h);
    if (id != nullptr) *id = 0;
    if (s == nullptr || o == nullptr || svc == nullptr || cb == nullptr ||
        o->struct_size < sizeof(postern_connect_options_t) || svc->struct_size < sizeof(postern_service_v1_t) ||
        svc->on_data == nullptr || svc->on_close == nullptr)
      return POSTERN_ERR_INVALID;
    if (sv(o->host).empty() == sv(o->unix_path).empty()) return POSTERN_ERR_INVALID;
    if (!sv(o->host).empty() && (o->port == 0 || o->port > 65535)) return POSTERN_ERR_INVALID;
    if ((o->flags & ~(POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY)) != 0) return POSTERN_ERR_INVALID;
    if (!s->alive && !s->initialising) return POSTERN_ERR_UNAVAILABLE;
    auto rec = std::make_shared<ConnectRec>();
    rec->slot = s;
    rec->table = *svc;
    rec->cb = cb;
    rec->user = user;
    ConnectRequest& r = rec->request;
    r.plugin = s->name;
    r.host = std::string(sv(o->host));
    r.port = static_cast<uint16_t>(o->port);
    r.unix_path = std::string(sv(o->unix_path));
    r.tls = (o->flags & POSTERN_CONNECT_TLS) != 0;
    r.verify = (o->flags & POSTERN_CONNECT_TLS_NO_VERIFY) == 0;
    r.tls_name = sv(o->tls_name).empty() ? r.host : std::string(sv(o->tls_name));
    r.timeout_ms = o->timeout_ms;
    std::lock_guard lock(s->core->mu);
    r.id = ++s->core->connect_seq;
    s->core->connects.push_back(rec);
    if (id != nullptr) *id = r.id;
    return POSTERN_OK;
  }
  static void stream_connect_cancel(postern_host_t* h, uint64_t id) {
    Slot* s = slot_of(h);
    if (s == nullptr) return;
    std::lock_guard lock(s->core->mu);
    for (auto& c : s->core->connects) {
      if (c->request.id == id && c->slot == s) c->cancelled = true;
    }
  }
  static postern_status_t inject(postern_host_t* h, const postern_inject_request_t* rq, postern_inject_cb done,
                                 void* user) {
    Slot* s = slot_of(h);
    if (s == nullptr || rq == nullptr || done == nullptr || rq->struct_size < sizeof(postern_inject_request_t) ||
        rq->flags != 0 || rq->recipient_count == 0 || rq->recipient_count > 1000 || rq->recipients == nullptr ||
        rq->message.ptr == nullptr || rq->message.len == 0 || (rq->skip_filter_count != 0 && rq->skip_filters == nullptr))
      return POSTERN_ERR_INVALID;
    InjectedMessage m;
    m.plugin = s->name;
    m.mail_from = std::string(sv(rq->mail_from));
    if (!m.mail_from.empty() && !plausible_address(m.mail_from)) return POSTERN_ERR_INVALID;
    for (size_t i = 0; i < rq->recipient_count; ++i) {
      std::string r(sv(rq->recipients[i]));
      if (!plausible_address(r)) return POSTERN_ERR_INVALID;
      m.recipients.push_back(std::move(r));
    }
    for (size_t i = 0; i < rq->skip_filter_count; ++i) {
      std::string f(sv(rq->skip_filters[i]));
      if (f.empty() || f.find_first_of(", ") != std::string::npos) return POSTERN_ERR_INVALID;
      m.skip_filters.push_back(std::move(f));
    }
    m.message.assign(reinterpret_cast<const char*>(rq->message.ptr), rq->message.len);
    if (!s->alive && !s->initialising) return POSTERN_ERR_UNAVAILABLE;
    // Completes like queued work (WorkMode): exactly once, never lost.
    struct Done {
      postern_inject_cb done;
      void* user;
      uint32_t status;
      std::string text;
    };
    auto* d = new Done{done, user, POSTERN_OK, {}};
    {
      std::lock_guard lock(s->core->mu);
      if (s->core->inject_failure) {
        d->status = s->core->inject_failure->first;
        d->text = s->core->inject_failure->second;
      } else {
        m.queue_id = "fake-" + std::to_string(++s->core->inject_seq);
        d->text = m.queue_id;
        s->core->injected.push_back(std::move(m));
      }
    }
    return post_work(h, [](void* p) {
      std::unique_ptr<Done> d(static_cast<Done*>(p));
      d->done(d->user, d->status, str(d->text));
    }, d);
  }

  struct MailboxHandle {
    std::shared_ptr<FakeMailbox> mb;
  };
  struct ViewHandle {
    std::mutex mu;
    std::unique_ptr<FakeFolderView> view;
  };
  static MailboxHandle* box_of(postern_mailbox_t* m) { return reinterpret_cast<MailboxHandle*>(m); }
  static ViewHandle* view_of(postern_folder_view_t* v) { return reinterpret_cast<ViewHandle*>(v); }

  static std::string& last_err() {
    thread_local std::string text;
    return text;
  }
  static postern_status_t mail_fail(postern_status_t code, std::string_view detail) {
    last_err().assign(detail);
    return code;
  }
  static postern_status_t mail_fail(const MailError& e) {
    return mail_fail(e.code == POSTERN_OK ? POSTERN_ERR_FAILED : e.code, e.detail);
  }
  static MailHooks hooks(Slot* s) {
    std::lock_guard lock(s->core->mu);
    return s->core->mail;
  }
  /** Runs a test-provided answer; an exception from it is a FAILED call, never an unwind into the plugin. */
  template <class F>
  static postern_status_t mail_call(F f) {
    try {
      last_err().clear();
      return f();
    } catch (const std::exception& e) {
      return mail_fail(POSTERN_ERR_FAILED, std::string("fake mail backend threw: ") + e.what());
    } catch (...) {
      return mail_fail(POSTERN_ERR_FAILED, "fake mail backend threw");
    }
  }
  static postern_status_t emit(const mail_detail::ResultBuilder& b, postern_mresult_t** out) {
    postern_mresult_t* r = b.build();
    if (r == nullptr) return mail_fail(POSTERN_ERR_TEMPORARY, "out of memory");
    *out = r;
    return POSTERN_OK;
  }
  static std::vector<std::string> keyword_list(const postern_str_t* k, size_t n) {
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) out.emplace_back(sv(k[i]));
    return out;
  }

  static postern_str_t last_error(postern_host_t*) { return str(last_err()); }

  static void fill_account(const Account& a, postern_account_info_t* out) {
    thread_local Account buffer;  // postern_abi.h: valid until the next dir_* call on this thread
    buffer = a;
    out->address = str(buffer.address);
    out->real_name = str(buffer.real_name);
    out->quota_bytes = buffer.quota_bytes;
    out->services = buffer.services;
    out->enabled = buffer.enabled ? 1 : 0;
    if (out->struct_size == 0) out->struct_size = sizeof(postern_account_info_t);
  }
  static postern_status_t dir_authenticate(postern_host_t* h, postern_str_t login, postern_str_t password,
                                           uint32_t service, postern_account_info_t* out) {
    return mail_call([&]() -> postern_status_t {
      Slot* s = slot_of(h);
      if (s == nullptr || out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
      if (out->struct_size != 0 && out->struct_size < sizeof(postern_account_info_t))
        return mail_fail(POSTERN_ERR_INVALID, "invalid account out argument");
      if (service != POSTERN_SERVICE_SMTP && service != POSTERN_SERVICE_IMAP && service != POSTERN_SERVICE_POP3)
        return mail_fail(POSTERN_ERR_INVALID, "service must be one of POSTERN_SERVICE_SMTP, _IMAP, _POP3");
      auto hk = hooks(s);
      if (!hk.authenticate) return mail_fail(POSTERN_ERR_UNAVAILABLE, "no directory is configured");
      auto r = hk.authenticate(sv(login), sv(password), service);
      if (!r) return mail_fail(r.error());
      fill_account(*r, out);
      return POSTERN_OK;
    });
  }
  static postern_status_t dir_account(postern_host_t* h, postern_str_t address, postern_account_info_t* out) {
    return mail_call([&]() -> postern_status_t {
      Slot* s = slot_of(h);
      if (s == nullptr || out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
      if (out->struct_size != 0 && out->struct_size < sizeof(postern_account_info_t))
        return mail_fail(POSTERN_ERR_INVALID, "invalid account out argument");
      auto hk = hooks(s);
      if (!hk.account) return mail_fail(POSTERN_ERR_UNAVAILABLE, "no directory is configured");
      auto r = hk.account(sv(address));
      if (!r) return mail_fail(r.error());
      fill_account(*r, out);
      return POSTERN_OK;
    });
  }
  static postern_status_t mbox_open(postern_host_t* h, postern_str_t account, postern_mailbox_t** out) {
    return mail_call([&]() -> postern_status_t {
      Slot* s = slot_of(h);
      if (s == nullptr || out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
      *out = nullptr;
      auto hk = hooks(s);
      if (!hk.open) return mail_fail(POSTERN_ERR_UNAVAILABLE, "no mailbox store is configured");
      if (sv(account).empty()) return mail_fail(POSTERN_ERR_INVALID, "empty account address");
      auto r = hk.open(sv(account));
      if (!r) return mail_fail(r.error());
      if (!*r) return mail_fail(POSTERN_ERR_FAILED, "the mailbox opener returned no mailbox");
      *out = reinterpret_cast<postern_mailbox_t*>(new MailboxHandle{std::move(*r)});
      return POSTERN_OK;
    });
  }
  static void mbox_release(postern_mailbox_t* m) { delete box_of(m); }
  static void mresult_free(postern_mresult_t* r) { std::free(r); }

  /** Checks the handle and the out pointer, then runs `body(FakeMailbox&)`. */
  template <class F>
  static postern_status_t with_box(postern_mailbox_t* m, postern_mresult_t** out, F body) {
    return mail_call([&]() -> postern_status_t {
      if (out != nullptr) *out = nullptr;
      if (m == nullptr || !box_of(m)->mb) return mail_fail(POSTERN_ERR_INVALID, "invalid mailbox handle");
      return body(*box_of(m)->mb);
    });
  }
  template <class T, class Fill>
  static postern_status_t answer(Expected<T> r, postern_mresult_t** out, Fill fill) {
    if (!r) return mail_fail(r.error());
    mail_detail::ResultBuilder b;
    fill(b, *r);
    return emit(b, out);
  }
  static postern_status_t done(const Expected<Done>& r) { return r ? POSTERN_OK : mail_fail(r.error()); }

  static postern_status_t mbox_list_folders(postern_mailbox_t* m, postern_mresult_t** out) {
    if (out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      return answer(mb.list_folders(), out, [](auto& b, auto& v) { b.folders = std::move(v); });
    });
  }
  static postern_status_t mbox_folder_status(postern_mailbox_t* m, postern_str_t name, postern_mresult_t** out) {
    if (out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      return answer(mb.folder_status(sv(name)), out, [](auto& b, auto& v) { b.folders.push_back(std::move(v)); });
    });
  }
  static postern_status_t mbox_create_folder(postern_mailbox_t* m, postern_str_t name, postern_str_t use) {
    return with_box(m, nullptr, [&](FakeMailbox& mb) { return done(mb.create_folder(sv(name), sv(use))); });
  }
  static postern_status_t mbox_delete_folder(postern_mailbox_t* m, postern_str_t name) {
    return with_box(m, nullptr, [&](FakeMailbox& mb) { return done(mb.delete_folder(sv(name))); });
  }
  static postern_status_t mbox_rename_folder(postern_mailbox_t* m, postern_str_t from, postern_str_t to) {
    return with_box(m, nullptr, [&](FakeMailbox& mb) { return done(mb.rename_folder(sv(from), sv(to))); });
  }
  static postern_status_t mbox_subscribe(postern_mailbox_t* m, postern_str_t name, int32_t subscribed) {
    return with_box(m, nullptr, [&](FakeMailbox& mb) { return done(mb.subscribe(sv(name), subscribed != 0)); });
  }
  static postern_status_t mbox_claim_recent(postern_mailbox_t* m, postern_str_t name, uint32_t* first) {
    if (first == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, nullptr, [&](FakeMailbox& mb) -> postern_status_t {
      auto r = mb.claim_recent(sv(name));
      if (!r) return mail_fail(r.error());
      *first = *r;
      return POSTERN_OK;
    });
  }
  static postern_status_t mbox_changes_since(postern_mailbox_t* m, postern_str_t name, uint32_t uidvalidity,
                                             uint64_t since, postern_mresult_t** out) {
    if (out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      return answer(mb.changes_since(sv(name), uidvalidity, since), out, [](auto& b, auto& c) {
        b.messages = std::move(c.changed);
        b.uids = std::move(c.expunged);
        b.uidvalidity = c.uidvalidity;
        b.uidnext = c.uidnext;
        b.highest_modseq = c.highest_modseq;
        if (c.expunged_incomplete) b.flags |= POSTERN_MRESULT_EXPUNGED_INCOMPLETE;
      });
    });
  }
  static postern_status_t mbox_read_message(postern_mailbox_t* m, postern_str_t folder, uint32_t uid,
                                            postern_mresult_t** out) {
    if (out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      return answer(mb.read_message(sv(folder), uid), out, [](auto& b, auto& v) { b.bytes = std::move(v); });
    });
  }
  static postern_status_t mbox_store_flags(postern_mailbox_t* m, postern_str_t folder, const uint32_t* uids,
                                           size_t uid_count, uint32_t raw_op, uint32_t flags,
                                           const postern_str_t* keywords, size_t keyword_count,
                                           int32_t has_unchanged_since, uint64_t unchanged_since,
                                           postern_mresult_t** out) {
    if (out == nullptr || (uids == nullptr && uid_count != 0) || (keywords == nullptr && keyword_count != 0) ||
        raw_op > POSTERN_FLAGS_REMOVE || (flags & ~0x1Fu) != 0)
      return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
    const auto op = static_cast<postern_flag_op_t>(raw_op);  // in range: a valid enumerator
    return with_box(m, out, [&](FakeMailbox& mb) {
      std::optional<uint64_t> since;
      if (has_unchanged_since != 0) since = unchanged_since;
      return answer(mb.store_flags(sv(folder), std::vector<uint32_t>(uids, uids + uid_count), op, flags,
                                   keyword_list(keywords, keyword_count), since),
                    out, [](auto& b, auto& o) {
                      b.messages = std::move(o.messages);
                      b.uids = std::move(o.modified);
                      std::sort(b.uids.begin(), b.uids.end());
                      b.highest_modseq = o.highest_modseq;
                    });
    });
  }
  static postern_status_t mbox_expunge(postern_mailbox_t* m, postern_str_t folder, const uint32_t* uids,
                                       size_t uid_count, uint32_t raw_mode, postern_mresult_t** out) {
    if (out == nullptr || (uids == nullptr && uid_count != 0) || raw_mode > POSTERN_EXPUNGE_ALL_DELETED)
      return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
    const auto mode = static_cast<postern_expunge_mode_t>(raw_mode);  // in range: a valid enumerator
    return with_box(m, out, [&](FakeMailbox& mb) {
      std::vector<uint32_t> list;
      if (mode != POSTERN_EXPUNGE_ALL_DELETED) list.assign(uids, uids + uid_count);
      return answer(mb.expunge(sv(folder), list, mode), out, [](auto& b, auto& v) { b.uids = std::move(v); });
    });
  }
  static postern_status_t mbox_append(postern_mailbox_t* m, postern_str_t folder, postern_bytes_t message,
                                      uint32_t flags, const postern_str_t* keywords, size_t keyword_count,
                                      int64_t internal_date, postern_mresult_t** out) {
    if (out == nullptr || (message.ptr == nullptr && message.len != 0) || (keywords == nullptr && keyword_count != 0) ||
        (flags & ~0x1Fu) != 0)
      return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      std::optional<int64_t> date;
      if (internal_date >= 0) date = internal_date;
      const std::string_view bytes(reinterpret_cast<const char*>(message.ptr), message.len);
      return answer(mb.append(sv(folder), bytes, flags, keyword_list(keywords, keyword_count), date), out,
                    [](auto& b, auto& a) {
                      b.uidvalidity = a.uidvalidity;
                      b.uid = a.uid;
                    });
    });
  }
  static postern_status_t transfer(bool move, postern_mailbox_t* m, postern_str_t from, const uint32_t* uids,
                                   size_t uid_count, postern_str_t to, postern_mresult_t** out) {
    if (out == nullptr || (uids == nullptr && uid_count != 0)) return mail_fail(POSTERN_ERR_INVALID, "invalid argument");
    return with_box(m, out, [&](FakeMailbox& mb) {
      std::vector<uint32_t> list(uids, uids + uid_count);
      auto r = move ? mb.move(sv(from), list, sv(to)) : mb.copy(sv(from), list, sv(to));
      return answer(std::move(r), out, [](auto& b, auto& c) {
        b.uidvalidity = c.uidvalidity;
        b.uid_pairs = std::move(c.uids);
      });
    });
  }
  static postern_status_t mbox_copy(postern_mailbox_t* m, postern_str_t from, const uint32_t* uids, size_t n,
                                    postern_str_t to, postern_mresult_t** out) {
    return transfer(false, m, from, uids, n, to, out);
  }
  static postern_status_t mbox_move(postern_mailbox_t* m, postern_str_t from, const uint32_t* uids, size_t n,
                                    postern_str_t to, postern_mresult_t** out) {
    return transfer(true, m, from, uids, n, to, out);
  }
  static postern_status_t mbox_usage(postern_mailbox_t* m, uint64_t* used, uint64_t* quota) {
    if (used == nullptr || quota == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    return with_box(m, nullptr, [&](FakeMailbox& mb) -> postern_status_t {
      auto r = mb.usage();
      if (!r) return mail_fail(r.error());
      *used = r->first;
      *quota = r->second;
      return POSTERN_OK;
    });
  }
  static postern_status_t mbox_open_folder(postern_mailbox_t* m, postern_str_t name, postern_folder_view_t** view,
                                           postern_mresult_t** out) {
    if (view == nullptr || out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    *view = nullptr;
    return with_box(m, out, [&](FakeMailbox& mb) -> postern_status_t {
      auto r = mb.open_folder(sv(name));
      if (!r) return mail_fail(r.error());
      if (!r->first) return mail_fail(POSTERN_ERR_FAILED, "the fake mailbox returned no view");
      mail_detail::ResultBuilder b;
      b.folders.push_back(r->second.folder);
      b.messages = std::move(r->second.messages);
      b.uidvalidity = r->second.uidvalidity;
      b.uidnext = r->second.uidnext;
      b.highest_modseq = r->second.highest_modseq;
      auto handle = std::make_unique<ViewHandle>();
      handle->view = std::move(r->first);
      if (auto st = emit(b, out); st != POSTERN_OK) return st;
      *view = reinterpret_cast<postern_folder_view_t*>(handle.release());
      return POSTERN_OK;
    });
  }
  static postern_status_t view_refresh(postern_folder_view_t* v, postern_mresult_t** out) {
    if (out == nullptr) return mail_fail(POSTERN_ERR_INVALID, "invalid out argument");
    *out = nullptr;
    if (v == nullptr || !view_of(v)->view) return mail_fail(POSTERN_ERR_INVALID, "invalid folder view handle");
    return mail_call([&]() -> postern_status_t {
      std::lock_guard lock(view_of(v)->mu);
      return answer(view_of(v)->view->refresh(), out, [](auto& b, auto& u) {
        b.uids = std::move(u.expunged);
        b.messages = std::move(u.added);
        b.changed = std::move(u.changed);
        b.uidvalidity = u.uidvalidity;
        b.uidnext = u.uidnext;
        b.highest_modseq = u.highest_modseq;
        if (u.gone) b.flags |= POSTERN_MRESULT_GONE;
      });
    });
  }
  static void view_release(postern_folder_view_t* v) { delete view_of(v); }

  // --- the message
  static postern_bytes_t message_raw(const postern_message_t* m) {
    const std::string& raw = msg_of(m)->raw();
    return {reinterpret_cast<const uint8_t*>(raw.data()), raw.size()};
  }
  static size_t message_header_count(const postern_message_t* m) { return msg_of(m)->headers().size(); }
  static postern_status_t message_header_at(const postern_message_t* m, size_t i, postern_str_t* name,
                                            postern_str_t* value) {
    const auto& hs = msg_of(m)->headers();
    if (i >= hs.size()) return POSTERN_ERR_NOT_FOUND;
    if (name != nullptr) *name = str(hs[i].name);
    if (value != nullptr) *value = str(hs[i].value);
    return POSTERN_OK;
  }
  static postern_status_t message_header_find(const postern_message_t* m, postern_str_t name, size_t nth,
                                              postern_str_t* value) {
    if (m == nullptr || value == nullptr) return POSTERN_ERR_INVALID;
    const FakeMessage::Header* h = msg_of(m)->find(sv(name), nth);
    if (h == nullptr) return POSTERN_ERR_NOT_FOUND;
    *value = str(h->value);
    return POSTERN_OK;
  }
  static size_t message_part_count(const postern_message_t*) { return 1; }
  static postern_status_t message_part_at(const postern_message_t* m, size_t i, postern_mime_part_t* out) {
    if (m == nullptr || out == nullptr || out->struct_size < sizeof(postern_mime_part_t)) return POSTERN_ERR_INVALID;
    if (i != 0) return POSTERN_ERR_NOT_FOUND;
    const FakeMessage& msg = *msg_of(m);
    out->parent = -1;
    out->depth = 0;
    out->content_type = str(msg.content_type());
    out->charset = str(msg.charset());
    out->filename = str(msg.filename());
    out->disposition = str(msg.disposition());
    out->transfer_encoding = str(msg.transfer_encoding());
    out->section = str({});
    out->raw_offset = 0;
    out->raw_length = msg.raw().size();
    return POSTERN_OK;
  }
  static postern_status_t message_part_body(const postern_message_t* m, size_t i, postern_bytes_t* out) {
    if (m == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
    if (i != 0) return POSTERN_ERR_NOT_FOUND;
    const std::string& b = msg_of(m)->decoded_body();
    *out = {reinterpret_cast<const uint8_t*>(b.data()), b.size()};
    return POSTERN_OK;
  }

  static const postern_host_api_v1_t* table() {
    static const postern_host_api_v1_t t = {
        sizeof(postern_host_api_v1_t),
        POSTERN_ABI_VERSION_MAJOR,
        POSTERN_ABI_VERSION_MINOR,
        &subscribe,
        &config_root,
        &config_name,
        &config_attr,
        &config_text,
        &config_child,
        &config_next,
        &config_line,
        &state_dir,
        &now_ms,
        &log,
        &post_work,
        &timer_start,
        &timer_cancel,
        &dns_query,
        &event_get,
        &event_rcpt_count,
        &event_rcpt_at,
        &event_message,
        &event_add_symbol,
        &event_score,
        &event_header_add,
        &event_header_change,
        &event_header_remove,
        &event_rcpt_add,
        &event_rcpt_remove,
        &event_defer,
        &pending_retain,
        &pending_release,
        &pending_add_symbol,
        &pending_complete,
        &message_raw,
        &message_header_count,
        &message_header_at,
        &message_header_find,
        &message_part_count,
        &message_part_at,
        &message_part_body,
        &cron_add,
        &cron_cancel,
        &event_tag_set,
        &event_tag_get,
        &service_register,
        &stream_retain,
        &stream_release,
        &stream_write,
        &stream_queued,
        &stream_want_drain,
        &stream_pause,
        &stream_starttls,
        &stream_close,
        &stream_set_idle_timeout,
        &stream_post,
        &stream_get,
        &last_error,
        &dir_authenticate,
        &dir_account,
        &mbox_open,
        &mbox_release,
        &mresult_free,
        &mbox_list_folders,
        &mbox_folder_status,
        &mbox_create_folder,
        &mbox_delete_folder,
        &mbox_rename_folder,
        &mbox_subscribe,
        &mbox_claim_recent,
        &mbox_changes_since,
        &mbox_read_message,
        &mbox_store_flags,
        &mbox_expunge,
        &mbox_append,
        &mbox_copy,
        &mbox_move,
        &mbox_usage,
        &mbox_open_folder,
        &view_refresh,
        &view_release,
        &command_register,
        &command_complete,
        // ABI 1.3
        &pending_header_add,
        &pending_header_change,
        &pending_header_remove,
        &pending_rcpt_add,
        &pending_rcpt_remove,
        &mbox_events_subscribe,
        &mbox_events_unsubscribe,
        &stream_connect,
        &stream_connect_cancel,
        &inject,
        &event_mail_from_set,
        &event_body_replace,
        &pending_mail_from_set,
        &pending_body_replace,
    };
    return &t;
  }
};

}  // namespace detail

/** The manual clock. Advancing it fires the timers and DNS answers that become due. */
class ManualClock {
 public:
  using time_point = std::chrono::system_clock::time_point;
  explicit ManualClock(detail::Core& core) : core_(core) {}

  time_point now() const { return time_point(std::chrono::milliseconds(core_.now_ms.load())); }
  int64_t now_ms() const { return core_.now_ms.load(); }

  /** Moves forward by `d`, firing due events in time order. @return callbacks run. */
  template <class Rep, class Period>
  size_t advance(std::chrono::duration<Rep, Period> d) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return detail::advance_to(core_, core_.now_ms.load() + static_cast<int64_t>(ms));
  }
  /** Sets the time; moving forward fires due events, moving back fires nothing. */
  size_t set(time_point t) {
    const int64_t target = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    if (target <= core_.now_ms.load()) {
      core_.now_ms.store(target);
      return 0;
    }
    return detail::advance_to(core_, target);
  }

 private:
  detail::Core& core_;
};

/** Canned DNS answers. Names are matched case-insensitively, without a trailing dot. */
class FakeDns {
 public:
  explicit FakeDns(detail::Core& core) : core_(core) {}

  /** Answers queries for (name, type) with `answer` (its name and type are set from the query). */
  FakeDns& set(std::string_view name, postern_dns_type_t type, DnsAnswer answer) {
    std::lock_guard lock(core_.mu);
    core_.dns[{detail::lower_dns_name(name), static_cast<int>(type)}] = detail::DnsEntry{false, std::move(answer)};
    return *this;
  }
  /** Answers OK with one record per `data` string (NODATA when empty). */
  FakeDns& set_records(std::string_view name, postern_dns_type_t type, std::vector<std::string> data,
                       uint32_t ttl = 300) {
    DnsAnswer a;
    a.status = data.empty() ? POSTERN_DNS_NODATA : POSTERN_DNS_OK;
    a.min_ttl = ttl;
    for (auto& d : data) a.records.push_back(DnsRecord{type, ttl, std::move(d)});
    return set(name, type, std::move(a));
  }
  /** Queries for (name, type) time out: TIMEOUT once the query's timeout passes on the manual clock. */
  FakeDns& set_timeout(std::string_view name, postern_dns_type_t type) {
    std::lock_guard lock(core_.mu);
    core_.dns[{detail::lower_dns_name(name), static_cast<int>(type)}] = detail::DnsEntry{true, {}};
    return *this;
  }
  FakeDns& clear() {
    std::lock_guard lock(core_.mu);
    core_.dns.clear();
    return *this;
  }
  /** Timeout used when a query passes 0 (5 s). */
  FakeDns& set_default_timeout(std::chrono::milliseconds t) {
    std::lock_guard lock(core_.mu);
    core_.dns_default_timeout_ms = static_cast<uint32_t>(t.count());
    return *this;
  }
  /** Delay of a non-timeout answer on the manual clock (0: delivered by the next run_pending_work()). */
  FakeDns& set_latency(std::chrono::milliseconds t) {
    std::lock_guard lock(core_.mu);
    core_.dns_latency_ms = static_cast<uint32_t>(t.count());
    return *this;
  }
  /** Every query made so far, as (lower-case name, type). */
  std::vector<std::pair<std::string, postern_dns_type_t>> queries() const {
    std::lock_guard lock(core_.mu);
    return core_.dns_queries;
  }

 private:
  detail::Core& core_;
};

/**
 * A plugin instance loaded into a FakeHost (or the reason it did not load).
 * Move-only; unloads (on_destroy) when destroyed. `*loaded` and `loaded->`
 * give the handle itself, so `host.run(*plugin, ev)` reads like the STYLE.md
 * snippet.
 */
class Loaded {
 public:
  Loaded() = default;
  Loaded(Loaded&& o) noexcept
      : core_(std::move(o.core_)), slot_(std::exchange(o.slot_, nullptr)), error_(std::move(o.error_)) {}
  Loaded& operator=(Loaded&& o) noexcept {
    if (this != &o) {
      unload();
      core_ = std::move(o.core_);
      slot_ = std::exchange(o.slot_, nullptr);
      error_ = std::move(o.error_);
    }
    return *this;
  }
  Loaded(const Loaded&) = delete;
  Loaded& operator=(const Loaded&) = delete;
  ~Loaded() { unload(); }

  /** on_init succeeded and the instance has not been unloaded. */
  bool ok() const { return slot_ != nullptr && slot_->alive; }
  explicit operator bool() const { return ok(); }
  /** Why loading failed (the plugin's one-line reason), empty on success. */
  const std::string& error() const { return error_; }

  Loaded& operator*() { return *this; }
  Loaded* operator->() { return this; }

  std::string_view name() const { return slot_ != nullptr ? std::string_view(slot_->name) : std::string_view{}; }
  std::filesystem::path state_dir() const { return slot_ != nullptr ? slot_->state_dir : std::filesystem::path{}; }
  bool subscribed(Stage s) const { return ok() && slot_->subscribed[static_cast<size_t>(s)]; }

  /**
   * The hook timeout and on-failure of the manifest (`timeout="5s" on-failure="tempfail"`).
   * Default: no timeout (a pending hook waits for its completion), on-failure continue.
   */
  Loaded& set_timeout(std::chrono::milliseconds timeout, OnFailure on_failure = OnFailure::Continue) {
    if (slot_ != nullptr) {
      slot_->timeout = timeout;
      slot_->on_failure = on_failure;
    }
    return *this;
  }
  Loaded& set_on_failure(OnFailure on_failure) {
    if (slot_ != nullptr) slot_->on_failure = on_failure;
    return *this;
  }

  /**
   * The plugin object of an SDK plugin loaded with FakeHost::load<P>().
   * Terminates when P is not the class it was loaded as.
   */
  template <class P>
  P& plugin() {
    if (!ok() || slot_->table != ::postern::sdk::detail::plugin_table<P>()) std::terminate();
    return static_cast<::postern::sdk::detail::Instance<P>*>(slot_->instance)->plugin;
  }

  /** Calls on_destroy now (after running its queued work; see fake_host.hpp). */
  void unload() {
    if (slot_ != nullptr && core_) detail::unload_slot(*core_, *slot_);
    slot_ = nullptr;
  }

 private:
  friend class FakeHost;
  std::shared_ptr<detail::Core> core_;
  detail::Slot* slot_ = nullptr;
  std::string error_;
};

/** How FakeHost::connect() sets up a client connection (ABI 1.2 streams). */
struct StreamOptions {
  std::string peer_ip = "192.0.2.10";
  uint16_t peer_port = 49152;
  std::string local_ip = "127.0.0.1";
  uint16_t local_port = 0;      ///< 0: 143/993 (imap), 110/995 (pop3), else 0
  std::string listener;         ///< empty: the protocol
  std::string tls_mode = "starttls";  ///< "none", "starttls" or "implicit" (TLS up before on_open)
  bool starttls_available = true;     ///< a certificate is configured (else stream_starttls is refused)
  bool cleartext_auth = false;        ///< POSTERN_STREAM_CLEARTEXT_AUTH
  std::string server_name = "mx.fake.test";
  /**
   * true: a handshake the plugin starts with stream_starttls succeeds as soon
   * as the plugin's current callback returns; false: the test decides with
   * FakeStream::complete_tls() / fail_tls().
   */
  bool auto_tls = true;
  /**
   * false: functions the plugin posts with stream_post run as soon as the
   * current callback returns (and on FakeHost::run_pending_work()); true: only
   * when the test calls FakeStream::run_posted().
   */
  bool manual_posts = false;
  /** true: written octets stay queued (stream_queued) until flush_output(), like a slow client. */
  bool hold_output = false;
};

/**
 * The test's end of one client connection to a service plugin: feed input,
 * read what the plugin wrote, drive STARTTLS and closing. Everything runs on
 * the test's thread, one plugin callback at a time, as on a strand. Move-only;
 * destroying an open FakeStream closes it as the peer would (on_close(PEER)).
 */
class FakeStream {
 public:
  FakeStream() = default;
  FakeStream(FakeStream&& o) noexcept
      : core_(std::move(o.core_)), s_(std::exchange(o.s_, nullptr)), error_(std::move(o.error_)) {}
  FakeStream& operator=(FakeStream&& o) noexcept {
    if (this != &o) {
      reset();
      core_ = std::move(o.core_);
      s_ = std::exchange(o.s_, nullptr);
      error_ = std::move(o.error_);
    }
    return *this;
  }
  FakeStream(const FakeStream&) = delete;
  FakeStream& operator=(const FakeStream&) = delete;
  ~FakeStream() { reset(); }

  /** The plugin accepted the connection (on_open returned a connection). */
  bool opened() const { return s_ != nullptr && s_->opened; }
  /** Why connect() failed (no service for the protocol), else empty. */
  const std::string& error() const { return error_; }
  /** The postern_stream_t* the plugin sees. */
  postern_stream_t* handle() const { return s_ != nullptr ? detail::handle_of(s_) : nullptr; }

  /**
   * Client input: delivered with on_data now (unless paused, closed, or a
   * STARTTLS handshake is pending: then it waits), then whatever it caused
   * runs. @return false when the stream is closed.
   */
  bool send(std::string_view data) {
    if (s_ == nullptr) return false;
    {
      std::lock_guard lock(s_->mu);
      if (s_->closed) return false;
      s_->input.append(data);
    }
    detail::pump(*s_);
    return true;
  }
  /** Everything the client received so far. */
  std::string output() const { return locked([](auto& s) { return s.output; }); }
  /** What the client received since the last take_output(). */
  std::string take_output() {
    return locked([](auto& s) {
      std::string out = s.output.substr(s.taken);
      s.taken = s.output.size();
      return out;
    });
  }
  /** Octets received after TLS started (empty without STARTTLS or implicit TLS). */
  std::string output_after_tls() const {
    return locked([](auto& s) {
      if (s.tls_active && s.tls_at == std::string::npos) return s.output;  // implicit TLS
      return s.tls_at == std::string::npos ? std::string() : s.output.substr(s.tls_at);
    });
  }
  /** Number of stream_write calls so far. */
  size_t writes() const { return locked([](auto& s) { return s.writes; }); }

  bool tls_active() const { return locked([](auto& s) { return s.tls_active; }); }
  /** The plugin called stream_starttls and the handshake has not finished (auto_tls = false). */
  bool tls_pending() const { return locked([](auto& s) { return s.tls_pending; }); }
  /** Finishes a pending handshake: TLS_PROTOCOL becomes "TLSv1.3", undelivered input is dropped, on_tls runs. */
  void complete_tls() {
    if (s_ == nullptr) return;
    detail::finish_tls(*s_, true);
    detail::pump(*s_);
  }
  /** Fails a pending handshake: on_close(TLS_FAILED). */
  void fail_tls() {
    if (s_ == nullptr) return;
    detail::finish_tls(*s_, false);
    detail::pump(*s_);
  }

  bool paused() const { return locked([](auto& s) { return s.paused; }); }
  /** The idle timeout the plugin set (stream_set_idle_timeout; 30 min by default). */
  uint64_t idle_timeout_ms() const { return locked([](auto& s) { return s.idle_timeout_ms; }); }
  /** Functions posted with stream_post and not run yet. */
  size_t posted() const { return locked([](auto& s) { return s.posted.size(); }); }
  /** Runs the posted functions (also in manual mode) and what they cause. @return callbacks run. */
  size_t run_posted() { return s_ != nullptr ? detail::pump(*s_, true) : 0; }
  /** Runs what is due without waiting for input (posted functions unless manual, drains, closes). */
  size_t pump() { return s_ != nullptr ? detail::pump(*s_) : 0; }

  /** Octets written but held back (hold_output). */
  size_t queued() const { return locked([](auto& s) { return s.held.size(); }); }
  /** Sends the held octets to the client; a wanted on_drain follows. */
  void flush_output() {
    if (s_ == nullptr) return;
    {
      std::lock_guard lock(s_->mu);
      s_->output += s_->held;
      s_->held.clear();
    }
    detail::pump(*s_);
  }
  void set_hold_output(bool hold) {
    if (s_ == nullptr) return;
    {
      std::lock_guard lock(s_->mu);
      s_->hold_output = hold;
    }
    if (!hold) flush_output();
  }

  /** on_close ran (or on_open refused the connection). */
  bool closed() const { return s_ == nullptr || locked([](auto& s) { return s.closed; }); }
  /** The plugin asked to close (stream_close) and on_close has not run yet. */
  bool close_requested() const { return locked([](auto& s) { return s.close_requested; }); }
  /** Why it closed (nullopt while open, or when on_open refused it). */
  std::optional<CloseReason> close_reason() const {
    return locked([](auto& s) -> std::optional<CloseReason> {
      if (!s.close_reason) return std::nullopt;
      return static_cast<CloseReason>(*s.close_reason);
    });
  }
  /** The client (or the host) ends the connection: on_close(reason). */
  void close(CloseReason reason = CloseReason::Peer) {
    if (s_ == nullptr) return;
    detail::close_stream(*s_, static_cast<postern_close_reason_t>(reason));
    detail::pump(*s_);
  }
  /** The idle timeout passed: on_close(TIMEOUT). */
  void expire_idle() { close(CloseReason::Timeout); }

  /** A property as the plugin reads it ("" when unset). */
  std::string prop(postern_stream_prop_t p) const {
    return locked([&](auto& s) {
      auto it = s.props.find(p);
      return it == s.props.end() ? std::string() : it->second;
    });
  }

 private:
  friend class FakeHost;
  template <class F>
  auto locked(F f) const -> decltype(f(std::declval<detail::StreamState&>())) {
    static detail::StreamState empty;  // a stream that never opened reads as closed and empty
    if (s_ == nullptr) {
      std::lock_guard lock(empty.mu);
      return f(empty);
    }
    std::lock_guard lock(s_->mu);
    return f(*s_);
  }
  void reset() {
    if (s_ == nullptr) return;
    detail::close_stream(*s_, POSTERN_CLOSE_PEER);
    detail::pump(*s_, true);
    {
      std::lock_guard lock(core_->mu);
      std::erase(core_->streams, s_);
    }
    detail::stream_unref(std::exchange(s_, nullptr));
  }

  std::shared_ptr<detail::Core> core_;
  detail::StreamState* s_ = nullptr;
  std::string error_;
};

/** See the file comment. Not copyable; one per test is the usual use. */
/**
 * What a plugin answered to FakeHost::command(): exit(), json() and text()
 * once answered() (a plugin that completes later: after run_pending_work()).
 */
class FakeCommandResult {
 public:
  bool answered() const {
    std::lock_guard lock(outcome_->mu);
    return outcome_->answered;
  }
  CommandExit exit() const {
    std::lock_guard lock(outcome_->mu);
    return static_cast<CommandExit>(outcome_->exit);
  }
  /** The JSON result (exit Ok), else empty. */
  std::string json() const {
    std::lock_guard lock(outcome_->mu);
    return outcome_->json;
  }
  /** The text rendering (exit Ok) or the error message. */
  std::string text() const {
    std::lock_guard lock(outcome_->mu);
    return outcome_->text;
  }

 private:
  friend class FakeHost;
  std::shared_ptr<detail::CommandOutcome> outcome_ = std::make_shared<detail::CommandOutcome>();
};

class FakeHost {
 public:
  FakeHost() : core_(std::make_shared<detail::Core>()), clock_(*core_), dns_(*core_) {
    core_->self = core_;
    std::random_device rd;
    const auto base = std::filesystem::temp_directory_path();
    for (int attempt = 0;; ++attempt) {
      auto dir = base / ("postern-fakehost-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
      std::error_code ec;
      if (std::filesystem::create_directory(dir, ec)) {
        core_->root = dir;
        break;
      }
      if (attempt > 100) throw std::filesystem::filesystem_error("FakeHost: cannot create a state dir", dir, ec);
    }
  }
  ~FakeHost() {
    std::vector<detail::Slot*> live;
    {
      std::lock_guard lock(core_->mu);
      for (auto& s : core_->slots)
        if (s->alive) live.push_back(s.get());
    }
    for (detail::Slot* s : live) detail::unload_slot(*core_, *s);
    std::error_code ec;
    std::filesystem::remove_all(core_->root, ec);
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  ManualClock& clock() { return clock_; }
  FakeDns& dns() { return dns_; }
  /** The temporary directory; each plugin's state dir is `<root>/<name>`. Removed by ~FakeHost. */
  const std::filesystem::path& root_dir() const { return core_->root; }
  /** The host API table FakeHost passes to plugins. */
  static const postern_host_api_v1_t* api() { return detail::Api::table(); }

  void set_work_mode(WorkMode m) {
    std::lock_guard lock(core_->mu);
    core_->work_mode = m;
  }

  /** Restricts subscribe() to these stages, as a descriptor's <hooks> does, for later loads. */
  void set_declared_stages(std::initializer_list<Stage> stages) { set_declared_stages(std::vector<Stage>(stages)); }
  void set_declared_stages(const std::vector<Stage>& stages) {
    std::array<bool, kStageCount> d{};
    for (Stage s : stages) d[static_cast<size_t>(s)] = true;
    std::lock_guard lock(core_->mu);
    core_->declared = d;
  }
  /** Back to the default: any stage may be subscribed. */
  void allow_all_stages() {
    std::lock_guard lock(core_->mu);
    core_->declared.reset();
  }
  /**
   * Declares the stages a plugin descriptor (`<name>.plugin.xml`) lists.
   * @return empty on success, else why the descriptor was unusable.
   */
  std::string declare_from_descriptor(const std::filesystem::path& descriptor) {
    pugi::xml_document doc;
    if (auto r = doc.load_file(descriptor.c_str()); !r) return descriptor.string() + ": " + r.description();
    pugi::xml_node root = doc.child("plugin-descriptor");
    if (!root) return descriptor.string() + ": no <plugin-descriptor>";
    std::vector<Stage> stages;
    for (pugi::xml_node h : root.child("hooks").children("hook")) {
      auto s = stage_from_name(h.attribute("stage").value());
      if (!s) return descriptor.string() + ": unknown stage '" + h.attribute("stage").value() + "'";
      stages.push_back(*s);
    }
    set_declared_stages(stages);
    return {};
  }

  /** Stage names as descriptors spell them. */
  static std::optional<Stage> stage_from_name(std::string_view n) {
    static constexpr std::array<std::string_view, kStageCount> kNames = {
        "connect",    "helo",     "auth",       "mail_from", "rcpt_to",   "data_start", "headers", "data_end",
        "queued",     "delivery", "disconnect", "delivered", "deferred",  "bounced",    "stored"};
    for (size_t i = 0; i < kNames.size(); ++i)
      if (kNames[i] == n) return static_cast<Stage>(i);
    return std::nullopt;
  }

  /**
   * Loads an SDK plugin class through its static table and calls on_init with
   * the root element of `config_xml` as config_root.
   * @param name the descriptor's name; loading fails when P::kName differs, as in posternd.
   */
  template <class P>
  Loaded load(std::string_view config_xml, std::string name = P::kName) {
    return load_table(::postern::sdk::detail::plugin_table<P>(), config_xml, std::move(name));
  }

  /** Loads a raw C plugin table (what postern_plugin_entry_v1 returned). Empty name = the table's. */
  Loaded load_table(const postern_plugin_v1_t* table, std::string_view config_xml, std::string name = {}) {
    Loaded out;
    out.core_ = core_;
    if (table == nullptr) {
      out.error_ = "the entry point returned no plugin table";
      return out;
    }
    if (table->struct_size < sizeof(postern_plugin_v1_t) || table->on_init == nullptr || table->on_hook == nullptr ||
        table->on_destroy == nullptr) {
      out.error_ = "the plugin table is too small or incomplete";
      return out;
    }
    if (table->abi_major != POSTERN_ABI_VERSION_MAJOR) {
      out.error_ = "ABI major " + std::to_string(table->abi_major) + " differs from the host's " +
                   std::to_string(POSTERN_ABI_VERSION_MAJOR);
      return out;
    }
    const std::string table_name = table->name != nullptr ? table->name : "";
    if (name.empty()) name = table_name;
    if (table_name != name) {
      out.error_ = "the plugin calls itself '" + table_name + "' but the descriptor says '" + name + "'";
      return out;
    }

    auto slot = std::make_unique<detail::Slot>();
    detail::Slot* s = slot.get();
    s->core = core_.get();
    s->table = table;
    s->name = name;
    {
      std::lock_guard lock(core_->mu);
      core_->slots.push_back(std::move(slot));
    }
    out.slot_ = s;

    const std::string xml(config_xml);
    pugi::xml_parse_result parsed = s->doc.load_buffer(xml.data(), xml.size(), pugi::parse_default);
    if (!parsed) {
      out.error_ = "config XML: " + std::string(parsed.description()) + " at offset " + std::to_string(parsed.offset);
      return out;
    }
    index_config(*s, xml);

    s->state_dir = core_->root / name;
    std::error_code ec;
    std::filesystem::create_directories(s->state_dir, ec);
    s->state_dir_str = s->state_dir.string();

    char err[512] = {0};
    void* instance = nullptr;
    s->initialising = true;
    const postern_status_t st = table->on_init(detail::handle_of(s), api(), &instance, err, sizeof err);
    s->initialising = false;
    if (st != POSTERN_OK) {
      out.error_ = err[0] != '\0' ? std::string(err) : "on_init failed with status " + std::to_string(st);
      return out;
    }
    s->instance = instance;
    s->alive = true;
    return out;
  }

  // --- events -------------------------------------------------------------

  /** A connect event from `ip` (session id, ports, listener "smtp", server name "mx.fake.test"). */
  FakeEvent make_connect(std::string_view ip) {
    FakeEvent ev(Stage::Connect);
    uint64_t n;
    {
      std::lock_guard lock(core_->mu);
      n = ++core_->sessions;
    }
    ev.set(POSTERN_PROP_SESSION_ID, "fake-session-" + std::to_string(n))
        .set(POSTERN_PROP_PEER_IP, std::string(ip))
        .set(POSTERN_PROP_PEER_PORT, "49152")
        .set(POSTERN_PROP_LOCAL_IP, ip.find(':') != std::string_view::npos ? "::1" : "127.0.0.1")
        .set(POSTERN_PROP_LOCAL_PORT, "25")
        .set(POSTERN_PROP_LISTENER, "smtp")
        .set(POSTERN_PROP_SERVER_NAME, "mx.fake.test");
    return ev;
  }
  FakeEvent make_helo(std::string_view ip, std::string_view helo) {
    FakeEvent ev = make_connect(ip);
    ev.set_stage(Stage::Helo).set(POSTERN_PROP_HELO, std::string(helo)).set(POSTERN_PROP_COMMAND, "EHLO " + std::string(helo));
    return ev;
  }
  /** MAIL FROM; `from` without <> (empty = the null reverse-path). HELO is "client.fake.test". */
  FakeEvent make_mail(std::string_view ip, std::string_view from) {
    FakeEvent ev = make_helo(ip, "client.fake.test");
    ev.set_stage(Stage::MailFrom)
        .set(POSTERN_PROP_QUEUE_ID, "FAKEQ" + ev.get(POSTERN_PROP_SESSION_ID)->substr(13))
        .set(POSTERN_PROP_MAIL_FROM, std::string(from))
        .set(POSTERN_PROP_COMMAND, "MAIL FROM:<" + std::string(from) + ">");
    return ev;
  }
  /** RCPT TO `rcpt` (POSTERN_PROP_RCPT); no recipient accepted yet. */
  FakeEvent make_rcpt(std::string_view ip, std::string_view from, std::string_view rcpt) {
    FakeEvent ev = make_mail(ip, from);
    ev.set_stage(Stage::RcptTo)
        .set(POSTERN_PROP_RCPT, std::string(rcpt))
        .set(POSTERN_PROP_COMMAND, "RCPT TO:<" + std::string(rcpt) + ">");
    return ev;
  }
  /** data_end with accepted `rcpts` and the message (LF is turned into CRLF). */
  FakeEvent make_data(std::string_view ip, std::string_view from, std::vector<std::string> rcpts,
                      std::string_view raw_message) {
    FakeEvent ev = make_mail(ip, from);
    ev.set_stage(Stage::DataEnd).set(POSTERN_PROP_COMMAND, "DATA");
    ev.recipients() = std::move(rcpts);
    ev.set_message(raw_message);
    return ev;
  }

  // --- running hooks --------------------------------------------------------

  /**
   * Calls the plugin's on_hook for event.stage() if it subscribed (else the
   * result has called() false and verdict Continue).
   */
  FakeResult run(Loaded& plugin, const FakeEvent& event) {
    auto state = std::make_shared<detail::RunState>();
    state->stage = event.stage();
    state->base_score = event.score();
    state->tags = event.tags();
    if (!plugin.ok()) {
      state->failed = true;
      state->completed = true;
      state->text = plugin.error().empty() ? "plugin not loaded" : plugin.error();
      return FakeResult(state);
    }
    detail::Slot& s = *plugin.slot_;
    state->on_failure = s.on_failure;
    if (!s.subscribed[static_cast<size_t>(event.stage())]) {
      state->completed = true;
      return FakeResult(state);
    }
    state->called = true;

    auto ctx = std::make_shared<detail::EventCtx>();
    ctx->slot = &s;
    ctx->event = event;
    ctx->run = state.get();
    state->event_ctx = ctx;
    if (event.message_raw()) ctx->message.emplace(*event.message_raw());
    ctx->active = true;

    postern_hook_result_t result{};
    result.struct_size = sizeof result;
    // As posternd's loader: on_hook through its integer mirror, so a verdict
    // outside postern_verdict_t is never loaded into the enum type.
    using OnHookAsInteger = uint32_t (*)(void*, uint32_t, postern_event_t*, postern_hook_result_t*);
    const auto on_hook = reinterpret_cast<OnHookAsInteger>(reinterpret_cast<void (*)()>(s.table->on_hook));
    const uint32_t v = on_hook(s.instance, static_cast<uint32_t>(event.stage()),
                               reinterpret_cast<postern_event_t*>(ctx.get()), &result);
    ctx->active = false;

    if (v == POSTERN_VERDICT_PENDING) {
      if (!ctx->has_pending) {
        detail::complete_run(*core_, *state, false, [](detail::RunState& r) {
          r.failed = true;
          r.text = "on_hook returned PENDING without event_defer()";
        });
      } else {
        {
          std::lock_guard lock(state->mu);
          state->deferred = true;
        }
        std::lock_guard lock(core_->mu);
        core_->deferred.push_back(state);
        if (s.timeout.count() > 0) {
          detail::DueEvent ev;
          ev.kind = detail::DueEvent::Kind::HookTimeout;
          ev.due_ms = core_->now_ms.load() + s.timeout.count();
          ev.slot = &s;
          ev.run = state;
          core_->events.emplace(core_->next_seq++, std::move(ev));
        }
      }
    } else {
      const bool valid = v < POSTERN_VERDICT_PENDING;
      if (!detail::complete_run(*core_, *state, false, [&](detail::RunState& r) {
            detail::copy_result(r, result);
            r.verdict = valid ? static_cast<Verdict>(v) : Verdict::Continue;
            if (!valid) {
              r.failed = true;
              r.text = "on_hook returned an unknown verdict " + std::to_string(v);
            }
          })) {
        // It deferred, completed from inside the hook and then answered directly: the answer counts twice.
        core_->late.fetch_add(1);
      }
      check_reply(s, *state);
    }
    // The RunState keeps the (now inactive) context: a plugin touching the event later gets an error, not a crash.
    return FakeResult(state);
  }

  /** Runs queued work and every DNS answer / timer due at the current time. @return callbacks run. */
  /**
   * Runs queued work, every DNS answer / timer due at the current time, and
   * what is due on open streams (posted functions, drains, closes).
   * @return callbacks run.
   */
  size_t run_pending_work() {
    size_t n = 0;
    for (;;) {
      const size_t k = detail::run_ready(*core_) + detail::pump_all(*core_) + answer_cancelled_connects();
      n += k;
      if (k == 0) return n;
    }
  }

  // --- admin commands (ABI 1.3) ---------------------------------------------

  /** The registered commands, "area verb", in name order. */
  std::vector<std::string> commands() const {
    std::lock_guard lock(core_->mu);
    std::vector<std::string> out;
    for (const auto& [name, reg] : core_->commands) out.push_back(name);
    return out;
  }

  /**
   * Calls the command `name` ("greylist allow") with command-line `words`,
   * parsed and validated as posternd does. An unknown command or bad
   * arguments answer Usage without calling the plugin.
   */
  FakeCommandResult command(std::string_view name, const std::vector<std::string>& words = {}) {
    FakeCommandResult result;
    auto usage = [&](std::string why) {
      result.outcome_->answered = true;
      result.outcome_->exit = POSTERN_COMMAND_USAGE;
      result.outcome_->text = std::move(why);
      return result;
    };
    detail::CommandReg reg;
    {
      std::lock_guard lock(core_->mu);
      auto it = core_->commands.find(std::string(name));
      if (it == core_->commands.end()) return usage("unknown command '" + std::string(name) + "'");
      reg = it->second;
    }
    struct Value {
      bool present = false;
      int64_t integer = 0;
      std::string text;
      std::vector<std::string> items;
    };
    std::vector<Value> values(reg.args.size());
    auto option = [](const std::string& n) {
      std::string o = "--";
      for (char c : n) o += c == '_' ? '-' : c;
      return o;
    };
    auto set = [&](size_t i, const std::string& v) -> bool {
      Value& val = values[i];
      switch (reg.args[i].type) {
        case POSTERN_ARG_INTEGER: {
          if (v.empty() || v.find_first_not_of("-0123456789") != std::string::npos) return false;
          val.integer = std::stoll(v);
          break;
        }
        case POSTERN_ARG_BOOLEAN: val.integer = 1; break;
        case POSTERN_ARG_STRING_LIST: val.items.push_back(v); break;
        default: val.text = v;
      }
      val.present = true;
      return true;
    };
    size_t positional = 0;
    for (size_t w = 0; w < words.size(); ++w) {
      const std::string& word = words[w];
      if (word.size() > 2 && word.starts_with("--")) {
        const size_t eq = word.find('=');
        const std::string key = word.substr(0, eq);
        size_t i = 0;
        while (i < reg.args.size() && ((reg.args[i].flags & POSTERN_ARG_POSITIONAL) != 0 || option(reg.args[i].name) != key)) ++i;
        if (i == reg.args.size()) return usage("unknown option " + key);
        if (reg.args[i].type == POSTERN_ARG_BOOLEAN) {
          if (eq != std::string::npos) return usage(key + " takes no value");
          set(i, "");
          continue;
        }
        std::string v;
        if (eq != std::string::npos) v = word.substr(eq + 1);
        else if (w + 1 < words.size()) v = words[++w];
        else return usage(key + " needs a value");
        if (!set(i, v)) return usage(key + " " + v + ": expected a number");
        continue;
      }
      size_t i = 0, seen = 0;
      for (; i < reg.args.size(); ++i) {
        if ((reg.args[i].flags & POSTERN_ARG_POSITIONAL) == 0) continue;
        if (seen++ == positional) break;
      }
      if (i == reg.args.size()) return usage("unexpected argument '" + word + "'");
      if (!set(i, word)) return usage(word + ": expected a number");
      if (reg.args[i].type != POSTERN_ARG_STRING_LIST) ++positional;
    }
    for (size_t i = 0; i < reg.args.size(); ++i) {
      if ((reg.args[i].flags & POSTERN_ARG_REQUIRED) != 0 && !values[i].present) return usage("missing " + reg.args[i].name);
    }
    std::vector<std::vector<postern_str_t>> lists(values.size());
    std::vector<postern_command_value_t> abi_values;
    for (size_t i = 0; i < values.size(); ++i) {
      postern_command_value_t v{};
      v.struct_size = sizeof(postern_command_value_t);
      v.name = detail::str(reg.args[i].name);
      v.type = reg.args[i].type;
      v.present = values[i].present ? 1 : 0;
      v.integer = values[i].integer;
      v.text = detail::str(values[i].text);
      for (const std::string& item : values[i].items) lists[i].push_back(detail::str(item));
      v.items = lists[i].data();
      v.item_count = lists[i].size();
      abi_values.push_back(v);
    }
    auto* handle = new std::shared_ptr<detail::CommandOutcome>(result.outcome_);
    std::vector<const postern_command_value_t*> pointers;
    for (const postern_command_value_t& v : abi_values) pointers.push_back(&v);
    reg.fn(reg.user, pointers.data(), pointers.size(), reinterpret_cast<postern_command_reply_t*>(handle));
    return result;
  }

  // --- services, streams, directory and mailbox store (ABI 1.2) -------------

  /** The protocols registered with service_register, in name order. */
  std::vector<std::string> services() const {
    std::lock_guard lock(core_->mu);
    std::vector<std::string> out;
    for (const auto& [proto, reg] : core_->services) out.push_back(proto);
    return out;
  }
  /** The plugin serving `protocol` (its name), or empty. */
  std::string service_owner(std::string_view protocol) const {
    std::lock_guard lock(core_->mu);
    auto it = core_->services.find(mail_detail::lower(protocol));
    return it == core_->services.end() ? std::string() : it->second.slot->name;
  }

  /**
   * A client connects to the listener of `protocol`: on_open runs (and what
   * it writes is in output()). Without a service for the protocol the stream
   * is not opened and error() says why; when on_open refuses, opened() is
   * false and closed() true.
   */
  FakeStream connect(std::string_view protocol, StreamOptions o = {}) {
    FakeStream out;
    out.core_ = core_;
    const std::string proto = mail_detail::lower(protocol);
    detail::ServiceReg reg;
    uint64_t n;
    {
      std::lock_guard lock(core_->mu);
      auto it = core_->services.find(proto);
      if (it == core_->services.end() || !it->second.slot->alive) {
        out.error_ = "no plugin serves protocol '" + proto + "'";
        return out;
      }
      reg = it->second;
      n = ++core_->stream_seq;
    }
    const bool implicit = o.tls_mode == "implicit";
    uint16_t local_port = o.local_port;
    if (local_port == 0) {
      if (proto == "imap") local_port = implicit ? 993 : 143;
      if (proto == "pop3") local_port = implicit ? 995 : 110;
    }
    auto* s = new detail::StreamState();
    s->core = core_;
    s->slot = reg.slot;
    s->svc = reg.svc;
    s->starttls_available = o.starttls_available && o.tls_mode == "starttls";
    s->auto_tls = o.auto_tls;
    s->manual_posts = o.manual_posts;
    s->hold_output = o.hold_output;
    s->props[POSTERN_STREAM_SESSION_ID] = "fake-stream-" + std::to_string(n);
    s->props[POSTERN_STREAM_PEER_IP] = o.peer_ip;
    s->props[POSTERN_STREAM_PEER_PORT] = std::to_string(o.peer_port);
    s->props[POSTERN_STREAM_LOCAL_IP] = o.local_ip;
    s->props[POSTERN_STREAM_LOCAL_PORT] = std::to_string(local_port);
    s->props[POSTERN_STREAM_LISTENER] = o.listener.empty() ? proto : o.listener;
    s->props[POSTERN_STREAM_PROTOCOL] = proto;
    s->props[POSTERN_STREAM_TLS_MODE] = o.tls_mode;
    s->props[POSTERN_STREAM_SERVER_NAME] = o.server_name;
    s->props[POSTERN_STREAM_CLEARTEXT_AUTH] = o.cleartext_auth ? "1" : "0";
    if (implicit) {
      s->tls_active = true;
      s->props[POSTERN_STREAM_TLS_PROTOCOL] = "TLSv1.3";
      s->props[POSTERN_STREAM_TLS_CIPHER] = "TLS_AES_256_GCM_SHA384";
    }
    out.s_ = s;
    {
      std::lock_guard lock(core_->mu);
      core_->streams.push_back(s);
    }
    void* conn = reg.svc->on_open(reg.user, detail::handle_of(s));
    {
      std::lock_guard lock(s->mu);
      if (conn == nullptr) {
        // postern_abi.h: a refused connection is closed without on_close.
        s->closed = true;
      } else {
        s->conn = conn;
        s->opened = true;
      }
    }
    detail::pump(*s);
    return out;
  }

  /** Answers dir_authenticate (login, password, POSTERN_SERVICE_*). Empty function: UNAVAILABLE again. */
  void set_authenticate(
      std::function<Expected<Account>(std::string_view login, std::string_view password, uint32_t service)> fn) {
    std::lock_guard lock(core_->mu);
    core_->mail.authenticate = std::move(fn);
  }
  /** Answers dir_account. */
  void set_account_lookup(std::function<Expected<Account>(std::string_view address)> fn) {
    std::lock_guard lock(core_->mu);
    core_->mail.account = std::move(fn);
  }
  /** Answers mbox_open; the FakeMailbox answers the other mbox_* and view_* calls. */
  void set_mailbox_opener(std::function<Expected<std::shared_ptr<FakeMailbox>>(std::string_view account)> fn) {
    std::lock_guard lock(core_->mu);
    core_->mail.open = std::move(fn);
  }
  /** Answers every dir_* and mbox_* call from `store` (fake_mail.hpp). */
  void use_mail_store(std::shared_ptr<MemoryMailStore> store) {
    std::lock_guard lock(core_->mu);
    if (!store) {
      core_->mail = {};
      return;
    }
    core_->mail.authenticate = [store](std::string_view l, std::string_view p, uint32_t s) {
      return store->authenticate(l, p, s);
    };
    core_->mail.account = [store](std::string_view a) { return store->account(a); };
    core_->mail.open = [store](std::string_view a) { return store->open(a); };
  }

  // --- outbound connections and injection (ABI 1.3) --------------------------

  /** stream_connect calls not answered yet, oldest first. */
  std::vector<ConnectRequest> connect_requests() const {
    std::lock_guard lock(core_->mu);
    std::vector<ConnectRequest> out;
    for (const auto& c : core_->connects) out.push_back(c->request);
    return out;
  }

  /**
   * Answers the oldest unanswered connect with OK: the plugin's on_connected
   * runs with a stream whose far end is the returned FakeStream (send() is
   * what the peer says; take_output() what the plugin wrote). Without a
   * pending connect, error() says so; when on_connected returns NULL, the
   * stream is closed (closed() true, no on_close).
   */
  FakeStream accept_connect(StreamOptions o = {}) {
    FakeStream out;
    out.core_ = core_;
    std::shared_ptr<detail::ConnectRec> rec;
    uint64_t n;
    {
      std::lock_guard lock(core_->mu);
      if (core_->connects.empty()) {
        out.error_ = "no stream_connect is waiting";
        return out;
      }
      rec = core_->connects.front();
      core_->connects.pop_front();
      n = ++core_->stream_seq;
    }
    const ConnectRequest& r = rec->request;
    auto* s = new detail::StreamState();
    s->core = core_;
    s->slot = rec->slot;
    s->own_svc = rec->table;
    s->svc = &s->own_svc;
    s->starttls_available = !r.tls;
    s->auto_tls = o.auto_tls;
    s->manual_posts = o.manual_posts;
    s->hold_output = o.hold_output;
    s->props[POSTERN_STREAM_SESSION_ID] = "out-" + r.plugin + "-" + std::to_string(n);
    if (r.unix_path.empty()) {
      s->props[POSTERN_STREAM_PEER_IP] = r.host;
      s->props[POSTERN_STREAM_PEER_PORT] = std::to_string(r.port);
      s->props[POSTERN_STREAM_LOCAL_IP] = o.local_ip;
      s->props[POSTERN_STREAM_LOCAL_PORT] = std::to_string(o.local_port != 0 ? o.local_port : 40000 + n % 20000);
    }
    s->props[POSTERN_STREAM_LISTENER] = "outbound";
    s->props[POSTERN_STREAM_PROTOCOL] = r.unix_path.empty() ? "tcp" : "unix";
    s->props[POSTERN_STREAM_TLS_MODE] = r.tls ? "implicit" : "none";
    s->props[POSTERN_STREAM_SERVER_NAME] = o.server_name;
    if (r.tls) {
      s->tls_active = true;
      s->props[POSTERN_STREAM_TLS_PROTOCOL] = "TLSv1.3";
      s->props[POSTERN_STREAM_TLS_CIPHER] = "TLS_AES_256_GCM_SHA384";
    }
    out.s_ = s;
    {
      std::lock_guard lock(core_->mu);
      core_->streams.push_back(s);
    }
    void* conn = rec->cb(rec->user, POSTERN_CONNECT_OK, detail::handle_of(s), detail::str(""));
    {
      std::lock_guard lock(s->mu);
      if (conn == nullptr) {
        s->closed = true;  // postern_abi.h: NULL closes the stream without on_close
      } else {
        s->conn = conn;
        s->opened = true;
      }
    }
    detail::pump(*s);
    return out;
  }

  /**
   * Answers the oldest unanswered connect with a failure (Refused, Timeout,
   * DnsFailed, TlsFailed, Unreachable, Cancelled). @return false when none waits.
   */
  bool fail_connect(ConnectStatus status, std::string why = {}) {
    std::shared_ptr<detail::ConnectRec> rec;
    {
      std::lock_guard lock(core_->mu);
      if (core_->connects.empty()) return false;
      rec = core_->connects.front();
      core_->connects.pop_front();
    }
    if (why.empty()) why = std::string(connect_status_name(status));
    rec->cb(rec->user, static_cast<uint32_t>(status), nullptr, detail::str(why));
    return true;
  }

  /** The messages plugins injected, in order. */
  std::vector<InjectedMessage> injected() const {
    std::lock_guard lock(core_->mu);
    return core_->injected;
  }
  /** Makes every later inject fail with `status` and `text` (POSTERN_OK: succeed again). */
  void set_inject_failure(postern_status_t status, std::string text = "spool unavailable") {
    std::lock_guard lock(core_->mu);
    if (status == POSTERN_OK) {
      core_->inject_failure.reset();
    } else {
      core_->inject_failure = std::make_pair(status, std::move(text));
    }
  }


  /**
   * Runs ready work; then, while a deferred hook is still open, advances the
   * clock to the next scheduled event (timer, DNS answer or timeout, hook
   * timeout) and runs it. Stops when no deferred hook is open or nothing is
   * scheduled. Note: this moves the clock. @return callbacks run.
   */
  size_t settle() {
    size_t n = run_pending_work();
    while (detail::any_deferred_open(*core_)) {
      auto due = detail::next_due(*core_);
      if (!due) break;
      n += detail::advance_to(*core_, *due);
      n += run_pending_work();
    }
    return n;
  }

  // --- cron jobs (ABI 1.1) ---------------------------------------------------

  /** A cron job a plugin registered. */
  struct CronInfo {
    uint64_t id;
    std::string plugin;
    std::string name;
    std::string expr;
    uint64_t runs;
  };
  std::vector<CronInfo> cron_jobs() const {
    std::lock_guard lock(core_->mu);
    std::vector<CronInfo> out;
    for (const auto& [id, j] : core_->crons) out.push_back({id, j.slot->name, j.name, j.expr, j.runs});
    return out;
  }
  /**
   * Runs the jobs named `name` (all jobs when empty) once, now, on this
   * thread, as the scheduler would at a matching time. @return jobs run.
   */
  size_t run_cron(std::string_view name = {}) {
    std::vector<std::pair<postern_task_cb, void*>> due;
    {
      std::lock_guard lock(core_->mu);
      for (auto& [id, j] : core_->crons) {
        if (!name.empty() && j.name != name) continue;
        ++j.runs;
        due.emplace_back(j.fn, j.user);
      }
    }
    for (auto& [fn, user] : due) fn(user);
    return due.size();
  }
  /**
   * Raises a mailbox event (ABI 1.3) as posternd's store would after a
   * committed change: every subscriber whose mask has the event's kind is
   * called, on this thread, in subscription order. MemoryMailStore does not
   * raise events by itself. @return the callbacks run.
   */
  size_t raise_mailbox_event(const MailboxEvent& ev) {
    std::vector<std::pair<postern_mbox_event_cb, void*>> due;
    {
      std::lock_guard lock(core_->mu);
      for (const auto& [id, sub] : core_->mailbox_subs)
        if ((sub.mask & (1u << static_cast<uint32_t>(ev.kind))) != 0) due.emplace_back(sub.fn, sub.user);
    }
    postern_mbox_event_t out{};
    out.struct_size = sizeof out;
    out.kind = static_cast<uint32_t>(ev.kind);
    out.account = detail::str(ev.account);
    out.folder = detail::str(ev.folder);
    out.target_folder = detail::str(ev.target_folder);
    out.actor = detail::str(ev.actor);
    out.uidvalidity = ev.uidvalidity;
    out.target_uidvalidity = ev.target_uidvalidity;
    out.uids = ev.uids.empty() ? nullptr : ev.uids.data();
    out.uid_count = ev.uids.size();
    out.target_uids = ev.target_uids.size() == ev.uids.size() && !ev.target_uids.empty() ? ev.target_uids.data()
                                                                                        : nullptr;
    out.size = ev.size;
    for (auto& [fn, user] : due) fn(user, &out);
    return due.size();
  }
  /** Mailbox-event subscriptions now held by loaded plugins. */
  size_t mailbox_subscriptions() const {
    std::lock_guard lock(core_->mu);
    return core_->mailbox_subs.size();
  }
  /** Simulates a host without a mailbox store: mbox_events_subscribe returns 0 (for later calls). */
  void set_mailbox_events_available(bool yes) {
    std::lock_guard lock(core_->mu);
    core_->mailbox_events_available = yes;
  }

  /** Simulates a host without a scheduler: cron_add returns 0 (for later calls). */
  void set_cron_available(bool yes) {
    std::lock_guard lock(core_->mu);
    core_->cron_available = yes;
  }

  /** Queued post_work tasks (WorkMode::Manual). */
  size_t queued_work() const {
    std::lock_guard lock(core_->mu);
    return core_->work.size();
  }
  /** Scheduled timers, DNS answers and hook timeouts. */
  size_t scheduled() const {
    std::lock_guard lock(core_->mu);
    return core_->events.size();
  }

  std::vector<LogLine> logs() const {
    std::lock_guard lock(core_->mu);
    return core_->logs;
  }
  /** A log line contains `needle`. */
  bool logged(std::string_view needle) const {
    std::lock_guard lock(core_->mu);
    return std::any_of(core_->logs.begin(), core_->logs.end(),
                       [&](const LogLine& l) { return l.text.find(needle) != std::string::npos; });
  }
  void clear_logs() {
    std::lock_guard lock(core_->mu);
    core_->logs.clear();
  }
  /** pending_complete calls after the first completion (or after a timeout); posternd counts these too. */
  size_t late_completions() const { return core_->late.load(); }

 private:
  /** Flags a reply code that does not match its verdict (posternd would replace it). */
  void check_reply(detail::Slot& s, detail::RunState& r) {
    std::lock_guard lock(r.mu);
    if (r.code == 0) return;
    const int cls = r.code / 100;
    const bool ok = (r.verdict == Verdict::Reject && cls == 5) || (r.verdict == Verdict::TempFail && cls == 4) ||
                    ((r.verdict == Verdict::Accept || r.verdict == Verdict::Discard || r.verdict == Verdict::Quarantine ||
                      r.verdict == Verdict::Continue) &&
                     cls == 2);
    if (!ok) core_->log(LogLevel::Warn, "fakehost", s.name + ": reply code " + std::to_string(r.code) + " does not match the verdict");
  }

  /** Records manifest lines and merges each element's text so config_text can return stable storage. */
  static void index_config(detail::Slot& s, const std::string& xml) {
    std::vector<size_t> line_starts{0};
    for (size_t i = 0; i < xml.size(); ++i)
      if (xml[i] == '\n') line_starts.push_back(i + 1);
    std::lock_guard lock(detail::line_registry_mutex());
    std::function<void(pugi::xml_node)> walk = [&](pugi::xml_node n) {
      const ptrdiff_t off = n.offset_debug();
      uint32_t line = 0;
      if (off >= 0) {
        line = static_cast<uint32_t>(std::upper_bound(line_starts.begin(), line_starts.end(), static_cast<size_t>(off)) -
                                     line_starts.begin());
      }
      s.lines[n.internal_object()] = line;
      detail::line_registry()[n.internal_object()] = line;
      std::string text;
      std::vector<pugi::xml_node> texts;
      for (pugi::xml_node c : n.children()) {
        if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
          text += c.value();
          texts.push_back(c);
        }
      }
      if (texts.size() > 1 || (texts.size() == 1 && texts[0] != n.first_child())) {
        for (pugi::xml_node t : texts) n.remove_child(t);
        n.prepend_child(pugi::node_pcdata).set_value(text.c_str());
      }
      for (pugi::xml_node c : n.children())
        if (c.type() == pugi::node_element) walk(c);
    };
    if (pugi::xml_node root = s.doc.document_element()) walk(root);
  }

  /** stream_connect_cancel answers CANCELLED here, outside the plugin's call. */
  size_t answer_cancelled_connects() {
    std::vector<std::shared_ptr<detail::ConnectRec>> done;
    {
      std::lock_guard lock(core_->mu);
      for (auto it = core_->connects.begin(); it != core_->connects.end();) {
        if ((*it)->cancelled) {
          done.push_back(*it);
          it = core_->connects.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& c : done) c->cb(c->user, POSTERN_CONNECT_CANCELLED, nullptr, detail::str("cancelled"));
    return done.size();
  }

  std::shared_ptr<detail::Core> core_;
  ManualClock clock_;
  FakeDns dns_;
};

}  // namespace postern::sdk::testing
