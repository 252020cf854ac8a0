// C6: cron parsing, next-run computation and the scheduler with a manual clock.
#include "core/scheduler/scheduler.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace postern::core::scheduler {
namespace {

using namespace std::chrono;

system_clock::time_point at(int y, unsigned mo, unsigned d, int h, int mi) {
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi};
}

CronExpr expr(std::string_view text) {
  std::string why;
  auto e = CronExpr::parse(text, &why);
  EXPECT_TRUE(e.has_value()) << text << ": " << why;
  return e.value_or(*CronExpr::parse("* * * * *"));
}

std::string parse_error(std::string_view text) {
  std::string why;
  EXPECT_FALSE(CronExpr::parse(text, &why).has_value()) << text;
  return why;
}

TEST(CronExprTest, NextAfterFollowsEachFieldKind) {
  struct Case {
    const char* cron;
    system_clock::time_point after;
    system_clock::time_point next;
  };
  // 2026-01-01 is a Thursday.
  const Case cases[] = {
      {"* * * * *", at(2026, 1, 1, 10, 0) + seconds{30}, at(2026, 1, 1, 10, 1)},
      {"*/15 * * * *", at(2026, 1, 1, 10, 1), at(2026, 1, 1, 10, 15)},
      {"5 * * * *", at(2026, 1, 1, 10, 5), at(2026, 1, 1, 11, 5)},
      {"0 3 * * *", at(2026, 1, 1, 3, 0), at(2026, 1, 2, 3, 0)},
      {"30 2-4/2 * * *", at(2026, 1, 1, 2, 30), at(2026, 1, 1, 4, 30)},
      {"0 0 1 * *", at(2026, 1, 15, 0, 0), at(2026, 2, 1, 0, 0)},
      {"0 0 * jan,mar *", at(2026, 1, 31, 0, 0), at(2026, 3, 1, 0, 0)},
      {"0 12 * * mon-fri", at(2026, 1, 2, 12, 0), at(2026, 1, 5, 12, 0)},  // Fri -> Mon
      {"0 0 * * 0", at(2026, 1, 1, 0, 0), at(2026, 1, 4, 0, 0)},          // Sunday as 0
      {"0 0 * * 7", at(2026, 1, 1, 0, 0), at(2026, 1, 4, 0, 0)},          // Sunday as 7
      {"0 0 29 feb *", at(2026, 1, 1, 0, 0), at(2028, 2, 29, 0, 0)},      // leap day
      {"59 23 31 dec *", at(2026, 12, 31, 23, 59), at(2027, 12, 31, 23, 59)},
      {"0 0 5/10 * *", at(2026, 1, 6, 0, 0), at(2026, 1, 15, 0, 0)},
  };
  for (const Case& c : cases) EXPECT_EQ(expr(c.cron).next_after(c.after), c.next) << c.cron;
}

TEST(CronExprTest, BothDayFieldsRestrictedMatchEither) {
  // Vixie cron: the 13th OR any Friday. From Thu 2026-01-01: Fri the 2nd first.
  const CronExpr e = expr("0 0 13 * fri");
  EXPECT_EQ(e.next_after(at(2026, 1, 1, 0, 0)), at(2026, 1, 2, 0, 0));
  EXPECT_EQ(e.next_after(at(2026, 1, 9, 0, 0)), at(2026, 1, 13, 0, 0));  // Tuesday the 13th
  // With day-of-week "*", only the day of month counts.
  EXPECT_EQ(expr("0 0 13 * *").next_after(at(2026, 1, 1, 0, 0)), at(2026, 1, 13, 0, 0));
  // "*/1" in day-of-month counts as unrestricted: only Fridays match.
  EXPECT_EQ(expr("0 0 */1 * fri").next_after(at(2026, 1, 3, 0, 0)), at(2026, 1, 9, 0, 0));
}

TEST(CronExprTest, BadExpressionsNameTheField) {
  EXPECT_NE(parse_error("* * * *").find("expected 5"), std::string::npos);
  EXPECT_NE(parse_error("60 * * * *").find("minute field '60'"), std::string::npos);
  EXPECT_NE(parse_error("* 24 * * *").find("hour field"), std::string::npos);
  EXPECT_NE(parse_error("* * 0 * *").find("day-of-month field"), std::string::npos);
  EXPECT_NE(parse_error("* * * foo *").find("month field 'foo': unknown name"), std::string::npos);
  EXPECT_NE(parse_error("* * * * 8").find("day-of-week field"), std::string::npos);
  EXPECT_NE(parse_error("*/0 * * * *").find("bad step"), std::string::npos);
  EXPECT_NE(parse_error("5-2 * * * *").find("runs backwards"), std::string::npos);
  EXPECT_NE(parse_error("1,,2 * * * *").find("empty list item"), std::string::npos);
  EXPECT_NE(parse_error("0 0 31 feb *").find("no selected month"), std::string::npos);
  EXPECT_NE(parse_error("x * * * *").find("not a number"), std::string::npos);
}

// A manual wall clock shared with the scheduler.
struct ManualClock {
  std::atomic<int64_t> ms{duration_cast<milliseconds>(at(2026, 1, 1, 0, 0).time_since_epoch()).count()};
  Clock fn() {
    return [this] { return system_clock::time_point(milliseconds(ms.load())); };
  }
  void advance(system_clock::duration d) { ms += duration_cast<milliseconds>(d).count(); }
};

