// The host side of ABI 1.2 service streams (core/service, service_register):
// in-process listeners on loopback, driven by plain POSIX clients, with a
// test service table recording every callback, and the echo_service,
// service_rules and filter_serves test plugins (tests/abi/).
#include "core/service/listener.hpp"
#include "core/service/stream.hpp"

#include "core/event/chain.hpp"
#include "core/plugin/host_api_v12.hpp"
#include "core/plugin/loader.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

namespace postern::core::service {
namespace {

using namespace std::chrono_literals;
namespace abi12 = plugin::abi12;

// ---------------------------------------------------------------- client

class Client {
 public:
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0; }
  void send(std::string_view s) { ASSERT_EQ(::send(fd_, s.data(), s.size(), MSG_NOSIGNAL), static_cast<ssize_t>(s.size())); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /** The next line without CRLF; nullopt at EOF or after `timeout`. */
  std::optional<std::string> line(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto eol = buf_.find("\r\n"); eol != std::string::npos) {
        std::string l = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        return l;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }
  /** Exactly n octets; nullopt at EOF or timeout. */
  std::optional<std::string> bytes(size_t n, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buf_.size() < n) {
      if (!fill(deadline)) return std::nullopt;
    }
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }
  /** True when the server closes the connection within `timeout` with nothing (more) sent. */
  bool closed_by_server(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fill(deadline)) {
    }
    return eof_ && buf_.empty();
  }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (eof_ || fd_ < 0) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// ---------------------------------------------------------------- test service

/** Records every callback of the one stream a test opens; on_data may run a test action. */
struct Recorder {
  std::mutex mu;
  std::vector<std::string> events;
  postern_stream_t* stream = nullptr;  // retained in on_open, released by the test
  bool refuse = false;
  std::atomic<int> closes{0};
  std::atomic<bool> after_close_call{false};  // a callback arrived after on_close
  std::function<void(postern_stream_t*, std::string_view)> on_data_action;

  void add(std::string e) {
    std::lock_guard lock(mu);
    events.push_back(std::move(e));
  }
  bool has(const std::string& e) {
    std::lock_guard lock(mu);
    return std::find(events.begin(), events.end(), e) != events.end();
  }
  size_t count(const std::string& e) {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count(events.begin(), events.end(), e));
  }
  std::string data() {
    std::lock_guard lock(mu);
    std::string all;
    for (const auto& e : events)
      if (e.rfind("data:", 0) == 0) all += e.substr(5);
    return all;
  }
};

const postern_host_api_v1_t* api() { return plugin::host_api(); }

