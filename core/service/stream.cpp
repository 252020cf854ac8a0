#include "core/service/stream.hpp"

#include "core/log/log.hpp"
#include "core/tls/tls_context.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace postern::core::service {

namespace net = boost::asio;

Provider find_provider(const event::ChainPtr& chain, std::string_view protocol) {
  if (!chain) return {};
  for (const auto& p : chain->plugins()) {
    if (const plugin::ServiceRegistration* reg = p->service(protocol)) {
      return Provider{chain, p.get(), reg, p->outstanding(), p->name()};
    }
  }
  return {};
}

std::string_view close_reason_name(postern_close_reason_t reason) {
  switch (reason) {
    case POSTERN_CLOSE_PEER: return "peer";
    case POSTERN_CLOSE_ERROR: return "error";
    case POSTERN_CLOSE_TIMEOUT: return "timeout";
    case POSTERN_CLOSE_PLUGIN: return "plugin";
    case POSTERN_CLOSE_SHUTDOWN: return "shutdown";
    case POSTERN_CLOSE_TLS_FAILED: return "tls-failed";
  }
  return "unknown";
}

}  // namespace postern::core::service

namespace net = boost::asio;
namespace service = postern::core::service;
namespace plog = postern::core::log;

void intrusive_ptr_add_ref(postern_stream* s) { s->refs.fetch_add(1, std::memory_order_relaxed); }

