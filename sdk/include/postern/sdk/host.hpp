#pragma once
/**
 * @file host.hpp
 * The host's services as a plugin sees them: configuration, logging, clock,
 * state directory, worker pool, timers and asynchronous DNS.
 */

#include <postern/sdk/types.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::sdk {

/** A read-only view of one element of the plugin's manifest configuration. */
class Config {
 public:
  Config(const postern_host_api_v1_t* api, const postern_config_node_t* node) : api_(api), node_(node) {}

  bool valid() const { return node_ != nullptr; }
  explicit operator bool() const { return valid(); }
  std::string_view name() const { return valid() ? to_string_view(api_->config_name(node_)) : std::string_view{}; }
  std::string_view text() const { return valid() ? to_string_view(api_->config_text(node_)) : std::string_view{}; }
  uint32_t line() const { return valid() ? api_->config_line(node_) : 0; }

  /** The attribute's value, if present. */
  std::optional<std::string_view> attr(std::string_view name) const {
    postern_str_t out{};
    if (!valid() || api_->config_attr(node_, to_abi(name), &out) != POSTERN_OK) return std::nullopt;
    return to_string_view(out);
  }
  std::string attr_or(std::string_view name, std::string_view fallback) const {
    return std::string(attr(name).value_or(fallback));
  }
  /** Integer attribute; nullopt when absent or not a number. */
  std::optional<int64_t> integer(std::string_view name) const {
    auto v = attr(name);
    if (!v || v->empty()) return std::nullopt;
    int64_t out = 0;
    bool neg = false;
    size_t i = 0;
    if ((*v)[0] == '-') {
      neg = true;
      i = 1;
    }
    if (i == v->size()) return std::nullopt;
    for (; i < v->size(); ++i) {
      char c = (*v)[i];
      if (c < '0' || c > '9') return std::nullopt;
      out = out * 10 + (c - '0');
    }
    return neg ? -out : out;
  }
  /** Boolean attribute: true/yes/on/1 or false/no/off/0. */
  std::optional<bool> boolean(std::string_view name) const {
    auto v = attr(name);
    if (!v) return std::nullopt;
    if (*v == "true" || *v == "yes" || *v == "on" || *v == "1") return true;
    if (*v == "false" || *v == "no" || *v == "off" || *v == "0") return false;
    return std::nullopt;
  }
  /** Duration attribute: "250ms", "5s", "2m", "1h", "3d" or bare seconds. */
  std::optional<std::chrono::milliseconds> duration(std::string_view name) const {
    auto v = attr(name);
    if (!v || v->empty()) return std::nullopt;
    size_t digits = 0;
    uint64_t n = 0;
    while (digits < v->size() && (*v)[digits] >= '0' && (*v)[digits] <= '9') {
      n = n * 10 + static_cast<uint64_t>((*v)[digits] - '0');
      ++digits;
    }
    if (digits == 0) return std::nullopt;
    std::string_view unit = v->substr(digits);
    using std::chrono::milliseconds;
    if (unit == "ms") return milliseconds(n);
    if (unit.empty() || unit == "s") return milliseconds(n * 1000);
    if (unit == "m") return milliseconds(n * 60'000);
    if (unit == "h") return milliseconds(n * 3'600'000);
    if (unit == "d") return milliseconds(n * 86'400'000);
    return std::nullopt;
  }

  /** First child element (by name, or any when empty). */
  Config child(std::string_view name = {}) const {
    return Config(api_, valid() ? api_->config_child(node_, to_abi(name)) : nullptr);
  }
  /** All child elements with that name (or all, when empty). */
  std::vector<Config> children(std::string_view name = {}) const {
    std::vector<Config> out;
    for (auto* n = valid() ? api_->config_child(node_, to_abi(name)) : nullptr; n != nullptr;
         n = api_->config_next(n, to_abi(name))) {
      out.emplace_back(api_, n);
    }
    return out;
  }

 private:
  const postern_host_api_v1_t* api_;
  const postern_config_node_t* node_;
};

/** One DNS record (see postern_dns_record_t for the text forms). */
struct DnsRecord {
  postern_dns_type_t type;
  uint32_t ttl;
  std::string data;
};

/** An owned copy of a DNS answer. */
struct DnsAnswer {
  postern_dns_status_t status = POSTERN_DNS_SERVFAIL;
  std::string name;
  postern_dns_type_t type = POSTERN_DNS_A;
  uint32_t min_ttl = 0;
  std::vector<DnsRecord> records;
  bool has_records() const { return status == POSTERN_DNS_OK && !records.empty(); }
};

/**
 * One committed change in the mailbox store (ABI 1.3, postern_mbox_event_t),
 * owned: safe to keep and to pass to another thread.
 */
struct MailboxEvent {
  postern_mbox_event_kind_t kind = POSTERN_MBOX_EVENT_STORED;
  std::string account;        ///< canonical local@domain
  std::string folder;         ///< copied/moved: the source
  std::string target_folder;  ///< copied/moved: the target; else empty
  std::string actor;          ///< "delivery", "imap", "pop3", "admin", "system" or a plugin's name
  uint32_t uidvalidity = 0;
  uint32_t target_uidvalidity = 0;
  std::vector<uint32_t> uids;         ///< stored: the new UID; copied/moved: sources; expunged; flags: changed
  std::vector<uint32_t> target_uids;  ///< copied/moved: the new UIDs, parallel to `uids`
  uint64_t size = 0;                  ///< stored/copied/moved: octets

