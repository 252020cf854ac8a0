// ABI 1.3 outbound connections (stream_connect, docs/plugin-guide.md): the
// host resolves the name through its asynchronous resolver, connects with a
// deadline (TCP, each address in turn, or a Unix-domain socket) and hands the
// socket to a postern_stream of core/service in client mode, which runs the
// TLS handshake as the client and then calls the plugin's on_connected in
// place of on_open. From there the stream is a served stream's twin.
//
// The result is delivered exactly once: whoever erases the call from
// Outstanding::connects runs the plugin's callback (the connect's own I/O,
// the stream's open, stream_connect_cancel, or unload), so a late DNS answer
// or connect completion after unload finds nothing and is dropped.
// Diagnostics (component "outbound"): one line per failed connect, naming the
// plugin, the target and the cause; the stream logs like a served one.
#include "core/plugin/host_api_v13.hpp"

#include "core/dns/resolver.hpp"
#include "core/log/log.hpp"
#include "core/plugin/host_internal.hpp"
#include "core/service/stream.hpp"

#include <postern/mail/ascii.hpp>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <sys/un.h>

namespace postern::core::plugin {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Socket = postern_stream::Socket;

namespace {

constexpr std::chrono::milliseconds kDefaultTimeout{30000};

std::string_view sv(postern_str_t s) { return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view{}; }

std::string_view status_name(uint32_t status) {
  switch (status) {
    case POSTERN_CONNECT_OK: return "ok";
    case POSTERN_CONNECT_REFUSED: return "refused";
    case POSTERN_CONNECT_TIMEOUT: return "timeout";
    case POSTERN_CONNECT_DNS_FAILED: return "dns-failed";
    case POSTERN_CONNECT_TLS_FAILED: return "tls-failed";
    case POSTERN_CONNECT_UNREACHABLE: return "unreachable";
    case POSTERN_CONNECT_CANCELLED: return "cancelled";
  }
  return "unknown";
}

std::string_view dns_status_name(dns::Status s) {
  switch (s) {
    case dns::Status::Ok: return "ok";
    case dns::Status::NoData: return "no address";
    case dns::Status::NxDomain: return "NXDOMAIN";
    case dns::Status::Timeout: return "DNS timeout";
    case dns::Status::ServFail: return "SERVFAIL";
    case dns::Status::Cancelled: return "cancelled";
  }
  return "error";
}

void call_plugin(ConnectCall& c, uint32_t status, postern_stream_t* stream, std::string_view detail, void** conn) {
  try {
    void* r = c.cb(c.user, status, stream, postern_str_t{detail.data(), detail.size()});
    if (conn != nullptr) *conn = r;
  } catch (...) {
    log::error("outbound", "connect {}: the plugin's callback threw; ignored", c.target);
  }
}

/**
 * Runs the call's callback unless somebody else did (or unload took it).
 * @return whether this call ran it.
 */
bool settle(ConnectCall& c, uint32_t status, postern_stream_t* stream, std::string_view detail,
            void** conn = nullptr) {
  std::shared_ptr<Outstanding> out = c.outstanding.lock();
  if (!out) return false;
  {
    std::lock_guard lock(out->mutex);
    if (out->connects.erase(c.id) == 0) return false;
    ++out->in_flight;  // plugin code: unload waits for it
  }
  call_plugin(c, status, stream, detail, conn);
  out->leave();
  return true;
}

/** on_open of an outbound stream: the connect succeeded (TLS included). */
void* connected_trampoline(void* user, postern_stream_t* stream) {
  auto* call = static_cast<ConnectCall*>(user);
  void* conn = nullptr;
  // Lost to a cancel or unload: NULL closes the stream, no on_close.
  settle(*call, POSTERN_CONNECT_OK, stream, {}, &conn);
  return conn;
}

}  // namespace

/** The I/O of one connect; every member is touched on `strand` only. */
struct ConnectOp : std::enable_shared_from_this<ConnectOp> {
  explicit ConnectOp(net::io_context& io) : strand(net::make_strand(io)), socket(strand), timer(strand) {}

  service::Strand strand;
  Socket socket;
  net::steady_timer timer;
  std::shared_ptr<ConnectCall> call;
  // Copied from the plugin's HostServices: the op may outlive the plugin.
  dns::Resolver* resolver = nullptr;
  std::shared_ptr<net::ssl::context> client_tls;
  std::string server_name;
  std::string plugin_name;
  // The options.
  std::string host;
  uint16_t port = 0;
  std::string unix_path;
  bool tls = false;
  bool verify = true;
  std::string tls_name;
  std::chrono::milliseconds timeout = kDefaultTimeout;