struct Counter {
  std::mutex m;
  std::condition_variable cv;
  int n = 0;
  void bump() {
    std::lock_guard l(m);
    ++n;
    cv.notify_all();
  }
  int value() {
    std::lock_guard l(m);
    return n;
  }
  bool wait_for(int target) {
    std::unique_lock l(m);
    return cv.wait_for(l, seconds{10}, [&] { return n >= target; });
  }
};

// The job's body has run once the counter moves; the scheduler clears its
// running flag just after, on the pool thread.
bool wait_idle(const Scheduler& s, uint64_t id) {
  for (int i = 0; i < 2000 && s.running(id); ++i) std::this_thread::sleep_for(milliseconds{5});
  return !s.running(id);
}

TEST(SchedulerTest, RunsDueJobsOnThePoolOncePerTime) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(2);
  ManualClock clock;
  Scheduler s(io, pool, clock.fn());
  Counter c;
  const uint64_t id = s.add("every-5", "*/5 * * * *", [&] { c.bump(); });
  EXPECT_NE(id, 0u);
  EXPECT_EQ(s.run_due(), 0u);  // 00:00 is the creation time; next is 00:05
  clock.advance(minutes{4});
  EXPECT_EQ(s.run_due(), 0u);
  clock.advance(minutes{1});
  EXPECT_EQ(s.run_due(), 1u);
  ASSERT_TRUE(c.wait_for(1));
  ASSERT_TRUE(wait_idle(s, id));
  EXPECT_EQ(s.run_due(), 0u);  // same minute: not again
  // A jump over many times runs the job once, then continues from now.
  clock.advance(hours{2});
  EXPECT_EQ(s.run_due(), 1u);
  ASSERT_TRUE(c.wait_for(2));
  ASSERT_TRUE(wait_idle(s, id));
  const auto jobs = s.jobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].name, "every-5");
  EXPECT_EQ(jobs[0].runs, 2u);
  EXPECT_EQ(jobs[0].next, at(2026, 1, 1, 2, 10));
  s.remove(id);
  clock.advance(minutes{5});
  EXPECT_EQ(s.run_due(), 0u);
  EXPECT_TRUE(s.jobs().empty());
  pool.join();
}

TEST(SchedulerTest, NeverStartsAJobTwiceConcurrently) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(2);
  ManualClock clock;
  Scheduler s(io, pool, clock.fn());
  std::mutex gate;
  std::unique_lock hold(gate);
  Counter started;
  const uint64_t id = s.add("slow", "* * * * *", [&] {
    started.bump();
    std::lock_guard wait(gate);
  });
  clock.advance(minutes{1});
  EXPECT_EQ(s.run_due(), 1u);
  ASSERT_TRUE(started.wait_for(1));
  EXPECT_TRUE(s.running(id));
  clock.advance(minutes{1});
  EXPECT_EQ(s.run_due(), 0u);  // still running: skipped
  hold.unlock();
  for (int i = 0; i < 1000 && s.running(id); ++i) std::this_thread::sleep_for(milliseconds{5});
  EXPECT_FALSE(s.running(id));
  clock.advance(minutes{1});
  EXPECT_EQ(s.run_due(), 1u);
  ASSERT_TRUE(started.wait_for(2));
  pool.join();
}

TEST(SchedulerTest, ClockGoingBackRecomputesNextRuns) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(1);
  ManualClock clock;
  Scheduler s(io, pool, clock.fn());
  s.add("hourly", "0 * * * *", [] {});
  clock.advance(hours{5});
  EXPECT_EQ(s.run_due(), 1u);  // 05:00; next 06:00
  clock.advance(-hours{3});    // 02:00
  EXPECT_EQ(s.run_due(), 0u);
  EXPECT_EQ(s.jobs()[0].next, at(2026, 1, 1, 3, 0));
  pool.join();
}

TEST(SchedulerTest, BadCronThrowsAndAJobThatThrowsIsContained) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(1);
  ManualClock clock;
  Scheduler s(io, pool, clock.fn());
  EXPECT_THROW(s.add("bad", "* * *", [] {}), std::invalid_argument);
  Counter c;
  s.add("throws", "* * * * *", [&] {
    c.bump();
    throw std::runtime_error("boom");
  });
  clock.advance(minutes{1});
  EXPECT_EQ(s.run_due(), 1u);
  ASSERT_TRUE(c.wait_for(1));
  pool.join();
}

TEST(SchedulerTest, TimerOnTheIoContextRunsDueJobs) {
  boost::asio::io_context io;
  boost::asio::thread_pool pool(1);
  ManualClock clock;
  // 00:00:59.900: the next minute is 100 ms away on the steady timer.
  clock.ms += 59'900;
  auto s = std::make_unique<Scheduler>(io, pool, clock.fn());
  Counter c;
  s->add("tick", "* * * * *", [&] { c.bump(); });
  std::thread runner([&] {
    // The manual clock follows real time for this test.
    const auto start = steady_clock::now();
    const int64_t base = clock.ms.load();
    while (steady_clock::now() - start < seconds{5} && c.value() == 0) {
      clock.ms = base + duration_cast<milliseconds>(steady_clock::now() - start).count();
      io.run_for(milliseconds{20});
    }
  });
  EXPECT_TRUE(c.wait_for(1));
  runner.join();
  s.reset();
  pool.join();
}

}  // namespace
}  // namespace postern::core::scheduler
