// The ABI 1.3 outbound-connection and injection functions (host_api_connect.cpp,
// host_api_inject.cpp), called through the host API table a plugin receives,
// against real sockets on loopback (TCP, TLS, a Unix-domain socket) and a
// real spool in a temporary directory. The postern_host_t belongs to a real
// LoadedPlugin (tests/abi/noop) whose HostServices carry the I/O context, the
// client TLS context and the spool.
#include "core/plugin/loader.hpp"
#include "core/queue/spool.hpp"
#include "core/tls/tls_context.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <array>
#include <chrono>
#include <future>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace postern::core::plugin {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using postern::testing::TempDir;
using namespace std::chrono_literals;

postern_str_t S(std::string_view s) { return postern_str_t{s.data(), s.size()}; }
std::string str(postern_str_t s) { return std::string(s.ptr != nullptr ? s.ptr : "", s.len); }
postern_bytes_t B(std::string_view s) { return postern_bytes_t{reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

/** What the plugin side of one connect saw; every callback records here. */
struct Probe {
  std::mutex mu;
  std::condition_variable cv;
  int results = 0;  // on_connected calls (must end as 1)
  std::optional<uint32_t> status;
  std::string detail;
  postern_stream_t* stream = nullptr;
  const postern_host_api_v1_t* api = nullptr;
  std::string data;
  std::optional<postern_close_reason_t> closed;
  int closes = 0;
  std::string tls_protocol;
  bool refuse = false;  // on_connected returns NULL

  template <class Pred>
  bool wait(Pred p, std::chrono::milliseconds t = 10s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, t, [&] { return p(*this); });
  }
};

void* on_connected(void* user, uint32_t status, postern_stream_t* stream, postern_str_t detail) {
  auto* p = static_cast<Probe*>(user);
  std::lock_guard lock(p->mu);
  ++p->results;
  p->status = status;
  p->detail = str(detail);
  p->stream = stream;
  if (stream != nullptr) {
    postern_str_t v{};
    if (p->api->stream_get(stream, POSTERN_STREAM_TLS_PROTOCOL, &v) == POSTERN_OK) p->tls_protocol = str(v);
  }
  p->cv.notify_all();
  return stream != nullptr && !p->refuse ? p : nullptr;
}
void on_data(void* conn, postern_bytes_t d) {
  auto* p = static_cast<Probe*>(conn);
  std::lock_guard lock(p->mu);
  p->data.append(reinterpret_cast<const char*>(d.ptr), d.len);
  p->cv.notify_all();
}
void on_close(void* conn, postern_close_reason_t reason) {
  auto* p = static_cast<Probe*>(conn);
  std::lock_guard lock(p->mu);
  p->closed = reason;
  ++p->closes;
  p->cv.notify_all();
}
const postern_service_v1_t kCallbacks = {sizeof(postern_service_v1_t), nullptr, &on_data, nullptr, nullptr, &on_close};

/** An echo server on loopback (TCP, optionally TLS, or a Unix socket); `silent` accepts and never answers. */
class EchoServer {
 public:
  EchoServer(net::io_context& io, net::ssl::context* tls = nullptr, bool silent = false)
      : acceptor_(io, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)), tls_(tls), silent_(silent) {
    accept();
  }
  /** Closes the acceptor and every connection on the I/O thread, and waits for it. */
  ~EchoServer() {
    std::promise<void> done;
    net::post(acceptor_.get_executor(), [&] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      for (auto& s : held_) s->close(ec);
      done.set_value();
    });
    done.get_future().wait();
  }
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      held_.push_back(sock);
      if (tls_ != nullptr) {
        auto ssl = std::make_shared<net::ssl::stream<tcp::socket&>>(*sock, *tls_);
        if (!silent_) {
          ssl->async_handshake(net::ssl::stream_base::server, [ssl, sock](boost::system::error_code e) {
            if (!e) echo(ssl, sock);
          });
        }
      } else if (!silent_) {
        echo(sock, sock);
      }
      accept();
    });
  }
  template <class Stream>
  static void echo(std::shared_ptr<Stream> s, std::shared_ptr<tcp::socket> keep) {
    auto buf = std::make_shared<std::array<char, 4096>>();
    s->async_read_some(net::buffer(*buf), [s, keep, buf](boost::system::error_code ec, size_t n) {
      if (ec) return;
      net::async_write(*s, net::buffer(buf->data(), n), [s, keep, buf](boost::system::error_code e, size_t) {
        if (!e) echo(s, keep);
      });
    });
  }

  tcp::acceptor acceptor_;
  net::ssl::context* tls_;
  bool silent_;
  std::vector<std::shared_ptr<tcp::socket>> held_;
};

