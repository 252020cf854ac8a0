// The outbound SMTP client (docs/delivery.md): one coroutine per attempt on
// its own strand; MX resolution through the async resolver; STARTTLS or
// implicit TLS; AUTH PLAIN/LOGIN; PIPELINING; SIZE; 8BITMIME downgrade;
// SMTPUTF8; DSN parameters; BDAT for BINARYMIME; cached idle connections per
// next hop. Nothing here blocks an I/O thread.

#include "core/delivery/smtp_client.hpp"

#include "core/delivery/delivery_config.hpp"
#include "core/delivery/smtp_protocol.hpp"
#include "core/dns/resolver.hpp"
#include "core/log/log.hpp"
#include "core/smtp/address.hpp"
#include "core/tls/tls_context.hpp"
#include "postern/mail/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <limits>
#include <map>
#include <mutex>

namespace postern::core::delivery {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

MxSet order_mx(const std::vector<std::string>& records, std::mt19937& rng) {
  MxSet set;
  bool saw_dot = false;
  for (const auto& r : records) {
    size_t sp = r.find(' ');
    if (sp == std::string::npos) continue;
    int pref = 0;
    auto [p, ec] = std::from_chars(r.data(), r.data() + sp, pref);
    if (ec != std::errc{} || p != r.data() + sp || pref < 0) continue;
    std::string host = smtp::ascii_lower(std::string_view(r).substr(sp + 1));
    while (host.size() > 1 && host.back() == '.') host.pop_back();
    if (host.empty() || host == ".") {
      saw_dot = true;
      continue;
    }
    set.hosts.push_back({pref, std::move(host)});
  }
  // RFC 7505 §3: a null MX is a single record with an empty exchange.
  if (set.hosts.empty() && saw_dot && records.size() == 1) set.null_mx = true;
  std::shuffle(set.hosts.begin(), set.hosts.end(), rng);
  std::stable_sort(set.hosts.begin(), set.hosts.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  return set;
}

namespace {

constexpr size_t kMaxReplyLine = 4096;
constexpr size_t kMaxReplyLines = 200;
constexpr size_t kWriteChunk = 64 * 1024;

bool is_ip(std::string_view host) {
  boost::system::error_code ec;
  net::ip::make_address(std::string(host), ec);
  return !ec;
}

/** A loopback, unspecified or link-local address: "ourselves" for MX purposes. */
bool is_self_address(const net::ip::address& a) {
  if (a.is_unspecified() || a.is_loopback()) return true;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    auto v4 = net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6());
    return v4.is_loopback() || v4.is_unspecified();
  }
  return false;
}

struct Target {
  std::string host;  // name for SNI/verification and logs
  net::ip::address addr;
  uint16_t port = 25;
  int preference = 0;  // of its MX record
  std::string str() const {
    return fmt::format("{}[{}]:{}", host, addr.to_string(), port);
  }
};

/** One SMTP connection; lives on the strand of the attempt that opened it. */
struct Conn : std::enable_shared_from_this<Conn> {
  explicit Conn(net::any_io_executor ex) : ex(ex), plain(std::in_place, ex), timer(ex), idle_timer(ex) {}

  net::any_io_executor ex;
  std::optional<tcp::socket> plain;
  std::optional<net::ssl::stream<tcp::socket>> tls;
  net::steady_timer timer;
  net::steady_timer idle_timer;
  uint64_t gen = 0;
  bool timed_out = false;
  bool broken = false;
  std::string error;  // why it broke
  std::string inbuf;
  size_t rpos = 0;
  Capabilities caps;
  Target target;
  std::string tls_desc;
  std::string key;
  size_t messages = 0;
  bool parked = false;  // guarded by the client's mutex

  tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }

  void arm(std::chrono::milliseconds d) {
    ++gen;
    timed_out = false;
    timer.expires_after(d);
    timer.async_wait([w = weak_from_this(), g = gen](const boost::system::error_code& ec) {
      if (ec) return;
      auto c = w.lock();
      if (!c || c->gen != g) return;
      c->timed_out = true;
      boost::system::error_code ignored;
      c->lowest().cancel(ignored);
    });
  }
  void disarm() {
    ++gen;
    timer.cancel();
  }
  void fail(const boost::system::error_code& ec, std::string_view during) {
    broken = true;
    if (timed_out) error = fmt::format("timeout {}", during);
    else if (ec == net::error::eof || ec == net::ssl::error::stream_truncated)
      error = fmt::format("connection closed by peer {}", during);
    else error = fmt::format("{} {}", ec.message(), during);
  }
  void abort() {
    broken = true;
    if (error.empty()) error = "transport shutting down";
    boost::system::error_code ignored;
    lowest().close(ignored);
    timer.cancel();
    idle_timer.cancel();
  }

  net::awaitable<bool> write(std::string_view data, std::chrono::milliseconds timeout, std::string_view during) {
    if (broken) co_return false;
    boost::system::error_code ec;
    for (size_t off = 0; off < data.size(); off += kWriteChunk) {
      auto piece = net::buffer(data.substr(off, kWriteChunk));
      arm(timeout);
      if (tls) std::tie(ec, std::ignore) = co_await net::async_write(*tls, piece, net::as_tuple(net::use_awaitable));
      else std::tie(ec, std::ignore) = co_await net::async_write(*plain, piece, net::as_tuple(net::use_awaitable));
      disarm();
      if (ec) {
        fail(ec, during);
        co_return false;
      }
    }
    co_return true;
  }

