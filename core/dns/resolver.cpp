#include "core/dns/resolver.hpp"

#include "core/dns/answer_cache.hpp"
#include "core/dns/response_parser.hpp"
#include "postern/abi/v1/postern_abi.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <poll.h>

#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace postern::core::dns {
namespace net = boost::asio;

// The host copies Status straight into postern_dns_answer_t::status.
static_assert(static_cast<int>(Status::Ok) == POSTERN_DNS_OK);
static_assert(static_cast<int>(Status::NoData) == POSTERN_DNS_NODATA);
static_assert(static_cast<int>(Status::NxDomain) == POSTERN_DNS_NXDOMAIN);
static_assert(static_cast<int>(Status::Timeout) == POSTERN_DNS_TIMEOUT);
static_assert(static_cast<int>(Status::ServFail) == POSTERN_DNS_SERVFAIL);
static_assert(static_cast<int>(Status::Cancelled) == POSTERN_DNS_CANCELLED);

namespace {

// c-ares' retry clock runs inside our per-query timer: short enough that a
// query gets `tries` attempts, long enough not to hammer a slow server.
constexpr std::chrono::milliseconds kMaxAresTryTimeout{2000};
constexpr std::chrono::milliseconds kMinAresTryTimeout{50};
constexpr std::chrono::milliseconds kDefaultTimeout{5000};
// DNS flag day 2020: 1232 bytes avoids IP fragmentation; bigger answers go over TCP.
constexpr int kEdnsPayloadSize = 1232;

void init_ares_library() {
  static std::once_flag once;
  // ares_library_init is not thread-safe in 1.18 and only needs to run once per process.
  std::call_once(once, [] {
    if (const int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS)
      throw std::runtime_error(std::string("c-ares library init failed: ") + ares_strerror(rc));
  });
}

int parse_port(std::string_view text, std::string_view server) {
  int port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc{} || end != text.data() + text.size() || port < 1 || port > 65535)
    throw std::invalid_argument("DNS server '" + std::string(server) + "': bad port");
  return port;
}

// "1.2.3.4", "1.2.3.4:53", "::1", "[::1]", "[::1]:53".
ares_addr_port_node parse_server(std::string_view server) {
  std::string host;
  int port = NS_DEFAULTPORT;
  if (!server.empty() && server.front() == '[') {
    const size_t close = server.find(']');
    if (close == std::string_view::npos)
      throw std::invalid_argument("DNS server '" + std::string(server) + "': missing ']'");
    host = std::string(server.substr(1, close - 1));
    const std::string_view rest = server.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') throw std::invalid_argument("DNS server '" + std::string(server) + "': junk after ']'");
      port = parse_port(rest.substr(1), server);
    }
  } else if (std::count(server.begin(), server.end(), ':') == 1) {
    const size_t colon = server.find(':');
    host = std::string(server.substr(0, colon));
    port = parse_port(server.substr(colon + 1), server);
  } else {
    host = std::string(server);
  }
  ares_addr_port_node node{};
  if (inet_pton(AF_INET, host.c_str(), &node.addr.addr4) == 1) {
    node.family = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), &node.addr.addr6) == 1) {
    node.family = AF_INET6;
  } else {
    throw std::invalid_argument("DNS server '" + std::string(server) + "': not an IP address");
  }
  node.udp_port = port;
  node.tcp_port = port;
  return node;
}

bool ready_now(int fd, bool read) {
  pollfd pfd{fd, static_cast<short>(read ? POLLIN : POLLOUT), 0};
  return ::poll(&pfd, 1, 0) > 0 && (pfd.revents & (pfd.events | POLLERR | POLLHUP)) != 0;
}

}  // namespace

class Resolver::Impl : public std::enable_shared_from_this<Resolver::Impl> {
 public:
  Impl(net::io_context& io, ResolverOptions options);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void query(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb);
  void shutdown();
  Stats stats() const {
    return {queries_.load(std::memory_order_relaxed), cache_hits_.load(std::memory_order_relaxed),
            timeouts_.load(std::memory_order_relaxed), failures_.load(std::memory_order_relaxed)};
  }

 private:
  using Strand = net::strand<net::io_context::executor_type>;

  // One socket c-ares opened. The descriptor only borrows the fd: c-ares closes
  // it, so it is release()d (never closed) when c-ares says it is done with it.
  struct Watch {
    Watch(const Strand& strand, ares_socket_t socket) : fd(socket), descriptor(strand) {}
    ~Watch() {
      if (descriptor.is_open()) descriptor.release();
    }
    ares_socket_t fd;
    net::posix::stream_descriptor descriptor;
    bool active = true;
    bool want[2] = {false, false};     // [0] read, [1] write: what c-ares asked for
    bool waiting[2] = {false, false};  // an async_wait of that direction is outstanding
  };

