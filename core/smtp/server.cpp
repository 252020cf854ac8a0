#include "core/smtp/server.hpp"

#include "core/event/scoring.hpp"

#include "core/log/log.hpp"
#include "core/mime/mime.hpp"
#include "core/queue/spool.hpp"
#include "core/smtp/address.hpp"
#include "core/smtp/auth.hpp"
#include "core/smtp/data_decoder.hpp"
#include "core/smtp/header_edit.hpp"
#include "core/tls/tls_context.hpp"
#include "core/util/offload.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <ctime>
#include <limits>
#include <list>
#include <mutex>
#include <unordered_map>

namespace postern::core::smtp {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;

class Session;

struct ServerState {
  ServerState(net::io_context& io_, const config::Listener& l, std::shared_ptr<const SmtpConfig> c,
              event::ChainProvider ch, queue::Spool& s, std::shared_ptr<tls::TlsContext> t, std::string name)
      : io(io_), listener(l), cfg(std::move(c)), chains(std::move(ch)), spool(s), tls(std::move(t)),
        server_name(std::move(name)), acceptor(net::make_strand(io_)) {}

  net::io_context& io;
  config::Listener listener;
  std::shared_ptr<const SmtpConfig> cfg;  // guarded by mu
  event::ChainProvider chains;
  queue::Spool& spool;
  std::shared_ptr<tls::TlsContext> tls;
  std::string server_name;
  tcp::acceptor acceptor;
  net::thread_pool auth_pool{1};  // password hashing is slow on purpose: keep it off the I/O threads
  std::atomic<bool> stopping{false};
  std::atomic<uint16_t> port{0};
  std::atomic<uint64_t> session_counter{0};

  mutable std::mutex mu;
  size_t active = 0;
  std::unordered_map<std::string, size_t> per_ip;
  std::list<std::weak_ptr<Session>> sessions;
  struct AuthFailures {
    size_t count = 0;
    Clock::time_point first{};
    Clock::time_point locked_until{};
  };
  std::unordered_map<std::string, AuthFailures> auth_failures;

  std::shared_ptr<const SmtpConfig> config() const {
    std::lock_guard lock(mu);
    return cfg;
  }

  ~ServerState() { auth_pool.join(); }
};

namespace {

constexpr size_t kAuthLineMax = 12288;  // RFC 4954 §4
constexpr size_t kReadChunk = 4096;

std::string rfc5322_date(std::chrono::system_clock::time_point tp) {
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} +0000", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// Plugin-supplied reply text goes on the wire: no CR/LF/controls.
std::string clean_text(std::string_view text) {
  std::string out;
  for (unsigned char c : text) out += (c < 32 || c == 127) ? ' ' : static_cast<char>(c);
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

struct TxnState {
  bool active = false;
  std::string mail_from;
  std::vector<queue::EnvelopeRecipient> rcpts;
  size_t rcpt_attempts = 0;
  std::string envid;
  std::string ret;
  queue::BodyType body = queue::BodyType::SevenBit;
  bool smtputf8 = false;
  uint64_t declared_size = 0;
  // BDAT (RFC 3030)
  bool bdat = false;
  bool bdat_failed = false;
  std::string bdat_data;
  uint64_t bdat_size = 0;
};

}  // namespace

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ServerState> srv, tcp::socket sock)
      : srv_(std::move(srv)),
        cfg_(srv_->config()),
        plain_(std::move(sock)),
        watchdog_(plain_->get_executor()),
        delay_timer_(plain_->get_executor()) {
    watchdog_.expires_at(Clock::time_point::max());
  }

  net::any_io_executor executor() { return watchdog_.get_executor(); }

  static net::awaitable<void> run(std::shared_ptr<Session> self) {
    net::co_spawn(self->executor(), watchdog(self), net::detached);
    try {
      co_await self->serve();
    } catch (const std::exception& e) {
      log::error("smtp", "session={} peer={} internal error: {}", self->info_.session_id, self->info_.peer_ip, e.what());
    }
    co_await self->finish();
  }

  /** Any thread: makes the session answer 421 and close at its next read. */
  void shutdown() {
    net::post(executor(), [self = shared_from_this()] {
      self->shutting_down_ = true;
      self->cancel_io();
    });
  }

 private:
  // ---------------------------------------------------------------- I/O

  tcp::socket& lowest() { return tls_ ? tls_->next_layer() : *plain_; }

  void cancel_io() {
    boost::system::error_code ec;
    lowest().cancel(ec);
  }

  void set_deadline(std::chrono::milliseconds d) {
    deadline_ = Clock::now() + d;
    if (deadline_ < watchdog_.expiry()) watchdog_.expires_at(deadline_);
  }

  static net::awaitable<void> watchdog(std::shared_ptr<Session> self) {
    while (!self->closed_) {
      co_await self->watchdog_.async_wait(net::as_tuple(net::use_awaitable));
      if (self->closed_) break;
      if (Clock::now() >= self->deadline_) {
        self->timed_out_ = true;
        self->deadline_ = Clock::time_point::max();
        self->watchdog_.expires_at(Clock::time_point::max());
        self->cancel_io();
      } else {
        self->watchdog_.expires_at(self->deadline_);
      }
    }
  }

  net::awaitable<bool> write_raw(std::string_view data) {
    if (closed_ || data.empty()) co_return !closed_;
    boost::system::error_code ec;
    if (tls_) std::tie(ec, std::ignore) = co_await net::async_write(*tls_, net::buffer(data), net::as_tuple(net::use_awaitable));
    else std::tie(ec, std::ignore) = co_await net::async_write(*plain_, net::buffer(data), net::as_tuple(net::use_awaitable));
    if (ec) {
      io_error_ = true;
      co_return false;
    }
    co_return true;
  }

  net::awaitable<bool> flush() {
    if (out_.empty()) co_return !io_error_;
    std::string data = std::move(out_);
    out_.clear();
    if (deadline_ == Clock::time_point::max() || deadline_ < Clock::now() + 1s) set_deadline(cfg_->command_timeout);
    const bool ok = co_await write_raw(data);
    co_return ok;
  }

  /** Reads more octets into inbuf_ (flushing pending replies first). */
  net::awaitable<bool> fill() {
    if (!co_await flush()) co_return false;
    // A shutdown or timeout that fired between two operations cancelled nothing:
    // check before starting the read (both run on this strand).
    if (shutting_down_ || timed_out_) co_return false;
    if (rpos_ > 0) {
      inbuf_.erase(0, rpos_);
      rpos_ = 0;
    }
    const size_t old = inbuf_.size();
    inbuf_.resize(old + kReadChunk);
    boost::system::error_code ec;
    size_t n = 0;
    auto buf = net::buffer(inbuf_.data() + old, kReadChunk);
    if (tls_) std::tie(ec, n) = co_await tls_->async_read_some(buf, net::as_tuple(net::use_awaitable));
    else std::tie(ec, n) = co_await plain_->async_read_some(buf, net::as_tuple(net::use_awaitable));
    inbuf_.resize(old + n);
    if (ec) {
      io_error_ = true;
      co_return false;
    }
    co_return true;
  }

  enum class Line { Ok, TooLong, Flood, Closed };

  /** One line without its CRLF (a bare LF also ends a command line). */
  net::awaitable<Line> read_line(std::string& out, size_t max) {
    size_t discarded = 0;
    bool discarding = false;
    for (;;) {
      size_t lf = inbuf_.find('\n', rpos_);
      if (lf != std::string::npos) {
        const size_t len = lf - rpos_;
        const bool too_long = discarding || len + 1 > max;
        if (!too_long) {
          out.assign(inbuf_, rpos_, len);
          if (!out.empty() && out.back() == '\r') out.pop_back();
        }
        rpos_ = lf + 1;
        co_return too_long ? Line::TooLong : Line::Ok;
      }
      if (inbuf_.size() - rpos_ > max) {
        // Over-long line: drop what we have so that memory stays bounded.
        discarding = true;
        discarded += inbuf_.size() - rpos_;
        rpos_ = inbuf_.size();
        if (discarded > 64 * 1024) co_return Line::Flood;
      }
      if (!co_await fill()) co_return Line::Closed;
    }
  }