  std::chrono::steady_clock::time_point deadline;
  std::vector<tcp::endpoint> endpoints;
  size_t next = 0;
  int dns_pending = 0;
  std::string dns_error;
  bool any_refused = false;
  boost::system::error_code last_error;
  bool done = false;  // failed, or handed over to the stream
  boost::intrusive_ptr<postern_stream> stream;

  std::chrono::milliseconds remaining() const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return std::max(left, std::chrono::milliseconds(1));
  }

  void begin() {
    deadline = std::chrono::steady_clock::now() + timeout;
    timer.expires_at(deadline);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->done) return;
      self->fail(POSTERN_CONNECT_TIMEOUT,
                 fmt::format("connect to {} timed out after {} ms", self->call->target, self->timeout.count()));
    });
    if (!unix_path.empty()) {
      connect_unix();
      return;
    }
    boost::system::error_code ec;
    const auto addr = net::ip::make_address(host, ec);
    if (!ec) {
      endpoints.emplace_back(addr, port);
      connect_next();
      return;
    }
    if (mail::iequals(host, "localhost")) {
      // RFC 6761 §6.3: localhost is the loopback; the resolver does not read /etc/hosts.
      endpoints.emplace_back(net::ip::address_v4::loopback(), port);
      endpoints.emplace_back(net::ip::address_v6::loopback(), port);
      connect_next();
      return;
    }
    if (resolver == nullptr) {
      fail(POSTERN_CONNECT_DNS_FAILED, fmt::format("cannot resolve {}: no resolver", host));
      return;
    }
    dns_pending = 2;
    for (uint16_t type : {uint16_t{28}, uint16_t{1}}) {  // AAAA first (RFC 6724 prefers IPv6)
      resolver->query(host, type, remaining(), [self = shared_from_this()](const dns::Answer& a) {
        net::post(self->strand, [self, a] { self->on_dns(a); });
      });
    }
  }

  void on_dns(const dns::Answer& a) {
    if (done) return;
    if (a.status == dns::Status::Ok) {
      for (const dns::Record& r : a.records) {
        if (r.type != 1 && r.type != 28) continue;  // the CNAMEs leading there
        boost::system::error_code ec;
        const auto addr = net::ip::make_address(r.data, ec);
        if (!ec) {
          // Keep AAAA before A whatever order the answers came in.
          auto pos = addr.is_v6() ? std::find_if(endpoints.begin(), endpoints.end(),
                                                 [](const tcp::endpoint& e) { return e.address().is_v4(); })
                                  : endpoints.end();
          endpoints.insert(pos, tcp::endpoint(addr, port));
        }
      }
    } else if (dns_error.empty() || a.status != dns::Status::NoData) {
      dns_error = std::string(dns_status_name(a.status));
    }
    if (--dns_pending > 0) return;
    if (endpoints.empty()) {
      fail(POSTERN_CONNECT_DNS_FAILED, fmt::format("cannot resolve {}: {}", host, dns_error));
      return;
    }
    connect_next();
  }

  void connect_unix() {
    net::local::stream_protocol::endpoint ep(unix_path);
    socket.async_connect(ep, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (self->done) return;
      if (ec) {
        self->fail(ec == net::error::connection_refused ? POSTERN_CONNECT_REFUSED : POSTERN_CONNECT_UNREACHABLE,
                   fmt::format("connect to {}: {}", self->call->target, ec.message()));
        return;
      }
      self->hand_over();
    });
  }

  void connect_next() {
    if (done) return;
    if (next >= endpoints.size()) {
      fail(any_refused ? POSTERN_CONNECT_REFUSED : POSTERN_CONNECT_UNREACHABLE,
           fmt::format("connect to {}: {}", call->target, last_error.message()));
      return;
    }
    boost::system::error_code ignored;
    socket.close(ignored);
    const tcp::endpoint ep = endpoints[next++];
    socket.async_connect(ep, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (self->done) return;
      if (ec) {
        if (ec == net::error::connection_refused) self->any_refused = true;
        self->last_error = ec;
        self->connect_next();
        return;
      }
      self->hand_over();
    });
  }

  void hand_over() {
    done = true;
    timer.cancel();
    boost::system::error_code ec;
    if (unix_path.empty()) socket.set_option(tcp::no_delay(true), ec);
    std::shared_ptr<Outstanding> out = call->outstanding.lock();
    if (!out) {
      socket.close(ec);
      return;
    }
    auto info = std::make_shared<service::ListenerInfo>();
    info->name = "outbound";
    info->protocol = unix_path.empty() ? "tcp" : "unix";
    info->tls_mode = tls ? config::TlsMode::Implicit : config::TlsMode::None;
    info->server_name = server_name;
    info->idle_timeout = std::chrono::milliseconds(0);  // none unless the plugin sets one
    info->handshake_timeout = remaining();
    if (client_tls) {
      auto c = std::make_shared<service::ClientTls>();
      c->context = client_tls;
      c->server_name = tls_name;
      c->verify = verify;
      info->client = std::move(c);
    }
    service::Provider provider;
    provider.service = &call->table;
    provider.outstanding = std::move(out);
    provider.name = plugin_name;
    // refs = 1: the host's reference, dropped by the stream when it ends.
    auto* s = new postern_stream(strand, std::move(socket), std::move(info), std::move(provider),
                                 fmt::format("out-{}-{}", plugin_name, call->id));
    stream.reset(s);
    // With TLS but no client context, the stream ends at once with TLS_FAILED.
    s->start([self = shared_from_this()](postern_stream* ended) { self->on_stream_end(ended); });
  }

  /** The stream ended; before on_open that is the connect's failure. */
  void on_stream_end(postern_stream* s) {
    stream.reset();
    uint32_t status = POSTERN_CONNECT_UNREACHABLE;
    std::string detail;
    switch (s->end_reason()) {
      case POSTERN_CLOSE_TLS_FAILED:
        status = s->handshake_timed_out() ? POSTERN_CONNECT_TIMEOUT : POSTERN_CONNECT_TLS_FAILED;
        detail = client_tls ? fmt::format("TLS handshake with {} failed: {}", call->target,
                                          s->handshake_error().empty() ? "error" : s->handshake_error())
                            : std::string("TLS is not available in this host");
        break;
      case POSTERN_CLOSE_SHUTDOWN:
        status = POSTERN_CONNECT_CANCELLED;
        detail = "cancelled";
        break;
      default: detail = fmt::format("connection to {} closed before it was ready", call->target); break;
    }
    if (settle(*call, status, nullptr, detail)) {
      log::info("outbound", "plugin={} connect to {} failed ({}): {}", plugin_name, call->target, status_name(status),
                detail);
    }
  }

  void fail(uint32_t status, std::string detail) {
    if (done) return;
    done = true;
    timer.cancel();
    boost::system::error_code ignored;
    socket.close(ignored);
    if (settle(*call, status, nullptr, detail)) {
      log::info("outbound", "plugin={} connect to {} failed ({}): {}", plugin_name, call->target, status_name(status),
                detail);
    }
  }

  /** stream_connect_cancel or unload. */
  void abort() {
    if (stream) {
      // A cancel that lost the race to on_open (queued on this strand before
      // it): the plugin owns the stream now and the id is settled, so the
      // cancel is ignored as documented. Unload ends such streams itself.
      if (std::shared_ptr<Outstanding> out = call->outstanding.lock()) {
        std::lock_guard lock(out->mutex);
        if (out->connects.count(call->id) == 0) return;
      }
      stream->shutdown();  // on_stream_end reports CANCELLED unless on_open ran
      return;
    }
    fail(POSTERN_CONNECT_CANCELLED, "cancelled");
  }
};

