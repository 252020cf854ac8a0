// Session tests: a real SmtpServer on 127.0.0.1 (port 0) with an empty chain,
// driven over a blocking socket (and TLS) from the test thread.
#include "core/directory/directory.hpp"
#include "core/directory/smtp_adapters.hpp"
#include "core/directory/store.hpp"
#include "core/event/chain.hpp"
#include "core/plugin/loader.hpp"
#include "core/queue/spool.hpp"
#include "core/smtp/auth.hpp"
#include "core/smtp/server.hpp"
#include "core/smtp/smtp_config.hpp"
#include "core/tls/tls_context.hpp"
#include "postern/mail/codec.hpp"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <list>
#include <random>
#include <thread>

namespace postern::core::smtp {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

const std::string kPassword = "correct horse";

class Client {
 public:
  explicit Client(uint16_t port) : sock_(io_) {
    sock_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval tv{10, 0};
    ::setsockopt(sock_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  void send(std::string_view data) {
    if (tls_) net::write(*tls_, net::buffer(data));
    else net::write(sock_, net::buffer(data));
  }

  /** One complete (possibly multi-line) reply; "" on EOF. */
  std::string reply() {
    std::string all;
    for (;;) {
      std::string line = read_line();
      if (line.empty()) return all;
      all += line;
      if (line.size() < 4 || line[3] == ' ') return all;
    }
  }
  /** The three-digit code of the next reply, 0 on EOF. */
  int code() {
    last_ = reply();
    return last_.size() >= 3 ? std::stoi(last_.substr(0, 3)) : 0;
  }
  int cmd(std::string_view line) {
    send(std::string(line) + "\r\n");
    return code();
  }
  const std::string& last() const { return last_; }
  /** Octets the server sent that no reply() has read yet (no waiting). */
  size_t unread() { return buf_.size() + sock_.available(); }

  void start_tls(const std::string& sni = "") {
    ctx_.set_verify_mode(net::ssl::verify_none);
    tls_.emplace(sock_, ctx_);
    if (!sni.empty()) SSL_set_tlsext_host_name(tls_->native_handle(), sni.c_str());
    tls_->handshake(net::ssl::stream_base::client);
  }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  bool closed() {
    char c;
    boost::system::error_code ec;
    if (tls_) tls_->read_some(net::buffer(&c, 1), ec);
    else sock_.read_some(net::buffer(&c, 1), ec);
    return ec.failed();
  }

 private:
  std::string read_line() {
    for (;;) {
      size_t lf = buf_.find('\n');
      if (lf != std::string::npos) {
        std::string line = buf_.substr(0, lf + 1);
        buf_.erase(0, lf + 1);
        return line;
      }
      char tmp[4096];
      boost::system::error_code ec;
      size_t n = tls_ ? tls_->read_some(net::buffer(tmp), ec) : sock_.read_some(net::buffer(tmp), ec);
      if (ec) return {};
      buf_.append(tmp, n);
    }
  }

  net::io_context io_;
  tcp::socket sock_;
  net::ssl::context ctx_{net::ssl::context::tls_client};
  std::optional<net::ssl::stream<tcp::socket&>> tls_;
  std::string buf_;
  std::string last_;
};

class SmtpSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("postern-smtp-test-" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    cfg_.local_domains = {"example.test"};
    cfg_.tarpit_delay = 0ms;
    cfg_.auth_failure_delay = 10ms;
    cfg_.min_free_disk = 0;
    cfg_.data_timeout = 5s;
    cfg_.command_timeout = 20s;
    cfg_.auth = std::make_shared<StaticAuthBackend>(std::vector<StaticAccount>{
        {"alice@example.test", hash_password(kPassword, 1000), {"alias@example.test"}}});
    listener_.name = "test";
    listener_.protocol = "smtp";
    listener_.address = "127.0.0.1";
    listener_.port = 0;
    listener_.tls = config::TlsMode::StartTls;
  }

  /** Loads a test plugin from tests/abi (e.g. "good") into the chain the server will use. */
  void add_plugin(const std::string& name, const std::string& config_xml) {
    docs_.emplace_back();
    ASSERT_TRUE(docs_.back().load_string(config_xml.c_str()));
    plugin::LoadRequest r;
    r.library = fs::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".so");
    r.descriptor = fs::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".plugin.xml");
    r.name = name;
    r.config = docs_.back().document_element();
    auto loaded = plugin::LoadedPlugin::load(r, plugin::HostServices{});
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<plugin::LoadedPlugin>>(loaded))
        << std::get<std::string>(loaded);
    chain_->add(std::move(std::get<0>(loaded)), 2s, event::OnFailure::Continue);
  }

  void start() {
    spool_ = std::make_unique<queue::Spool>(dir_ / "queue", 1);
    config::Certificate c;
    c.cert_file = dir_ / "cert.pem";
    c.key_file = dir_ / "key.pem";
    c.generate_if_missing = true;
    c.names = {"mail.example.test"};
    config::Certificate c2;
    c2.cert_file = dir_ / "cert2.pem";
    c2.key_file = dir_ / "key2.pem";
    c2.generate_if_missing = true;
    c2.names = {"other.example.test"};
    tls_ = std::make_shared<tls::TlsContext>(std::vector<config::Certificate>{c, c2});
    event::ChainPtr chain = chain_;
    server_ = std::make_unique<SmtpServer>(io_, listener_, std::make_shared<const SmtpConfig>(cfg_),
                                           [chain] { return chain; }, *spool_, tls_, "mx.example.test");
    server_->start();
    work_.emplace(net::make_work_guard(io_));
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) server_->stop();
    work_.reset();
    if (thread_.joinable()) {
      // Let sessions finish, then stop the context.
      for (int i = 0; i < 100 && server_->active_sessions() > 0; ++i) std::this_thread::sleep_for(10ms);
      io_.stop();
      thread_.join();
    }
    server_.reset();
    spool_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<Client> connect() {
    auto c = std::make_unique<Client>(server_->port());
    EXPECT_EQ(c->code(), 220);
    return c;
  }

  std::vector<queue::SpoolFile> spooled(const char* sub = "incoming") {
    std::vector<queue::SpoolFile> out;
    for (const auto& e : fs::directory_iterator(dir_ / "queue" / sub))
      if (auto f = queue::Spool::load(e.path())) out.push_back(std::move(*f));
    return out;
  }

  fs::path dir_;
  std::list<pugi::xml_document> docs_;
  std::shared_ptr<event::Chain> chain_ = std::make_shared<event::Chain>();
  SmtpConfig cfg_;
  config::Listener listener_;
  net::io_context io_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::thread thread_;
  std::unique_ptr<queue::Spool> spool_;
  std::shared_ptr<tls::TlsContext> tls_;
  std::unique_ptr<SmtpServer> server_;
};

