// Pipe delivery (docs/delivery.md "Pipe routes"): runs a program without a
// shell, the message on its stdin, and maps its exit status to a result.
// The program's stdin and stdout/stderr are AF_UNIX socket pairs (so a
// program that exits without reading gives EPIPE, never SIGPIPE, in posternd);
// the child is spawned on the transport's own thread, and its exit is
// awaited through a pidfd on the io_context (waitpid on the spawn thread
// only where pidfd_open is missing).

#include "core/delivery/pipe.hpp"

#include "core/delivery/delivery_config.hpp"
#include "core/delivery/smtp_protocol.hpp"
#include "core/log/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <condition_variable>
#include <mutex>
#include <set>
#include <spawn.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace postern::core::delivery {

namespace net = boost::asio;
using namespace net::experimental::awaitable_operators;
using local_socket = net::local::stream_protocol::socket;

PipeExit map_pipe_exit(int wait_status) {
  if (WIFSIGNALED(wait_status))
    return {451, "4.3.0", fmt::format("killed by signal {}", WTERMSIG(wait_status))};
  int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 255;
  struct Row {
    int exit;
    const char* name;
    int reply;
    const char* enhanced;
  };
  static const Row rows[] = {
      {64, "EX_USAGE", 554, "5.3.0"},      {65, "EX_DATAERR", 554, "5.6.0"},  {66, "EX_NOINPUT", 554, "5.3.0"},
      {67, "EX_NOUSER", 550, "5.1.1"},     {68, "EX_NOHOST", 550, "5.1.2"},   {69, "EX_UNAVAILABLE", 554, "5.3.0"},
      {70, "EX_SOFTWARE", 554, "5.3.0"},   {71, "EX_OSERR", 451, "4.3.0"},    {72, "EX_OSFILE", 554, "5.3.0"},
      {73, "EX_CANTCREAT", 550, "5.2.0"},  {74, "EX_IOERR", 554, "5.3.0"},    {75, "EX_TEMPFAIL", 451, "4.3.0"},
      {76, "EX_PROTOCOL", 554, "5.5.0"},   {77, "EX_NOPERM", 550, "5.7.0"},   {78, "EX_CONFIG", 554, "5.3.5"},
  };
  if (code == 0) return {250, "2.0.0", "exit 0"};
  for (const auto& r : rows)
    if (r.exit == code) return {r.reply, r.enhanced, fmt::format("exit {} ({})", code, r.name)};
  return {554, "5.3.0", fmt::format("exit {}", code)};
}

namespace {

constexpr size_t kMaxCapture = 64 * 1024;

struct Spawned {
  pid_t pid = -1;
  int error = 0;  // errno of a failed spawn
  int pidfd = -1;
};

/** Runs on the spawn thread: posix_spawn with the child ends as fds 0, 1, 2. */
Spawned spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& env, int in_fd, int out_fd) {
  Spawned s;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // Own process group (the timeout kills the whole group), default signal
  // dispositions and an empty mask whatever posternd's threads block.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    s.error = rc;
    return s;
  }
  s.pid = pid;
  s.pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return s;
}

class PipeCore : public std::enable_shared_from_this<PipeCore> {
 public:
  PipeCore(net::io_context& io, std::vector<std::string> argv, std::chrono::milliseconds timeout)
      : io_(io), argv_(std::move(argv)), timeout_(timeout) {}

  void deliver(Attempt attempt, AttemptDone done) {
    net::co_spawn(net::make_strand(io_), run(shared_from_this(), std::move(attempt), std::move(done)), net::detached);
  }

  /**
   * Kills running children, then waits until no pool task still holds a
   * completion handler: those hold executors of io_, which must not be
   * destroyed on the pool thread after io_ is gone.
   */
  void shutdown() {
    std::unique_lock lock(mu_);
    stopping_ = true;
    for (pid_t pid : running_) ::kill(-pid, SIGKILL);
    pool_idle_.wait(lock, [this] { return pool_tasks_ == 0; });
  }

 private:
  static net::awaitable<void> run(std::shared_ptr<PipeCore> self, Attempt a, AttemptDone done) {
    AttemptResult res;
    try {
      res = co_await self->execute(a);
    } catch (const std::exception& e) {
      res.recipients.clear();
      for (const auto& r : a.recipients)
        res.recipients.push_back({r.address, 451, "4.3.0", fmt::format("internal error: {}", e.what()),
                                  "pipe:" + self->argv_.front()});
    }
    std::string rcpts;
    for (const auto& r : res.recipients) rcpts += fmt::format("{}<{}>", rcpts.empty() ? "" : " ", r.address);
    if (res.recipients.empty()) {
      done(std::move(res));
      co_return;
    }
    const auto& first = res.recipients.front();
    log::info("delivery", "queue_id={} hop=pipe remote={} rcpts=[{}] status={} {} {} {}", a.queue_id, first.remote,
              rcpts, first.delivered() ? "sent" : first.permanent() ? "bounced" : "deferred", first.code,
              first.enhanced, first.text);
    done(std::move(res));
  }