  net::awaitable<bool> read_line(std::string& out, std::chrono::milliseconds timeout, std::string_view during) {
    for (;;) {
      size_t lf = inbuf.find('\n', rpos);
      if (lf != std::string::npos) {
        out.assign(inbuf, rpos, lf - rpos);
        if (!out.empty() && out.back() == '\r') out.pop_back();
        rpos = lf + 1;
        co_return true;
      }
      if (inbuf.size() - rpos > kMaxReplyLine) {
        broken = true;
        error = fmt::format("reply line too long {}", during);
        co_return false;
      }
      if (broken) co_return false;
      if (rpos > 0) {
        inbuf.erase(0, rpos);
        rpos = 0;
      }
      const size_t old = inbuf.size();
      inbuf.resize(old + 4096);
      auto buf = net::buffer(inbuf.data() + old, 4096);
      boost::system::error_code ec;
      size_t n = 0;
      arm(timeout);
      if (tls) std::tie(ec, n) = co_await tls->async_read_some(buf, net::as_tuple(net::use_awaitable));
      else std::tie(ec, n) = co_await plain->async_read_some(buf, net::as_tuple(net::use_awaitable));
      disarm();
      inbuf.resize(old + n);
      if (ec) {
        fail(ec, during);
        co_return false;
      }
    }
  }

  /** One complete reply; nullopt when the connection broke (see `error`). */
  net::awaitable<std::optional<Reply>> read_reply(std::chrono::milliseconds timeout, std::string_view during) {
    ReplyParser parser;
    std::string line;
    for (size_t n = 0; n < kMaxReplyLines; ++n) {
      bool ok = co_await read_line(line, timeout, during);
      if (!ok) co_return std::nullopt;
      auto st = parser.push(line);
      if (st == ReplyParser::State::Done) co_return parser.take();
      if (st == ReplyParser::State::Error) {
        broken = true;
        error = fmt::format("malformed reply {}: \"{}\"", during, one_line(line.substr(0, 100)));
        co_return std::nullopt;
      }
    }
    broken = true;
    error = fmt::format("reply with too many lines {}", during);
    co_return std::nullopt;
  }

  /** Sends QUIT, reads the answer briefly, and closes (RFC 5321 §4.1.1.10). */
  net::awaitable<void> quit() {
    if (!broken) {
      bool ok = co_await write("QUIT\r\n", 5s, "sending QUIT");
      if (ok) co_await read_reply(5s, "after QUIT");
    }
    boost::system::error_code ignored;
    if (tls && !broken) {
      arm(2s);
      co_await tls->async_shutdown(net::as_tuple(net::use_awaitable));
      disarm();
    }
    lowest().close(ignored);
    broken = true;
  }
};

class SmtpClient;

/** How one stage of a connection ended. */
enum class Step {
  Ok,        // go on
  TryNext,   // nothing delivered; try the next address (connection is closed or will be)
  Done,      // every recipient has its result
};

/** The state of one attempt (one message, one next hop). */
class AttemptRun {
 public:
  AttemptRun(std::shared_ptr<SmtpClient> client, NextHop hop, Attempt attempt)
      : client_(std::move(client)), hop_(std::move(hop)), a_(std::move(attempt)) {
    res_.recipients.resize(a_.recipients.size());
    for (size_t i = 0; i < a_.recipients.size(); ++i) res_.recipients[i].address = a_.recipients[i].address;
  }

  net::awaitable<AttemptResult> run(std::shared_ptr<Conn> reused);

 private:
  friend class SmtpClient;
  const ClientOptions& opt() const;

  void remember(int code, std::string enhanced, std::string text, std::string remote) {
    last_code_ = code;
    last_enhanced_ = std::move(enhanced);
    last_text_ = std::move(text);
    last_remote_ = std::move(remote);
  }
  void remember_reply(const Reply& r, std::string_view what, const Target& t) {
    std::string enh = r.enhanced.empty() ? fmt::format("{}.0.0", r.code / 100) : r.enhanced;
    remember(r.code, enh, fmt::format("{} ({})", r.text(), what), t.str());
  }
  void remember_conn_error(const Conn& c, std::string_view what) {
    remember(451, "4.4.2", fmt::format("{} ({})", c.error, what), c.target.str());
  }
  /** Gives every recipient without a result the remembered error. */
  void settle_rest() {
    int code = last_code_ ? last_code_ : 451;
    std::string enh = last_enhanced_.empty() ? "4.4.1" : last_enhanced_;
    std::string text = last_text_.empty() ? "no address to try" : last_text_;
    for (auto& r : res_.recipients) {
      if (r.code != 0) continue;
      r.code = code;
      r.enhanced = enh;
      r.text = text;
      r.remote = last_remote_;
    }
  }
  void settle_all(int code, std::string enhanced, std::string text, const std::string& remote) {
    for (auto& r : res_.recipients) {
      if (r.code != 0) continue;
      r.code = code;
      r.enhanced = enhanced;
      r.text = text;
      r.remote = remote;
    }
  }
  void clear_results() {
    for (auto& r : res_.recipients) {
      r.code = 0;
      r.enhanced.clear();
      r.text.clear();
      r.remote.clear();
    }
  }

  net::awaitable<bool> resolve();
  net::awaitable<std::vector<dns::Answer>> query_all(std::vector<std::pair<std::string, uint16_t>> q);
  net::awaitable<Step> open(std::shared_ptr<Conn> c, const Target& t, bool allow_tls);
  net::awaitable<Step> hello(std::shared_ptr<Conn> c);
  net::awaitable<Step> start_tls(std::shared_ptr<Conn> c, bool& tls_failed);
  net::awaitable<Step> authenticate(std::shared_ptr<Conn> c);
  net::awaitable<Step> transaction(std::shared_ptr<Conn> c, bool reused);
  net::awaitable<Step> send_body(std::shared_ptr<Conn> c, const std::string& data, bool bdat,
                                 const std::vector<size_t>& accepted);
  bool loops_to_self(std::string_view peer_name) const;

  std::shared_ptr<SmtpClient> client_;
  NextHop hop_;
  Attempt a_;
  AttemptResult res_;
  std::vector<Target> targets_;
  bool final_ = false;  // resolution already settled every recipient
  int last_code_ = 0;
  std::string last_enhanced_, last_text_, last_remote_;
};

