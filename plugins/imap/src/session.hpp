#pragma once
// One IMAP connection (RFC 3501 §3 states): reads commands with
// CommandReader, runs every store call on the host's worker pool with the
// stream paused (so commands stay ordered), and writes the responses back on
// the stream's strand. See docs/imap.md for threading and limits.

#include "parser.hpp"

#include <postern/mail/sasl.hpp>
#include <postern/mail/throttle.hpp>
#include <postern/sdk/host.hpp>
#include <postern/sdk/mailbox.hpp>
#include <postern/sdk/service.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::imap {

class IdleWaiters;

/** Per-listener settings (from the plugin's configuration). */
struct SessionConfig {
  Limits limits;
  // IDLE: how often the view is refreshed without a mailbox event; with
  // events (ABI 1.3) a safety net only (imap.cpp raises the default to 30 s).
  std::chrono::milliseconds idle_poll{2000};
  std::chrono::milliseconds autologout{30 * 60 * 1000};  // RFC 3501 §5.4: at least 30 minutes
  std::chrono::milliseconds login_timeout{60 * 1000};   // before authentication
  uint32_t max_login_failures = 3;                      // then BYE
  std::chrono::milliseconds login_failure_delay{1000};  // the first failure's delay, doubled per failure
  std::chrono::milliseconds login_failure_delay_max{60 * 1000};
  // Failed logins from one client address (within login_lockout_time of each other) that
  // lock it out for login_lockout_time; 0: no lockout (the default).
  uint32_t login_lockout_failures = 0;
  std::chrono::milliseconds login_lockout_time{10 * 60 * 1000};
  uint32_t max_bad_commands = 20;                       // consecutive BAD replies, then BYE
  size_t fetch_chunk = 256 * 1024;                      // FETCH output per worker step
  size_t max_queued = 1 << 20;                          // output queued before waiting for a drain
  /**
   * Failed logins per client address and login name, shared by all sessions of the plugin:
   * a client that opens a new connection per guess still waits longer each time.
   * imap.cpp makes it from throttle_settings().
   */
  std::shared_ptr<mail::LoginThrottle> throttle = std::make_shared<mail::LoginThrottle>(throttle_settings());

  /** The throttle's policy from login_failure_delay(_max) and login_lockout_failures/time. */
  mail::ThrottleSettings throttle_settings() const {
    mail::ThrottleSettings s;
    s.delay = login_failure_delay;
    s.delay_max = login_failure_delay_max;
    s.window = std::max<std::chrono::milliseconds>(std::chrono::minutes(10), login_lockout_time);
    s.ip_lockout_failures = login_lockout_failures;
    s.login_lockout_failures = 0;  // a lockout by name would let anyone lock a known account
    s.lockout_time = login_lockout_time;
    s.max_entries = 65536;
    return s;
  }
  /** Sessions in IDLE, woken by the store's mailbox events (imap.cpp subscribes). */
  std::shared_ptr<IdleWaiters> idle_waiters;
};