class HostApiOutboundTest : public ::testing::Test {
 protected:
  void SetUp() override {
    io_thread_ = std::thread([this] { io_.run(); });
    spool_ = std::make_unique<queue::Spool>(tmp_.path / "queue", 2);
    HostServices s;
    s.io = &io_;
    s.workers = &workers_;
    s.state_root = tmp_.path / "state";
    s.client_tls = tls::make_client_context();
    s.spool = spool_.get();
    s.server_name = "mx.example.test";
    plugin_ = load(s);
    ASSERT_NE(plugin_, nullptr);
    host_.plugin = plugin_.get();
    api_ = host_api();
  }
  void TearDown() override {
    plugin_.reset();
    guard_.reset();
    io_.stop();
    io_thread_.join();
    workers_.join();
  }

  std::unique_ptr<LoadedPlugin> load(const HostServices& s) {
    auto& doc = docs_.emplace_back(std::make_unique<pugi::xml_document>());
    EXPECT_TRUE(doc->load_string(R"(<plugin name="noop"/>)"));
    LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "noop.so";
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "noop.plugin.xml";
    r.name = "noop";
    r.config = doc->document_element();
    auto loaded = LoadedPlugin::load(r, s);
    if (!std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) {
      ADD_FAILURE() << std::get<std::string>(loaded);
      return nullptr;
    }
    return std::move(std::get<0>(loaded));
  }

  postern_status_t connect(Probe& p, std::string_view host, uint32_t port, uint32_t flags = 0,
                           uint32_t timeout_ms = 5000, std::string_view unix_path = {}, uint64_t* id = nullptr) {
    p.api = api_;
    postern_connect_options_t o{};
    o.struct_size = sizeof o;
    o.flags = flags;
    o.host = S(host);
    o.port = port;
    o.timeout_ms = timeout_ms;
    o.unix_path = S(unix_path);
    return api_->stream_connect(&host_, &o, &kCallbacks, &on_connected, &p, id);
  }

