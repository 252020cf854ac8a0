// Live tests of the Resolver: against a real dnsmasq on 127.0.0.1 (skipped when
// the binary is missing; CI installs dnsmasq-base), and against UDP sockets of
// our own that never answer or answer late.

#include "core/dns/resolver.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace postern::core::dns {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr uint16_t kA = 1, kCname = 5, kPtr = 12, kMx = 15, kTxt = 16, kAaaa = 28, kSrv = 33;

template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done() && std::chrono::steady_clock::now() < deadline) io.run_one_for(20ms);
  return done();
}

void run_for(boost::asio::io_context& io, std::chrono::milliseconds how_long) {
  io.restart();
  io.run_for(how_long);
}

Answer resolve(boost::asio::io_context& io, Resolver& resolver, const std::string& name, uint16_t type,
               std::chrono::milliseconds timeout = 3s) {
  std::optional<Answer> got;
  resolver.query(name, type, timeout, [&](const Answer& a) { got = a; });
  if (!run_until(io, [&] { return got.has_value(); }, timeout + 2s)) {
    ADD_FAILURE() << "no callback for " << name;
    return {};
  }
  return *got;
}

std::vector<std::string> data_of(const Answer& answer) {
  std::vector<std::string> out;
  for (const Record& r : answer.records) out.push_back(r.data);
  return out;
}

using Strings = std::vector<std::string>;

std::optional<std::string> find_dnsmasq() {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/dnsmasq";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// A UDP socket on 127.0.0.1 with a kernel-chosen port.
class UdpSocket {
 public:
  UdpSocket() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~UdpSocket() { ::close(fd_); }
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  int fd() const { return fd_; }
  uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  /** Datagrams queued so far (drains them). */
  int drain() {
    int n = 0;
    char buf[4096];
    while (::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) >= 0) ++n;
    return n;
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Both UDP and TCP must be free on the port dnsmasq gets.
uint16_t free_port() {
  for (int attempt = 0; attempt < 20; ++attempt) {
    UdpSocket udp;
    const int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(udp.port());
    const bool ok = ::bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(tcp);
    if (ok && udp.port() > 1024) return udp.port();
  }
  throw std::runtime_error("no free port");
}

class ResolverDnsmasqTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto binary = find_dnsmasq();
    if (!binary)
      GTEST_SKIP() << "dnsmasq not found in PATH or /usr/sbin; install dnsmasq-base to run the live DNS tests";
    char tmpl[] = "/tmp/postern-dnsmasq-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A port chosen here may be taken before dnsmasq binds it; then dnsmasq exits and we retry.
    for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) start(*binary, free_port());
    ASSERT_GT(pid_, 0) << "dnsmasq did not start; log:\n" << log();
  }

  void TearDown() override {
    if (pid_ > 0) stop();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string log() const {
    std::ifstream in(dir_ / "dnsmasq.log");
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  /** How often dnsmasq logged a query line containing `needle`. */
  int logged_queries(const std::string& needle) const {
    std::istringstream lines(log());
    int n = 0;
    for (std::string line; std::getline(lines, line);)
      if (line.find(needle) != std::string::npos) ++n;
    return n;
  }

  ResolverOptions options() const {
    ResolverOptions o;
    o.servers = {"127.0.0.1:" + std::to_string(port_)};
    o.timeout = 3s;
    return o;
  }

  static std::string big_txt_string(char c) { return std::string(250, c); }

  boost::asio::io_context io_;
  fs::path dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;

 private:
  void start(const std::string& binary, uint16_t port) {
    std::string big = "--txt-record=big.test";
    for (char c = 'a'; c < 'a' + 12; ++c) big += "," + big_txt_string(c);
    std::vector<std::string> args = {
        binary,
        "--no-resolv",
        "--no-hosts",
        "--keep-in-foreground",
        "--port=" + std::to_string(port),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--conf-file=/dev/null",
        "--pid-file=" + (dir_ / "dnsmasq.pid").string(),
        "--log-facility=" + (dir_ / "dnsmasq.log").string(),
        "--log-queries",
        "--local=/test/",  // answer .test ourselves: NXDOMAIN / NODATA instead of REFUSED
        "--local-ttl=600",
        "--host-record=host.test,192.0.2.10,2001:db8::10,600",
        "--cname=alias.test,host.test,300",
        "--mx-host=mail.test,mx2.mail.test,20",
        "--mx-host=mail.test,mx1.mail.test,10",
        // No shell here: dnsmasq takes argv values literally (quotes would stay in the data).
        "--txt-record=spf.test,v=spf1 -all",
        "--txt-record=multi.test,part one ,part two",
        big,
        "--srv-host=_submission._tcp.mail.test,mx1.mail.test,587,10,5",
        "--ptr-record=20.2.0.192.in-addr.arpa,ptr.test",
        "--address=/nx.example/",
    };
    // As root dnsmasq would switch to "nobody"; stay root so it can write the log in our temp dir.
    if (::geteuid() == 0) args.push_back("--user=root");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (::posix_spawn(&pid, binary.c_str(), nullptr, nullptr, argv.data(), environ) != 0) return;
    pid_ = pid;
    port_ = port;
    if (!wait_ready()) stop();
  }

  bool wait_ready() {
    ResolverOptions o = options();
    o.cache_entries = 0;
    boost::asio::io_context io;
    Resolver probe(io, o);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // exited: port taken or bad option
        return false;
      }
      if (resolve(io, probe, "host.test", kA, 200ms).status == Status::Ok) return true;
    }
    return false;
  }

  void stop() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
};

