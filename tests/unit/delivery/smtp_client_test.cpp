// Protocol edge cases of the SMTP client against a tiny scripted server on a
// loopback socket (pipelining order, 421, reuse, SIZE, a drop after DATA),
// and the pipe transport running real programs. The real-peer tests are in
// tests/integration/delivery/.

#include "core/delivery/delivery_config.hpp"
#include "core/dns/resolver.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

namespace postern::core::delivery {
namespace {

/** One accepted connection, blocking I/O (it runs on the server's own thread). */
class Peer {
 public:
  explicit Peer(int fd) : fd_(fd) {}
  ~Peer() { ::close(fd_); }
  void send(const std::string& s) { (void)!::write(fd_, s.data(), s.size()); }
  /** One line without CRLF; "" at EOF. */
  std::string line() {
    for (;;) {
      size_t nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 2);
        return l;
      }
      if (!fill()) return "";
    }
  }
  /** The DATA content up to and including CRLF.CRLF. */
  std::string data() {
    for (;;) {
      size_t end = buf_.find("\r\n.\r\n");
      if (end != std::string::npos) {
        std::string d = buf_.substr(0, end + 5);
        buf_.erase(0, end + 5);
        return d;
      }
      if (!fill()) return "";
    }
  }
  /** Octets read so far but not consumed (to see what came in one write). */
  std::string pending() {
    fill_for(std::chrono::milliseconds(200));
    return buf_;
  }

 private:
  bool fill() {
    char tmp[4096];
    ssize_t n = ::read(fd_, tmp, sizeof tmp);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  void fill_for(std::chrono::milliseconds ms) {
    timeval tv{0, static_cast<suseconds_t>(ms.count() * 1000)};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    fill();
    timeval none{0, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
  }
  int fd_;
  std::string buf_;
};

/** Accepts connections on 127.0.0.1 and runs `script` for each, on one thread. */
class ScriptedServer {
 public:
  explicit ScriptedServer(std::function<void(Peer&, int)> script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 8);
    thread_ = std::thread([this] {
      for (int n = 0;; ++n) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0 || stop_) {
          if (c >= 0) ::close(c);
          return;
        }
        ++connections;
        Peer p(c);
        script_(p, n);
      }
    });
  }
  ~ScriptedServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::atomic<int> connections{0};

 private:
  std::function<void(Peer&, int)> script_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

struct Client {
  boost::asio::io_context io;
  dns::Resolver resolver{io, dns::ResolverOptions{{"127.0.0.1:9"}}};
  DeliveryConfig cfg;
  std::shared_ptr<Transport> transport;

  Client() {
    cfg.client.helo_name = "client.test";
    cfg.client.command_timeout = std::chrono::seconds(5);
    cfg.client.greeting_timeout = std::chrono::seconds(5);
  }
  AttemptResult send(uint16_t port, std::vector<std::string> rcpts, std::string message = "Subject: t\r\n\r\nbody\r\n") {
    if (!transport) transport = make_smtp_transport(io, resolver, cfg, "client.test");
    NextHop hop;
    hop.kind = NextHop::Kind::Direct;
    hop.host = "127.0.0.1";
    hop.port = port;
    hop.tls = config::TlsMode::None;
    Attempt a;
    a.queue_id = "q1";
    a.mail_from = "sender@client.test";
    for (auto& r : rcpts) a.recipients.push_back({r, "", ""});
    a.message = std::make_shared<const std::string>(std::move(message));
    std::optional<AttemptResult> out;
    transport->deliver(hop, a, [&](AttemptResult r) { out = std::move(r); });
    io.restart();
    while (!out && io.run_one_for(std::chrono::seconds(20)) > 0) {
    }
    EXPECT_TRUE(out);
    return out.value_or(AttemptResult{});
  }
  ~Client() {
    transport.reset();
    resolver.shutdown();
    io.restart();
    io.run_for(std::chrono::seconds(5));
  }
};

