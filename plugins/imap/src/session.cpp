#include "session.hpp"

#include "message.hpp"
#include "mutf7.hpp"
#include "response.hpp"
#include "search.hpp"

#include <algorithm>
#include <limits>
#include <utility>
#include <set>

namespace postern::imap {
namespace {

constexpr std::string_view kFlags = "(\\Answered \\Flagged \\Deleted \\Seen \\Draft";

std::string tagged(std::string_view tag, std::string_view status, std::string_view text) {
  std::string out;
  out.reserve(tag.size() + status.size() + text.size() + 4);
  out.append(tag).append(" ").append(status).append(" ").append(text).append("\r\n");
  return out;
}

// LIST wildcard match (RFC 3501 §6.3.8): '*' matches anything, '%' anything but '/'.
bool wildcard_match(std::string_view pattern, std::string_view name) {
  // Dynamic programming over the name: O(|pattern| * |name|), no backtracking blow-up.
  std::vector<char> cur(name.size() + 1, 0), nxt(name.size() + 1, 0);
  cur[0] = 1;
  for (char p : pattern) {
    std::fill(nxt.begin(), nxt.end(), 0);
    if (p == '*' || p == '%') {
      bool reach = false;
      for (size_t j = 0; j <= name.size(); ++j) {
        if (cur[j]) reach = true;
        if (reach) nxt[j] = 1;
        if (p == '%' && j < name.size() && name[j] == '/') reach = false;
        if (p == '%' && j < name.size() && name[j] == '/' && cur[j + 1]) reach = true;
      }
    } else {
      for (size_t j = 0; j < name.size(); ++j) {
        if (cur[j] && name[j] == p) nxt[j + 1] = 1;
      }
    }
    cur.swap(nxt);
  }
  return cur[name.size()] != 0;
}

// Matches a LIST pattern, treating a leading "INBOX" in any case as INBOX.
bool list_match(std::string pattern, std::string_view name) {
  if (pattern.size() >= 5 && iequals(std::string_view(pattern).substr(0, 5), "INBOX") &&
      (pattern.size() == 5 || pattern[5] == '/' || pattern[5] == '*' || pattern[5] == '%'))
    pattern.replace(0, 5, "INBOX");
  return wildcard_match(pattern, name);
}

std::string error_code(postern_status_t code) {
  switch (code) {
    case POSTERN_ERR_NOT_FOUND: return "[NONEXISTENT] ";
    case POSTERN_ERR_EXISTS: return "[ALREADYEXISTS] ";
    case POSTERN_ERR_FORBIDDEN: return "[CANNOT] ";
    case POSTERN_ERR_INVALID: return "[CANNOT] ";
    case POSTERN_ERR_OVER_QUOTA: return "[OVERQUOTA] ";
    case POSTERN_ERR_HAS_CHILDREN: return "[INUSE] ";
    case POSTERN_ERR_TEMPORARY: return "[UNAVAILABLE] ";
    case POSTERN_ERR_UNAVAILABLE: return "[UNAVAILABLE] ";
    case POSTERN_ERR_STALE: return "[NONEXISTENT] ";
    default: return "[SERVERBUG] ";
  }
}

std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  if (s.size() > 300) s.resize(300);
  return s;
}

}  // namespace

std::string Session::store_error(const sdk::MailError& e, std::string_view tag, std::string_view what) {
  return tagged(tag, "NO", error_code(e.code) + std::string(what) + ": " + one_line(e.detail));
}

Session::Session(sdk::Host host, sdk::Stream stream, std::shared_ptr<const SessionConfig> config)
    : host_(std::move(host)), stream_(std::move(stream)), config_(std::move(config)), reader_(config_->limits) {}

std::string Session::capabilities() const {
  std::string caps =
      "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UNSELECT UIDPLUS MOVE CHILDREN SPECIAL-USE "
      "CREATE-SPECIAL-USE CONDSTORE STATUS=SIZE APPENDLIMIT=" +
      std::to_string(config_->limits.append_limit);
  if (state_ == State::NotAuthenticated) {
    if (stream_.can_starttls()) caps += " STARTTLS";
    // RFC 3501 §6.2.3: no passwords in the clear unless the listener allows it.
    caps += stream_.auth_allowed() ? " AUTH=PLAIN" : " LOGINDISABLED";
  }
  return caps;
}

void Session::start() {
  stream_.set_idle_timeout(config_->login_timeout);
  std::string name = stream_.get(POSTERN_STREAM_SERVER_NAME);
  if (name.empty()) name = "Postern";
  reply("* OK [CAPABILITY " + capabilities() + "] " + one_line(name) + " IMAP4rev1 ready\r\n");
}

void Session::reply(std::string text) { stream_.write(text); }

void Session::on_data(std::string_view data) {
  if (closed_) return;
  reader_.feed(data);
  pump();
}

void Session::on_tls() {
  // RFC 3501 §6.2.1: nothing the client sent before the handshake counts.
  reader_.clear();
  tls_pending_ = false;
  busy_ = false;
  stream_.pause(false);
}

void Session::on_drain() {
  if (closed_ || !pending_step_) return;
  auto next = std::move(pending_step_);
  pending_step_ = nullptr;
  run(std::move(next));
}

void Session::on_close() {
  closed_ = true;
  stop_idle_wait();
  pending_step_ = nullptr;
}

void Session::pump() {
  using Kind = CommandReader::Output::Kind;
  while (!busy_ && !closed_ && state_ != State::Logout) {
    auto out = reader_.next();
    switch (out.kind) {
      case Kind::NeedMore:
        return;
      case Kind::Continuation:
        reply(std::move(out.data));
        break;
      case Kind::Error:
        if (line_wait_ == LineWait::Authenticate) {
          // An over-long AUTHENTICATE response ends the exchange: the tagged BAD, and the
          // next line is a command again (not base64).
          line_wait_ = LineWait::None;
          reader_.set_line_mode(false);
          sasl_.reset();
          reply(tagged(std::exchange(line_tag_, std::string()), "BAD", "Authentication response too long"));
        } else {
          reply(std::move(out.data));
        }
        if (++bad_commands_ >= config_->max_bad_commands) {
          reply("* BYE Too many invalid commands\r\n");
          state_ = State::Logout;
          stream_.close();
          return;
        }
        break;
      case Kind::Line:
        handle_line(std::move(out.data));
        break;
      case Kind::Command: {
        auto parsed = parse_command(std::move(out.data), config_->limits);
        if (auto* err = std::get_if<ParseError>(&parsed)) {
          reply(tagged(err->tag, err->bad ? "BAD" : "NO", err->text));
          if (err->bad && ++bad_commands_ >= config_->max_bad_commands) {
            reply("* BYE Too many invalid commands\r\n");
            state_ = State::Logout;
            stream_.close();
            return;
          }
          break;
        }
        dispatch(std::get<Command>(std::move(parsed)));
        break;
      }
    }
  }
}