TEST_F(ResolverDnsmasqTest, ResolvesA) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "host.test", kA);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(a.name, "host.test");
  EXPECT_EQ(a.type, kA);
  EXPECT_EQ(data_of(a), (Strings{"192.0.2.10"}));
  EXPECT_EQ(a.min_ttl, 600u);
  EXPECT_EQ(a.records[0].type, kA);
}

TEST_F(ResolverDnsmasqTest, ResolvesAaaa) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "host.test.", kAaaa);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(a.name, "host.test.");
  EXPECT_EQ(data_of(a), (Strings{"2001:db8::10"}));
}

TEST_F(ResolverDnsmasqTest, ResolvesMxInPreferenceOrder) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "mail.test", kMx);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"10 mx1.mail.test", "20 mx2.mail.test"}));
}

TEST_F(ResolverDnsmasqTest, ResolvesTxt) {
  Resolver resolver(io_, options());
  EXPECT_EQ(data_of(resolve(io_, resolver, "spf.test", kTxt)), (Strings{"v=spf1 -all"}));
  // One record of two strings comes back as one concatenated string.
  EXPECT_EQ(data_of(resolve(io_, resolver, "multi.test", kTxt)), (Strings{"part one part two"}));
}

TEST_F(ResolverDnsmasqTest, ResolvesLargeTxtOverTcpAfterTruncation) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "big.test", kTxt);
  ASSERT_EQ(a.status, Status::Ok);
  ASSERT_EQ(a.records.size(), 1u);
  std::string expected;
  for (char c = 'a'; c < 'a' + 12; ++c) expected += big_txt_string(c);
  EXPECT_EQ(a.records[0].data, expected);
  // 3000 bytes do not fit the 1232 of EDNS: UDP comes back truncated, then TCP.
  EXPECT_EQ(logged_queries("query[TXT] big.test"), 2);
}

TEST_F(ResolverDnsmasqTest, ResolvesPtr) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, reverse_ipv4("192.0.2.20") + ".in-addr.arpa", kPtr);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"ptr.test"}));
  // --host-record makes the PTR of its addresses too.
  EXPECT_EQ(data_of(resolve(io_, resolver, reverse_ipv6("2001:db8::10") + ".ip6.arpa", kPtr)),
            (Strings{"host.test"}));
}

