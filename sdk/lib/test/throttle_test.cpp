// Tests for postern/mail/throttle.hpp: delays, windows, lockouts, bounded memory.
#include "postern/mail/throttle.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace postern::mail {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1000);

TEST(MailThrottleTest, DelayDoublesPerFailureUpToTheCap) {
  struct Case {
    uint32_t failures;
    milliseconds base, cap, delay;
  };
  const Case cases[] = {
      {0, 1000ms, 30000ms, 0ms},     {1, 1000ms, 30000ms, 1000ms},  {2, 1000ms, 30000ms, 2000ms},
      {3, 1000ms, 30000ms, 4000ms},  {5, 1000ms, 30000ms, 16000ms}, {6, 1000ms, 30000ms, 30000ms},
      {4'000'000'000u, 1000ms, 30000ms, 30000ms},                   {3, 0ms, 30000ms, 0ms},
      {1, 1000ms, 500ms, 500ms},  // the cap wins even over the base
  };
  for (const Case& c : cases) {
    EXPECT_EQ(LoginThrottle::delay_for(c.failures, c.base, c.cap), c.delay) << c.failures;
  }
}

TEST(MailThrottleTest, FailuresOfAnAddressAddUpAcrossSessionsAndExpire) {
  ThrottleSettings s;
  s.delay = 1000ms;
  s.delay_max = 30000ms;
  s.window = std::chrono::minutes(15);
  LoginThrottle t(s);
  struct Step {
    std::string ip;
    std::string login;
    uint32_t session_failures;
    Clock::duration at;
    milliseconds delay;
    uint32_t ip_failures;
  };
  const Step steps[] = {
      // Three connections with one failure each: the address's count drives the delay.
      {"192.0.2.7", "", 1, 0s, 1000ms, 1},
      {"192.0.2.7", "", 1, 1s, 2000ms, 2},
      {"192.0.2.7", "", 1, 2s, 4000ms, 3},
      // Another address is not affected.
      {"192.0.2.8", "", 1, 2s, 1000ms, 1},
      // A session's own count wins when it is larger.
      {"192.0.2.8", "", 4, 3s, 8000ms, 2},
      // Quiet for longer than the window: forgotten.
      {"192.0.2.7", "", 1, 2s + std::chrono::minutes(16), 1000ms, 1},
      // Within the window of the last failure, not of the first: a slow guesser keeps its count.
      {"192.0.2.8", "", 1, 3s + std::chrono::minutes(14), 4000ms, 3},
      {"192.0.2.8", "", 1, 3s + std::chrono::minutes(28), 8000ms, 4},
  };
  for (const Step& st : steps) {
    const ThrottleFailure f = t.failure(st.ip, st.login, st.session_failures, t0 + st.at);
    EXPECT_EQ(f.delay, st.delay) << st.ip << " at " << std::chrono::duration_cast<milliseconds>(st.at).count();
    EXPECT_EQ(f.ip_failures, st.ip_failures) << st.ip;
    EXPECT_FALSE(f.ip_locked);
  }
  EXPECT_EQ(t.ip_failures("192.0.2.8", t0 + 3s + std::chrono::minutes(28)), 4u);
  EXPECT_EQ(t.ip_failures("192.0.2.8", t0 + 3s + std::chrono::minutes(44)), 0u);
  EXPECT_EQ(t.ip_failures("198.51.100.1", t0), 0u);
}

TEST(MailThrottleTest, FailuresOfALoginAddUpAcrossAddresses) {
  ThrottleSettings s;
  s.delay = 100ms;
  s.delay_max = 10s;
  LoginThrottle t(s);
  // One guess per address at one account (a botnet): the account's count drives the delay.
  EXPECT_EQ(t.failure("192.0.2.1", "alice@example.test", 1, t0).delay, 100ms);
  EXPECT_EQ(t.failure("192.0.2.2", "ALICE@example.test", 1, t0 + 1s).delay, 200ms);  // case-insensitive
  const ThrottleFailure third = t.failure("192.0.2.3", "alice@example.test", 1, t0 + 2s);
  EXPECT_EQ(third.delay, 400ms);
  EXPECT_EQ(third.login_failures, 3u);
  EXPECT_EQ(third.ip_failures, 1u);
  EXPECT_EQ(t.login_failures("Alice@Example.Test", t0 + 2s), 3u);
  // A success forgets the login's failures, not the address's.
  t.failure("192.0.2.3", "bob@example.test", 1, t0 + 3s);
  t.success("alice@example.test", t0 + 4s);
  EXPECT_EQ(t.login_failures("alice@example.test", t0 + 4s), 0u);
  EXPECT_EQ(t.ip_failures("192.0.2.3", t0 + 4s), 2u);
  // No login name (a malformed exchange): only the address counts.
  const ThrottleFailure anon = t.failure("192.0.2.9", "", 1, t0 + 5s);
  EXPECT_EQ(anon.login_failures, 0u);
  EXPECT_EQ(anon.delay, 100ms);
}

TEST(MailThrottleTest, AddressLockoutAtTheThresholdForTheLockoutTime) {
  ThrottleSettings s;
  s.delay = 0ms;
  s.ip_lockout_failures = 3;
  s.lockout_time = std::chrono::minutes(10);
  LoginThrottle t(s);
  EXPECT_FALSE(t.ip_locked("192.0.2.7", t0));
  EXPECT_FALSE(t.failure("192.0.2.7", "alice", 1, t0).ip_locked);
  EXPECT_FALSE(t.failure("192.0.2.7", "bob", 1, t0 + 1s).ip_locked);
  EXPECT_FALSE(t.ip_locked("192.0.2.7", t0 + 1s));
  const ThrottleFailure third = t.failure("192.0.2.7", "carol", 1, t0 + 2s);
  EXPECT_TRUE(third.ip_locked);
  EXPECT_FALSE(third.login_locked);  // no login threshold set
  EXPECT_EQ(third.ip_failures, 0u);  // the count starts again with the lockout
  EXPECT_EQ(third.delay, 0ms);       // delays are off
  EXPECT_TRUE(t.ip_locked("192.0.2.7", t0 + 2s));
  EXPECT_TRUE(t.ip_locked("192.0.2.7", t0 + 2s + std::chrono::minutes(10) - 1ms));
  EXPECT_FALSE(t.ip_locked("192.0.2.7", t0 + 2s + std::chrono::minutes(10)));
  EXPECT_FALSE(t.ip_locked("192.0.2.8", t0 + 2s));
  EXPECT_FALSE(t.login_locked("alice", t0 + 2s));
  // After the lockout the address has its threshold anew.
  const auto later = t0 + 2s + std::chrono::minutes(11);
  EXPECT_FALSE(t.failure("192.0.2.7", "", 1, later).ip_locked);
  EXPECT_FALSE(t.failure("192.0.2.7", "", 1, later + 1s).ip_locked);
  EXPECT_TRUE(t.failure("192.0.2.7", "", 1, later + 2s).ip_locked);
}

TEST(MailThrottleTest, LoginLockoutIsSeparateAndOffByDefault) {
  LoginThrottle off;
  for (int i = 0; i < 50; ++i) off.failure("192.0.2." + std::to_string(i), "alice", 1, t0 + std::chrono::seconds(i));
  EXPECT_FALSE(off.login_locked("alice", t0 + 60s));
  EXPECT_FALSE(off.ip_locked("192.0.2.1", t0 + 60s));  // ip lockout is off by default too

  ThrottleSettings s;
  s.login_lockout_failures = 2;
  s.lockout_time = 1min;
  LoginThrottle t(s);
  EXPECT_FALSE(t.failure("192.0.2.1", "alice", 1, t0).login_locked);
  const ThrottleFailure f = t.failure("192.0.2.2", "Alice", 1, t0 + 1s);
  EXPECT_TRUE(f.login_locked);
  EXPECT_FALSE(f.ip_locked);
  EXPECT_TRUE(t.login_locked("ALICE", t0 + 2s));
  EXPECT_FALSE(t.login_locked("bob", t0 + 2s));
  EXPECT_FALSE(t.login_locked("", t0 + 2s));
  // A success does not lift a lockout in force.
  t.success("alice", t0 + 3s);
  EXPECT_TRUE(t.login_locked("alice", t0 + 3s));
  EXPECT_FALSE(t.login_locked("alice", t0 + 1s + 1min));
}

TEST(MailThrottleTest, Ipv6ClientsAreCountedPerSlash64) {
  LoginThrottle t;
  t.failure("2001:db8:1:2::7", "", 1, t0);
  t.failure("2001:db8:1:2:ffff::1", "", 1, t0 + 1s);
  EXPECT_EQ(t.ip_failures("2001:db8:1:2::99", t0 + 1s), 2u);
  EXPECT_EQ(t.ip_failures("2001:db8:1:3::7", t0 + 1s), 0u);
  // IPv4, plain or IPv4-mapped, is one address.
  t.failure("192.0.2.7", "", 1, t0);
  EXPECT_EQ(t.ip_failures("::ffff:192.0.2.7", t0), 1u);
  EXPECT_EQ(t.ip_failures("192.0.2.6", t0), 0u);
  // Per address when asked.
  ThrottleSettings s;
  s.ipv6_prefix = 128;
  LoginThrottle exact(s);
  exact.failure("2001:db8::7", "", 1, t0);
  EXPECT_EQ(exact.ip_failures("2001:db8::7", t0), 1u);
  EXPECT_EQ(exact.ip_failures("2001:db8::8", t0), 0u);
  // Something that is not an address is counted as written.
  exact.failure("unix", "", 1, t0);
  EXPECT_EQ(exact.ip_failures("unix", t0), 1u);
}

TEST(MailThrottleTest, MemoryStaysBoundedUnderAFloodOfAddressesAndLogins) {
  ThrottleSettings s;
  s.max_entries = 100;
  s.ip_lockout_failures = 2;
  s.lockout_time = 1h;
  LoginThrottle t(s);
  // A locked address that the flood must not push out: its lockout outlasts their windows.
  t.failure("198.51.100.1", "", 1, t0);
  ASSERT_TRUE(t.failure("198.51.100.1", "", 1, t0).ip_locked);
  for (int i = 0; i < 100'000; ++i) {
    const std::string ip = "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                           std::to_string(i % 256);
    t.failure(ip, "user" + std::to_string(i), 1, t0 + milliseconds(i));
    ASSERT_LE(t.size(), 2 * s.max_entries) << i;
  }
  const auto end = t0 + milliseconds(100'000);
  // The newest are remembered, the oldest were dropped, the lockout survived.
  EXPECT_EQ(t.ip_failures("10.1.134.159", end), 1u);  // i = 99999
  EXPECT_EQ(t.login_failures("user99999", end), 1u);
  EXPECT_EQ(t.ip_failures("10.0.0.0", end), 0u);
  EXPECT_EQ(t.login_failures("user0", end), 0u);
  EXPECT_TRUE(t.ip_locked("198.51.100.1", end));
}

TEST(MailThrottleTest, ExpiredEntriesAreDroppedBeforeLiveOnes) {
  ThrottleSettings s;
  s.max_entries = 10;
  s.window = 1min;
  LoginThrottle t(s);
  for (int i = 0; i < 9; ++i) t.failure("192.0.2." + std::to_string(i), "", 1, t0);
  t.failure("192.0.2.100", "", 1, t0 + 90s);  // the 10th, still live later
  // Two minutes on, the first nine have expired; a new address evicts them, not the live one.
  t.failure("192.0.2.200", "", 1, t0 + 2min);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.ip_failures("192.0.2.100", t0 + 2min), 1u);
  EXPECT_EQ(t.ip_failures("192.0.2.200", t0 + 2min), 1u);
}

TEST(MailThrottleTest, SettingsCanBeReplaced) {
  LoginThrottle t;
  EXPECT_EQ(t.failure("192.0.2.7", "", 1, t0).delay, 1000ms);
  ThrottleSettings s;
  s.delay = 50ms;
  t.set_settings(s);
  EXPECT_EQ(t.settings().delay, 50ms);
  EXPECT_EQ(t.failure("192.0.2.7", "", 1, t0 + 1s).delay, 100ms);  // the count was kept
}

TEST(MailThrottleTest, CountsEveryFailureFromManyThreads) {
  ThrottleSettings s;
  s.window = 1h;
  LoginThrottle t(s);
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&t, i] {
      for (int j = 0; j < kEach; ++j) {
        t.failure("192.0.2.7", "alice", 1, t0 + milliseconds(j));
        t.failure("192.0.2." + std::to_string(10 + i), "", 1, t0 + milliseconds(j));
        (void)t.ip_locked("192.0.2.7", t0 + milliseconds(j));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(t.ip_failures("192.0.2.7", t0 + 2s), uint32_t{kThreads * kEach});
  EXPECT_EQ(t.login_failures("alice", t0 + 2s), uint32_t{kThreads * kEach});
  EXPECT_EQ(t.ip_failures("192.0.2.10", t0 + 2s), uint32_t{kEach});
  EXPECT_EQ(t.size(), size_t{kThreads + 2});
}

TEST(MailThrottleTest, AcceptsAnyClock) {
  ThrottleSettings s;
  s.window = 1min;
  LoginThrottle t(s);
  const auto now = std::chrono::system_clock::time_point{} + std::chrono::hours(500'000);
  t.failure("192.0.2.7", "", 1, now);
  EXPECT_EQ(t.ip_failures("192.0.2.7", now + 59s), 1u);
  EXPECT_EQ(t.ip_failures("192.0.2.7", now + 61s), 0u);
}

TEST(MailThrottleTest, LongLoginNamesAreKeptAsABoundedKey) {
  ThrottleSettings s;
  s.max_entries = 1000;
  LoginThrottle t(s);
  // A flood of distinct 64 KiB names: each entry holds a bounded key, not the name.
  for (int i = 0; i < 200; ++i) {
    std::string name(65536, 'a');
    name += std::to_string(i);
    t.failure("192.0.2.1", name, 1, t0);
  }
  EXPECT_EQ(t.size(), 201u);
  EXPECT_LE(t.key_bytes(), 201 * LoginThrottle::kMaxKeyBytes);
  // Names sharing a long prefix stay apart; case does not matter.
  const std::string a = std::string(5000, 'x') + "A", b = std::string(5000, 'x') + "B";
  t.failure("192.0.2.2", a, 1, t0);
  t.failure("192.0.2.2", a, 1, t0);
  t.failure("192.0.2.2", b, 1, t0);
  EXPECT_EQ(t.login_failures(a, t0), 2u);
  EXPECT_EQ(t.login_failures(std::string(5000, 'X') + "a", t0), 2u);
  EXPECT_EQ(t.login_failures(b, t0), 1u);
  // A short name equal to a long key's prefix is another name.
  EXPECT_EQ(t.login_failures(std::string(LoginThrottle::kMaxKeyBytes - 18, 'x'), t0), 0u);
  // An unparsable address is bounded too.
  t.failure(std::string(100000, 'z'), "", 1, t0);
  EXPECT_LE(t.key_bytes(), t.size() * LoginThrottle::kMaxKeyBytes);
}

TEST(MailThrottleTest, PenaltyIsWhatTheAddressStillOwes) {
  ThrottleSettings s;
  s.delay = 1000ms;
  s.delay_max = 8000ms;
  s.window = std::chrono::minutes(10);
  LoginThrottle t(s);
  EXPECT_EQ(t.penalty("192.0.2.7", t0), 0ms);
  t.failure("192.0.2.7", "alice", 1, t0);
  EXPECT_EQ(t.penalty("192.0.2.7", t0), 1000ms);
  EXPECT_EQ(t.penalty("192.0.2.7", t0 + 300ms), 700ms);
  EXPECT_EQ(t.penalty("192.0.2.7", t0 + 1500ms), 0ms);
  // A second failure (on a fresh connection: session count 1) owes the doubled delay.
  t.failure("192.0.2.7", "bob", 1, t0 + 1500ms);
  EXPECT_EQ(t.penalty("192.0.2.7", t0 + 1500ms), 2000ms);
  EXPECT_EQ(t.penalty("192.0.2.8", t0 + 1500ms), 0ms);
  EXPECT_EQ(t.penalty("192.0.2.7", t0 + std::chrono::minutes(11)), 0ms);
  // Off with the delay.
  s.delay = 0ms;
  t.set_settings(s);
  EXPECT_EQ(t.penalty("192.0.2.7", t0 + 1500ms), 0ms);
}

TEST(MailThrottleTest, EvictionDropsUnlockedEntriesBeforeLockedOnes) {
  // SMTP's configuration: the lockout lasts as long as the window, so a locked entry
  // expires before the flood's newer ones; it must still be the last to go.
  ThrottleSettings s;
  s.window = std::chrono::minutes(10);
  s.lockout_time = std::chrono::minutes(10);
  s.ip_lockout_failures = 1;
  s.max_entries = 100;
  LoginThrottle t(s);
  t.failure("192.0.2.1", "", 1, t0);
  ASSERT_TRUE(t.ip_locked("192.0.2.1", t0));
  s.ip_lockout_failures = 0;  // the flood itself locks nothing
  t.set_settings(s);
  for (int i = 0; i < 1000; ++i) {
    t.failure("198.51." + std::to_string(i / 256) + "." + std::to_string(i % 256), "", 1, t0 + 1s + milliseconds(i));
  }
  EXPECT_LE(t.size(), 100u);
  EXPECT_TRUE(t.ip_locked("192.0.2.1", t0 + 2s));
}

TEST(MailThrottleTest, HugeDurationsSaturateInsteadOfOverflowing) {
  const milliseconds huge = milliseconds::max();
  EXPECT_EQ(LoginThrottle::delay_for(40, huge / 3, huge), huge);
  // 3 ms * 2^63 does not fit: the doubling stops at the cap instead of wrapping negative.
  EXPECT_EQ(LoginThrottle::delay_for(64, 3ms, huge), huge);
  ThrottleSettings s;
  s.delay = huge;
  s.delay_max = huge;
  s.window = huge;
  s.lockout_time = huge;
  s.ip_lockout_failures = 2;
  LoginThrottle t(s);
  EXPECT_EQ(t.settings().delay, LoginThrottle::kMaxDuration);
  EXPECT_EQ(t.settings().lockout_time, LoginThrottle::kMaxDuration);
  EXPECT_EQ(t.failure("192.0.2.7", "a", 1, t0).delay, LoginThrottle::kMaxDuration);
  EXPECT_EQ(t.failure("192.0.2.7", "a", 1, t0 + 1s).delay, LoginThrottle::kMaxDuration);
  EXPECT_TRUE(t.ip_locked("192.0.2.7", t0 + std::chrono::hours(24 * 300)));
  EXPECT_GT(t.penalty("192.0.2.8", t0), -1ms);
  // A clock near its end does not wrap a lockout into the past.
  const auto late = std::chrono::time_point<Clock, milliseconds>(milliseconds::max() - milliseconds(5));
  t.failure("192.0.2.9", "", 1, late);
  t.failure("192.0.2.9", "", 1, late);
  EXPECT_TRUE(t.ip_locked("192.0.2.9", late));
  EXPECT_EQ(LoginThrottle::clamp_duration(-5ms), 0ms);
}

}  // namespace
}  // namespace postern::mail