postern_bytes_t bytes_of(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

void* rec_open(void* user, postern_stream_t* s) {
  auto* r = static_cast<Recorder*>(user);
  r->stream = api()->stream_retain(s);
  if (r->refuse) {
    api()->stream_write(s, bytes_of("no\r\n"));
    return nullptr;
  }
  api()->stream_write(s, bytes_of("hi\r\n"));
  r->add("open");
  return r;
}
void rec_data(void* conn, postern_bytes_t d) {
  auto* r = static_cast<Recorder*>(conn);
  if (r->closes > 0) r->after_close_call = true;
  const std::string_view text(reinterpret_cast<const char*>(d.ptr), d.len);
  r->add("data:" + std::string(text));
  if (r->on_data_action) r->on_data_action(r->stream, text);
}
void rec_tls(void* conn) { static_cast<Recorder*>(conn)->add("tls"); }
void rec_drain(void* conn) {
  auto* r = static_cast<Recorder*>(conn);
  if (r->closes > 0) r->after_close_call = true;
  r->add("drain");
}
void rec_close(void* conn, postern_close_reason_t reason) {
  auto* r = static_cast<Recorder*>(conn);
  ++r->closes;
  r->add("close:" + std::string(close_reason_name(reason)));
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_.protocol = "test";
    reg_.table = {sizeof(postern_service_v1_t), rec_open, rec_data, rec_tls, rec_drain, rec_close};
    reg_.user = &rec_;
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  void TearDown() override {
    if (listener_) {
      listener_->stop();
      EXPECT_TRUE(eventually([&] { return listener_->active() == 0; }));
    }
    if (rec_.stream != nullptr) api()->stream_release(rec_.stream);
    rec_.stream = nullptr;
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    listener_.reset();
  }

  uint16_t listen(std::function<void(config::Listener&, ListenerInfo&)> tweak = {}) {
    config::Listener l;
    l.name = "t";
    l.protocol = "test";
    l.address = "127.0.0.1";
    l.port = 0;
    ListenerInfo info = make_listener_info(l, nullptr, "mx.example.test");
    if (tweak) tweak(l, info);
    listener_ = std::make_unique<ServiceListener>(io_, l, info, [this](std::string_view protocol) {
      return protocol == "test" ? Provider{nullptr, nullptr, &reg_, outstanding_, "recorder"} : Provider{};
    });
    listener_->start();
    return listener_->port();
  }

  Recorder rec_;
  plugin::ServiceRegistration reg_;
  std::shared_ptr<plugin::Outstanding> outstanding_ = std::make_shared<plugin::Outstanding>();
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  std::vector<std::thread> threads_;
  std::unique_ptr<ServiceListener> listener_;
};

TEST_F(StreamTest, DeliversInputAndWritesOutput) {
  Client c(listen());
  EXPECT_EQ(c.line(), "hi");
  c.send("hello\r\n");
  ASSERT_TRUE(eventually([&] { return rec_.data() == "hello\r\n"; }));
  EXPECT_EQ(api()->stream_write(rec_.stream, bytes_of("from another thread\r\n")), POSTERN_OK);
  EXPECT_EQ(c.line(), "from another thread");
}

TEST_F(StreamTest, PeerCloseEndsWithOneOnCloseAndEveryCallIsUnavailableAfter) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  c.close();
  ASSERT_TRUE(eventually([&] { return rec_.has("close:peer"); }));
  EXPECT_EQ(rec_.closes.load(), 1);
  postern_stream_t* s = rec_.stream;  // still valid: retained
  EXPECT_EQ(api()->stream_write(s, bytes_of("x")), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api()->stream_want_drain(s), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api()->stream_pause(s, 1), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api()->stream_starttls(s), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api()->stream_set_idle_timeout(s, 10), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(api()->stream_queued(s), 0u);
  api()->stream_close(s);  // idempotent, harmless
  postern_str_t v{};
  ASSERT_EQ(api()->stream_get(s, POSTERN_STREAM_LISTENER, &v), POSTERN_OK);  // valid until released
  EXPECT_EQ(std::string_view(v.ptr, v.len), "t");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rec_.closes.load(), 1);
  EXPECT_FALSE(rec_.after_close_call.load());
}

TEST_F(StreamTest, StrandOnlyCallsAreRefusedFromOtherThreads) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  postern_stream_t* s = rec_.stream;
  EXPECT_EQ(api()->stream_want_drain(s), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_pause(s, 1), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_starttls(s), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_set_idle_timeout(s, 10), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_write(nullptr, bytes_of("x")), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_get(s, 99u, nullptr), POSTERN_ERR_INVALID);
  // ABI 1.3: the property is an integer, range-checked (no enum-typed load).
  postern_str_t out{};
  EXPECT_EQ(api()->stream_get(s, 99u, &out), POSTERN_ERR_INVALID);
  EXPECT_EQ(api()->stream_get(s, 0xFFFFFFFFu, &out), POSTERN_ERR_INVALID);
}