TEST_F(ResolverDnsmasqTest, ResolvesCnameAndFollowsItForA) {
  Resolver resolver(io_, options());
  const Answer cname = resolve(io_, resolver, "alias.test", kCname);
  EXPECT_EQ(cname.status, Status::Ok);
  EXPECT_EQ(data_of(cname), (Strings{"host.test"}));
  const Answer a = resolve(io_, resolver, "alias.test", kA);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"192.0.2.10"}));
  EXPECT_LE(a.min_ttl, 300u);  // bounded by the CNAME's TTL
}

TEST_F(ResolverDnsmasqTest, ResolvesSrv) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "_submission._tcp.mail.test", kSrv);
  EXPECT_EQ(a.status, Status::Ok);
  EXPECT_EQ(data_of(a), (Strings{"10 5 587 mx1.mail.test"}));
}

TEST_F(ResolverDnsmasqTest, ReportsNxDomain) {
  Resolver resolver(io_, options());
  const Answer local = resolve(io_, resolver, "missing.test", kA);
  EXPECT_EQ(local.status, Status::NxDomain);
  EXPECT_TRUE(local.records.empty());
  // dnsmasq's local negative answers carry no SOA: the 300 s fallback applies.
  EXPECT_EQ(local.min_ttl, 300u);
  EXPECT_EQ(resolve(io_, resolver, "www.nx.example", kA).status, Status::NxDomain);
}

TEST_F(ResolverDnsmasqTest, ReportsNoDataForAnExistingNameWithoutThatType) {
  Resolver resolver(io_, options());
  const Answer a = resolve(io_, resolver, "host.test", kMx);
  EXPECT_EQ(a.status, Status::NoData);
  EXPECT_TRUE(a.records.empty());
  EXPECT_EQ(a.min_ttl, 300u);
}

TEST_F(ResolverDnsmasqTest, CachesPositiveAndNegativeAnswers) {
  Resolver resolver(io_, options());
  EXPECT_EQ(resolve(io_, resolver, "host.test", kA).status, Status::Ok);
  const Answer again = resolve(io_, resolver, "HOST.test", kA);
  EXPECT_EQ(again.status, Status::Ok);
  EXPECT_EQ(again.name, "HOST.test");
  EXPECT_EQ(data_of(again), (Strings{"192.0.2.10"}));
  EXPECT_EQ(resolve(io_, resolver, "missing.test", kA).status, Status::NxDomain);
  EXPECT_EQ(resolve(io_, resolver, "missing.test", kA).status, Status::NxDomain);
  const Resolver::Stats stats = resolver.stats();
  EXPECT_EQ(stats.queries, 4u);
  EXPECT_EQ(stats.cache_hits, 2u);
  EXPECT_EQ(logged_queries("query[A] missing.test"), 1);
}

TEST_F(ResolverDnsmasqTest, CacheCanBeDisabled) {
  ResolverOptions o = options();
  o.cache_entries = 0;
  Resolver resolver(io_, o);
  EXPECT_EQ(resolve(io_, resolver, "spf.test", kTxt).status, Status::Ok);
  EXPECT_EQ(resolve(io_, resolver, "spf.test", kTxt).status, Status::Ok);
  EXPECT_EQ(resolver.stats().cache_hits, 0u);
}

TEST_F(ResolverDnsmasqTest, CoalescesConcurrentIdenticalQueries) {
  ResolverOptions o = options();
  o.cache_entries = 0;  // so only coalescing can save the second lookup
  Resolver resolver(io_, o);
  std::vector<Answer> answers;
  for (int i = 0; i < 5; ++i)
    resolver.query("mail.test", kMx, 0ms, [&](const Answer& a) { answers.push_back(a); });
  ASSERT_TRUE(run_until(io_, [&] { return answers.size() == 5; }));
  for (const Answer& a : answers) EXPECT_EQ(data_of(a), (Strings{"10 mx1.mail.test", "20 mx2.mail.test"}));
  EXPECT_EQ(logged_queries("query[MX] mail.test"), 1);
}

