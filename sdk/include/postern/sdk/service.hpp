#pragma once
/**
 * @file service.hpp
 * Service plugins (ABI 1.2): the host owns listeners, sockets and TLS; a
 * plugin serves a protocol ("imap", "pop3") on plaintext byte streams.
 *
 *   class Echo : public sdk::Connection {
 *    public:
 *     explicit Echo(sdk::Stream s) : stream_(std::move(s)) { stream_.write("hello\r\n"); }
 *     void on_data(std::string_view d) override { stream_.write(d); }
 *    private:
 *     sdk::Stream stream_;
 *   };
 *   // in init():  ctx.serve("echo", [](sdk::Stream s) { return std::make_unique<Echo>(std::move(s)); });
 *
 * THREADING: the Connection's callbacks for one stream never overlap and run
 * on the stream's strand; Stream::post() gets back there from a worker thread.
 * The Connection is destroyed right after on_close().
 */

#include <postern/sdk/types.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace postern::sdk {

/** Why a stream ended (postern_close_reason_t). */
enum class CloseReason { Peer = 0, Error = 1, Timeout = 2, Plugin = 3, Shutdown = 4, TlsFailed = 5 };

/**
 * A counted reference to one client connection. Copies share the stream;
 * every member is safe on a closed stream (it returns false / does nothing).
 */
class Stream {
 public:
  Stream() = default;
  /** Takes a new reference to `s` (a borrowed handle from on_open). */
  Stream(const postern_host_api_v1_t* api, postern_stream_t* s) : api_(api), s_(s ? api->stream_retain(s) : nullptr) {}
  Stream(const Stream& o) : api_(o.api_), s_(o.s_ ? o.api_->stream_retain(o.s_) : nullptr) {}
  Stream(Stream&& o) noexcept : api_(o.api_), s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream o) noexcept {
    std::swap(api_, o.api_);
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stream() {
    if (s_ != nullptr) api_->stream_release(s_);
  }

  bool valid() const { return s_ != nullptr; }
  postern_stream_t* handle() const { return s_; }
  const postern_host_api_v1_t* api() const { return api_; }

  /** Queues output (copied). Any thread. */
  bool write(std::string_view bytes) const {
    return s_ && api_->stream_write(s_, postern_bytes_t{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}) ==
                     POSTERN_OK;
  }
  /** Octets queued and not yet sent. */
  size_t queued() const { return s_ ? api_->stream_queued(s_) : 0; }
  /** One on_drain() when the queue is empty. Strand only. */
  bool want_drain() const { return s_ && api_->stream_want_drain(s_) == POSTERN_OK; }
  /** Stops/resumes on_data(). Strand only. */
  bool pause(bool paused) const { return s_ && api_->stream_pause(s_, paused ? 1 : 0) == POSTERN_OK; }
  /** Starts TLS after the queued output (STARTTLS/STLS); on_tls() or on_close(TlsFailed) follows. Strand only. */
  bool starttls() const { return s_ && api_->stream_starttls(s_) == POSTERN_OK; }
  /** Flushes, then closes; on_close(Plugin) follows. Any thread. */
  void close() const {
    if (s_) api_->stream_close(s_);
  }
  /** Closes after `timeout` without input (0 = never). Strand only. */
  bool set_idle_timeout(std::chrono::milliseconds timeout) const {
    return s_ && api_->stream_set_idle_timeout(s_, static_cast<uint64_t>(timeout.count())) == POSTERN_OK;
  }
  /** Runs `fn` on the stream's strand (exactly once, also after close). Any thread. */
  bool post(std::function<void()> fn) const {
    if (!s_) return false;
    auto* heap = new std::function<void()>(std::move(fn));
    if (api_->stream_post(s_, &Stream::run_and_delete, heap) != POSTERN_OK) {
      delete heap;
      return false;
    }
    return true;
  }
  /** A property ("" when unset). */
  std::string get(postern_stream_prop_t prop) const {
    postern_str_t out{};
    if (!s_ || api_->stream_get(s_, prop, &out) != POSTERN_OK) return {};
    return std::string(to_string_view(out));
  }
  std::string peer_ip() const { return get(POSTERN_STREAM_PEER_IP); }
  std::string session_id() const { return get(POSTERN_STREAM_SESSION_ID); }
  /** Whether TLS is up on this stream (implicit, or after on_tls). */
  bool tls_active() const { return !get(POSTERN_STREAM_TLS_PROTOCOL).empty(); }
  /** Whether STARTTLS/STLS can be offered: a starttls listener without TLS yet. */
  bool can_starttls() const { return get(POSTERN_STREAM_TLS_MODE) == "starttls" && !tls_active(); }
  /** Whether passwords may be sent: TLS is up, or the listener allows cleartext. */
  bool auth_allowed() const { return tls_active() || get(POSTERN_STREAM_CLEARTEXT_AUTH) == "1"; }

 private:
  static void run_and_delete(void* user) {
    std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(user));
    try {
      (*fn)();
    } catch (...) {
    }
  }

  const postern_host_api_v1_t* api_ = nullptr;
  postern_stream_t* s_ = nullptr;
};