void intrusive_ptr_release(postern_stream* s) {
  if (s->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete s;
}

namespace {

std::string printable_ip(const net::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

/** The IP endpoint inside a generic one; nullopt for a Unix-domain socket. */
std::optional<net::ip::tcp::endpoint> ip_endpoint(const net::generic::stream_protocol::endpoint& g) {
  if (g.protocol().family() != AF_INET && g.protocol().family() != AF_INET6) return std::nullopt;
  net::ip::tcp::endpoint ep;
  if (g.size() > ep.capacity()) return std::nullopt;
  std::memcpy(ep.data(), g.data(), g.size());
  ep.resize(g.size());
  return ep;
}

// A huge timeout ("never") must not overflow the timer's clock.
constexpr std::chrono::milliseconds kMaxTimeout{uint64_t{1} << 40};

}  // namespace

postern_stream::postern_stream(Strand strand, Socket socket,
                               std::shared_ptr<const service::ListenerInfo> listener, service::Provider provider,
                               std::string session_id)
    : strand_(std::move(strand)),
      listener_(std::move(listener)),
      provider_(std::move(provider)),
      socket_(std::move(socket)),
      idle_timer_(strand_),
      handshake_timer_(strand_),
      idle_timeout_(listener_->idle_timeout) {
  boost::system::error_code ec;
  props_[POSTERN_STREAM_SESSION_ID] = std::move(session_id);
  // A Unix-domain socket (outbound streams) has no addresses: left empty.
  if (auto remote = ip_endpoint(socket_.remote_endpoint(ec)); remote && !ec) {
    props_[POSTERN_STREAM_PEER_IP] = printable_ip(remote->address());
    props_[POSTERN_STREAM_PEER_PORT] = std::to_string(remote->port());
  }
  if (auto local = ip_endpoint(socket_.local_endpoint(ec)); local && !ec) {
    props_[POSTERN_STREAM_LOCAL_IP] = printable_ip(local->address());
    props_[POSTERN_STREAM_LOCAL_PORT] = std::to_string(local->port());
  }
  props_[POSTERN_STREAM_LISTENER] = listener_->name;
  props_[POSTERN_STREAM_PROTOCOL] = listener_->protocol;
  props_[POSTERN_STREAM_TLS_MODE] = std::string(postern::core::config::tls_mode_name(listener_->tls_mode));
  props_[POSTERN_STREAM_SERVER_NAME] = listener_->server_name;
  props_[POSTERN_STREAM_CLEARTEXT_AUTH] = listener_->cleartext_auth ? "1" : "0";
  outstanding_ = provider_.outstanding;
  plugin_name_ = provider_.name;
  if (provider_.service != nullptr) {
    table_ = provider_.service->table;
    service_user_ = provider_.service->user;
  }
  // Plaintext input is read with a readiness wait and a non-blocking read on
  // the strand, so a STARTTLS request can stop reading without having taken
  // the client's first handshake octets out of the kernel.
  socket_.non_blocking(true, ec);
}

postern_stream::~postern_stream() = default;

// ------------------------------------------------------------------ start

void postern_stream::start(std::function<void(postern_stream*)> on_end) {
  on_end_ = std::move(on_end);
  net::post(strand_, [self = StreamPtr(this)] {
    if (self->finished_) return;
    if (self->outstanding_ && self->table_.on_open != nullptr) {
      std::lock_guard lock(self->outstanding_->mutex);
      if (!self->outstanding_->streams_closed) {
        self->live_id_ = self->outstanding_->next_id++;
        self->outstanding_->streams.emplace(self->live_id_, [s = StreamPtr(self)] { s->shutdown(); });
        self->registered_ = true;
      }
    }
    if (!self->registered_) {
      plog::info("service", "session={} peer={} refused: plugin {} is unloading", self->session_id(), self->peer_ip(),
                self->plugin_name_);
      self->finish(POSTERN_CLOSE_SHUTDOWN);
      return;
    }
    if (self->listener_->tls_mode == postern::core::config::TlsMode::Implicit) {
      if (!self->listener_->tls && !self->listener_->client) {
        plog::warn("service", "session={} listener={} implicit TLS without a certificate", self->session_id(),
                  self->listener_->name);
        self->finish(POSTERN_CLOSE_TLS_FAILED);
        return;
      }
      self->handshake();
    } else {
      self->open();
    }
  });
}

void postern_stream::shutdown() {
  StreamPtr self(this);
  if (strand_.get_inner_executor().context().stopped()) {
    // posternd's last stage: no thread runs the I/O context any more, so
    // nothing else runs for this stream and its strand never will again.
    finish(POSTERN_CLOSE_SHUTDOWN);
    return;
  }
  net::post(strand_, [self] { self->finish(POSTERN_CLOSE_SHUTDOWN); });
}

// ------------------------------------------------------------------ TLS

void postern_stream::handshake() {
  handshaking_ = true;
  if (reading_) {
    // Only a readiness wait can be pending on the plain socket (no write:
    // the output was flushed first); cancelling it consumes no input.
    boost::system::error_code ec;
    socket_.cancel(ec);
    reading_ = false;
  }
  ++read_gen_;
  const service::ClientTls* client = listener_->client.get();
  tls_.emplace(std::move(socket_), client != nullptr ? *client->context : listener_->tls->context());
  if (client != nullptr) {
    // Outbound (ABI 1.3): SNI only for a name (RFC 6066 §3), verification
    // against the name or the IP literal.
    boost::system::error_code ec;
    (void)net::ip::make_address(client->server_name, ec);
    const bool is_ip = !ec;
    if (!client->server_name.empty() && !is_ip)
      SSL_set_tlsext_host_name(tls_->native_handle(), client->server_name.c_str());
    if (client->verify) {
      tls_->set_verify_mode(net::ssl::verify_peer);
      tls_->set_verify_callback(net::ssl::host_name_verification(client->server_name));
    } else {
      tls_->set_verify_mode(net::ssl::verify_none);
    }
  }
  handshake_timer_.expires_after(listener_->handshake_timeout);
  handshake_timer_.async_wait([self = StreamPtr(this)](const boost::system::error_code& ec) {
    if (ec || !self->handshaking_ || self->finished_) return;
    self->timed_out_handshake_ = true;
    boost::system::error_code ignored;
    self->lowest().close(ignored);
  });
  tls_->async_handshake(client != nullptr ? net::ssl::stream_base::client : net::ssl::stream_base::server, [self = StreamPtr(this)](const boost::system::error_code& ec) {
    self->on_handshake(ec);
  });
}

void postern_stream::on_handshake(const boost::system::error_code& ec) {
  handshaking_ = false;
  handshake_timer_.cancel();
  if (finished_) return;
  if (ec) {
    handshake_error_ = timed_out_handshake_ ? std::string("timeout") : ec.message();
    plog::info("service", "session={} peer={} TLS handshake failed: {}", session_id(), peer_ip(), handshake_error_);
    finish(POSTERN_CLOSE_TLS_FAILED);
    return;
  }
  const auto info = postern::core::tls::tls_info(tls_->native_handle());
  State st;
  {
    std::lock_guard lock(mu_);
    tls_protocol_ = info.protocol;
    tls_cipher_ = info.cipher;
    tls_pending_ = false;
    plain_left_ = 0;
    st = state_;
  }
  plog::debug("service", "session={} peer={} TLS up {} {}", session_id(), peer_ip(), info.protocol, info.cipher);
  if (st == State::Starting) {
    open();  // implicit TLS
    return;
  }
  if (opened_ && st == State::Open && table_.on_tls != nullptr) {
    try {
      table_.on_tls(conn_);
    } catch (...) {
      plog::error("service", "session={} on_tls threw; closing", session_id());
      finish(POSTERN_CLOSE_ERROR);
      return;
    }
  }
  if (finished_) return;
  update_idle(true);
  arm_read();
  after_output();
}

// ------------------------------------------------------------------ open

void postern_stream::open() {
  {
    std::lock_guard lock(mu_);
    state_ = State::Open;
  }
  void* conn = nullptr;
  try {
    conn = table_.on_open(service_user_, this);
  } catch (...) {
    plog::error("service", "session={} on_open threw", session_id());
    conn = nullptr;
  }
  if (finished_) return;
  if (conn == nullptr) {
    // postern_abi.h: NULL refuses the connection and on_close is not called.
    // What on_open wrote (a refusal line) still goes out first.
    refused_ = true;
    plog::info("service", "session={} peer={} refused by plugin {}", session_id(), peer_ip(), plugin_name_);
    {
      std::lock_guard lock(mu_);
      state_ = State::Closing;
    }
    update_idle(true);
    after_output();
    return;
  }
  conn_ = conn;
  opened_ = true;
  update_idle(true);
  arm_read();
  after_output();
}

// ------------------------------------------------------------------ input

void postern_stream::arm_read() {
  if (reading_ || finished_ || paused_ || handshaking_ || held_ > 0 || !opened_) return;
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open || tls_pending_) return;
  }
  reading_ = true;
  const uint64_t gen = ++read_gen_;
  if (tls_) {
    if (rbuf_.empty()) rbuf_.resize(service::kReadChunk);
    tls_->async_read_some(net::buffer(rbuf_), [self = StreamPtr(this), gen](const boost::system::error_code& ec,
                                                                            size_t n) { self->on_tls_read(gen, ec, n); });
  } else {
    socket_.async_wait(Socket::wait_read, [self = StreamPtr(this), gen](const boost::system::error_code& ec) {
      self->on_readable(gen, ec);
    });
  }
}