class SmtpClient : public std::enable_shared_from_this<SmtpClient> {
 public:
  SmtpClient(net::io_context& io, dns::Resolver& resolver, const DeliveryConfig& cfg, std::string server_name)
      : io_(io), resolver_(resolver), opt_(cfg.client), tls_(tls::make_client_context()),
        rng_(std::random_device{}()) {
    helo_ = opt_.helo_name.empty() ? std::move(server_name) : opt_.helo_name;
    if (helo_.empty()) helo_ = "localhost";
  }

  void deliver(const NextHop& hop, Attempt attempt, AttemptDone done) {
    auto reused = take_idle(hop.key());
    net::any_io_executor ex = reused ? reused->ex : net::any_io_executor(net::make_strand(io_));
    auto run = std::make_shared<AttemptRun>(shared_from_this(), hop, std::move(attempt));
    net::co_spawn(ex, drive(run, std::move(reused), std::move(done)), net::detached);
  }

  void shutdown() {
    std::vector<std::shared_ptr<Conn>> idle, active;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (auto& [key, list] : idle_)
        for (auto& c : list) {
          c->parked = false;
          idle.push_back(c);
        }
      idle_.clear();
      for (auto& [ptr, w] : active_)
        if (auto c = w.lock()) active.push_back(c);
    }
    // Idle connections say goodbye (QUIT, bounded by a 5 s timeout); running
    // attempts are cut off and finish with 4xx results.
    for (auto& c : idle) net::co_spawn(c->ex, quit_idle(c), net::detached);
    for (auto& c : active) net::post(c->ex, [c] { c->abort(); });
  }

  bool stopping() const {
    std::lock_guard lock(mu_);
    return stopping_;
  }
  const ClientOptions& options() const { return opt_; }
  const std::string& helo() const { return helo_; }
  dns::Resolver& resolver() { return resolver_; }
  net::ssl::context& tls() { return *tls_; }
  std::mt19937& rng() { return rng_; }  // used on attempt strands: guarded by rng_mu_
  std::mutex& rng_mu() { return rng_mu_; }

  void track(const std::shared_ptr<Conn>& c) {
    std::lock_guard lock(mu_);
    active_[c.get()] = c;
    if (stopping_) net::post(c->ex, [c] { c->abort(); });
  }
  void untrack(const Conn* c) {
    std::lock_guard lock(mu_);
    active_.erase(c);
  }

  /** After a transaction: keep the connection for the next message to the same hop, or close it. */
  net::awaitable<void> release(std::shared_ptr<Conn> c) {
    bool park = !c->broken && c->messages < opt_.max_messages_per_connection;
    if (park) {
      std::lock_guard lock(mu_);
      if (stopping_) {
        park = false;
      } else {
        c->parked = true;
        idle_[c->key].push_back(c);
        active_.erase(c.get());
      }
    }
    if (park) {
      net::co_spawn(c->ex, idle_wait(shared_from_this(), c), net::detached);
      co_return;
    }
    untrack(c.get());
    co_await c->quit();
  }

 private:
  static net::awaitable<void> drive(std::shared_ptr<AttemptRun> run, std::shared_ptr<Conn> reused,
                                    AttemptDone done) {
    AttemptResult res;
    try {
      res = co_await run->run(std::move(reused));
    } catch (const std::exception& e) {
      log::error("delivery", "queue_id={} internal error: {}", run->a_.queue_id, e.what());
      res = run->res_;
      for (auto& r : res.recipients) {
        if (r.code != 0) continue;
        r.code = 451;
        r.enhanced = "4.3.0";
        r.text = fmt::format("internal error: {}", e.what());
      }
    }
    log_attempt(*run, res);
    done(std::move(res));
  }

  static void log_attempt(const AttemptRun& run, const AttemptResult& res) {
    std::string rcpts;
    for (const auto& r : res.recipients) {
      if (!rcpts.empty()) rcpts += "; ";
      const char* status = r.delivered() ? "sent" : r.permanent() ? "bounced" : "deferred";
      rcpts += fmt::format("<{}> {} {} {} {}", r.address, status, r.code, r.enhanced, r.text);
    }
    std::string remote = res.recipients.empty() ? std::string() : res.recipients.front().remote;
    log::info("delivery", "queue_id={} hop={} remote={} tls={} rcpts=[{}]", run.a_.queue_id, run.hop_.key(),
              remote.empty() ? "none" : remote, res.tls.empty() ? "none" : res.tls, rcpts);
  }

  std::shared_ptr<Conn> take_idle(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = idle_.find(key);
    if (it == idle_.end() || stopping_) return nullptr;
    while (!it->second.empty()) {
      auto c = it->second.back();
      it->second.pop_back();
      if (!c->parked) continue;
      c->parked = false;
      active_[c.get()] = c;
      if (it->second.empty()) idle_.erase(it);
      return c;
    }
    idle_.erase(it);
    return nullptr;
  }

  static net::awaitable<void> quit_idle(std::shared_ptr<Conn> c) {
    c->idle_timer.cancel();
    co_await c->quit();
  }

  static net::awaitable<void> idle_wait(std::shared_ptr<SmtpClient> self, std::shared_ptr<Conn> c) {
    c->idle_timer.expires_after(self->opt_.idle_connection_time);
    co_await c->idle_timer.async_wait(net::as_tuple(net::use_awaitable));
    bool expired = false;
    {
      std::lock_guard lock(self->mu_);
      if (c->parked) {
        c->parked = false;
        expired = true;
        auto it = self->idle_.find(c->key);
        if (it != self->idle_.end()) {
          std::erase(it->second, c);
          if (it->second.empty()) self->idle_.erase(it);
        }
      }
    }
    // Taken by a new attempt: it owns the connection now.
    if (expired) co_await c->quit();
  }

  net::io_context& io_;
  dns::Resolver& resolver_;
  ClientOptions opt_;
  std::string helo_;
  std::shared_ptr<net::ssl::context> tls_;
  std::mutex rng_mu_;
  std::mt19937 rng_;
  mutable std::mutex mu_;
  bool stopping_ = false;                                          // guarded by mu_
  std::map<std::string, std::vector<std::shared_ptr<Conn>>> idle_;  // guarded by mu_
  std::map<const Conn*, std::weak_ptr<Conn>> active_;              // guarded by mu_
};

