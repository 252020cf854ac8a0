#pragma once
// The ESMTP receiver (RFC 5321 and the extensions in docs/smtp.md): one
// listener, one coroutine per session on its own strand (session.hpp) driving
// the socket-free protocol engine (engine.hpp; the units: docs/smtp-engine.md).
// A session raises the event-bus stages (connect ... disconnect), enforces
// limits and relay policy, and answers 250 to the end of data only after the
// spool made the message durable. Diagnostics: one log line per transaction
// outcome (component "smtp").

#include "core/config/manifest.hpp"
#include "core/event/chain.hpp"
#include "core/smtp/smtp_config.hpp"

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace postern::core::queue {
class Spool;
}
namespace postern::core::tls {
class TlsContext;
}

namespace postern::core::smtp {

struct ServerState;

class SmtpServer {
 public:
  /**
   * @param io the context sessions run on (may be run by several threads).
   * @param listener protocol "smtp" or "submission"; tls None, StartTls or Implicit.
   * @param cfg engine settings; shared with other listeners; immutable.
   * @param chains called once per session; the session holds the chain for its life.
   * @param spool must outlive the server and every session.
   * @param tls may be null: then STARTTLS is not offered and an Implicit listener fails to start.
   * @param server_name the host name in the banner, EHLO reply and Received: header.
   */
  SmtpServer(boost::asio::io_context& io, const config::Listener& listener, std::shared_ptr<const SmtpConfig> cfg,
             event::ChainProvider chains, queue::Spool& spool, std::shared_ptr<tls::TlsContext> tls,
             std::string server_name);
  ~SmtpServer();
  SmtpServer(const SmtpServer&) = delete;
  SmtpServer& operator=(const SmtpServer&) = delete;

  /** Binds and listens, then accepts on the io_context. @throws std::runtime_error naming the address on failure. */
  void start();
  /**
   * Stops accepting; sessions waiting for a command get 421 4.3.2 and are closed,
   * a session inside a stage finishes it first. Thread-safe; idempotent.
   */
  void stop();
  /** Sessions admitted and not yet finished. Thread-safe. */
  size_t active_sessions() const;
  /** The bound port (useful with port 0); 0 before start(). */
  uint16_t port() const;
  /** Replaces the settings for sessions accepted from now on (reload). Thread-safe. */
  void set_config(std::shared_ptr<const SmtpConfig> cfg);

 private:
  std::shared_ptr<ServerState> state_;
};

}  // namespace postern::core::smtp