void postern_stream::on_readable(uint64_t gen, const boost::system::error_code& ec) {
  if (gen != read_gen_) return;
  reading_ = false;
  if (finished_ || paused_ || handshaking_) return;
  {
    std::lock_guard lock(mu_);
    // Closing: no more input for the plugin. STARTTLS: the octets waiting
    // are the client's handshake; they must stay in the kernel.
    if (state_ != State::Open || tls_pending_) return;
  }
  if (ec) {
    if (ec != net::error::operation_aborted) read_failed(ec);
    return;
  }
  // The plain read goes to a per-thread buffer: on_data gets it for the call
  // only, so idle cleartext connections hold no read buffer at all.
  thread_local std::vector<uint8_t> buffer(service::kReadChunk);
  boost::system::error_code rec;
  const size_t n = socket_.read_some(net::buffer(buffer), rec);
  if (rec == net::error::would_block || rec == net::error::try_again || rec == net::error::interrupted) {
    arm_read();
    return;
  }
  if (rec) {
    read_failed(rec);
    return;
  }
  deliver(buffer.data(), n);
}

void postern_stream::on_tls_read(uint64_t gen, const boost::system::error_code& ec, size_t n) {
  if (gen != read_gen_) return;
  reading_ = false;
  if (finished_) return;
  State st;
  {
    std::lock_guard lock(mu_);
    st = state_;
  }
  if (st != State::Open) return;
  if (n > 0) {
    if (paused_) {
      held_ = n;  // one chunk at most: no read is started while paused
    } else {
      deliver(rbuf_.data(), n);
    }
    if (!ec) return;
  }
  if (ec && ec != net::error::operation_aborted) read_failed(ec);
}

void postern_stream::deliver(const uint8_t* data, size_t n) {
  bytes_in_ += n;
  update_idle(true);
  try {
    table_.on_data(conn_, postern_bytes_t{data, n});
  } catch (...) {
    plog::error("service", "session={} on_data threw; closing", session_id());
    finish(POSTERN_CLOSE_ERROR);
    return;
  }
  arm_read();
}

void postern_stream::read_failed(const boost::system::error_code& ec) {
  const bool clean = ec == net::error::eof || ec == net::ssl::error::stream_truncated;
  plog::debug("service", "session={} peer={} read: {}", session_id(), peer_ip(), ec.message());
  finish(clean ? POSTERN_CLOSE_PEER : POSTERN_CLOSE_ERROR);
}

