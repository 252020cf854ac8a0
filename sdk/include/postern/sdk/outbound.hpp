#pragma once
/**
 * @file outbound.hpp
 * ABI 1.3: outbound connections and message injection.
 *
 * A connection the host opens is driven like a served one (service.hpp):
 *
 *   sdk::ConnectOptions to = sdk::ConnectOptions::tcp("clamd.example.org", 3310);
 *   to.timeout = std::chrono::seconds(5);
 *   sdk::connect(host, to,
 *       [](sdk::Stream s) { return std::make_unique<ClamdSession>(std::move(s)); },
 *       [](sdk::ConnectStatus st, std::string_view why) { ... refused, timeout, dns-failed ... });
 *
 * and a new message goes into the queue durably:
 *
 *   sdk::InjectMessage m;
 *   m.mail_from = "";                       // the null sender <>
 *   m.recipients = {"alice@example.org"};
 *   m.message = "From: ...\r\n\r\nbody\r\n";
 *   m.skip_filters = {"autoreply"};         // never answer our own mail
 *   sdk::inject(host, m, [](const sdk::InjectResult& r) { ... r.queue_id ... });
 *
 * Both need a 1.3 host (has_outbound()); on an older one they return 0 /
 * false and call nothing.
 */

#include <postern/sdk/host.hpp>
#include <postern/sdk/service.hpp>
#include <postern/sdk/types.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace postern::sdk {

/** How a connect ended (postern_connect_status_t). */
enum class ConnectStatus { Ok = 0, Refused = 1, Timeout = 2, DnsFailed = 3, TlsFailed = 4, Unreachable = 5, Cancelled = 6 };

/** "refused", "timeout", ... for logs. */
inline std::string_view connect_status_name(ConnectStatus s) {
  switch (s) {
    case ConnectStatus::Ok: return "ok";
    case ConnectStatus::Refused: return "refused";
    case ConnectStatus::Timeout: return "timeout";
    case ConnectStatus::DnsFailed: return "dns-failed";
    case ConnectStatus::TlsFailed: return "tls-failed";
    case ConnectStatus::Unreachable: return "unreachable";
    case ConnectStatus::Cancelled: return "cancelled";
  }
  return "unknown";
}

/** The session tag the queue's events carry for an injected message: the injecting plugin's name. */
inline constexpr std::string_view kTagInjected = POSTERN_TAG_INJECTED;

/** Whether the host offers stream_connect and inject (ABI 1.3). */
inline bool has_outbound(const Host& host) { return POSTERN_SDK_API_HAS(host.api(), inject); }

/** Where to connect (postern_connect_options_t). */
struct ConnectOptions {
  std::string host;       // name (resolved by the host), IPv4 or IPv6 literal
  uint16_t port = 0;
  std::string unix_path;  // instead of host:port
  bool tls = false;       // TLS right after connecting
  bool verify = true;     // with TLS: check the certificate and the name
  std::string tls_name;   // SNI and verified name; empty = host
  std::chrono::milliseconds timeout{0};  // resolution + connect + TLS; 0 = the host's 30 s

  static ConnectOptions tcp(std::string host, uint16_t port) {
    ConnectOptions o;
    o.host = std::move(host);
    o.port = port;
    return o;
  }
  static ConnectOptions unix_socket(std::string path) {
    ConnectOptions o;
    o.unix_path = std::move(path);
    return o;
  }
};

/** Makes the Connection for a stream that connected; nullptr closes it. */
using ConnectedFactory = std::function<std::unique_ptr<Connection>(Stream stream)>;
/** The connect failed (never called with Ok); `detail` is one line for logs. */
using ConnectFailed = std::function<void(ConnectStatus status, std::string_view detail)>;

/** Identifies a connect in progress for cancel_connect(); 0 means none. */
using ConnectId = uint64_t;

namespace detail {

struct ConnectEntry {
  const postern_host_api_v1_t* api = nullptr;
  ConnectedFactory connected;
  ConnectFailed failed;
};

inline void* connect_trampoline(void* user, uint32_t status, postern_stream_t* s, postern_str_t detail) {
  std::unique_ptr<ConnectEntry> e(static_cast<ConnectEntry*>(user));
  try {
    if (status == POSTERN_CONNECT_OK && s != nullptr) {
      Stream stream(e->api, s);
      auto conn = e->connected ? e->connected(stream) : nullptr;
      if (!conn) return nullptr;
      return new ConnectionHolder{std::move(conn), std::move(stream)};
    }
    if (e->failed) e->failed(static_cast<ConnectStatus>(status), to_string_view(detail));
  } catch (...) {
  }
  return nullptr;
}

}  // namespace detail

