#pragma once
// A service listener: one `<listener protocol="X">` whose protocol a service
// plugin serves (ABI 1.2, docs/services.md). It accepts, applies the access
// list and the connection limit, and hands each connection to the plugin
// that serves X in the chain current at that moment, as a postern_stream.
// Diagnostics (component "service"): one line per accept, refusal and close,
// each with the session id.

#include "core/config/manifest.hpp"
#include "core/service/stream.hpp"

#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace postern::core::service {

struct ListenerState;

/** Finds who serves `protocol` for a new connection (an empty Provider: nobody). */
using ProviderLookup = std::function<Provider(std::string_view protocol)>;

/**
 * The settings of a service listener from its manifest element: attributes
 * idle-timeout (default 30m, "0" = never), max-connections (default 1000) and
 * tls-handshake-timeout (default 30s).
 * @throws std::runtime_error naming the listener and attribute on a bad value.
 */
ListenerInfo make_listener_info(const config::Listener& listener, std::shared_ptr<tls::TlsContext> tls,
                                std::string server_name);

class ServiceListener {
 public:
  /**
   * @param io the context streams run on (may be run by several threads).
   * @param lookup called once per accepted connection, on an I/O thread.
   */
  ServiceListener(boost::asio::io_context& io, const config::Listener& listener, ListenerInfo info,
                  ProviderLookup lookup);
  /** Stops (see stop()). */
  ~ServiceListener();
  ServiceListener(const ServiceListener&) = delete;
  ServiceListener& operator=(const ServiceListener&) = delete;

  /** Binds, listens and accepts. @throws std::runtime_error naming the address on failure. */
  void start();
  /**
   * Stops accepting and ends every stream with on_close(SHUTDOWN); the
   * streams finish on their strands (active() drops to 0), or on the calling
   * thread once the I/O context has stopped. Thread-safe; calling it again
   * ends streams that are still open.
   */
  void stop();
  /** Connections admitted and not yet ended. Thread-safe. */
  size_t active() const;
  /** The bound port (useful with port 0); 0 before start(). */
  uint16_t port() const;
  const std::string& name() const;

 private:
  std::shared_ptr<ListenerState> state_;
};

}  // namespace postern::core::service
