#include "session.hpp"

#include "codec.hpp"

#include <type_traits>
#include <utility>
#include <variant>

namespace postern::plugins::pop3 {
namespace {

constexpr std::string_view kInbox = "INBOX";

/** A client-supplied string made safe for one log line. */
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 128)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  if (s.size() > 128) out += "...";
  return out;
}

Environment environment(const sdk::Stream& stream, const Settings& settings) {
  Environment env;
  env.server_name = stream.get(POSTERN_STREAM_SERVER_NAME);
  env.tls_active = stream.tls_active();
  env.can_starttls = stream.can_starttls();
  env.cleartext_auth = stream.get(POSTERN_STREAM_CLEARTEXT_AUTH) == "1";
  env.max_failures = settings.max_failures;
  env.max_bad_commands = settings.max_bad_commands;
  return env;
}

}  // namespace

struct Session::LoginOutcome {
  std::string login;  // as the client gave it (the throttle counts per login too)
  std::optional<LoginFailure> failure;
  std::string detail;  // for the log (and [SYS/TEMP] replies)
  Maildrop drop;
  std::optional<sdk::Mailbox> mailbox;
  sdk::FolderView view;
  std::unique_ptr<MaildropLock> lock;
};

Session::Session(std::shared_ptr<Service> service, sdk::Stream stream)
    : service_(std::move(service)),
      stream_(std::move(stream)),
      peer_ip_(stream_.peer_ip()),
      session_id_(stream_.session_id()),
      engine_(environment(stream_, service_->settings), [this](std::string_view out) { stream_.write(out); }) {}

Session::~Session() {
  // The view before the mailbox (it keeps the account open by itself anyway).
  view_.reset();
  mailbox_.reset();
}

std::string Session::who() const { return "pop3 [" + session_id_ + "] " + peer_ip_; }

void Session::start() {
  stream_.set_idle_timeout(service_->settings.idle_timeout);
  engine_.start();
}

void Session::on_data(std::string_view data) {
  if (closed_) return;
  engine_.feed(data);
  pump();
}

void Session::on_tls() {
  if (closed_) return;
  in_flight_ = false;
  engine_.tls_started();
  pump();
}

void Session::on_drain() {
  if (closed_) return;
  waiting_drain_ = false;
  pump();
}

void Session::on_close(sdk::CloseReason reason) {
  closed_ = true;
  if (engine_.authenticated() && reason != sdk::CloseReason::Plugin) {
    // RFC 1939 §6: without QUIT there is no UPDATE state: nothing is deleted.
    service_->host.info(who() + ": " + engine_.maildrop().account + " disconnected without QUIT; no changes");
  }
  if (!in_flight_ || std::holds_alternative<CloseRequest>(engine_.request())) {
    view_.reset();
    mailbox_.reset();
    lock_.reset();
  }
}

void Session::set_paused(bool paused) {
  if (paused_ == paused) return;
  paused_ = paused;
  stream_.pause(paused);
}

void Session::pump() {
  if (closed_ || in_flight_ || waiting_drain_) return;
  if (!engine_.busy()) {
    // A client that pipelines RETRs without reading would fill our memory.
    if (stream_.queued() > kOutputHighWater) {
      set_paused(true);
      waiting_drain_ = true;
      stream_.want_drain();
      return;
    }
    engine_.process();
  }
  Request request = engine_.request();
  if (std::holds_alternative<std::monostate>(request)) {
    if (stream_.queued() > kOutputHighWater) {
      set_paused(true);
      waiting_drain_ = true;
      stream_.want_drain();
      return;
    }
    set_paused(false);
    return;
  }
  set_paused(true);
  std::visit(
      [&](auto&& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, LoginRequest>) {
          run_login(std::move(r));
        } else if constexpr (std::is_same_v<T, FetchRequest>) {
          run_fetch(std::move(r));
        } else if constexpr (std::is_same_v<T, CommitRequest>) {
          run_commit(std::move(r));
        } else if constexpr (std::is_same_v<T, StartTlsRequest>) {
          in_flight_ = true;
          if (!stream_.starttls()) {
            service_->host.warn(who() + ": STLS could not start TLS; closing");
            stream_.close();
          }
        } else if constexpr (std::is_same_v<T, CloseRequest>) {
          in_flight_ = true;  // nothing more to do: the close flushes the last reply
          stream_.close();
        }
      },
      request);
}