TEST_F(StreamTest, PropertiesDescribeTheConnection) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  auto get = [&](postern_stream_prop_t p) -> std::optional<std::string> {
    postern_str_t v{};
    if (api()->stream_get(rec_.stream, p, &v) != POSTERN_OK) return std::nullopt;
    return std::string(v.ptr, v.len);
  };
  EXPECT_EQ(get(POSTERN_STREAM_SESSION_ID), "t-1");
  EXPECT_EQ(get(POSTERN_STREAM_PEER_IP), "127.0.0.1");
  EXPECT_NE(get(POSTERN_STREAM_PEER_PORT).value_or("0"), "0");
  EXPECT_EQ(get(POSTERN_STREAM_LOCAL_IP), "127.0.0.1");
  EXPECT_EQ(get(POSTERN_STREAM_LOCAL_PORT), std::to_string(listener_->port()));
  EXPECT_EQ(get(POSTERN_STREAM_PROTOCOL), "test");
  EXPECT_EQ(get(POSTERN_STREAM_TLS_MODE), "none");
  EXPECT_EQ(get(POSTERN_STREAM_TLS_PROTOCOL), std::nullopt);
  EXPECT_EQ(get(POSTERN_STREAM_TLS_CIPHER), std::nullopt);
  EXPECT_EQ(get(POSTERN_STREAM_SERVER_NAME), "mx.example.test");
  EXPECT_EQ(get(POSTERN_STREAM_CLEARTEXT_AUTH), "0");
}

TEST_F(StreamTest, PausedStreamDeliversNothingUntilResumed) {
  rec_.on_data_action = [](postern_stream_t* s, std::string_view d) {
    if (d == "PAUSE") {
      EXPECT_EQ(api()->stream_pause(s, 1), POSTERN_OK);
    }
  };
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  c.send("PAUSE");
  ASSERT_TRUE(eventually([&] { return rec_.data() == "PAUSE"; }));
  c.send("more");
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(rec_.data(), "PAUSE");
  static std::atomic<int> ran{0};
  ran = 0;
  ASSERT_EQ(api()->stream_post(
                rec_.stream,
                [](void* s) {
                  ++ran;
                  EXPECT_EQ(api()->stream_pause(static_cast<postern_stream_t*>(s), 0), POSTERN_OK);
                },
                rec_.stream),
            POSTERN_OK);
  ASSERT_TRUE(eventually([&] { return rec_.data() == "PAUSEmore"; }));
  EXPECT_EQ(ran.load(), 1);
}

TEST_F(StreamTest, StartTlsUnavailableOnAListenerWithoutTls) {
  rec_.on_data_action = [](postern_stream_t* s, std::string_view) {
    EXPECT_EQ(api()->stream_starttls(s), POSTERN_ERR_UNAVAILABLE);
    api()->stream_write(s, bytes_of("checked\r\n"));
  };
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  c.send("x");
  EXPECT_EQ(c.line(), "checked");
}

TEST_F(StreamTest, TlsListenerWithoutCertificateRefusesToStart) {
  config::Listener l;
  l.name = "imaps";
  l.protocol = "test";
  l.address = "127.0.0.1";
  l.tls = config::TlsMode::Implicit;
  ServiceListener sl(io_, l, make_listener_info(l, nullptr, "mx"), {});
  EXPECT_THROW(sl.start(), std::runtime_error);
}

TEST_F(StreamTest, PluginCloseFlushesQueuedOutputFirst) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  const std::string big(32 * 1024 * 1024, 'z');  // more than the kernel's socket buffers take at once
  ASSERT_EQ(api()->stream_write(rec_.stream, bytes_of(big)), POSTERN_OK);
  EXPECT_GT(api()->stream_queued(rec_.stream), 0u);
  api()->stream_close(rec_.stream);
  EXPECT_EQ(api()->stream_write(rec_.stream, bytes_of("late")), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(c.bytes(big.size()), big);
  EXPECT_TRUE(c.closed_by_server());
  ASSERT_TRUE(eventually([&] { return rec_.has("close:plugin"); }));
  EXPECT_EQ(rec_.closes.load(), 1);
}