  void reply(int code, std::string_view enhanced, std::string_view text) {
    if (enhanced.empty()) out_ += fmt::format("{} {}\r\n", code, text);
    else out_ += fmt::format("{} {} {}\r\n", code, enhanced, text);
    last_code_ = code;
  }

  void reply_lines(int code, const std::vector<std::string>& lines) {
    for (size_t i = 0; i < lines.size(); ++i)
      out_ += fmt::format("{}{}{}\r\n", code, i + 1 == lines.size() ? ' ' : '-', lines[i]);
    last_code_ = code;
  }

  /** Replies and counts a protocol error; true when the error limit closes the session. */
  bool error_reply(int code, std::string_view enhanced, std::string_view text) {
    reply(code, enhanced, text);
    if (++errors_ >= cfg_->max_errors) {
      reply(421, "4.7.0", fmt::format("{} Error: too many errors", srv_->server_name));
      close_after_reply_ = true;
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- events

  event::EventData make_event(std::string_view command, bool with_txn = true) {
    event::EventData ev;
    ev.session = &info_;
    ev.transaction = with_txn ? &ev_txn_ : nullptr;
    ev.command = std::string(command);
    return ev;
  }

  net::awaitable<event::Outcome> run_stage(event::Stage stage, event::EventData& ev) {
    if (!chain_) co_return event::Outcome{};
    try {
      event::Outcome o = co_await chain_->run(stage, ev);
      co_return o;
    } catch (const std::exception& e) {
      log::error("smtp", "session={} stage={} chain failed: {}", info_.session_id, event::stage_name(stage), e.what());
      event::Outcome o;
      o.verdict = event::Verdict::TempFail;
      co_return o;
    }
  }

  /**
   * Queues the reply a Reject/TempFail outcome asks for (and notes a disconnect).
   * @return true when the outcome decided (the caller stops), false to go on.
   */
  bool outcome_reply(const event::Outcome& o, std::string_view reject_text = "Rejected by policy") {
    if (o.disconnect) close_after_reply_ = true;
    if (o.verdict == event::Verdict::Reject) {
      int code = (o.code >= 500 && o.code < 600) ? o.code : 550;
      std::string enh = (!o.enhanced.empty() && o.enhanced[0] == '5') ? o.enhanced : "5.7.1";
      reply(code, enh, o.text.empty() ? std::string(reject_text) : clean_text(o.text));
      return true;
    }
    if (o.verdict == event::Verdict::TempFail) {
      int code = (o.code >= 400 && o.code < 500) ? o.code : 451;
      if (o.disconnect) code = 421;
      std::string enh = (!o.enhanced.empty() && o.enhanced[0] == '4') ? o.enhanced : "4.7.1";
      reply(code, enh, o.text.empty() ? std::string("Try again later") : clean_text(o.text));
      return true;
    }
    return false;
  }

  void reset_transaction() {
    txn_ = TxnState{};
    ev_txn_ = event::Transaction{};
  }

  // ---------------------------------------------------------------- session

  bool admit() {
    std::lock_guard lock(srv_->mu);
    size_t& n = srv_->per_ip[info_.peer_ip];
    if (srv_->active >= cfg_->max_sessions || n >= cfg_->max_sessions_per_ip) {
      if (n == 0) srv_->per_ip.erase(info_.peer_ip);
      return false;
    }
    ++n;
    ++srv_->active;
    admitted_ = true;
    srv_->sessions.push_back(weak_from_this());
    registry_it_ = std::prev(srv_->sessions.end());
    return true;
  }

  void leave() {
    if (!admitted_) return;
    std::lock_guard lock(srv_->mu);
    --srv_->active;
    auto it = srv_->per_ip.find(info_.peer_ip);
    if (it != srv_->per_ip.end() && --it->second == 0) srv_->per_ip.erase(it);
    srv_->sessions.erase(registry_it_);
    admitted_ = false;
  }

  net::awaitable<void> finish() {
    if (started_ && chain_) {
      auto ev = make_event("", false);
      co_await run_stage(event::Stage::Disconnect, ev);
    }
    closed_ = true;
    watchdog_.cancel();
    delay_timer_.cancel();
    boost::system::error_code ec;
    lowest().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close(ec);
    leave();
    log::debug("smtp", "session={} peer={} disconnect messages={}", info_.session_id, info_.peer_ip, messages_);
  }

  /** Writes a final reply with a short deadline and ends the session. */
  net::awaitable<void> farewell(int code, std::string_view enhanced, std::string_view text) {
    timed_out_ = false;
    reply(code, enhanced, text);
    set_deadline(10s);
    co_await flush();
  }

  net::awaitable<bool> tls_handshake() {
    tls_.emplace(std::move(*plain_), srv_->tls->context());
    plain_.reset();
    set_deadline(cfg_->tls_handshake_timeout);
    boost::system::error_code ec;
    std::tie(ec) = co_await tls_->async_handshake(net::ssl::stream_base::server, net::as_tuple(net::use_awaitable));
    if (ec) {
      log::info("smtp", "session={} peer={} TLS handshake failed: {}", info_.session_id, info_.peer_ip,
                timed_out_ ? std::string("timeout") : ec.message());
      co_return false;
    }
    auto ti = tls::tls_info(tls_->native_handle());
    info_.tls_protocol = ti.protocol;
    info_.tls_cipher = ti.cipher;
    tls_bits_ = ti.bits;
    co_return true;
  }

  net::awaitable<void> serve() {
    boost::system::error_code ec;
    auto remote = plain_->remote_endpoint(ec);
    auto local = plain_->local_endpoint(ec);
    info_.session_id = fmt::format("{}-{}", srv_->listener.name, ++srv_->session_counter);
    info_.server_name = srv_->server_name;
    info_.listener = srv_->listener.name;
    info_.peer_ip = remote.address().is_v6() && remote.address().to_v6().is_v4_mapped()
                        ? net::ip::make_address_v4(net::ip::v4_mapped, remote.address().to_v6()).to_string()
                        : remote.address().to_string();
    info_.peer_port = remote.port();
    info_.local_ip = local.address().to_string();
    info_.local_port = local.port();
    trusted_ = cfg_->is_trusted(info_.peer_ip);

    if (!srv_->listener.access.permits(info_.peer_ip)) {
      log::info("smtp", "session={} peer={} refused by listener access list", info_.session_id, info_.peer_ip);
      co_await farewell(554, "5.7.1", fmt::format("{} Access denied", srv_->server_name));
      co_return;
    }
    if (!admit()) {
      log::warn("smtp", "session={} peer={} refused: too many sessions", info_.session_id, info_.peer_ip);
      co_await farewell(421, "4.7.0", fmt::format("{} Error: too many connections, try again later", srv_->server_name));
      co_return;
    }
    chain_ = srv_->chains ? srv_->chains() : nullptr;
    log::debug("smtp", "session={} peer={}:{} connect listener={}", info_.session_id, info_.peer_ip, info_.peer_port,
               info_.listener);

    if (srv_->listener.tls == config::TlsMode::Implicit) {
      if (!srv_->tls || !co_await tls_handshake()) co_return;
    } else {
      // Early talker: a client that sends before the banner is not an SMTP client (RFC 5321 §4.3.1).
      bool early = false;
      if (cfg_->greet_pause.count() > 0) {
        delay_timer_.expires_after(cfg_->greet_pause);
        auto r = co_await (delay_timer_.async_wait(net::as_tuple(net::use_awaitable)) ||
                           plain_->async_wait(tcp::socket::wait_read, net::as_tuple(net::use_awaitable)));
        early = r.index() == 1 && !std::get<0>(std::get<1>(r));
      }
      if (!early) {
        boost::system::error_code aec;
        early = plain_->available(aec) > 0;
      }
      if (early) {
        log::info("smtp", "session={} peer={} early talker refused", info_.session_id, info_.peer_ip);
        co_await farewell(554, "5.5.0", fmt::format("{} Error: SMTP protocol violation", srv_->server_name));
        co_return;
      }
    }
    started_ = true;
    {
      auto ev = make_event("", false);
      auto o = co_await run_stage(event::Stage::Connect, ev);
      if (o.verdict == event::Verdict::Reject || o.verdict == event::Verdict::TempFail) {
        o.disconnect = true;
        if (o.verdict == event::Verdict::Reject && o.code == 0) o.code = 554;
        outcome_reply(o, "Access denied");
        set_deadline(10s);
        co_await flush();
        co_return;
      }
    }
    reply(220, "", fmt::format("{} ESMTP Postern", srv_->server_name));

    std::string line;
    for (;;) {
      if (close_after_reply_) {
        set_deadline(10s);
        co_await flush();
        co_return;
      }
      if (shutting_down_ || srv_->stopping) {
        co_await farewell(421, "4.3.2", fmt::format("{} Service shutting down", srv_->server_name));
        co_return;
      }
      set_deadline(cfg_->command_timeout);
      Line r = co_await read_line(line, cfg_->max_line_length);
      if (r == Line::Closed) {
        if (timed_out_) {
          log::info("smtp", "session={} peer={} timeout waiting for a command", info_.session_id, info_.peer_ip);
          co_await farewell(421, "4.4.2", fmt::format("{} Error: timeout exceeded", srv_->server_name));
        } else if (shutting_down_) {
          co_await farewell(421, "4.3.2", fmt::format("{} Service shutting down", srv_->server_name));
        }
        co_return;
      }
      if (r == Line::Flood) {
        co_await farewell(421, "4.7.0", fmt::format("{} Error: line too long, closing", srv_->server_name));
        co_return;
      }
      if (r == Line::TooLong) {
        // RFC 5321 §4.5.3.1.4: reply 500 and keep the session.
        error_reply(500, "5.5.2", "Error: line too long");
        continue;
      }
      if (!co_await dispatch(line)) {
        set_deadline(10s);
        co_await flush();
        co_return;
      }
      if (starttls_requested_) {
        // STARTTLS is handled in this frame rather than in a command coroutine:
        // GCC 12 corrupted a separate start-TLS coroutine frame (SIGILL on resume).
        starttls_requested_ = false;
        reply(220, "2.0.0", "Ready to start TLS");
        if (!co_await flush()) co_return;
        // CVE-2011-0411: nothing the client sent before the handshake may be read as a command.
        inbuf_.clear();
        rpos_ = 0;
        if (!co_await tls_handshake()) co_return;
        // RFC 3207 §4.2: forget everything learnt before TLS.
        reset_transaction();
        info_.helo.clear();
        info_.auth_user.clear();
        esmtp_ = false;
      }
    }
  }

  // ---------------------------------------------------------------- commands

  static net::awaitable<bool> ready(bool value) { co_return value; }

  /**
   * Chooses the command handler. Deliberately not a coroutine: it returns the
   * handler's awaitable (GCC 12 mis-compiles a coroutine with many co_await
   * branches here), and `line` outlives it because serve() awaits it at once.
   */
  net::awaitable<bool> dispatch(std::string_view line) {
    if (line.find('\0') != std::string_view::npos) {
      error_reply(500, "5.5.2", "Error: NUL in command");
      return ready(true);
    }
    size_t sp = line.find(' ');
    std::string verb = upper(line.substr(0, sp));
    std::string_view arg = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);

    if (verb == "EHLO" || verb == "HELO") return cmd_helo(line, verb == "EHLO", arg);
    if (verb == "MAIL") return cmd_mail(line, arg);
    if (verb == "RCPT") return cmd_rcpt(line, arg);
    if (verb == "DATA") return cmd_data(line, arg);
    if (verb == "BDAT") return cmd_bdat(line, arg);
    if (verb == "RSET") {
      if (!arg.empty()) {
        error_reply(501, "5.5.4", "Syntax: RSET");
        return ready(true);
      }
      reset_transaction();
      reply(250, "2.0.0", "Ok");
      return ready(true);
    }
    if (verb == "NOOP") {
      reply(250, "2.0.0", "Ok");
      return ready(true);
    }
    if (verb == "QUIT") {
      reply(221, "2.0.0", "Bye");
      return ready(false);
    }
    if (verb == "HELP") {
      reply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH");
      return ready(true);
    }
    if (verb == "VRFY") {
      // Address verification leaks the account list (RFC 5321 §7.3): 252 for everyone.
      if (arg.empty()) error_reply(501, "5.5.4", "Syntax: VRFY address");
      else reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
      return ready(true);
    }
    if (verb == "EXPN") {
      error_reply(502, "5.5.1", "Error: EXPN not supported");
      return ready(true);
    }
    if (verb == "STARTTLS") {
      // The handshake runs in serve(): see the note there.
      if (starttls_allowed(arg)) starttls_requested_ = true;
      return ready(true);
    }
    if (verb == "AUTH") return cmd_auth(arg);
    if (verb == "GET" || verb == "POST" || verb == "CONNECT" || verb == "HEAD" || verb == "PUT" ||
        starts_with_ci(verb, "USER")) {
      // An HTTP or POP client (or a cross-protocol attack): do not keep talking.
      reply(554, "5.7.0", "Error: non-SMTP command, closing");
      return ready(false);
    }
    if (error_reply(500, "5.5.1", "Error: command not recognized")) return ready(false);
    return ready(true);
  }

  bool offer_starttls() const {
    return srv_->tls && srv_->listener.tls == config::TlsMode::StartTls && !tls_;
  }
  bool offer_auth() const {
    return cfg_->auth && (tls_ || srv_->listener.cleartext_auth);
  }

  net::awaitable<bool> cmd_helo(std::string_view line, bool ehlo, std::string_view arg) {
    while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
    bool ok = !arg.empty() && arg.size() <= 255;
    for (unsigned char c : arg) ok = ok && c > 32 && c < 127;
    if (!ok) {
      error_reply(501, "5.5.4", ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
      co_return true;
    }
    // RFC 5321 §4.1.4: EHLO resets the state like RSET.
    reset_transaction();
    std::string previous = info_.helo;
    info_.helo = std::string(arg);
    auto ev = make_event(line, false);
    auto o = co_await run_stage(event::Stage::Helo, ev);
    if (outcome_reply(o)) {
      info_.helo = previous;
      co_return true;
    }
    esmtp_ = ehlo;
    if (!ehlo) {
      reply(250, "", srv_->server_name);
      co_return true;
    }
    std::vector<std::string> lines{fmt::format("{} Hello {} [{}]", srv_->server_name, info_.helo, info_.peer_ip),
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
    reply_lines(250, lines);
    co_return true;
  }

  /** STARTTLS checks; queues the error reply and returns false when TLS cannot start. */
  bool starttls_allowed(std::string_view arg) {
    if (tls_) {
      error_reply(554, "5.5.1", "Error: TLS already active");
      return false;
    }
    if (!offer_starttls()) {
      error_reply(502, "5.5.1", "Error: command not implemented");
      return false;
    }
    if (!arg.empty()) {
      error_reply(501, "5.5.4", "Syntax: STARTTLS");
      return false;
    }
    return true;
  }

  // -------------------------------------------------------------- AUTH

  /**
   * Runs AuthBackend::authenticate() on the auth pool (hashing is slow on purpose)
   * and completes on the session's executor. Callback-based on purpose: no
   * capturing coroutine lambda whose captures could dangle.
   */
  net::awaitable<std::optional<std::string>> check_password(std::shared_ptr<const AuthBackend> backend,
                                                            std::string user, std::string password) {
    // Hashing has its own pool: a burst of AUTH must not delay RCPT lookups and parsing.
    auto work = [backend, user = std::move(user), password = std::move(password)]() -> std::optional<std::string> {
      try {
        return backend->authenticate(user, password);
      } catch (const std::exception& e) {
        log::error("smtp", "auth backend failed: {}", e.what());
        return std::nullopt;
      }
    };
    return util::offload(srv_->auth_pool.get_executor(), std::move(work));
  }

  /** Where this session's blocking work runs (never the strand). */
  net::any_io_executor worker_executor() const {
    if (cfg_->workers) return cfg_->workers;
    return srv_->auth_pool.get_executor();
  }

  /**
   * The directory's RCPT check. Answered from memory; when the policy needs the
   * disk (a mailbox usage not yet cached) the rest runs on the worker pool
   * while the strand serves other sessions.
   */
  net::awaitable<RcptCheck> check_recipient(std::string address) {
    RcptCheck rc = cfg_->recipients->check(address, txn_.mail_from);
    if (!rc.on_worker) co_return rc;
    std::function<RcptCheck()> rest = std::move(rc.on_worker);
    std::optional<RcptCheck> done;
    try {
      done = co_await util::offload(worker_executor(), std::move(rest));
    } catch (const std::exception& e) {
      log::warn("smtp", "session={} recipient lookup for <{}> failed: {}", info_.session_id, address, e.what());
    }
    if (!done) co_return RcptCheck{RcptStatus::TempFail, "", {}};
    done->on_worker = nullptr;  // one hand-off only
    co_return std::move(*done);
  }

  net::awaitable<bool> cmd_auth(std::string_view arg) {
    if (!cfg_->auth) {
      error_reply(502, "5.5.1", "Error: authentication not enabled");
      co_return true;
    }
    if (!tls_ && !srv_->listener.cleartext_auth) {
      error_reply(538, "5.7.11", "Encryption required for requested authentication mechanism");
      co_return true;
    }
    if (info_.helo.empty() || !esmtp_) {
      error_reply(503, "5.5.1", "Error: send EHLO first");
      co_return true;
    }
    if (!info_.auth_user.empty()) {
      error_reply(503, "5.5.1", "Error: already authenticated");
      co_return true;
    }
    if (txn_.active) {
      error_reply(503, "5.5.1", "Error: MAIL transaction in progress");
      co_return true;
    }
    if (locked_out()) {
      reply(454, "4.7.0", "Too many authentication failures, try again later");
      co_return true;
    }
    size_t sp = arg.find(' ');
    std::string mech = upper(arg.substr(0, sp));
    std::optional<std::string_view> initial;
    if (sp != std::string_view::npos) initial = arg.substr(sp + 1);

    std::string user, password;
    if (mech == "PLAIN") {
      std::string resp;
      if (initial) {
        resp = std::string(*initial);
      } else {
        reply(334, "", "");
        auto got = co_await read_auth_line(resp);
        if (!got) co_return false;
      }
      if (resp == "*") {
        error_reply(501, "5.0.0", "Authentication cancelled");
        co_return true;
      }
      std::optional<std::string> decoded = resp == "=" ? std::optional<std::string>("") : base64_decode(resp);
      if (!decoded) {
        error_reply(501, "5.5.2", "Error: invalid base64 data");
        co_return true;
      }
      // RFC 4616: [authzid] NUL authcid NUL passwd
      size_t a = decoded->find('\0');
      size_t b = a == std::string::npos ? std::string::npos : decoded->find('\0', a + 1);
      if (b == std::string::npos) {
        error_reply(501, "5.5.2", "Error: malformed PLAIN response");
        co_return true;
      }
      std::string authz = decoded->substr(0, a);
      user = decoded->substr(a + 1, b - a - 1);
      password = decoded->substr(b + 1);
      if (!authz.empty() && authz != user) {
        const bool ok = co_await auth_failed(user);
        co_return ok;
      }
    } else if (mech == "LOGIN") {
      std::string resp;
      if (initial) {
        resp = std::string(*initial);
      } else {
        reply(334, "", "VXNlcm5hbWU6");  // "Username:"
        if (!co_await read_auth_line(resp)) co_return false;
      }
      if (resp == "*") {
        error_reply(501, "5.0.0", "Authentication cancelled");
        co_return true;
      }
      auto u = base64_decode(resp);
      if (!u) {
        error_reply(501, "5.5.2", "Error: invalid base64 data");
        co_return true;
      }
      user = *u;
      reply(334, "", "UGFzc3dvcmQ6");  // "Password:"
      if (!co_await read_auth_line(resp)) co_return false;
      if (resp == "*") {
        error_reply(501, "5.0.0", "Authentication cancelled");
        co_return true;
      }
      auto p = base64_decode(resp);
      if (!p) {
        error_reply(501, "5.5.2", "Error: invalid base64 data");
        co_return true;
      }
      password = *p;
    } else {
      error_reply(504, "5.5.4", "Unrecognized authentication type");
      co_return true;
    }

    std::optional<std::string> who = co_await check_password(cfg_->auth, user, std::move(password));
    if (!who) {
      const bool ok = co_await auth_failed(user);
      co_return ok;
    }

    info_.auth_user = *who;
    auto ev = make_event("AUTH " + mech, false);
    auto o = co_await run_stage(event::Stage::Auth, ev);
    if (outcome_reply(o, "Authentication rejected by policy")) {
      info_.auth_user.clear();
      co_return true;
    }
    auth_failures_ = 0;
    log::info("smtp", "session={} peer={} auth user={} mech={}", info_.session_id, info_.peer_ip, info_.auth_user, mech);
    reply(235, "2.7.0", "Authentication successful");
    co_return true;
  }

  net::awaitable<bool> read_auth_line(std::string& out) {
    set_deadline(cfg_->command_timeout);
    Line r = co_await read_line(out, kAuthLineMax);
    if (r == Line::Ok) co_return true;
    if (r == Line::TooLong) {
      out = "*";  // treated as a cancelled exchange
      co_return true;
    }
    co_return false;
  }

  bool locked_out() {
    if (cfg_->auth_lockout_failures == 0) return false;
    std::lock_guard lock(srv_->mu);
    auto it = srv_->auth_failures.find(info_.peer_ip);
    return it != srv_->auth_failures.end() && it->second.locked_until > Clock::now();
  }

  net::awaitable<bool> auth_failed(const std::string& user) {
    ++auth_failures_;
    if (cfg_->auth_lockout_failures > 0) {
      std::lock_guard lock(srv_->mu);
      auto& f = srv_->auth_failures[info_.peer_ip];
      const auto now = Clock::now();
      if (f.count == 0 || now - f.first > cfg_->auth_lockout_time) {
        f.count = 0;
        f.first = now;
      }
      if (++f.count >= cfg_->auth_lockout_failures) {
        f.locked_until = now + cfg_->auth_lockout_time;
        f.count = 0;
      }
      if (srv_->auth_failures.size() > 100000) srv_->auth_failures.clear();  // bound memory under attack
    }
    log::warn("smtp", "session={} peer={} auth failed user={}", info_.session_id, info_.peer_ip, clean_text(user));
    // A growing delay makes guessing slow (doubling per failure in this session, capped).
    auto delay = cfg_->auth_failure_delay;
    for (size_t i = 1; i < auth_failures_ && delay < cfg_->auth_failure_delay_max; ++i) delay *= 2;
    delay = std::min(delay, cfg_->auth_failure_delay_max);
    if (delay.count() > 0) {
      co_await flush();
      delay_timer_.expires_after(delay);
      co_await delay_timer_.async_wait(net::as_tuple(net::use_awaitable));
    }
    if (error_reply(535, "5.7.8", "Error: authentication failed")) co_return false;
    co_return true;
  }

  // -------------------------------------------------------------- MAIL / RCPT

  net::awaitable<bool> cmd_mail(std::string_view line, std::string_view arg) {
    if (info_.helo.empty()) {
      error_reply(503, "5.5.1", "Error: send HELO/EHLO first");
      co_return true;
    }
    if (txn_.active) {
      error_reply(503, "5.5.1", "Error: nested MAIL command");
      co_return true;
    }
    if (srv_->listener.require_auth && info_.auth_user.empty()) {
      error_reply(530, "5.7.0", "Authentication required");
      co_return true;
    }
    if (!starts_with_ci(arg, "FROM:")) {
      error_reply(501, "5.5.4", "Syntax: MAIL FROM:<address>");
      co_return true;
    }
    if (messages_ >= cfg_->max_messages_per_session) {
      reply(421, "4.7.0", fmt::format("{} Error: too many messages in this session", srv_->server_name));
      co_return false;
    }
    std::string_view rest;
    PathResult path = parse_path(arg.substr(5), true, true, &rest);
    if (path.status == PathStatus::Syntax) {
      error_reply(501, "5.1.7", "Bad sender address syntax");
      co_return true;
    }
    auto params = parse_params(rest, true);
    if (!params) {
      error_reply(501, "5.5.4", "Syntax error in parameters");
      co_return true;
    }
    TxnState t;
    std::vector<std::string> seen;
    for (const auto& p : *params) {
      if (std::find(seen.begin(), seen.end(), p.key) != seen.end()) {
        error_reply(501, "5.5.4", fmt::format("Duplicate parameter {}", p.key));
        co_return true;
      }
      seen.push_back(p.key);
      const std::string v = p.value.value_or("");
      if (p.key == "SIZE") {
        // RFC 1870: size-value = 1*20DIGIT. Twenty digits may exceed 2^64; such a
        // value is valid syntax and simply too large (552 below), not a 501.
        uint64_t n = 0;
        auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        const bool digits = !v.empty() && v.size() <= 20 &&
                            std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits || (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
          error_reply(501, "5.5.4", "Syntax: SIZE=<octets>");
          co_return true;
        }
        t.declared_size = ec == std::errc::result_out_of_range ? std::numeric_limits<uint64_t>::max() : n;
      } else if (p.key == "BODY") {
        std::string b = upper(v);
        if (b == "7BIT") t.body = queue::BodyType::SevenBit;
        else if (b == "8BITMIME") t.body = queue::BodyType::EightBitMime;
        else {
          error_reply(501, "5.5.4", "Syntax: BODY=7BIT|8BITMIME");
          co_return true;
        }
      } else if (p.key == "SMTPUTF8") {
        if (p.value) {
          error_reply(501, "5.5.4", "Syntax: SMTPUTF8 takes no value");
          co_return true;
        }
        t.smtputf8 = true;
      } else if (p.key == "RET") {
        std::string r = upper(v);
        if (r != "FULL" && r != "HDRS") {
          error_reply(501, "5.5.4", "Syntax: RET=FULL|HDRS");
          co_return true;
        }
        t.ret = r;
      } else if (p.key == "ENVID") {
        // RFC 3461 §4.4: xtext, at most 100 characters.
        if (v.empty() || v.size() > 100 || !is_valid_xtext(v)) {
          error_reply(501, "5.5.4", "Syntax: ENVID=<xtext>");
          co_return true;
        }
        t.envid = v;
      } else if (p.key == "AUTH") {
        // RFC 4954 §5: accepted and not trusted; we do not relay AUTH= identities.
        if (v != "<>" && !is_valid_xtext(v)) {
          error_reply(501, "5.5.4", "Syntax: AUTH=<xtext>");
          co_return true;
        }
      } else {
        error_reply(555, "5.5.4", fmt::format("Unsupported parameter {}", p.key));
        co_return true;
      }
    }
    if (!t.smtputf8) path = parse_path(arg.substr(5), true, false);
    if (path.status == PathStatus::NonAscii) {
      error_reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
      co_return true;
    }
    if (path.status != PathStatus::Ok && path.status != PathStatus::Null) {
      error_reply(501, "5.1.7", "Bad sender address syntax");
      co_return true;
    }
    if (t.declared_size > cfg_->max_message_size) {
      reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
      co_return true;
    }
    if (auto free = srv_->spool.free_bytes();
        free && (*free < cfg_->min_free_disk || *free - cfg_->min_free_disk < t.declared_size)) {
      log::warn("smtp", "session={} spool file system low: {} octets free", info_.session_id, *free);
      reply(452, "4.3.1", "Insufficient system storage");
      co_return true;
    }
    const std::string from = path.status == PathStatus::Null ? std::string() : path.mailbox.str();
    if (!info_.auth_user.empty() && !from.empty() && !cfg_->auth->owns_address(info_.auth_user, from)) {
      reply(553, "5.7.1", fmt::format("<{}>: Sender address rejected: not owned by auth user {}", from, info_.auth_user));
      co_return true;
    }
    ev_txn_ = event::Transaction{};
    ev_txn_.queue_id = srv_->spool.new_queue_id();
    ev_txn_.mail_from = from;
    ev_txn_.smtputf8 = t.smtputf8;
    ev_txn_.max_message_size = cfg_->max_message_size;
    auto ev = make_event(line);
    auto o = co_await run_stage(event::Stage::MailFrom, ev);
    if (outcome_reply(o)) {
      log::info("smtp", "qid={} peer={} from=<{}> rcpts=0 size=0 outcome=mail-rejected:{}", ev_txn_.queue_id,
                info_.peer_ip, from, last_code_);
      ev_txn_ = event::Transaction{};
      co_return true;
    }
    t.active = true;
    t.mail_from = from;
    txn_ = std::move(t);
    received_at_ = std::chrono::system_clock::now();
    reply(250, "2.1.0", "Ok");
    co_return true;
  }

  /** RFC 3461 NOTIFY: "NEVER" or a list of SUCCESS, FAILURE, DELAY; normalized to upper case. */
  static std::optional<std::string> parse_notify(std::string_view v) {
    std::string u = upper(v);
    if (u == "NEVER") return u;
    std::vector<std::string> items;
    size_t pos = 0;
    for (;;) {
      size_t comma = u.find(',', pos);
      std::string item = u.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (item != "SUCCESS" && item != "FAILURE" && item != "DELAY") return std::nullopt;
      if (std::find(items.begin(), items.end(), item) != items.end()) return std::nullopt;
      items.push_back(item);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return u;
  }

  /** RFC 3461 ORCPT: addr-type ";" xtext. */
  static bool valid_orcpt(std::string_view v) {
    size_t semi = v.find(';');
    if (semi == std::string_view::npos || semi == 0 || semi + 1 >= v.size()) return false;
    for (unsigned char c : v.substr(0, semi))
      if (!(std::isalnum(c) || c == '-')) return false;
    return is_valid_xtext(v.substr(semi + 1));
  }

  net::awaitable<bool> cmd_rcpt(std::string_view line, std::string_view arg) {
    if (!txn_.active) {
      error_reply(503, "5.5.1", "Error: need MAIL command");
      co_return true;
    }
    if (!starts_with_ci(arg, "TO:")) {
      error_reply(501, "5.5.4", "Syntax: RCPT TO:<address>");
      co_return true;
    }
    ++txn_.rcpt_attempts;
    if (cfg_->tarpit_after > 0 && txn_.rcpt_attempts > cfg_->tarpit_after && cfg_->tarpit_delay.count() > 0 &&
        !trusted_ && info_.auth_user.empty()) {
      // Tarpit: slow down address harvesting and bulk senders; never our own
      // networks or authenticated users (a mailing to 60 colleagues is normal).
      co_await flush();
      delay_timer_.expires_after(cfg_->tarpit_delay);
      co_await delay_timer_.async_wait(net::as_tuple(net::use_awaitable));
    }
    if (txn_.rcpts.size() >= cfg_->max_recipients) {
      reply(452, "4.5.3", "Error: too many recipients");
      co_return true;
    }
    std::string_view rest;
    bool postmaster = false;
    PathResult path = parse_path(arg.substr(3), false, txn_.smtputf8, &rest);
    if (path.status == PathStatus::NonAscii) {
      error_reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
      co_return true;
    }
    if (path.status == PathStatus::Syntax) {
      // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
      std::string_view a = arg.substr(3);
      while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
      if (starts_with_ci(a, "<postmaster>")) {
        postmaster = true;
        path.status = PathStatus::Ok;
        path.mailbox.local = "postmaster";
        path.mailbox.domain = cfg_->local_domains.empty() ? srv_->server_name : cfg_->local_domains.front();
        rest = a.substr(12);
      } else {
        error_reply(501, "5.1.3", "Bad recipient address syntax");
        co_return true;
      }
    }
    const bool relay_ok = trusted_ || !info_.auth_user.empty();
    if (path.status == PathStatus::Suspicious) {
      if (relay_ok) error_reply(501, "5.1.3", "Bad recipient address syntax");
      else error_reply(554, "5.7.1", "Relay access denied");
      co_return true;
    }
    auto params = parse_params(rest, txn_.smtputf8);
    if (!params) {
      error_reply(501, "5.5.4", "Syntax error in parameters");
      co_return true;
    }
    queue::EnvelopeRecipient rcpt;
    std::vector<std::string> seen;
    for (const auto& p : *params) {
      if (std::find(seen.begin(), seen.end(), p.key) != seen.end()) {
        error_reply(501, "5.5.4", fmt::format("Duplicate parameter {}", p.key));
        co_return true;
      }
      seen.push_back(p.key);
      if (p.key == "NOTIFY") {
        auto n = p.value ? parse_notify(*p.value) : std::nullopt;
        if (!n) {
          error_reply(501, "5.5.4", "Syntax: NOTIFY=NEVER|SUCCESS,FAILURE,DELAY");
          co_return true;
        }
        rcpt.notify = *n;
      } else if (p.key == "ORCPT") {
        if (!p.value || !valid_orcpt(*p.value)) {
          error_reply(501, "5.5.4", "Syntax: ORCPT=addr-type;xtext");
          co_return true;
        }
        rcpt.orcpt = *p.value;
      } else {
        error_reply(555, "5.5.4", fmt::format("Unsupported parameter {}", p.key));
        co_return true;
      }
    }
    const Mailbox& mb = path.mailbox;
    // Local or gateway domain, and a local part that cannot route elsewhere (%-hack, bang path).
    bool local = postmaster || (cfg_->accepts_domain(mb.domain) && !local_part_is_routing(mb));
    if (cfg_->recipients && !local_part_is_routing(mb)) {
      // The directory knows which mailboxes exist (D1-D3); unknown users are
      // refused here so that nothing is accepted that would only bounce.
      const std::string who = clean_text(mb.str());
      const RcptCheck rc = co_await check_recipient(mb.str());
      const auto text = [&](std::string_view dflt) {
        return fmt::format("<{}>: {}", who, rc.text.empty() ? dflt : clean_text(rc.text));
      };
      switch (rc.status) {
        case RcptStatus::Accept: local = true; break;
        case RcptStatus::NotOurs: break;
        case RcptStatus::UnknownUser:
          if (postmaster) break;  // RFC 5321 §4.5.1: postmaster is always accepted
          error_reply(550, "5.1.1", text("Recipient address rejected: User unknown"));
          co_return true;
        case RcptStatus::Disabled:
          error_reply(550, "5.2.1", text("Recipient address rejected: Mailbox disabled"));
          co_return true;
        case RcptStatus::OverQuota:
          error_reply(452, "4.2.2", text("Mailbox full"));
          co_return true;
        case RcptStatus::Refused:
          error_reply(550, "5.7.1", text("Recipient address rejected"));
          co_return true;
        case RcptStatus::Loop:
          error_reply(554, "5.4.6", text("Recipient address rejected: routing loop"));
          co_return true;
        case RcptStatus::TempFail:
          error_reply(451, "4.3.0", text("Recipient lookup failed; try again later"));
          co_return true;
      }
    }
    if (!local && !relay_ok) {
      error_reply(554, "5.7.1", fmt::format("<{}>: Relay access denied", clean_text(mb.str())));
      co_return true;
    }
    rcpt.address = mb.str();
    auto ev = make_event(line);
    ev.current_rcpt = rcpt.address;
    auto o = co_await run_stage(event::Stage::RcptTo, ev);
    // A recipient rejected by a hook does not end the session.
    if (outcome_reply(o, fmt::format("<{}>: Recipient address rejected", clean_text(rcpt.address)))) co_return true;
    ev_txn_.recipients.push_back(rcpt.address);
    txn_.rcpts.push_back(std::move(rcpt));
    reply(250, "2.1.5", "Ok");
    co_return true;
  }

  // -------------------------------------------------------------- DATA / BDAT

  /** Checks common to DATA and the first BDAT; queues the error reply. */
  net::awaitable<bool> data_allowed(std::string_view line) {
    if (!txn_.active) {
      error_reply(503, "5.5.1", "Error: need MAIL command");
      co_return false;
    }
    if (txn_.rcpts.empty()) {
      // RFC 2920 §3.1: with PIPELINING, "no valid recipients" after failed RCPTs.
      error_reply(txn_.rcpt_attempts ? 554 : 503, "5.5.1",
                  txn_.rcpt_attempts ? "Error: no valid recipients" : "Error: need RCPT command");
      co_return false;
    }
    auto ev = make_event(line);
    auto o = co_await run_stage(event::Stage::DataStart, ev);
    if (outcome_reply(o)) co_return false;
    co_return true;
  }

  net::awaitable<bool> cmd_data(std::string_view line, std::string_view arg) {
    if (!arg.empty()) {
      error_reply(501, "5.5.4", "Syntax: DATA");
      co_return true;
    }
    if (txn_.bdat) {
      error_reply(503, "5.5.1", "Error: DATA after BDAT");
      co_return true;
    }
    if (!co_await data_allowed(line)) co_return true;
    reply(354, "", "End data with <CR><LF>.<CR><LF>");
    if (!co_await flush()) co_return false;

    DataDecoder dec(cfg_->max_message_size, cfg_->bare_line_ending);
    for (;;) {
      rpos_ += dec.feed(std::string_view(inbuf_).substr(rpos_));
      if (dec.done()) break;
      set_deadline(cfg_->data_timeout);
      if (!co_await fill()) {
        log::info("smtp", "qid={} peer={} from=<{}> rcpts={} size={} outcome={}", ev_txn_.queue_id, info_.peer_ip,
                  txn_.mail_from, txn_.rcpts.size(), dec.size(), timed_out_ ? "timeout-in-data" : "lost-in-data");
        if (timed_out_) co_await farewell(421, "4.4.2", fmt::format("{} Error: timeout exceeded", srv_->server_name));
        co_return false;
      }
    }
    if (dec.too_big()) {
      log_outcome(dec.size(), "too-big");
      reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
    } else if (dec.nul()) {
      log_outcome(dec.size(), "nul");
      reply(554, "5.6.0", "Message contains NUL octets");
    } else if (dec.failed()) {
      // CVE-2023-51764 class: bare LF / CR could smuggle a second message past other MTAs.
      log_outcome(dec.size(), dec.bare_lf() ? "bare-lf" : "bare-cr");
      reply(554, "5.5.2", "Message contains bare <LF> or <CR> (see RFC 5321 §2.3.8)");
    } else {
      co_await finish_message(dec.take_message());
    }
    reset_transaction();
    co_return true;
  }

  net::awaitable<bool> cmd_bdat(std::string_view line, std::string_view arg) {
    // BDAT <chunk-size> [LAST]
    size_t sp = arg.find(' ');
    std::string_view num = arg.substr(0, sp);
    std::string_view tail = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
    uint64_t size = 0;
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), size);
    const bool last = iequals(tail, "LAST");
    if (num.empty() || ec != std::errc{} || ptr != num.data() + num.size() || (!tail.empty() && !last)) {
      // Without a valid size we cannot know where the chunk ends: the session cannot go on.
      reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
      co_return false;
    }
    bool ok = !txn_.bdat_failed;
    std::string fail_code;
    if (ok && !txn_.bdat) {
      ok = co_await data_allowed(line);
      if (!ok) txn_.bdat_failed = true;
      else txn_.bdat = true;
    } else if (!ok) {
      reply(503, "5.5.1", "Error: transaction already failed");
    }
    // Read the chunk octets whatever happens (RFC 3030 §3: they are not commands).
    uint64_t remaining = size;
    const bool keep = ok;
    for (;;) {
      const size_t avail = inbuf_.size() - rpos_;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining, avail));
      if (take) {
        if (keep && txn_.bdat_size + take <= cfg_->max_message_size) txn_.bdat_data.append(inbuf_, rpos_, take);
        txn_.bdat_size += take;
        rpos_ += take;
        remaining -= take;
      }
      if (remaining == 0) break;
      set_deadline(cfg_->data_timeout);
      if (!co_await fill()) {
        if (timed_out_) co_await farewell(421, "4.4.2", fmt::format("{} Error: timeout exceeded", srv_->server_name));
        co_return false;
      }
    }
    if (ok && txn_.bdat_size > cfg_->max_message_size) {
      log_outcome(txn_.bdat_size, "too-big");
      reply(552, "5.3.4", "Message size exceeds fixed maximum message size");
      txn_.bdat_failed = true;
      txn_.bdat_data.clear();
      ok = false;
    }
    if (!ok) {
      if (last) reset_transaction();
      co_return true;
    }
    if (!last) {
      reply(250, "2.0.0", fmt::format("{} octets received", size));
      co_return true;
    }
    std::string message = std::move(txn_.bdat_data);
    LineCheck lc = check_line_endings(message, cfg_->bare_line_ending);
    if (lc.nul) {
      log_outcome(message.size(), "nul");
      reply(554, "5.6.0", "Message contains NUL octets");
    } else if (cfg_->bare_line_ending == BareLineEnding::Reject && (lc.bare_lf || lc.bare_cr)) {
      log_outcome(message.size(), lc.bare_lf ? "bare-lf" : "bare-cr");
      reply(554, "5.5.2", "Message contains bare <LF> or <CR> (see RFC 5321 §2.3.8)");
    } else {
      co_await finish_message(std::move(message));
    }
    reset_transaction();
    co_return true;
  }