void Session::finish_command() {
  busy_ = false;
  if (closed_) return;
  if (idle_wake_pending_) {
    idle_wake_pending_ = false;
    if (line_wait_ == LineWait::Idle && state_ == State::Selected) {
      // A mailbox event came while the last refresh ran: it may have read before the change.
      run([this] { return Step{refresh_updates(), nullptr}; });
      return;
    }
  }
  stream_.pause(false);
  pump();
}

void Session::run(std::function<Step()> work) {
  busy_ = true;
  stream_.pause(true);
  auto self = shared_from_this();
  host_.post_work([self, work = std::move(work)]() mutable {
    Step step;
    try {
      step = work();
    } catch (const std::exception& e) {
      step = Step{"* BYE Internal error: " + one_line(e.what()) + "\r\n", nullptr, true};
    }
    auto shared = std::make_shared<Step>(std::move(step));
    self->stream_.post([self, shared]() mutable { self->after_step(std::move(*shared)); });
  });
}

void Session::after_step(Step step) {
  if (closed_) {
    busy_ = false;
    return;
  }
  if (!step.out.empty()) stream_.write(step.out);
  if (step.close) {
    state_ = State::Logout;
    stream_.close();
    return;
  }
  if (step.next) {
    if (stream_.queued() > config_->max_queued) {
      // Bounded memory: wait until the client has read what is queued.
      pending_step_ = std::move(step.next);
      stream_.want_drain();
      return;
    }
    run(std::move(step.next));
    return;
  }
  finish_command();
}

void Session::dispatch(Command c) {
  const std::string& n = c.name;
  const std::string& tag = c.tag;
  auto need = [&](bool ok, std::string_view why) {
    if (!ok) reply(tagged(tag, "BAD", why));
    return ok;
  };
  const bool authed = state_ == State::Authenticated || state_ == State::Selected;
  const bool selected = state_ == State::Selected;
  if (n != "LOGIN" && n != "AUTHENTICATE") bad_commands_ = 0;

  if (n == "CAPABILITY") {
    reply("* CAPABILITY " + capabilities() + "\r\n" + tagged(tag, "OK", "CAPABILITY completed"));
  } else if (n == "NOOP" || n == "CHECK") {
    if (n == "CHECK" && !need(selected, "CHECK needs a selected mailbox")) return;
    if (!selected) {
      reply(tagged(tag, "OK", n + " completed"));
      return;
    }
    run([this, tag, n] { return Step{refresh_updates() + tagged(tag, "OK", n + " completed"), nullptr}; });
  } else if (n == "LOGOUT") {
    reply("* BYE Logging out\r\n" + tagged(tag, "OK", "LOGOUT completed"));
    state_ = State::Logout;
    stream_.close();
  } else if (n == "ID") {
    reply("* ID (\"name\" \"Postern\" \"vendor\" \"Postern\" \"version\" \"1.0.0\")\r\n" +
          tagged(tag, "OK", "ID completed"));
  } else if (n == "STARTTLS") {
    if (!need(state_ == State::NotAuthenticated, "STARTTLS is only valid before authentication")) return;
    if (!stream_.can_starttls()) {
      reply(tagged(tag, "BAD", stream_.tls_active() ? "TLS is already active" : "TLS is not available here"));
      return;
    }
    reply(tagged(tag, "OK", "Begin TLS negotiation now"));
    // RFC 3501 §6.2.1: commands pipelined after STARTTLS are discarded.
    reader_.clear();
    busy_ = true;
    tls_pending_ = true;
    if (!stream_.starttls()) {
      reply("* BYE TLS could not be started\r\n");
      state_ = State::Logout;
      stream_.close();
    }
  } else if (n == "LOGIN") {
    if (!need(state_ == State::NotAuthenticated, "Already authenticated")) return;
    cmd_login(c);
  } else if (n == "AUTHENTICATE") {
    if (!need(state_ == State::NotAuthenticated, "Already authenticated")) return;
    cmd_authenticate(c);
  } else if (!authed) {
    reply(tagged(tag, "BAD", n + " needs authentication first"));
  } else if (n == "SELECT" || n == "EXAMINE") {
    cmd_select(std::move(c));
  } else if (n == "CREATE" || n == "DELETE" || n == "RENAME" || n == "SUBSCRIBE" || n == "UNSUBSCRIBE") {
    cmd_simple_mailbox(c);
  } else if (n == "LIST" || n == "LSUB") {
    cmd_list(c);
  } else if (n == "STATUS") {
    cmd_status(c);
  } else if (n == "APPEND") {
    cmd_append(std::move(c));
  } else if (n == "NAMESPACE") {
    reply("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n" + tagged(tag, "OK", "NAMESPACE completed"));
  } else if (n == "ENABLE") {
    if (!need(state_ == State::Authenticated, "ENABLE is only valid before a mailbox is selected")) return;
    std::string enabled = "* ENABLED";
    for (const auto& cap : c.items) {
      if (cap == "CONDSTORE" && enabled.find(" CONDSTORE") == std::string::npos) {
        condstore_ = true;
        enabled += " CONDSTORE";
      }
    }
    reply(enabled + "\r\n" + tagged(tag, "OK", "ENABLE completed"));
  } else if (n == "IDLE") {
    cmd_idle(c);
  } else if (!selected) {
    reply(tagged(tag, "BAD", n + " needs a selected mailbox"));
  } else if (n == "CLOSE") {
    cmd_close(c, true);
  } else if (n == "UNSELECT") {
    cmd_close(c, false);
  } else if (n == "EXPUNGE") {
    cmd_expunge(c);
  } else if (n == "FETCH") {
    cmd_fetch(std::move(c));
  } else if (n == "STORE") {
    cmd_store(std::move(c));
  } else if (n == "SEARCH") {
    cmd_search(std::move(c));
  } else if (n == "COPY" || n == "MOVE") {
    cmd_copy(std::move(c));
  } else {
    reply(tagged(tag, "BAD", "Unknown command " + n));
  }
}

// --- authentication ---------------------------------------------------------

void Session::cmd_login(const Command& c) {
  if (!stream_.auth_allowed()) {
    reply(tagged(c.tag, "NO", "[PRIVACYREQUIRED] LOGIN is disabled before STARTTLS"));
    return;
  }
  do_login(c.tag, c.arg1, c.arg2);
}

void Session::cmd_authenticate(const Command& c) {
  // We offer PLAIN (RFC 4616) only, as the capability list says.
  if (mail::parse_sasl_mechanism(c.arg1) != mail::SaslMechanism::Plain) {
    reply(tagged(c.tag, "NO", "Unsupported authentication mechanism (PLAIN only)"));
    return;
  }
  if (!stream_.auth_allowed()) {
    reply(tagged(c.tag, "NO", "[PRIVACYREQUIRED] Authentication is disabled before STARTTLS"));
    return;
  }
  // RFC 4959 §3: an initial response, "=" when it is empty.
  sasl_.emplace(mail::SaslMechanism::Plain,
                c.initial_response ? std::optional<std::string_view>(*c.initial_response) : std::nullopt);
  sasl_step(c.tag, sasl_->start());
}

