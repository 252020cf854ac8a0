#include "throttle.hpp"

#include <algorithm>
#include <vector>

namespace postern::plugins::pop3 {

LoginThrottle::LoginThrottle(std::chrono::milliseconds base, std::chrono::milliseconds cap,
                             std::chrono::milliseconds window, size_t max_peers)
    : base_(base), cap_(cap), window_(window), max_peers_(std::max<size_t>(max_peers, 1)) {}

std::chrono::milliseconds LoginThrottle::delay_for(uint32_t failures, std::chrono::milliseconds base,
                                                   std::chrono::milliseconds cap) {
  if (failures == 0 || base.count() == 0) return std::chrono::milliseconds(0);
  auto delay = base;
  for (uint32_t i = 1; i < failures && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

std::chrono::milliseconds LoginThrottle::failure(const std::string& peer_ip, uint32_t connection_failures,
                                                 Clock::time_point now) {
  uint32_t peer_count = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = peers_.find(peer_ip);
    if (it == peers_.end()) {
      if (peers_.size() >= max_peers_) evict(now);
      it = peers_.emplace(peer_ip, Peer{}).first;
    } else if (now - it->second.last > window_) {
      it->second.failures = 0;
    }
    it->second.failures = std::min<uint32_t>(it->second.failures + 1, 1'000'000);
    it->second.last = now;
    peer_count = it->second.failures;
  }
  return delay_for(std::max(connection_failures, peer_count), base_, cap_);
}

uint32_t LoginThrottle::peer_failures(const std::string& peer_ip, Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  auto it = peers_.find(peer_ip);
  if (it == peers_.end() || now - it->second.last > window_) return 0;
  return it->second.failures;
}

void LoginThrottle::evict(Clock::time_point now) {
  std::erase_if(peers_, [&](const auto& kv) { return now - kv.second.last > window_; });
  if (peers_.size() < max_peers_) return;
  // Still full of live entries (a spread-out flood): drop the older half.
  std::vector<Clock::time_point> times;
  times.reserve(peers_.size());
  for (const auto& kv : peers_) times.push_back(kv.second.last);
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  const auto cutoff = *mid;
  std::erase_if(peers_, [&](const auto& kv) { return kv.second.last <= cutoff; });
}

}  // namespace postern::plugins::pop3
