#include "settings.hpp"

#include <postern/mail/throttle.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace postern::plugins::pop3 {
namespace {

struct Reader {
  const sdk::Config& config;
  std::string* error;
  bool failed = false;

  void fail(std::string_view attr, std::string_view expected) {
    if (failed) return;
    failed = true;
    *error = "pop3 (line " + std::to_string(config.line()) + "): " + std::string(attr) + "=\"" +
             std::string(config.attr(attr).value_or("")) + "\": expected " + std::string(expected);
  }
  void duration(std::string_view attr, std::chrono::milliseconds& out, bool allow_zero) {
    if (!config.attr(attr)) return;
    auto v = config.duration(attr);
    if (!v || (!allow_zero && v->count() == 0)) return fail(attr, allow_zero ? "a duration (500ms, 5s, 10m)" : "a positive duration (500ms, 5s, 10m)");
    // Beyond a year a duration means "forever"; clamping keeps the throttle's sums finite.
    out = mail::LoginThrottle::clamp_duration(*v);
  }
  void count(std::string_view attr, uint32_t& out, int64_t min = 1) {
    if (!config.attr(attr)) return;
    auto v = config.integer(attr);
    if (!v || *v < min || *v > 1'000'000) {
      return fail(attr, "a whole number from " + std::to_string(min) + " to 1000000");
    }
    out = static_cast<uint32_t>(*v);
  }
};

}  // namespace

std::optional<Settings> parse_settings(const sdk::Config& config, std::string* error) {
  Settings s;
  Reader r{config, error};
  r.duration("idle-timeout", s.idle_timeout, false);
  r.count("max-failures", s.max_failures);
  r.count("max-bad-commands", s.max_bad_commands);
  r.duration("login-delay", s.login_delay, true);
  r.duration("login-delay-max", s.login_delay_max, true);
  r.duration("failure-window", s.failure_window, false);
  r.count("login-lockout-failures", s.login_lockout_failures, 0);
  r.duration("login-lockout-time", s.login_lockout_time, false);
  if (config.attr("size-cache")) {
    auto v = config.boolean("size-cache");
    if (!v) r.fail("size-cache", "true or false");
    else s.size_cache = *v;
  }
  if (!r.failed && s.login_delay_max < s.login_delay) {
    r.failed = true;
    *error = "pop3 (line " + std::to_string(config.line()) + "): login-delay-max must not be below login-delay";
  }
  if (r.failed) return std::nullopt;
  return s;
}

}  // namespace postern::plugins::pop3
