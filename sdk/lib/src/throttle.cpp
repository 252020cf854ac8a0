#include "postern/mail/throttle.hpp"

#include "postern/mail/ascii.hpp"
#include "postern/mail/ip.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <utility>
#include <vector>

namespace postern::mail {
namespace {

using std::chrono::milliseconds;

// Counts are capped so that a patient flood cannot wrap them.
constexpr uint32_t kMaxCount = 1'000'000;

// a + b for durations within [0, kMaxDuration] and times since any epoch: saturates
// instead of overflowing.
milliseconds add_sat(milliseconds a, milliseconds b) {
  using rep = milliseconds::rep;
  const rep x = a.count(), y = b.count();
  if (y > 0 && x > std::numeric_limits<rep>::max() - y) return milliseconds::max();
  if (y < 0 && x < std::numeric_limits<rep>::min() - y) return milliseconds::min();
  return milliseconds(x + y);
}

// FNV-1a, 64 bits: tells apart long login names that share a prefix.
uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// A key of at most LoginThrottle::kMaxKeyBytes: the text itself when short enough, else a
// prefix, "\0#" and the hash of the whole text (the NUL keeps it apart from short keys).
std::string bounded_key(std::string text) {
  if (text.size() <= LoginThrottle::kMaxKeyBytes) return text;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(text)));
  text.resize(LoginThrottle::kMaxKeyBytes - 18);
  text += '\0';
  text += '#';
  text += hex;
  return text;
}

ThrottleSettings clamped(ThrottleSettings s) {
  s.delay = LoginThrottle::clamp_duration(s.delay);
  s.delay_max = LoginThrottle::clamp_duration(s.delay_max);
  s.window = LoginThrottle::clamp_duration(s.window);
  s.lockout_time = LoginThrottle::clamp_duration(s.lockout_time);
  return s;
}

std::mutex clock_mu;
std::function<std::chrono::steady_clock::time_point()>& clock_fn() {
  static std::function<std::chrono::steady_clock::time_point()> fn;
  return fn;
}

}  // namespace

std::chrono::steady_clock::time_point throttle_clock_now() {
  {
    std::lock_guard lock(clock_mu);
    if (clock_fn()) return clock_fn()();
  }
  return std::chrono::steady_clock::now();
}

void set_throttle_clock(std::function<std::chrono::steady_clock::time_point()> now) {
  std::lock_guard lock(clock_mu);
  clock_fn() = std::move(now);
}

LoginThrottle::LoginThrottle(ThrottleSettings settings) : settings_(clamped(settings)) {}

void LoginThrottle::set_settings(const ThrottleSettings& settings) {
  std::lock_guard lock(mu_);
  settings_ = clamped(settings);
}

milliseconds LoginThrottle::clamp_duration(milliseconds d) { return std::clamp(d, milliseconds(0), kMaxDuration); }

ThrottleSettings LoginThrottle::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

milliseconds LoginThrottle::delay_for(uint32_t failures, milliseconds base, milliseconds cap) {
  if (failures == 0 || base.count() <= 0) return milliseconds(0);
  milliseconds delay = base;
  for (uint32_t i = 1; i < failures && delay < cap; ++i) {
    if (delay > cap / 2) return cap;  // doubling would pass the cap (or overflow)
    delay *= 2;
  }
  return std::min(delay, cap);
}

std::string LoginThrottle::ip_key(std::string_view ip) const {
  const std::optional<IpAddress> address = IpAddress::parse(ip);
  if (!address) return bounded_key(std::string(ip));
  if (address->is_v4() || settings_.ipv6_prefix >= 128) return address->to_string();
  return IpRange::block(*address, settings_.ipv6_prefix).first.to_string() + "/" +
         std::to_string(settings_.ipv6_prefix);
}

std::string LoginThrottle::login_key(std::string_view login) { return bounded_key(to_lower(login)); }

void LoginThrottle::evict(Table& table, milliseconds now) {
  const size_t max = std::max<size_t>(settings_.max_entries, 1);
  const milliseconds window = settings_.window;
  auto expires = [window](const Entry& e) { return std::max(add_sat(e.last, window), e.locked_until); };
  std::erase_if(table, [&](const auto& kv) { return expires(kv.second) <= now; });
  // Still crowded with live entries (a flood from many addresses): drop those that would
  // expire first until half the room is free, so the next eviction is max / 4 insertions
  // away at least and the cost per insertion stays constant. Entries not locked go first
  // (a lockout is what a flood would like to wipe; SMTP's lockout lasts as long as its
  // window, so expiry alone would drop the locked entries first); locked ones only when
  // nothing else is left.
  if (table.size() < max - max / 4) return;
  const size_t keep = max / 2;
  if (keep == 0) {
    table.clear();
    return;
  }
  using Rank = std::pair<bool, milliseconds>;  // (locked, expiry): the smallest go first
  auto rank = [&](const Entry& e) { return Rank{e.locked_until > now, expires(e)}; };
  std::vector<Rank> ranks;
  ranks.reserve(table.size());
  for (const auto& kv : table) ranks.push_back(rank(kv.second));
  const auto cut = ranks.begin() + static_cast<std::ptrdiff_t>(ranks.size() - keep);
  std::nth_element(ranks.begin(), cut, ranks.end());
  const Rank cutoff = *cut;
  std::erase_if(table, [&](const auto& kv) { return rank(kv.second) < cutoff; });
  // Ties at the cutoff can leave more than `keep`; drop some of them too.
  for (auto it = table.begin(); table.size() > keep && it != table.end();) {
    it = rank(it->second) == cutoff ? table.erase(it) : std::next(it);
  }
}

