#include "core/smtp/engine.hpp"

#include "core/event/scoring.hpp"
#include "core/log/log.hpp"
#include "core/smtp/auth_command.hpp"
#include "core/smtp/header_edit.hpp"
#include "core/smtp/relay_policy.hpp"
#include "core/smtp/throttle.hpp"

#include <fmt/format.h>

namespace postern::core::smtp {

SmtpEngine::SmtpEngine(std::shared_ptr<const SmtpConfig> cfg, EngineEnvironment env, EngineServices services,
                       event::SessionInfo info, Writer writer)
    : cfg_(std::move(cfg)),
      env_(std::move(env)),
      services_(std::move(services)),
      writer_(std::move(writer)),
      info_(std::move(info)) {}

// ------------------------------------------------------------------ output

void SmtpEngine::reply(const Reply& r) {
  writer_(format_reply(r));
  last_code_ = r.code;
}

void SmtpEngine::reply(int code, std::string_view enhanced, std::string_view text) {
  reply(Reply{code, std::string(enhanced), std::string(text)});
}

void SmtpEngine::error_reply(const Reply& r) {
  reply(r);
  if (++errors_ >= cfg_->max_errors) {
    reply(421, "4.7.0", fmt::format("{} Error: too many errors", env_.server_name));
    close();
  }
}

void SmtpEngine::error_reply(int code, std::string_view enhanced, std::string_view text) {
  error_reply(Reply{code, std::string(enhanced), std::string(text)});
}

bool SmtpEngine::outcome(const event::Outcome& o, std::string_view reject_text) {
  if (o.disconnect) close();
  auto r = outcome_reply(o, reject_text);
  if (!r) return false;
  reply(*r);
  return true;
}

void SmtpEngine::start_stage(event::Stage stage, std::string_view command, bool with_txn, std::string current_rcpt) {
  event::EventData ev;
  ev.session = &info_;
  ev.transaction = with_txn ? &ev_txn_ : nullptr;
  ev.command = std::string(command);
  ev.current_rcpt = std::move(current_rcpt);
  request_ = StageRequest{stage, std::move(ev)};
}

event::EventData SmtpEngine::disconnect_event() {
  event::EventData ev;
  ev.session = &info_;
  return ev;
}

// ------------------------------------------------------------------ session

void SmtpEngine::set_tls(const TlsFacts& tls) {
  tls_ = true;
  info_.tls_protocol = tls.protocol;
  info_.tls_cipher = tls.cipher;
  tls_bits_ = tls.bits;
}

void SmtpEngine::start() {
  started_ = true;
  start_stage(event::Stage::Connect, "", false);
}

void SmtpEngine::refuse(const Reply& r) {
  reply(r);
  close();
}

void SmtpEngine::request_shutdown() {
  shutdown_requested_ = true;
}

void SmtpEngine::input_ended(InputEnd why) {
  if (closing_) return;
  close();
  const std::string timeout_text = fmt::format("{} Error: timeout exceeded", env_.server_name);
  switch (phase_) {
    case Phase::Command:
      if (why == InputEnd::Timeout) {
        log::info("smtp", "session={} peer={} timeout waiting for a command", info_.session_id, info_.peer_ip);
        reply(421, "4.4.2", timeout_text);
      } else if (why == InputEnd::Shutdown) {
        reply(421, "4.3.2", fmt::format("{} Service shutting down", env_.server_name));
      }
      break;
    case Phase::Data:
      log::info("smtp", "qid={} peer={} from=<{}> rcpts={} size={} outcome={}", ev_txn_.queue_id, info_.peer_ip,
                txn_.mail_from, txn_.rcpts.size(), decoder_ ? decoder_->size() : 0,
                why == InputEnd::Timeout ? "timeout-in-data" : "lost-in-data");
      if (why == InputEnd::Timeout) reply(421, "4.4.2", timeout_text);
      break;
    case Phase::Bdat:
      if (why == InputEnd::Timeout) reply(421, "4.4.2", timeout_text);
      break;
    case Phase::AuthResponse:
      // The exchange ends with the connection: no reply (as before the split).
      break;
  }
}

void SmtpEngine::feed(std::string_view data) {
  if (pos_ > 0) {
    buffer_.erase(0, pos_);
    pos_ = 0;
  }
  buffer_.append(data);
  process();
}

SmtpEngine::LineResult SmtpEngine::take_line(std::string& out, size_t max) {
  const size_t lf = buffer_.find('\n', pos_);
  if (lf != std::string::npos) {
    // A line ends at LF (a bare LF too, for commands); `max` counts the CRLF.
    const size_t len = lf - pos_;
    const bool too_long = discarding_ || len + 1 > max;
    if (!too_long) {
      out.assign(buffer_, pos_, len);
      if (!out.empty() && out.back() == '\r') out.pop_back();
    }
    pos_ = lf + 1;
    discarding_ = false;
    discarded_ = 0;
    return too_long ? LineResult::TooLong : LineResult::Ok;
  }
  if (buffer_.size() - pos_ > max) {
    // Over-long line: drop what we have so that memory stays bounded.
    discarding_ = true;
    discarded_ += buffer_.size() - pos_;
    pos_ = buffer_.size();
    if (discarded_ > kLineFloodMax) return LineResult::Flood;
  }
  return LineResult::NeedMore;
}

void SmtpEngine::process() {
  while (!busy() && !closing_) {
    if (phase_ == Phase::Data) {
      if (!feed_data()) break;
      continue;
    }
    if (phase_ == Phase::Bdat) {
      if (!feed_bdat()) break;
      continue;
    }
    const bool auth = phase_ == Phase::AuthResponse;
    if (!auth && shutdown_requested_) {
      reply(421, "4.3.2", fmt::format("{} Service shutting down", env_.server_name));
      close();
      break;
    }
    std::string line;
    const LineResult r = take_line(line, auth ? kAuthLineMax : cfg_->max_line_length);
    if (r == LineResult::NeedMore) break;
    if (r == LineResult::Flood) {
      if (!auth) reply(421, "4.7.0", fmt::format("{} Error: line too long, closing", env_.server_name));
      close();
      break;
    }
    if (auth) {
      // An over-long response is a cancelled exchange.
      auth_step(sasl_->feed(r == LineResult::TooLong ? std::string_view("*") : std::string_view(line)));
      continue;
    }
    if (r == LineResult::TooLong) {
      // RFC 5321 §4.5.3.1.4: reply 500 and keep the session.
      error_reply(500, "5.5.2", "Error: line too long");
      continue;
    }
    command(line);
  }
}

void SmtpEngine::reset_transaction() {
  txn_ = MailTransaction{};
  ev_txn_ = event::Transaction{};
  bdat_ = BdatAssembler{};
  decoder_.reset();
}

// ------------------------------------------------------------------ commands

void SmtpEngine::command(std::string_view line) {
  if (line.find('\0') != std::string_view::npos) {
    error_reply(500, "5.5.2", "Error: NUL in command");
    return;
  }
  const Command c = split_command(line);
  const std::string& verb = c.verb;
  const std::string_view arg = c.arg;
  if (verb == "EHLO" || verb == "HELO") return cmd_helo(line, verb == "EHLO", arg);
  if (verb == "MAIL") return cmd_mail(line, arg);
  if (verb == "RCPT") return cmd_rcpt(line, arg);
  if (verb == "DATA") return cmd_data(line, arg);
  if (verb == "BDAT") return cmd_bdat(line, arg);
  if (verb == "RSET") {
    if (!arg.empty()) return error_reply(501, "5.5.4", "Syntax: RSET");
    reset_transaction();
    return reply(250, "2.0.0", "Ok");
  }
  if (verb == "NOOP") return reply(250, "2.0.0", "Ok");
  if (verb == "QUIT") {
    reply(221, "2.0.0", "Bye");
    return close();
  }
  if (verb == "HELP") {
    return reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH");
  }
  if (verb == "VRFY") {
    // Address verification leaks the account list (RFC 5321 §7.3): 252 for everyone.
    if (arg.empty()) return error_reply(501, "5.5.4", "Syntax: VRFY address");
    return reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
  }
  if (verb == "EXPN") return error_reply(502, "5.5.1", "Error: EXPN not supported");
  if (verb == "STARTTLS") return starttls(arg);
  if (verb == "AUTH") return cmd_auth(arg);
  if (verb == "GET" || verb == "POST" || verb == "CONNECT" || verb == "HEAD" || verb == "PUT" ||
      starts_with_ci(verb, "USER")) {
    // An HTTP or POP client (or a cross-protocol attack): do not keep talking.
    reply(554, "5.7.0", "Error: non-SMTP command, closing");
    return close();
  }
  error_reply(500, "5.5.1", "Error: command not recognized");
}

void SmtpEngine::stage_done(const event::Outcome& o) {
  const auto* req = std::get_if<StageRequest>(&request_);
  if (req == nullptr) return;
  const event::Stage stage = req->stage;
  request_ = std::monostate{};
  switch (stage) {
    case event::Stage::Connect:
      if (o.verdict == event::Verdict::Reject || o.verdict == event::Verdict::TempFail) {
        event::Outcome refusal = o;
        refusal.disconnect = true;
        if (refusal.verdict == event::Verdict::Reject && refusal.code == 0) refusal.code = 554;
        outcome(refusal, "Access denied");
        close();
        break;
      }
      reply(220, "", fmt::format("{} ESMTP Postern", env_.server_name));
      break;
    case event::Stage::Helo: helo_stage_done(o); break;
    case event::Stage::Auth: auth_stage_done(o); break;
    case event::Stage::MailFrom: mail_stage_done(o); break;
    case event::Stage::RcptTo: rcpt_stage_done(o); break;
    case event::Stage::DataStart: data_start_done(o); break;
    case event::Stage::Headers: headers_stage_done(o); break;
    case event::Stage::DataEnd: data_end_stage_done(o); break;
    case event::Stage::Queued: end_transaction(); break;
    default: break;
  }
  process();
}

void SmtpEngine::cmd_helo(std::string_view line, bool ehlo, std::string_view arg) {
  const auto domain = helo_argument(arg);
  if (!domain) return error_reply(501, "5.5.4", ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
  // RFC 5321 §4.1.4: EHLO resets the state like RSET.
  reset_transaction();
  previous_helo_ = info_.helo;
  info_.helo = std::string(*domain);
  pending_ehlo_ = ehlo;
  start_stage(event::Stage::Helo, line, false);
}

void SmtpEngine::helo_stage_done(const event::Outcome& o) {
  if (outcome(o)) {
    info_.helo = previous_helo_;
    return;
  }
  esmtp_ = pending_ehlo_;
  if (!esmtp_) return reply(250, "", env_.server_name);
  std::vector<std::string> lines{fmt::format("{} Hello {} [{}]", env_.server_name, info_.helo, info_.peer_ip),
                                 "PIPELINING",
                                 fmt::format("SIZE {}", cfg_->max_message_size),
                                 "8BITMIME",
                                 "SMTPUTF8",
                                 "ENHANCEDSTATUSCODES",
                                 "CHUNKING",
                                 "DSN"};
  if (cfg_->vrfy) lines.push_back("VRFY");
  if (offer_starttls()) lines.push_back("STARTTLS");
  if (offer_auth()) lines.push_back("AUTH PLAIN LOGIN");
  lines.push_back("HELP");
  writer_(format_reply_lines(250, lines));
  last_code_ = 250;
}

void SmtpEngine::starttls(std::string_view arg) {
  if (tls_) return error_reply(554, "5.5.1", "Error: TLS already active");
  if (!offer_starttls()) return error_reply(502, "5.5.1", "Error: command not implemented");
  if (!arg.empty()) return error_reply(501, "5.5.4", "Syntax: STARTTLS");
  reply(220, "2.0.0", "Ready to start TLS");
  // CVE-2011-0411: nothing the client sent before the handshake may be read as a command.
  buffer_.clear();
  pos_ = 0;
  discarding_ = false;
  discarded_ = 0;
  request_ = StartTlsRequest{};
}

void SmtpEngine::tls_started(const TlsFacts& tls) {
  if (!std::holds_alternative<StartTlsRequest>(request_)) return;
  request_ = std::monostate{};
  set_tls(tls);
  // RFC 3207 §4.2: forget everything learnt before TLS.
  reset_transaction();
  info_.helo.clear();
  info_.auth_user.clear();
  esmtp_ = false;
  process();
}

// ------------------------------------------------------------------ MAIL

void SmtpEngine::cmd_mail(std::string_view line, std::string_view arg) {
  if (info_.helo.empty()) return error_reply(503, "5.5.1", "Error: send HELO/EHLO first");
  if (txn_.active) return error_reply(503, "5.5.1", "Error: nested MAIL command");
  if (env_.require_auth && info_.auth_user.empty()) return error_reply(530, "5.7.0", "Authentication required");
  if (!starts_with_ci(arg, "FROM:")) return error_reply(501, "5.5.4", "Syntax: MAIL FROM:<address>");
  if (messages_ >= cfg_->max_messages_per_session) {
    reply(421, "4.7.0", fmt::format("{} Error: too many messages in this session", env_.server_name));
    return close();
  }
  MailFrom m;
  if (auto err = parse_mail_from(arg.substr(5), m)) return error_reply(*err);
  if (m.declared_size > cfg_->max_message_size) return reply(too_big_reply());
  const auto free = services_.free_bytes ? services_.free_bytes() : std::nullopt;
  if (free && (*free < cfg_->min_free_disk || *free - cfg_->min_free_disk < m.declared_size)) {
    log::warn("smtp", "session={} spool file system low: {} octets free", info_.session_id, *free);
    return reply(452, "4.3.1", "Insufficient system storage");
  }
  if (!info_.auth_user.empty() && !m.address.empty() && cfg_->auth &&
      !cfg_->auth->owns_address(info_.auth_user, m.address)) {
    return reply(553, "5.7.1",
                 fmt::format("<{}>: Sender address rejected: not owned by auth user {}", m.address, info_.auth_user));
  }
  ev_txn_ = event::Transaction{};
  ev_txn_.queue_id = services_.new_queue_id();
  ev_txn_.mail_from = m.address;
  ev_txn_.smtputf8 = m.smtputf8;  // a hook's sender change may use UTF-8 only then
  ev_txn_.max_message_size = cfg_->max_message_size;
  pending_mail_ = std::move(m);
  start_stage(event::Stage::MailFrom, line, true);
}

void SmtpEngine::mail_stage_done(const event::Outcome& o) {
  if (outcome(o)) {
    log::info("smtp", "qid={} peer={} from=<{}> rcpts=0 size=0 outcome=mail-rejected:{}", ev_txn_.queue_id,
              info_.peer_ip, pending_mail_.address, last_code_);
    ev_txn_ = event::Transaction{};
    return;
  }
  MailTransaction t;
  t.active = true;
  t.mail_from = pending_mail_.address;
  t.declared_size = pending_mail_.declared_size;
  t.body = pending_mail_.body;
  t.smtputf8 = pending_mail_.smtputf8;
  t.ret = pending_mail_.ret;
  t.envid = pending_mail_.envid;
  t.received_at = services_.wall_clock ? services_.wall_clock() : std::chrono::system_clock::now();
  txn_ = std::move(t);
  reply(250, "2.1.0", "Ok");
}

// ------------------------------------------------------------------ RCPT

void SmtpEngine::cmd_rcpt(std::string_view line, std::string_view arg) {
  if (!txn_.active) return error_reply(503, "5.5.1", "Error: need MAIL command");
  if (!starts_with_ci(arg, "TO:")) return error_reply(501, "5.5.4", "Syntax: RCPT TO:<address>");
  ++txn_.rcpt_attempts;
  pending_command_ = std::string(line);
  pending_arg_ = std::string(arg.substr(3));
  const auto delay = tarpit_delay(*cfg_, txn_.rcpt_attempts, may_relay(env_.trusted, info_.auth_user));
  if (delay.count() > 0) {
    // The queued replies go out first; the client waits for this one.
    delay_for_ = DelayFor::Tarpit;
    request_ = DelayRequest{delay};
    return;
  }
  rcpt_continue();
}

void SmtpEngine::rcpt_continue() {
  if (txn_.rcpts.size() >= cfg_->max_recipients) return reply(452, "4.5.3", "Error: too many recipients");
  const std::string_view postmaster_domain =
      cfg_->local_domains.empty() ? std::string_view(env_.server_name) : std::string_view(cfg_->local_domains.front());
  RcptTo r;
  if (auto err = parse_rcpt_to(pending_arg_, txn_.smtputf8, postmaster_domain, r)) return error_reply(*err);
  pending_rcpt_ = std::move(r);
  if (needs_directory(*cfg_, pending_rcpt_)) {
    request_ = RecipientRequest{pending_rcpt_.mailbox.str(), txn_.mail_from};
    return;
  }
  rcpt_decide(nullptr);
}

void SmtpEngine::recipient_checked(RcptCheck check) {
  if (!std::holds_alternative<RecipientRequest>(request_)) return;
  request_ = std::monostate{};
  rcpt_decide(&check);
  process();
}

void SmtpEngine::rcpt_decide(const RcptCheck* check) {
  if (auto refusal = recipient_refusal(*cfg_, pending_rcpt_, may_relay(env_.trusted, info_.auth_user), check)) {
    return error_reply(*refusal);
  }
  pending_rcpt_.params.address = pending_rcpt_.mailbox.str();
  start_stage(event::Stage::RcptTo, pending_command_, true, pending_rcpt_.params.address);
}

void SmtpEngine::rcpt_stage_done(const event::Outcome& o) {
  const std::string& address = pending_rcpt_.params.address;
  // A recipient rejected by a hook does not end the session.
  if (outcome(o, fmt::format("<{}>: Recipient address rejected", clean_text(address)))) return;
  ev_txn_.recipients.push_back(address);
  txn_.rcpts.push_back(pending_rcpt_.params);
  reply(250, "2.1.5", "Ok");
}

void SmtpEngine::delay_done() {
  if (!std::holds_alternative<DelayRequest>(request_)) return;
  request_ = std::monostate{};
  const DelayFor what = delay_for_;
  delay_for_ = DelayFor::None;
  if (what == DelayFor::Tarpit) rcpt_continue();
  else if (what == DelayFor::AuthFailure) error_reply(auth_failed_reply());
  else if (what == DelayFor::AuthPenalty && penalized_) {
    request_ = std::move(*penalized_);
    penalized_.reset();
  }
  process();
}

// ------------------------------------------------------------------ DATA / BDAT

bool SmtpEngine::data_precheck() {
  if (!txn_.active) {
    error_reply(503, "5.5.1", "Error: need MAIL command");
    return false;
  }
  if (txn_.rcpts.empty()) {
    // RFC 2920 §3.1: with PIPELINING, "no valid recipients" after failed RCPTs.
    error_reply(txn_.rcpt_attempts ? 554 : 503, "5.5.1",
                txn_.rcpt_attempts ? "Error: no valid recipients" : "Error: need RCPT command");
    return false;
  }
  return true;
}

void SmtpEngine::cmd_data(std::string_view line, std::string_view arg) {
  if (!arg.empty()) return error_reply(501, "5.5.4", "Syntax: DATA");
  if (txn_.bdat) return error_reply(503, "5.5.1", "Error: DATA after BDAT");
  if (!data_precheck()) return;
  pending_bdat_ = false;
  start_stage(event::Stage::DataStart, line, true);
}

void SmtpEngine::cmd_bdat(std::string_view line, std::string_view arg) {
  const auto b = parse_bdat(arg);
  if (!b) {
    // Without a valid size we cannot know where the chunk ends: the session cannot go on.
    reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
    return close();
  }
  bdat_command_ = *b;
  if (!txn_.bdat_failed && !txn_.bdat) {
    if (!data_precheck()) {
      txn_.bdat_failed = true;
      return begin_bdat_chunk(false);
    }
    pending_bdat_ = true;
    return start_stage(event::Stage::DataStart, line, true);
  }
  if (txn_.bdat_failed) reply(503, "5.5.1", "Error: transaction already failed");
  begin_bdat_chunk(!txn_.bdat_failed);
}

void SmtpEngine::data_start_done(const event::Outcome& o) {
  const bool refused = outcome(o);
  if (pending_bdat_) {
    if (refused) txn_.bdat_failed = true;
    else txn_.bdat = true;
    // RFC 3030 §3: the chunk's octets are read whatever happens; they are not commands.
    return begin_bdat_chunk(!refused);
  }
  if (refused) return;
  reply(354, "", "End data with <CR><LF>.<CR><LF>");
  decoder_.emplace(cfg_->max_message_size, cfg_->bare_line_ending);
  phase_ = Phase::Data;
}

void SmtpEngine::begin_bdat_chunk(bool keep) {
  bdat_keep_ = keep;
  bdat_.start_chunk(bdat_command_.size, keep);
  phase_ = Phase::Bdat;
}

bool SmtpEngine::feed_data() {
  pos_ += decoder_->feed(std::string_view(buffer_).substr(pos_));
  if (!decoder_->done()) return false;
  phase_ = Phase::Command;
  if (auto refusal = data_refusal(*decoder_)) {
    log_outcome(refusal->size, refusal->outcome);
    reply(refusal->reply);
    reset_transaction();
    return true;
  }
  std::string body = decoder_->take_message();
  decoder_.reset();
  finish_message(std::move(body));
  return true;
}

bool SmtpEngine::feed_bdat() {
  pos_ += bdat_.feed(std::string_view(buffer_).substr(pos_), cfg_->max_message_size);
  if (!bdat_.chunk_done()) return false;
  phase_ = Phase::Command;
  const bool last = bdat_command_.last;
  bool ok = bdat_keep_;
  if (ok && bdat_.size() > cfg_->max_message_size) {
    log_outcome(bdat_.size(), "too-big");
    reply(too_big_reply());
    txn_.bdat_failed = true;
    bdat_.drop();
    ok = false;
  }
  if (!ok) {
    if (last) reset_transaction();
    return true;
  }
  if (!last) {
    reply(250, "2.0.0", fmt::format("{} octets received", bdat_command_.size));
    return true;
  }
  std::string message;
  if (auto refusal = bdat_.finish(cfg_->bare_line_ending, message)) {
    log_outcome(refusal->size, refusal->outcome);
    reply(refusal->reply);
    reset_transaction();
    return true;
  }
  finish_message(std::move(message));
  return true;
}

// ------------------------------------------------------------------ end of data

void SmtpEngine::log_outcome(uint64_t size, std::string_view what) const {
  log::info("smtp", "qid={} peer={} from=<{}> rcpts={} size={} outcome={}", ev_txn_.queue_id, info_.peer_ip,
            txn_.mail_from, txn_.rcpts.size(), size, what);
}

void SmtpEngine::finish_message(std::string body) {
  message_size_ = body.size();
  // RFC 5321 §6.3: loop detection by counting Received: fields.
  if (count_header_fields(body, "Received") > cfg_->max_hops) {
    log_outcome(message_size_, "too-many-hops");
    reply(554, "5.4.0", "Error: too many hops");
    return end_transaction();
  }
  message_ = received_header(info_, txn_, ev_txn_.queue_id, Transport{esmtp_, tls_, tls_bits_});
  message_ += body;
  body.clear();
  body.shrink_to_fit();
  subdir_ = "incoming";
  discard_ = false;
  // The parsed message is for the hooks (and the score policy, which only has
  // scores when some plugin gave them): without plugins nobody reads it.
  if (env_.parse_for_hooks) {
    request_ = ParseRequest{&message_};
    return;
  }
  start_stage(event::Stage::Headers, "", true);
}

void SmtpEngine::message_parsed(std::shared_ptr<const mail::Message> message) {
  if (!std::holds_alternative<ParseRequest>(request_)) return;
  request_ = std::monostate{};
  ev_txn_.message = std::move(message);
  start_stage(event::Stage::Headers, "", true);
}

void SmtpEngine::headers_stage_done(const event::Outcome& o) {
  if (outcome(o)) {
    log_outcome(message_size_, o.verdict == event::Verdict::Reject ? "rejected" : "tempfailed");
    return end_transaction();
  }
  if (o.verdict == event::Verdict::Discard) discard_ = true;
  if (o.verdict == event::Verdict::Quarantine) subdir_ = "quarantine";
  if (discard_) return accepted("discarded");
  start_stage(event::Stage::DataEnd, "", true);
}

void SmtpEngine::data_end_stage_done(event::Outcome o) {
  // No hook decided: the score total decides (an explicit verdict outranks scores).
  if (o.verdict == event::Verdict::Continue) o = event::apply_score_policy(cfg_->scoring, info_, ev_txn_);
  if (outcome(o)) {
    log_outcome(message_size_, fmt::format("{}{}", o.verdict == event::Verdict::Reject ? "rejected" : "tempfailed",
                                           o.decided_by.empty() ? "" : ":" + o.decided_by));
    return end_transaction();
  }
  if (o.verdict == event::Verdict::Discard) return accepted("discarded");
  if (o.verdict == event::Verdict::Quarantine) subdir_ = "quarantine";
  spool_message();
}

void SmtpEngine::accepted(std::string_view what) {
  ++messages_;
  log_outcome(message_size_, what);
  reply(250, "2.0.0", fmt::format("Ok: queued as {}", ev_txn_.queue_id));
  end_transaction();
}

void SmtpEngine::spool_message() {
  queue::Envelope env = build_envelope(txn_, ev_txn_, info_);
  if (env.recipients.empty()) return accepted("discarded-no-recipients");
  // ABI 1.3 body replacement first (the header section stays, milter's
  // REPLBODY), then the header edits on that header section.
  if (ev_txn_.body_replacement) {
    log::info("smtp", "qid={} body replaced by {} ({} octets)", env.queue_id, ev_txn_.body_replaced_by,
              ev_txn_.body_replacement->size());
    message_ = replace_body(message_, *ev_txn_.body_replacement);
  }
  if (!ev_txn_.header_edits.empty()) message_ = apply_header_edits(message_, ev_txn_.header_edits);
  request_ = SpoolRequest{std::move(env), &message_, subdir_};
}

void SmtpEngine::spooled(std::string_view error) {
  if (!std::holds_alternative<SpoolRequest>(request_)) return;
  request_ = std::monostate{};
  if (!error.empty()) {
    log::error("smtp", "qid={} peer={} spool write failed: {}", ev_txn_.queue_id, info_.peer_ip, error);
    log_outcome(message_size_, "spool-error");
    reply(451, "4.3.0", "Error: queue file write error");
    end_transaction();
  } else {
    ++messages_;
    reply(250, "2.0.0", fmt::format("Ok: queued as {}", ev_txn_.queue_id));
    log_outcome(message_size_, subdir_ == "incoming" ? "queued" : "quarantined");
    message_.clear();
    message_.shrink_to_fit();
    // Observers see the transaction once more; it ends when they are done.
    start_stage(event::Stage::Queued, "", true);
  }
  process();
}

void SmtpEngine::end_transaction() {
  message_.clear();
  message_.shrink_to_fit();
  reset_transaction();
}

// ------------------------------------------------------------------ AUTH

void SmtpEngine::cmd_auth(std::string_view arg) {
  AuthContext ctx;
  ctx.enabled = cfg_->auth != nullptr;
  ctx.tls = tls_;
  ctx.cleartext_allowed = env_.cleartext_auth;
  ctx.ehlo = !info_.helo.empty() && esmtp_;
  ctx.authenticated = !info_.auth_user.empty();
  ctx.in_transaction = txn_.active;
  if (auto refusal = auth_refusal(ctx)) return error_reply(*refusal);
  if (services_.login_throttle && services_.login_throttle->ip_locked(info_.peer_ip, monotonic_now())) {
    return reply(auth_locked_reply());
  }
  const size_t sp = arg.find(' ');
  const auto mechanism = mail::parse_sasl_mechanism(arg.substr(0, sp));
  if (!mechanism) return error_reply(504, "5.5.4", "Unrecognized authentication type");
  std::optional<std::string_view> initial;
  if (sp != std::string_view::npos) initial = arg.substr(sp + 1);
  mail::SaslLimits limits;
  limits.max_line = kAuthLineMax;
  sasl_.emplace(*mechanism, initial, limits);
  sasl_login_.clear();
  auth_step(sasl_->start());
}

void SmtpEngine::auth_step(mail::SaslStep step) {
  using Kind = mail::SaslStep::Kind;
  if (step.kind == Kind::Challenge) {
    reply(334, "", step.challenge);
    phase_ = Phase::AuthResponse;
    return;
  }
  phase_ = Phase::Command;
  const std::string mechanism(mail::sasl_mechanism_name(sasl_->mechanism()));
  sasl_.reset();
  if (step.kind == Kind::Credentials) {
    sasl_mechanism_ = mechanism;
    sasl_login_ = step.credentials.authcid;
    PasswordRequest check{std::move(step.credentials.authcid), std::move(step.credentials.password)};
    // Like Dovecot's auth penalty: the address first waits out what its earlier failures
    // still owe, so dropping the connection instead of waiting for the 535 and guessing on
    // another connection gains nothing.
    const auto penalty = services_.login_throttle
                             ? services_.login_throttle->penalty(info_.peer_ip, monotonic_now())
                             : std::chrono::milliseconds(0);
    if (penalty.count() > 0) {
      penalized_ = std::move(check);
      delay_for_ = DelayFor::AuthPenalty;
      request_ = DelayRequest{penalty};
      return;
    }
    request_ = std::move(check);
    return;
  }
  if (auto r = sasl_error_reply(step.error)) return error_reply(*r);
  auth_failed();
}

void SmtpEngine::password_checked(std::optional<std::string> user) {
  if (!std::holds_alternative<PasswordRequest>(request_)) return;
  request_ = std::monostate{};
  if (!user) {
    auth_failed();
  } else {
    info_.auth_user = std::move(*user);
    start_stage(event::Stage::Auth, "AUTH " + sasl_mechanism_, false);
  }
  process();
}

void SmtpEngine::auth_failed() {
  ++auth_failures_;
  log::warn("smtp", "session={} peer={} auth failed user={}", info_.session_id, info_.peer_ip, clean_text(sasl_login_));
  std::chrono::milliseconds delay{0};
  if (services_.login_throttle) {
    delay = services_.login_throttle->failure(info_.peer_ip, sasl_login_, auth_failures_, monotonic_now()).delay;
  }
  if (delay.count() > 0) {
    // A growing delay makes guessing slow; the failure is answered after it.
    delay_for_ = DelayFor::AuthFailure;
    request_ = DelayRequest{delay};
    return;
  }
  error_reply(auth_failed_reply());
}

void SmtpEngine::auth_stage_done(const event::Outcome& o) {
  if (outcome(o, "Authentication rejected by policy")) {
    info_.auth_user.clear();
    return;
  }
  auth_failures_ = 0;
  if (services_.login_throttle) services_.login_throttle->success(sasl_login_, monotonic_now());
  log::info("smtp", "session={} peer={} auth user={} mech={}", info_.session_id, info_.peer_ip, info_.auth_user,
            sasl_mechanism_);
  reply(235, "2.7.0", "Authentication successful");
}

std::chrono::steady_clock::time_point SmtpEngine::monotonic_now() const {
  return services_.monotonic_clock ? services_.monotonic_clock() : std::chrono::steady_clock::now();
}

}  // namespace postern::core::smtp