const ClientOptions& AttemptRun::opt() const { return client_->options(); }

bool AttemptRun::loops_to_self(std::string_view peer_name) const {
  return hop_.kind == NextHop::Kind::Mx && !opt().allow_loopback_mx && smtp::iequals(peer_name, client_->helo());
}

net::awaitable<std::vector<dns::Answer>> AttemptRun::query_all(std::vector<std::pair<std::string, uint16_t>> q) {
  struct Gather {
    std::mutex mu;
    std::vector<dns::Answer> answers;
    size_t left = 0;
  };
  auto& resolver = client_->resolver();
  auto init = [&resolver, q = std::move(q)](auto handler) mutable {
    auto g = std::make_shared<Gather>();
    g->answers.resize(q.size());
    g->left = q.size();
    using H = decltype(handler);
    auto h = std::make_shared<H>(std::move(handler));
    if (q.empty()) {
      auto ex = net::get_associated_executor(*h);
      net::post(ex, [h, g]() mutable { std::move (*h)(std::move(g->answers)); });
      return;
    }
    for (size_t i = 0; i < q.size(); ++i) {
      resolver.query(q[i].first, q[i].second, std::chrono::milliseconds(0), [g, h, i](const dns::Answer& a) {
        bool last = false;
        {
          std::lock_guard lock(g->mu);
          g->answers[i] = a;
          last = --g->left == 0;
        }
        if (!last) return;
        auto ex = net::get_associated_executor(*h);
        net::post(ex, [h, g]() mutable { std::move (*h)(std::move(g->answers)); });
      });
    }
  };
  co_return co_await net::async_initiate<decltype(net::use_awaitable), void(std::vector<dns::Answer>)>(
      std::move(init), net::use_awaitable);
}

std::string_view status_name(dns::Status s) {
  switch (s) {
    case dns::Status::Ok: return "ok";
    case dns::Status::NoData: return "no data";
    case dns::Status::NxDomain: return "domain not found";
    case dns::Status::Timeout: return "timeout";
    case dns::Status::ServFail: return "server failure";
    case dns::Status::Cancelled: return "cancelled";
  }
  return "?";
}

bool temporary(dns::Status s) {
  return s == dns::Status::Timeout || s == dns::Status::ServFail || s == dns::Status::Cancelled;
}

/** Resolves the hop into targets_; false when every recipient already has its (final) result. */
net::awaitable<bool> AttemptRun::resolve() {
  const uint16_t port = hop_.port;
  const size_t limit = opt().max_addresses;
  if (hop_.kind == NextHop::Kind::Direct) {
    boost::system::error_code ec;
    auto addr = net::ip::make_address(hop_.host, ec);
    if (!ec) {
      targets_.push_back({hop_.host, addr, port, 0});
      co_return true;
    }
    std::vector<std::pair<std::string, uint16_t>> q;
    q.emplace_back(hop_.host, uint16_t{1});
    if (opt().ipv6) q.emplace_back(hop_.host, uint16_t{28});
    auto answers = co_await query_all(std::move(q));
    bool temp = false;
    for (const auto& ans : answers) {
      temp = temp || temporary(ans.status);
      for (const auto& rec : ans.records) {
        auto a = net::ip::make_address(rec.data, ec);
        if (!ec && targets_.size() < limit) targets_.push_back({hop_.host, a, port, 0});
      }
    }
    if (targets_.empty()) {
      // A configured route or smarthost that does not resolve is an operator's
      // problem, never the sender's: defer.
      settle_all(451, "4.4.3",
                 fmt::format("cannot resolve {}: {}", hop_.host, status_name(answers.front().status)), hop_.host);
      co_return false;
    }
    co_return true;
  }

  std::string domain = hop_.domain;
  if (domain.empty()) {
    settle_all(550, "5.1.2", "recipient address has no domain", "");
    co_return false;
  }
  // A domain literal (user@[192.0.2.1]): that address, no MX (RFC 5321 §4.1.3).
  if (domain.front() == '[' && domain.back() == ']') {
    std::string lit = domain.substr(1, domain.size() - 2);
    if (lit.size() > 5 && smtp::iequals(lit.substr(0, 5), "ipv6:")) lit = lit.substr(5);
    boost::system::error_code ec;
    auto addr = net::ip::make_address(lit, ec);
    if (ec) {
      settle_all(550, "5.1.2", fmt::format("bad address literal {}", domain), "");
      co_return false;
    }
    if (is_self_address(addr) && !opt().allow_loopback_mx) {
      settle_all(554, "5.4.6", fmt::format("mail for {} loops back to myself", domain), "");
      co_return false;
    }
    targets_.push_back({lit, addr, port, 0});
    co_return true;
  }

  std::vector<std::pair<std::string, uint16_t>> mxq;
  mxq.emplace_back(domain, uint16_t{15});
  auto mx_answers = co_await query_all(std::move(mxq));
  const dns::Answer& mx = mx_answers.front();
  MxSet set;
  if (mx.status == dns::Status::Ok) {
    std::vector<std::string> recs;
    for (const auto& r : mx.records) recs.push_back(r.data);
    {
      std::lock_guard lock(client_->rng_mu());
      set = order_mx(recs, client_->rng());
    }
    if (set.null_mx) {
      // RFC 7505 §4.2: no connection at all; permanent.
      settle_all(556, "5.1.10", fmt::format("domain {} does not accept mail (null MX)", domain), "");
      co_return false;
    }
  } else if (mx.status == dns::Status::NoData) {
    set.hosts.push_back({0, domain});  // RFC 5321 §5.1: the implicit MX
  } else if (mx.status == dns::Status::NxDomain) {
    settle_all(550, "5.1.2", fmt::format("domain {} not found", domain), "");
    co_return false;
  } else {
    settle_all(451, "4.4.3", fmt::format("MX lookup for {} failed: {}", domain, status_name(mx.status)), "");
    co_return false;
  }
  if (set.hosts.empty()) {
    settle_all(451, "4.4.3", fmt::format("MX records of {} are malformed", domain), "");
    co_return false;
  }

  std::vector<std::pair<std::string, uint16_t>> q;
  for (const auto& h : set.hosts) {
    q.emplace_back(h.host, uint16_t{1});
    if (opt().ipv6) q.emplace_back(h.host, uint16_t{28});
  }
  auto answers = co_await query_all(std::move(q));
  const size_t per_host = opt().ipv6 ? 2 : 1;
  bool temp = false, loop = false;
  int cut = std::numeric_limits<int>::max();
  for (size_t i = 0; i < set.hosts.size(); ++i) {
    const MxHost& h = set.hosts[i];
    if (h.preference >= cut) break;
    std::vector<net::ip::address> addrs;
    for (size_t k = 0; k < per_host; ++k) {
      const auto& ans = answers[i * per_host + k];
      temp = temp || temporary(ans.status);
      for (const auto& rec : ans.records) {
        boost::system::error_code ec;
        auto a = net::ip::make_address(rec.data, ec);
        if (!ec) addrs.push_back(a);
      }
    }
    // RFC 5321 §5.1: when the MX list names this host, it and every less
    // preferred one are discarded. "This host" is our HELO name, or an MX
    // address on loopback (unless allow-loopback-mx, for tests and
    // single-host setups that relay to a local filter).
    bool self = smtp::iequals(h.host, client_->helo()) && !opt().allow_loopback_mx;
    for (const auto& a : addrs) self = self || (is_self_address(a) && !opt().allow_loopback_mx);
    if (self) {
      cut = h.preference;
      loop = true;
      continue;
    }
    for (const auto& a : addrs) targets_.push_back({h.host, a, port, h.preference});
  }
  // Equal preferences were shuffled: drop those at or after the cut, whichever came first.
  std::erase_if(targets_, [cut](const Target& t) { return t.preference >= cut; });
  if (targets_.size() > limit) targets_.resize(limit);
  if (!targets_.empty()) co_return true;
  if (loop) settle_all(554, "5.4.6", fmt::format("mail for {} loops back to myself", domain), "");
  else if (temp) settle_all(451, "4.4.3", fmt::format("address lookup of the MX hosts of {} failed", domain), "");
  else settle_all(550, "5.4.4", fmt::format("no address for the MX hosts of {}", domain), "");
  co_return false;
}