TEST_F(StreamTest, DrainOncePerRequestWhenTheQueueEmpties) {
  rec_.on_data_action = [](postern_stream_t* s, std::string_view d) {
    if (d != "DRAIN") return;
    const std::string chunk(16 * 1024 * 1024, 'd');
    api()->stream_write(s, bytes_of(chunk));
    EXPECT_EQ(api()->stream_want_drain(s), POSTERN_OK);
  };
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  c.send("DRAIN");
  ASSERT_TRUE(eventually([&] { return rec_.data() == "DRAIN"; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(rec_.count("drain"), 0u) << "the client has not read yet";
  ASSERT_TRUE(c.bytes(16 * 1024 * 1024).has_value());
  ASSERT_TRUE(eventually([&] { return rec_.count("drain") == 1; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(rec_.count("drain"), 1u);
}

TEST_F(StreamTest, IdleTimeoutEndsWithTimeout) {
  Client c(listen([](config::Listener&, ListenerInfo& i) { i.idle_timeout = 150ms; }));
  ASSERT_EQ(c.line(), "hi");
  EXPECT_TRUE(c.closed_by_server(3s));
  ASSERT_TRUE(eventually([&] { return rec_.has("close:timeout"); }));
}

TEST_F(StreamTest, StreamPostRunsExactlyOnceAlsoAfterCloseAndIsRefusedWhileUnloading) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  c.close();
  ASSERT_TRUE(eventually([&] { return rec_.has("close:peer"); }));
  static std::atomic<int> ran{0};
  ran = 0;
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(api()->stream_post(rec_.stream, [](void*) { ++ran; }, nullptr), POSTERN_OK);
  }
  ASSERT_TRUE(eventually([&] { return ran == 10; }));
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(outstanding_->mutex);
    return outstanding_->in_flight == 0 && outstanding_->posts.empty();
  }));
  {
    std::lock_guard lock(outstanding_->mutex);
    outstanding_->closed = true;  // what unloading does first
  }
  EXPECT_EQ(api()->stream_post(rec_.stream, [](void*) { ++ran; }, nullptr), POSTERN_ERR_UNAVAILABLE);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(ran.load(), 10);
}

TEST_F(StreamTest, OnOpenNullRefusesAfterFlushingWithoutOnClose) {
  rec_.refuse = true;
  Client c(listen());
  EXPECT_EQ(c.line(), "no");
  EXPECT_TRUE(c.closed_by_server());
  ASSERT_TRUE(eventually([&] { return listener_->active() == 0; }));
  EXPECT_EQ(rec_.closes.load(), 0);
}

TEST_F(StreamTest, AccessListRefusesBeforeThePluginSeesTheConnection) {
  Client c(listen([](config::Listener& l, ListenerInfo&) {
    l.access.deny.push_back(*config::NetRange::parse("127.0.0.0/8"));
  }));
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_FALSE(rec_.has("open"));
}

TEST_F(StreamTest, ConnectionLimitRefusesTheConnectionOverIt) {
  Client a(listen([](config::Listener&, ListenerInfo& i) { i.max_connections = 1; }));
  ASSERT_EQ(a.line(), "hi");
  Client b(listener_->port());
  EXPECT_TRUE(b.closed_by_server());
  EXPECT_EQ(listener_->active(), 1u);
}

TEST_F(StreamTest, ListenerStopEndsStreamsWithShutdown) {
  Client c(listen());
  ASSERT_EQ(c.line(), "hi");
  listener_->stop();
  EXPECT_TRUE(c.closed_by_server());
  ASSERT_TRUE(eventually([&] { return rec_.has("close:shutdown"); }));
  EXPECT_TRUE(eventually([&] { return listener_->active() == 0; }));
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(outstanding_->mutex);
    return outstanding_->streams.empty();
  }));
}

TEST_F(StreamTest, UnloadingPluginRefusesNewStreams) {
  {
    std::lock_guard lock(outstanding_->mutex);
    outstanding_->streams_closed = true;
  }
  Client c(listen());
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_FALSE(rec_.has("open"));
}

// ---------------------------------------------------------------- listener settings