void Session::handle_line(std::string line) {
  const LineWait wait = line_wait_;
  line_wait_ = LineWait::None;
  reader_.set_line_mode(false);
  const std::string tag = std::move(line_tag_);
  if (wait == LineWait::Authenticate) {
    if (!sasl_) {
      reply(tagged(tag, "BAD", "Authentication cancelled"));
      return;
    }
    sasl_step(tag, sasl_->feed(line));
    return;
  }
  if (wait == LineWait::Idle) {
    stop_idle_wait();
    if (iequals(line, "DONE")) {
      reply(tagged(tag, "OK", "IDLE terminated"));
    } else {
      reply(tagged(tag, "BAD", "Expected DONE to end IDLE"));
    }
    return;
  }
  reply("* BAD Unexpected line\r\n");
}

void Session::sasl_step(const std::string& tag, mail::SaslStep step) {
  using Kind = mail::SaslStep::Kind;
  if (step.kind == Kind::Challenge) {
    // RFC 3501 §7.5: the continuation request carries the base64 challenge.
    line_wait_ = LineWait::Authenticate;
    line_tag_ = tag;
    reader_.set_line_mode(true);
    reply("+ " + step.challenge + "\r\n");
    return;
  }
  sasl_.reset();
  if (step.kind == Kind::Credentials) {
    do_login(tag, std::move(step.credentials.authcid), std::move(step.credentials.password));
    return;
  }
  switch (step.error) {
    case mail::SaslError::Cancelled:
      reply(tagged(tag, "BAD", "Authentication cancelled"));
      return;
    case mail::SaslError::BadBase64:
      reply(tagged(tag, "BAD", "Invalid base64 in the authentication response"));
      return;
    case mail::SaslError::TooLong:
      reply(tagged(tag, "BAD", "Authentication response too long"));
      return;
    case mail::SaslError::AuthzidNotAllowed:
      reply(tagged(tag, "NO", "[AUTHORIZATIONFAILED] Logging in as another user is not allowed"));
      return;
    case mail::SaslError::Malformed:
    case mail::SaslError::Finished:
      break;
  }
  reply(tagged(tag, "BAD", "Malformed PLAIN response"));
}

void Session::do_login(std::string tag, std::string user, std::string password) {
  // RFC 5321 §4.5.3.1.3: an address has at most 254 octets; the directory knows no longer
  // login, and a long one would only cost memory here and in the throttle.
  if (user.size() > mail::kMaxLoginName) {
    reply(tagged(tag, "NO", "[AUTHENTICATIONFAILED] Login name too long"));
    return;
  }
  const std::string ip = stream_.peer_ip();
  if (config_->throttle->ip_locked(ip, mail::throttle_clock_now())) {
    host_.info("imap: " + stream_.session_id() + " " + ip + " login refused: address locked out");
    reply(tagged(tag, "NO", "[UNAVAILABLE] Too many failed logins from your address, try again later"));
    return;
  }
  busy_ = true;
  stream_.pause(true);
  // Like Dovecot's auth penalty: the address first waits out what its earlier failures
  // still owe, so dropping the connection instead of waiting for the failure reply and
  // guessing on another connection gains nothing. On a timer; the strand never sleeps.
  const auto penalty = config_->throttle->penalty(ip, mail::throttle_clock_now());
  if (penalty.count() > 0) {
    auto self = shared_from_this();
    auto go = [self, tag, user = std::move(user), password = std::move(password)]() mutable {
      self->stream_.post([self, tag = std::move(tag), user = std::move(user), password = std::move(password)]() mutable {
        if (self->closed_) {
          self->busy_ = false;
          return;
        }
        self->check_password(std::move(tag), std::move(user), std::move(password));
      });
    };
    if (host_.after(penalty, go) != 0) return;
    go();
    return;
  }
  check_password(std::move(tag), std::move(user), std::move(password));
}

void Session::check_password(std::string tag, std::string user, std::string password) {
  auto self = shared_from_this();
  host_.post_work([self, tag, user = std::move(user), password = std::move(password)] {
    auto acct = sdk::authenticate(self->host_, user, password, POSTERN_SERVICE_IMAP);
    std::optional<sdk::Mailbox> mb;
    sdk::MailError err;
    if (acct) {
      auto opened = sdk::Mailbox::open(self->host_, acct->address);
      if (opened) {
        mb.emplace(std::move(*opened));
      } else {
        err = opened.error();
      }
    } else {
      err = acct.error();
    }
    auto state = std::make_shared<std::tuple<std::optional<sdk::Mailbox>, sdk::MailError, std::string>>(
        std::move(mb), std::move(err), acct ? acct->address : std::string());
    self->stream_.post([self, tag, user, state] {
      if (self->closed_) {
        self->busy_ = false;
        return;
      }
      auto& [mailbox, error, address] = *state;
      if (mailbox) {
        self->config_->throttle->success(user, mail::throttle_clock_now());
        self->mailbox_ = std::move(mailbox);
        self->account_ = address;
        self->state_ = State::Authenticated;
        self->login_failures_ = 0;
        self->stream_.set_idle_timeout(self->config_->autologout);
        self->host_.info("imap: " + self->stream_.session_id() + " " + self->stream_.peer_ip() + " logged in as " +
                         address);
        self->reply(tagged(tag, "OK", "[CAPABILITY " + self->capabilities() + "] Logged in"));
        self->finish_command();
        return;
      }
      if (error.code != POSTERN_ERR_NOT_FOUND) {
        self->reply(tagged(tag, "NO", "[UNAVAILABLE] Authentication is temporarily unavailable"));
        self->finish_command();
        return;
      }
      ++self->login_failures_;
      self->host_.info("imap: " + self->stream_.session_id() + " " + self->stream_.peer_ip() +
                       " authentication failed (" + std::to_string(self->login_failures_) + ")");
      // A growing delay slows password guessing; input stays paused meanwhile. Failures from the
      // same address or on the same login over other connections count too.
      const auto delay =
          self->config_->throttle->failure(self->stream_.peer_ip(), user, self->login_failures_, mail::throttle_clock_now())
              .delay;
      self->answer_failure(tag, delay, self->login_failures_ >= self->config_->max_login_failures);
    });
  });
}

void Session::answer_failure(const std::string& tag, std::chrono::milliseconds delay, bool last) {
  auto self = shared_from_this();
  // The last failure allowed waits its delay too (else a guesser would drop after it and
  // reconnect at once); then NO and BYE.
  auto answer = [self, tag, last] {
    self->stream_.post([self, tag, last] {
      if (self->closed_) {
        self->busy_ = false;
        return;
      }
      self->reply(tagged(tag, "NO", "[AUTHENTICATIONFAILED] Authentication failed"));
      if (last) {
        self->reply("* BYE Too many authentication failures\r\n");
        self->state_ = State::Logout;
        self->stream_.close();
        return;
      }
      self->finish_command();
    });
  };
  if (delay.count() == 0 || host_.after(delay, answer) == 0) answer();
}

// --- mailbox-level commands -------------------------------------------------