  /** A hook's sender change (ABI 1.3, milter CHGFROM) on the envelope to spool. */
  void apply_sender_change(const event::SenderChange& c, queue::Envelope& env) const {
    log::info("smtp", "qid={} sender <{}> changed to <{}> by {}", env.queue_id, env.mail_from, c.address, c.plugin);
    env.mail_from = c.address;
    if (c.envid) env.envid = *c.envid;
    if (c.ret) env.ret = *c.ret;
    if (c.body) env.body = *c.body == "8BITMIME" ? queue::BodyType::EightBitMime : queue::BodyType::SevenBit;
    if (c.smtputf8) env.smtputf8 = true;
  }

  void log_outcome(uint64_t size, std::string_view outcome) {
    log::info("smtp", "qid={} peer={} from=<{}> rcpts={} size={} outcome={}", ev_txn_.queue_id, info_.peer_ip,
              txn_.mail_from, txn_.rcpts.size(), size, outcome);
  }

  std::string protocol_name() const {
    // RFC 3848 / RFC 6531 §3.7.4 "with" keywords.
    std::string p = txn_.smtputf8 ? "UTF8SMTP" : (esmtp_ ? "ESMTP" : "SMTP");
    if (p == "SMTP") return p;
    if (tls_) p += 'S';
    if (!info_.auth_user.empty()) p += 'A';
    return p;
  }