TEST_F(SmtpSessionTest, AcceptsAMessageAndSpoolsItWithReceived) {
  start();
  auto c = connect();
  EXPECT_EQ(c->cmd("EHLO client.example.org"), 250);
  for (const char* ext : {"PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING",
                          "DSN", "STARTTLS"}) {
    EXPECT_NE(c->last().find(ext), std::string::npos) << ext;
  }
  EXPECT_EQ(c->last().find("AUTH"), std::string::npos) << "no AUTH before TLS";
  EXPECT_EQ(c->cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+2B1"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<user@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@example.test"), 250);
  EXPECT_EQ(c->cmd("DATA"), 354);
  EXPECT_EQ(c->cmd("Subject: hi\r\n\r\n..dot\r\nline\r\n."), 250);
  EXPECT_NE(c->last().find("2.0.0 Ok: queued as "), std::string::npos);
  EXPECT_EQ(c->cmd("QUIT"), 221);
  auto files = spooled();
  ASSERT_EQ(files.size(), 1u);
  const auto& f = files[0];
  EXPECT_EQ(f.envelope.mail_from, "sender@example.org");
  ASSERT_EQ(f.envelope.recipients.size(), 1u);
  EXPECT_EQ(f.envelope.recipients[0].address, "user@example.test");
  EXPECT_EQ(f.envelope.recipients[0].notify, "SUCCESS,FAILURE");
  EXPECT_EQ(f.envelope.recipients[0].orcpt, "rfc822;user@example.test");
  EXPECT_EQ(f.envelope.ret, "HDRS");
  EXPECT_EQ(f.envelope.envid, "abc+2B1");
  EXPECT_EQ(f.envelope.body, queue::BodyType::EightBitMime);
  EXPECT_EQ(f.envelope.helo, "client.example.org");
  EXPECT_EQ(f.message.rfind("Received: from client.example.org ([127.0.0.1])\r\n\tby mx.example.test (Postern) with ESMTP id ", 0), 0u)
      << f.message;
  EXPECT_NE(f.message.find("for <user@example.test>; "), std::string::npos);
  EXPECT_NE(f.message.find("\r\nSubject: hi\r\n\r\n.dot\r\nline\r\n"), std::string::npos) << "dot-unstuffed";
  EXPECT_EQ(f.message.substr(f.message.size() - 6), "line\r\n");
}

TEST_F(SmtpSessionTest, EnforcesCommandSequence) {
  start();
  auto c = connect();
  const struct {
    const char* cmd;
    int code;
  } steps[] = {
      {"MAIL FROM:<a@example.org>", 503}, {"HELO", 501},         {"HELO client", 250},
      {"RCPT TO:<u@example.test>", 503},  {"DATA", 503},         {"MAIL FROM:<a@example.org>", 250},
      {"MAIL FROM:<a@example.org>", 503}, {"DATA", 503},         {"RSET", 250},
      {"RCPT TO:<u@example.test>", 503},  {"NOOP", 250},         {"VRFY postmaster", 252},
      {"EXPN staff", 502},                {"HELP", 214},         {"FOO", 500},
      {"BDAT x", 501},
  };
  for (const auto& s : steps) {
    SCOPED_TRACE(s.cmd);
    EXPECT_EQ(c->cmd(s.cmd), s.code) << c->last();
  }
}

TEST_F(SmtpSessionTest, EveryReplyCarriesAnEnhancedStatusCode) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  for (const char* cmd : {"MAIL FROM:<bad", "MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test>",
                          "RCPT TO:<u@elsewhere.example>", "NOOP", "RSET", "VRFY x", "XYZZY"}) {
    SCOPED_TRACE(cmd);
    c->cmd(cmd);
    std::string l = c->last();
    ASSERT_GE(l.size(), 10u);
    EXPECT_TRUE(l[4] >= '2' && l[4] <= '5' && l[5] == '.') << l;
  }
}