net::awaitable<AttemptResult> AttemptRun::run(std::shared_ptr<Conn> reused) {
  if (reused) {
    reused->idle_timer.cancel();
    Step s = co_await transaction(reused, true);
    if (s == Step::Done) {
      co_await client_->release(reused);
      co_return res_;
    }
    // The cached connection went stale (peer closed it, RSET refused): start afresh.
    client_->untrack(reused.get());
    co_await reused->quit();
    clear_results();
  }
  if (client_->stopping()) {
    settle_all(451, "4.3.2", "delivery stopped: server shutting down", "");
    co_return res_;
  }
  bool resolved = co_await resolve();
  if (!resolved) co_return res_;

  for (size_t i = 0; i < targets_.size(); ++i) {
    bool allow_tls = true;
    for (int round = 0; round < 2; ++round) {
      if (client_->stopping()) break;
      auto ex = co_await net::this_coro::executor;
      auto c = std::make_shared<Conn>(ex);
      c->target = targets_[i];
      c->key = hop_.key();
      client_->track(c);
      Step s = co_await open(c, targets_[i], allow_tls);
      if (s == Step::Ok) s = co_await transaction(c, false);
      if (s == Step::Done) {
        co_await client_->release(c);
        co_return res_;
      }
      client_->untrack(c.get());
      co_await c->quit();
      if (final_) {
        settle_rest();
        co_return res_;
      }
      clear_results();
      // Opportunistic STARTTLS that failed in the handshake: the same address
      // once more in clear (RFC 7435: never worse than no TLS at all).
      if (c->tls_desc == "failed" && hop_.tls == config::TlsMode::StartTls && !hop_.require_tls && !hop_.verify_peer && allow_tls) {
        allow_tls = false;
        continue;
      }
      break;
    }
  }
  if (client_->stopping() && last_code_ == 0) remember(451, "4.3.2", "delivery stopped: server shutting down", "");
  settle_rest();
  co_return res_;
}

