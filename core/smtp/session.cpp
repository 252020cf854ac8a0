#include "core/smtp/session.hpp"

#include "core/log/log.hpp"
#include "core/mime/mime.hpp"
#include "core/queue/spool.hpp"
#include "core/smtp/throttle.hpp"
#include "core/tls/tls_context.hpp"
#include "core/util/offload.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

namespace postern::core::smtp {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;
using namespace net::experimental::awaitable_operators;

namespace {

constexpr size_t kReadChunk = 4096;

}  // namespace

// ------------------------------------------------------------------ server state

ServerState::ServerState(net::io_context& io_, const config::Listener& l, std::shared_ptr<const SmtpConfig> c,
                         event::ChainProvider ch, queue::Spool& s, std::shared_ptr<tls::TlsContext> t,
                         std::string name)
    : io(io_),
      listener(l),
      cfg(std::move(c)),
      chains(std::move(ch)),
      spool(s),
      tls(std::move(t)),
      server_name(std::move(name)),
      acceptor(net::make_strand(io_)),
      login_throttle(login_throttle_settings(*cfg)) {}

ServerState::~ServerState() {
  auth_pool.join();
}

std::shared_ptr<const SmtpConfig> ServerState::config() const {
  std::lock_guard lock(mu);
  return cfg;
}

void ServerState::set_config(std::shared_ptr<const SmtpConfig> c) {
  login_throttle.set_settings(login_throttle_settings(*c));
  std::lock_guard lock(mu);
  cfg = std::move(c);
}

// ------------------------------------------------------------------ I/O

Session::Session(std::shared_ptr<ServerState> srv, tcp::socket sock)
    : srv_(std::move(srv)),
      cfg_(srv_->config()),
      plain_(std::move(sock)),
      watchdog_(plain_->get_executor()),
      delay_timer_(plain_->get_executor()) {
  watchdog_.expires_at(Clock::time_point::max());
}

net::awaitable<void> Session::run(std::shared_ptr<Session> self) {
  net::co_spawn(self->executor(), watchdog(self), net::detached);
  try {
    co_await self->serve();
  } catch (const std::exception& e) {
    log::error("smtp", "session={} peer={} internal error: {}", self->info_.session_id, self->info_.peer_ip, e.what());
  }
  co_await self->finish();
}

void Session::shutdown() {
  net::post(executor(), [self = shared_from_this()] {
    self->shutting_down_ = true;
    if (self->engine_) self->engine_->request_shutdown();
    self->cancel_io();
  });
}

void Session::cancel_io() {
  boost::system::error_code ec;
  lowest().cancel(ec);
}

void Session::set_deadline(std::chrono::milliseconds d) {
  deadline_ = Clock::now() + d;
  if (deadline_ < watchdog_.expiry()) watchdog_.expires_at(deadline_);
}

net::awaitable<void> Session::watchdog(std::shared_ptr<Session> self) {
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

net::awaitable<bool> Session::write_raw(std::string_view data) {
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

net::awaitable<bool> Session::flush() {
  if (out_.empty()) co_return !io_error_;
  std::string data = std::move(out_);
  out_.clear();
  if (deadline_ == Clock::time_point::max() || deadline_ < Clock::now() + 1s) set_deadline(cfg_->command_timeout);
  const bool ok = co_await write_raw(data);
  co_return ok;
}

net::awaitable<bool> Session::read_some(std::string& chunk) {
  if (!co_await flush()) co_return false;
  // A shutdown or timeout that fired between two operations cancelled nothing:
  // check before starting the read (both run on this strand).
  if (shutting_down_ || timed_out_) co_return false;
  chunk.resize(kReadChunk);
  boost::system::error_code ec;
  size_t n = 0;
  auto buf = net::buffer(chunk.data(), chunk.size());
  if (tls_) std::tie(ec, n) = co_await tls_->async_read_some(buf, net::as_tuple(net::use_awaitable));
  else std::tie(ec, n) = co_await plain_->async_read_some(buf, net::as_tuple(net::use_awaitable));
  chunk.resize(n);
  if (ec) {
    io_error_ = true;
    co_return false;
  }
  co_return true;
}

net::awaitable<void> Session::final_flush() {
  timed_out_ = false;
  set_deadline(10s);
  co_await flush();
}

// ------------------------------------------------------------------ session

bool Session::admit() {
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

void Session::leave() {
  if (!admitted_) return;
  std::lock_guard lock(srv_->mu);
  --srv_->active;
  auto it = srv_->per_ip.find(info_.peer_ip);
  if (it != srv_->per_ip.end() && --it->second == 0) srv_->per_ip.erase(it);
  srv_->sessions.erase(registry_it_);
  admitted_ = false;
}

net::awaitable<void> Session::finish() {
  if (engine_ && engine_->started() && chain_) {
    auto ev = engine_->disconnect_event();
    co_await run_stage(event::Stage::Disconnect, ev);
  }
  closed_ = true;
  watchdog_.cancel();
  delay_timer_.cancel();
  boost::system::error_code ec;
  lowest().shutdown(tcp::socket::shutdown_both, ec);
  lowest().close(ec);
  leave();
  log::debug("smtp", "session={} peer={} disconnect messages={}", info_.session_id, info_.peer_ip,
             engine_ ? engine_->messages() : 0);
}

net::awaitable<bool> Session::tls_handshake() {
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
  tls_facts_ = TlsFacts{ti.protocol, ti.cipher, ti.bits};
  co_return true;
}

net::awaitable<bool> Session::early_talker() {
  // A client that sends before the banner is not an SMTP client (RFC 5321 §4.3.1).
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
  co_return early;
}

net::awaitable<void> Session::serve() {
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

  if (!srv_->listener.access.permits(info_.peer_ip)) {
    log::info("smtp", "session={} peer={} refused by listener access list", info_.session_id, info_.peer_ip);
    out_ += format_reply(Reply{554, "5.7.1", fmt::format("{} Access denied", srv_->server_name)});
    co_await final_flush();
    co_return;
  }
  if (!admit()) {
    log::warn("smtp", "session={} peer={} refused: too many sessions", info_.session_id, info_.peer_ip);
    out_ += format_reply(
        Reply{421, "4.7.0", fmt::format("{} Error: too many connections, try again later", srv_->server_name)});
    co_await final_flush();
    co_return;
  }
  chain_ = srv_->chains ? srv_->chains() : nullptr;
  log::debug("smtp", "session={} peer={}:{} connect listener={}", info_.session_id, info_.peer_ip, info_.peer_port,
             info_.listener);

  EngineEnvironment env;
  env.server_name = srv_->server_name;
  env.starttls_offered = srv_->tls && srv_->listener.tls == config::TlsMode::StartTls;
  env.cleartext_auth = srv_->listener.cleartext_auth;
  env.require_auth = srv_->listener.require_auth;
  env.trusted = cfg_->is_trusted(info_.peer_ip);
  env.parse_for_hooks = chain_ && !chain_->plugins().empty();
  EngineServices services;
  queue::Spool* spool = &srv_->spool;
  services.new_queue_id = [spool] { return spool->new_queue_id(); };
  services.free_bytes = [spool] { return spool->free_bytes(); };
  services.wall_clock = [] { return std::chrono::system_clock::now(); };
  services.monotonic_clock = [] { return std::chrono::steady_clock::now(); };
  services.login_throttle = &srv_->login_throttle;
  engine_.emplace(cfg_, std::move(env), std::move(services), info_, [this](std::string_view data) { out_ += data; });

  if (srv_->listener.tls == config::TlsMode::Implicit) {
    if (!srv_->tls || !co_await tls_handshake()) co_return;
    engine_->set_tls(tls_facts_);
  } else if (co_await early_talker()) {
    log::info("smtp", "session={} peer={} early talker refused", info_.session_id, info_.peer_ip);
    engine_->refuse(Reply{554, "5.5.0", fmt::format("{} Error: SMTP protocol violation", srv_->server_name)});
    co_await final_flush();
    co_return;
  }
  engine_->start();

  std::string chunk;
  for (;;) {
    while (engine_->busy()) {
      if (std::holds_alternative<StartTlsRequest>(engine_->request())) {
        // STARTTLS is handled in this frame rather than in a request coroutine:
        // GCC 12 corrupted a separate start-TLS coroutine frame (SIGILL on resume).
        if (!co_await flush()) co_return;
        if (!co_await tls_handshake()) co_return;
        engine_->tls_started(tls_facts_);
        continue;
      }
      co_await run_request();
    }
    if (engine_->closed()) break;
    if (shutting_down_ || srv_->stopping) {
      engine_->request_shutdown();
      engine_->process();
      if (!engine_->closed()) engine_->input_ended(InputEnd::Shutdown);
      continue;
    }
    // RFC 5321 §4.5.3.2: data-timeout per read inside a body; command-timeout
    // per line, so a client trickling one line octet by octet still times out.
    if (engine_->in_body()) set_deadline(cfg_->data_timeout);
    else if (!engine_->mid_line()) set_deadline(cfg_->command_timeout);
    if (!co_await read_some(chunk)) {
      engine_->input_ended(timed_out_ ? InputEnd::Timeout : shutting_down_ ? InputEnd::Shutdown : InputEnd::Closed);
      continue;
    }
    engine_->feed(chunk);
  }
  co_await final_flush();
}

// ------------------------------------------------------------------ requests

net::awaitable<void> Session::run_request() {
  const EngineRequest& r = engine_->request();
  if (std::holds_alternative<StageRequest>(r)) return run_stage_request();
  if (std::holds_alternative<RecipientRequest>(r)) return run_recipient_request();
  if (std::holds_alternative<PasswordRequest>(r)) return run_password_request();
  if (std::holds_alternative<DelayRequest>(r)) return run_delay_request();
  if (std::holds_alternative<ParseRequest>(r)) return run_parse_request();
  if (std::holds_alternative<SpoolRequest>(r)) return run_spool_request();
  throw std::logic_error("smtp: engine request without a runner");
}

net::awaitable<event::Outcome> Session::run_stage(event::Stage stage, event::EventData& ev) {
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

net::awaitable<void> Session::run_stage_request() {
  // The event lives in the engine's request until stage_done().
  auto& req = std::get<StageRequest>(engine_->request());
  const event::Outcome o = co_await run_stage(req.stage, req.event);
  engine_->stage_done(o);
}

net::any_io_executor Session::worker_executor() const {
  if (cfg_->workers) return cfg_->workers;
  return srv_->auth_pool.get_executor();
}

net::awaitable<void> Session::run_recipient_request() {
  // The directory answers from memory; when the policy needs the disk (a
  // mailbox usage not yet cached) the rest runs on the worker pool while the
  // strand serves other sessions.
  const auto& req = std::get<RecipientRequest>(engine_->request());
  const std::string address = req.address;
  RcptCheck rc = cfg_->recipients->check(address, req.sender);
  if (rc.on_worker) {
    std::function<RcptCheck()> rest = std::move(rc.on_worker);
    std::optional<RcptCheck> done;
    try {
      done = co_await util::offload(worker_executor(), std::move(rest));
    } catch (const std::exception& e) {
      log::warn("smtp", "session={} recipient lookup for <{}> failed: {}", info_.session_id, address, e.what());
    }
    if (done) {
      rc = std::move(*done);
      rc.on_worker = nullptr;  // one hand-off only
    } else {
      rc = RcptCheck{RcptStatus::TempFail, "", {}};
    }
  }
  engine_->recipient_checked(std::move(rc));
}

net::awaitable<void> Session::run_password_request() {
  const auto& req = std::get<PasswordRequest>(engine_->request());
  // Hashing has its own pool: a burst of AUTH must not delay RCPT lookups and parsing.
  auto work = [backend = cfg_->auth, user = req.user, password = req.password]() -> std::optional<std::string> {
    try {
      return backend->authenticate(user, password);
    } catch (const std::exception& e) {
      log::error("smtp", "auth backend failed: {}", e.what());
      return std::nullopt;
    }
  };
  std::optional<std::string> who = co_await util::offload(srv_->auth_pool.get_executor(), std::move(work));
  engine_->password_checked(std::move(who));
}

net::awaitable<void> Session::run_delay_request() {
  const auto delay = std::get<DelayRequest>(engine_->request()).delay;
  co_await flush();
  delay_timer_.expires_after(delay);
  co_await delay_timer_.async_wait(net::as_tuple(net::use_awaitable));
  engine_->delay_done();
}

net::awaitable<void> Session::run_parse_request() {
  // MIME parsing is CPU work proportional to the message: on the worker pool.
  const std::string* full = std::get<ParseRequest>(engine_->request()).message;
  std::shared_ptr<const mime::Message> parsed;
  try {
    parsed = co_await util::offload(worker_executor(), [full] {
      return std::make_shared<const mime::Message>(mime::Message::parse(*full));
    });
  } catch (const std::exception& e) {
    log::warn("smtp", "session={} MIME parse failed: {}", info_.session_id, e.what());
  }
  engine_->message_parsed(std::move(parsed));
}

net::awaitable<void> Session::run_spool_request() {
  const auto& req = std::get<SpoolRequest>(engine_->request());
  std::string error;
  try {
    co_await srv_->spool.async_store(req.envelope, *req.message, req.subdir);
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  engine_->spooled(error);
}

}  // namespace postern::core::smtp
