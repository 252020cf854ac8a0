#pragma once
// One client connection of a service listener: the host side of ABI 1.2's
// postern_stream_t (docs/services.md). The host owns the socket and TLS; the
// plugin reads plaintext through on_data and writes with stream_write.
//
// THREADING: every call into the plugin's postern_service_v1_t for one stream
// runs on the stream's strand, one at a time. stream_write, stream_close,
// stream_post, stream_queued, stream_get, retain and release are safe from any
// thread; the others must run on the strand (POSTERN_ERR_INVALID otherwise).
// LIFETIME: intrusive reference count; the host holds one reference from
// accept until on_close returned, plugins add theirs with stream_retain.

#include "core/config/manifest.hpp"
#include "core/event/chain.hpp"
#include "core/plugin/loader.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/intrusive_ptr.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::tls {
class TlsContext;
}

namespace postern::core::service {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

/**
 * TLS of an outbound stream (ABI 1.3, stream_connect): handshakes run as the
 * client, with SNI and, unless `verify` is off, the peer's certificate
 * checked against the trust store and `server_name`.
 */
struct ClientTls {
  std::shared_ptr<boost::asio::ssl::context> context;  // tls::make_client_context()
  std::string server_name;  // SNI and verified name; an IP literal is verified but not sent as SNI
  bool verify = true;
};

/** Settings of one service listener, shared (immutable) by its streams. */
struct ListenerInfo {
  std::string name;      // the manifest's listener name
  std::string protocol;  // "imap", "pop3", ...
  config::TlsMode tls_mode = config::TlsMode::None;
  bool cleartext_auth = false;
  std::shared_ptr<tls::TlsContext> tls;  // null: no certificate (STARTTLS refused)
  std::string server_name;
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(30)};  // 0 = never
  std::chrono::milliseconds handshake_timeout{std::chrono::seconds(30)};
  size_t max_connections = 1000;
  std::shared_ptr<const ClientTls> client;  // set for an outbound stream: TLS as the client
};

/**
 * What serves a connection: the chain (the connection holds it, which keeps
 * the plugin loaded), the plugin and its registration in that chain.
 */
struct Provider {
  event::ChainPtr chain;
  const plugin::LoadedPlugin* plugin = nullptr;          // may be null (unit tests)
  const plugin::ServiceRegistration* service = nullptr;
  std::shared_ptr<plugin::Outstanding> outstanding;      // the plugin's: live streams, stream_post counts
  std::string name;                                      // the plugin's name, for logs
  explicit operator bool() const { return service != nullptr && outstanding != nullptr; }
};

/** The first plugin of `chain` (manifest order) that registered `protocol`; empty if none. */
Provider find_provider(const event::ChainPtr& chain, std::string_view protocol);

/** Read chunk size: one on_data call carries at most this many octets. */
inline constexpr size_t kReadChunk = 32 * 1024;

std::string_view close_reason_name(postern_close_reason_t reason);

}  // namespace postern::core::service

/** The opaque postern_stream_t (see the file comment). */
struct postern_stream {
  using Clock = std::chrono::steady_clock;
  using tcp = boost::asio::ip::tcp;
  using Strand = postern::core::service::Strand;
  /** TCP (served or outbound) or a Unix-domain socket (outbound). */
  using Socket = boost::asio::generic::stream_protocol::socket;

  postern_stream(Strand strand, Socket socket, std::shared_ptr<const postern::core::service::ListenerInfo> listener,
                 postern::core::service::Provider provider, std::string session_id);
  ~postern_stream();
  postern_stream(const postern_stream&) = delete;
  postern_stream& operator=(const postern_stream&) = delete;

  /**
   * Starts serving on the strand: registers with the plugin (refused while it
   * unloads), runs the implicit-TLS handshake if the listener asks for it,
   * calls on_open, reads. `on_end` runs on the strand once the stream ended
   * (after on_close, or without it when on_open never ran or refused).
   */
  void start(std::function<void(postern_stream*)> on_end);
  /**
   * Ends the stream with on_close(SHUTDOWN); queued output is dropped. Any
   * thread. When the I/O context has stopped (posternd's last stage of
   * shutdown) the stream ends on the calling thread.
   */
  void shutdown();

  // The ABI functions (host_api_service.cpp forwards to them).
  postern_status_t write(postern_bytes_t data);
  size_t queued();
  postern_status_t want_drain();
  postern_status_t pause(bool paused);
  postern_status_t starttls();
  void close();
  postern_status_t set_idle_timeout(uint64_t timeout_ms);
  postern_status_t post(postern_task_cb fn, void* user);
  postern_status_t get(uint32_t prop, postern_str_t* out);