  std::string received_header() const {
    // RFC 5321 §4.4 time stamp line.
    std::string h = fmt::format("Received: from {} ([{}])\r\n", info_.helo, info_.peer_ip);
    if (tls_) {
      h += fmt::format("\t(using {} with cipher {} ({} bits))\r\n", info_.tls_protocol, info_.tls_cipher, tls_bits_);
    }
    h += fmt::format("\tby {} (Postern) with {} id {}", srv_->server_name, protocol_name(), ev_txn_.queue_id);
    if (txn_.rcpts.size() == 1) h += fmt::format("\r\n\tfor <{}>", txn_.rcpts.front().address);
    h += fmt::format("; {}\r\n", rfc5322_date(received_at_));
    return h;
  }

  /** MIME structure of `full` for the hooks, parsed on the worker pool; null when it cannot be parsed. */
  net::awaitable<std::shared_ptr<const mime::Message>> parse_message(const std::string& full) {
    std::shared_ptr<const mime::Message> parsed;
    try {
      parsed = co_await util::offload(worker_executor(), [&full] {
        return std::make_shared<const mime::Message>(mime::Message::parse(full));
      });
    } catch (const std::exception& e) {
      log::warn("smtp", "qid={} MIME parse failed: {}", ev_txn_.queue_id, e.what());
    }
    co_return parsed;
  }