TEST(SmtpClientTest, PipelinesMailAndRcptAndReportsPerRecipient) {
  std::mutex mu;
  std::string group, data;
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 scripted ESMTP\r\n");
    EXPECT_EQ(p.line(), "EHLO client.test");
    p.send("250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    std::string g = p.pending();  // MAIL and both RCPTs arrive in one write
    {
      std::lock_guard lock(mu);
      group = g;
    }
    EXPECT_EQ(p.line(), "MAIL FROM:<sender@client.test>");
    EXPECT_EQ(p.line(), "RCPT TO:<a@x.test>");
    EXPECT_EQ(p.line(), "RCPT TO:<b@x.test>");
    EXPECT_EQ(p.line(), "RCPT TO:<c@x.test>");
    p.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n451 4.2.1 try later\r\n");
    EXPECT_EQ(p.line(), "DATA");
    p.send("354 go\r\n");
    std::string d = p.data();
    {
      std::lock_guard lock(mu);
      data = d;
    }
    p.send("250 2.0.0 queued as X\r\n");
    EXPECT_EQ(p.line(), "QUIT");
    p.send("221 bye\r\n");
  });
  Client c;
  c.cfg.client.max_messages_per_connection = 1;  // close at once: the script expects QUIT
  auto r = c.send(srv.port(), {"a@x.test", "b@x.test", "c@x.test"}, "Subject: t\r\n\r\n.dot line\r\nend\r\n");
  ASSERT_EQ(r.recipients.size(), 3u);
  EXPECT_EQ(r.recipients[0].code, 250);
  EXPECT_EQ(r.recipients[0].enhanced, "2.0.0");
  EXPECT_EQ(r.recipients[0].text, "queued as X");
  EXPECT_EQ(r.recipients[0].remote, "127.0.0.1[127.0.0.1]:" + std::to_string(srv.port()));
  EXPECT_EQ(r.recipients[1].code, 550);
  EXPECT_EQ(r.recipients[1].enhanced, "5.1.1");
  EXPECT_EQ(r.recipients[2].code, 451);
  EXPECT_EQ(r.recipients[2].enhanced, "4.2.1");
  std::lock_guard lock(mu);
  EXPECT_EQ(group, "MAIL FROM:<sender@client.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\n");
  EXPECT_EQ(data, "Subject: t\r\n\r\n..dot line\r\nend\r\n.\r\n");
}

TEST(SmtpClientTest, FallsBackToHeloAndSendsCommandsOneByOne) {
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 old server\r\n");
    EXPECT_EQ(p.line(), "EHLO client.test");
    p.send("502 what is EHLO\r\n");
    EXPECT_EQ(p.line(), "HELO client.test");
    p.send("250 hi\r\n");
    EXPECT_EQ(p.line(), "MAIL FROM:<sender@client.test>");
    p.send("250 ok\r\n");
    EXPECT_EQ(p.line(), "RCPT TO:<a@x.test>");
    p.send("250 ok\r\n");
    EXPECT_EQ(p.line(), "DATA");
    p.send("354 go\r\n");
    p.data();
    p.send("250 done\r\n");
    p.line();
    p.send("221 bye\r\n");
  });
  Client c;
  c.cfg.client.max_messages_per_connection = 1;
  auto r = c.send(srv.port(), {"a@x.test"});
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].code, 250);
  EXPECT_EQ(r.recipients[0].enhanced, "2.0.0");
}

TEST(SmtpClientTest, A421AfterMailDefersEveryRecipient) {
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 scripted\r\n");
    p.line();
    p.send("250 scripted\r\n");
    EXPECT_EQ(p.line(), "MAIL FROM:<sender@client.test>");
    p.send("421 4.3.2 shutting down\r\n");
  });
  Client c;
  auto r = c.send(srv.port(), {"a@x.test", "b@x.test"});
  ASSERT_EQ(r.recipients.size(), 2u);
  for (const auto& rr : r.recipients) {
    EXPECT_EQ(rr.code, 421);
    EXPECT_EQ(rr.enhanced, "4.3.2");
    EXPECT_FALSE(rr.delivered());
    EXPECT_FALSE(rr.permanent());
  }
}

TEST(SmtpClientTest, ADropAfterTheMessageDefersNotBounces) {
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 scripted\r\n");
    p.line();
    p.send("250 scripted\r\n");
    p.line();
    p.send("250 ok\r\n");
    p.line();
    p.send("250 ok\r\n");
    p.line();
    p.send("354 go\r\n");
    p.data();
    // no final reply: close
  });
  Client c;
  auto r = c.send(srv.port(), {"a@x.test"});
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].code, 451);
  EXPECT_EQ(r.recipients[0].enhanced, "4.4.2");
}

TEST(SmtpClientTest, RefusesBeforeMailWhenThePeersSizeLimitIsSmaller) {
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 scripted\r\n");
    p.line();
    p.send("250-scripted\r\n250 SIZE 100\r\n");
    EXPECT_EQ(p.line(), "QUIT");  // never MAIL
    p.send("221 bye\r\n");
  });
  Client c;
  c.cfg.client.max_messages_per_connection = 1;
  auto r = c.send(srv.port(), {"a@x.test"}, "Subject: big\r\n\r\n" + std::string(500, 'x') + "\r\n");
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].code, 552);
  EXPECT_EQ(r.recipients[0].enhanced, "5.3.4");
}

