#pragma once
// pop3: one connection. Drives the Engine on the stream's strand and runs its
// Requests — directory, mailbox store, TLS — off the strand: blocking calls on
// the host's worker pool, back through Stream::post. Input is paused while a
// Request runs, so commands are answered in order.

#include "engine.hpp"
#include "maildrop_lock.hpp"
#include "settings.hpp"
#include "size_cache.hpp"
#include <postern/mail/throttle.hpp>
#include <postern/sdk/sdk.hpp>

#include <memory>
#include <optional>
#include <string>

namespace postern::plugins::pop3 {

/** What every connection of one plugin instance shares. */
struct Service {
  sdk::Host host;
  Settings settings;
  /** Failed logins per peer address and login name, for every connection (mail library). */
  mail::LoginThrottle throttle;
  std::shared_ptr<SizeCache> sizes;  // null: sizes are recomputed at each login

  Service(sdk::Host h, Settings s, std::shared_ptr<SizeCache> cache)
      : host(h), settings(s), throttle(throttle_settings(s)), sizes(std::move(cache)) {}

  /** The throttle's policy from login-delay(-max), failure-window and login-lockout-*. */
  static mail::ThrottleSettings throttle_settings(const Settings& s) {
    mail::ThrottleSettings t;
    t.delay = s.login_delay;
    t.delay_max = s.login_delay_max;
    t.window = s.failure_window;
    t.ip_lockout_failures = s.login_lockout_failures;
    t.login_lockout_failures = 0;  // a lockout by name would let anyone lock a known account
    t.lockout_time = s.login_lockout_time;
    t.max_entries = 100'000;
    return t;
  }
};

/** Output above this stops input until the client has read it (on_drain). */
inline constexpr size_t kOutputHighWater = 256 * 1024;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Service> service, sdk::Stream stream);
  ~Session();

  /** Greets and arms the idle timer. Strand. */
  void start();
  void on_data(std::string_view data);
  void on_tls();
  void on_drain();
  void on_close(sdk::CloseReason reason);

 private:
  struct LoginOutcome;

  /** Runs the Engine's next Request, or resumes input. Strand. */
  void pump();
  void set_paused(bool paused);
  void run_login(LoginRequest req);
  /** Checks the password on the pool once the peer's penalty is paid. Strand. */
  void check_password(LoginRequest req);
  void run_fetch(FetchRequest req);
  void run_commit(CommitRequest req);
  /** On a worker: authenticate, lock, open INBOX, sizes. */
  LoginOutcome login_blocking(const LoginRequest& req);
  void login_done(LoginOutcome outcome);
  std::string who() const;

  std::shared_ptr<Service> service_;
  sdk::Stream stream_;
  std::string peer_ip_;
  std::string session_id_;
  Engine engine_;
  bool closed_ = false;
  bool paused_ = false;
  bool waiting_drain_ = false;
  // A Request runs on the worker pool or a timer: the members below belong to
  // it until its completion is posted back to the strand.
  bool in_flight_ = false;
  std::optional<sdk::Mailbox> mailbox_;
  sdk::FolderView view_;
  std::unique_ptr<MaildropLock> lock_;
};

/** The sdk::Connection the host holds; the Session outlives it while work is in flight. */
class Pop3Connection : public sdk::Connection {
 public:
  explicit Pop3Connection(std::shared_ptr<Session> session) : session_(std::move(session)) {}
  void on_data(std::string_view data) override { session_->on_data(data); }
  void on_tls() override { session_->on_tls(); }
  void on_drain() override { session_->on_drain(); }
  void on_close(sdk::CloseReason reason) override { session_->on_close(reason); }

 private:
  std::shared_ptr<Session> session_;
};

}  // namespace postern::plugins::pop3
