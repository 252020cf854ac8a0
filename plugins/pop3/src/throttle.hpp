#pragma once
// pop3: login flood control. Each failed login is answered after a delay that
// doubles with the failures of the connection and of the peer IP (1 s, 2 s,
// 4 s... up to a cap); a peer's count is forgotten after a quiet window.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace postern::plugins::pop3 {

class LoginThrottle {
 public:
  using Clock = std::chrono::system_clock;

  /**
   * @param base delay after the first failure
   * @param cap the largest delay
   * @param window a peer IP's failures expire after this long without another
   * @param max_peers peers remembered at most (the oldest are dropped beyond it)
   */
  LoginThrottle(std::chrono::milliseconds base, std::chrono::milliseconds cap, std::chrono::milliseconds window,
                size_t max_peers = 100'000);

  /**
   * Records a failed login and returns how long to wait before answering it.
   * Thread-safe.
   * @param connection_failures failures on this connection, this one included
   */
  std::chrono::milliseconds failure(const std::string& peer_ip, uint32_t connection_failures, Clock::time_point now);

  /** Failures remembered for `peer_ip` (0 after the window). */
  uint32_t peer_failures(const std::string& peer_ip, Clock::time_point now) const;

  /** base * 2^(failures-1), capped; 0 for no failures. */
  static std::chrono::milliseconds delay_for(uint32_t failures, std::chrono::milliseconds base,
                                             std::chrono::milliseconds cap);

 private:
  struct Peer {
    uint32_t failures = 0;
    Clock::time_point last;
  };
  void evict(Clock::time_point now);

  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
  std::chrono::milliseconds window_;
  size_t max_peers_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Peer> peers_;
};

}  // namespace postern::plugins::pop3