  net::awaitable<void> finish_message(std::string body) {
    const uint64_t size = body.size();
    // RFC 5321 §6.3: loop detection by counting Received: fields.
    if (count_header_fields(body, "Received") > cfg_->max_hops) {
      log_outcome(size, "too-many-hops");
      reply(554, "5.4.0", "Error: too many hops");
      co_return;
    }
    std::string full = received_header();
    full += body;
    body.clear();
    body.shrink_to_fit();
    // The parsed message is for the hooks (and the score policy, which only has
    // scores when some plugin gave them): without plugins nobody reads it.
    // Parsing is CPU work proportional to the message: on the worker pool.
    if (chain_ && !chain_->plugins().empty()) ev_txn_.message = co_await parse_message(full);

    std::string subdir = "incoming";
    bool discard = false;
    {
      auto ev = make_event("");
      auto o = co_await run_stage(event::Stage::Headers, ev);
      if (outcome_reply(o)) {
        log_outcome(size, o.verdict == event::Verdict::Reject ? "rejected" : "tempfailed");
        co_return;
      }
      if (o.verdict == event::Verdict::Discard) discard = true;
      if (o.verdict == event::Verdict::Quarantine) subdir = "quarantine";
    }
    if (!discard) {
      auto ev = make_event("");
      auto o = co_await run_stage(event::Stage::DataEnd, ev);
      // No hook decided: the score total decides (an explicit verdict outranks scores).
      if (o.verdict == event::Verdict::Continue) o = event::apply_score_policy(cfg_->scoring, info_, ev_txn_);
      if (outcome_reply(o)) {
        log_outcome(size, fmt::format("{}{}", o.verdict == event::Verdict::Reject ? "rejected" : "tempfailed",
                                      o.decided_by.empty() ? "" : ":" + o.decided_by));
        co_return;
      }
      if (o.verdict == event::Verdict::Discard) discard = true;
      if (o.verdict == event::Verdict::Quarantine) subdir = "quarantine";
    }
    if (discard) {
      ++messages_;
      log_outcome(size, "discarded");
      reply(250, "2.0.0", fmt::format("Ok: queued as {}", ev_txn_.queue_id));
      co_return;
    }

    queue::Envelope env;
    env.queue_id = ev_txn_.queue_id;
    env.mail_from = txn_.mail_from;
    env.recipients = txn_.rcpts;
    for (const auto& removed : ev_txn_.recipients_removed) {
      std::erase_if(env.recipients, [&](const auto& r) { return iequals(r.address, removed); });
    }
    for (const auto& added : ev_txn_.recipients_added) {
      queue::EnvelopeRecipient r;
      r.address = added;
      env.recipients.push_back(std::move(r));
    }
    env.envid = txn_.envid;
    env.ret = txn_.ret;
    env.received_at = received_at_;
    env.peer = info_.peer_ip;
    env.helo = info_.helo;
    env.auth_user = info_.auth_user;
    env.body = txn_.body;
    env.smtputf8 = txn_.smtputf8;
    if (ev_txn_.sender_change) apply_sender_change(*ev_txn_.sender_change, env);
    if (env.recipients.empty()) {
      ++messages_;
      log_outcome(size, "discarded-no-recipients");
      reply(250, "2.0.0", fmt::format("Ok: queued as {}", ev_txn_.queue_id));
      co_return;
    }
    // ABI 1.3 body replacement first (the header section stays, milter's
    // REPLBODY), then the header edits on that header section.
    if (ev_txn_.body_replacement) {
      log::info("smtp", "qid={} body replaced by {} ({} octets)", env.queue_id, ev_txn_.body_replaced_by,
                ev_txn_.body_replacement->size());
      full = replace_body(full, *ev_txn_.body_replacement);
    }
    std::string final_message = ev_txn_.header_edits.empty() ? std::move(full)
                                                               : apply_header_edits(full, ev_txn_.header_edits);
    try {
      co_await srv_->spool.async_store(env, final_message, subdir);
    } catch (const std::exception& e) {
      log::error("smtp", "qid={} peer={} spool write failed: {}", env.queue_id, info_.peer_ip, e.what());
      log_outcome(size, "spool-error");
      reply(451, "4.3.0", "Error: queue file write error");
      co_return;
    }
    ++messages_;
    reply(250, "2.0.0", fmt::format("Ok: queued as {}", env.queue_id));
    log_outcome(size, subdir == "incoming" ? "queued" : "quarantined");
    auto ev = make_event("");
    co_await run_stage(event::Stage::Queued, ev);
  }