  /** Whether the event concerns `name` of `acct` (as its folder or its target). */
  bool touches(std::string_view acct, std::string_view name) const {
    return account == acct && (folder == name || target_folder == name);
  }

  static MailboxEvent copy(const postern_mbox_event_t& e) {
    MailboxEvent out;
    out.kind = static_cast<postern_mbox_event_kind_t>(e.kind);
    out.account = std::string(to_string_view(e.account));
    out.folder = std::string(to_string_view(e.folder));
    out.target_folder = std::string(to_string_view(e.target_folder));
    out.actor = std::string(to_string_view(e.actor));
    out.uidvalidity = e.uidvalidity;
    out.target_uidvalidity = e.target_uidvalidity;
    if (e.uids != nullptr) out.uids.assign(e.uids, e.uids + e.uid_count);
    if (e.target_uids != nullptr) out.target_uids.assign(e.target_uids, e.target_uids + e.uid_count);
    out.size = e.size;
    return out;
  }
};

namespace detail {

/**
 * The callbacks of a plugin instance's mailbox-event subscriptions; like
 * CronStore, freed only when the instance is destroyed (the host waited for
 * every running call by then).
 */
class MailboxEventStore {
 public:
  using Fn = std::function<void(const MailboxEvent&)>;
  Fn* add(postern_host_t* host, Fn fn) {
    std::lock_guard lock(mutex_);
    auto& subs = subs_[host];
    subs.push_back(std::make_unique<Fn>(std::move(fn)));
    return subs.back().get();
  }
  void release(postern_host_t* host) {
    std::lock_guard lock(mutex_);
    subs_.erase(host);
  }

 private:
  std::mutex mutex_;
  std::map<postern_host_t*, std::vector<std::unique_ptr<Fn>>> subs_;
};

inline MailboxEventStore& mailbox_event_store() {
  static MailboxEventStore store;
  return store;
}

/**
 * The callbacks of a plugin instance's cron jobs. The host may still be
 * running a job when cron_cancel returns, so a callback is freed only when
 * the instance is destroyed (the host has waited for every run by then).
 */
class CronStore {
 public:
  struct Job {
    std::function<void()> fn;
  };
  Job* add(postern_host_t* host, std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    auto& jobs = jobs_[host];
    jobs.push_back(std::make_unique<Job>(Job{std::move(fn)}));
    return jobs.back().get();
  }
  /** Frees every callback of `host` (from on_destroy). */
  void release(postern_host_t* host) {
    std::lock_guard lock(mutex_);
    jobs_.erase(host);
  }

