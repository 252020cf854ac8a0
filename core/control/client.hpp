#pragma once
// The client side of the control socket (posternctl; tests). Blocking: one
// request line out, one reply line in.

#include "core/control/command.hpp"

#include <boost/json/object.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace postern::core::control {

/** The control socket a manifest's daemon listens on: <server control-socket=> or <data-dir>/posternd.sock. */
struct ClientResult {
  enum class Kind {
    Replied,      // `reply` is the daemon's answer
    NoDaemon,     // nothing listens on the socket (no file, connection refused)
    Error,        // connected, but the exchange failed: `error` says why
  };
  Kind kind = Kind::Error;
  Reply reply;
  std::string error;
};

/**
 * Sends `request` (one JSON object) to the daemon at `socket_path` and waits
 * for its reply (at most `timeout_s` seconds).
 */
ClientResult call_daemon(const std::filesystem::path& socket_path, const boost::json::object& request,
                         int timeout_s = 150);

}  // namespace postern::core::control