void Session::run_login(LoginRequest req) {
  in_flight_ = true;
  if (service_->throttle.ip_locked(peer_ip_, mail::throttle_clock_now())) {
    in_flight_ = false;
    service_->host.warn(who() + ": login refused: address locked out");
    engine_.login_failed(LoginFailure::Locked);
    pump();
    return;
  }
  // Like Dovecot's auth penalty: the address first waits out what its earlier failures
  // still owe, so dropping the connection instead of waiting for the -ERR and guessing on
  // another connection gains nothing. On a timer; the strand never sleeps.
  const auto penalty = service_->throttle.penalty(peer_ip_, mail::throttle_clock_now());
  if (penalty.count() > 0) {
    auto self = shared_from_this();
    auto go = [self, req]() {
      self->stream_.post([self, req]() {
        if (self->closed_) {
          self->in_flight_ = false;
          return;
        }
        self->check_password(req);
      });
    };
    if (service_->host.after(penalty, go) != 0) return;
  }
  check_password(std::move(req));
}

void Session::check_password(LoginRequest req) {
  auto self = shared_from_this();
  service_->host.post_work([self, req = std::move(req)]() {
    auto outcome = std::make_shared<LoginOutcome>(self->login_blocking(req));
    self->stream_.post([self, outcome]() { self->login_done(std::move(*outcome)); });
  });
}

Session::LoginOutcome Session::login_blocking(const LoginRequest& req) {
  LoginOutcome out;
  out.login = req.login;
  const sdk::Host& host = service_->host;
  if (req.malformed) {
    out.failure = LoginFailure::Credentials;
    out.detail = "malformed AUTH PLAIN response";
    return out;
  }
  auto account = sdk::authenticate(host, req.login, req.password, POSTERN_SERVICE_POP3);
  if (!account) {
    out.failure = account.error().code == POSTERN_ERR_NOT_FOUND ? LoginFailure::Credentials : LoginFailure::Temporary;
    out.detail = "login '" + printable(req.login) + "': " + account.error().detail;
    return out;
  }
  out.lock = MaildropLock::acquire(account->address);
  if (!out.lock) {
    out.failure = LoginFailure::InUse;
    out.detail = account->address + " already has a POP3 session";
    return out;
  }
  auto mailbox = sdk::Mailbox::open(host, account->address);
  if (!mailbox) {
    out.failure = LoginFailure::Temporary;
    out.detail = account->address + ": " + mailbox.error().detail;
    return out;
  }
  auto opened = mailbox->open_folder(kInbox);
  if (!opened) {
    out.failure = LoginFailure::Temporary;
    out.detail = account->address + ": INBOX: " + opened.error().detail;
    return out;
  }
  auto& [view, snapshot] = *opened;
  out.drop.account = account->address;
  out.drop.uidvalidity = snapshot.uidvalidity;

  // Sizes as sent: from the cache, or by reading the message once.
  std::unordered_map<uint32_t, uint64_t> cached;
  if (service_->sizes) {
    try {
      cached = service_->sizes->load(account->address, snapshot.uidvalidity);
    } catch (const std::exception& e) {
      host.warn(who() + ": size cache: " + e.what());
    }
  }
  std::vector<std::pair<uint32_t, uint64_t>> fresh;
  out.drop.messages.reserve(snapshot.messages.size());
  for (const auto& m : snapshot.messages) {
    if (auto it = cached.find(m.uid); it != cached.end()) {
      out.drop.messages.push_back(DropMessage{m.uid, it->second});
      cached.erase(it);
      continue;
    }
    auto raw = mailbox->read_message(kInbox, m.uid);
    if (!raw) {
      if (raw.error().code == POSTERN_ERR_NOT_FOUND) continue;  // expunged since the snapshot
      out.failure = LoginFailure::Temporary;
      out.detail = account->address + ": reading UID " + std::to_string(m.uid) + ": " + raw.error().detail;
      return out;
    }
    const uint64_t size = wire_size(*raw);
    out.drop.messages.push_back(DropMessage{m.uid, size});
    fresh.emplace_back(m.uid, size);
  }
  if (service_->sizes) {
    // What is left in `cached` was expunged (by IMAP or an earlier QUIT that failed half way).
    std::vector<uint32_t> stale;
    stale.reserve(cached.size());
    for (const auto& kv : cached) stale.push_back(kv.first);
    try {
      service_->sizes->update(account->address, snapshot.uidvalidity, fresh, stale);
    } catch (const std::exception& e) {
      host.warn(who() + ": size cache: " + e.what());
    }
  }
  out.view = std::move(view);
  out.mailbox.emplace(std::move(*mailbox));
  return out;
}