TEST_F(SmtpSessionTest, RelayControlTable) {
  cfg_.relay_domains = {"gateway.example"};
  start();
  const struct {
    const char* rcpt;
    int code;
  } cases[] = {
      {"<user@example.test>", 250},
      {"<USER@EXAMPLE.TEST>", 250},
      {"<user@gateway.example>", 250},
      {"<postmaster>", 250},
      {"<user@elsewhere.example>", 554},
      {"<user%elsewhere.example@example.test>", 554},
      {"<elsewhere.example!user@example.test>", 554},
      {"<@example.test:user@elsewhere.example>", 554},
      {"<\"user@elsewhere.example\"@example.test>", 554},
      {"<user@elsewhere.example@example.test>", 554},
      {"<user@example.test.>", 554},
      {"<user@[127.0.0.1]>", 554},
      {"<user@sub.example.test>", 554},
      {"user@example.test", 501},
      {"<user>", 501},
  };
  auto c = connect();
  c->cmd("EHLO x");
  for (const auto& k : cases) {
    SCOPED_TRACE(k.rcpt);
    EXPECT_EQ(c->cmd("RSET"), 250);
    EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 250);
    EXPECT_EQ(c->cmd(std::string("RCPT TO:") + k.rcpt), k.code) << c->last();
    if (k.code == 554) {
      EXPECT_NE(c->last().find("5.7.1"), std::string::npos);
    }
  }
}

TEST_F(SmtpSessionTest, TrustedNetworksMayRelay) {
  cfg_.trusted_networks = {*config::NetRange::parse("127.0.0.0/8")};
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  EXPECT_EQ(c->cmd("RCPT TO:<user@elsewhere.example>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<user@elsewhere.example@example.test>"), 501);
}

TEST_F(SmtpSessionTest, DsnAndMailParameterTable) {
  start();
  const struct {
    const char* mail;
    const char* rcpt;
    int mail_code;
    int rcpt_code;
  } cases[] = {
      {"MAIL FROM:<a@example.org> RET=FULL", "RCPT TO:<u@example.test> NOTIFY=NEVER", 250, 250},
      {"MAIL FROM:<a@example.org> RET=BOTH", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> RET=FULL RET=HDRS", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> ENVID=a=b", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> ENVID=+zz", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> SIZE=abc", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> SIZE=999999999999", nullptr, 552, 0},
      // RFC 1870: size-value = 1*20DIGIT, so 20 digits are syntax even above 2^64.
      {"MAIL FROM:<a@example.org> SIZE=99999999999999999999", nullptr, 552, 0},
      {"MAIL FROM:<a@example.org> SIZE=18446744073709551616", nullptr, 552, 0},
      {"MAIL FROM:<a@example.org> SIZE=00000000000000000100", "RCPT TO:<u@example.test>", 250, 250},
      {"MAIL FROM:<a@example.org> SIZE=999999999999999999999", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> SIZE=+100", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> SIZE=-1", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> BODY=BINARYMIME", nullptr, 501, 0},
      {"MAIL FROM:<a@example.org> FOO=BAR", nullptr, 555, 0},
      {"MAIL FROM:<a@example.org> SMTPUTF8=yes", nullptr, 501, 0},
      {"MAIL FROM:<jörg@example.org>", nullptr, 553, 0},
      {"MAIL FROM:<jörg@example.org> SMTPUTF8", "RCPT TO:<ü@example.test>", 250, 250},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<ü@example.test>", 250, 553},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> NOTIFY=NEVER,SUCCESS", 250, 501},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> NOTIFY=SUCCESS,SUCCESS", 250, 501},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> NOTIFY=delay,failure", 250, 250},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> ORCPT=rfc822", 250, 501},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> ORCPT=rfc822;a+2", 250, 501},
      {"MAIL FROM:<a@example.org>", "RCPT TO:<u@example.test> BAR=1", 250, 555},
      {"MAIL FROM:<> RET=HDRS", "RCPT TO:<u@example.test>", 250, 250},
  };
  auto c = connect();
  c->cmd("EHLO x");
  for (const auto& k : cases) {
    SCOPED_TRACE(k.mail);
    EXPECT_EQ(c->cmd("RSET"), 250);
    EXPECT_EQ(c->cmd(k.mail), k.mail_code) << c->last();
    if (k.rcpt) {
      EXPECT_EQ(c->cmd(k.rcpt), k.rcpt_code) << k.rcpt << ": " << c->last();
    }
  }
}

TEST_F(SmtpSessionTest, PipelinedCommandsGetRepliesInOrder) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<u@nowhere.example>\r\n"
          "RCPT TO:<v@example.test>\r\nDATA\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 554);
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 354);
  c->send("Subject: p\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 221);
  ASSERT_EQ(spooled().size(), 1u);
  EXPECT_EQ(spooled()[0].envelope.recipients.size(), 2u);
}

