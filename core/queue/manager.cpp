#include "core/queue/manager.hpp"

#include "core/log/log.hpp"
#include "core/mime/mime.hpp"
#include "core/queue/dsn.hpp"
#include "core/util/offload.hpp"
#include "postern/mail/ascii.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

namespace postern::core::queue {

namespace fs = std::filesystem;
namespace net = boost::asio;
using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

namespace {

// New messages keep their content in memory for their first round (no re-read),
// within this budget; larger ones or beyond it are read from the spool file.
constexpr size_t kCacheMessageMax = 1 << 20;
constexpr size_t kCacheBudget = 256u << 20;
// The timer never sleeps longer than this, so a wall-clock jump is noticed.
constexpr std::chrono::seconds kMaxSleep{30};

using mail::iequals;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A destination-level failure (no connection, greeting refused): the other
// messages queued for that destination need not try it again right now.
bool destination_failure(const std::vector<delivery::RecipientResult>& rs) {
  if (rs.empty()) return false;
  for (const auto& r : rs) {
    if (r.delivered() || r.permanent()) return false;
    if (!(r.code == 0 || r.code == 421 || r.enhanced.starts_with("4.4."))) return false;
  }
  return true;
}

std::string host_of(std::string_view remote) {
  // "mx.example.net[192.0.2.1]:25" -> "mx.example.net"
  if (remote.starts_with("pipe:") || remote == "local") return {};
  size_t b = remote.find('[');
  std::string_view h = remote.substr(0, b);
  if (h.empty() && b != std::string_view::npos) {
    size_t e = remote.find(']');
    h = remote.substr(b + 1, e == std::string_view::npos ? std::string_view::npos : e - b - 1);
  }
  return std::string(h);
}

}  // namespace

struct QueueManager::Impl : std::enable_shared_from_this<Impl> {
  struct Msg {
    std::string id;
    Envelope env;
    size_t size = 0;
    MessageState st;
    enum class Phase { Waiting, Due, Loading, Delivering, Finishing } phase = Phase::Due;
    std::shared_ptr<const std::string> content;
    size_t cached = 0;       // octets counted against the cache budget
    size_t outstanding = 0;  // jobs of the current round
    TimePoint scheduled{};   // key in timeline_ while Waiting
    bool in_timeline = false;
  };
  using MsgPtr = std::shared_ptr<Msg>;

  struct Job {
    MsgPtr msg;
    std::string dest;
    RecipientRoute route;            // kind, hop, argv (of the first unit)
    std::vector<size_t> units;       // indices into msg->st.units
  };

  struct Dest {
    std::deque<Job> queue;
    size_t active = 0;
    bool in_ring = false;
    TimePoint suspended_until{};
    delivery::RecipientResult suspend_result;
  };

  Impl(QueueConfig c, Spool& s, net::io_context& i, net::thread_pool& w, std::string name, std::string domain,
       QueueHooks h)
      : cfg(std::move(c)), spool(s), io(i), workers(w), strand(net::make_strand(i)), timer(strand),
        server_name(std::move(name)), hooks(std::move(h)) {
    if (!hooks.clock) hooks.clock = [] { return Clock::now(); };
    postmaster = cfg.postmaster.empty() ? "postmaster@" + (domain.empty() ? server_name : domain) : cfg.postmaster;
  }

  QueueConfig cfg;
  Spool& spool;
  net::io_context& io;
  net::thread_pool& workers;
  net::strand<net::io_context::executor_type> strand;
  net::steady_timer timer;
  std::unique_ptr<net::signal_set> signals;
  std::string server_name;
  std::string postmaster;
  QueueHooks hooks;

  // Everything below: only on `strand`.
  std::unordered_map<std::string, MsgPtr> msgs;
  std::set<std::pair<TimePoint, std::string>> timeline;
  std::deque<MsgPtr> due;
  size_t active_msgs = 0;
  std::map<std::string, Dest> dests;
  std::deque<std::string> ring;
  size_t running = 0;
  size_t cache_bytes = 0;

  // Stats (any thread).
  std::atomic<uint64_t> st_messages{0}, st_active{0}, st_attempts{0}, st_delivered{0}, st_deferred{0}, st_bounced{0},
      st_dropped{0}, st_dsns{0}, st_removed{0}, st_running{0};

  fs::path incoming_dir() const { return spool.dir() / "incoming"; }
  fs::path state_file(const std::string& id) const { return state_dir(spool.dir()) / id; }
  TimePoint now() const { return hooks.clock(); }

  // ------------------------------------------------------------ index

  /** Reads one spool file's envelope and state (blocking; start-up and rescans). */
  MsgPtr load_entry(const std::string& id) {
    size_t size = 0;
    auto env = Spool::load_envelope(incoming_dir() / id, &size);
    if (!env) return nullptr;
    auto m = std::make_shared<Msg>();
    m->id = id;
    m->env = std::move(*env);
    m->size = size;
    if (auto st = read_state_file(state_file(id))) {
      bool valid = true;
      for (const Unit& u : st->units) valid = valid && u.rcpt < m->env.recipients.size();
      if (valid) m->st = std::move(*st);
      else log::warn("queue", "qid={} state file does not match the envelope; starting over", id);
    }
    if (m->st.units.empty()) init_units(*m);
    return m;
  }

  static void init_units(Msg& m) {
    m.st.units.clear();
    for (uint32_t i = 0; i < m.env.recipients.size(); ++i) {
      Unit u;
      u.rcpt = i;
      m.st.units.push_back(std::move(u));
    }
  }

