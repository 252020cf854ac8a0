#pragma once
// posternd's control socket (docs/control-plane.md): a Unix stream socket,
// mode 0600, owner-only (SO_PEERCRED: the daemon's user or root). One JSON
// request per line, one JSON reply per line, in order; at most
// kMaxRequest octets per request. Everything runs on the io_context, one
// strand per connection; the registry's handlers put disk and SQLite work
// on the worker pool. A reply that does not come within the command timeout
// is answered with a failure (a late one is dropped).

#include "core/control/registry.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>

namespace postern::core::control {

inline constexpr size_t kMaxRequest = 1 << 20;

class ControlServer {
 public:
  /**
   * @param registry must outlive the server.
   * @param timeout how long a command may take before the client gets a failure.
   */
  ControlServer(boost::asio::io_context& io, const Registry& registry, std::filesystem::path socket_path,
                std::chrono::milliseconds timeout = std::chrono::seconds(120));
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /**
   * Binds the socket (a stale file from a crashed daemon is replaced) with
   * mode 0600 and starts accepting. @throws std::runtime_error with the reason.
   */
  void start();
  /** Stops accepting and removes the socket file; open connections end after their current request. */
  void stop();
  const std::filesystem::path& path() const { return path_; }

 private:
  void accept();

  boost::asio::io_context& io_;
  const Registry& registry_;
  std::filesystem::path path_;
  std::chrono::milliseconds timeout_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::atomic<bool> started_{false};
};

}  // namespace postern::core::control