  /** A port nobody listens on: bound, then closed. */
  uint16_t closed_port() {
    tcp::acceptor a(io_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    const uint16_t port = a.local_endpoint().port();
    a.close();
    return port;
  }

  /** A server TLS context with a self-signed certificate for "localhost". */
  std::unique_ptr<tls::TlsContext> server_tls() {
    config::Certificate c;
    c.cert_file = tmp_.path / "tls" / "cert.pem";
    c.key_file = tmp_.path / "tls" / "key.pem";
    c.generate_if_missing = true;
    c.names = {"localhost"};
    return std::make_unique<tls::TlsContext>(std::vector<config::Certificate>{c}, "localhost");
  }

  TempDir tmp_{"postern-outbound"};
  net::io_context io_;
  net::executor_work_guard<net::io_context::executor_type> guard_{io_.get_executor()};
  std::thread io_thread_;
  net::thread_pool workers_{2};
  std::unique_ptr<queue::Spool> spool_;
  std::vector<std::unique_ptr<pugi::xml_document>> docs_;
  std::unique_ptr<LoadedPlugin> plugin_;
  postern_host_t host_{};
  const postern_host_api_v1_t* api_ = nullptr;
};

// abi-policy.md: 1.3 only appends; the block's three members follow the 1.2
// table in order (other 1.3 blocks may sit between them and view_release).
TEST(AbiOutboundLayoutTest, MembersAreAppendedAfterTheAbi12Table) {
  EXPECT_GT(offsetof(postern_host_api_v1_t, stream_connect), offsetof(postern_host_api_v1_t, view_release));
  EXPECT_EQ(offsetof(postern_host_api_v1_t, stream_connect_cancel),
            offsetof(postern_host_api_v1_t, stream_connect) + sizeof(void*));
  EXPECT_EQ(offsetof(postern_host_api_v1_t, inject),
            offsetof(postern_host_api_v1_t, stream_connect_cancel) + sizeof(void*));
  EXPECT_EQ(host_api()->struct_size, sizeof(postern_host_api_v1_t));
  EXPECT_NE(host_api()->stream_connect, nullptr);
  EXPECT_NE(host_api()->stream_connect_cancel, nullptr);
  EXPECT_NE(host_api()->inject, nullptr);
}

TEST_F(HostApiOutboundTest, ConnectsToAnEchoServerAndGetsTheEchoBack) {
  EchoServer echo(io_);
  Probe p;
  uint64_t id = 0;
  ASSERT_EQ(connect(p, "127.0.0.1", echo.port(), 0, 5000, {}, &id), POSTERN_OK);
  EXPECT_NE(id, 0u);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  ASSERT_EQ(p.status, POSTERN_CONNECT_OK) << p.detail;
  ASSERT_NE(p.stream, nullptr);
  postern_str_t v{};
  ASSERT_EQ(api_->stream_get(p.stream, POSTERN_STREAM_PEER_IP, &v), POSTERN_OK);
  EXPECT_EQ(str(v), "127.0.0.1");
  ASSERT_EQ(api_->stream_get(p.stream, POSTERN_STREAM_PEER_PORT, &v), POSTERN_OK);
  EXPECT_EQ(str(v), std::to_string(echo.port()));
  ASSERT_EQ(api_->stream_get(p.stream, POSTERN_STREAM_PROTOCOL, &v), POSTERN_OK);
  EXPECT_EQ(str(v), "tcp");
  ASSERT_EQ(api_->stream_write(p.stream, B("ping\r\n")), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.data == "ping\r\n"; })) << p.data;
  api_->stream_close(p.stream);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.closed.has_value(); }));
  EXPECT_EQ(*p.closed, POSTERN_CLOSE_PLUGIN);
  EXPECT_EQ(p.results, 1);
}

TEST_F(HostApiOutboundTest, LocalhostIsTheLoopback) {
  EchoServer echo(io_);
  Probe p;
  ASSERT_EQ(connect(p, "localhost", echo.port()), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  ASSERT_EQ(p.status, POSTERN_CONNECT_OK) << p.detail;
  api_->stream_close(p.stream);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.closed.has_value(); }));
}