TEST_F(ResolverDnsmasqTest, WorksWithAMultiThreadedIoContextAndForeignCallers) {
  ResolverOptions o = options();
  o.cache_entries = 8;  // small, so both the cache and the network stay busy
  auto resolver = std::make_unique<Resolver>(io_, o);
  auto guard = boost::asio::make_work_guard(io_);
  std::vector<std::thread> io_threads;
  for (int i = 0; i < 4; ++i) io_threads.emplace_back([this] { io_.run(); });

  const std::vector<std::pair<std::string, uint16_t>> questions = {
      {"host.test", kA}, {"host.test", kAaaa}, {"mail.test", kMx}, {"spf.test", kTxt},
      {"alias.test", kA}, {"missing.test", kA}, {"big.test", kTxt}, {"host.test", kMx}};
  constexpr int kPerThread = 40;
  std::atomic<int> done{0}, ok{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const auto& [name, type] = questions[static_cast<size_t>(i + t) % questions.size()];
        resolver->query(name, type, 3s, [&](const Answer& a) {
          if (a.status == Status::Ok || a.status == Status::NxDomain || a.status == Status::NoData) ++ok;
          ++done;
        });
      }
    });
  }
  for (auto& c : callers) c.join();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done < 3 * kPerThread && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done, 3 * kPerThread);
  EXPECT_EQ(ok, 3 * kPerThread);
  EXPECT_EQ(resolver->stats().queries, uint64_t{3 * kPerThread});
  resolver.reset();
  guard.reset();
  // The resolver's last handlers (shutdown) drain and io.run() returns.
  for (auto& t : io_threads) t.join();
}