  net::awaitable<Spawned> spawn(std::vector<std::string> env, int in_fd, int out_fd) {
    auto init = [this, env = std::move(env), in_fd, out_fd](auto handler) mutable {
      using H = decltype(handler);
      auto h = std::make_shared<H>(std::move(handler));
      on_pool([this, h, env = std::move(env), in_fd, out_fd]() mutable {
        Spawned s = spawn_child(argv_, env, in_fd, out_fd);
        if (s.pid > 0) {
          std::lock_guard lock(mu_);
          running_.insert(s.pid);
          if (stopping_) ::kill(-s.pid, SIGKILL);
        }
        complete(std::move(h), s);
      });
    };
    co_return co_await net::async_initiate<decltype(net::use_awaitable), void(Spawned)>(std::move(init),
                                                                                           net::use_awaitable);
  }

  /** Runs `fn` on the spawn thread, counted so that shutdown() can wait for it. */
  template <typename Fn>
  void on_pool(Fn fn) {
    {
      std::lock_guard lock(mu_);
      ++pool_tasks_;
    }
    net::post(pool(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
      fn();
      {
        Fn spent = std::move(fn);  // captured handlers go before the count drops
      }
      std::lock_guard lock(self->mu_);
      if (--self->pool_tasks_ == 0) self->pool_idle_.notify_all();
    });
  }

  /** Hands `value` to the handler on its own executor; releases every executor copy here. */
  template <typename H, typename V>
  static void complete(std::shared_ptr<H> h, V value) {
    auto ex = net::get_associated_executor(*h);
    net::post(std::move(ex), [h = std::move(h), value]() mutable { std::move (*h)(value); });
  }

  /** Fallback without pidfd: a blocking waitpid on the spawn thread. */
  net::awaitable<int> wait_blocking(pid_t pid) {
    auto init = [this, pid](auto handler) {
      using H = decltype(handler);
      auto h = std::make_shared<H>(std::move(handler));
      on_pool([h, pid]() mutable {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        complete(std::move(h), status);
      });
    };
    co_return co_await net::async_initiate<decltype(net::use_awaitable), void(int)>(std::move(init),
                                                                                      net::use_awaitable);
  }

  static net::awaitable<void> feed(local_socket& in, std::shared_ptr<const std::string> msg) {
    // EPIPE when the program does not read its input: not an error by itself,
    // its exit status decides.
    co_await net::async_write(in, net::buffer(*msg), net::as_tuple(net::use_awaitable));
    boost::system::error_code ec;
    in.shutdown(local_socket::shutdown_send, ec);
    in.close(ec);
  }

  static net::awaitable<void> capture(local_socket& out, std::string& text) {
    char buf[4096];
    for (;;) {
      auto [ec, n] = co_await out.async_read_some(net::buffer(buf), net::as_tuple(net::use_awaitable));
      if (text.size() < kMaxCapture) text.append(buf, std::min(n, kMaxCapture - text.size()));
      if (ec) break;
    }
  }