TEST_F(HostApiOutboundTest, ClosedPortIsRefused) {
  Probe p;
  ASSERT_EQ(connect(p, "127.0.0.1", closed_port()), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  EXPECT_EQ(p.status, POSTERN_CONNECT_REFUSED) << p.detail;
  EXPECT_EQ(p.stream, nullptr);
  EXPECT_NE(p.detail.find("127.0.0.1:"), std::string::npos) << p.detail;
}

TEST_F(HostApiOutboundTest, NameWithoutResolverIsADnsFailure) {
  Probe p;
  ASSERT_EQ(connect(p, "clamd.example.test", 3310), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  EXPECT_EQ(p.status, POSTERN_CONNECT_DNS_FAILED) << p.detail;
}

TEST_F(HostApiOutboundTest, SilentTlsPeerTimesOut) {
  auto cert = server_tls();
  EchoServer silent(io_, &cert->context(), true);
  Probe p;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(connect(p, "127.0.0.1", silent.port(), POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY, 300),
            POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  EXPECT_EQ(p.status, POSTERN_CONNECT_TIMEOUT) << p.detail;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(HostApiOutboundTest, TlsWithoutVerificationEchoesAndVerificationRefusesASelfSignedPeer) {
  auto cert = server_tls();
  EchoServer echo(io_, &cert->context());
  {
    Probe p;
    ASSERT_EQ(connect(p, "localhost", echo.port(), POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY), POSTERN_OK);
    ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
    ASSERT_EQ(p.status, POSTERN_CONNECT_OK) << p.detail;
    EXPECT_EQ(p.tls_protocol.rfind("TLSv1.", 0), 0u) << p.tls_protocol;
    ASSERT_EQ(api_->stream_write(p.stream, B("over tls\n")), POSTERN_OK);
    ASSERT_TRUE(p.wait([](Probe& x) { return x.data == "over tls\n"; })) << p.data;
    api_->stream_close(p.stream);
    ASSERT_TRUE(p.wait([](Probe& x) { return x.closed.has_value(); }));
  }
  {
    Probe p;
    ASSERT_EQ(connect(p, "localhost", echo.port(), POSTERN_CONNECT_TLS), POSTERN_OK);
    ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
    EXPECT_EQ(p.status, POSTERN_CONNECT_TLS_FAILED) << p.detail;
    EXPECT_EQ(p.stream, nullptr);
  }
}

TEST_F(HostApiOutboundTest, UnixSocketEchoes) {
  const auto path = (tmp_.path / "echo.sock").string();
  net::local::stream_protocol::acceptor acc(io_, net::local::stream_protocol::endpoint(path));
  std::thread server([&] {
    boost::system::error_code ec;
    net::local::stream_protocol::socket s(io_);
    acc.accept(s, ec);
    if (ec) return;
    char buf[256];
    const size_t n = s.read_some(net::buffer(buf), ec);
    if (!ec) net::write(s, net::buffer(buf, n), ec);
  });
  Probe p;
  ASSERT_EQ(connect(p, "", 0, 0, 5000, path), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  ASSERT_EQ(p.status, POSTERN_CONNECT_OK) << p.detail;
  postern_str_t v{};
  ASSERT_EQ(api_->stream_get(p.stream, POSTERN_STREAM_PROTOCOL, &v), POSTERN_OK);
  EXPECT_EQ(str(v), "unix");
  ASSERT_EQ(api_->stream_write(p.stream, B("local\n")), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.data == "local\n"; })) << p.data;
  ASSERT_TRUE(p.wait([](Probe& x) { return x.closed.has_value(); }));  // the server closed after one echo
  EXPECT_EQ(*p.closed, POSTERN_CLOSE_PEER);
  server.join();

  Probe missing;
  ASSERT_EQ(connect(missing, "", 0, 0, 5000, (tmp_.path / "nobody.sock").string()), POSTERN_OK);
  ASSERT_TRUE(missing.wait([](Probe& x) { return x.results == 1; }));
  EXPECT_EQ(missing.status, POSTERN_CONNECT_UNREACHABLE) << missing.detail;
}

TEST_F(HostApiOutboundTest, RefusesBadOptions) {
  Probe p;
  EXPECT_EQ(connect(p, "", 25), POSTERN_ERR_INVALID);                           // neither host nor path
  EXPECT_EQ(connect(p, "127.0.0.1", 25, 0, 1000, "/tmp/x.sock"), POSTERN_ERR_INVALID);  // both
  EXPECT_EQ(connect(p, "127.0.0.1", 0), POSTERN_ERR_INVALID);
  EXPECT_EQ(connect(p, "127.0.0.1", 70000), POSTERN_ERR_INVALID);
  EXPECT_EQ(connect(p, "127.0.0.1", 25, 0x80), POSTERN_ERR_INVALID);
  postern_connect_options_t o{};
  o.struct_size = sizeof o;
  o.host = S("127.0.0.1");
  o.port = 25;
  postern_service_v1_t no_data = kCallbacks;
  no_data.on_data = nullptr;
  EXPECT_EQ(api_->stream_connect(&host_, &o, &no_data, &on_connected, &p, nullptr), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->stream_connect(&host_, &o, &kCallbacks, nullptr, &p, nullptr), POSTERN_ERR_INVALID);
  o.struct_size = 8;
  EXPECT_EQ(api_->stream_connect(&host_, &o, &kCallbacks, &on_connected, &p, nullptr), POSTERN_ERR_INVALID);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(p.results, 0);  // a refused call never calls back
}

TEST_F(HostApiOutboundTest, CancelCompletesAPendingConnectOnce) {
  auto cert = server_tls();
  EchoServer silent(io_, &cert->context(), true);
  Probe p;
  uint64_t id = 0;
  ASSERT_EQ(connect(p, "127.0.0.1", silent.port(), POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY, 10000, {}, &id),
            POSTERN_OK);
  std::this_thread::sleep_for(100ms);  // connected; the handshake waits for the silent peer
  api_->stream_connect_cancel(&host_, id);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  EXPECT_EQ(p.status, POSTERN_CONNECT_CANCELLED) << p.detail;
  api_->stream_connect_cancel(&host_, id);  // settled: ignored
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(p.results, 1);
}

TEST_F(HostApiOutboundTest, UnloadEndsStreamsAndCancelsConnectsBeforeItReturns) {
  EchoServer echo(io_);
  auto cert = server_tls();
  EchoServer silent(io_, &cert->context(), true);
  Probe open;
  ASSERT_EQ(connect(open, "127.0.0.1", echo.port()), POSTERN_OK);
  ASSERT_TRUE(open.wait([](Probe& x) { return x.results == 1; }));
  ASSERT_EQ(open.status, POSTERN_CONNECT_OK);
  Probe pending;
  ASSERT_EQ(connect(pending, "127.0.0.1", silent.port(), POSTERN_CONNECT_TLS | POSTERN_CONNECT_TLS_NO_VERIFY, 10000),
            POSTERN_OK);
  std::this_thread::sleep_for(100ms);
  plugin_.reset();  // quiesce + on_destroy
  {
    std::lock_guard lock(open.mu);
    ASSERT_TRUE(open.closed.has_value());
    EXPECT_EQ(*open.closed, POSTERN_CLOSE_SHUTDOWN);
    EXPECT_EQ(open.closes, 1);
  }
  {
    std::lock_guard lock(pending.mu);
    EXPECT_EQ(pending.results, 1);
    EXPECT_EQ(pending.status, POSTERN_CONNECT_CANCELLED);
  }
  std::this_thread::sleep_for(200ms);  // late I/O for the dropped connect finds nothing to call
  std::lock_guard lock(pending.mu);
  EXPECT_EQ(pending.results, 1);
}

TEST_F(HostApiOutboundTest, ConnectedCallbackReturningNullClosesWithoutOnClose) {
  EchoServer echo(io_);
  Probe p;
  p.refuse = true;
  ASSERT_EQ(connect(p, "127.0.0.1", echo.port()), POSTERN_OK);
  ASSERT_TRUE(p.wait([](Probe& x) { return x.results == 1; }));
  std::this_thread::sleep_for(100ms);
  std::lock_guard lock(p.mu);
  EXPECT_EQ(p.closes, 0);
}

// --- injection -----------------------------------------------------------------

struct InjectProbe {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  uint32_t status = 99;
  std::string text;
};
void on_injected(void* user, uint32_t status, postern_str_t text) {
  auto* p = static_cast<InjectProbe*>(user);
  std::lock_guard lock(p->mu);
  ++p->calls;
  p->status = status;
  p->text = str(text);
  p->cv.notify_all();
}

TEST_F(HostApiOutboundTest, InjectSpoolsTheMessageDurablyWithItsOriginAndSkipList) {
  const std::vector<postern_str_t> rcpts = {S("alice@example.test"), S("bob@example.test")};
  const std::vector<postern_str_t> skips = {S("autoreply"), S("greylist")};
  postern_inject_request_t rq{};
  rq.struct_size = sizeof rq;
  rq.mail_from = S("");  // the null sender
  rq.recipients = rcpts.data();
  rq.recipient_count = rcpts.size();
  rq.message = B("From: postmaster@example.test\nSubject: away\n\nI am away.\n");
  rq.skip_filters = skips.data();
  rq.skip_filter_count = skips.size();
  InjectProbe p;
  ASSERT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_OK);
  {
    std::unique_lock lock(p.mu);
    ASSERT_TRUE(p.cv.wait_for(lock, 10s, [&] { return p.calls == 1; }));
  }
  ASSERT_EQ(p.status, POSTERN_OK) << p.text;
  ASSERT_EQ(p.text.size(), 20u) << p.text;  // a queue id
  auto file = queue::Spool::load(tmp_.path / "queue" / "incoming" / p.text);
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->envelope.queue_id, p.text);
  EXPECT_EQ(file->envelope.mail_from, "");
  ASSERT_EQ(file->envelope.recipients.size(), 2u);
  EXPECT_EQ(file->envelope.recipients[1].address, "bob@example.test");
  EXPECT_EQ(file->envelope.origin, "plugin");
  EXPECT_EQ(file->envelope.injected_by, "noop");
  EXPECT_EQ(file->envelope.skip_filters, (std::vector<std::string>{"autoreply", "greylist"}));
  EXPECT_EQ(file->message.rfind("Received: by mx.example.test (Postern) id " + p.text + "\r\n\t(injected by plugin noop); ", 0),
            0u)
      << file->message;
  EXPECT_NE(file->message.find("\r\nFrom: postmaster@example.test\r\nSubject: away\r\n\r\nI am away.\r\n"),
            std::string::npos)
      << file->message;
  EXPECT_FALSE(std::filesystem::exists(tmp_.path / "queue" / "tmp" / p.text));
}

TEST_F(HostApiOutboundTest, InjectRefusesBadRequestsWithoutCallingBack) {
  const std::vector<postern_str_t> good = {S("alice@example.test")};
  InjectProbe p;
  auto request = [&] {
    postern_inject_request_t rq{};
    rq.struct_size = sizeof rq;
    rq.mail_from = S("sender@example.test");
    rq.recipients = good.data();
    rq.recipient_count = good.size();
    rq.message = B("Subject: x\r\n\r\nx\r\n");
    return rq;
  };
  auto rq = request();
  rq.recipient_count = 0;
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  const std::vector<postern_str_t> bad = {S("no-at-sign")};
  rq = request();
  rq.recipients = bad.data();
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  const std::vector<postern_str_t> crlf = {S("a@example.test\r\nRCPT TO:<b@example.test>")};
  rq = request();
  rq.recipients = crlf.data();
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  rq = request();
  rq.mail_from = S("<bad>");
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  rq = request();
  rq.message = B("");
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  const std::vector<postern_str_t> comma = {S("a,b")};
  rq = request();
  rq.skip_filters = comma.data();
  rq.skip_filter_count = 1;
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  rq = request();
  rq.flags = 1;
  EXPECT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_ERR_INVALID);
  EXPECT_EQ(p.calls, 0);

  // A host without a spool: unavailable.
  HostServices none;
  none.io = &io_;
  none.workers = &workers_;
  none.state_root = tmp_.path / "state2";
  auto other = load(none);
  ASSERT_NE(other, nullptr);
  postern_host_t h{other.get()};
  rq = request();
  EXPECT_EQ(api_->inject(&h, &rq, &on_injected, &p), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(p.calls, 0);
}

TEST_F(HostApiOutboundTest, UnloadWaitsForAnInjectionInFlight) {
  const std::vector<postern_str_t> rcpts = {S("alice@example.test")};
  postern_inject_request_t rq{};
  rq.struct_size = sizeof rq;
  rq.mail_from = S("digest@example.test");
  rq.recipients = rcpts.data();
  rq.recipient_count = 1;
  rq.message = B("Subject: digest\r\n\r\n3 new messages\r\n");
  InjectProbe p;
  ASSERT_EQ(api_->inject(&host_, &rq, &on_injected, &p), POSTERN_OK);
  plugin_.reset();  // on_destroy only after the callback ran
  std::lock_guard lock(p.mu);
  EXPECT_EQ(p.calls, 1);
  EXPECT_EQ(p.status, POSTERN_OK) << p.text;
}

}  // namespace
}  // namespace postern::core::plugin
