#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

/**
 * The login throttle of the mail library (Postern::mail): failed logins counted per client
 * address and per login name, shared by all sessions of a service (SMTP AUTH, IMAP, POP3),
 * turned into a delay before the failure is answered and, past a threshold, a lockout.
 * No I/O and no timers: the caller passes the time, waits the delay itself and asks
 * whether an address or a login is locked before it checks a password.
 */
namespace postern::mail {

/**
 * A moment for the throttle, taken from any std::chrono clock (steady_clock in core,
 * the host's clock in plugins, a manual clock in tests). Only differences matter, so one
 * throttle must be fed from one clock.
 */
class ThrottleTime {
 public:
  ThrottleTime() = default;
  /** Implicit on purpose: `throttle.failure(ip, login, n, clock.now())`. */
  template <class Clock, class Duration>
  ThrottleTime(std::chrono::time_point<Clock, Duration> t)  // NOLINT(google-explicit-constructor)
      : since_epoch_(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch())) {}
  /** @return milliseconds since the clock's epoch. */
  std::chrono::milliseconds since_epoch() const { return since_epoch_; }
  auto operator<=>(const ThrottleTime&) const = default;

 private:
  std::chrono::milliseconds since_epoch_{0};
};

/**
 * The monotonic time the services (IMAP, POP3) feed their LoginThrottle with:
 * std::chrono::steady_clock, so that a step of the system clock neither ends nor stretches
 * a lockout. THREADING: any thread.
 */
std::chrono::steady_clock::time_point throttle_clock_now();

/**
 * Replaces the clock behind throttle_clock_now() (tests: a manual clock that follows a
 * FakeHost); an empty function restores steady_clock. OWNERSHIP: the function is copied.
 * LIFETIME: until the next call. THREADING: any thread (guarded by a mutex).
 */
void set_throttle_clock(std::function<std::chrono::steady_clock::time_point()> now);

/** The throttle's policy. Durations of zero switch the matching part off. */
struct ThrottleSettings {
  /** Delay before answering the first failure; doubled per further failure. 0: no delays. */
  std::chrono::milliseconds delay{1000};
  /** The largest delay. */
  std::chrono::milliseconds delay_max{std::chrono::seconds(15)};
  /**
   * A key's failures are forgotten after this long without another failure (a quiet
   * window, not a fixed one: a slow guesser keeps its count).
   */
  std::chrono::milliseconds window{std::chrono::minutes(10)};
  /** Failures of one client address within the window that lock it out; 0: never. */
  uint32_t ip_lockout_failures = 0;
  /**
   * Failures on one login name within the window that lock the name out; 0: never. A
   * lockout by name refuses the right password too, so anyone can lock a known account:
   * keep it well above ip_lockout_failures, or off.
   */
  uint32_t login_lockout_failures = 0;
  /** How long a lockout lasts. */
  std::chrono::milliseconds lockout_time{std::chrono::minutes(10)};
  /**
   * IPv6 clients are counted per block of this many prefix bits (one customer holds a
   * /64, so counting single addresses would give a guesser 2^64 fresh counters). 128:
   * per address. IPv4 addresses are always counted one by one.
   */
  unsigned ipv6_prefix = 64;
  /** Entries remembered per table (addresses, logins); the least recent go beyond it. */
  size_t max_entries = 100'000;
};

/** What a failure did. */
struct ThrottleFailure {
  /** Wait this long before answering the failure (the input of the session stays paused). */
  std::chrono::milliseconds delay{0};
  /** Failures of the address within the window, this one included (0 after a lockout began). */
  uint32_t ip_failures = 0;
  /** Failures of the login name within the window, this one included (0: no name given). */
  uint32_t login_failures = 0;
  /** This failure locked the address out. */
  bool ip_locked = false;
  /** This failure locked the login name out. */
  bool login_locked = false;
};

/**
 * Failed logins per client address and per login name. Thread-safe (one mutex; every
 * call is O(1) on average, an eviction O(max_entries) at most once per max_entries / 4
 * insertions). Memory is bounded by 2 * max_entries entries whatever the clients do.
 */
class LoginThrottle {
 public:
  explicit LoginThrottle(ThrottleSettings settings = {});