TEST(ServiceListenerInfoTest, ReadsDefaultsAndAttributes) {
  pugi::xml_document doc;
  doc.load_string(R"(<listener idle-timeout="5m" max-connections="20" tls-handshake-timeout="10s"/>)");
  config::Listener l;
  l.name = "imap";
  l.protocol = "imap";
  l.tls = config::TlsMode::StartTls;
  l.cleartext_auth = true;
  ListenerInfo plain = make_listener_info(l, nullptr, "mx");
  EXPECT_EQ(plain.idle_timeout, std::chrono::minutes(30));
  EXPECT_EQ(plain.max_connections, 1000u);
  EXPECT_EQ(plain.handshake_timeout, std::chrono::seconds(30));
  l.node = doc.document_element();
  ListenerInfo i = make_listener_info(l, nullptr, "mx");
  EXPECT_EQ(i.idle_timeout, std::chrono::minutes(5));
  EXPECT_EQ(i.max_connections, 20u);
  EXPECT_EQ(i.handshake_timeout, std::chrono::seconds(10));
  EXPECT_TRUE(i.cleartext_auth);
  EXPECT_EQ(i.server_name, "mx");
}

TEST(ServiceListenerInfoTest, RefusesBadValuesNamingTheAttribute) {
  for (const char* xml : {R"(<listener max-connections="0"/>)", R"(<listener max-connections="many"/>)",
                          R"(<listener idle-timeout="soon"/>)", R"(<listener tls-handshake-timeout="0"/>)"}) {
    pugi::xml_document doc;
    doc.load_string(xml);
    config::Listener l;
    l.name = "imap";
    l.node = doc.document_element();
    try {
      make_listener_info(l, nullptr, "mx");
      ADD_FAILURE() << xml << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("listener imap"), std::string::npos) << e.what();
    }
  }
}

// ---------------------------------------------------------------- with real plugins

std::map<std::string, int> read_results(const std::filesystem::path& file) {
  std::map<std::string, int> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = std::stoi(line.substr(eq + 1));
  }
  return out;
}

class ServicePluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    services_.io = &io_;
    services_.workers = &workers_;
    services_.state_root = tmp_.path / "state";
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }
  void TearDown() override {
    if (listener_) {
      listener_->stop();
      EXPECT_TRUE(eventually([&] { return listener_->active() == 0; }));
    }
    chain_.reset();  // the plugins' on_destroy runs here, on this thread
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    listener_.reset();
    workers_.join();
  }

  std::unique_ptr<plugin::LoadedPlugin> load(const std::string& name, const std::string& config_xml) {
    docs_.push_back(std::make_unique<pugi::xml_document>());
    docs_.back()->load_string(config_xml.c_str());
    plugin::LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".so");
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".plugin.xml");
    r.name = name;
    r.config = docs_.back()->document_element();
    auto result = plugin::LoadedPlugin::load(r, services_);
    if (auto* why = std::get_if<std::string>(&result)) {
      ADD_FAILURE() << *why;
      return nullptr;
    }
    return std::move(std::get<std::unique_ptr<plugin::LoadedPlugin>>(result));
  }

  uint16_t listen(const std::string& protocol) {
    config::Listener l;
    l.name = protocol;
    l.protocol = protocol;
    l.address = "127.0.0.1";
    listener_ = std::make_unique<ServiceListener>(io_, l, make_listener_info(l, nullptr, "mx.example.test"),
                                                  [this](std::string_view p) { return find_provider(chain_, p); });
    listener_->start();
    return listener_->port();
  }

  std::vector<std::string> closes() {
    std::vector<std::string> out;
    std::ifstream in(tmp_.path / "state" / "echo_service" / "closes.log");
    std::string session, reason;
    while (in >> session >> reason) out.push_back(reason);
    return out;
  }

  testing::TempDir tmp_{"postern-service"};
  std::vector<std::unique_ptr<pugi::xml_document>> docs_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  boost::asio::thread_pool workers_{2};
  std::vector<std::thread> threads_;
  plugin::HostServices services_;
  std::shared_ptr<event::Chain> chain_ = std::make_shared<event::Chain>();
  std::unique_ptr<ServiceListener> listener_;
};

