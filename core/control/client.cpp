#include "core/control/client.hpp"

#include "core/control/registry.hpp"

#include <boost/json.hpp>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace postern::core::control {

ClientResult call_daemon(const std::filesystem::path& socket_path, const boost::json::object& request, int timeout_s) {
  ClientResult out;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket_path.string();
  if (path.size() >= sizeof addr.sun_path) {
    out.error = "control socket path " + path + " is too long";
    return out;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.error = std::string("socket: ") + std::strerror(errno);
    return out;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{timeout_s, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) {
      out.kind = ClientResult::Kind::NoDaemon;
      out.error = "posternd is not running (no control socket at " + path + ")";
    } else {
      out.error = "control socket " + path + ": " + std::strerror(errno);
    }
    return out;
  }
  const std::string line = boost::json::serialize(request) + "\n";
  for (size_t sent = 0; sent < line.size();) {
    const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      out.error = std::string("control socket: send: ") + std::strerror(errno);
      return out;
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      out.error = n == 0 ? "posternd closed the control connection without a reply"
                         : std::string("control socket: ") + (errno == EAGAIN ? "no reply in time" : std::strerror(errno));
      return out;
    }
    in.append(buf, static_cast<size_t>(n));
    if (const size_t nl = in.find('\n'); nl != std::string::npos) {
      in.resize(nl);
      break;
    }
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(in, ec);
  if (ec || !v.is_object()) {
    out.error = "posternd sent a malformed reply";
    return out;
  }
  out.kind = ClientResult::Kind::Replied;
  out.reply = reply_from_json(v.as_object());
  return out;
}

}  // namespace postern::core::control