  struct Waiter {
    uint64_t id;
    std::string name;
    Callback cb;
    std::unique_ptr<net::steady_timer> timer;
  };

  // One c-ares query and everyone waiting for it (identical queries coalesce).
  struct Pending {
    uint16_t type = 0;
    std::vector<Waiter> waiters;
  };

  // Handed to c-ares as the query callback's argument; freed by that callback,
  // which c-ares always calls exactly once (answer, error, cancel or destroy).
  struct QueryContext {
    Impl* impl;
    std::string key;
    std::string name;
    uint16_t type;
  };

  void start(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb);
  void stop();
  void complete(const QueryContext& ctx, int status, const unsigned char* abuf, int alen);
  void on_waiter_timeout(const std::string& key, uint64_t id);
  void deliver(Callback cb, std::shared_ptr<const Answer> answer);
  void deliver(Waiter& waiter, const std::shared_ptr<const Answer>& answer);

  void on_sock_state(ares_socket_t fd, bool readable, bool writable);
  void arm(const std::shared_ptr<Watch>& watch, int dir);
  void process(const std::shared_ptr<Watch>& watch, int dir);
  void reschedule_ares_timer();

  static void sock_state_cb(void* data, ares_socket_t fd, int readable, int writable);
  static void query_cb(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  net::io_context& io_;
  Strand strand_;
  ResolverOptions options_;
  ares_channel channel_ = nullptr;
  net::steady_timer ares_timer_;
  AnswerCache cache_;
  std::unordered_map<std::string, Pending> pending_;
  std::unordered_map<ares_socket_t, std::shared_ptr<Watch>> watches_;
  uint64_t next_waiter_id_ = 1;
  bool stopped_ = false;
  bool destroying_ = false;

  std::atomic<uint64_t> queries_{0};
  std::atomic<uint64_t> cache_hits_{0};
  std::atomic<uint64_t> timeouts_{0};
  std::atomic<uint64_t> failures_{0};
};

Resolver::Impl::Impl(net::io_context& io, ResolverOptions options)
    : io_(io),
      strand_(net::make_strand(io)),
      options_(std::move(options)),
      ares_timer_(strand_),
      cache_(options_.cache_entries) {
  init_ares_library();
  if (options_.timeout <= std::chrono::milliseconds::zero()) options_.timeout = kDefaultTimeout;
  options_.tries = std::max(options_.tries, 1);

  std::vector<ares_addr_port_node> servers;
  servers.reserve(options_.servers.size());
  for (const std::string& server : options_.servers) servers.push_back(parse_server(server));
  for (size_t i = 0; i + 1 < servers.size(); ++i) servers[i].next = &servers[i + 1];

  ares_options opts{};
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB | ARES_OPT_EDNSPSZ;
  opts.flags = ARES_FLAG_EDNS;
  const auto per_try = std::clamp(std::min(options_.timeout, kMaxAresTryTimeout) / options_.tries,
                                  kMinAresTryTimeout, kMaxAresTryTimeout);
  opts.timeout = static_cast<int>(per_try.count());
  opts.tries = options_.tries;
  opts.sock_state_cb = &Impl::sock_state_cb;
  opts.sock_state_cb_data = this;
  opts.ednspsz = kEdnsPayloadSize;
  if (const int rc = ares_init_options(&channel_, &opts, mask); rc != ARES_SUCCESS)
    throw std::runtime_error(std::string("c-ares channel init failed: ") + ares_strerror(rc));
  if (!servers.empty()) {
    if (const int rc = ares_set_servers_ports(channel_, servers.data()); rc != ARES_SUCCESS) {
      ares_destroy(channel_);
      channel_ = nullptr;
      throw std::runtime_error(std::string("c-ares set servers failed: ") + ares_strerror(rc));
    }
  }
}

Resolver::Impl::~Impl() {
  // Only reached when no handler holds us any more: after stop() ran, or while
  // the io_context destroys its unrun handlers. c-ares may still call back from
  // ares_destroy (ARES_EDESTRUCTION); nothing may be posted then.
  destroying_ = true;
  if (channel_ != nullptr) ares_destroy(channel_);
  channel_ = nullptr;
  for (auto& [fd, watch] : watches_) watch->active = false;
  watches_.clear();
}

void Resolver::Impl::query(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb) {
  queries_.fetch_add(1, std::memory_order_relaxed);
  net::post(strand_, [self = shared_from_this(), name = std::move(name), type, timeout,
                      cb = std::move(cb)]() mutable { self->start(std::move(name), type, timeout, std::move(cb)); });
}

void Resolver::Impl::shutdown() {
  net::post(strand_, [self = shared_from_this()] { self->stop(); });
}

void Resolver::Impl::start(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb) {
  if (stopped_ || channel_ == nullptr) {
    auto answer = std::make_shared<Answer>();
    answer->status = Status::Cancelled;
    answer->name = std::move(name);
    answer->type = type;
    deliver(std::move(cb), std::move(answer));
    return;
  }
  if (auto hit = cache_.get(name, type, AnswerCache::Clock::now())) {
    cache_hits_.fetch_add(1, std::memory_order_relaxed);
    deliver(std::move(cb), std::make_shared<const Answer>(std::move(*hit)));
    return;
  }

  std::string key = AnswerCache::key(name, type);
  const uint64_t id = next_waiter_id_++;
  auto timer = std::make_unique<net::steady_timer>(
      strand_, timeout > std::chrono::milliseconds::zero() ? timeout : options_.timeout);
  timer->async_wait([self = shared_from_this(), key, id](const boost::system::error_code& ec) {
    if (!ec) self->on_waiter_timeout(key, id);
  });
  std::string qname = name;
  // c-ares wants the name without the root label; "." alone stays the root.
  if (qname.size() > 1 && qname.back() == '.') qname.pop_back();

  auto [it, inserted] = pending_.try_emplace(key);
  it->second.type = type;
  it->second.waiters.push_back(Waiter{id, std::move(name), std::move(cb), std::move(timer)});
  if (!inserted) return;  // an identical query is in flight; share its answer

  auto* ctx = new QueryContext{this, key, qname, type};
  // May call query_cb inline (e.g. ARES_EBADNAME), which erases `it`.
  ares_query(channel_, qname.c_str(), ns_c_in, type, &Impl::query_cb, ctx);
  reschedule_ares_timer();
}

void Resolver::Impl::query_cb(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryContext> ctx(static_cast<QueryContext*>(arg));
  if (ctx->impl->destroying_) return;
  ctx->impl->complete(*ctx, status, abuf, alen);
}

void Resolver::Impl::complete(const QueryContext& ctx, int status, const unsigned char* abuf, int alen) {
  auto answer = std::make_shared<const Answer>(make_answer(ctx.name, ctx.type, status, abuf, alen, options_.max_ttl));
  // Cached even when every waiter already timed out: the next asker profits.
  cache_.put(*answer, AnswerCache::Clock::now());
  auto it = pending_.find(ctx.key);
  if (it == pending_.end()) return;
  std::vector<Waiter> waiters = std::move(it->second.waiters);
  pending_.erase(it);
  for (Waiter& waiter : waiters) deliver(waiter, answer);
}

void Resolver::Impl::on_waiter_timeout(const std::string& key, uint64_t id) {
  auto it = pending_.find(key);
  if (it == pending_.end()) return;
  auto& waiters = it->second.waiters;
  auto w = std::find_if(waiters.begin(), waiters.end(), [id](const Waiter& x) { return x.id == id; });
  if (w == waiters.end()) return;
  Waiter waiter = std::move(*w);
  waiters.erase(w);
  // The c-ares query keeps running (its late answer is still cached); the
  // Pending entry stays until query_cb so its context stays valid.
  auto answer = std::make_shared<Answer>();
  answer->status = Status::Timeout;
  answer->name = waiter.name;
  answer->type = it->second.type;
  deliver(waiter, answer);
}

void Resolver::Impl::deliver(Waiter& waiter, const std::shared_ptr<const Answer>& answer) {
  waiter.timer.reset();  // cancels it; its handler then sees operation_aborted
  if (answer->name == waiter.name) {
    deliver(std::move(waiter.cb), answer);
    return;
  }
  auto renamed = std::make_shared<Answer>(*answer);
  renamed->name = std::move(waiter.name);
  deliver(std::move(waiter.cb), std::move(renamed));
}

void Resolver::Impl::deliver(Callback cb, std::shared_ptr<const Answer> answer) {
  if (answer->status == Status::Timeout) timeouts_.fetch_add(1, std::memory_order_relaxed);
  if (answer->status == Status::ServFail) failures_.fetch_add(1, std::memory_order_relaxed);
  if (!cb) return;
  // Callers' code never runs on our strand: it may be slow, and may call query() again.
  net::post(io_, [cb = std::move(cb), answer = std::move(answer)] { cb(*answer); });
}

void Resolver::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (channel_ != nullptr) {
    // Every in-flight query calls back with ARES_ECANCELLED -> Status::Cancelled.
    ares_cancel(channel_);
    ares_destroy(channel_);  // closes its sockets; sock_state_cb releases our descriptors
    channel_ = nullptr;
  }
  for (auto& [key, pending] : pending_) {
    auto cancelled = std::make_shared<Answer>();
    cancelled->status = Status::Cancelled;
    cancelled->type = pending.type;
    for (Waiter& waiter : pending.waiters) deliver(waiter, cancelled);
  }
  pending_.clear();
  ares_timer_.cancel();
}