net::awaitable<Step> AttemptRun::open(std::shared_ptr<Conn> c, const Target& t, bool allow_tls) {
  tcp::endpoint ep(t.addr, t.port);
  boost::system::error_code ec;
  c->arm(opt().connect_timeout);
  std::tie(ec) = co_await c->plain->async_connect(ep, net::as_tuple(net::use_awaitable));
  c->disarm();
  if (ec) {
    c->fail(ec, "while connecting");
    remember(451, "4.4.1", fmt::format("connect to {}: {}", t.str(), c->timed_out ? "timeout" : ec.message()), t.str());
    co_return Step::TryNext;
  }
  c->plain->set_option(tcp::no_delay(true), ec);

  if (hop_.tls == config::TlsMode::Implicit) {
    bool tls_failed = false;
    Step s = co_await start_tls(c, tls_failed);
    if (s != Step::Ok) co_return s;
  }
  auto greeting = co_await c->read_reply(opt().greeting_timeout, "waiting for the greeting");
  if (!greeting) {
    remember_conn_error(*c, "greeting");
    co_return Step::TryNext;
  }
  if (greeting->code != 220) {
    // A 5xx greeting (RFC 5321 §3.1 "554 no service") refuses this host, not the
    // recipients: try the next one and defer if none takes the message.
    remember(450, greeting->code >= 500 ? "4.4.1" : (greeting->enhanced.empty() ? "4.4.1" : greeting->enhanced),
             fmt::format("{} refused the session: {}", t.str(), greeting->str()), t.str());
    co_return Step::TryNext;
  }
  {
    std::string_view first = greeting->lines.empty() ? std::string_view{} : std::string_view(greeting->lines.front());
    std::string_view name = first.substr(0, first.find(' '));
    if (loops_to_self(name)) {
      remember(554, "5.4.6", fmt::format("mail for {} loops back to myself ({} greeted me with my own name)",
                                         hop_.domain, t.str()), t.str());
      final_ = true;
      co_return Step::TryNext;
    }
  }
  Step s = co_await hello(c);
  if (s != Step::Ok) co_return s;

  if (hop_.tls == config::TlsMode::StartTls && !c->tls) {
    if (c->caps.starttls && allow_tls) {
      bool tls_failed = false;
      s = co_await start_tls(c, tls_failed);
      if (s != Step::Ok) co_return s;
      s = co_await hello(c);
      if (s != Step::Ok) co_return s;
    } else if (hop_.require_tls) {
      remember(451, "4.7.0", fmt::format("TLS is required, but {} does not offer STARTTLS", t.str()), t.str());
      co_return Step::TryNext;
    }
  }
  if (!hop_.auth_user.empty()) {
    s = co_await authenticate(c);
    if (s != Step::Ok) co_return s;
  }
  co_return Step::Ok;
}

net::awaitable<Step> AttemptRun::hello(std::shared_ptr<Conn> c) {
  const Target& t = c->target;
  bool ok = co_await c->write(fmt::format("EHLO {}\r\n", client_->helo()), opt().command_timeout, "sending EHLO");
  std::optional<Reply> r;
  if (ok) r = co_await c->read_reply(opt().command_timeout, "after EHLO");
  if (!r) {
    remember_conn_error(*c, "EHLO");
    co_return Step::TryNext;
  }
  if (r->code == 250) {
    c->caps = parse_ehlo(*r);
  } else if (r->code >= 500 && !c->tls) {
    // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
    ok = co_await c->write(fmt::format("HELO {}\r\n", client_->helo()), opt().command_timeout, "sending HELO");
    if (ok) r = co_await c->read_reply(opt().command_timeout, "after HELO");
    if (!ok || !r) {
      remember_conn_error(*c, "HELO");
      co_return Step::TryNext;
    }
    if (r->code != 250) {
      remember_reply(*r, "HELO", t);
      if (last_code_ >= 500) last_code_ = 450;  // the host refuses us, not the recipients
      co_return Step::TryNext;
    }
    c->caps = Capabilities{};
  } else {
    remember_reply(*r, "EHLO", t);
    if (last_code_ >= 500) last_code_ = 450;
    co_return Step::TryNext;
  }
  if (!r->lines.empty()) {
    std::string_view first = r->lines.front();
    if (loops_to_self(first.substr(0, first.find(' ')))) {
      remember(554, "5.4.6", fmt::format("mail for {} loops back to myself", hop_.domain), t.str());
      final_ = true;
      co_return Step::TryNext;
    }
  }
  co_return Step::Ok;
}