void cancel_connect_call(ConnectCall& call) {
  call_plugin(call, POSTERN_CONNECT_CANCELLED, nullptr, "cancelled: the plugin is unloading", nullptr);
  if (std::shared_ptr<ConnectOp> op = call.op.lock()) net::post(op->strand, [op] { op->abort(); });
}

namespace abi13 {

postern_status_t stream_connect(postern_host_t* host, const postern_connect_options_t* options,
                                const postern_service_v1_t* callbacks, postern_connect_cb on_connected, void* user,
                                uint64_t* connect_id) {
  LoadedPlugin* p = host != nullptr ? host->plugin : nullptr;
  if (connect_id != nullptr) *connect_id = 0;
  if (p == nullptr || options == nullptr || callbacks == nullptr || on_connected == nullptr)
    return POSTERN_ERR_INVALID;
  constexpr size_t kMinOptions = offsetof(postern_connect_options_t, tls_name) + sizeof(postern_str_t);
  constexpr size_t kMinTable = offsetof(postern_service_v1_t, on_close) + sizeof(void*);
  if (options->struct_size < kMinOptions || callbacks->struct_size < kMinTable || callbacks->on_data == nullptr ||
      callbacks->on_close == nullptr)
    return POSTERN_ERR_INVALID;
  const std::string_view host_name = sv(options->host);
  const std::string_view unix_path = sv(options->unix_path);
  if ((options->host.ptr == nullptr && options->host.len != 0) ||
      (options->unix_path.ptr == nullptr && options->unix_path.len != 0) ||
      (options->tls_name.ptr == nullptr && options->tls_name.len != 0))
    return POSTERN_ERR_INVALID;
  if (host_name.empty() == unix_path.empty()) return POSTERN_ERR_INVALID;  // exactly one of them
  if (!host_name.empty() && (options->port == 0 || options->port > 65535)) return POSTERN_ERR_INVALID;
  if (host_name.size() > 255 || unix_path.size() >= sizeof(sockaddr_un{}.sun_path) ||
      unix_path.find('\0') != std::string_view::npos || host_name.find_first_of(std::string_view("\0 /", 3)) !=
                                                             std::string_view::npos)
    return POSTERN_ERR_INVALID;
  if ((options->flags & ~(POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY)) != 0) return POSTERN_ERR_INVALID;
  const HostServices& services = p->services();
  if (services.io == nullptr) return POSTERN_ERR_UNAVAILABLE;

  auto op = std::make_shared<ConnectOp>(*services.io);
  std::string name(host_name);
  if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  op->host = name;
  op->port = static_cast<uint16_t>(options->port);
  op->unix_path = std::string(unix_path);
  op->tls = (options->flags & POSTERN_CONNECT_TLS) != 0;
  op->verify = (options->flags & POSTERN_CONNECT_TLS_NO_VERIFY) == 0;
  op->tls_name = options->tls_name.len != 0 ? std::string(sv(options->tls_name)) : name;
  if (options->timeout_ms != 0) op->timeout = std::chrono::milliseconds(options->timeout_ms);
  op->resolver = services.resolver;
  op->client_tls = services.client_tls;
  op->server_name = services.server_name;
  op->plugin_name = p->name();

  auto call = std::make_shared<ConnectCall>();
  call->cb = on_connected;
  call->user = user;
  call->target = unix_path.empty() ? (name.find(':') != std::string::npos ? fmt::format("[{}]:{}", name, op->port)
                                                                          : fmt::format("{}:{}", name, op->port))
                                   : fmt::format("unix:{}", unix_path);
  std::memcpy(&call->table.table, callbacks, std::min<size_t>(callbacks->struct_size, sizeof call->table.table));
  call->table.table.struct_size = sizeof call->table.table;
  call->table.table.on_open = &connected_trampoline;
  call->table.user = call.get();
  call->table.protocol = unix_path.empty() ? "tcp" : "unix";
  call->op = op;
  op->call = call;

  std::shared_ptr<Outstanding> out = p->outstanding();
  call->outstanding = out;
  {
    std::lock_guard lock(out->mutex);
    if (out->closed || out->streams_closed) return POSTERN_ERR_UNAVAILABLE;
    call->id = out->next_id++;
    out->connects.emplace(call->id, call);
  }
  if (connect_id != nullptr) *connect_id = call->id;
  log::debug("outbound", "plugin={} connect {} to {}{}", op->plugin_name, call->id, call->target,
             op->tls ? (op->verify ? " tls" : " tls no-verify") : "");
  net::post(op->strand, [op] { op->begin(); });
  return POSTERN_OK;
}

void stream_connect_cancel(postern_host_t* host, uint64_t connect_id) {
  LoadedPlugin* p = host != nullptr ? host->plugin : nullptr;
  if (p == nullptr || connect_id == 0) return;
  std::shared_ptr<ConnectCall> call;
  {
    std::lock_guard lock(p->outstanding()->mutex);
    auto it = p->outstanding()->connects.find(connect_id);
    if (it == p->outstanding()->connects.end()) return;
    call = it->second;
  }
  // On the op's strand, so that the cancel never races the connect's own I/O
  // and the callback runs on an I/O thread, never inside this call.
  if (std::shared_ptr<ConnectOp> op = call->op.lock()) net::post(op->strand, [op] { op->abort(); });
}

}  // namespace abi13
}  // namespace postern::core::plugin