void Resolver::Impl::sock_state_cb(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<Impl*>(data)->on_sock_state(fd, readable != 0, writable != 0);
}

void Resolver::Impl::on_sock_state(ares_socket_t fd, bool readable, bool writable) {
  auto it = watches_.find(fd);
  if (!readable && !writable) {
    // c-ares calls this just before it closes fd: stop watching, and let go of
    // the fd without closing it (release() also cancels our pending waits).
    if (it == watches_.end()) return;
    it->second->active = false;
    it->second->descriptor.release();
    watches_.erase(it);
    return;
  }
  if (destroying_) return;
  if (it == watches_.end()) {
    auto watch = std::make_shared<Watch>(strand_, fd);
    boost::system::error_code ec;
    watch->descriptor.assign(fd, ec);
    // Unwatchable fd (should not happen for a socket): the query runs into its timeout.
    if (ec) return;
    it = watches_.emplace(fd, std::move(watch)).first;
  }
  std::shared_ptr<Watch> watch = it->second;
  watch->want[0] = readable;
  watch->want[1] = writable;
  arm(watch, 0);
  arm(watch, 1);
}

void Resolver::Impl::arm(const std::shared_ptr<Watch>& watch, int dir) {
  if (!watch->active || !watch->want[dir]) return;
  if (!watch->waiting[dir]) {
    watch->waiting[dir] = true;
    watch->descriptor.async_wait(
        dir == 0 ? net::posix::stream_descriptor::wait_read : net::posix::stream_descriptor::wait_write,
        [self = shared_from_this(), watch, dir](const boost::system::error_code& ec) {
          watch->waiting[dir] = false;
          if (ec == net::error::operation_aborted) return;
          self->process(watch, dir);
        });
  }
  // Asio's epoll reactor is edge-triggered and does not try a wait op
  // speculatively: data that arrived before the wait was queued (or that
  // c-ares left unread, e.g. the rest of a TCP answer) raises no new edge.
  // Checking after queueing the wait closes that gap without blocking.
  if (ready_now(watch->fd, dir == 0)) {
    net::post(strand_, [self = shared_from_this(), watch, dir] { self->process(watch, dir); });
  }
}