// Issue 12 §4: the first RCPT for an account with a quota needs its mailbox
// usage, which may mean opening SQLite. Here the directory is real and the
// store's disk read is a test double that blocks until the test lets it go.
// The io_context has ONE thread: had the read run on the session strand, the
// second client would get nothing (not even its banner) until the release.
TEST_F(SmtpSessionTest, SlowQuotaLookupDoesNotHoldTheEventLoop) {
  directory::Directory::Options o;
  o.file = (dir_ / "directory.sqlite").string();
  o.default_domain = "example.test";
  o.hash = directory::HashParams{1, 64, 1};
  auto dir = std::make_shared<directory::Directory>(o);
  dir->ensure_defaults({});
  ASSERT_TRUE(dir->add_account("full@example.test", "", std::nullopt, 1000).ok());
  ASSERT_TRUE(dir->add_account("ok@example.test", "", std::nullopt, 0).ok());

  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;
  std::thread::id reader;
  directory::Directory::UsageLookup usage;
  usage.cached = [](std::string_view) -> std::optional<uint64_t> { return std::nullopt; };  // nothing in memory
  usage.read = [&](std::string_view account) -> std::optional<uint64_t> {
    std::unique_lock lock(mu);
    reader = std::this_thread::get_id();
    entered = true;
    cv.notify_all();
    // The "disk": waits for the test (at most 5 s, so a regression fails instead of hanging).
    cv.wait_for(lock, 5s, [&] { return released; });
    return account == "full@example.test" ? 5000 : 0;
  };
  dir->set_usage_lookup(usage);
  cfg_.recipients = std::make_shared<directory::DirectoryRecipientPolicy>(dir);
  net::thread_pool workers(1);
  cfg_.workers = workers.get_executor();
  start();

  auto a = connect();
  EXPECT_EQ(a->cmd("EHLO a.example"), 250);
  EXPECT_EQ(a->cmd("MAIL FROM:<s@example.org>"), 250);
  // PIPELINING: the slow RCPT, then a cheap one and DATA behind it.
  a->send("RCPT TO:<full@example.test>\r\nRCPT TO:<ok@example.test>\r\nDATA\r\n");
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return entered; })) << "the usage read never started";
  }

  // While the read is blocked: a second session is served in full.
  const auto t0 = std::chrono::steady_clock::now();
  auto b = connect();  // banner
  EXPECT_EQ(b->cmd("EHLO b.example"), 250);
  EXPECT_EQ(b->cmd("MAIL FROM:<s@example.org>"), 250);
  EXPECT_EQ(b->cmd("RCPT TO:<ok@example.test>"), 250);
  EXPECT_EQ(b->cmd("DATA"), 354);
  EXPECT_EQ(b->cmd("Subject: b\r\n\r\nb\r\n."), 250);
  EXPECT_EQ(b->cmd("QUIT"), 221);
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 2s) << "the second session waited for the first one's disk read";
  {
    std::lock_guard lock(mu);
    EXPECT_FALSE(released);
    EXPECT_NE(reader, thread_.get_id()) << "the usage was read on the I/O thread";
  }
  EXPECT_EQ(a->unread(), 0u) << "a reply overtook the pending RCPT";

  {
    std::lock_guard lock(mu);
    released = true;
  }
  cv.notify_all();
  // The 452 comes, and the pipelined replies follow in order.
  EXPECT_EQ(a->code(), 452);
  EXPECT_NE(a->last().find("4.2.2"), std::string::npos) << a->last();
  EXPECT_EQ(a->code(), 250);
  EXPECT_EQ(a->code(), 354);
  EXPECT_EQ(a->cmd("Subject: a\r\n\r\na\r\n."), 250);
  EXPECT_EQ(a->cmd("QUIT"), 221);
  size_t to_ok = 0;
  for (const auto& f : spooled()) {
    ASSERT_EQ(f.envelope.recipients.size(), 1u);
    EXPECT_EQ(f.envelope.recipients[0].address, "ok@example.test");
    ++to_ok;
  }
  EXPECT_EQ(to_ok, 2u);
  TearDown();  // the sessions end before the pool and the directory go
}

TEST_F(SmtpSessionTest, FailedQuotaLookupTempFailsTheRecipient) {
  directory::Directory::Options o;
  o.file = (dir_ / "directory.sqlite").string();
  o.default_domain = "example.test";
  o.hash = directory::HashParams{1, 64, 1};
  auto dir = std::make_shared<directory::Directory>(o);
  dir->ensure_defaults({});
  ASSERT_TRUE(dir->add_account("full@example.test", "", std::nullopt, 1000).ok());
  directory::Directory::UsageLookup usage;
  usage.read = [](std::string_view) -> std::optional<uint64_t> { throw std::runtime_error("disk I/O error"); };
  dir->set_usage_lookup(usage);
  cfg_.recipients = std::make_shared<directory::DirectoryRecipientPolicy>(dir);
  start();  // no cfg_.workers: the server's own pool
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<s@example.org>");
  EXPECT_EQ(c->cmd("RCPT TO:<full@example.test>"), 451);
  EXPECT_NE(c->last().find("4.3.0"), std::string::npos) << c->last();
  EXPECT_EQ(c->cmd("NOOP"), 250);
}

TEST_F(SmtpSessionTest, AllRecipientsRejectedMeansNoValidRecipients) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<u@nowhere.example>\r\nDATA\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 554);
  EXPECT_EQ(c->code(), 554);
  EXPECT_NE(c->last().find("no valid recipients"), std::string::npos);
}

TEST_F(SmtpSessionTest, OverlongCommandLineGets500AndSessionContinues) {
  start();
  auto c = connect();
  EXPECT_EQ(c->cmd("EHLO " + std::string(600, 'a')), 500);
  EXPECT_NE(c->last().find("5.5.2"), std::string::npos);
  EXPECT_EQ(c->cmd("NOOP"), 250);
  EXPECT_EQ(c->cmd("NOOP " + std::string(505, 'a')), 250) << "510 octets + CRLF fits 512";
  EXPECT_EQ(c->cmd("NOOP " + std::string(506, 'a')), 500) << "511 octets + CRLF does not";
}

TEST_F(SmtpSessionTest, FloodWithoutNewlineIsCutOff) {
  start();
  auto c = connect();
  std::string junk(256 * 1024, 'x');
  boost::system::error_code ec;
  try {
    c->send(junk);
  } catch (const std::exception&) {
  }
  EXPECT_EQ(c->code(), 421);
  EXPECT_TRUE(c->closed());
}

