// C6: cron expressions and the job scheduler (docs/scheduler.md).

#include "core/scheduler/scheduler.hpp"

#include "core/log/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace postern::core::scheduler {
namespace {

using std::chrono::system_clock;
using std::chrono::minutes;

struct FieldSpec {
  const char* name;
  int min;
  int max;
  // Names accepted instead of numbers, index = value (after `names_base`).
  const std::array<std::string_view, 12>* names;
  int names_base;
};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

constexpr std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, nullptr, 0},
    {"hour", 0, 23, nullptr, 0},
    {"day-of-month", 1, 31, nullptr, 0},
    {"month", 1, 12, &kMonthNames, 1},
    {"day-of-week", 0, 7, &kDayNames, 0},
}};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// One value of a field: a number in range, or a name (jan, mon).
std::optional<int> parse_value(std::string_view text, const FieldSpec& f, std::string& why) {
  if (text.empty()) {
    why = "empty value";
    return std::nullopt;
  }
  if (f.names != nullptr && std::isalpha(static_cast<unsigned char>(text[0]))) {
    const std::string l = lower(text);
    for (size_t i = 0; i < f.names->size(); ++i) {
      if (!(*f.names)[i].empty() && (*f.names)[i] == l) return static_cast<int>(i) + f.names_base;
    }
    why = fmt::format("unknown name '{}'", text);
    return std::nullopt;
  }
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    why = fmt::format("'{}' is not a number", text);
    return std::nullopt;
  }
  if (v < f.min || v > f.max) {
    why = fmt::format("{} is outside {}-{}", v, f.min, f.max);
    return std::nullopt;
  }
  return v;
}

// One field: a comma list of `*`, `n`, `a-b`, each optionally `/step`.
// @return the bit set of matching values, or nullopt with `why`.
std::optional<uint64_t> parse_field(std::string_view text, const FieldSpec& f, bool& star, std::string& why) {
  uint64_t bits = 0;
  star = text == "*";
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) {
      why = "empty list item";
      return std::nullopt;
    }
    int step = 1;
    if (auto slash = item.find('/'); slash != std::string_view::npos) {
      std::string_view s = item.substr(slash + 1);
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), step);
      if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || step < 1 || step > f.max) {
        why = fmt::format("bad step '{}'", s);
        return std::nullopt;
      }
      item = item.substr(0, slash);
    }
    int lo = 0, hi = 0;
    if (item == "*") {
      lo = f.min;
      hi = f.max;
    } else if (auto dash = item.find('-'); dash != std::string_view::npos) {
      auto a = parse_value(item.substr(0, dash), f, why);
      if (!a) return std::nullopt;
      auto b = parse_value(item.substr(dash + 1), f, why);
      if (!b) return std::nullopt;
      lo = *a;
      hi = *b;
      if (lo > hi) {
        why = fmt::format("range {}-{} runs backwards", lo, hi);
        return std::nullopt;
      }
    } else {
      auto a = parse_value(item, f, why);
      if (!a) return std::nullopt;
      lo = *a;
      // Vixie cron: "n/step" means n through the maximum in steps.
      hi = step > 1 ? f.max : *a;
    }
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << v;
    if (comma == text.size()) break;
  }
  return bits;
}

// Days in month m (1..12) of a leap year: the most a day-of-month can reach.
constexpr std::array<int, 13> kMaxDays = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

}  // namespace

