#include "throttle.hpp"

#include <gtest/gtest.h>

namespace postern::plugins::pop3 {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

TEST(Pop3ThrottleTest, DelayDoublesPerFailureUpToTheCap) {
  EXPECT_EQ(LoginThrottle::delay_for(0, 1000ms, 30000ms), 0ms);
  EXPECT_EQ(LoginThrottle::delay_for(1, 1000ms, 30000ms), 1000ms);
  EXPECT_EQ(LoginThrottle::delay_for(2, 1000ms, 30000ms), 2000ms);
  EXPECT_EQ(LoginThrottle::delay_for(3, 1000ms, 30000ms), 4000ms);
  EXPECT_EQ(LoginThrottle::delay_for(5, 1000ms, 30000ms), 16000ms);
  EXPECT_EQ(LoginThrottle::delay_for(6, 1000ms, 30000ms), 30000ms);
  EXPECT_EQ(LoginThrottle::delay_for(4'000'000'000u, 1000ms, 30000ms), 30000ms);
  EXPECT_EQ(LoginThrottle::delay_for(3, 0ms, 30000ms), 0ms);
}

TEST(Pop3ThrottleTest, PeerFailuresAccumulateAcrossConnectionsAndExpire) {
  LoginThrottle t(1000ms, 30000ms, std::chrono::minutes(15));
  const auto t0 = LoginThrottle::Clock::time_point{} + std::chrono::hours(1000);
  // Three connections with one failure each: the peer's count drives the delay.
  EXPECT_EQ(t.failure("192.0.2.7", 1, t0), 1000ms);
  EXPECT_EQ(t.failure("192.0.2.7", 1, t0 + 1s), 2000ms);
  EXPECT_EQ(t.failure("192.0.2.7", 1, t0 + 2s), 4000ms);
  // Another peer is not affected.
  EXPECT_EQ(t.failure("192.0.2.8", 1, t0 + 2s), 1000ms);
  // A connection's own count wins when it is larger.
  EXPECT_EQ(t.failure("192.0.2.8", 4, t0 + 3s), 8000ms);
  EXPECT_EQ(t.peer_failures("192.0.2.7", t0 + 3s), 3u);
  // Quiet for longer than the window: forgotten.
  EXPECT_EQ(t.peer_failures("192.0.2.7", t0 + 2s + std::chrono::minutes(16)), 0u);
  EXPECT_EQ(t.failure("192.0.2.7", 1, t0 + 2s + std::chrono::minutes(16)), 1000ms);
}

TEST(Pop3ThrottleTest, BoundedMemoryUnderAFloodOfPeers) {
  LoginThrottle t(1000ms, 30000ms, std::chrono::minutes(15), 100);
  const auto t0 = LoginThrottle::Clock::time_point{} + std::chrono::hours(1000);
  for (int i = 0; i < 1000; ++i) t.failure("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), 1, t0 + milliseconds(i));
  // The newest peers are still remembered, the oldest were dropped.
  EXPECT_EQ(t.peer_failures("10.0.3.231", t0 + 1s), 1u);
  EXPECT_EQ(t.peer_failures("10.0.0.0", t0 + 1s), 0u);
}

}  // namespace
}  // namespace postern::plugins::pop3
