// posternd's control socket (core/control/server.hpp) against the blocking
// client (core/control/client.hpp): real Unix socket, real io_context.
#include "core/control/client.hpp"
#include "core/control/server.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace postern::core::control {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CommandSpec echo;
    echo.area = "test";
    echo.verb = "echo";
    echo.args = {ArgSpec{"text", ArgType::String, true, true, ""}};
    registry_.add(echo, [](Request r, Done done) {
      // Completed later, from another thread, as a plugin may.
      std::thread([r, done] {
        std::this_thread::sleep_for(10ms);
        done(Reply::success(json::object{{"echo", r.args.at("text")}}, std::string(r.args.at("text").as_string()) + "\n",
                            r.format));
      }).detach();
    });
    CommandSpec silent;
    silent.area = "test";
    silent.verb = "silent";
    registry_.add(silent, [this](Request, Done done) { kept_ = std::move(done); });  // never answers
    server_ = std::make_unique<ControlServer>(io_, registry_, dir_.path / "ctl.sock", 300ms);
    server_->start();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    boost::asio::post(io_, [this] { server_->stop(); io_.stop(); });
    thread_.join();
  }
  /** Sends raw octets, returns what comes back until the server closes or a newline arrives. */
  std::string raw(const std::string& octets, bool until_close = false, size_t lines = 1) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, (dir_.path / "ctl.sock").c_str());
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (size_t sent = 0; sent < octets.size();) {
      const ssize_t n = ::send(fd, octets.data() + sent, octets.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may close early on an oversized request
      sent += static_cast<size_t>(n);
    }
    std::string in;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      if (!until_close && static_cast<size_t>(std::count(in.begin(), in.end(), '\n')) >= lines) break;
    }
    ::close(fd);
    return in;
  }
  json::object reply_of(const std::string& line) { return json::parse(line).as_object(); }

  testing::TempDir dir_{"postern-control"};
  boost::asio::io_context io_;
  Registry registry_;
  std::unique_ptr<ControlServer> server_;
  std::thread thread_;
  Done kept_;
};

TEST_F(ControlServerTest, SocketIsOwnerOnly) {
  struct stat st{};
  ASSERT_EQ(::stat((dir_.path / "ctl.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ControlServerTest, ClientGetsTheAsynchronousReply) {
  ClientResult r = call_daemon(dir_.path / "ctl.sock",
                               json::object{{"argv", json::array{"test", "echo", "hello"}}, {"format", "json"}});
  ASSERT_EQ(r.kind, ClientResult::Kind::Replied) << r.error;
  EXPECT_EQ(r.reply.exit, Exit::Ok);
  EXPECT_EQ(r.reply.output, "{\"echo\":\"hello\"}\n");
  EXPECT_EQ(r.reply.result.at("echo"), "hello");
}

TEST_F(ControlServerTest, SeveralRequestsOnOneConnectionAreAnsweredInOrderWithTheirIds) {
  std::string lines = raw(
      "{\"id\":1,\"command\":\"test echo\",\"args\":{\"text\":\"a\"}}\n"
      "{\"id\":2,\"command\":\"test echo\",\"args\":{\"text\":\"b\"}}\n",
      false, 2);
  const size_t nl = lines.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(reply_of(lines.substr(0, nl)).at("id"), 1);
  EXPECT_EQ(reply_of(lines.substr(0, nl)).at("output"), "a\n");
  EXPECT_EQ(reply_of(lines.substr(nl + 1, lines.find('\n', nl + 1) - nl - 1)).at("id"), 2);
}

TEST_F(ControlServerTest, MalformedJsonIsAnsweredAndTheConnectionStaysUsable) {
  const std::string out = raw("{not json\n{\"id\":3,\"argv\":[\"test\",\"echo\",\"still here\"]}\n", false, 2);
  const size_t nl = out.find('\n');
  ASSERT_NE(nl, std::string::npos);
  json::object o = reply_of(out.substr(0, nl));
  json::object next = reply_of(out.substr(nl + 1));
  EXPECT_EQ(next.at("id"), 3);
  EXPECT_EQ(next.at("output"), "still here\n");
  EXPECT_EQ(o.at("status"), "usage");
  EXPECT_EQ(o.at("exit"), 2);
  EXPECT_NE(std::string(o.at("error").as_string()).find("malformed request"), std::string::npos);
}

TEST_F(ControlServerTest, UnknownCommandIsAClearError) {
  ClientResult r = call_daemon(dir_.path / "ctl.sock", json::object{{"argv", json::array{"bayes", "train"}}});
  ASSERT_EQ(r.kind, ClientResult::Kind::Replied);
  EXPECT_EQ(r.reply.exit, Exit::Usage);
  EXPECT_EQ(r.reply.error, "unknown command 'bayes train' (help lists the commands)");
}

TEST_F(ControlServerTest, OversizedRequestIsRefusedAndTheConnectionClosed) {
  std::string big = "{\"argv\":[\"test\",\"echo\",\"" + std::string(kMaxRequest + 10, 'x') + "\"]}\n";
  const std::string out = raw(big, true);
  ASSERT_FALSE(out.empty());
  json::object o = reply_of(out.substr(0, out.find('\n')));
  EXPECT_EQ(o.at("error"), "request longer than 1 MiB");
}

TEST_F(ControlServerTest, ACommandThatNeverAnswersTimesOut) {
  ClientResult r = call_daemon(dir_.path / "ctl.sock", json::object{{"argv", json::array{"test", "silent"}}});
  ASSERT_EQ(r.kind, ClientResult::Kind::Replied) << r.error;
  EXPECT_EQ(r.reply.exit, Exit::Fail);
  EXPECT_EQ(r.reply.error, "the command did not answer in time");
  kept_(Reply::success(nullptr, "late\n", Format::Text));  // a late answer is dropped, not a crash
}

TEST(ControlClientTest, NoSocketMeansNoDaemon) {
  testing::TempDir dir("postern-control");
  ClientResult r = call_daemon(dir.path / "none.sock", json::object{{"argv", json::array{"help"}}});
  EXPECT_EQ(r.kind, ClientResult::Kind::NoDaemon);
  EXPECT_NE(r.error.find("posternd is not running"), std::string::npos);
}

}  // namespace
}  // namespace postern::core::control