  /** Replaces the policy (a configuration reload); counts already kept stay. */
  void set_settings(const ThrottleSettings& settings);
  /** @return the policy in force. */
  ThrottleSettings settings() const;

  /**
   * Records a failed login and says how long to wait before answering it:
   * delay * 2^(n-1), capped at delay_max, where n is the largest of the session's, the
   * address's and the login's failure counts. Reaching a lockout threshold locks the key
   * for lockout_time and starts its count again.
   * @param ip the client address as text ("192.0.2.7", "2001:db8::7"); an unparsable
   *        string is counted as it is.
   * @param login the login name the client tried, empty when none (a malformed exchange);
   *        compared ASCII case-insensitively.
   * @param session_failures failures on this connection, this one included.
   * @param now the current time.
   */
  ThrottleFailure failure(std::string_view ip, std::string_view login, uint32_t session_failures, ThrottleTime now);

  /**
   * Records a successful login: the login name's failures are forgotten (the address's
   * are kept, or a guesser holding one account could wipe its count between guesses).
   */
  void success(std::string_view login, ThrottleTime now);

  /**
   * The penalty the address still owes for its earlier failures (like Dovecot's auth
   * penalty): delay_for(its failures) counted from its last failure, minus the time since.
   * Callers wait it out, on a timer, before they check the next password of that address,
   * so a client that drops the connection instead of waiting for the failure reply and
   * guesses again on another connection gains nothing.
   * @return zero when nothing is owed.
   */
  std::chrono::milliseconds penalty(std::string_view ip, ThrottleTime now) const;

  /** @return true while the address is locked out (SMTP 454 4.7.0 before the exchange). */
  bool ip_locked(std::string_view ip, ThrottleTime now) const;
  /** @return true while the login name is locked out (checked before hashing a password). */
  bool login_locked(std::string_view login, ThrottleTime now) const;

  /** @return the address's failures within the window (0 when forgotten or locked). */
  uint32_t ip_failures(std::string_view ip, ThrottleTime now) const;
  /** @return the login name's failures within the window. */
  uint32_t login_failures(std::string_view login, ThrottleTime now) const;

  /** @return entries held (addresses plus login names); at most 2 * max_entries. */
  size_t size() const;
  /**
   * @return the bytes of the keys held; at most kMaxKeyBytes per entry whatever the
   * login names the clients try (long names are kept as a prefix and a hash).
   */
  size_t key_bytes() const;

  /** The largest key kept for a login name or an address, in bytes. */
  static constexpr size_t kMaxKeyBytes = 96;
  /** The largest duration a setting may hold (longer ones are clamped): 366 days. */
  static constexpr std::chrono::milliseconds kMaxDuration{366LL * 24 * 3600 * 1000};
  /** @return `d` limited to [0, kMaxDuration] (for configuration readers). */
  static std::chrono::milliseconds clamp_duration(std::chrono::milliseconds d);

  /**
   * @return base * 2^(failures-1), capped at `cap`; 0 for no failures or a zero base.
   * Never overflows, whatever the arguments.
   */
  static std::chrono::milliseconds delay_for(uint32_t failures, std::chrono::milliseconds base,
                                             std::chrono::milliseconds cap);

 private:
  struct Entry {
    uint32_t failures = 0;
    std::chrono::milliseconds last{0};          // of the last failure
    std::chrono::milliseconds locked_until{0};  // 0: not locked
  };
  using Table = std::unordered_map<std::string, Entry>;

  std::string ip_key(std::string_view ip) const;
  static std::string login_key(std::string_view login);
  /** Counts a failure on `key`; @return the entry after it. */
  Entry& count(Table& table, const std::string& key, uint32_t lockout_failures, std::chrono::milliseconds now,
               bool& locked_now);
  void evict(Table& table, std::chrono::milliseconds now);
  bool is_locked(const Table& table, const std::string& key, std::chrono::milliseconds now) const;
  uint32_t failures_of(const Table& table, const std::string& key, std::chrono::milliseconds now) const;

  mutable std::mutex mu_;
  ThrottleSettings settings_;
  Table by_ip_;
  Table by_login_;
};

}  // namespace postern::mail