net::awaitable<Step> AttemptRun::start_tls(std::shared_ptr<Conn> c, bool& tls_failed) {
  const Target& t = c->target;
  if (hop_.tls == config::TlsMode::StartTls) {
    bool ok = co_await c->write("STARTTLS\r\n", opt().command_timeout, "sending STARTTLS");
    std::optional<Reply> r;
    if (ok) r = co_await c->read_reply(opt().command_timeout, "after STARTTLS");
    if (!r) {
      remember_conn_error(*c, "STARTTLS");
      co_return Step::TryNext;
    }
    if (r->code != 220) {
      if (hop_.require_tls) {
        remember(451, "4.7.0", fmt::format("TLS is required, but {} refused STARTTLS: {}", t.str(), r->str()), t.str());
        co_return Step::TryNext;
      }
      co_return Step::Ok;  // opportunistic: go on in clear
    }
  }
  c->tls.emplace(std::move(*c->plain), client_->tls());
  c->plain.reset();
  c->inbuf.clear();  // RFC 3207 §4.2: nothing read before the handshake counts
  c->rpos = 0;
  const std::string& name = hop_.kind == NextHop::Kind::Direct ? hop_.host : t.host;
  if (!is_ip(name)) SSL_set_tlsext_host_name(c->tls->native_handle(), name.c_str());
  if (hop_.verify_peer) {
    c->tls->set_verify_mode(net::ssl::verify_peer);
    c->tls->set_verify_callback(net::ssl::host_name_verification(name));
  } else {
    c->tls->set_verify_mode(net::ssl::verify_none);  // RFC 7435 opportunistic security
  }
  boost::system::error_code ec;
  c->arm(opt().command_timeout);
  std::tie(ec) = co_await c->tls->async_handshake(net::ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  c->disarm();
  if (ec) {
    c->fail(ec, "in the TLS handshake");
    c->tls_desc = "failed";
    tls_failed = true;
    remember(451, hop_.verify_peer ? "4.7.5" : "4.7.0",
             fmt::format("TLS handshake with {} failed: {}", t.str(), c->timed_out ? "timeout" : ec.message()),
             t.str());
    co_return Step::TryNext;
  }
  auto info = tls::tls_info(c->tls->native_handle());
  c->tls_desc = fmt::format("{} {}{}", info.protocol, info.cipher, hop_.verify_peer ? " (verified)" : "");
  co_return Step::Ok;
}

net::awaitable<Step> AttemptRun::authenticate(std::shared_ptr<Conn> c) {
  const Target& t = c->target;
  if (!c->tls && !hop_.allow_cleartext_auth) {
    remember(451, "4.7.0", fmt::format("not sending credentials to {} without TLS", t.str()), t.str());
    co_return Step::TryNext;
  }
  if (!c->caps.auth_plain && !c->caps.auth_login) {
    remember(451, "4.7.0", fmt::format("{} offers neither AUTH PLAIN nor AUTH LOGIN", t.str()), t.str());
    co_return Step::TryNext;
  }
  const auto tmo = opt().command_timeout;
  std::optional<Reply> r;
  bool ok = false;
  if (c->caps.auth_plain) {
    std::string creds = std::string(1, '\0') + hop_.auth_user + std::string(1, '\0') + hop_.auth_password;
    ok = co_await c->write(fmt::format("AUTH PLAIN {}\r\n", mail::encode_base64(creds)), tmo, "sending AUTH");
    if (ok) r = co_await c->read_reply(tmo, "after AUTH PLAIN");
  } else {
    ok = co_await c->write("AUTH LOGIN\r\n", tmo, "sending AUTH");
    if (ok) r = co_await c->read_reply(tmo, "after AUTH LOGIN");
    if (r && r->code == 334) {
      ok = co_await c->write(mail::encode_base64(hop_.auth_user) + "\r\n", tmo, "sending the user name");
      r.reset();
      if (ok) r = co_await c->read_reply(tmo, "after the user name");
      if (r && r->code == 334) {
        ok = co_await c->write(mail::encode_base64(hop_.auth_password) + "\r\n", tmo, "sending the password");
        r.reset();
        if (ok) r = co_await c->read_reply(tmo, "after the password");
      }
    }
  }
  if (!r) {
    remember_conn_error(*c, "AUTH");
    co_return Step::TryNext;
  }
  if (r->code != 235) {
    // A refused login is a configuration problem on our side: defer, never bounce.
    remember(451, "4.7.8", fmt::format("authentication as {} at {} failed: {}", hop_.auth_user, t.str(), r->str()),
             t.str());
    co_return Step::TryNext;
  }
  co_return Step::Ok;
}

net::awaitable<Step> AttemptRun::transaction(std::shared_ptr<Conn> c, bool reused) {
  const Target& t = c->target;
  const std::string remote = t.str();
  const auto tmo = opt().command_timeout;
  const Capabilities& caps = c->caps;
  res_.tls = c->tls && c->tls_desc != "failed" ? c->tls_desc : std::string();

  if (reused) {
    bool ok = co_await c->write("RSET\r\n", tmo, "sending RSET");
    std::optional<Reply> r;
    if (ok) r = co_await c->read_reply(tmo, "after RSET");
    if (!r || r->code != 250) co_return Step::TryNext;
  }

  // Capability checks that fail the message for this peer before MAIL.
  if (a_.smtputf8 && !caps.smtputf8) {
    // RFC 6531 §3.2: no downgrade here; the sender gets a permanent failure.
    settle_all(553, "5.6.7", fmt::format("{} does not support SMTPUTF8, which the message requires", remote), remote);
    co_return Step::Done;
  }
  const bool binary = a_.body == queue::BodyType::BinaryMime;
  if (binary && !(caps.chunking && caps.binarymime)) {
    settle_all(554, "5.6.3", fmt::format("{} does not support BINARYMIME and CHUNKING, which the message needs", remote),
               remote);
    co_return Step::Done;
  }
  const std::string& original = *a_.message;
  std::string data_storage;
  const std::string* data = &original;
  if (!binary) {
    // RFC 6152 §3: 8-bit content to a peer without 8BITMIME is re-encoded to 7 bit.
    auto converted = downgrade_message(original, caps.eightbitmime);
    if (converted) {
      data_storage = std::move(*converted);
      data = &data_storage;
    }
  }
  const bool eight = !binary && caps.eightbitmime && (a_.body == queue::BodyType::EightBitMime || has_8bit(*data));
  if (caps.size && caps.max_size > 0 && data->size() > caps.max_size) {
    settle_all(552, "5.3.4",
               fmt::format("message size {} exceeds the fixed limit {} of {}", data->size(), caps.max_size, remote),
               remote);
    co_return Step::Done;
  }

  std::string mail = fmt::format("MAIL FROM:<{}>", a_.mail_from);
  if (caps.size) mail += fmt::format(" SIZE={}", data->size());
  if (binary) mail += " BODY=BINARYMIME";
  else if (eight) mail += " BODY=8BITMIME";
  if (a_.smtputf8) mail += " SMTPUTF8";
  if (caps.dsn) {
    if (!a_.ret.empty()) mail += " RET=" + a_.ret;
    if (!a_.envid.empty()) mail += " ENVID=" + a_.envid;
  }
  mail += "\r\n";
  std::vector<std::string> rcpts;
  for (const auto& r : a_.recipients) {
    std::string cmd = fmt::format("RCPT TO:<{}>", r.address);
    if (caps.dsn) {
      if (!r.notify.empty()) cmd += " NOTIFY=" + r.notify;
      if (!r.orcpt.empty()) cmd += " ORCPT=" + r.orcpt;
    }
    cmd += "\r\n";
    rcpts.push_back(std::move(cmd));
  }

  std::optional<Reply> mail_reply;
  std::vector<std::optional<Reply>> rcpt_replies(rcpts.size());
  if (caps.pipelining) {
    // RFC 2920 §3.1: MAIL and every RCPT in one group, the replies in order.
    std::string group = mail;
    for (const auto& r : rcpts) group += r;
    bool ok = co_await c->write(group, tmo, "sending MAIL and RCPT");
    if (ok) mail_reply = co_await c->read_reply(tmo, "after MAIL");
    for (size_t i = 0; i < rcpts.size() && mail_reply && !c->broken; ++i)
      rcpt_replies[i] = co_await c->read_reply(tmo, "after RCPT");
  } else {
    bool ok = co_await c->write(mail, tmo, "sending MAIL");
    if (ok) mail_reply = co_await c->read_reply(tmo, "after MAIL");
    if (mail_reply && mail_reply->code == 250) {
      for (size_t i = 0; i < rcpts.size() && !c->broken; ++i) {
        ok = co_await c->write(rcpts[i], tmo, "sending RCPT");
        if (ok) rcpt_replies[i] = co_await c->read_reply(tmo, "after RCPT");
      }
    }
  }
  if (!mail_reply) {
    remember_conn_error(*c, "MAIL");
    co_return Step::TryNext;
  }
  if (mail_reply->code != 250) {
    // RFC 5321 §5.1 and Postfix: a 4xx to MAIL (or 421) tries the next host; a 5xx is final.
    remember_reply(*mail_reply, "MAIL FROM", t);
    if (mail_reply->code < 500 || mail_reply->code == 421) co_return Step::TryNext;
    settle_rest();
    if (!c->broken) {
      bool ok = co_await c->write("RSET\r\n", tmo, "sending RSET");
      std::optional<Reply> rr;
      if (ok) rr = co_await c->read_reply(tmo, "after RSET");
    }
    co_return Step::Done;
  }
  std::vector<size_t> accepted;
  for (size_t i = 0; i < rcpts.size(); ++i) {
    const auto& rr = rcpt_replies[i];
    if (!rr) {
      remember_conn_error(*c, "RCPT");
      co_return Step::TryNext;
    }
    if (rr->code == 421) {
      remember_reply(*rr, "RCPT TO", t);
      co_return Step::TryNext;
    }
    if (rr->code == 250 || rr->code == 251) {
      accepted.push_back(i);
      continue;
    }
    auto& res = res_.recipients[i];
    res.code = rr->code;
    res.enhanced = rr->enhanced.empty() ? fmt::format("{}.0.0", rr->code / 100) : rr->enhanced;
    res.text = fmt::format("{} (RCPT TO)", rr->text());
    res.remote = remote;
  }
  if (accepted.empty()) {
    bool ok = co_await c->write("RSET\r\n", tmo, "sending RSET");
    std::optional<Reply> rr;
    if (ok) rr = co_await c->read_reply(tmo, "after RSET");
    if (!rr || rr->code != 250) c->broken = true;
    co_return Step::Done;
  }
  co_return co_await send_body(c, *data, binary, accepted);
}

net::awaitable<Step> AttemptRun::send_body(std::shared_ptr<Conn> c, const std::string& data, bool bdat,
                                           const std::vector<size_t>& accepted) {
  const Target& t = c->target;
  const std::string remote = t.str();
  const auto tmo = opt().command_timeout;
  auto settle_accepted = [&](int code, const std::string& enhanced, const std::string& text) {
    for (size_t i : accepted) {
      auto& r = res_.recipients[i];
      r.code = code;
      r.enhanced = enhanced;
      r.text = text;
      r.remote = remote;
      r.dsn_passed = c->caps.dsn;  // NOTIFY/ORCPT went to the peer with RCPT
    }
  };
  std::optional<Reply> final_reply;
  if (bdat) {
    // RFC 3030: one chunk, no dot-stuffing.
    std::string cmd = fmt::format("BDAT {} LAST\r\n", data.size());
    bool ok = co_await c->write(cmd, tmo, "sending BDAT");
    if (ok) ok = co_await c->write(data, opt().data_block_timeout, "sending the message");
    if (ok) final_reply = co_await c->read_reply(opt().data_end_timeout, "after BDAT LAST");
  } else {
    bool ok = co_await c->write("DATA\r\n", tmo, "sending DATA");
    std::optional<Reply> go;
    if (ok) go = co_await c->read_reply(tmo, "after DATA");
    if (!go) {
      remember_conn_error(*c, "DATA");
      co_return Step::TryNext;  // nothing was sent yet: another host may take it
    }
    if (go->code != 354) {
      if (go->code == 421) {
        remember_reply(*go, "DATA", t);
        co_return Step::TryNext;
      }
      settle_accepted(go->code, go->enhanced.empty() ? fmt::format("{}.0.0", go->code / 100) : go->enhanced,
                      fmt::format("{} (DATA)", go->text()));
      bool rs = co_await c->write("RSET\r\n", tmo, "sending RSET");
      std::optional<Reply> rr;
      if (rs) rr = co_await c->read_reply(tmo, "after RSET");
      if (!rr || rr->code != 250) c->broken = true;
      co_return Step::Done;
    }
    std::string stuffed = dot_stuff(data);
    ok = co_await c->write(stuffed, opt().data_block_timeout, "sending the message");
    if (ok) final_reply = co_await c->read_reply(opt().data_end_timeout, "after the end of data");
  }
  if (!final_reply) {
    // The message may or may not have arrived (RFC 1047): defer; a duplicate is
    // better than a loss.
    settle_accepted(451, "4.4.2", fmt::format("{} (after sending the message)", c->error));
    co_return Step::Done;
  }
  const Reply& r = *final_reply;
  settle_accepted(r.code, r.enhanced.empty() ? fmt::format("{}.0.0", r.code / 100) : r.enhanced,
                  r.text());
  ++c->messages;
  if (r.code == 421) c->broken = true;
  co_return Step::Done;
}

/** The handle the queue manager holds: its destruction stops every attempt (4xx). */
class SmtpTransport final : public Transport {
 public:
  explicit SmtpTransport(std::shared_ptr<SmtpClient> client) : client_(std::move(client)) {}
  ~SmtpTransport() override { client_->shutdown(); }
  void deliver(const NextHop& hop, Attempt attempt, AttemptDone done) override {
    client_->deliver(hop, std::move(attempt), std::move(done));
  }

 private:
  std::shared_ptr<SmtpClient> client_;
};

}  // namespace

std::shared_ptr<Transport> make_smtp_transport(boost::asio::io_context& io, dns::Resolver& resolver,
                                               const DeliveryConfig& cfg, std::string server_name) {
  return std::make_shared<SmtpTransport>(std::make_shared<SmtpClient>(io, resolver, cfg, std::move(server_name)));
}

}  // namespace postern::core::delivery
