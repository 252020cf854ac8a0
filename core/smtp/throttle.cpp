#include "core/smtp/throttle.hpp"

#include <algorithm>
#include <cstdint>

namespace postern::core::smtp {

std::chrono::milliseconds tarpit_delay(const SmtpConfig& cfg, size_t rcpt_attempts, bool exempt) {
  if (exempt || cfg.tarpit_after == 0 || rcpt_attempts <= cfg.tarpit_after) return std::chrono::milliseconds{0};
  return cfg.tarpit_delay;
}

mail::ThrottleSettings login_throttle_settings(const SmtpConfig& cfg) {
  mail::ThrottleSettings s;
  s.delay = cfg.auth_failure_delay;
  s.delay_max = cfg.auth_failure_delay_max;
  s.window = cfg.auth_lockout_time;
  s.ip_lockout_failures = static_cast<uint32_t>(std::min<size_t>(cfg.auth_lockout_failures, UINT32_MAX));
  s.login_lockout_failures = 0;  // a lockout by name would let anyone lock a known account
  s.lockout_time = cfg.auth_lockout_time;
  return s;
}

}  // namespace postern::core::smtp