TEST_F(SmtpSessionTest, SizeLimitAfterDataReadsTheRestAndContinues) {
  cfg_.max_message_size = 100;
  start();
  auto c = connect();
  EXPECT_EQ(c->cmd("EHLO x"), 250);
  EXPECT_NE(c->last().find("SIZE 100"), std::string::npos);
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org> SIZE=101"), 552);
  EXPECT_NE(c->last().find("5.3.4"), std::string::npos);
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<u@example.test>"), 250);
  EXPECT_EQ(c->cmd("DATA"), 354);
  std::string body;
  for (int i = 0; i < 100; ++i) body += "0123456789012345678901234567890123456789\r\n";
  c->send(body);
  EXPECT_EQ(c->cmd("."), 552);
  EXPECT_NE(c->last().find("5.3.4"), std::string::npos);
  EXPECT_EQ(c->cmd("NOOP"), 250);
  EXPECT_TRUE(spooled().empty());
}

TEST_F(SmtpSessionTest, SmugglingAttemptsAreRejected) {
  start();
  const struct {
    const char* name;
    std::string data;
  } cases[] = {
      {"LF.LF", "Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@example.org>\nRCPT TO:<u@example.test>\nDATA\nSubject: smuggled\n\n.\r\nx\r\n.\r\n"},
      {"LF.CRLF", "Subject: a\r\n\r\nx\n.\r\nMAIL FROM:<evil@example.org>\r\n.\r\n"},
      {"CR.CR", "Subject: a\r\n\r\nx\r.\rMAIL FROM:<evil@example.org>\r\n.\r\n"},
      {"NUL", std::string("Subject: a\r\n\r\nx\0y\r\n.\r\n", 22)},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.name);
    auto c = connect();
    c->cmd("EHLO x");
    c->cmd("MAIL FROM:<a@example.org>");
    c->cmd("RCPT TO:<u@example.test>");
    EXPECT_EQ(c->cmd("DATA"), 354);
    c->send(k.data);
    EXPECT_EQ(c->code(), 554) << c->last();
    EXPECT_EQ(c->cmd("NOOP"), 250) << "exactly one reply: nothing was read as a command";
  }
  EXPECT_TRUE(spooled().empty());
}

TEST_F(SmtpSessionTest, NormalizeModeAcceptsBareLf) {
  cfg_.bare_line_ending = BareLineEnding::Normalize;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->cmd("RCPT TO:<u@example.test>");
  c->cmd("DATA");
  c->send("Subject: a\n\nx\n.\nstill data\r\n.\r\n");
  EXPECT_EQ(c->code(), 250);
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].message.find("Subject: a\r\n\r\nx\r\n.\r\nstill data\r\n"), std::string::npos);
}

TEST_F(SmtpSessionTest, ChunkingWithBdatZeroLast) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->cmd("RCPT TO:<u@example.test>");
  const std::string part1 = "Subject: chunked\r\n\r\n";
  const std::string part2 = ".not stuffed\r\nBDAT 5\r\n";
  c->send("BDAT " + std::to_string(part1.size()) + "\r\n" + part1);
  EXPECT_EQ(c->code(), 250);
  c->send("BDAT " + std::to_string(part2.size()) + "\r\n" + part2 + "BDAT 0 LAST\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 250);
  EXPECT_NE(c->last().find("queued as"), std::string::npos);
  EXPECT_EQ(c->cmd("DATA"), 503);
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].message.find(part1 + part2), std::string::npos);
}

TEST_F(SmtpSessionTest, BdatWithoutRecipientsDiscardsTheChunk) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->send("BDAT 6 LAST\r\nNOOP\r\n");
  EXPECT_EQ(c->code(), 503);
  EXPECT_EQ(c->cmd("NOOP"), 250) << "the chunk octets were not read as a command";
}

TEST_F(SmtpSessionTest, HopCountLimit) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->cmd("RCPT TO:<u@example.test>");
  c->cmd("DATA");
  std::string m;
  for (int i = 0; i < 101; ++i) m += "Received: from hop" + std::to_string(i) + "\r\n";
  m += "\r\nloop\r\n";
  c->send(m);
  EXPECT_EQ(c->cmd("."), 554);
  EXPECT_NE(c->last().find("5.4.0"), std::string::npos);
}

TEST_F(SmtpSessionTest, RecipientAndMessageLimits) {
  cfg_.max_recipients = 2;
  cfg_.max_messages_per_session = 1;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  EXPECT_EQ(c->cmd("RCPT TO:<u1@example.test>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<u2@example.test>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<u3@example.test>"), 452);
  EXPECT_NE(c->last().find("4.5.3"), std::string::npos);
  c->cmd("DATA");
  EXPECT_EQ(c->cmd("Subject: x\r\n\r\n."), 250);
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 421);
  EXPECT_TRUE(c->closed());
}

TEST_F(SmtpSessionTest, TarpitDelaysRecipientsAfterN) {
  cfg_.tarpit_after = 2;
  cfg_.tarpit_delay = 200ms;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  auto t0 = std::chrono::steady_clock::now();
  c->cmd("RCPT TO:<u1@example.test>");
  c->cmd("RCPT TO:<u2@example.test>");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 150ms);
  c->cmd("RCPT TO:<u3@example.test>");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
}

TEST_F(SmtpSessionTest, TarpitSparesTrustedNetworks) {
  cfg_.tarpit_after = 1;
  cfg_.tarpit_delay = 300ms;
  cfg_.trusted_networks = {*config::NetRange::parse("127.0.0.0/8")};
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c->cmd(fmt::format("RCPT TO:<u{}@example.test>", i)), 250);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 250ms);
}