// ------------------------------------------------------------------ output

void postern_stream::kick() {
  {
    std::lock_guard lock(mu_);
    kick_posted_ = false;
  }
  if (finished_ || writing_now_ || handshaking_) return;
  writing_.clear();
  {
    std::lock_guard lock(mu_);
    size_t take = out_.size();
    if (tls_pending_) take = std::min(take, plain_left_);
    if (take == 0) return;
    for (size_t i = 0; i < take; ++i) {
      writing_.push_back(std::move(out_.front()));
      out_.pop_front();
    }
    if (tls_pending_) plain_left_ -= take;
  }
  writing_now_ = true;
  update_idle(false);
  auto done = [self = StreamPtr(this)](const boost::system::error_code& ec, size_t n) { self->on_written(ec, n); };
  if (tls_) {
    // One TLS record stream: asio's SSL layer writes one buffer per call, so
    // coalescing saves records and calls.
    if (writing_.size() > 1) {
      std::string all;
      size_t total = 0;
      for (const auto& c : writing_) total += c.size();
      all.reserve(total);
      for (const auto& c : writing_) all += c;
      writing_.assign(1, std::move(all));
    }
    net::async_write(*tls_, net::buffer(writing_.front()), std::move(done));
  } else {
    std::vector<net::const_buffer> bufs;
    bufs.reserve(writing_.size());
    for (const auto& c : writing_) bufs.emplace_back(net::buffer(c));
    net::async_write(socket_, bufs, std::move(done));
  }
}

void postern_stream::on_written(const boost::system::error_code& ec, size_t n) {
  writing_now_ = false;
  if (finished_) return;
  bytes_out_ += n;
  writing_.clear();
  State st;
  {
    std::lock_guard lock(mu_);
    queued_ -= std::min(queued_, n);
    st = state_;
  }
  if (ec) {
    plog::debug("service", "session={} peer={} write: {}", session_id(), peer_ip(), ec.message());
    finish(st == State::Closing ? POSTERN_CLOSE_PLUGIN : POSTERN_CLOSE_ERROR);
    return;
  }
  update_idle(true);
  after_output();
}

void postern_stream::after_output() {
  if (finished_ || writing_now_ || handshaking_) return;
  bool more = false;
  bool tls_pending = false;
  size_t queued = 0;
  State st;
  {
    std::lock_guard lock(mu_);
    more = !out_.empty() && (!tls_pending_ || plain_left_ > 0);
    tls_pending = tls_pending_;
    queued = queued_;
    st = state_;
  }
  if (more) {
    kick();
    return;
  }
  if (st == State::Closing) {
    // Flushed (output queued behind a STARTTLS that will not happen is dropped).
    if (queued != 0 && !tls_pending) return;
    if (tls_ && !tls_pending && !tls_closing_) {
      close_tls();
      return;
    }
    if (!tls_closing_) finish(POSTERN_CLOSE_PLUGIN);
    return;
  }
  if (st != State::Open) return;
  if (tls_pending) {
    // RFC 3207 §4.2 / RFC 2595 §3.1: the go-ahead reply is out; input not
    // yet delivered stays unread, the handshake starts now.
    handshake();
    return;
  }
  if (queued == 0 && drain_requests_ > 0 && !drain_posted_) {
    drain_posted_ = true;
    net::post(strand_, [self = StreamPtr(this)] { self->deliver_drains(); });
  }
}

void postern_stream::deliver_drains() {
  drain_posted_ = false;
  while (drain_requests_ > 0 && !finished_ && opened_) {
    {
      std::lock_guard lock(mu_);
      if (state_ != State::Open || queued_ != 0) return;
    }
    --drain_requests_;
    if (table_.on_drain == nullptr) continue;
    try {
      table_.on_drain(conn_);
    } catch (...) {
      plog::error("service", "session={} on_drain threw; closing", session_id());
      finish(POSTERN_CLOSE_ERROR);
      return;
    }
  }
}

void postern_stream::close_tls() {
  // RFC 8446 §6.1: close_notify before closing the write side. The peer's
  // answer is waited for briefly; a peer that never answers is cut after 1 s.
  tls_closing_ = true;
  boost::system::error_code ec;
  if (reading_) {
    lowest().cancel(ec);  // a read left from before the close; no write is in flight
    reading_ = false;
  }
  ++read_gen_;
  handshake_timer_.expires_after(std::chrono::seconds(1));
  handshake_timer_.async_wait([self = StreamPtr(this)](const boost::system::error_code& e) {
    if (e || self->finished_) return;
    boost::system::error_code ignored;
    self->lowest().close(ignored);
  });
  tls_->async_shutdown([self = StreamPtr(this)](const boost::system::error_code&) {
    self->finish(POSTERN_CLOSE_PLUGIN);
  });
}