std::optional<CronExpr> CronExpr::parse(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<CronExpr> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (i == text.size()) break;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t') ++j;
    fields.push_back(text.substr(i, j - i));
    i = j;
  }
  if (fields.size() != 5) {
    return fail(fmt::format("cron expression '{}' has {} field(s); expected 5 (minute hour day-of-month month "
                            "day-of-week)",
                            text, fields.size()));
  }
  CronExpr e;
  e.text_ = std::string(text);
  std::array<uint64_t, 5> bits{};
  std::array<bool, 5> star{};
  for (size_t f = 0; f < 5; ++f) {
    std::string why;
    auto b = parse_field(fields[f], kFields[f], star[f], why);
    if (!b) return fail(fmt::format("cron expression '{}': bad {} field '{}': {}", text, kFields[f].name, fields[f], why));
    bits[f] = *b;
  }
  e.minutes_ = bits[0];
  e.hours_ = static_cast<uint32_t>(bits[1]);
  e.days_ = static_cast<uint32_t>(bits[2]);
  e.months_ = static_cast<uint16_t>(bits[3]);
  // 7 is Sunday too.
  uint64_t dow = bits[4];
  if (dow & (uint64_t{1} << 7)) dow = (dow | 1) & 0x7f;
  e.weekdays_ = static_cast<uint8_t>(dow);
  // Vixie cron: a field starting with `*` counts as unrestricted for the
  // day-of-month / day-of-week OR rule ("*/2" included).
  e.dom_star_ = !fields[2].empty() && fields[2][0] == '*';
  e.dow_star_ = !fields[4].empty() && fields[4][0] == '*';
  // A day-of-month that no selected month has ("0 0 31 2 *") would never run.
  if (!e.dom_star_ && e.dow_star_) {
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      if (!(e.months_ & (1u << m))) continue;
      for (int d = 1; d <= kMaxDays[m]; ++d) possible = possible || (e.days_ & (1u << d));
    }
    if (!possible) {
      return fail(fmt::format("cron expression '{}': bad day-of-month field '{}': no selected month has that day",
                              text, fields[2]));
    }
  }
  return e;
}

system_clock::time_point CronExpr::next_after(system_clock::time_point after) const {
  using namespace std::chrono;
  auto t = floor<minutes>(after) + minutes{1};
  // Eight years cover every leap-day-only expression (e.g. 2096 -> 2104).
  const auto limit = t + days{366 * 8 + 2};
  while (t < limit) {
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const unsigned m = static_cast<unsigned>(ymd.month());
    if (!(months_ & (1u << m))) {
      const year_month_day first = (ymd.year() / ymd.month() / 1d) + months{1};
      t = sys_days{first};
      continue;
    }
    const unsigned d = static_cast<unsigned>(ymd.day());
    const unsigned wd = weekday{day}.c_encoding();
    const bool dom_ok = (days_ & (1u << d)) != 0;
    const bool dow_ok = (weekdays_ & (1u << wd)) != 0;
    // Vixie cron: with both day fields restricted, either may match.
    const bool day_ok = (dom_star_ || dow_star_) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
    if (!day_ok) {
      t = day + days{1};
      continue;
    }
    const auto since_midnight = t - day;
    const auto h = duration_cast<hours>(since_midnight).count();
    if (!(hours_ & (1u << h))) {
      t = day + hours{h + 1};
      continue;
    }
    const auto mi = duration_cast<minutes>(since_midnight - hours{h}).count();
    if (!(minutes_ & (uint64_t{1} << mi))) {
      t += minutes{1};
      continue;
    }
    return time_point_cast<system_clock::duration>(t);
  }
  return system_clock::time_point::max();
}

// ---------------------------------------------------------------------------

struct Scheduler::Impl : std::enable_shared_from_this<Scheduler::Impl> {
  struct Entry {
    uint64_t id = 0;
    std::string name;
    CronExpr cron;
    Job job;
    system_clock::time_point next;
    uint64_t runs = 0;
    // Shared with a run in progress, which clears it when done.
    std::shared_ptr<std::atomic<bool>> running = std::make_shared<std::atomic<bool>>(false);
  };

  Impl(boost::asio::io_context& io, boost::asio::thread_pool& pool, Clock c)
      : timer(io), workers(pool), clock(std::move(c)) {}

  boost::asio::steady_timer timer;  // touched on the io_context only (and by ~Scheduler)
  boost::asio::thread_pool& workers;
  Clock clock;
  mutable std::mutex mutex;
  std::map<uint64_t, Entry> jobs;
  uint64_t next_id = 1;
  system_clock::time_point last_check{};
  bool stopped = false;

  system_clock::time_point now() const { return clock ? clock() : system_clock::now(); }

  /** Re-arms the timer on the io_context (any thread). */
  void rearm_async() {
    boost::asio::post(timer.get_executor(), [w = weak_from_this()] {
      if (auto self = w.lock()) self->arm();
    });
  }