TEST_F(SmtpSessionTest, StartTlsDiscardsPipelinedCommandsAndResetsState) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  // CVE-2011-0411: the injected MAIL must never be answered.
  c->send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n");
  EXPECT_EQ(c->code(), 220);
  c->start_tls();
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 503) << "EHLO is required again after TLS";
  EXPECT_EQ(c->cmd("EHLO x"), 250);
  EXPECT_EQ(c->last().find("STARTTLS"), std::string::npos);
  EXPECT_NE(c->last().find("AUTH PLAIN LOGIN"), std::string::npos);
  EXPECT_EQ(c->cmd("STARTTLS"), 554);
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<u@example.test>"), 250);
  EXPECT_EQ(c->cmd("DATA"), 354);
  EXPECT_EQ(c->cmd("Subject: tls\r\n\r\n."), 250);
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].message.find("(using TLSv1.3 with cipher "), std::string::npos) << f[0].message;
  EXPECT_NE(f[0].message.find(" with ESMTPS id "), std::string::npos);
}

TEST_F(SmtpSessionTest, SniSelectsTheCertificate) {
  start();
  for (std::string name : {"mail.example.test", "other.example.test"}) {
    auto c = connect();
    c->cmd("EHLO x");
    EXPECT_EQ(c->cmd("STARTTLS"), 220);
    c->start_tls(name);
    X509* peer = SSL_get1_peer_certificate(c->ssl());
    ASSERT_TRUE(peer);
    EXPECT_EQ(X509_check_host(peer, name.c_str(), 0, 0, nullptr), 1) << name;
    X509_free(peer);
  }
}

TEST_F(SmtpSessionTest, AuthRequiresTlsAndRejectsBadCredentials) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  EXPECT_EQ(c->cmd("AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0", 20) + kPassword)), 538);
  c->cmd("STARTTLS");
  c->start_tls();
  c->cmd("EHLO x");
  EXPECT_EQ(c->cmd("AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0wrong", 25))), 535);
  EXPECT_NE(c->last().find("5.7.8"), std::string::npos);
  EXPECT_EQ(c->cmd("AUTH CRAM-MD5"), 504);
  EXPECT_EQ(c->cmd("AUTH PLAIN"), 334);
  EXPECT_EQ(c->cmd("*"), 501);
  EXPECT_EQ(c->cmd("AUTH LOGIN"), 334);
  EXPECT_EQ(c->cmd(mail::encode_base64("alice@example.test")), 334);
  EXPECT_EQ(c->cmd(mail::encode_base64(kPassword)), 235);
  EXPECT_EQ(c->cmd("AUTH LOGIN"), 503);
  // Authenticated users may relay, but only as themselves.
  EXPECT_EQ(c->cmd("MAIL FROM:<bob@example.test>"), 553);
  EXPECT_NE(c->last().find("5.7.1 <bob@example.test>: Sender address rejected: not owned by auth user"), std::string::npos);
  EXPECT_EQ(c->cmd("MAIL FROM:<alias@example.test>"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<someone@elsewhere.example>"), 250);
  EXPECT_EQ(c->cmd("DATA"), 354);
  EXPECT_EQ(c->cmd("Subject: auth\r\n\r\n."), 250);
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].envelope.auth_user, "alice@example.test");
  EXPECT_NE(f[0].message.find(" with ESMTPSA id "), std::string::npos);
}

TEST_F(SmtpSessionTest, SubmissionNeedsAuthBeforeMail) {
  listener_.protocol = "submission";
  listener_.require_auth = true;
  listener_.cleartext_auth = true;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  EXPECT_NE(c->last().find("AUTH PLAIN LOGIN"), std::string::npos) << "cleartext AUTH allowed on this listener";
  EXPECT_EQ(c->cmd("MAIL FROM:<alice@example.test>"), 530);
  EXPECT_NE(c->last().find("5.7.0"), std::string::npos);
  EXPECT_EQ(c->cmd("AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0", 20) + kPassword)), 235);
  EXPECT_EQ(c->cmd("MAIL FROM:<alice@example.test>"), 250);
}

TEST_F(SmtpSessionTest, RepeatedAuthFailuresLockTheIpOut) {
  listener_.cleartext_auth = true;
  cfg_.auth_lockout_failures = 3;
  cfg_.auth_failure_delay = 1ms;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  const std::string bad = "AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0nope", 24));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(c->cmd(bad), 535);
  EXPECT_EQ(c->cmd("AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0", 20) + kPassword)), 454);
}

TEST_F(SmtpSessionTest, ImplicitTlsListener) {
  listener_.tls = config::TlsMode::Implicit;
  start();
  Client c(server_->port());
  c.start_tls();
  EXPECT_EQ(c.code(), 220);
  EXPECT_EQ(c.cmd("EHLO x"), 250);
  EXPECT_EQ(c.last().find("STARTTLS"), std::string::npos);
  EXPECT_NE(c.last().find("AUTH"), std::string::npos);
}

TEST_F(SmtpSessionTest, CommandTimeoutSends421) {
  cfg_.command_timeout = 200ms;
  start();
  auto c = connect();
  EXPECT_EQ(c->code(), 421);
  EXPECT_NE(c->last().find("4.4.2"), std::string::npos);
  EXPECT_TRUE(c->closed());
}

