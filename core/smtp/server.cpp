#include "core/smtp/server.hpp"

#include "core/log/log.hpp"
#include "core/smtp/session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>

#include <stdexcept>
#include <vector>

namespace postern::core::smtp {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

// ------------------------------------------------------------------ server

SmtpServer::SmtpServer(net::io_context& io, const config::Listener& listener, std::shared_ptr<const SmtpConfig> cfg,
                       event::ChainProvider chains, queue::Spool& spool, std::shared_ptr<tls::TlsContext> tls,
                       std::string server_name)
    : state_(std::make_shared<ServerState>(io, listener, std::move(cfg), std::move(chains), spool, std::move(tls),
                                           std::move(server_name))) {}

SmtpServer::~SmtpServer() {
  stop();
}

namespace {

net::awaitable<void> accept_loop(std::shared_ptr<ServerState> st) {
  for (;;) {
    auto [ec, sock] = co_await st->acceptor.async_accept(net::make_strand(st->io), net::as_tuple(net::use_awaitable));
    if (st->stopping) co_return;
    if (ec) {
      if (ec == net::error::operation_aborted) co_return;
      // EMFILE and friends: back off instead of spinning.
      log::warn("smtp", "listener={} accept failed: {}", st->listener.name, ec.message());
      net::steady_timer t(st->acceptor.get_executor(), 100ms);
      co_await t.async_wait(net::as_tuple(net::use_awaitable));
      continue;
    }
    auto session = std::make_shared<Session>(st, std::move(sock));
    net::co_spawn(session->executor(), Session::run(session), net::detached);
  }
}

}  // namespace

void SmtpServer::start() {
  auto& st = *state_;
  const auto& l = st.listener;
  if (l.tls == config::TlsMode::Implicit && !st.tls) {
    throw std::runtime_error(fmt::format("smtp listener {}: tls=\"implicit\" needs a <certificate>", l.name));
  }
  boost::system::error_code ec;
  auto addr = net::ip::make_address(l.address, ec);
  if (ec) throw std::runtime_error(fmt::format("smtp listener {}: bad address \"{}\"", l.name, l.address));
  tcp::endpoint ep(addr, l.port);
  auto fail = [&](std::string_view what) {
    throw std::runtime_error(
        fmt::format("smtp listener {}: cannot {} {}:{}: {}", l.name, what, l.address, l.port, ec.message()));
  };
  st.acceptor.open(ep.protocol(), ec);
  if (ec) fail("open");
  st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  st.acceptor.bind(ep, ec);
  if (ec) fail("bind");
  st.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("listen on");
  st.port = st.acceptor.local_endpoint().port();
  log::info("smtp", "listener={} listening on {}:{} tls={}", l.name, l.address, st.port.load(), config::tls_mode_name(l.tls));
  net::co_spawn(st.acceptor.get_executor(), accept_loop(state_), net::detached);
}

void SmtpServer::stop() {
  auto st = state_;
  if (st->stopping.exchange(true)) return;
  net::post(st->acceptor.get_executor(), [st] {
    boost::system::error_code ec;
    st->acceptor.close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(st->mu);
    for (auto& w : st->sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) s->shutdown();
}

size_t SmtpServer::active_sessions() const {
  std::lock_guard lock(state_->mu);
  return state_->active;
}

uint16_t SmtpServer::port() const {
  return state_->port;
}

void SmtpServer::set_config(std::shared_ptr<const SmtpConfig> cfg) {
  state_->set_config(std::move(cfg));
}

}  // namespace postern::core::smtp
