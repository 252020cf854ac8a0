#include "core/control/server.hpp"

#include "core/log/log.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>

namespace postern::core::control {

namespace json = boost::json;
using boost::asio::local::stream_protocol;

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(stream_protocol::socket socket, const Registry& registry, std::chrono::milliseconds timeout)
      : socket_(std::move(socket)), registry_(registry), timeout_(timeout), timer_(socket_.get_executor()) {}

  void start() { read(); }

 private:
  void read() {
    boost::asio::async_read_until(
        socket_, boost::asio::dynamic_buffer(buffer_, kMaxRequest + 1), '\n',
        [self = shared_from_this()](boost::system::error_code ec, size_t n) { self->on_line(ec, n); });
  }

  void on_line(boost::system::error_code ec, size_t n) {
    if (ec == boost::asio::error::not_found) {
      // The limit is part of the protocol: say so, then close (the rest of
      // the request would be read as garbage).
      send(reply_to_json(Reply::failure(Exit::Usage, "request longer than 1 MiB"), nullptr), true);
      return;
    }
    if (ec) return;  // the client went away (EOF between requests is the normal end)
    std::string line = buffer_.substr(0, n - 1);
    buffer_.erase(0, n);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) return read();
    boost::system::error_code pec;
    json::value request = json::parse(line, pec);
    if (pec) {
      send(reply_to_json(Reply::failure(Exit::Usage, "malformed request: " + pec.message()), nullptr), false);
      return;
    }
    json::value id = request.is_object() && request.as_object().contains("id") ? request.as_object().at("id")
                                                                                : json::value();
    // One answer per request: the first of the command's reply and the timeout.
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto self = shared_from_this();
    timer_.expires_after(timeout_);
    timer_.async_wait(boost::asio::bind_executor(socket_.get_executor(), [self, answered, id](boost::system::error_code tec) {
      if (tec || answered->exchange(true)) return;
      log::warn("control", "a command did not answer within {} ms", self->timeout_.count());
      self->send(reply_to_json(Reply::failure(Exit::Fail, "the command did not answer in time"), id), false);
    }));
    registry_.call(request, [self, answered, id](Reply reply) {
      if (answered->exchange(true)) return;  // after the timeout: dropped
      boost::asio::post(self->socket_.get_executor(), [self, id, reply = std::move(reply)] {
        self->timer_.cancel();
        self->send(reply_to_json(reply, id), false);
      });
    });
  }

  void send(const json::object& reply, bool close_after) {
    out_ = json::serialize(reply) + "\n";
    boost::asio::async_write(socket_, boost::asio::buffer(out_),
                             [self = shared_from_this(), close_after](boost::system::error_code ec, size_t) {
                               if (ec || close_after) {
                                 boost::system::error_code ignored;
                                 self->socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
                                 return;
                               }
                               self->read();
                             });
  }

  stream_protocol::socket socket_;
  const Registry& registry_;
  std::chrono::milliseconds timeout_;
  boost::asio::steady_timer timer_;
  std::string buffer_;
  std::string out_;
};

}  // namespace

ControlServer::ControlServer(boost::asio::io_context& io, const Registry& registry, std::filesystem::path socket_path,
                             std::chrono::milliseconds timeout)
    : io_(io),
      registry_(registry),
      path_(std::move(socket_path)),
      timeout_(timeout),
      strand_(boost::asio::make_strand(io)),
      acceptor_(strand_) {}

ControlServer::~ControlServer() { stop(); }

void ControlServer::start() {
  if (path_.string().size() >= sizeof(sockaddr_un{}.sun_path))
    throw std::runtime_error("control socket path " + path_.string() + " is too long for a Unix socket");
  std::error_code fec;
  std::filesystem::remove(path_, fec);  // stale from a crash; the pid file guards against two daemons
  boost::system::error_code ec;
  acceptor_.open(stream_protocol(), ec);
  // The socket inode takes the descriptor's mode at bind (Linux), so it is 0600
  // from its first moment, and chmod-ed again after; the process umask, which
  // other threads' files depend on, is never touched.
  if (!ec && ::fchmod(acceptor_.native_handle(), 0600) != 0) ec.assign(errno, boost::system::system_category());
  if (!ec) acceptor_.bind(stream_protocol::endpoint(path_.string()), ec);
  if (!ec && ::chmod(path_.c_str(), 0600) != 0) ec.assign(errno, boost::system::system_category());
  if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("control socket " + path_.string() + ": " + ec.message());
  started_ = true;
  accept();
}

void ControlServer::stop() {
  // The acceptor lives on its strand: a stop from a signal handler on another
  // I/O thread closes it there, never beside a running accept handler. The
  // socket file goes at once; the destructor (after io.run) closes directly.
  if (!started_.exchange(false)) return;
  std::error_code fec;
  std::filesystem::remove(path_, fec);
  if (io_.stopped()) {
    boost::system::error_code ec;
    acceptor_.close(ec);
    return;
  }
  boost::asio::post(strand_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
}

void ControlServer::accept() {
  acceptor_.async_accept(boost::asio::make_strand(io_), [this](boost::system::error_code ec, stream_protocol::socket s) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      // Owner-only: the mode already says so; the peer's credentials say it again.
      ucred cred{};
      socklen_t len = sizeof cred;
      if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
          (cred.uid != ::geteuid() && cred.uid != 0)) {
        log::warn("control", "refused a control connection from uid {}", cred.uid);
      } else {
        std::make_shared<Connection>(std::move(s), registry_, timeout_)->start();
      }
    }
    accept();
  });
}

}  // namespace postern::core::control