 private:
  std::mutex mutex_;
  std::map<postern_host_t*, std::vector<std::unique_ptr<Job>>> jobs_;
};

inline CronStore& cron_store() {
  static CronStore store;
  return store;
}

}  // namespace detail

/**
 * The host as seen from a plugin instance. Cheap to copy; valid from init
 * until the plugin is destroyed. Thread-safe unless a method says otherwise.
 */
class Host {
 public:
  Host(postern_host_t* host, const postern_host_api_v1_t* api) : host_(host), api_(api) {}

  postern_host_t* handle() const { return host_; }
  const postern_host_api_v1_t* api() const { return api_; }

  void log(LogLevel level, std::string_view message) const {
    api_->log(host_, static_cast<uint32_t>(level), to_abi(message));
  }
  void debug(std::string_view m) const { log(LogLevel::Debug, m); }
  void info(std::string_view m) const { log(LogLevel::Info, m); }
  void warn(std::string_view m) const { log(LogLevel::Warn, m); }
  void error(std::string_view m) const { log(LogLevel::Error, m); }

  /** The plugin's private state directory (exists). */
  std::filesystem::path state_dir() const { return std::string(to_string_view(api_->state_dir(host_))); }

  /** The host's clock (manual in FakeHost). */
  std::chrono::system_clock::time_point now() const {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(api_->now_ms(host_)));
  }

  /** Runs `fn` once on the worker pool (blocking work goes here, never in a hook). */
  void post_work(std::function<void()> fn) const {
    auto* heap = new std::function<void()>(std::move(fn));
    if (api_->post_work(host_, &Host::run_and_delete, heap) != POSTERN_OK) delete heap;
  }

  /** Identifies a timer for cancel(); 0 means none. */
  using TimerId = uint64_t;

  /** Runs `fn` once after `delay` on an I/O thread, unless cancelled or unloaded first. */
  TimerId after(std::chrono::milliseconds delay, std::function<void()> fn) const {
    auto* heap = new std::function<void()>(std::move(fn));
    const TimerId id =
        api_->timer_start(host_, static_cast<uint64_t>(delay.count()), &Host::timer_trampoline, heap);
    if (id == 0) delete heap;
    return id;
  }
  /** Cancels a timer started with after(); harmless when it already ran. */
  void cancel(TimerId id) const {
    if (id != 0) api_->timer_cancel(host_, id);
  }

  /** Identifies a cron job for cron_cancel(); 0 means none. */
  using CronId = uint64_t;

  /** Whether the host offers cron jobs (ABI 1.1 and a scheduler). */
  bool has_cron() const { return POSTERN_SDK_API_HAS(api_, cron_add); }

  /**
   * Runs `fn` on a worker thread each time the cron expression matches
   * ("0 3 * * *", "*\/10 * * * *"; docs/scheduler.md); never twice at once. The host
   * removes the job before the plugin is destroyed.
   * @return the id, or 0 for a bad expression, a host without a scheduler,
   *   or a 1.0 host (the reason is in the host's log).
   */
  CronId cron_add(std::string_view name, std::string_view cron_expr, std::function<void()> fn) const {
    if (!has_cron()) return 0;
    detail::CronStore::Job* job = detail::cron_store().add(host_, std::move(fn));
    return api_->cron_add(host_, to_abi(name), to_abi(cron_expr), &Host::cron_trampoline, job);
  }
  /** Removes a job; a run in progress finishes. Harmless for 0 or a stale id. */
  void cron_cancel(CronId id) const {
    if (id != 0 && POSTERN_SDK_API_HAS(api_, cron_cancel)) api_->cron_cancel(host_, id);
  }

  /** Identifies a mailbox-event subscription; 0 means none. */
  using SubscriptionId = uint64_t;

  /** Whether the host raises mailbox events (ABI 1.3). */
  bool has_mailbox_events() const { return POSTERN_SDK_API_HAS(api_, mbox_events_subscribe); }

