#pragma once
// C6: cron-syntax jobs that the core and plugins register (docs/scheduler.md).
// Five fields, "minute hour day-of-month month day-of-week", each `*`, a
// number, a range a-b, a list a,b,c, and a step */n or a-b/n; day-of-week
// 0-7 (0 and 7 = Sunday); names (jan, mon) accepted. When both day fields are
// restricted a time matches either (Vixie cron). Jobs run on the worker pool,
// never on an I/O thread; a job still running when its next time comes is not
// started twice. Times are local to the server's clock (UTC unless TZ says).
//
// STATUS: interface fixed by the session plan; implemented in scheduler.cpp.

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::scheduler {

/** A parsed cron expression. */
class CronExpr {
 public:
  /** @return the expression, or nullopt with `error` set to a one-line reason. */
  static std::optional<CronExpr> parse(std::string_view text, std::string* error = nullptr);
  /** The first matching minute strictly after `after` (seconds truncated), in UTC. */
  std::chrono::system_clock::time_point next_after(std::chrono::system_clock::time_point after) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  uint64_t minutes_ = 0;  // bit i = minute i
  uint32_t hours_ = 0;
  uint32_t days_ = 0;     // bit 1..31
  uint16_t months_ = 0;   // bit 1..12
  uint8_t weekdays_ = 0;  // bit 0..6
  bool dom_star_ = true;
  bool dow_star_ = true;
};

/** Where the scheduler gets the time; tests drive a manual one. */
using Clock = std::function<std::chrono::system_clock::time_point()>;

class WeakScheduler;

class Scheduler {
 public:
  using Job = std::function<void()>;
  /**
   * @param io where the timer runs; @param workers where jobs run.
   * @param clock the wall clock (default: system_clock::now).
   */
  Scheduler(boost::asio::io_context& io, boost::asio::thread_pool& workers, Clock clock = {});
  ~Scheduler();  // cancels the timer; waits for no job (jobs must hold what they use)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  /**
   * Registers a job. THREADING: any thread.
   * @return an id (never 0) for remove().
   * @throws std::invalid_argument naming the bad field when `cron` is invalid.
   */
  uint64_t add(std::string name, std::string_view cron, Job job);
  /** Unregisters; a run in progress finishes. Unknown ids are ignored. THREADING: any thread. */
  void remove(uint64_t id);
  /**
   * Runs every job due at or before clock() now (tests with a manual clock call
   * this after moving the clock; the timer calls it in production).
   * @return how many jobs were started.
   */
  size_t run_due();
  /** Names, expressions and next run times, for posternctl and logs. */
  struct JobInfo {
    uint64_t id;
    std::string name;
    std::string cron;
    std::chrono::system_clock::time_point next;
    uint64_t runs;
  };
  std::vector<JobInfo> jobs() const;
  /** Whether a run of job `id` is in progress (tests, posternctl). */
  bool running(uint64_t id) const;
  /**
   * A reference for owners that may outlive the scheduler (plugin hosts):
   * its remove() does nothing once the scheduler is gone.
   */
  WeakScheduler weak() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/** See Scheduler::weak(). Copyable; THREADING: any thread. */
class WeakScheduler {
 public:
  WeakScheduler() = default;
  explicit WeakScheduler(std::weak_ptr<Scheduler::Impl> impl) : impl_(std::move(impl)) {}
  /** Scheduler::remove() if the scheduler still exists. */
  void remove(uint64_t id) const;

 private:
  std::weak_ptr<Scheduler::Impl> impl_;
};

}  // namespace postern::core::scheduler