/**
 * Opens a connection the host owns; exactly one of `connected` (on the
 * stream's strand, where its Connection's callbacks then run) or `failed`
 * (on an I/O thread) is called later, never inside this call. At unload a
 * pending connect fails with Cancelled and an open stream gets
 * on_close(Shutdown), before the plugin is destroyed. Any thread.
 * @return the id for cancel_connect(); 0 when the host refused the options or
 *   is older than ABI 1.3 or unloading (then nothing is called).
 */
inline ConnectId connect(const Host& host, const ConnectOptions& o, ConnectedFactory connected, ConnectFailed failed) {
  const postern_host_api_v1_t* api = host.api();
  if (!has_outbound(host)) return 0;
  postern_connect_options_t opts{};
  opts.struct_size = sizeof opts;
  opts.flags = (o.tls ? POSTERN_CONNECT_TLS : 0u) | (o.verify ? 0u : POSTERN_CONNECT_TLS_NO_VERIFY);
  opts.host = to_abi(o.host);
  opts.port = o.port;
  opts.timeout_ms = static_cast<uint32_t>(o.timeout.count());
  opts.unix_path = to_abi(o.unix_path);
  opts.tls_name = to_abi(o.tls_name);
  auto* entry = new detail::ConnectEntry{api, std::move(connected), std::move(failed)};
  uint64_t id = 0;
  if (api->stream_connect(host.handle(), &opts, detail::service_table(), &detail::connect_trampoline, entry, &id) !=
      POSTERN_OK) {
    delete entry;
    return 0;
  }
  return id;
}

/** Abandons a connect in progress: `failed(Cancelled)` follows unless it completed. Any thread. */
inline void cancel_connect(const Host& host, ConnectId id) {
  if (id != 0 && has_outbound(host)) host.api()->stream_connect_cancel(host.handle(), id);
}

/** A message for inject(). */
struct InjectMessage {
  std::string mail_from;                  // without <>; empty = the null sender <>
  std::vector<std::string> recipients;    // 1..1000, without <>
  std::string message;                    // RFC 5322 octets (LF or CRLF)
  std::vector<std::string> skip_filters;  // plugins whose queue hooks skip it; "*" = all
};

/** The outcome of inject(). */
struct InjectResult {
  postern_status_t status = POSTERN_ERR_FAILED;
  std::string queue_id;  // when ok()
  std::string error;     // otherwise
  bool ok() const { return status == POSTERN_OK; }
};

/**
 * Queues a new message durably (spooled like SMTP mail, then delivered on the
 * normal path); `done` runs exactly once on a worker thread when it is on
 * disk (or failed). Any thread, never blocks.
 * @return false when the host refused the request (bad address, no
 *   recipient, no spool, unloading, older than ABI 1.3): `done` is not called.
 */
inline bool inject(const Host& host, const InjectMessage& m, std::function<void(const InjectResult&)> done) {
  const postern_host_api_v1_t* api = host.api();
  if (!has_outbound(host)) return false;
  std::vector<postern_str_t> rcpts;
  rcpts.reserve(m.recipients.size());
  for (const auto& r : m.recipients) rcpts.push_back(to_abi(r));
  std::vector<postern_str_t> skips;
  skips.reserve(m.skip_filters.size());
  for (const auto& s : m.skip_filters) skips.push_back(to_abi(s));
  postern_inject_request_t rq{};
  rq.struct_size = sizeof rq;
  rq.mail_from = to_abi(m.mail_from);
  rq.recipients = rcpts.data();
  rq.recipient_count = rcpts.size();
  rq.message = postern_bytes_t{reinterpret_cast<const uint8_t*>(m.message.data()), m.message.size()};
  rq.skip_filters = skips.empty() ? nullptr : skips.data();
  rq.skip_filter_count = skips.size();
  using Done = std::function<void(const InjectResult&)>;
  auto* heap = new Done(std::move(done));
  auto trampoline = [](void* user, uint32_t status, postern_str_t text) {
    std::unique_ptr<Done> fn(static_cast<Done*>(user));
    InjectResult r;
    r.status = static_cast<postern_status_t>(status);
    (r.ok() ? r.queue_id : r.error) = std::string(to_string_view(text));
    try {
      if (*fn) (*fn)(r);
    } catch (...) {
    }
  };
  if (api->inject(host.handle(), &rq, trampoline, heap) != POSTERN_OK) {
    delete heap;
    return false;
  }
  return true;
}

}  // namespace postern::sdk