/** A connection's protocol state; one object per stream, made by the service's factory. */
class Connection {
 public:
  virtual ~Connection() = default;
  /** Plaintext input (any split: one call may hold part of a line or several lines). */
  virtual void on_data(std::string_view data) = 0;
  /** TLS is up after Stream::starttls(); input sent before it was dropped. */
  virtual void on_tls() {}
  /** The output queue emptied after Stream::want_drain(). */
  virtual void on_drain() {}
  /** The stream ended; the object is destroyed right after. */
  virtual void on_close(CloseReason /*reason*/) {}
};

/** Makes the Connection for a new stream; nullptr refuses it. */
using ConnectionFactory = std::function<std::unique_ptr<Connection>(Stream stream)>;

namespace detail {

/** One registered service: the factory and the API table. Lives until on_destroy. */
struct ServiceEntry {
  const postern_host_api_v1_t* api = nullptr;
  ConnectionFactory factory;
};

/** What the host holds per stream: the plugin's Connection and a stream reference to close on exceptions. */
struct ConnectionHolder {
  std::unique_ptr<Connection> conn;
  Stream stream;
};

inline void* service_on_open(void* user, postern_stream_t* s) {
  auto* entry = static_cast<ServiceEntry*>(user);
  try {
    Stream stream(entry->api, s);
    auto conn = entry->factory(stream);
    if (!conn) return nullptr;
    return new ConnectionHolder{std::move(conn), std::move(stream)};
  } catch (...) {
    return nullptr;
  }
}

template <class Fn>
void guarded(void* c, Fn fn) {
  auto* h = static_cast<ConnectionHolder*>(c);
  try {
    fn(*h->conn);
  } catch (...) {
    // The protocol state is unknown after an exception: end the connection.
    h->stream.close();
  }
}

inline void service_on_data(void* c, postern_bytes_t d) {
  guarded(c, [&](Connection& conn) {
    conn.on_data(std::string_view(reinterpret_cast<const char*>(d.ptr), d.len));
  });
}
inline void service_on_tls(void* c) {
  guarded(c, [](Connection& conn) { conn.on_tls(); });
}
inline void service_on_drain(void* c) {
  guarded(c, [](Connection& conn) { conn.on_drain(); });
}
inline void service_on_close(void* c, postern_close_reason_t reason) {
  std::unique_ptr<ConnectionHolder> h(static_cast<ConnectionHolder*>(c));
  try {
    h->conn->on_close(static_cast<CloseReason>(reason));
  } catch (...) {
  }
}

inline const postern_service_v1_t* service_table() {
  static const postern_service_v1_t table = {
      sizeof(postern_service_v1_t), &service_on_open, &service_on_data, &service_on_tls,
      &service_on_drain,           &service_on_close,
  };
  return &table;
}

}  // namespace detail
}  // namespace postern::sdk