  void scan_blocking() {
    fs::create_directories(hold_dir(spool.dir()));
    fs::create_directories(state_dir(spool.dir()));
    fs::create_directories(requests_dir(spool.dir()));
    std::vector<MsgPtr> found;
    std::set<std::string> ids;
    for (const auto& e : fs::directory_iterator(incoming_dir())) {
      const std::string id = e.path().filename().string();
      if (!e.is_regular_file()) continue;
      auto m = load_entry(id);
      if (!m) {
        log::error("queue", "qid={} spool file unreadable or malformed; left in place", id);
        continue;
      }
      ids.insert(id);
      found.push_back(std::move(m));
    }
    // State files of messages that are gone (removed after their last round),
    // and tmp files of an interrupted state write.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(state_dir(spool.dir()), ec)) {
      const std::string name = e.path().filename().string();
      if (name.ends_with(".tmp") || (!ids.count(name) && !fs::exists(hold_dir(spool.dir()) / name)))
        fs::remove(e.path(), ec);
    }
    std::sort(found.begin(), found.end(), [](const MsgPtr& a, const MsgPtr& b) { return a->id < b->id; });
    net::post(strand, [self = shared_from_this(), found = std::move(found)]() mutable {
      for (auto& m : found) self->add(std::move(m));
      self->pump();
      self->arm_timer();
    });
  }

  /** Adds a message to the index: due now, or at its next try. */
  void add(MsgPtr m) {
    if (msgs.count(m->id)) return;
    msgs.emplace(m->id, m);
    st_messages = msgs.size();
    if (m->st.next_try > now()) {
      m->phase = Msg::Phase::Waiting;
      schedule(m, m->st.next_try);
    } else {
      m->phase = Msg::Phase::Due;
      due.push_back(m);
    }
  }

  void schedule(const MsgPtr& m, TimePoint at) {
    if (m->in_timeline) timeline.erase({m->scheduled, m->id});
    m->scheduled = at;
    m->in_timeline = true;
    timeline.insert({at, m->id});
  }

  void unschedule(const MsgPtr& m) {
    if (m->in_timeline) timeline.erase({m->scheduled, m->id});
    m->in_timeline = false;
  }

  void forget(const MsgPtr& m) {
    unschedule(m);
    release_content(*m);
    msgs.erase(m->id);
    st_messages = msgs.size();
  }

  void release_content(Msg& m) {
    cache_bytes -= m.cached;
    m.cached = 0;
    m.content.reset();
  }

  void on_commit(const Envelope& env, std::string_view message) {
    auto m = std::make_shared<Msg>();
    m->id = env.queue_id;
    m->env = env;
    m->size = message.size();
    init_units(*m);
    std::shared_ptr<const std::string> content;
    if (message.size() <= kCacheMessageMax) content = std::make_shared<const std::string>(message);
    net::post(strand, [self = shared_from_this(), m, content = std::move(content)]() mutable {
      if (content && self->cache_bytes + content->size() <= kCacheBudget) {
        m->content = std::move(content);
        m->cached = m->content->size();
        self->cache_bytes += m->cached;
      }
      self->add(std::move(m));
      self->pump();
    });
  }