  /**
   * Subscribes to the mailbox store's events whose kind is in `mask`
   * (POSTERN_MBOX_MASK_*): `fn` runs on a worker thread after each committed
   * change, one event at a time in the store's order. Keep it short: post
   * slow work (Host::post_work, Stream::post). The callback lives until the
   * plugin is destroyed.
   * @return the id, or 0 for a 1.2 host, a host without a store, or an empty mask.
   */
  SubscriptionId on_mailbox_events(uint32_t mask, std::function<void(const MailboxEvent&)> fn) const {
    if (!has_mailbox_events()) return 0;
    auto* stored = detail::mailbox_event_store().add(host_, std::move(fn));
    return api_->mbox_events_subscribe(host_, mask, &Host::mailbox_event_trampoline, stored);
  }
  /** Ends a subscription; no call starts after it returns. Harmless for 0. */
  void cancel_mailbox_events(SubscriptionId id) const {
    if (id != 0 && has_mailbox_events()) api_->mbox_events_unsubscribe(host_, id);
  }

  /**
   * Asynchronous DNS query; `cb` runs exactly once on an I/O thread, with
   * POSTERN_DNS_TIMEOUT after `timeout` (0 = host default).
   */
  void dns_query(std::string_view name, postern_dns_type_t type, std::chrono::milliseconds timeout,
                 std::function<void(const DnsAnswer&)> cb) const {
    auto* heap = new std::function<void(const DnsAnswer&)>(std::move(cb));
    if (api_->dns_query(host_, to_abi(name), type, static_cast<uint32_t>(timeout.count()), &Host::dns_trampoline,
                        heap) != POSTERN_OK) {
      DnsAnswer failed;
      failed.name = std::string(name);
      failed.type = type;
      (*heap)(failed);
      delete heap;
    }
  }

  /** Converts an ABI answer into an owned one. */
  static DnsAnswer copy_answer(const postern_dns_answer_t& a) {
    DnsAnswer out;
    out.status = static_cast<postern_dns_status_t>(a.status);
    out.name = std::string(to_string_view(a.name));
    out.type = static_cast<postern_dns_type_t>(a.type);
    out.min_ttl = a.min_ttl;
    for (size_t i = 0; i < a.record_count; ++i) {
      out.records.push_back(DnsRecord{static_cast<postern_dns_type_t>(a.records[i].type), a.records[i].ttl,
                                      std::string(to_string_view(a.records[i].data))});
    }
    return out;
  }

 private:
  static void run_and_delete(void* user) {
    std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(user));
    try {
      (*fn)();
    } catch (...) {
      // A task has nobody to report to; swallowing keeps the host alive.
    }
  }
  static void timer_trampoline(void* user, uint32_t fired) {
    std::unique_ptr<std::function<void()>> fn(static_cast<std::function<void()>*>(user));
    if (fired == 0) return;  // cancelled or unloaded: only free the callback
    try {
      (*fn)();
    } catch (...) {
    }
  }
  static void cron_trampoline(void* user) {
    try {
      static_cast<detail::CronStore::Job*>(user)->fn();
    } catch (...) {
      // A job has nobody to report to; swallowing keeps the host alive.
    }
  }
  static void mailbox_event_trampoline(void* user, const postern_mbox_event_t* event) {
    if (event == nullptr) return;
    try {
      (*static_cast<detail::MailboxEventStore::Fn*>(user))(MailboxEvent::copy(*event));
    } catch (...) {
      // An event has nobody to report to; swallowing keeps the host alive.
    }
  }
  static void dns_trampoline(void* user, const postern_dns_answer_t* answer) {
    std::unique_ptr<std::function<void(const DnsAnswer&)>> fn(
        static_cast<std::function<void(const DnsAnswer&)>*>(user));
    try {
      (*fn)(copy_answer(*answer));
    } catch (...) {
    }
  }

  postern_host_t* host_;
  const postern_host_api_v1_t* api_;
};

}  // namespace postern::sdk