TEST_F(SmtpSessionTest, CommandTimeoutCoversTheWholeLine) {
  // A client that trickles one command line octet by octet must not renew the
  // timeout with every read (slowloris): the line's timeout starts with it.
  cfg_.command_timeout = 300ms;
  start();
  auto c = connect();
  const auto t0 = std::chrono::steady_clock::now();
  for (char ch : std::string("NOOP " + std::string(35, 'x'))) {  // 40 octets: 2 s
    if (c->unread() > 0) break;  // the 421 arrived: stop writing to a closing socket
    c->send(std::string(1, ch));
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(c->code(), 421);
  EXPECT_NE(c->last().find("4.4.2"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "the timeout was renewed by the trickle";
}

TEST_F(SmtpSessionTest, EarlyTalkerIsRefused) {
  cfg_.greet_pause = 300ms;
  start();
  Client c(server_->port());
  c.send("EHLO eager\r\n");
  EXPECT_EQ(c.code(), 554);
  EXPECT_TRUE(c.closed());
  auto polite = connect();
  EXPECT_EQ(polite->cmd("EHLO patient"), 250);
}

TEST_F(SmtpSessionTest, PerIpSessionLimit) {
  cfg_.max_sessions_per_ip = 2;
  start();
  auto a = connect();
  auto b = connect();
  Client third(server_->port());
  EXPECT_EQ(third.code(), 421);
  EXPECT_NE(third.last().find("4.7.0"), std::string::npos);
  EXPECT_TRUE(third.closed());
  EXPECT_EQ(server_->active_sessions(), 2u);
  a->cmd("QUIT");
  for (int i = 0; i < 100 && server_->active_sessions() > 1; ++i) std::this_thread::sleep_for(5ms);
  auto d = connect();
}

TEST_F(SmtpSessionTest, AccessListDeniesPeer) {
  listener_.access.deny.push_back(*config::NetRange::parse("127.0.0.1"));
  start();
  Client c(server_->port());
  EXPECT_EQ(c.code(), 554);
  EXPECT_NE(c.last().find("5.7.1"), std::string::npos);
  EXPECT_TRUE(c.closed());
}

TEST_F(SmtpSessionTest, StopAnswers421ToIdleSessions) {
  start();
  auto c = connect();
  c->cmd("EHLO x");
  server_->stop();
  EXPECT_EQ(c->code(), 421);
  EXPECT_NE(c->last().find("4.3.2"), std::string::npos);
  EXPECT_TRUE(c->closed());
  for (int i = 0; i < 100 && server_->active_sessions() > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(server_->active_sessions(), 0u);
}

TEST_F(SmtpSessionTest, HookVerdictsMapToRepliesAndHeaderEditsAreApplied) {
  add_plugin("good", R"(<plugin reject-local="bob" tempfail-local="carol"/>)");
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  EXPECT_EQ(c->cmd("RCPT TO:<bob@example.test>"), 550);
  EXPECT_EQ(c->last(), "550 5.7.1 rejected by good\r\n");
  EXPECT_EQ(c->cmd("RCPT TO:<carol@example.test>"), 451);
  EXPECT_EQ(c->last(), "451 4.7.1 try later, says good\r\n");
  EXPECT_EQ(c->cmd("RCPT TO:<dave@example.test>"), 250) << "a rejected recipient does not end the session";
  EXPECT_EQ(c->cmd("DATA"), 354);
  EXPECT_EQ(c->cmd("Subject: hooks\r\n\r\nbody\r\n."), 250);
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0].envelope.recipients.size(), 1u);
  EXPECT_EQ(f[0].envelope.recipients[0].address, "dave@example.test");
  EXPECT_EQ(f[0].message.rfind("X-Good: seen\r\nReceived: from x ", 0), 0u) << f[0].message;
}

// ABI 1.3: milter-style sender and body edits reach the spool file.
TEST_F(SmtpSessionTest, DataEndHookChangesTheSenderAndReplacesTheBody) {
  add_plugin("good", R"(<plugin mail-from="srs0=ab@example.test" mail-from-args="RET=HDRS BODY=8BITMIME ENVID=e1"
                                 replace-body="replaced body"/>)");
  start();
  auto c = connect();
  c->cmd("EHLO x");
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org> RET=FULL"), 250);
  EXPECT_EQ(c->cmd("RCPT TO:<u@example.test>"), 250) << "the edits are refused at rcpt_to: " << c->last();
  EXPECT_EQ(c->cmd("DATA"), 354);
  EXPECT_EQ(c->cmd("Subject: edits\r\nX-Keep: yes\r\n\r\noriginal body\r\n."), 250) << c->last();
  auto f = spooled();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].envelope.mail_from, "srs0=ab@example.test");
  EXPECT_EQ(f[0].envelope.ret, "HDRS");
  EXPECT_EQ(f[0].envelope.envid, "e1");
  EXPECT_EQ(f[0].envelope.body, queue::BodyType::EightBitMime);
  const std::string& m = f[0].message;
  EXPECT_EQ(m.rfind("X-Sender-Now: <srs0=ab@example.test>\r\nX-Good: seen\r\nReceived: from x ", 0), 0u)
      << "header edits still apply, and the hook read back the new sender: " << m;
  EXPECT_NE(m.find("\r\nSubject: edits\r\nX-Keep: yes\r\n\r\nreplaced body\r\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("original body"), std::string::npos) << m;
}

TEST_F(SmtpSessionTest, RefusedSenderChangeLeavesTheEnvelopeAlone) {
  add_plugin("good", R"(<plugin mail-from="not an address"/>)");
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->cmd("RCPT TO:<u@example.test>");
  c->cmd("DATA");
  EXPECT_EQ(c->cmd("Subject: x\r\n\r\nbody\r\n."), 451);
  EXPECT_EQ(c->last(), "451 4.3.0 good: sender change refused\r\n");
  EXPECT_TRUE(spooled().empty());
}

// A pending hook's QUARANTINE, with its sender and body edits, ends in the
// quarantine queue exactly like a synchronous one's.
TEST_F(SmtpSessionTest, PendingQuarantineWithEditsIsSpooledIntoQuarantineLikeTheSyncOne) {
  add_plugin("events_probe", R"(<plugin delay="20" mail-from="" replace-body="defanged" verdict="quarantine"/>)");
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  EXPECT_EQ(c->cmd("RCPT TO:<u@example.test>"), 250);
  c->cmd("DATA");
  EXPECT_EQ(c->cmd("Subject: held\r\n\r\nmalware\r\n."), 250);
  EXPECT_TRUE(spooled().empty());
  auto held = spooled("quarantine");
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].envelope.mail_from, "") << "the pending hook set the null sender";
  EXPECT_NE(held[0].message.find("Subject: held\r\n\r\ndefanged\r\n"), std::string::npos) << held[0].message;
  EXPECT_EQ(held[0].message.find("malware"), std::string::npos);
}