  void arm_timer() {
    if (timeline.empty()) {
      timer.cancel();
      return;
    }
    auto wait = timeline.begin()->first - now();
    auto sleep = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::clamp<Clock::duration>(wait, Clock::duration::zero(), kMaxSleep));
    timer.expires_after(sleep);
    timer.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = w.lock()) self->on_wake();
    });
  }

  void on_wake() {
    const TimePoint t = now();
    while (!timeline.empty() && timeline.begin()->first <= t) {
      auto it = msgs.find(timeline.begin()->second);
      timeline.erase(timeline.begin());
      if (it == msgs.end()) continue;
      it->second->in_timeline = false;
      if (it->second->phase != Msg::Phase::Waiting) continue;
      it->second->phase = Msg::Phase::Due;
      due.push_back(it->second);
    }
    pump();
    arm_timer();
  }

  void do_flush() {
    for (auto& d : dests) d.second.suspended_until = {};
    for (auto& [id, m] : msgs) {
      if (m->phase != Msg::Phase::Waiting) continue;
      unschedule(m);
      m->phase = Msg::Phase::Due;
      due.push_back(m);
    }
    log::info("queue", "flush: {} message(s) due now", due.size());
    pump();
    arm_timer();
  }

  /** Starts rounds while there is room. */
  void pump() {
    if (!cfg.deliver) {  // <queue deliver="false">: messages stay due until a restart with deliveries on
      st_active = active_msgs;
      return;
    }
    while (active_msgs < cfg.max_active_messages && !due.empty()) {
      MsgPtr m = std::move(due.front());
      due.pop_front();
      if (m->phase != Msg::Phase::Due || !msgs.count(m->id)) continue;
      start_round(m);
    }
    st_active = active_msgs;
  }

  // ------------------------------------------------------------ rounds

  void start_round(const MsgPtr& m) {
    ++active_msgs;
    m->phase = Msg::Phase::Loading;
    if (m->content) {
      plan(m);
      return;
    }
    net::post(workers, [self = shared_from_this(), m] {
      auto file = Spool::load(self->incoming_dir() / m->id);
      net::post(self->strand, [self, m, file = std::move(file)]() mutable {
        if (!file) {
          // posternctl held or deleted it meanwhile (or it is damaged: logged once here).
          if (!fs::exists(hold_dir(self->spool.dir()) / m->id))
            log::info("queue", "qid={} spool file gone or unreadable; dropped from the index", m->id);
          --self->active_msgs;
          self->forget(m);
          self->pump();
          return;
        }
        m->content = std::make_shared<const std::string>(std::move(file->message));
        self->plan(m);
      });
    });
  }

  static std::string dest_key(const RecipientRoute& r) {
    switch (r.kind) {
      case RecipientRoute::Kind::Local: return "local:" + lower(r.address);
      case RecipientRoute::Kind::Smtp: return "smtp:" + r.hop.key();
      case RecipientRoute::Kind::Pipe: {
        std::string k = "pipe:";
        for (const auto& a : r.argv) k += a + '\x1f';
        return k;
      }
      default: return {};
    }
  }

  void set_result(Unit& u, int code, std::string enhanced, std::string text, std::string remote) {
    u.code = code;
    u.enhanced = std::move(enhanced);
    u.text = std::move(text);
    u.remote = std::move(remote);
  }

  void plan(const MsgPtr& m) {
    m->phase = Msg::Phase::Delivering;
    m->st.last_attempt = now();
    const std::string& sender = m->env.mail_from;
    // 1. Expand recipients not resolved yet; route the others again.
    std::vector<Unit> units;
    std::vector<std::optional<RecipientRoute>> routes;
    for (Unit& u : m->st.units) {
      if (u.final()) {
        units.push_back(std::move(u));
        routes.emplace_back();
        continue;
      }
      if (u.target.empty()) {
        const std::string& rcpt = m->env.recipients[u.rcpt].address;
        std::vector<RecipientRoute> targets;
        if (hooks.expand) targets = hooks.expand(rcpt, sender);
        if (targets.empty()) targets.push_back(RecipientRoute{RecipientRoute::Kind::Defer, rcpt, {}, {}, 451, "4.3.0",
                                                              "no route for this recipient"});
        for (auto& r : targets) {
          Unit n;
          n.rcpt = u.rcpt;
          if (r.kind == RecipientRoute::Kind::Defer) {
            // Stays unresolved: the next round expands it again.
            n.code = r.code;
          } else {
            n.target = r.address.empty() ? rcpt : r.address;
            n.local = r.kind == RecipientRoute::Kind::Local;
          }
          units.push_back(std::move(n));
          routes.emplace_back(std::move(r));
        }
      } else {
        RecipientRoute r = hooks.route ? hooks.route(u.target, u.local)
                                       : RecipientRoute{RecipientRoute::Kind::Defer, u.target, {}, {}, 451, "4.3.0",
                                                        "no router"};
        if (r.address.empty()) r.address = u.target;
        units.push_back(std::move(u));
        routes.emplace_back(std::move(r));
      }
    }
    m->st.units = std::move(units);

    // 2. Immediate outcomes and grouping by destination.
    std::map<std::string, std::vector<size_t>> groups;  // dest -> unit indices
    std::map<std::string, RecipientRoute> group_route;
    for (size_t i = 0; i < m->st.units.size(); ++i) {
      if (!routes[i]) continue;
      Unit& u = m->st.units[i];
      RecipientRoute& r = *routes[i];
      switch (r.kind) {
        case RecipientRoute::Kind::Fail:
          set_result(u, r.code ? r.code : 550, r.enhanced.empty() ? "5.1.1" : r.enhanced, r.text, "");
          if (u.target.empty()) u.target = m->env.recipients[u.rcpt].address;
          u.status = UnitStatus::Failed;
          notify_event(m, u, event::Stage::Bounced);
          ++st_bounced;
          break;
        case RecipientRoute::Kind::Defer:
          set_result(u, r.code ? r.code : 451, r.enhanced.empty() ? "4.3.0" : r.enhanced, r.text, "");
          log::info("queue", "qid={} rcpt={} deferred: {} {} {}", m->id, m->env.recipients[u.rcpt].address, u.code,
                    u.enhanced, u.text);
          notify_event(m, u, event::Stage::Deferred);
          ++st_deferred;
          break;
        default: {
          std::string key = dest_key(r);
          groups[key].push_back(i);
          group_route.emplace(key, r);
        }
      }
    }
    // 3. Jobs: at most recipients_per_attempt distinct addresses each.
    std::vector<Job> jobs;
    for (auto& [key, idx] : groups) {
      Job job;
      std::set<std::string> addresses;
      for (size_t i : idx) {
        const std::string a = lower(m->st.units[i].target);
        if (!addresses.count(a) && addresses.size() >= cfg.recipients_per_attempt) {
          jobs.push_back(std::move(job));
          job = Job{};
          addresses.clear();
        }
        addresses.insert(a);
        job.units.push_back(i);
      }
      if (!job.units.empty()) jobs.push_back(std::move(job));
      for (auto& j : jobs) {
        if (!j.dest.empty()) continue;
        j.dest = key;
        j.route = group_route[key];
      }
    }
    m->outstanding = jobs.size();
    if (jobs.empty()) {
      finish_round(m);
      return;
    }
    for (auto& j : jobs) {
      j.msg = m;
      Dest& d = dests[j.dest];
      d.queue.push_back(std::move(j));
      if (!d.in_ring) {
        d.in_ring = true;
        ring.push_back(d.queue.back().dest);
      }
    }
    dispatch();
  }

  // ------------------------------------------------------------ destinations

  void dispatch() {
    const TimePoint t = now();
    while (running < cfg.max_connections && !ring.empty()) {
      std::string key = std::move(ring.front());
      ring.pop_front();
      auto it = dests.find(key);
      if (it == dests.end()) continue;
      Dest& d = it->second;
      d.in_ring = false;
      if (d.queue.empty()) {
        if (d.active == 0) dests.erase(it);
        continue;
      }
      if (t < d.suspended_until) {
        // Postfix "delivery temporarily suspended": the queued jobs defer
        // without another connection attempt.
        std::deque<Job> jobs;
        jobs.swap(d.queue);
        const delivery::RecipientResult r = d.suspend_result;
        for (auto& j : jobs) {
          std::vector<delivery::RecipientResult> rs;
          for (size_t i : j.units) {
            delivery::RecipientResult x = r;
            x.address = j.msg->st.units[i].target;
            rs.push_back(std::move(x));
          }
          apply_results(j, rs, /*counted=*/false);
        }
        continue;
      }
      if (d.active >= cfg.max_per_destination) continue;  // back in the ring when one ends
      Job job = std::move(d.queue.front());
      d.queue.pop_front();
      ++d.active;
      ++running;
      st_running = running;
      if (!d.queue.empty() && d.active < cfg.max_per_destination) {
        d.in_ring = true;
        ring.push_back(key);
      }
      run_job(std::move(job));
    }
  }

  void job_finished(const std::string& key) {
    --running;
    st_running = running;
    auto it = dests.find(key);
    if (it != dests.end()) {
      Dest& d = it->second;
      --d.active;
      if (!d.queue.empty() && !d.in_ring) {
        d.in_ring = true;
        ring.push_back(key);
      } else if (d.queue.empty() && d.active == 0 && d.suspended_until <= now()) {
        dests.erase(it);
      }
    }
    dispatch();
  }

  /** The Attempt for a job: distinct addresses, original NOTIFY/ORCPT. */
  delivery::Attempt make_attempt(const Job& job) const {
    const Msg& m = *job.msg;
    delivery::Attempt a;
    a.queue_id = m.id;
    a.mail_from = m.env.mail_from;
    a.envid = m.env.envid;
    a.ret = m.env.ret;
    a.body = m.env.body;
    a.smtputf8 = m.env.smtputf8;
    a.message = m.content;
    std::set<std::string> seen;
    for (size_t i : job.units) {
      const Unit& u = m.st.units[i];
      if (!seen.insert(lower(u.target)).second) continue;
      const EnvelopeRecipient& orig = m.env.recipients[u.rcpt];
      EnvelopeRecipient r;
      r.address = u.target;
      r.notify = orig.notify;
      // RFC 3461 §4.2: ORCPT names the original recipient; keep the client's,
      // or add one when an alias changed the address.
      r.orcpt = orig.orcpt;
      a.recipients.push_back(std::move(r));
    }
    return a;
  }

  void run_job(Job job) {
    ++st_attempts;
    event::ChainPtr chain = hooks.chains ? hooks.chains() : nullptr;
    if (chain && !chain->subscribers(event::Stage::Delivery).empty()) {
      net::co_spawn(strand, run_stage_then_deliver(shared_from_this(), std::move(chain), std::move(job)), net::detached);
      return;
    }
    deliver(std::move(job));
  }

  struct StageData {
    event::SessionInfo session;
    event::Transaction txn;
    event::EventData ev;
  };

  std::shared_ptr<StageData> stage_data(const Msg& m, std::vector<std::string> rcpts, std::string command) const {
    auto sd = std::make_shared<StageData>();
    sd->session.session_id = m.id;
    sd->session.server_name = server_name;
    sd->session.listener = "queue";
    sd->session.peer_ip = m.env.peer;
    sd->session.helo = m.env.helo;
    sd->session.auth_user = m.env.auth_user;
    sd->txn.queue_id = m.id;
    sd->txn.mail_from = m.env.mail_from;
    sd->txn.recipients = std::move(rcpts);
    sd->ev.session = &sd->session;
    sd->ev.transaction = &sd->txn;
    sd->ev.command = std::move(command);
    if (!sd->txn.recipients.empty()) sd->ev.current_rcpt = sd->txn.recipients.front();
    // ABI 1.3 inject: the skip list recorded in the spool file, and the tag
    // that tells an autoreply the message came from a plugin.
    sd->ev.skip_plugins = m.env.skip_filters;
    if (!m.env.injected_by.empty()) sd->session.tags.emplace(POSTERN_TAG_INJECTED, m.env.injected_by);
    return sd;
  }

