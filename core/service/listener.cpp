#include "core/service/listener.hpp"

#include "core/log/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace postern::core::service {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct ListenerState : std::enable_shared_from_this<ListenerState> {
  ListenerState(net::io_context& io_, std::shared_ptr<const ListenerInfo> info_, config::AccessList access_,
                std::string address_, uint16_t port_, ProviderLookup lookup_)
      : io(io_),
        info(std::move(info_)),
        access(std::move(access_)),
        address(std::move(address_)),
        configured_port(port_),
        lookup(std::move(lookup_)),
        acceptor(net::make_strand(io_)),
        backoff(acceptor.get_executor()) {}

  net::io_context& io;
  std::shared_ptr<const ListenerInfo> info;
  config::AccessList access;
  std::string address;
  uint16_t configured_port;
  ProviderLookup lookup;
  tcp::acceptor acceptor;
  net::steady_timer backoff;
  std::atomic<bool> stopping{false};
  std::atomic<uint16_t> port{0};
  std::atomic<uint64_t> counter{0};

  mutable std::mutex mu;
  size_t active = 0;
  std::unordered_map<postern_stream*, boost::intrusive_ptr<postern_stream>> streams;

  void accept();
  void on_accept(Strand strand, const boost::system::error_code& ec, tcp::socket sock);
};

namespace {

std::string peer_of(const tcp::socket& sock) {
  boost::system::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (ec) return "?";
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
  return a.to_string();
}

}  // namespace

void ListenerState::accept() {
  if (stopping) return;
  Strand strand = net::make_strand(io);
  acceptor.async_accept(strand, [self = shared_from_this(), strand](const boost::system::error_code& ec,
                                                                     tcp::socket sock) mutable {
    self->on_accept(std::move(strand), ec, std::move(sock));
  });
}

void ListenerState::on_accept(Strand strand, const boost::system::error_code& ec, tcp::socket sock) {
  if (stopping) return;
  if (ec) {
    if (ec == net::error::operation_aborted) return;
    // EMFILE and friends: back off instead of spinning.
    log::warn("service", "listener={} accept failed: {}", info->name, ec.message());
    backoff.expires_after(std::chrono::milliseconds(100));
    backoff.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (!e) self->accept();
    });
    return;
  }
  accept();  // the next connection is accepted while this one is set up
  const std::string peer = peer_of(sock);
  const std::string session = fmt::format("{}-{}", info->name, ++counter);
  boost::system::error_code ignored;
  if (!access.permits(peer)) {
    log::info("service", "session={} peer={} refused by listener access list", session, peer);
    sock.close(ignored);
    return;
  }
  {
    std::lock_guard lock(mu);
    if (active >= info->max_connections) {
      log::warn("service", "session={} peer={} refused: listener {} has {} connections (max-connections)", session,
                peer, info->name, active);
      sock.close(ignored);
      return;
    }
    ++active;
  }
  Provider provider = lookup ? lookup(info->protocol) : Provider{};
  if (!provider) {
    log::warn("service", "session={} peer={} refused: no plugin of the current configuration serves protocol {}",
              session, peer, info->protocol);
    sock.close(ignored);
    std::lock_guard lock(mu);
    --active;
    return;
  }
  log::info("service", "session={} peer={} connect listener={} protocol={} plugin={}", session, peer, info->name,
            info->protocol, provider.name);
  // refs = 1: the host's reference, dropped by the stream when it ends.
  auto* stream = new postern_stream(std::move(strand), std::move(sock), info, std::move(provider), session);
  // Ours for this function: the stream may end on its strand (and drop the
  // host's and the map's references) before start() even returns.
  const boost::intrusive_ptr<postern_stream> ref(stream);
  {
    std::lock_guard lock(mu);
    streams.emplace(stream, ref);
  }
  stream->start([self = shared_from_this()](postern_stream* s) {
    boost::intrusive_ptr<postern_stream> doomed;  // released outside the lock
    std::lock_guard lock(self->mu);
    auto it = self->streams.find(s);
    if (it != self->streams.end()) {
      doomed = std::move(it->second);
      self->streams.erase(it);
    }
    --self->active;
  });
  if (stopping) ref->shutdown();  // stop() ran while this one was being set up
}

