#pragma once
// smtp: one connection. Owns the socket (and TLS stream), the timers and the
// strand, and drives the SmtpEngine: reads octets and feeds them, writes the
// replies it queues, and runs its Requests — hook stages, directory lookups
// and password checks off the strand, the tarpit and AUTH delays on a timer,
// the spool write, the TLS handshake. Internal to core/smtp (server.cpp).

#include "core/config/manifest.hpp"
#include "core/event/chain.hpp"
#include "core/smtp/engine.hpp"
#include "core/smtp/smtp_config.hpp"

#include "postern/mail/throttle.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace postern::core::queue {
class Spool;
}
namespace postern::core::tls {
class TlsContext;
}

namespace postern::core::smtp {

class Session;

/** What a listener's sessions share. The mutex guards cfg, the counters and the registry. */
struct ServerState {
  ServerState(boost::asio::io_context& io, const config::Listener& listener, std::shared_ptr<const SmtpConfig> cfg,
              event::ChainProvider chains, queue::Spool& spool, std::shared_ptr<tls::TlsContext> tls,
              std::string server_name);
  ~ServerState();

  boost::asio::io_context& io;
  config::Listener listener;
  std::shared_ptr<const SmtpConfig> cfg;  // guarded by mu
  event::ChainProvider chains;
  queue::Spool& spool;
  std::shared_ptr<tls::TlsContext> tls;
  std::string server_name;
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::thread_pool auth_pool{1};  // password hashing is slow on purpose: keep it off the I/O threads
  std::atomic<bool> stopping{false};
  std::atomic<uint16_t> port{0};
  std::atomic<uint64_t> session_counter{0};
  /** Failed AUTH per client address (the mail library's throttle); settings follow cfg. */
  mail::LoginThrottle login_throttle;

  mutable std::mutex mu;
  size_t active = 0;
  std::unordered_map<std::string, size_t> per_ip;
  std::list<std::weak_ptr<Session>> sessions;

  std::shared_ptr<const SmtpConfig> config() const;
  void set_config(std::shared_ptr<const SmtpConfig> c);
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ServerState> srv, boost::asio::ip::tcp::socket sock);

  boost::asio::any_io_executor executor() { return watchdog_.get_executor(); }

  /** The session's life: admission, greeting, the engine's loop, the disconnect stage. */
  static boost::asio::awaitable<void> run(std::shared_ptr<Session> self);

  /** Any thread: makes the session answer 421 and close at its next read. */
  void shutdown();

 private:
  using Clock = std::chrono::steady_clock;

  boost::asio::ip::tcp::socket& lowest() { return tls_ ? tls_->next_layer() : *plain_; }
  void cancel_io();
  void set_deadline(std::chrono::milliseconds d);
  static boost::asio::awaitable<void> watchdog(std::shared_ptr<Session> self);
  boost::asio::awaitable<bool> write_raw(std::string_view data);
  /** Sends the queued replies. */
  boost::asio::awaitable<bool> flush();
  /** Flushes, then reads some octets into `chunk`; false when the input ended. */
  boost::asio::awaitable<bool> read_some(std::string& chunk);
  /** Sends the final replies with a short deadline. */
  boost::asio::awaitable<void> final_flush();

  bool admit();
  void leave();
  boost::asio::awaitable<void> finish();
  boost::asio::awaitable<bool> tls_handshake();
  boost::asio::awaitable<void> serve();
  /** The early-talker check before the banner (RFC 5321 §4.3.1); true when the client talked first. */
  boost::asio::awaitable<bool> early_talker();

  /** Runs the engine's current Request other than StartTls (not a coroutine: it returns the runner's awaitable). */
  boost::asio::awaitable<void> run_request();
  boost::asio::awaitable<void> run_stage_request();
  boost::asio::awaitable<void> run_recipient_request();
  boost::asio::awaitable<void> run_password_request();
  boost::asio::awaitable<void> run_delay_request();
  boost::asio::awaitable<void> run_parse_request();
  boost::asio::awaitable<void> run_spool_request();
  boost::asio::awaitable<event::Outcome> run_stage(event::Stage stage, event::EventData& ev);
  boost::asio::any_io_executor worker_executor() const;

  std::shared_ptr<ServerState> srv_;
  std::shared_ptr<const SmtpConfig> cfg_;
  event::ChainPtr chain_;
  std::optional<boost::asio::ip::tcp::socket> plain_;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
  boost::asio::steady_timer watchdog_;
  boost::asio::steady_timer delay_timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  std::list<std::weak_ptr<Session>>::iterator registry_it_;

  event::SessionInfo info_;  // until the engine takes it
  std::optional<SmtpEngine> engine_;
  std::string out_;
  TlsFacts tls_facts_;
  bool admitted_ = false;
  bool closed_ = false;
  bool timed_out_ = false;
  bool io_error_ = false;
  bool shutting_down_ = false;
};

}  // namespace postern::core::smtp