#if defined(__GNUC__) && !defined(__clang__)
  // GCC 12 with -fsanitize=address sees Asio's coroutine frame allocator
  // (aligned_alloc inside awaitable_frame_base::operator new, free in its
  // operator delete) as mismatched: a false positive of -Wmismatched-new-delete.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
  static net::awaitable<void> run_stage_then_deliver(std::shared_ptr<Impl> self, event::ChainPtr chain, Job job) {
    std::vector<std::string> rcpts;
    for (size_t i : job.units) rcpts.push_back(job.msg->st.units[i].target);
    auto sd = self->stage_data(*job.msg, std::move(rcpts), job.dest);
    if (job.msg->content) {
      // Off the scheduling strand: one large message must not stall every other delivery.
      try {
        // The lambda captures only a pointer: GCC 12 destroys temporaries of a
        // co_await expression twice, and a shared_ptr captured there dropped
        // one reference too many (the content was freed under the queue).
        // `content` keeps the text alive while the coroutine waits.
        const std::shared_ptr<const std::string> content = job.msg->content;
        const std::string* text = content.get();
        sd->txn.message = co_await util::offload(self->workers.get_executor(), [text] {
          return std::make_shared<const mime::Message>(mime::Message::parse(*text));
        });
      } catch (const std::exception& e) {
        log::warn("queue", "qid={} MIME parse failed: {}", job.msg->id, e.what());
      }
    }
    event::Outcome o;
    try {
      o = co_await chain->run(event::Stage::Delivery, sd->ev);
    } catch (const std::exception& e) {
      log::warn("queue", "qid={} delivery stage failed: {}", job.msg->id, e.what());
    }
    std::vector<delivery::RecipientResult> rs;
    auto all = [&](int code, std::string enhanced, std::string text) {
      for (size_t i : job.units) {
        delivery::RecipientResult r;
        r.address = job.msg->st.units[i].target;
        r.code = code;
        r.enhanced = enhanced;
        r.text = text;
        r.remote = "plugin:" + o.decided_by;
        rs.push_back(std::move(r));
      }
    };
    switch (o.verdict) {
      case event::Verdict::Reject:
        all(o.code >= 500 ? o.code : 550, o.enhanced.empty() ? "5.7.1" : o.enhanced,
            o.text.empty() ? "delivery refused by " + o.decided_by : o.text);
        break;
      case event::Verdict::TempFail:
        all(o.code >= 400 && o.code < 500 ? o.code : 451, o.enhanced.empty() ? "4.7.1" : o.enhanced,
            o.text.empty() ? "delivery deferred by " + o.decided_by : o.text);
        break;
      case event::Verdict::Discard:
        log::info("queue", "qid={} dest={} discarded by plugin {}", job.msg->id, job.dest, o.decided_by);
        all(250, "2.0.0", "discarded by " + o.decided_by);
        for (auto& r : rs) r.remote = "discard";
        break;
      default:
        self->deliver(std::move(job));
        co_return;
    }
    const std::string key = job.dest;
    self->apply_results(job, rs, true);
    self->job_finished(key);
  }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  void deliver(Job job) {
    if (job.route.kind == RecipientRoute::Kind::Local) {
      deliver_local(std::move(job));
      return;
    }
    std::shared_ptr<delivery::Transport> t = hooks.transport ? hooks.transport(job.route) : nullptr;
    delivery::Attempt attempt = make_attempt(job);
    if (!t) {
      std::vector<delivery::RecipientResult> rs;
      for (const auto& r : attempt.recipients)
        rs.push_back(delivery::RecipientResult{r.address, 451, "4.3.0", "no transport for this route", "", false});
      const std::string key = job.dest;
      apply_results(job, rs, true);
      job_finished(key);
      return;
    }
    auto shared_job = std::make_shared<Job>(std::move(job));
    const delivery::NextHop hop = shared_job->route.hop;
    t->deliver(hop, std::move(attempt), [w = weak_from_this(), shared_job](delivery::AttemptResult result) {
      auto self = w.lock();
      if (!self) return;
      net::post(self->strand, [self, shared_job, result = std::move(result)]() mutable {
        const std::string key = shared_job->dest;
        self->apply_results(*shared_job, result.recipients, true);
        self->job_finished(key);
      });
    });
  }

  void deliver_local(Job job) {
    auto shared_job = std::make_shared<Job>(std::move(job));
    const std::string account = shared_job->route.address;
    const Msg& m = *shared_job->msg;
    net::post(workers, [self = shared_from_this(), shared_job, account, sender = m.env.mail_from,
                        content = m.content] {
      delivery::RecipientResult r;
      r.address = account;
      r.remote = "local";
      // RFC 5321 §4.4: the final delivery adds Return-Path, and one that came
      // with the message goes (the sender's claim, not the envelope); Delivered-To
      // (Postfix, qmail) also lets us see a forwarding loop back to this box.
      bool loop = false;
      std::string head_out;  // the header section without Return-Path fields
      std::string_view body;
      if (content) {
        const std::string_view text(*content);
        size_t end = text.starts_with("\r\n") ? 0 : text.find("\r\n\r\n");
        end = end == std::string_view::npos ? text.size() : (end == 0 ? 0 : end + 2);
        const std::string_view head = text.substr(0, end);
        body = text.substr(end);
        head_out.reserve(head.size());
        bool dropping = false;  // inside a Return-Path field, folded lines included
        size_t pos = 0;
        while (pos < head.size()) {
          size_t eol = head.find("\r\n", pos);
          const size_t next = eol == std::string_view::npos ? head.size() : eol + 2;
          std::string_view line = head.substr(pos, next - pos);
          pos = next;
          const bool folded = !line.empty() && (line.front() == ' ' || line.front() == '\t');
          if (!folded) {
            // The field name, allowing RFC 5322 §4.5.2's obsolete space before the colon.
            std::string_view name = line.substr(0, std::min(line.find(':'), line.size()));
            while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
            dropping = name.size() < line.size() && iequals(name, "return-path");
          }
          if (dropping) continue;
          head_out += line;
          if (!folded && line.size() > 13 && iequals(line.substr(0, 13), "delivered-to:")) {
            std::string_view v = line.substr(13);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
            while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r' || v.back() == '\n'))
              v.remove_suffix(1);
            if (iequals(v, account)) loop = true;
          }
        }
      }
      if (!content) {
        r.code = 451;
        r.enhanced = "4.3.0";
        r.text = "message content unavailable";
      } else if (loop) {
        r.code = 554;
        r.enhanced = "5.4.6";
        r.text = fmt::format("mail forwarding loop for {}", account);
      } else if (!self->hooks.deliver_local) {
        r.code = 451;
        r.enhanced = "4.3.0";
        r.text = "no mailbox store configured";
      } else {
        std::string full;
        full.reserve(content->size() + sender.size() + account.size() + 40);
        full += fmt::format("Return-Path: <{}>\r\nDelivered-To: {}\r\n", sender, account);
        full += head_out;
        full += body;
        try {
          r = self->hooks.deliver_local(account, full);
        } catch (const std::exception& e) {
          r.code = 451;
          r.enhanced = "4.3.0";
          r.text = fmt::format("mailbox store error: {}", e.what());
        }
        r.address = account;
        if (r.remote.empty()) r.remote = "local";
      }
      net::post(self->strand, [self, shared_job, r]() mutable {
        std::vector<delivery::RecipientResult> rs;
        for (size_t i : shared_job->units) {
          delivery::RecipientResult x = r;
          x.address = shared_job->msg->st.units[i].target;
          rs.push_back(std::move(x));
        }
        const std::string key = shared_job->dest;
        self->apply_results(*shared_job, rs, true);
        self->job_finished(key);
      });
    });
  }

  /** Records per-recipient results of a job; ends the round when it was the last job. */
  void apply_results(Job& job, const std::vector<delivery::RecipientResult>& rs, bool counted) {
    const MsgPtr& m = job.msg;
    if (counted && destination_failure(rs)) {
      Dest& d = dests[job.dest];
      d.suspended_until = now() + cfg.destination_backoff;
      d.suspend_result = rs.front();
      d.suspend_result.text = "delivery temporarily suspended: " + rs.front().text;
    }
    for (size_t i : job.units) {
      Unit& u = m->st.units[i];
      const delivery::RecipientResult* r = nullptr;
      for (const auto& x : rs)
        if (iequals(x.address, u.target)) r = &x;
      delivery::RecipientResult missing{u.target, 451, "4.3.0", "no result from the transport", "", false};
      if (!r) r = &missing;
      set_result(u, r->code, r->enhanced, r->text, r->remote);
      const std::string& rcpt = m->env.recipients[u.rcpt].address;
      if (r->delivered()) {
        u.status = (job.route.kind == RecipientRoute::Kind::Smtp && r->remote != "discard") ? UnitStatus::Relayed
                                                                                              : UnitStatus::Delivered;
        if (r->remote == "discard") u.status = UnitStatus::Dropped;
        // A DSN-capable peer took over NOTIFY (RFC 3461 §4.1): no "relayed" notice from us.
        if (u.status == UnitStatus::Relayed && r->dsn_passed) u.reported = true;
        ++st_delivered;
        log::info("queue", "qid={} from=<{}> to=<{}>{} relay={} status=sent ({} {} {})", m->id, m->env.mail_from,
                  u.target, iequals(u.target, rcpt) ? "" : fmt::format(" orig_to=<{}>", rcpt), r->remote, r->code,
                  r->enhanced, r->text);
        notify_event(m, u, event::Stage::Delivered);
      } else if (r->permanent()) {
        u.status = UnitStatus::Failed;
        ++st_bounced;
        log::info("queue", "qid={} from=<{}> to=<{}> relay={} status=bounced ({} {} {})", m->id, m->env.mail_from,
                  u.target, r->remote, r->code, r->enhanced, r->text);
        notify_event(m, u, event::Stage::Bounced);
      } else {
        ++st_deferred;
        log::info("queue", "qid={} from=<{}> to=<{}> relay={} status=deferred ({} {} {})", m->id, m->env.mail_from,
                  u.target, r->remote, r->code, r->enhanced, r->text);
        notify_event(m, u, event::Stage::Deferred);
      }
    }
    if (--m->outstanding == 0) finish_round(m);
  }

  void notify_event(const MsgPtr& m, const Unit& u, event::Stage stage) {
    if (!hooks.chains) return;
    event::ChainPtr chain = hooks.chains();
    if (!chain || chain->subscribers(stage).empty()) return;
    auto sd = stage_data(*m, {u.target}, fmt::format("{} {} {}", u.code, u.enhanced, u.text));
    // Observers run on the worker pool: a slow one never holds up the queue.
    net::post(workers, [chain = std::move(chain), sd, stage] { chain->notify(stage, sd->ev); });
  }

  // ------------------------------------------------------------ end of a round

  struct Notice {
    DsnRequest request;
    std::vector<size_t> units;  // marked reported once it is spooled
  };

  DsnRecipient dsn_recipient(const Msg& m, const Unit& u, std::string action) const {
    DsnRecipient r;
    r.final_recipient = u.target.empty() ? m.env.recipients[u.rcpt].address : u.target;
    r.orcpt = m.env.recipients[u.rcpt].orcpt;
    if (r.orcpt.empty() && !iequals(r.final_recipient, m.env.recipients[u.rcpt].address))
      r.orcpt = "rfc822;" + m.env.recipients[u.rcpt].address;
    r.action = std::move(action);
    r.status = u.enhanced;
    r.remote_mta = host_of(u.remote);
    if (u.code != 0) r.diagnostic = fmt::format("{} {} {}", u.code, u.enhanced, u.text);
    else if (!u.text.empty()) r.diagnostic = u.text;
    r.smtp_diagnostic = !u.remote.empty() && u.remote != "local" && !u.remote.starts_with("pipe:");
    r.last_attempt = m.st.last_attempt;
    r.will_retry_until = m.env.received_at + cfg.lifetime;
    return r;
  }

  DsnRequest base_request(const Msg& m, DsnKind kind, std::string to, std::string origin) {
    DsnRequest rq;
    rq.kind = kind;
    rq.original = &m.env;
    rq.original_message = m.content ? std::string_view(*m.content) : std::string_view{};
    rq.to = std::move(to);
    rq.reporting_mta = server_name;
    rq.queue_id = spool.new_queue_id();
    rq.now = now();
    rq.bounce_size_limit = cfg.bounce_size_limit;
    rq.full_return_limit = cfg.full_return_limit;
    rq.origin = std::move(origin);
    return rq;
  }

  void finish_round(const MsgPtr& m) {
    m->phase = Msg::Phase::Finishing;
    const TimePoint t = now();
    const TimePoint expiry = m->env.received_at + cfg.lifetime;
    bool pending = false;
    for (const Unit& u : m->st.units) pending = pending || !u.final();
    if (pending) {
      ++m->st.attempts;
      if (t >= expiry) {
        // RFC 3463 4.4.7: the queue lifetime ended; the last error explains why.
        for (Unit& u : m->st.units) {
          if (u.final()) continue;
          u.status = UnitStatus::Failed;
          u.text = fmt::format("delivery time expired{}{}", u.text.empty() ? "" : "; last error: ",
                               u.code ? fmt::format("{} {} {}", u.code, u.enhanced, u.text) : u.text);
          u.code = 0;
          u.enhanced = "4.4.7";
          ++st_bounced;
          log::info("queue", "qid={} to=<{}> status=expired after {} attempt(s)", m->id, u.target, m->st.attempts);
          notify_event(m, u, event::Stage::Bounced);
        }
        pending = false;
      } else {
        m->st.next_try = std::min(t + cfg.backoff(m->st.attempts), expiry);
      }
    }

    const bool null_sender = m->env.mail_from.empty();
    std::vector<Notice> notices;
    // Failures.
    {
      Notice n;
      bool any = false;
      for (size_t i = 0; i < m->st.units.size(); ++i) {
        Unit& u = m->st.units[i];
        if (u.status != UnitStatus::Failed || u.reported) continue;
        const bool wants = notify_wants(m->env.recipients[u.rcpt].notify, DsnKind::Failure);
        if (!wants || null_sender) {
          // No DSN wanted, or never bounce a bounce: a failed notification goes
          // to the postmaster once (double bounce); anything else with the null
          // sender is dropped with this log line.
          if (null_sender && wants && m->env.origin == "dsn") {
            if (!any) n.request = base_request(*m, DsnKind::Failure, postmaster, "double-bounce");
            n.request.recipients.push_back(dsn_recipient(*m, u, "failed"));
            n.units.push_back(i);
            any = true;
            continue;
          }
          if (null_sender)
            log::warn("queue", "qid={} to=<{}> null-sender message failed ({} {} {}); dropped, no bounce of a bounce",
                      m->id, u.target, u.code, u.enhanced, u.text);
          u.reported = true;
          continue;
        }
        if (!any) n.request = base_request(*m, DsnKind::Failure, m->env.mail_from, "dsn");
        n.request.recipients.push_back(dsn_recipient(*m, u, "failed"));
        n.units.push_back(i);
        any = true;
      }
      if (any) notices.push_back(std::move(n));
    }
    // Successes (NOTIFY=SUCCESS): "delivered" for mailboxes and programs;
    // "relayed" for an SMTP peer (RFC 3464 §2.3.3).
    {
      Notice n;
      bool any = false;
      for (size_t i = 0; i < m->st.units.size(); ++i) {
        Unit& u = m->st.units[i];
        if ((u.status != UnitStatus::Delivered && u.status != UnitStatus::Relayed) || u.reported) continue;
        u.reported = true;
        if (null_sender || !notify_wants(m->env.recipients[u.rcpt].notify, DsnKind::Success)) continue;
        if (!any) n.request = base_request(*m, DsnKind::Success, m->env.mail_from, "dsn");
        n.request.recipients.push_back(
            dsn_recipient(*m, u, u.status == UnitStatus::Relayed ? "relayed" : "delivered"));
        u.reported = false;
        n.units.push_back(i);
        any = true;
      }
      if (any) notices.push_back(std::move(n));
    }
    for (Unit& u : m->st.units)
      if (u.status == UnitStatus::Dropped) u.reported = true;
    // Delay warning, once (RFC 3461 §4.1 DELAY; absent NOTIFY includes it here).
    if (pending && !m->st.delay_warned && cfg.delay_warning.count() > 0 && t - m->env.received_at >= cfg.delay_warning) {
      m->st.delay_warned = true;
      Notice n;
      bool any = false;
      for (size_t i = 0; i < m->st.units.size(); ++i) {
        const Unit& u = m->st.units[i];
        if (u.final() || null_sender || !notify_wants(m->env.recipients[u.rcpt].notify, DsnKind::Delay)) continue;
        if (!any) n.request = base_request(*m, DsnKind::Delay, m->env.mail_from, "dsn");
        n.request.recipients.push_back(dsn_recipient(*m, u, "delayed"));
        any = true;
      }
      if (any) notices.push_back(std::move(n));
    }

    // File work on the pool: spool the notices, then write the state or remove the message.
    net::post(workers, [self = shared_from_this(), m, notices = std::move(notices)]() mutable {
      MessageState st = m->st;
      for (Notice& n : notices) {
        try {
          DsnMessage dsn = compose_dsn(n.request);
          self->spool.store(dsn.envelope, dsn.message);
          ++self->st_dsns;
          log::info("queue", "qid={} sender non-delivery notification: {} ({} recipient(s)) to=<{}>", m->id,
                    dsn.envelope.queue_id, n.request.recipients.size(), n.request.to);
          for (size_t i : n.units) st.units[i].reported = true;
        } catch (const std::exception& e) {
          // The units stay unreported: the next round tries the notice again.
          log::error("queue", "qid={} cannot spool a DSN: {}", m->id, e.what());
          if (n.request.kind == DsnKind::Delay) st.delay_warned = false;
        }
      }
      bool done = true;
      for (const Unit& u : st.units) done = done && u.final() && u.reported;
      const fs::path spool_file = self->incoming_dir() / m->id;
      const fs::path state = self->state_file(m->id);
      std::error_code ec;
      enum class Outcome { Removed, Kept, Gone } outcome = Outcome::Kept;
      bool exists = fs::exists(spool_file, ec);
      const bool held = !exists && fs::exists(hold_dir(self->spool.dir()) / m->id, ec);
      if (done && (exists || held)) {
        // Crash rule: the spool file goes first; a state file without its
        // message is removed at the next start.
        fs::remove(exists ? spool_file : hold_dir(self->spool.dir()) / m->id, ec);
        fs::remove(state, ec);
        ++self->st_removed;
        outcome = Outcome::Removed;
      } else if (!exists && !held) {
        fs::remove(state, ec);  // deleted by posternctl meanwhile
        outcome = Outcome::Gone;
      } else {
        try {
          write_state_file(state, st);
        } catch (const std::exception& e) {
          log::error("queue", "qid={} cannot write its state: {}", m->id, e.what());
        }
        if (held) outcome = Outcome::Gone;
      }
      if (outcome == Outcome::Removed) log::info("queue", "qid={} removed", m->id);
      net::post(self->strand, [self, m, st = std::move(st), outcome]() mutable {
        m->st = std::move(st);
        --self->active_msgs;
        self->release_content(*m);
        if (outcome != Outcome::Kept) {
          self->forget(m);
        } else {
          m->phase = Msg::Phase::Waiting;
          self->schedule(m, m->st.next_try);
        }
        self->pump();
        self->arm_timer();
      });
    });
  }

  // ------------------------------------------------------------ requests

  void rescan() {
    net::post(workers, [self = shared_from_this()] {
      std::set<std::string> ids;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(self->incoming_dir(), ec)) ids.insert(e.path().filename().string());
      net::post(self->strand, [self, ids = std::move(ids)] {
        // Gone (held or deleted): forget them unless a round is running (it notices itself).
        std::vector<MsgPtr> gone;
        for (auto& [id, m] : self->msgs)
          if (!ids.count(id) && (m->phase == Msg::Phase::Waiting || m->phase == Msg::Phase::Due)) gone.push_back(m);
        for (auto& m : gone) {
          log::info("queue", "qid={} left incoming/ (held or deleted)", m->id);
          m->phase = Msg::Phase::Finishing;  // a stale entry in `due` is skipped
          self->forget(m);
        }
        std::vector<std::string> fresh;
        for (const auto& id : ids)
          if (!self->msgs.count(id)) fresh.push_back(id);
        if (fresh.empty()) return;
        net::post(self->workers, [self, fresh = std::move(fresh)] {
          std::vector<MsgPtr> found;
          for (const auto& id : fresh)
            if (auto m = self->load_entry(id)) found.push_back(std::move(m));
          net::post(self->strand, [self, found = std::move(found)]() mutable {
            for (auto& m : found) {
              log::info("queue", "qid={} entered incoming/", m->id);
              self->add(std::move(m));
            }
            self->pump();
            self->arm_timer();
          });
        });
      });
    });
  }

  void process_requests() {
    net::post(workers, [self = shared_from_this()] {
      const fs::path dir = requests_dir(self->spool.dir());
      std::vector<std::string> names;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        names.push_back(e.path().filename().string());
        fs::remove(e.path(), ec);
      }
      net::post(self->strand, [self, names = std::move(names)] {
        bool all = names.empty(), scan = false;
        std::vector<std::string> ids;
        for (const auto& n : names) {
          if (n == "flush-all") all = true;
          else if (n == "rescan") scan = true;
          else if (n.starts_with("flush-")) ids.push_back(n.substr(6));
        }
        if (scan || all) self->rescan();
        if (all) {
          self->do_flush();
          return;
        }
        for (const auto& id : ids) {
          auto it = self->msgs.find(id);
          if (it == self->msgs.end() || it->second->phase != Msg::Phase::Waiting) continue;
          log::info("queue", "qid={} flushed", id);
          self->unschedule(it->second);
          it->second->phase = Msg::Phase::Due;
          for (auto& d : self->dests) d.second.suspended_until = {};
          self->due.push_back(it->second);
        }
        self->pump();
        self->arm_timer();
      });
    });
  }

  void wait_signal() {
    signals->async_wait([w = weak_from_this()](boost::system::error_code ec, int) {
      if (ec) return;
      auto self = w.lock();
      if (!self) return;
      log::info("queue", "SIGUSR1: processing queue requests");
      self->process_requests();
      self->wait_signal();
    });
  }
};