/**
 * The protocol state of one connection. Owned through a shared_ptr so that
 * work on the pool and timers keep it alive; every member function runs on
 * the stream's strand except the `work` closures, which run on the pool while
 * `busy_` is set (then the strand touches no state).
 */
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(sdk::Host host, sdk::Stream stream, std::shared_ptr<const SessionConfig> config);

  /** Sends the greeting. */
  void start();
  void on_data(std::string_view data);
  void on_tls();
  void on_drain();
  void on_close();

  /** The capability list for the current state (without "CAPABILITY"). */
  std::string capabilities() const;

  /**
   * A mailbox event touched the folder this session idles on: refresh on
   * the stream's strand and send the updates. THREADING: any thread.
   */
  void wake_idle();

 private:
  enum class State { NotAuthenticated, Authenticated, Selected, Logout };

  struct Msg {
    sdk::MessageInfo info;
    bool recent = false;
  };
  // What one step of work on the pool produced: output, and an optional next step.
  struct Step {
    std::string out;
    std::function<Step()> next;
    bool close = false;
  };

  void pump();
  void dispatch(Command c);
  void reply(std::string text);
  void finish_command();
  /** Runs `work` on the pool (stream paused); writes what it returns; repeats its next steps. */
  void run(std::function<Step()> work);
  void after_step(Step step);
  void handle_line(std::string line);

  // Commands (strand).
  void cmd_login(const Command& c);
  void cmd_authenticate(const Command& c);
  /** Acts on a step of the AUTHENTICATE exchange: "+ " challenge, login or a tagged reply. */
  void sasl_step(const std::string& tag, mail::SaslStep step);
  void do_login(std::string tag, std::string user, std::string password);
  /** Checks the password (worker pool) once the address's penalty is paid. */
  void check_password(std::string tag, std::string user, std::string password);
  /** Answers a failed login after `delay`; with BYE when it was the last one allowed. */
  void answer_failure(const std::string& tag, std::chrono::milliseconds delay, bool last);
  void cmd_select(Command c);
  void cmd_list(const Command& c);
  void cmd_status(const Command& c);
  void cmd_append(Command c);
  void cmd_fetch(Command c);
  void cmd_store(Command c);
  void cmd_search(Command c);
  void cmd_copy(Command c);
  void cmd_expunge(const Command& c);
  void cmd_close(const Command& c, bool expunge);
  void cmd_idle(const Command& c);
  void cmd_simple_mailbox(const Command& c);
  void start_idle_timer();
  void idle_poll();
  /** Strand side of wake_idle(): refresh now, or right after the step that runs. */
  void idle_wake();
  void stop_idle_wait();

  // Pool-side helpers (called from work closures).
  std::string refresh_updates();
  std::string fetch_one(size_t index, const Command& c, bool set_seen, bool& vanished);
  std::string flags_fetch(size_t index, bool with_uid) const;
  std::string keyword_announcement();
  void mark_seen(const std::vector<size_t>& indexes, size_t from, size_t to);
  Msg* find_uid(uint32_t uid);
  void update_message(const sdk::MessageInfo& after);
  /** Message indexes for a sequence set (MSNs or UIDs); nullopt = an MSN outside the mailbox. */
  std::optional<std::vector<size_t>> resolve(const SequenceSet& set, bool uid) const;
  std::string select_response(const sdk::FolderSnapshot& snap, bool read_only);
  std::string list_response(const Command& c, const std::vector<sdk::FolderInfo>& folders, bool lsub) const;
  static std::string store_error(const sdk::MailError& e, std::string_view tag, std::string_view what);

  sdk::Host host_;
  sdk::Stream stream_;
  std::shared_ptr<const SessionConfig> config_;
  CommandReader reader_;
  State state_ = State::NotAuthenticated;
  bool busy_ = false;
  bool closed_ = false;
  bool tls_pending_ = false;
  std::function<Step()> pending_step_;  // waits for on_drain
  uint32_t login_failures_ = 0;
  uint32_t bad_commands_ = 0;

  // Continuations that read a raw line.
  enum class LineWait { None, Authenticate, Idle };
  LineWait line_wait_ = LineWait::None;
  std::optional<mail::SaslExchange> sasl_;  // AUTHENTICATE in progress
  std::string line_tag_;
  sdk::Host::TimerId idle_timer_ = 0;
  bool idle_wake_pending_ = false;  // an event arrived while a step ran

  // Authenticated state (touched on the pool only while busy_).
  std::string account_;
  std::optional<sdk::Mailbox> mailbox_;
  bool condstore_ = false;

  // Selected state.
  std::string selected_;
  bool read_only_ = false;
  sdk::FolderView view_;
  std::vector<Msg> msgs_;  // ascending UID; MSN = index + 1
  uint32_t uidvalidity_ = 0;
  uint32_t uidnext_ = 1;
  uint64_t highest_modseq_ = 0;
  std::vector<std::string> known_keywords_;
};

/**
 * The sessions waiting in IDLE, by account and folder: the plugin's mailbox
 * event subscription calls notify() on a worker thread and each session whose
 * folder the event touches is woken (RFC 2177: the server sends updates as
 * they happen). Thread-safe.
 */
class IdleWaiters {
 public:
  void add(const std::shared_ptr<Session>& session, std::string account, std::string folder);
  void remove(const Session* session);
  /** Wakes the sessions idling on the event's folder or target folder. @return how many. */
  size_t notify(const sdk::MailboxEvent& event);

 private:
  struct Entry {
    const Session* key;
    std::weak_ptr<Session> session;
    std::string account;
    std::string folder;
  };
  std::mutex mu_;
  std::vector<Entry> entries_;
};

/** The sdk::Connection the host sees: forwards to a shared Session. */
class Connection : public sdk::Connection {
 public:
  explicit Connection(std::shared_ptr<Session> s) : session_(std::move(s)) {}
  void on_data(std::string_view data) override { session_->on_data(data); }
  void on_tls() override { session_->on_tls(); }
  void on_drain() override { session_->on_drain(); }
  void on_close(sdk::CloseReason) override { session_->on_close(); }

 private:
  std::shared_ptr<Session> session_;
};

}  // namespace postern::imap