void Resolver::Impl::process(const std::shared_ptr<Watch>& watch, int dir) {
  if (!watch->active || channel_ == nullptr || !watch->want[dir]) return;
  ares_process_fd(channel_, dir == 0 ? watch->fd : ARES_SOCKET_BAD, dir == 1 ? watch->fd : ARES_SOCKET_BAD);
  // c-ares may have closed (and even reopened the number of) this fd; `active`
  // tells, since a reopened fd gets a fresh Watch.
  arm(watch, 0);
  arm(watch, 1);
  reschedule_ares_timer();
}

void Resolver::Impl::reschedule_ares_timer() {
  if (channel_ == nullptr) return;
  timeval tv{};
  const timeval* next = ares_timeout(channel_, nullptr, &tv);
  if (next == nullptr) {
    ares_timer_.cancel();  // nothing in flight
    return;
  }
  ares_timer_.expires_after(std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec));
  ares_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->channel_ == nullptr) return;
    // Both fds BAD: c-ares only handles expired tries (resend or give up).
    ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    self->reschedule_ares_timer();
  });
}

Resolver::Resolver(net::io_context& io, ResolverOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {}

Resolver::~Resolver() { impl_->shutdown(); }

void Resolver::query(std::string name, uint16_t type, std::chrono::milliseconds timeout, Callback cb) {
  impl_->query(std::move(name), type, timeout, std::move(cb));
}

void Resolver::shutdown() { impl_->shutdown(); }

Resolver::Stats Resolver::stats() const { return impl_->stats(); }

std::string reverse_ipv4(std::string_view ip) {
  const std::string text(ip);
  unsigned char bytes[4];
  if (inet_pton(AF_INET, text.c_str(), bytes) != 1) return {};
  return std::to_string(bytes[3]) + '.' + std::to_string(bytes[2]) + '.' + std::to_string(bytes[1]) + '.' +
         std::to_string(bytes[0]);
}

std::string reverse_ipv6(std::string_view ip) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const std::string text(ip);
  unsigned char bytes[16];
  if (inet_pton(AF_INET6, text.c_str(), bytes) != 1) return {};
  std::string out;
  out.reserve(63);
  // RFC 3596 §2.5: nibbles in reverse order, least significant first.
  for (int i = 15; i >= 0; --i) {
    if (!out.empty()) out.push_back('.');
    out.push_back(kDigits[bytes[i] & 0x0f]);
    out.push_back('.');
    out.push_back(kDigits[bytes[i] >> 4]);
  }
  return out;
}

}  // namespace postern::core::dns