QueueManager::QueueManager(QueueConfig cfg, Spool& spool, net::io_context& io, net::thread_pool& workers,
                           std::string server_name, std::string local_domain, QueueHooks hooks)
    : impl_(std::make_shared<Impl>(std::move(cfg), spool, io, workers, std::move(server_name),
                                   std::move(local_domain), std::move(hooks))) {}

QueueManager::~QueueManager() {
  impl_->spool.set_commit_listener(nullptr);
  net::post(impl_->strand, [impl = impl_] {
    impl->timer.cancel();
    if (impl->signals) impl->signals->cancel();
  });
}

void QueueManager::start(bool signals) {
  std::weak_ptr<Impl> w = impl_;
  impl_->spool.set_commit_listener([w](const Envelope& env, std::string_view message) {
    if (auto self = w.lock()) self->on_commit(env, message);
  });
  impl_->scan_blocking();
  if (!impl_->cfg.deliver) log::warn("queue", "deliveries are off (<queue deliver=\"false\">): messages are kept, none is sent");
  if (signals) {
    impl_->signals = std::make_unique<net::signal_set>(impl_->strand, SIGUSR1);
    impl_->wait_signal();
  }
}

void QueueManager::flush() {
  net::post(impl_->strand, [impl = impl_] { impl->do_flush(); });
}

void QueueManager::wake() {
  net::post(impl_->strand, [impl = impl_] { impl->on_wake(); });
}

void QueueManager::process_requests() { impl_->process_requests(); }

QueueManager::Stats QueueManager::stats() const {
  Stats s;
  s.messages = impl_->st_messages;
  s.active = impl_->st_active;
  s.attempts = impl_->st_attempts;
  s.delivered = impl_->st_delivered;
  s.deferred = impl_->st_deferred;
  s.bounced = impl_->st_bounced;
  s.dropped = impl_->st_dropped;
  s.dsns = impl_->st_dsns;
  s.removed = impl_->st_removed;
  s.running = impl_->st_running;
  return s;
}

}  // namespace postern::core::queue