void Session::login_done(LoginOutcome outcome) {
  if (closed_) {
    in_flight_ = false;
    return;  // the outcome (lock, view, mailbox) is released with it
  }
  if (!outcome.failure) {
    in_flight_ = false;
    mailbox_ = std::move(outcome.mailbox);
    view_ = std::move(outcome.view);
    lock_ = std::move(outcome.lock);
    service_->throttle.success(outcome.login, mail::throttle_clock_now());
    service_->host.info(who() + ": login " + outcome.drop.account + ", " +
                        std::to_string(outcome.drop.messages.size()) + " messages");
    engine_.login_succeeded(std::move(outcome.drop));
    pump();
    return;
  }
  if (*outcome.failure != LoginFailure::Credentials) {
    in_flight_ = false;
    service_->host.warn(who() + ": login refused: " + outcome.detail);
    engine_.login_failed(*outcome.failure, *outcome.failure == LoginFailure::Temporary ? "" : outcome.detail);
    pump();
    return;
  }
  // A failed login is answered late, later with every failure of this
  // connection, of this peer and of this login: a password guesser gets few tries per hour.
  const auto delay =
      service_->throttle.failure(peer_ip_, outcome.login, engine_.failures() + 1, mail::throttle_clock_now()).delay;
  service_->host.warn(who() + ": login failed: " + outcome.detail + " (failure " +
                      std::to_string(engine_.failures() + 1) + ", answered after " + std::to_string(delay.count()) +
                      " ms)");
  auto self = shared_from_this();
  auto answer = [self]() {
    self->stream_.post([self]() {
      self->in_flight_ = false;
      if (self->closed_) return;
      self->engine_.login_failed(LoginFailure::Credentials);
      self->pump();
    });
  };
  if (delay.count() == 0 || service_->host.after(delay, answer) == 0) answer();
}

void Session::run_fetch(FetchRequest req) {
  in_flight_ = true;
  auto self = shared_from_this();
  service_->host.post_work([self, req]() {
    auto raw = self->mailbox_->read_message(kInbox, req.uid);
    auto encoded = std::make_shared<std::string>();
    bool gone = false;
    std::string error;
    if (raw) {
      encode_message(*raw, req.body_lines, *encoded);
    } else {
      gone = raw.error().code == POSTERN_ERR_NOT_FOUND;
      error = raw.error().detail;
    }
    self->stream_.post([self, encoded, gone, error, ok = raw.ok()]() {
      self->in_flight_ = false;
      if (self->closed_) {
        self->view_.reset();
        self->mailbox_.reset();
        self->lock_.reset();
        return;
      }
      if (ok) {
        self->engine_.fetch_succeeded(*encoded);
      } else {
        if (!gone) self->service_->host.warn(self->who() + ": reading a message: " + error);
        self->engine_.fetch_failed(gone, error);
      }
      self->pump();
    });
  });
}

void Session::run_commit(CommitRequest req) {
  in_flight_ = true;
  auto self = shared_from_this();
  const std::string account = engine_.maildrop().account;
  const uint32_t uidvalidity = engine_.maildrop().uidvalidity;
  service_->host.post_work([self, req = std::move(req), account, uidvalidity]() {
    bool ok = true;
    std::string detail;
    size_t removed = 0;
    if (!req.expunge.empty()) {
      auto r = self->mailbox_->expunge(kInbox, req.expunge, POSTERN_EXPUNGE_LISTED);
      if (r) {
        removed = r->size();
      } else {
        ok = false;
        detail = r.error().detail;
      }
    }
    if (ok && !req.seen.empty()) {
      // Retrieved messages read as \Seen to IMAP clients (as Dovecot does).
      auto r = self->mailbox_->store_flags(kInbox, req.seen, POSTERN_FLAGS_ADD, POSTERN_FLAG_SEEN, {});
      if (!r) self->service_->host.warn(self->who() + ": " + account + ": setting \\Seen: " + r.error().detail);
    }
    if (ok && self->service_->sizes && !req.expunge.empty()) {
      try {
        self->service_->sizes->update(account, uidvalidity, {}, req.expunge);
      } catch (const std::exception& e) {
        self->service_->host.warn(self->who() + ": size cache: " + e.what());
      }
    }
    self->stream_.post([self, ok, detail, removed, account]() {
      self->in_flight_ = false;
      if (ok) {
        self->service_->host.info(self->who() + ": " + account + " QUIT, " + std::to_string(removed) +
                                  " messages removed");
      } else {
        self->service_->host.error(self->who() + ": " + account + ": removing deleted messages: " + detail);
      }
      // The maildrop is finished either way: release it before the reply goes out.
      self->view_.reset();
      self->mailbox_.reset();
      self->lock_.reset();
      if (self->closed_) return;
      self->engine_.commit_done(ok, detail);
      self->pump();
    });
  });
}

}  // namespace postern::plugins::pop3