TEST_F(ServicePluginTest, ServiceRegisterRefusesBadRegistrations) {
  auto p = load("service_rules", "<plugin/>");
  ASSERT_TRUE(p);
  auto r = read_results(tmp_.path / "state" / "service_rules" / "results.txt");
  EXPECT_EQ(r["empty"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["smtp"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["submission"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["small"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["null"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["no_data"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["first"], POSTERN_OK);
  EXPECT_EQ(r["again"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["second"], POSTERN_OK);
  EXPECT_NE(p->service("rules"), nullptr);
  EXPECT_NE(p->service("rules2"), nullptr);
  EXPECT_EQ(p->services_registered().size(), 2u);
  // Only during on_init.
  EXPECT_EQ(p->register_service("late", &p->service("rules")->table, nullptr), POSTERN_ERR_UNAVAILABLE);
}

TEST_F(ServicePluginTest, FilterPluginMayNotServe) {
  auto p = load("filter_serves", "<plugin/>");
  ASSERT_TRUE(p);
  auto r = read_results(tmp_.path / "state" / "filter_serves" / "results.txt");
  EXPECT_EQ(r["serve"], POSTERN_ERR_INVALID);
  EXPECT_EQ(p->service("imap"), nullptr);
}

TEST_F(ServicePluginTest, FirstPluginInManifestOrderServesAProtocol) {
  auto rules = load("service_rules", "<plugin/>");
  auto echo = load("echo_service", R"(<plugin protocol="echo rules"/>)");
  ASSERT_TRUE(rules && echo);
  const plugin::LoadedPlugin* rules_raw = rules.get();
  const plugin::LoadedPlugin* echo_raw = echo.get();
  chain_->add(std::move(rules), 5s, event::OnFailure::Continue);
  chain_->add(std::move(echo), 5s, event::OnFailure::Continue);
  EXPECT_EQ(find_provider(chain_, "rules").plugin, rules_raw);
  EXPECT_EQ(find_provider(chain_, "echo").plugin, echo_raw);
  EXPECT_EQ(find_provider(chain_, "echo").name, "echo_service");
  EXPECT_FALSE(find_provider(chain_, "pop3"));
  EXPECT_FALSE(find_provider(nullptr, "echo"));
}

TEST_F(ServicePluginTest, EchoThroughTheSdkAndWorkPostedBack) {
  auto echo = load("echo_service", R"(<plugin protocol="echo"/>)");
  ASSERT_TRUE(echo);
  chain_->add(std::move(echo), 5s, event::OnFailure::Continue);
  Client c(listen("echo"));
  EXPECT_EQ(c.line(), "HELLO echo-1");
  c.send("one\r\ntwo\r\nWORK\r\n");
  EXPECT_EQ(c.line(), "ECHO one");
  EXPECT_EQ(c.line(), "ECHO two");
  EXPECT_EQ(c.line(), "OK worked");
  c.send("CLOSE\r\n");
  EXPECT_EQ(c.line(), "BYE");
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(eventually([&] { return closes() == std::vector<std::string>{"plugin"}; }));
}

TEST_F(ServicePluginTest, UnloadEndsLiveStreamsWithShutdownFirst) {
  auto echo = load("echo_service", R"(<plugin protocol="echo"/>)");
  ASSERT_TRUE(echo);
  plugin::LoadedPlugin* raw = echo.get();
  chain_->add(std::move(echo), 5s, event::OnFailure::Continue);
  const uint16_t port = listen("echo");
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<Client>(port));
    ASSERT_TRUE(clients.back()->line().has_value());
  }
  clients[0]->send("PAUSE 60000\r\n");  // a timer and a paused stream outstanding
  EXPECT_EQ(clients[0]->line(), "OK paused");
  ASSERT_TRUE(raw->quiesce());
  EXPECT_EQ(closes(), (std::vector<std::string>{"shutdown", "shutdown", "shutdown"}));
  for (auto& c : clients) EXPECT_TRUE(c->closed_by_server());
  Client late(port);  // the plugin is unloading: refused
  EXPECT_TRUE(late.closed_by_server());
  EXPECT_EQ(closes().size(), 3u);
}

}  // namespace
}  // namespace postern::core::service
