#include "postern/mail/throttle.hpp"

#include "postern/mail/ascii.hpp"
#include "postern/mail/ip.hpp"

#include <algorithm>
#include <vector>

namespace postern::mail {
namespace {

using std::chrono::milliseconds;

// Counts are capped so that a patient flood cannot wrap them.
constexpr uint32_t kMaxCount = 1'000'000;

}  // namespace

LoginThrottle::LoginThrottle(ThrottleSettings settings) : settings_(settings) {}

void LoginThrottle::set_settings(const ThrottleSettings& settings) {
  std::lock_guard lock(mu_);
  settings_ = settings;
}

ThrottleSettings LoginThrottle::settings() const {
  std::lock_guard lock(mu_);
  return settings_;
}

milliseconds LoginThrottle::delay_for(uint32_t failures, milliseconds base, milliseconds cap) {
  if (failures == 0 || base.count() <= 0) return milliseconds(0);
  milliseconds delay = base;
  for (uint32_t i = 1; i < failures && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

std::string LoginThrottle::ip_key(std::string_view ip) const {
  const std::optional<IpAddress> address = IpAddress::parse(ip);
  if (!address) return std::string(ip);
  if (address->is_v4() || settings_.ipv6_prefix >= 128) return address->to_string();
  return IpRange::block(*address, settings_.ipv6_prefix).first.to_string() + "/" +
         std::to_string(settings_.ipv6_prefix);
}

std::string LoginThrottle::login_key(std::string_view login) { return to_lower(login); }

void LoginThrottle::evict(Table& table, milliseconds now) {
  const size_t max = std::max<size_t>(settings_.max_entries, 1);
  const milliseconds window = settings_.window;
  auto expires = [window](const Entry& e) { return std::max(e.last + window, e.locked_until); };
  std::erase_if(table, [&](const auto& kv) { return expires(kv.second) <= now; });
  // Still crowded with live entries (a flood from many addresses): drop those that would
  // expire first until half the room is free, so the next eviction is max / 4 insertions
  // away at least and the cost per insertion stays constant. A lockout longer than the
  // window outlasts the flood's entries.
  if (table.size() < max - max / 4) return;
  const size_t keep = max / 2;
  if (keep == 0) {
    table.clear();
    return;
  }
  std::vector<milliseconds> times;
  times.reserve(table.size());
  for (const auto& kv : table) times.push_back(expires(kv.second));
  const auto cut = times.begin() + static_cast<std::ptrdiff_t>(times.size() - keep);
  std::nth_element(times.begin(), cut, times.end());
  const milliseconds cutoff = *cut;
  std::erase_if(table, [&](const auto& kv) { return expires(kv.second) < cutoff; });
  // Ties at the cutoff can leave more than `keep`; drop some of them too.
  for (auto it = table.begin(); table.size() > keep && it != table.end();) {
    it = expires(it->second) == cutoff ? table.erase(it) : std::next(it);
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
    e.locked_until = now + settings_.lockout_time;
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

}  // namespace postern::mail