  /** On the io_context: sleep until the earliest next run, at most a minute. */
  void arm() {
    system_clock::time_point earliest = system_clock::time_point::max();
    {
      std::lock_guard lock(mutex);
      if (stopped) return;
      for (const auto& [id, e] : jobs) earliest = std::min(earliest, e.next);
    }
    // The wall clock may jump (NTP, an operator): never sleep longer than a
    // minute on a steady timer; waking recomputes from the wall clock.
    auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::minutes{1});
    if (earliest != system_clock::time_point::max()) {
      const auto until = earliest - now();
      wait = std::clamp<std::chrono::steady_clock::duration>(
          std::chrono::duration_cast<std::chrono::steady_clock::duration>(until), std::chrono::milliseconds{1}, wait);
    }
    timer.expires_after(wait);
    timer.async_wait([w = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = w.lock()) {
        self->run_due();
        self->arm();
      }
    });
  }

  size_t run_due() {
    const auto t = now();
    std::vector<std::tuple<uint64_t, std::string, Job, std::shared_ptr<std::atomic<bool>>>> to_run;
    {
      std::lock_guard lock(mutex);
      if (stopped) return 0;
      // The clock went back: times computed from the later reading would
      // leave a gap; recompute every job's next run from now.
      if (last_check != system_clock::time_point{} && t + std::chrono::minutes{1} < last_check) {
        for (auto& [id, e] : jobs) e.next = e.cron.next_after(t);
      }
      last_check = t;
      for (auto& [id, e] : jobs) {
        if (e.next > t) continue;
        // Runs once however many times were missed; the next one is after now.
        e.next = e.cron.next_after(t);
        if (e.running->exchange(true)) {
          log::warn("scheduler", "job={} id={} still running; skipping this run", e.name, e.id);
          continue;
        }
        ++e.runs;
        to_run.emplace_back(e.id, e.name, e.job, e.running);
      }
    }
    for (auto& [id, name, job, running] : to_run) {
      boost::asio::post(workers, [id = id, name = std::move(name), job = std::move(job), running = running] {
        try {
          job();
        } catch (const std::exception& e) {
          log::error("scheduler", "job={} id={} threw: {}", name, id, e.what());
        } catch (...) {
          log::error("scheduler", "job={} id={} threw an unknown exception", name, id);
        }
        running->store(false);
      });
    }
    return to_run.size();
  }
};

Scheduler::Scheduler(boost::asio::io_context& io, boost::asio::thread_pool& workers, Clock clock)
    : impl_(std::make_shared<Impl>(io, workers, std::move(clock))) {
  impl_->rearm_async();
}

Scheduler::~Scheduler() {
  std::lock_guard lock(impl_->mutex);
  impl_->stopped = true;
  impl_->jobs.clear();
  // THREADING: destroyed when the io_context no longer runs (posternd's
  // teardown) or on its thread; the handler holds only a weak reference.
  impl_->timer.cancel();
}

uint64_t Scheduler::add(std::string name, std::string_view cron, Job job) {
  std::string why;
  auto expr = CronExpr::parse(cron, &why);
  if (!expr) throw std::invalid_argument(why);
  if (!job) throw std::invalid_argument("scheduler: job '" + name + "' has no function");
  uint64_t id = 0;
  {
    std::lock_guard lock(impl_->mutex);
    id = impl_->next_id++;
    Impl::Entry e;
    e.id = id;
    e.name = std::move(name);
    e.next = expr->next_after(impl_->now());
    e.cron = std::move(*expr);
    e.job = std::move(job);
    log::info("scheduler", "job={} id={} cron=\"{}\" added", e.name, id, e.cron.text());
    impl_->jobs.emplace(id, std::move(e));
  }
  impl_->rearm_async();
  return id;
}

void Scheduler::remove(uint64_t id) {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->jobs.erase(id) == 0) return;
  }
  impl_->rearm_async();
}

size_t Scheduler::run_due() { return impl_->run_due(); }

std::vector<Scheduler::JobInfo> Scheduler::jobs() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<JobInfo> out;
  out.reserve(impl_->jobs.size());
  for (const auto& [id, e] : impl_->jobs) out.push_back({id, e.name, e.cron.text(), e.next, e.runs});
  return out;
}

bool Scheduler::running(uint64_t id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->jobs.find(id);
  return it != impl_->jobs.end() && it->second.running->load();
}

WeakScheduler Scheduler::weak() const { return WeakScheduler(impl_); }

void WeakScheduler::remove(uint64_t id) const {
  auto impl = impl_.lock();
  if (!impl) return;
  {
    std::lock_guard lock(impl->mutex);
    if (impl->jobs.erase(id) == 0) return;
  }
  impl->rearm_async();
}

}  // namespace postern::core::scheduler