// The synchronous counterpart: the same message, the same queue.
TEST_F(SmtpSessionTest, SyncQuarantineIsSpooledIntoQuarantine) {
  add_plugin("good", R"(<plugin data-end="quarantine"/>)");
  start();
  auto c = connect();
  c->cmd("EHLO x");
  c->cmd("MAIL FROM:<a@example.org>");
  c->cmd("RCPT TO:<u@example.test>");
  c->cmd("DATA");
  EXPECT_EQ(c->cmd("Subject: held\r\n\r\nmalware\r\n."), 250);
  EXPECT_TRUE(spooled().empty());
  auto held = spooled("quarantine");
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].envelope.mail_from, "a@example.org");
}

TEST_F(SmtpSessionTest, HooksSeeTheMessageParsedOnTheWorkerPool) {
  add_plugin("good", R"(<plugin reject-subject="refuse me"/>)");
  net::thread_pool workers(1);
  cfg_.workers = workers.get_executor();
  start();
  auto c = connect();
  c->cmd("EHLO x");
  // Two messages in one pipelined burst: the parse of each happens off the
  // strand, and the replies still come in order.
  c->send("MAIL FROM:<a@example.org>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 354);
  c->send("Subject: refuse me\r\n\r\nx\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n");
  EXPECT_EQ(c->code(), 550);
  EXPECT_EQ(c->last(), "550 5.7.1 subject refused by good\r\n");
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 250);
  EXPECT_EQ(c->code(), 354);
  EXPECT_EQ(c->cmd("Subject: fine\r\n\r\nx\r\n."), 250);
  EXPECT_EQ(c->cmd("QUIT"), 221);
  ASSERT_EQ(spooled().size(), 1u);
  EXPECT_NE(spooled()[0].message.find("Subject: fine"), std::string::npos);
  TearDown();  // the sessions end before the pool goes
}

TEST_F(SmtpSessionTest, LowDiskTempFailsMail) {
  cfg_.min_free_disk = uint64_t{1} << 60;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  EXPECT_EQ(c->cmd("MAIL FROM:<a@example.org>"), 452);
  EXPECT_NE(c->last().find("4.3.1"), std::string::npos);
}

TEST_F(SmtpSessionTest, TotalSessionLimit) {
  cfg_.max_sessions = 1;
  start();
  auto a = connect();
  Client b(server_->port());
  EXPECT_EQ(b.code(), 421);
  EXPECT_NE(b.last().find("4.7.0"), std::string::npos);
}

TEST_F(SmtpSessionTest, AuthFailureDelayGrows) {
  listener_.cleartext_auth = true;
  cfg_.auth_failure_delay = 100ms;
  start();
  auto c = connect();
  c->cmd("EHLO x");
  const std::string bad = "AUTH PLAIN " + mail::encode_base64(std::string("\0alice@example.test\0nope", 24));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c->cmd(bad), 535);
  auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(c->cmd(bad), 535);
  auto t2 = std::chrono::steady_clock::now();
  EXPECT_GE(t1 - t0, 100ms);
  EXPECT_GE(t2 - t1, 200ms) << "doubled on the second failure";
}

TEST_F(SmtpSessionTest, ReceivedNamesTheProtocol) {
  start();
  const struct {
    const char* helo;
    const char* mail;
    const char* with;
  } cases[] = {
      {"HELO old.example", "MAIL FROM:<a@example.org>", " with SMTP id "},
      {"EHLO new.example", "MAIL FROM:<a@example.org> AUTH=<>", " with ESMTP id "},
      {"EHLO new.example", "MAIL FROM:<a@example.org> SMTPUTF8", " with UTF8SMTP id "},
  };
  size_t n = 0;
  for (const auto& k : cases) {
    SCOPED_TRACE(k.with);
    auto c = connect();
    c->cmd(k.helo);
    EXPECT_EQ(c->cmd(k.mail), 250) << c->last();
    c->cmd("RCPT TO:<u@example.test>");
    c->cmd("DATA");
    EXPECT_EQ(c->cmd("Subject: p\r\n\r\n."), 250);
    auto files = spooled();
    ASSERT_EQ(files.size(), ++n);
    bool found = false;
    for (const auto& f : files) found = found || f.message.find(k.with) != std::string::npos;
    EXPECT_TRUE(found);
  }
}

TEST_F(SmtpSessionTest, BindFailureIsReported) {
  start();
  config::Listener l = listener_;
  l.port = server_->port();
  SmtpServer second(io_, l, std::make_shared<const SmtpConfig>(cfg_), {}, *spool_, nullptr, "x");
  try {
    second.start();
    FAIL() << "expected a bind error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace postern::core::smtp