  // ---------------------------------------------------------------- state

  std::shared_ptr<ServerState> srv_;
  std::shared_ptr<const SmtpConfig> cfg_;
  event::ChainPtr chain_;
  std::optional<tcp::socket> plain_;
  std::optional<net::ssl::stream<tcp::socket>> tls_;
  net::steady_timer watchdog_;
  net::steady_timer delay_timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::list<std::weak_ptr<Session>>::iterator registry_it_;

  std::string inbuf_;
  size_t rpos_ = 0;
  std::string out_;

  event::SessionInfo info_;
  event::Transaction ev_txn_;
  TxnState txn_;
  std::chrono::system_clock::time_point received_at_{};
  int tls_bits_ = 0;
  int last_code_ = 0;
  size_t errors_ = 0;
  size_t messages_ = 0;
  size_t auth_failures_ = 0;
  bool esmtp_ = false;
  bool trusted_ = false;
  bool admitted_ = false;
  bool started_ = false;
  bool closed_ = false;
  bool timed_out_ = false;
  bool io_error_ = false;
  bool shutting_down_ = false;
  bool close_after_reply_ = false;
  bool starttls_requested_ = false;
};

// ------------------------------------------------------------------ server

SmtpServer::SmtpServer(net::io_context& io, const config::Listener& listener, std::shared_ptr<const SmtpConfig> cfg,
                       event::ChainProvider chains, queue::Spool& spool, std::shared_ptr<tls::TlsContext> tls,
                       std::string server_name)
    : state_(std::make_shared<ServerState>(io, listener, std::move(cfg), std::move(chains), spool, std::move(tls),
                                           std::move(server_name))) {}