LoginThrottle::Entry& LoginThrottle::count(Table& table, const std::string& key, uint32_t lockout_failures,
                                           milliseconds now, bool& locked_now) {
  auto it = table.find(key);
  if (it == table.end()) {
    if (table.size() >= std::max<size_t>(settings_.max_entries, 1)) evict(table, now);
    it = table.emplace(key, Entry{}).first;
  } else if (now - it->second.last > settings_.window) {
    it->second.failures = 0;
  }
  Entry& e = it->second;
  e.failures = std::min(e.failures + 1, kMaxCount);
  e.last = now;
  locked_now = false;
  if (lockout_failures > 0 && e.failures >= lockout_failures && settings_.lockout_time.count() > 0) {
    e.locked_until = add_sat(now, settings_.lockout_time);
    locked_now = true;
  }
  return e;
}

ThrottleFailure LoginThrottle::failure(std::string_view ip, std::string_view login, uint32_t session_failures,
                                       ThrottleTime now_time) {
  const milliseconds now = now_time.since_epoch();
  std::lock_guard lock(mu_);
  ThrottleFailure out;
  uint32_t n = session_failures;

  Entry& by_ip = count(by_ip_, ip_key(ip), settings_.ip_lockout_failures, now, out.ip_locked);
  n = std::max(n, by_ip.failures);
  // A lockout starts the count again: once it ends, the address has its threshold anew.
  if (out.ip_locked) by_ip.failures = 0;
  out.ip_failures = by_ip.failures;

  if (!login.empty()) {
    Entry& by_login = count(by_login_, login_key(login), settings_.login_lockout_failures, now, out.login_locked);
    n = std::max(n, by_login.failures);
    if (out.login_locked) by_login.failures = 0;
    out.login_failures = by_login.failures;
  }
  out.delay = delay_for(n, settings_.delay, settings_.delay_max);
  return out;
}

void LoginThrottle::success(std::string_view login, ThrottleTime) {
  if (login.empty()) return;
  std::lock_guard lock(mu_);
  auto it = by_login_.find(login_key(login));
  // A lockout in force stays: the name was locked because of guessing, and the lock
  // refuses every password until it ends (callers check login_locked() first anyway).
  if (it != by_login_.end()) it->second.failures = 0;
}

bool LoginThrottle::is_locked(const Table& table, const std::string& key, milliseconds now) const {
  auto it = table.find(key);
  return it != table.end() && it->second.locked_until > now;
}

uint32_t LoginThrottle::failures_of(const Table& table, const std::string& key, milliseconds now) const {
  auto it = table.find(key);
  if (it == table.end() || now - it->second.last > settings_.window) return 0;
  return it->second.failures;
}

milliseconds LoginThrottle::penalty(std::string_view ip, ThrottleTime now_time) const {
  const milliseconds now = now_time.since_epoch();
  std::lock_guard lock(mu_);
  auto it = by_ip_.find(ip_key(ip));
  if (it == by_ip_.end()) return milliseconds(0);
  const Entry& e = it->second;
  if (e.failures == 0 || now - e.last > settings_.window) return milliseconds(0);
  const milliseconds until = add_sat(e.last, delay_for(e.failures, settings_.delay, settings_.delay_max));
  return until > now ? until - now : milliseconds(0);
}

bool LoginThrottle::ip_locked(std::string_view ip, ThrottleTime now) const {
  std::lock_guard lock(mu_);
  return is_locked(by_ip_, ip_key(ip), now.since_epoch());
}

bool LoginThrottle::login_locked(std::string_view login, ThrottleTime now) const {
  if (login.empty()) return false;
  std::lock_guard lock(mu_);
  return is_locked(by_login_, login_key(login), now.since_epoch());
}

uint32_t LoginThrottle::ip_failures(std::string_view ip, ThrottleTime now) const {
  std::lock_guard lock(mu_);
  return failures_of(by_ip_, ip_key(ip), now.since_epoch());
}

uint32_t LoginThrottle::login_failures(std::string_view login, ThrottleTime now) const {
  if (login.empty()) return 0;
  std::lock_guard lock(mu_);
  return failures_of(by_login_, login_key(login), now.since_epoch());
}

size_t LoginThrottle::size() const {
  std::lock_guard lock(mu_);
  return by_ip_.size() + by_login_.size();
}

size_t LoginThrottle::key_bytes() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& kv : by_ip_) n += kv.first.size();
  for (const auto& kv : by_login_) n += kv.first.size();
  return n;
}

}  // namespace postern::mail