TEST(SmtpClientTest, ReusesAnIdleConnectionWithRset) {
  std::atomic<int> messages{0};
  ScriptedServer srv([&](Peer& p, int) {
    p.send("220 scripted\r\n");
    p.line();
    p.send("250-scripted\r\n250 PIPELINING\r\n");
    for (;;) {
      std::string l = p.line();
      if (l.empty() || l == "QUIT") break;
      if (l == "DATA") {
        p.send("354 go\r\n");
        p.data();
        ++messages;
        p.send("250 2.0.0 ok\r\n");
      } else {
        p.send("250 ok\r\n");
      }
    }
    p.send("221 bye\r\n");
  });
  Client c;
  c.cfg.client.idle_connection_time = std::chrono::seconds(2);
  auto r1 = c.send(srv.port(), {"a@x.test"});
  auto r2 = c.send(srv.port(), {"b@x.test"});
  EXPECT_EQ(r1.recipients.at(0).code, 250);
  EXPECT_EQ(r2.recipients.at(0).code, 250);
  EXPECT_EQ(messages.load(), 2);
  EXPECT_EQ(srv.connections.load(), 1);
}

TEST(SmtpClientTest, ConnectionRefusedDefers) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);  // nobody listens there now
  Client c;
  auto r = c.send(ntohs(a.sin_port), {"a@x.test"});
  ASSERT_EQ(r.recipients.size(), 1u);
  EXPECT_EQ(r.recipients[0].code, 451);
  EXPECT_EQ(r.recipients[0].enhanced, "4.4.1");
  EXPECT_NE(r.recipients[0].text.find("refused"), std::string::npos) << r.recipients[0].text;
}

AttemptResult run_pipe(std::vector<std::string> argv, std::chrono::milliseconds timeout, std::string message = "hello\r\n") {
  boost::asio::io_context io;
  auto t = make_pipe_transport(io, std::move(argv), timeout);
  Attempt a;
  a.queue_id = "Q42";
  a.mail_from = "s@x.test";
  a.recipients = {{"r1@y.test", "", ""}, {"r2@y.test", "", ""}};
  a.message = std::make_shared<const std::string>(std::move(message));
  std::optional<AttemptResult> out;
  t->deliver(NextHop{}, a, [&](AttemptResult r) { out = std::move(r); });
  while (!out && io.run_one_for(std::chrono::seconds(20)) > 0) {
  }
  EXPECT_TRUE(out);
  return out.value_or(AttemptResult{});
}

TEST(PipeTransportTest, DeliversTheMessageOnStdinWithTheEnvelopeInTheEnvironment) {
  auto dir = std::filesystem::temp_directory_path() / ("postern-pipe-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto out = dir / "out";
  auto r = run_pipe({"/bin/sh", "-c",
                     "cat > \"$0\"; echo \"$SENDER|$RECIPIENT|$RECIPIENTS|$QUEUE_ID\" >> \"$0\"; echo stored",
                     out.string()},
                    std::chrono::seconds(10));
  ASSERT_EQ(r.recipients.size(), 2u);
  EXPECT_EQ(r.recipients[0].code, 250);
  EXPECT_EQ(r.recipients[1].code, 250);
  EXPECT_EQ(r.recipients[0].remote, "pipe:/bin/sh");
  EXPECT_NE(r.recipients[0].text.find("stored"), std::string::npos) << r.recipients[0].text;
  std::ifstream in(out, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "hello\r\ns@x.test|r1@y.test|r1@y.test r2@y.test|Q42\n");
  std::filesystem::remove_all(dir);
}

TEST(PipeTransportTest, MapsExitCodesAndCapturesTheFirstLine) {
  auto temp = run_pipe({"/bin/sh", "-c", "echo 'mailbox busy' >&2; exit 75"}, std::chrono::seconds(10));
  EXPECT_EQ(temp.recipients.at(0).code, 451);
  EXPECT_EQ(temp.recipients.at(0).enhanced, "4.3.0");
  EXPECT_NE(temp.recipients.at(0).text.find("mailbox busy"), std::string::npos);
  auto bounce = run_pipe({"/bin/sh", "-c", "echo 'no such list'; exit 1"}, std::chrono::seconds(10));
  EXPECT_EQ(bounce.recipients.at(0).code, 554);
  EXPECT_EQ(bounce.recipients.at(0).enhanced, "5.3.0");
  EXPECT_NE(bounce.recipients.at(0).text.find("no such list"), std::string::npos);
  // A program that never reads a large message: EPIPE, no SIGPIPE, its exit code decides.
  auto noread = run_pipe({"/bin/true"}, std::chrono::seconds(10), std::string(4 << 20, 'x'));
  EXPECT_EQ(noread.recipients.at(0).code, 250);
  auto missing = run_pipe({"/nonexistent/program"}, std::chrono::seconds(10));
  EXPECT_EQ(missing.recipients.at(0).code, 451);
}

TEST(PipeTransportTest, KillsAProgramThatRunsTooLong) {
  auto start = std::chrono::steady_clock::now();
  auto r = run_pipe({"/bin/sh", "-c", "sleep 30"}, std::chrono::milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(r.recipients.at(0).code, 451);
  EXPECT_NE(r.recipients.at(0).text.find("timed out"), std::string::npos) << r.recipients.at(0).text;
}

}  // namespace
}  // namespace postern::core::delivery