SmtpServer::~SmtpServer() {
  stop();
}

namespace {

net::awaitable<void> accept_loop(std::shared_ptr<ServerState> st) {
  for (;;) {
    auto [ec, sock] = co_await st->acceptor.async_accept(net::make_strand(st->io), net::as_tuple(net::use_awaitable));
    if (st->stopping) co_return;
    if (ec) {
      if (ec == net::error::operation_aborted) co_return;
      // EMFILE and friends: back off instead of spinning.
      log::warn("smtp", "listener={} accept failed: {}", st->listener.name, ec.message());
      net::steady_timer t(st->acceptor.get_executor(), 100ms);
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    auto session = std::make_shared<Session>(st, std::move(sock));
    net::co_spawn(session->executor(), Session::run(session), net::detached);
  }
}

}  // namespace

void SmtpServer::start() {
  auto& st = *state_;
  const auto& l = st.listener;
  if (l.tls == config::TlsMode::Implicit && !st.tls) {
    throw std::runtime_error(fmt::format("smtp listener {}: tls=\"implicit\" needs a <certificate>", l.name));
  }
  boost::system::error_code ec;
  auto addr = net::ip::make_address(l.address, ec);
  if (ec) throw std::runtime_error(fmt::format("smtp listener {}: bad address \"{}\"", l.name, l.address));
  tcp::endpoint ep(addr, l.port);
  auto fail = [&](std::string_view what) {
    throw std::runtime_error(
        fmt::format("smtp listener {}: cannot {} {}:{}: {}", l.name, what, l.address, l.port, ec.message()));
  };
  st.acceptor.open(ep.protocol(), ec);
  if (ec) fail("open");
  st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  st.acceptor.bind(ep, ec);
  if (ec) fail("bind");
  st.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("listen on");
  st.port = st.acceptor.local_endpoint().port();
  log::info("smtp", "listener={} listening on {}:{} tls={}", l.name, l.address, st.port.load(), config::tls_mode_name(l.tls));
  net::co_spawn(st.acceptor.get_executor(), accept_loop(state_), net::detached);
}

void SmtpServer::stop() {
  auto st = state_;
  if (st->stopping.exchange(true)) return;
  net::post(st->acceptor.get_executor(), [st] {
    boost::system::error_code ec;
    st->acceptor.close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(st->mu);
    for (auto& w : st->sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) s->shutdown();
}

size_t SmtpServer::active_sessions() const {
  std::lock_guard lock(state_->mu);
  return state_->active;
}

uint16_t SmtpServer::port() const {
  return state_->port;
}

void SmtpServer::set_config(std::shared_ptr<const SmtpConfig> cfg) {
  std::lock_guard lock(state_->mu);
  state_->cfg = std::move(cfg);
}

}  // namespace postern::core::smtp