ListenerInfo make_listener_info(const config::Listener& l, std::shared_ptr<tls::TlsContext> tls,
                                std::string server_name) {
  ListenerInfo info;
  info.name = l.name;
  info.protocol = l.protocol;
  info.tls_mode = l.tls;
  info.cleartext_auth = l.cleartext_auth;
  info.tls = std::move(tls);
  info.server_name = std::move(server_name);
  if (l.node) {
    auto duration = [&](const char* attr, std::chrono::milliseconds& out, bool zero_ok) {
      pugi::xml_attribute a = l.node.attribute(attr);
      if (!a) return;
      auto v = config::parse_duration(a.value());
      if (!v || (!zero_ok && v->count() == 0)) {
        throw std::runtime_error(fmt::format("listener {}: {}=\"{}\" is not a duration{}", l.name, attr, a.value(),
                                             zero_ok ? "" : " above 0"));
      }
      out = *v;
    };
    duration("idle-timeout", info.idle_timeout, true);
    duration("tls-handshake-timeout", info.handshake_timeout, false);
    if (pugi::xml_attribute a = l.node.attribute("max-connections")) {
      const std::string_view text = a.value();
      size_t v = 0;
      auto [p, err] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (err != std::errc() || p != text.data() + text.size() || v == 0 || v > 1'000'000) {
        throw std::runtime_error(
            fmt::format("listener {}: max-connections=\"{}\" must be 1-1000000", l.name, a.value()));
      }
      info.max_connections = v;
    }
  }
  return info;
}

ServiceListener::ServiceListener(net::io_context& io, const config::Listener& listener, ListenerInfo info,
                                 ProviderLookup lookup)
    : state_(std::make_shared<ListenerState>(io, std::make_shared<const ListenerInfo>(std::move(info)), listener.access,
                                             listener.address, listener.port, std::move(lookup))) {}

ServiceListener::~ServiceListener() { stop(); }

void ServiceListener::start() {
  auto& st = *state_;
  const ListenerInfo& info = *st.info;
  if (info.tls_mode != config::TlsMode::None && !info.tls) {
    throw std::runtime_error(fmt::format("{} listener {}: tls=\"{}\" needs a <certificate>", info.protocol, info.name,
                                         config::tls_mode_name(info.tls_mode)));
  }
  boost::system::error_code ec;
  auto addr = net::ip::make_address(st.address, ec);
  if (ec) throw std::runtime_error(fmt::format("{} listener {}: bad address \"{}\"", info.protocol, info.name, st.address));
  tcp::endpoint ep(addr, st.configured_port);
  auto fail = [&](std::string_view what) {
    throw std::runtime_error(fmt::format("{} listener {}: cannot {} {}:{}: {}", info.protocol, info.name, what,
                                         st.address, st.configured_port, ec.message()));
  };
  st.acceptor.open(ep.protocol(), ec);
  if (ec) fail("open");
  st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  st.acceptor.bind(ep, ec);
  if (ec) fail("bind");
  st.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail("listen on");
  st.port = st.acceptor.local_endpoint().port();
  log::info("service", "listener={} protocol={} listening on {}:{} tls={} max-connections={} idle-timeout={}ms",
            info.name, info.protocol, st.address, st.port.load(), config::tls_mode_name(info.tls_mode),
            info.max_connections, info.idle_timeout.count());
  net::post(st.acceptor.get_executor(), [s = state_] { s->accept(); });
}

void ServiceListener::stop() {
  auto st = state_;
  if (!st->stopping.exchange(true)) {
    if (st->io.stopped()) {
      boost::system::error_code ec;
      st->acceptor.close(ec);
      st->backoff.cancel();
    } else {
      net::post(st->acceptor.get_executor(), [st] {
        boost::system::error_code ec;
        st->acceptor.close(ec);
        st->backoff.cancel();
      });
    }
  }
  // Every call, not only the first: a stream whose posted end never ran (the
  // I/O context stopped before) ends here, on the caller's thread.
  std::vector<boost::intrusive_ptr<postern_stream>> live;
  {
    std::lock_guard lock(st->mu);
    for (auto& [raw, ref] : st->streams) live.push_back(ref);
  }
  for (auto& s : live) s->shutdown();
}

size_t ServiceListener::active() const {
  std::lock_guard lock(state_->mu);
  return state_->active;
}

uint16_t ServiceListener::port() const { return state_->port; }

const std::string& ServiceListener::name() const { return state_->info->name; }

}  // namespace postern::core::service