void Session::cmd_simple_mailbox(const Command& c) {
  run([this, c] {
    sdk::Expected<sdk::Done> r = sdk::Done{};
    const std::string& n = c.name;
    if (n == "CREATE") {
      if (c.mailbox == "INBOX") {
        r = sdk::MailError{POSTERN_ERR_EXISTS, "INBOX always exists"};
      } else {
        r = mailbox_->create_folder(c.mailbox, c.special_use);
      }
    } else if (n == "DELETE") {
      r = mailbox_->delete_folder(c.mailbox);
    } else if (n == "RENAME") {
      r = mailbox_->rename_folder(c.mailbox, c.mailbox2);
    } else {
      r = mailbox_->subscribe(c.mailbox, n == "SUBSCRIBE");
    }
    std::string out = state_ == State::Selected ? refresh_updates() : std::string();
    if (!r) return Step{out + store_error(r.error(), c.tag, n + " failed"), nullptr};
    return Step{out + tagged(c.tag, "OK", n + " completed"), nullptr};
  });
}

std::string Session::list_response(const Command& c, const std::vector<sdk::FolderInfo>& folders, bool lsub) const {
  const std::string verb = lsub ? "LSUB" : "LIST";
  std::string pattern_wire = c.arg2;
  if (!c.arg1.empty()) pattern_wire = c.arg1 + pattern_wire;
  auto pattern = mutf7_decode(pattern_wire);
  if (!pattern) return tagged(c.tag, "NO", "The pattern is not valid modified UTF-7");
  if (pattern->size() > 1000) return tagged(c.tag, "NO", "The pattern is too long");
  // Collapse runs of wildcards: same meaning, bounded matching work.
  std::string p;
  for (char ch : *pattern) {
    if ((ch == '*' || ch == '%') && !p.empty() && (p.back() == '*' || p.back() == '%')) {
      if (ch == '*') p.back() = '*';
      continue;
    }
    p += ch;
  }
  std::string out;
  std::set<std::string> seen;
  for (const auto& f : folders) {
    if (lsub && !f.subscribed) continue;
    if (list_match(p, f.name)) {
      std::string attrs;
      if (!lsub) attrs = f.has_children ? "\\HasChildren" : "\\HasNoChildren";
      if (!f.special_use.empty()) attrs += (attrs.empty() ? "" : " ") + f.special_use;
      out += "* " + verb + " (" + attrs + ") \"/\" " + mailbox_name(f.name) + "\r\n";
      seen.insert(f.name);
    } else if (lsub && !p.empty() && p.back() == '%') {
      // RFC 3501 §6.3.9: a parent matched by '%' whose child is subscribed is listed \Noselect.
      size_t slash = f.name.find('/');
      while (slash != std::string::npos) {
        const std::string parent = f.name.substr(0, slash);
        if (!seen.count(parent) && list_match(p, parent)) {
          seen.insert(parent);
          out += "* LSUB (\\Noselect) \"/\" " + mailbox_name(parent) + "\r\n";
        }
        slash = f.name.find('/', slash + 1);
      }
    }
  }
  return out + tagged(c.tag, "OK", verb + " completed");
}

void Session::cmd_list(const Command& c) {
  if (c.name == "LIST" && c.arg2.empty()) {
    // RFC 3501 §6.3.8: the hierarchy delimiter and root.
    reply("* LIST (\\Noselect) \"/\" \"\"\r\n" + tagged(c.tag, "OK", "LIST completed"));
    return;
  }
  run([this, c] {
    auto folders = mailbox_->list_folders();
    std::string out = state_ == State::Selected ? refresh_updates() : std::string();
    if (!folders) return Step{out + store_error(folders.error(), c.tag, c.name + " failed"), nullptr};
    return Step{out + list_response(c, *folders, c.name == "LSUB"), nullptr};
  });
}

void Session::cmd_status(const Command& c) {
  run([this, c] {
    auto info = mailbox_->folder_status(c.mailbox);
    std::string out = state_ == State::Selected ? refresh_updates() : std::string();
    if (!info) return Step{out + store_error(info.error(), c.tag, "STATUS failed"), nullptr};
    if (c.condstore) condstore_ = true;
    std::string items;
    uint32_t recent = 0;
    if (state_ == State::Selected && selected_ == info->name) {
      for (const auto& m : msgs_) recent += m.recent ? 1 : 0;
    }
    for (const auto& it : c.items) {
      if (!items.empty()) items += ' ';
      items += it + ' ';
      if (it == "MESSAGES") items += std::to_string(info->messages);
      else if (it == "RECENT") items += std::to_string(recent);
      else if (it == "UIDNEXT") items += std::to_string(info->uidnext);
      else if (it == "UIDVALIDITY") items += std::to_string(info->uidvalidity);
      else if (it == "UNSEEN") items += std::to_string(info->unseen);
      else if (it == "HIGHESTMODSEQ") items += std::to_string(info->highest_modseq);
      else if (it == "SIZE") items += std::to_string(info->size);
    }
    out += "* STATUS " + mailbox_name(info->name) + " (" + items + ")\r\n";
    return Step{out + tagged(c.tag, "OK", "STATUS completed"), nullptr};
  });
}