  static net::awaitable<int> reap(net::posix::stream_descriptor& pidfd, pid_t pid) {
    co_await pidfd.async_wait(net::posix::stream_descriptor::wait_read, net::as_tuple(net::use_awaitable));
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) < 0 && errno == EINTR) {
    }
    co_return status;
  }

  net::awaitable<AttemptResult> execute(const Attempt& a) {
    const std::string remote = "pipe:" + argv_.front();
    AttemptResult res;
    auto settle = [&](int code, std::string enhanced, std::string text) {
      res.recipients.clear();
      for (const auto& r : a.recipients) res.recipients.push_back({r.address, code, enhanced, text, remote});
    };
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        settle(451, "4.3.2", "delivery stopped: server shutting down");
        co_return res;
      }
    }
    if (!a.message) {
      settle(451, "4.3.0", "no message to deliver");
      co_return res;
    }
    std::string recipients;
    for (const auto& r : a.recipients) recipients += (recipients.empty() ? "" : " ") + r.address;
    std::vector<std::string> env = {
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C",
        "SENDER=" + a.mail_from,
        "RECIPIENT=" + (a.recipients.empty() ? std::string() : a.recipients.front().address),
        "RECIPIENTS=" + recipients,
        "QUEUE_ID=" + a.queue_id,
    };
    for (const auto& e : env)
      if (e.find('\n') != std::string::npos || e.find('\0') != std::string::npos) {
        settle(554, "5.3.0", "envelope address with a control character cannot be passed to a program");
        co_return res;
      }

    int in_pair[2], out_pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
      settle(451, "4.3.0", fmt::format("socketpair: {}", std::strerror(errno)));
      co_return res;
    }
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out_pair) != 0) {
      int e = errno;
      ::close(in_pair[0]);
      ::close(in_pair[1]);
      settle(451, "4.3.0", fmt::format("socketpair: {}", std::strerror(e)));
      co_return res;
    }
    auto ex = co_await net::this_coro::executor;
    local_socket in(ex), out(ex);
    in.assign(net::local::stream_protocol(), in_pair[0]);
    out.assign(net::local::stream_protocol(), out_pair[0]);
    Spawned s = co_await spawn(env, in_pair[1], out_pair[1]);
    ::close(in_pair[1]);
    ::close(out_pair[1]);
    if (s.pid <= 0) {
      settle(451, "4.3.0", fmt::format("cannot run {}: {}", argv_.front(), std::strerror(s.error)));
      co_return res;
    }

    bool timed_out = false, reaped = false;
    net::steady_timer timer(ex);
    timer.expires_after(timeout_);
    timer.async_wait([&timed_out, &reaped, pid = s.pid](const boost::system::error_code& ec) {
      if (ec || reaped) return;
      timed_out = true;
      ::kill(-pid, SIGKILL);
    });
    std::string text;
    int status = 0;
    if (s.pidfd >= 0) {
      net::posix::stream_descriptor pidfd(ex, s.pidfd);
      status = co_await (feed(in, a.message) && capture(out, text) && reap(pidfd, s.pid));
    } else {
      co_await (feed(in, a.message) && capture(out, text));
      status = co_await wait_blocking(s.pid);
    }
    reaped = true;
    timer.cancel();
    {
      std::lock_guard lock(mu_);
      running_.erase(s.pid);
    }

    std::string first;
    {
      size_t pos = 0;
      while (pos < text.size() && first.empty()) {
        size_t nl = text.find('\n', pos);
        first = one_line(std::string_view(text).substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
        pos = nl == std::string::npos ? text.size() : nl + 1;
        while (!first.empty() && first.front() == ' ') first.erase(0, 1);
      }
      if (first.size() > 200) first.resize(200);
    }
    if (timed_out) {
      settle(451, "4.3.0",
             fmt::format("{} timed out after {} ms and was killed{}{}", argv_.front(), timeout_.count(),
                         first.empty() ? "" : ": ", first));
      co_return res;
    }
    PipeExit e = map_pipe_exit(status);
    bool stopping = false;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
    }
    if (stopping && WIFSIGNALED(status)) {
      settle(451, "4.3.2", "delivery stopped: server shutting down");
      co_return res;
    }
    settle(e.code, e.enhanced, fmt::format("{} {}{}{}", argv_.front(), e.description, first.empty() ? "" : ": ", first));
    co_return res;
  }

  /** One process-wide thread spawns children (posix_spawn waits for the exec). */
  static net::thread_pool& pool() {
    static net::thread_pool p(1);
    return p;
  }

  net::io_context& io_;
  std::vector<std::string> argv_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  bool stopping_ = false;  // guarded by mu_
  std::set<pid_t> running_;  // guarded by mu_
  int pool_tasks_ = 0;  // guarded by mu_
  std::condition_variable pool_idle_;
};

class PipeTransport final : public Transport {
 public:
  explicit PipeTransport(std::shared_ptr<PipeCore> core) : core_(std::move(core)) {}
  ~PipeTransport() override { core_->shutdown(); }
  void deliver(const NextHop&, Attempt attempt, AttemptDone done) override {
    core_->deliver(std::move(attempt), std::move(done));
  }

 private:
  std::shared_ptr<PipeCore> core_;
};

}  // namespace

std::shared_ptr<Transport> make_pipe_transport(boost::asio::io_context& io, std::vector<std::string> argv,
                                               std::chrono::milliseconds timeout) {
  if (argv.empty() || argv.front().empty()) throw std::invalid_argument("pipe transport: no program given");
  return std::make_shared<PipeTransport>(std::make_shared<PipeCore>(io, std::move(argv), timeout));
}

}  // namespace postern::core::delivery