// ------------------------------------------------------------------ timers

void postern_stream::update_idle(bool reset) {
  bool closing = false;
  {
    std::lock_guard lock(mu_);
    closing = state_ == State::Closing;
  }
  // Counted while input may come (not paused), while output is in flight
  // (a peer that stops reading), and while a close flushes.
  const bool want = idle_timeout_.count() > 0 && !finished_ && (!paused_ || writing_now_ || closing);
  if (!want) {
    if (idle_armed_) {
      ++idle_gen_;
      idle_armed_ = false;
      idle_timer_.cancel();
    }
    return;
  }
  if (idle_armed_ && !reset) return;
  const uint64_t gen = ++idle_gen_;
  idle_armed_ = true;
  idle_timer_.expires_after(std::min(idle_timeout_, kMaxTimeout));
  idle_timer_.async_wait([self = StreamPtr(this), gen](const boost::system::error_code& ec) {
    if (ec || gen != self->idle_gen_ || self->finished_) return;
    self->idle_armed_ = false;
    plog::info("service", "session={} peer={} idle timeout after {} ms", self->session_id(), self->peer_ip(),
              self->idle_timeout_.count());
    self->finish(POSTERN_CLOSE_TIMEOUT);
  });
}

// ------------------------------------------------------------------ close

void postern_stream::close_requested() {
  if (finished_) return;
  update_idle(true);  // bounds the flush
  after_output();
}

void postern_stream::finish(postern_close_reason_t reason) {
  if (finished_) return;
  finished_ = true;
  end_reason_ = reason;
  {
    std::lock_guard lock(mu_);
    state_ = State::Closed;
    out_.clear();
    queued_ = 0;
    tls_pending_ = false;
  }
  boost::system::error_code ec;
  idle_timer_.cancel();
  handshake_timer_.cancel();
  lowest().close(ec);
  const bool had_conn = opened_;
  if (opened_) {
    opened_ = false;
    try {
      table_.on_close(conn_, reason);
    } catch (...) {
      plog::error("service", "session={} on_close threw; ignored", session_id());
    }
    conn_ = nullptr;
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_).count();
  plog::info("service", "session={} peer={} close reason={}{} in={} out={} duration={}ms", session_id(), peer_ip(),
            service::close_reason_name(reason), had_conn ? "" : (refused_ ? " (refused)" : " (not opened)"), bytes_in_,
            bytes_out_, ms);
  if (registered_) {
    registered_ = false;
    std::function<void()> doomed;  // holds a reference to this stream: released outside the lock
    {
      std::lock_guard lock(outstanding_->mutex);
      auto it = outstanding_->streams.find(live_id_);
      if (it != outstanding_->streams.end()) {
        doomed = std::move(it->second);
        outstanding_->streams.erase(it);
      }
      if (outstanding_->streams.empty()) outstanding_->idle.notify_all();
    }
  }
  // May drop the chain's last reference (posternd hands it to its control thread).
  provider_ = service::Provider{};
  if (auto end = std::move(on_end_)) end(this);
  intrusive_ptr_release(this);  // the host's reference; last statement: may delete this
}

// ------------------------------------------------------------------ ABI

postern_status_t postern_stream::write(postern_bytes_t data) {
  if (data.ptr == nullptr && data.len != 0) return POSTERN_ERR_INVALID;
  bool post_kick = false;
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open) return POSTERN_ERR_UNAVAILABLE;
    if (data.len == 0) return POSTERN_OK;
    out_.emplace_back(reinterpret_cast<const char*>(data.ptr), data.len);
    queued_ += data.len;
    post_kick = !kick_posted_;
    kick_posted_ = true;
  }
  if (post_kick) net::post(strand_, [self = StreamPtr(this)] { self->kick(); });
  return POSTERN_OK;
}

size_t postern_stream::queued() {
  std::lock_guard lock(mu_);
  return queued_;
}

postern_status_t postern_stream::want_drain() {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open) return POSTERN_ERR_UNAVAILABLE;
  }
  if (!on_strand()) return POSTERN_ERR_INVALID;
  ++drain_requests_;
  net::post(strand_, [self = StreamPtr(this)] { self->after_output(); });
  return POSTERN_OK;
}