TEST(ResolverSilentServerTest, ReportsTimeoutAfterTheQueryTimeout) {
  UdpSocket silent;
  boost::asio::io_context io;
  ResolverOptions o;
  o.servers = {silent.server()};
  o.timeout = 300ms;
  Resolver resolver(io, o);
  const auto start = std::chrono::steady_clock::now();
  const Answer a = resolve(io, resolver, "slow.example", kA, 0ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(a.status, Status::Timeout);
  EXPECT_EQ(a.name, "slow.example");
  EXPECT_EQ(a.type, kA);
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(resolver.stats().timeouts, 1u);
  // c-ares retries and gives up on its own clock; nothing reaches us twice.
  run_for(io, 800ms);
  EXPECT_GE(silent.drain(), 1);
  EXPECT_EQ(resolver.stats().timeouts, 1u);
}

TEST(ResolverSilentServerTest, PerQueryTimeoutOverridesTheDefault) {
  UdpSocket silent;
  boost::asio::io_context io;
  ResolverOptions o;
  o.servers = {silent.server()};
  o.timeout = 10s;
  Resolver resolver(io, o);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(resolve(io, resolver, "slow.example", kTxt, 150ms).status, Status::Timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(ResolverSilentServerTest, ShutdownCancelsOutstandingQueries) {
  UdpSocket silent;
  boost::asio::io_context io;
  ResolverOptions o;
  o.servers = {silent.server()};
  Resolver resolver(io, o);
  std::vector<Answer> answers;
  resolver.query("a.example", kA, 10s, [&](const Answer& a) { answers.push_back(a); });
  resolver.query("a.example", kA, 10s, [&](const Answer& a) { answers.push_back(a); });  // coalesced
  resolver.query("b.example", kMx, 10s, [&](const Answer& a) { answers.push_back(a); });
  run_for(io, 50ms);
  EXPECT_TRUE(answers.empty());
  resolver.shutdown();
  ASSERT_TRUE(run_until(io, [&] { return answers.size() == 3; }, 1s));
  for (const Answer& a : answers) EXPECT_EQ(a.status, Status::Cancelled);
  EXPECT_EQ(answers[2].type, kMx);
}

TEST(ResolverSilentServerTest, DestroyingTheResolverCancelsOutstandingQueries) {
  UdpSocket silent;
  boost::asio::io_context io;
  ResolverOptions o;
  o.servers = {silent.server()};
  std::optional<Answer> got;
  {
    Resolver resolver(io, o);
    resolver.query("a.example", kA, 10s, [&](const Answer& a) { got = a; });
    run_for(io, 50ms);
  }
  ASSERT_TRUE(run_until(io, [&] { return got.has_value(); }, 1s));
  EXPECT_EQ(got->status, Status::Cancelled);
  // Everything the resolver had queued has drained: run() returns on its own.
  io.restart();
  io.run();
}

TEST(ResolverSilentServerTest, SurvivesItsIoContextNeverRunningAgain) {
  UdpSocket silent;
  int calls = 0;
  {
    boost::asio::io_context io;
    ResolverOptions o;
    o.servers = {silent.server()};
    Resolver resolver(io, o);
    resolver.query("a.example", kA, 10s, [&](const Answer&) { ++calls; });
    run_for(io, 50ms);
  }  // resolver, then io destroyed with handlers pending: no leak, no crash
  EXPECT_EQ(calls, 0);
}

// Answers the first query it gets with 192.0.2.99, but only after `delay`.
class LateServer {
 public:
  explicit LateServer(std::chrono::milliseconds delay)
      : thread_([this, delay] { serve(delay); }) {}
  ~LateServer() { thread_.join(); }
  std::string server() const { return socket_.server(); }
  bool answered() const { return answered_; }

 private:
  void serve(std::chrono::milliseconds delay) {
    pollfd pfd{socket_.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 3000) != 1) return;
    unsigned char query[512];
    sockaddr_in peer{};
    socklen_t peer_len = sizeof peer;
    const ssize_t n =
        ::recvfrom(socket_.fd(), query, sizeof query, 0, reinterpret_cast<sockaddr*>(&peer), &peer_len);
    if (n < 17) return;
    std::this_thread::sleep_for(delay);
    size_t qend = 12;
    while (qend < static_cast<size_t>(n) && query[qend] != 0) qend += query[qend] + 1u;
    qend += 5;  // root label, QTYPE, QCLASS
    std::vector<unsigned char> reply(query, query + qend);
    reply[2] = 0x81;  // QR, RD
    reply[3] = 0x80;  // RA, NOERROR
    reply[6] = 0, reply[7] = 1;   // ANCOUNT
    reply[8] = 0, reply[9] = 0;   // NSCOUNT
    reply[10] = 0, reply[11] = 0; // ARCOUNT
    const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 99};
    reply.insert(reply.end(), std::begin(rr), std::end(rr));
    ::sendto(socket_.fd(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), peer_len);
    answered_ = true;
  }

  UdpSocket socket_;
  std::atomic<bool> answered_{false};
  std::thread thread_;
};

TEST(ResolverSilentServerTest, LateAnswerIsNotDeliveredButIsCached) {
  LateServer late(400ms);
  boost::asio::io_context io;
  ResolverOptions o;
  o.servers = {late.server()};
  o.timeout = 5s;  // c-ares waits 2 s per try, so it still takes the late answer
  Resolver resolver(io, o);
  int calls = 0;
  std::optional<Answer> first;
  resolver.query("late.example", kA, 150ms, [&](const Answer& a) {
    ++calls;
    first = a;
  });
  ASSERT_TRUE(run_until(io, [&] { return first.has_value(); }));
  EXPECT_EQ(first->status, Status::Timeout);
  ASSERT_TRUE(run_until(io, [&] { return late.answered(); }));
  run_for(io, 100ms);
  EXPECT_EQ(calls, 1);
  const Answer cached = resolve(io, resolver, "late.example", kA, 100ms);
  EXPECT_EQ(cached.status, Status::Ok);
  EXPECT_EQ(data_of(cached), (Strings{"192.0.2.99"}));
  EXPECT_EQ(resolver.stats().cache_hits, 1u);
}

}  // namespace
}  // namespace postern::core::dns