void Session::cmd_append(Command c) {
  std::optional<int64_t> date;
  if (c.date_time) {
    date = parse_internal_date(*c.date_time);
    if (!date) {
      reply(tagged(c.tag, "BAD", "Invalid date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")"));
      return;
    }
  }
  if (c.message_size == 0) {
    reply(tagged(c.tag, "NO", "Refusing to save an empty message"));
    return;
  }
  auto cmd = std::make_shared<Command>(std::move(c));
  run([this, cmd, date] {
    auto r = mailbox_->append(cmd->mailbox, cmd->message(), cmd->flags, cmd->keywords, date);
    // The message is stored: free its copy before the responses are built.
    const std::string tag = cmd->tag;
    cmd->buffer = std::string();
    std::string out = state_ == State::Selected ? refresh_updates() : std::string();
    if (!r) {
      if (r.error().code == POSTERN_ERR_NOT_FOUND)
        return Step{out + tagged(tag, "NO", "[TRYCREATE] No such mailbox"), nullptr};
      return Step{out + store_error(r.error(), tag, "APPEND failed"), nullptr};
    }
    return Step{out + tagged(tag, "OK",
                             "[APPENDUID " + std::to_string(r->uidvalidity) + " " + std::to_string(r->uid) +
                                 "] APPEND completed"),
                nullptr};
  });
}

// --- selected state ---------------------------------------------------------

std::string Session::keyword_announcement() {
  std::string list(kFlags);
  for (const auto& k : known_keywords_) list += " " + k;
  return "* FLAGS " + list + ")\r\n* OK [PERMANENTFLAGS " +
         (read_only_ ? std::string("()") : list + " \\*)") + "] Flags permitted\r\n";
}

std::string Session::select_response(const sdk::FolderSnapshot& snap, bool read_only) {
  known_keywords_.clear();
  for (const auto& m : msgs_) {
    for (const auto& k : m.info.keywords) {
      if (std::none_of(known_keywords_.begin(), known_keywords_.end(), [&](const auto& x) { return iequals(x, k); }))
        known_keywords_.push_back(k);
    }
  }
  std::string out = keyword_announcement();
  uint32_t recent = 0;
  size_t first_unseen = 0;
  for (size_t i = 0; i < msgs_.size(); ++i) {
    recent += msgs_[i].recent ? 1 : 0;
    if (first_unseen == 0 && !(msgs_[i].info.flags & POSTERN_FLAG_SEEN)) first_unseen = i + 1;
  }
  out += "* " + std::to_string(msgs_.size()) + " EXISTS\r\n* " + std::to_string(recent) + " RECENT\r\n";
  if (first_unseen) out += "* OK [UNSEEN " + std::to_string(first_unseen) + "] First unseen\r\n";
  out += "* OK [UIDVALIDITY " + std::to_string(snap.uidvalidity) + "] UIDs valid\r\n";
  out += "* OK [UIDNEXT " + std::to_string(snap.uidnext) + "] Predicted next UID\r\n";
  out += "* OK [HIGHESTMODSEQ " + std::to_string(snap.highest_modseq) + "] Highest\r\n";
  (void)read_only;
  return out;
}

void Session::cmd_select(Command c) {
  // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
  if (state_ == State::Selected) {
    state_ = State::Authenticated;
  }
  auto cmd = std::make_shared<Command>(std::move(c));
  run([this, cmd] {
    const bool examine = cmd->name == "EXAMINE";
    view_.reset();
    msgs_.clear();
    selected_.clear();
    auto opened = mailbox_->open_folder(cmd->mailbox);
    if (!opened) return Step{store_error(opened.error(), cmd->tag, cmd->name + " failed"), nullptr};
    auto& [view, snap] = *opened;
    uint32_t first_recent = std::numeric_limits<uint32_t>::max();
    if (!examine) {
      // \Recent is claimed by the first session that selects read-write (RFC 3501 §2.3.2).
      auto claimed = mailbox_->claim_recent(cmd->mailbox);
      if (claimed) first_recent = *claimed;
    }
    view_ = std::move(view);
    selected_ = snap.folder.name.empty() ? cmd->mailbox : snap.folder.name;
    read_only_ = examine;
    uidvalidity_ = snap.uidvalidity;
    uidnext_ = snap.uidnext;
    highest_modseq_ = snap.highest_modseq;
    msgs_.reserve(snap.messages.size());
    for (auto& m : snap.messages) {
      const bool recent = m.uid >= first_recent;
      msgs_.push_back(Msg{std::move(m), recent});
    }
    if (cmd->condstore) condstore_ = true;
    state_ = State::Selected;
    std::string out = select_response(snap, examine);
    out += tagged(cmd->tag, "OK", examine ? "[READ-ONLY] EXAMINE completed" : "[READ-WRITE] SELECT completed");
    return Step{std::move(out), nullptr};
  });
}

void Session::cmd_close(const Command& c, bool expunge) {
  run([this, tag = c.tag, expunge, name = c.name] {
    if (expunge && !read_only_) {
      // RFC 3501 §6.4.2: CLOSE expunges silently.
      auto r = mailbox_->expunge(selected_, {}, POSTERN_EXPUNGE_ALL_DELETED);
      (void)r;
    }
    view_.reset();
    msgs_.clear();
    selected_.clear();
    state_ = State::Authenticated;
    return Step{tagged(tag, "OK", name + " completed"), nullptr};
  });
}

std::optional<std::vector<size_t>> Session::resolve(const SequenceSet& set, bool uid) const {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  ranges.reserve(set.ranges.size());
  const uint32_t star_msn = static_cast<uint32_t>(msgs_.size());
  const uint32_t star_uid = msgs_.empty() ? 0 : msgs_.back().info.uid;
  constexpr uint32_t kStar = std::numeric_limits<uint32_t>::max();
  for (auto [lo, hi] : set.ranges) {
    if (!uid) {
      if (msgs_.empty()) return std::nullopt;
      if (lo == kStar) lo = star_msn;
      if (hi == kStar) hi = star_msn;
      if (lo > hi) std::swap(lo, hi);
      if (hi > star_msn) return std::nullopt;
    } else {
      // RFC 3501 §6.4.8: "*" is the highest UID in use; n:* also covers it when n is larger.
      if (lo == kStar) lo = star_uid;
      if (hi == kStar) hi = star_uid;
      if (lo > hi) std::swap(lo, hi);
    }
    ranges.emplace_back(lo, hi);
  }
  // Merge, so overlapping ranges cost nothing (1:*,1:*,... is bounded by the message count).
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && static_cast<uint64_t>(r.first) <= static_cast<uint64_t>(merged.back().second) + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  std::vector<size_t> out;
  for (const auto& [lo, hi] : merged) {
    if (!uid) {
      for (uint64_t i = lo; i <= hi; ++i) out.push_back(static_cast<size_t>(i - 1));
      continue;
    }
    auto it = std::lower_bound(msgs_.begin(), msgs_.end(), lo, [](const Msg& m, uint32_t v) { return m.info.uid < v; });
    for (; it != msgs_.end() && it->info.uid <= hi; ++it) out.push_back(static_cast<size_t>(it - msgs_.begin()));
  }
  return out;
}

std::string Session::flags_fetch(size_t index, bool with_uid) const {
  const Msg& m = msgs_[index];
  std::string out = "* " + std::to_string(index + 1) + " FETCH (";
  if (with_uid) out += "UID " + std::to_string(m.info.uid) + " ";
  out += "FLAGS " + flag_list(m.info.flags, m.info.keywords, m.recent);
  if (condstore_) out += " MODSEQ (" + std::to_string(m.info.modseq) + ")";
  return out + ")\r\n";
}

std::string Session::refresh_updates() {
  if (state_ != State::Selected || !view_.valid()) return {};
  auto u = view_.refresh();
  if (!u) {
    host_.warn("imap: " + account_ + ": refresh of " + selected_ + " failed: " + u.error().detail);
    return {};
  }
  if (u->gone) {
    view_.reset();
    msgs_.clear();
    state_ = State::Logout;
    stream_.close();
    return "* BYE The selected mailbox was deleted or re-created\r\n";
  }
  std::string out;
  // EXPUNGE: ascending, each number counted after the ones before it were removed.
  if (!u->expunged.empty()) {
    std::vector<char> gone(msgs_.size(), 0);
    size_t removed = 0;
    for (uint32_t uid : u->expunged) {
      auto it = std::lower_bound(msgs_.begin(), msgs_.end(), uid,
                                 [](const Msg& m, uint32_t v) { return m.info.uid < v; });
      if (it == msgs_.end() || it->info.uid != uid) continue;
      const size_t idx = static_cast<size_t>(it - msgs_.begin());
      if (gone[idx]) continue;
      gone[idx] = 1;
      out += "* " + std::to_string(idx + 1 - removed) + " EXPUNGE\r\n";
      ++removed;
    }
    size_t w = 0;
    for (size_t i = 0; i < msgs_.size(); ++i) {
      if (!gone[i]) msgs_[w++] = std::move(msgs_[i]);
    }
    msgs_.resize(w);
  }
  bool new_keywords = false;
  auto note_keywords = [&](const std::vector<std::string>& kws) {
    for (const auto& k : kws) {
      if (std::none_of(known_keywords_.begin(), known_keywords_.end(), [&](const auto& x) { return iequals(x, k); })) {
        known_keywords_.push_back(k);
        new_keywords = true;
      }
    }
  };
  std::string fetches;
  for (auto& m : u->changed) {
    auto it = std::lower_bound(msgs_.begin(), msgs_.end(), m.uid,
                               [](const Msg& x, uint32_t v) { return x.info.uid < v; });
    if (it == msgs_.end() || it->info.uid != m.uid) continue;
    const bool differs = it->info.flags != m.flags || it->info.keywords != m.keywords ||
                         (condstore_ && it->info.modseq != m.modseq);
    note_keywords(m.keywords);
    it->info.flags = m.flags;
    it->info.keywords = m.keywords;
    it->info.modseq = m.modseq;
    if (differs) fetches += flags_fetch(static_cast<size_t>(it - msgs_.begin()), true);
  }
  if (!u->added.empty()) {
    uint32_t first_recent = std::numeric_limits<uint32_t>::max();
    if (!read_only_) {
      auto claimed = mailbox_->claim_recent(selected_);
      if (claimed) first_recent = *claimed;
    }
    for (auto& m : u->added) {
      note_keywords(m.keywords);
      const bool recent = m.uid >= first_recent;
      msgs_.push_back(Msg{std::move(m), recent});
    }
  }
  if (new_keywords) out += keyword_announcement();
  if (!u->added.empty()) {
    uint32_t recent = 0;
    for (const auto& m : msgs_) recent += m.recent ? 1 : 0;
    out += "* " + std::to_string(msgs_.size()) + " EXISTS\r\n* " + std::to_string(recent) + " RECENT\r\n";
  }
  out += fetches;
  uidnext_ = u->uidnext;
  highest_modseq_ = u->highest_modseq;
  return out;
}

void Session::cmd_expunge(const Command& c) {
  if (read_only_) {
    reply(tagged(c.tag, "NO", "[READ-ONLY] The mailbox is read-only"));
    return;
  }
  std::vector<uint32_t> uids;
  if (c.uid) {
    auto idx = resolve(c.set, true);
    for (size_t i : *idx) uids.push_back(msgs_[i].info.uid);
    if (uids.empty()) {
      reply(tagged(c.tag, "OK", "UID EXPUNGE completed"));
      return;
    }
  }
  run([this, tag = c.tag, uid = c.uid, uids = std::move(uids)] {
    auto r = mailbox_->expunge(selected_, uids, uid ? POSTERN_EXPUNGE_LISTED_DELETED : POSTERN_EXPUNGE_ALL_DELETED);
    std::string out = refresh_updates();
    if (!r) return Step{out + store_error(r.error(), tag, "EXPUNGE failed"), nullptr};
    return Step{out + tagged(tag, "OK", uid ? "UID EXPUNGE completed" : "EXPUNGE completed"), nullptr};
  });
}

// --- FETCH ------------------------------------------------------------------

std::string Session::fetch_one(size_t index, const Command& c, bool set_seen, bool& vanished) {
  using K = FetchItem::Kind;
  const Msg& m = msgs_[index];
  bool need_raw = false, need_parsed = false;
  for (const auto& it : c.fetch) {
    switch (it.kind) {
      case K::Envelope: case K::Body: case K::BodyStructure: case K::Rfc822Header: case K::Rfc822Text:
        need_parsed = true;
        break;
      case K::Rfc822:
        need_raw = true;
        break;
      case K::BodySection:
        need_raw = true;
        if (!it.section.part.empty() || it.section.kind != Section::Kind::Full) need_parsed = true;
        break;
      default:
        break;
    }
  }
  std::shared_ptr<const std::string> raw;
  std::shared_ptr<const ParsedMessage> parsed;
  if (need_raw || need_parsed) {
    auto r = mailbox_->read_message(selected_, m.info.uid);
    if (!r) {
      vanished = true;
      return {};
    }
    raw = std::make_shared<const std::string>(std::move(*r));
    if (need_parsed) parsed = ParsedMessage::parse(raw);
  }
  std::string out = "* " + std::to_string(index + 1) + " FETCH (";
  bool first = true;
  auto sep = [&] {
    if (!first) out += ' ';
    first = false;
  };
  bool flags_sent = false;
  if (c.uid) {
    sep();
    out += "UID " + std::to_string(m.info.uid);
  }
  for (const auto& it : c.fetch) {
    switch (it.kind) {
      case K::Uid:
        if (c.uid) break;
        sep();
        out += "UID " + std::to_string(m.info.uid);
        break;
      case K::Flags:
        sep();
        out += "FLAGS " + flag_list(m.info.flags, m.info.keywords, m.recent);
        flags_sent = true;
        break;
      case K::Rfc822Size:
        sep();
        out += "RFC822.SIZE " + std::to_string(m.info.size);
        break;
      case K::InternalDate:
        sep();
        out += "INTERNALDATE \"" + format_internal_date(m.info.internal_date) + "\"";
        break;
      case K::ModSeq:
        sep();
        out += "MODSEQ (" + std::to_string(m.info.modseq) + ")";
        break;
      case K::Envelope:
        sep();
        out += "ENVELOPE " + envelope(*parsed);
        break;
      case K::Body:
        sep();
        out += "BODY " + body_structure(*parsed, false);
        break;
      case K::BodyStructure:
        sep();
        out += "BODYSTRUCTURE " + body_structure(*parsed, true);
        break;
      case K::Rfc822:
        sep();
        out += "RFC822 {" + std::to_string(raw->size()) + "}\r\n" + *raw;
        break;
      case K::Rfc822Header: {
        Section s;
        s.kind = Section::Kind::Header;
        const std::string text = section_text(*parsed, s);
        sep();
        out += "RFC822.HEADER {" + std::to_string(text.size()) + "}\r\n" + text;
        break;
      }
      case K::Rfc822Text: {
        Section s;
        s.kind = Section::Kind::Text;
        const std::string text = section_text(*parsed, s);
        sep();
        out += "RFC822.TEXT {" + std::to_string(text.size()) + "}\r\n" + text;
        break;
      }
      case K::BodySection: {
        std::string text;
        std::string_view view;
        if (it.section.part.empty() && it.section.kind == Section::Kind::Full) {
          view = *raw;
        } else {
          text = section_text(*parsed, it.section);
          view = text;
        }
        sep();
        out += "BODY[" + it.section_spec + "]";
        if (it.partial) {
          const auto [origin, count] = *it.partial;
          out += "<" + std::to_string(origin) + ">";
          view = origin >= view.size() ? std::string_view() : view.substr(origin, count);
        }
        out += " {" + std::to_string(view.size()) + "}\r\n";
        out.append(view);
        break;
      }
    }
  }
  if (set_seen && !flags_sent) {
    sep();
    out += "FLAGS " + flag_list(m.info.flags, m.info.keywords, m.recent);
  }
  if (c.changed_since && std::none_of(c.fetch.begin(), c.fetch.end(), [](const auto& i) { return i.kind == K::ModSeq; })) {
    sep();
    out += "MODSEQ (" + std::to_string(m.info.modseq) + ")";
  }
  return out + ")\r\n";
}

void Session::cmd_fetch(Command c) {
  using K = FetchItem::Kind;
  auto idx = resolve(c.set, c.uid);
  if (!idx) {
    reply(tagged(c.tag, "BAD", "Invalid message sequence number"));
    return;
  }
  if (c.condstore) condstore_ = true;
  bool marks_seen = false;
  for (const auto& it : c.fetch) {
    if ((it.kind == K::BodySection && !it.peek) || it.kind == K::Rfc822 || it.kind == K::Rfc822Text) marks_seen = true;
  }
  marks_seen = marks_seen && !read_only_;
  struct FetchLoop {
    std::shared_ptr<Session> self;
    std::shared_ptr<Command> cmd;
    std::shared_ptr<std::vector<size_t>> indexes;
    std::shared_ptr<size_t> pos;
    std::shared_ptr<bool> vanished;
    bool marks_seen = false;

    // One batch per step; the last adds the updates and the tagged reply.
    Step operator()() const {
      Session& s = *self;
      const size_t batch_end = std::min(indexes->size(), *pos + 500);
      if (marks_seen) s.mark_seen(*indexes, *pos, batch_end);
      std::string out;
      while (*pos < batch_end && out.size() < s.config_->fetch_chunk) {
        const size_t i = (*indexes)[(*pos)++];
        // RFC 7162 §3.1.4.1: CHANGEDSINCE skips messages not changed since.
        if (cmd->changed_since && s.msgs_[i].info.modseq <= *cmd->changed_since) continue;
        bool gone = false;
        std::string one = s.fetch_one(i, *cmd, marks_seen, gone);
        if (gone) {
          *vanished = true;
          continue;
        }
        out += one;
      }
      Step st{std::move(out), nullptr};
      if (*pos < indexes->size()) {
        st.next = *this;
        return st;
      }
      // UID FETCH may report expunges; plain FETCH may not (RFC 3501 §7.4.1).
      if (cmd->uid) st.out += s.refresh_updates();
      if (*vanished) {
        st.out += tagged(cmd->tag, "NO", "[EXPUNGEISSUED] Some of the requested messages no longer exist");
      } else {
        st.out += tagged(cmd->tag, "OK", cmd->uid ? "UID FETCH completed" : "FETCH completed");
      }
      return st;
    }
  };
  run(FetchLoop{shared_from_this(), std::make_shared<Command>(std::move(c)),
                std::make_shared<std::vector<size_t>>(std::move(*idx)), std::make_shared<size_t>(0),
                std::make_shared<bool>(false), marks_seen});
}

void Session::mark_seen(const std::vector<size_t>& indexes, size_t from, size_t to) {
  // RFC 3501 §6.4.5: BODY[...] sets \Seen; one store for the whole batch.
  std::vector<uint32_t> uids;
  for (size_t k = from; k < to; ++k) {
    const auto& m = msgs_[indexes[k]];
    if (!(m.info.flags & POSTERN_FLAG_SEEN)) uids.push_back(m.info.uid);
  }
  if (uids.empty()) return;
  auto r = mailbox_->store_flags(selected_, uids, POSTERN_FLAGS_ADD, POSTERN_FLAG_SEEN, {});
  if (!r) return;
  for (const auto& after : r->messages) update_message(after);
}

Session::Msg* Session::find_uid(uint32_t uid) {
  auto it = std::lower_bound(msgs_.begin(), msgs_.end(), uid, [](const Msg& x, uint32_t v) { return x.info.uid < v; });
  return it != msgs_.end() && it->info.uid == uid ? &*it : nullptr;
}

void Session::update_message(const sdk::MessageInfo& after) {
  if (Msg* m = find_uid(after.uid)) {
    m->info.flags = after.flags;
    m->info.keywords = after.keywords;
    m->info.modseq = after.modseq;
  }
}

// --- STORE, SEARCH, COPY/MOVE, IDLE ------------------------------------------

void Session::cmd_store(Command c) {
  if (read_only_) {
    reply(tagged(c.tag, "NO", "[READ-ONLY] The mailbox is read-only"));
    return;
  }
  auto idx = resolve(c.set, c.uid);
  if (!idx) {
    reply(tagged(c.tag, "BAD", "Invalid message sequence number"));
    return;
  }
  if (c.condstore) condstore_ = true;
  auto cmd = std::make_shared<Command>(std::move(c));
  auto indexes = std::make_shared<std::vector<size_t>>(std::move(*idx));
  run([this, cmd, indexes] {
    const std::string done = cmd->uid ? "UID STORE completed" : "STORE completed";
    std::vector<uint32_t> uids;
    uids.reserve(indexes->size());
    for (size_t i : *indexes) uids.push_back(msgs_[i].info.uid);
    std::string out;
    if (!uids.empty()) {
      auto r = mailbox_->store_flags(selected_, uids, static_cast<postern_flag_op_t>(cmd->store_op), cmd->flags,
                                     cmd->keywords, cmd->unchanged_since);
      if (!r) {
        out = cmd->uid ? refresh_updates() : std::string();
        return Step{out + store_error(r.error(), cmd->tag, "STORE failed"), nullptr};
      }
      std::set<uint32_t> modified(r->modified.begin(), r->modified.end());
      bool new_keywords = false;
      for (const auto& k : cmd->keywords) {
        if (std::none_of(known_keywords_.begin(), known_keywords_.end(), [&](const auto& x) { return iequals(x, k); })) {
          known_keywords_.push_back(k);
          new_keywords = true;
        }
      }
      if (new_keywords) out += keyword_announcement();
      for (const auto& after : r->messages) {
        if (modified.count(after.uid)) continue;
        Msg* m = find_uid(after.uid);
        if (m == nullptr) continue;
        update_message(after);
        const size_t i = static_cast<size_t>(m - msgs_.data());
        if (!cmd->silent) {
          out += flags_fetch(i, cmd->uid);
        } else if (cmd->unchanged_since) {
          // RFC 7162 §3.1.3: .SILENT still reports the new MODSEQ.
          out += "* " + std::to_string(i + 1) + " FETCH (" +
                 (cmd->uid ? "UID " + std::to_string(m->info.uid) + " " : std::string()) + "MODSEQ (" +
                 std::to_string(m->info.modseq) + "))\r\n";
        }
      }
      if (cmd->uid) out += refresh_updates();
      if (!modified.empty()) {
        std::vector<uint32_t> numbers;
        for (uint32_t uid : modified) {
          if (cmd->uid) {
            numbers.push_back(uid);
          } else if (Msg* m = find_uid(uid)) {
            numbers.push_back(static_cast<uint32_t>(m - msgs_.data()) + 1);
          }
        }
        std::sort(numbers.begin(), numbers.end());
        return Step{out + tagged(cmd->tag, "OK", "[MODIFIED " + sequence_set_text(numbers) + "] Conditional STORE failed"),
                    nullptr};
      }
    } else if (cmd->uid) {
      out += refresh_updates();
    }
    return Step{out + tagged(cmd->tag, "OK", done), nullptr};
  });
}

void Session::cmd_search(Command c) {
  if (c.condstore) condstore_ = true;
  auto cmd = std::make_shared<Command>(std::move(c));
  run([this, cmd] {
    const bool load = needs_message(cmd->search);
    std::string hits;
    uint64_t max_modseq = 0;
    const uint32_t max_uid = msgs_.empty() ? 0 : msgs_.back().info.uid;
    for (size_t i = 0; i < msgs_.size(); ++i) {
      const Msg& m = msgs_[i];
      SearchSubject subj;
      subj.msn = static_cast<uint32_t>(i + 1);
      subj.uid = m.info.uid;
      subj.flags = m.info.flags;
      subj.recent = m.recent;
      subj.keywords = &m.info.keywords;
      subj.internal_date = m.info.internal_date;
      subj.size = m.info.size;
      subj.modseq = m.info.modseq;
      subj.max_msn = static_cast<uint32_t>(msgs_.size());
      subj.max_uid = max_uid;
      if (load) {
        const uint32_t uid = m.info.uid;
        subj.load = [this, uid]() -> std::shared_ptr<const ParsedMessage> {
          auto r = mailbox_->read_message(selected_, uid);
          if (!r) return nullptr;
          return ParsedMessage::parse(std::make_shared<const std::string>(std::move(*r)));
        };
      }
      if (!matches(cmd->search, subj)) continue;
      hits += ' ';
      hits += std::to_string(cmd->uid ? m.info.uid : i + 1);
      max_modseq = std::max(max_modseq, m.info.modseq);
    }
    std::string out = "* SEARCH" + hits;
    // RFC 7162 §3.1.5: a search with MODSEQ reports the highest mod-sequence of the hits.
    if (cmd->search_modseq && !hits.empty()) out += " (MODSEQ " + std::to_string(max_modseq) + ")";
    out += "\r\n";
    if (cmd->uid) out += refresh_updates();
    return Step{out + tagged(cmd->tag, "OK", cmd->uid ? "UID SEARCH completed" : "SEARCH completed"), nullptr};
  });
}

void Session::cmd_copy(Command c) {
  const bool move = c.name == "MOVE";
  if (move && read_only_) {
    reply(tagged(c.tag, "NO", "[READ-ONLY] The mailbox is read-only"));
    return;
  }
  auto idx = resolve(c.set, c.uid);
  if (!idx) {
    reply(tagged(c.tag, "BAD", "Invalid message sequence number"));
    return;
  }
  std::vector<uint32_t> uids;
  for (size_t i : *idx) uids.push_back(msgs_[i].info.uid);
  auto cmd = std::make_shared<Command>(std::move(c));
  run([this, cmd, move, uids = std::move(uids)] {
    const std::string verb = (cmd->uid ? "UID " : "") + cmd->name;
    if (uids.empty()) return Step{refresh_updates() + tagged(cmd->tag, "OK", verb + " completed"), nullptr};
    auto r = move ? mailbox_->move(selected_, uids, cmd->mailbox) : mailbox_->copy(selected_, uids, cmd->mailbox);
    if (!r) {
      std::string out = refresh_updates();
      if (r.error().code == POSTERN_ERR_NOT_FOUND)
        return Step{out + tagged(cmd->tag, "NO", "[TRYCREATE] No such mailbox"), nullptr};
      return Step{out + store_error(r.error(), cmd->tag, verb + " failed"), nullptr};
    }
    std::string code;
    if (!r->uids.empty()) {
      std::vector<uint32_t> src, dst;
      for (const auto& [a, b] : r->uids) {
        src.push_back(a);
        dst.push_back(b);
      }
      code = "[COPYUID " + std::to_string(r->uidvalidity) + " " + sequence_set_text(src) + " " +
             sequence_set_text(dst) + "] ";
    }
    if (move) {
      // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE responses.
      std::string out = code.empty() ? std::string() : "* OK " + code + "Moved\r\n";
      out += refresh_updates();
      return Step{out + tagged(cmd->tag, "OK", verb + " completed"), nullptr};
    }
    std::string out = refresh_updates();
    return Step{out + tagged(cmd->tag, "OK", code + verb + " completed"), nullptr};
  });
}

void Session::cmd_idle(const Command& c) {
  line_wait_ = LineWait::Idle;
  line_tag_ = c.tag;
  reader_.set_line_mode(true);
  if (state_ != State::Selected) {
    reply("+ idling\r\n");
    return;
  }
  // Listen for mailbox events first, then report what changed before the
  // client started waiting: a change between the two is reported either way.
  if (config_->idle_waiters) config_->idle_waiters->add(shared_from_this(), account_, selected_);
  run([this] {
    std::string out = "+ idling\r\n" + refresh_updates();
    return Step{std::move(out), nullptr};
  });
  start_idle_timer();
}

void Session::stop_idle_wait() {
  if (idle_timer_ != 0) host_.cancel(idle_timer_);
  idle_timer_ = 0;
  idle_wake_pending_ = false;
  if (config_->idle_waiters) config_->idle_waiters->remove(this);
}

void Session::wake_idle() {
  auto self = shared_from_this();
  stream_.post([self] { self->idle_wake(); });
}

void Session::idle_wake() {
  if (closed_ || line_wait_ != LineWait::Idle || state_ != State::Selected) return;
  if (busy_) {
    idle_wake_pending_ = true;  // finish_command refreshes once more
    return;
  }
  run([this] { return Step{refresh_updates(), nullptr}; });
}

void IdleWaiters::add(const std::shared_ptr<Session>& session, std::string account, std::string folder) {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [&](const Entry& e) { return e.key == session.get(); });
  entries_.push_back(Entry{session.get(), session, std::move(account), std::move(folder)});
}

void IdleWaiters::remove(const Session* session) {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [&](const Entry& e) { return e.key == session; });
}

size_t IdleWaiters::notify(const sdk::MailboxEvent& event) {
  std::vector<std::shared_ptr<Session>> wake;
  {
    std::lock_guard lock(mu_);
    for (const Entry& e : entries_) {
      if (!event.touches(e.account, e.folder)) continue;
      if (auto s = e.session.lock()) wake.push_back(std::move(s));
    }
  }
  for (const auto& s : wake) s->wake_idle();
  return wake.size();
}

void Session::start_idle_timer() {
  std::weak_ptr<Session> weak = shared_from_this();
  idle_timer_ = host_.after(config_->idle_poll, [weak] {
    auto self = weak.lock();
    if (!self) return;
    self->stream_.post([self] { self->idle_poll(); });
  });
}

void Session::idle_poll() {
  idle_timer_ = 0;
  if (closed_ || line_wait_ != LineWait::Idle || state_ != State::Selected) return;
  if (busy_) {
    start_idle_timer();
    return;
  }
  // RFC 2177: updates go out while idling; input waits until the poll is done.
  run([this] { return Step{refresh_updates(), nullptr}; });
  start_idle_timer();
}

}  // namespace postern::imap