postern_status_t postern_stream::pause(bool paused) {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open) return POSTERN_ERR_UNAVAILABLE;
  }
  if (!on_strand()) return POSTERN_ERR_INVALID;
  if (paused_ == paused) return POSTERN_OK;
  paused_ = paused;
  update_idle(!paused);
  if (!paused) {
    // Not inline: pause(0) is often called from inside on_data or a posted
    // function, and on_data must not re-enter.
    net::post(strand_, [self = StreamPtr(this)] {
      if (self->finished_ || self->paused_) return;
      if (self->held_ > 0) {
        const size_t n = self->held_;
        self->held_ = 0;
        {
          std::lock_guard lock(self->mu_);
          if (self->state_ != State::Open) return;
        }
        self->deliver(self->rbuf_.data(), n);
        return;
      }
      self->arm_read();
    });
  }
  return POSTERN_OK;
}

postern_status_t postern_stream::starttls() {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open || tls_pending_ || !tls_protocol_.empty()) return POSTERN_ERR_UNAVAILABLE;
  }
  if (!on_strand()) return POSTERN_ERR_INVALID;
  const bool can = listener_->client ? listener_->tls_mode == postern::core::config::TlsMode::None
                                     : listener_->tls && listener_->tls_mode == postern::core::config::TlsMode::StartTls;
  if (!can || tls_ || handshaking_) {
    return POSTERN_ERR_UNAVAILABLE;
  }
  {
    std::lock_guard lock(mu_);
    tls_pending_ = true;
    plain_left_ = out_.size();
  }
  net::post(strand_, [self = StreamPtr(this)] { self->after_output(); });
  return POSTERN_OK;
}

void postern_stream::close() {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open) return;
    state_ = State::Closing;
  }
  net::post(strand_, [self = StreamPtr(this)] { self->close_requested(); });
}

postern_status_t postern_stream::set_idle_timeout(uint64_t timeout_ms) {
  {
    std::lock_guard lock(mu_);
    if (state_ != State::Open) return POSTERN_ERR_UNAVAILABLE;
  }
  if (!on_strand()) return POSTERN_ERR_INVALID;
  idle_timeout_ = std::chrono::milliseconds(std::min<uint64_t>(timeout_ms, kMaxTimeout.count()));
  update_idle(true);
  return POSTERN_OK;
}

postern_status_t postern_stream::post(postern_task_cb fn, void* user) {
  if (fn == nullptr) return POSTERN_ERR_INVALID;
  if (!outstanding_) return POSTERN_ERR_UNAVAILABLE;
  auto call = std::make_shared<postern::core::plugin::PostedCall>();
  call->fn = fn;
  call->user = user;
  uint64_t id = 0;
  {
    // Counted like queued work: unload waits for it (or runs it, when the
    // I/O context stopped), so fn runs exactly once.
    std::lock_guard lock(outstanding_->mutex);
    if (outstanding_->closed) return POSTERN_ERR_UNAVAILABLE;
    id = outstanding_->next_id++;
    outstanding_->posts.emplace(id, call);
    ++outstanding_->in_flight;
  }
  net::post(strand_, [self = StreamPtr(this), call, id, out = outstanding_] {
    {
      std::lock_guard lock(out->mutex);
      out->posts.erase(id);
    }
    if (call->run()) out->leave();
  });
  return POSTERN_OK;
}

postern_status_t postern_stream::get(uint32_t prop, postern_str_t* out) {
  if (out == nullptr) return POSTERN_ERR_INVALID;
  const auto index = static_cast<size_t>(prop);
  if (index >= props_.size()) return POSTERN_ERR_INVALID;
  if (prop == POSTERN_STREAM_TLS_PROTOCOL || prop == POSTERN_STREAM_TLS_CIPHER) {
    // Set once, on the strand, before on_tls; the string is never changed
    // again, so the pointer stays valid as the ABI promises.
    std::lock_guard lock(mu_);
    const std::string& v = prop == POSTERN_STREAM_TLS_PROTOCOL ? tls_protocol_ : tls_cipher_;
    if (v.empty()) return POSTERN_ERR_NOT_FOUND;
    *out = postern_str_t{v.data(), v.size()};
    return POSTERN_OK;
  }
  const std::string& v = props_[index];
  *out = postern_str_t{v.data(), v.size()};
  return POSTERN_OK;
}