  const std::string& session_id() const { return props_[POSTERN_STREAM_SESSION_ID]; }
  const std::string& peer_ip() const { return props_[POSTERN_STREAM_PEER_IP]; }
  /** Why the stream ended; valid in the on_end function. */
  postern_close_reason_t end_reason() const { return end_reason_; }
  /** Whether the TLS handshake ran out of time (on_end after TLS_FAILED). */
  bool handshake_timed_out() const { return timed_out_handshake_; }
  /** The TLS handshake's error text, empty if none (on_end after TLS_FAILED). */
  const std::string& handshake_error() const { return handshake_error_; }

  std::atomic<int> refs{1};  // the host's reference, dropped when the stream ended

 private:
  using StreamPtr = boost::intrusive_ptr<postern_stream>;
  enum class State { Starting, Open, Closing, Closed };

  Socket& lowest() { return tls_ ? tls_->next_layer() : socket_; }
  bool on_strand() const { return strand_.running_in_this_thread(); }

  void handshake();
  void on_handshake(const boost::system::error_code& ec);
  void open();
  void arm_read();
  void on_readable(uint64_t gen, const boost::system::error_code& ec);
  void on_tls_read(uint64_t gen, const boost::system::error_code& ec, size_t n);
  void deliver(const uint8_t* data, size_t n);
  void read_failed(const boost::system::error_code& ec);
  void kick();
  void on_written(const boost::system::error_code& ec, size_t n);
  void after_output();
  void deliver_drains();
  void update_idle(bool reset);
  void close_requested();
  void close_tls();
  void finish(postern_close_reason_t reason);

  // Immutable after construction.
  Strand strand_;
  std::shared_ptr<const postern::core::service::ListenerInfo> listener_;
  std::array<std::string, 12> props_;  // POSTERN_STREAM_* except the TLS ones (guarded by mu_)
  std::shared_ptr<postern::core::plugin::Outstanding> outstanding_;
  postern_service_v1_t table_{};
  void* service_user_ = nullptr;
  std::string plugin_name_;

  // Guarded by mu_: touched by the any-thread functions.
  std::mutex mu_;
  State state_ = State::Starting;
  std::deque<std::string> out_;    // queued, not yet handed to a write
  size_t queued_ = 0;              // octets in out_ plus those being written
  size_t plain_left_ = 0;          // while tls_pending_: chunks of out_ still to go out in plaintext
  bool kick_posted_ = false;
  bool tls_pending_ = false;       // stream_starttls called, on_tls not yet
  std::string tls_protocol_;
  std::string tls_cipher_;

  // Strand only.
  postern::core::service::Provider provider_;
  std::function<void(postern_stream*)> on_end_;
  Socket socket_;
  std::optional<boost::asio::ssl::stream<Socket>> tls_;
  boost::asio::steady_timer idle_timer_;
  boost::asio::steady_timer handshake_timer_;
  std::vector<uint8_t> rbuf_;      // TLS reads (allocated with the first one)
  size_t held_ = 0;                // TLS input read while paused, delivered on resume
  std::vector<std::string> writing_;  // the chunks of the write in flight
  std::chrono::milliseconds idle_timeout_;
  uint64_t live_id_ = 0;           // key in outstanding_->streams (0: not registered)
  uint64_t read_gen_ = 0;
  uint64_t idle_gen_ = 0;
  size_t drain_requests_ = 0;
  uint64_t bytes_in_ = 0;
  uint64_t bytes_out_ = 0;
  Clock::time_point started_ = Clock::now();
  void* conn_ = nullptr;
  bool opened_ = false;            // on_open returned a connection: on_close is owed
  bool refused_ = false;           // on_open returned NULL
  bool reading_ = false;
  bool writing_now_ = false;
  bool paused_ = false;
  bool handshaking_ = false;
  bool drain_posted_ = false;
  bool idle_armed_ = false;
  bool tls_closing_ = false;        // close_notify sent, waiting for the peer's
  bool finished_ = false;
  bool timed_out_handshake_ = false;
  bool registered_ = false;
  postern_close_reason_t end_reason_ = POSTERN_CLOSE_SHUTDOWN;
  std::string handshake_error_;
};

void intrusive_ptr_add_ref(postern_stream* s);
void intrusive_ptr_release(postern_stream* s);
