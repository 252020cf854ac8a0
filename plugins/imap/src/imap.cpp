// The imap service plugin: registers "imap" with the host and makes one
// Session per connection (see README.md for the configuration).
#include "imap.hpp"

#include <algorithm>
#include <cstdint>

namespace postern::plugins::imap {

namespace imap = postern::imap;

sdk::Status ImapPlugin::init(sdk::InitContext& ctx) {
  auto cfg = std::make_shared<imap::SessionConfig>();
  const sdk::Config c = ctx.config();
  auto size = [&](const char* name, size_t& out, size_t min) -> bool {
    if (auto v = c.integer(name)) {
      if (*v < static_cast<int64_t>(min)) return false;
      out = static_cast<size_t>(*v);
    } else if (c.attr(name)) {
      return false;
    }
    return true;
  };
  auto duration = [&](const char* name, std::chrono::milliseconds& out) -> bool {
    if (auto v = c.duration(name)) {
      out = *v;
    } else if (c.attr(name)) {
      return false;
    }
    return true;
  };
  size_t failures = cfg->max_login_failures;
  size_t lockout_failures = cfg->login_lockout_failures;
  const std::pair<const char*, bool> checks[] = {
      {"max-line", size("max-line", cfg->limits.max_line, 1024)},
      {"max-literal", size("max-literal", cfg->limits.max_literal, 1024)},
      {"append-limit", size("append-limit", cfg->limits.append_limit, 1024)},
      {"max-depth", size("max-depth", cfg->limits.max_depth, 4)},
      {"max-ranges", size("max-ranges", cfg->limits.max_ranges, 16)},
      {"max-login-failures", size("max-login-failures", failures, 1)},
      {"idle-poll", duration("idle-poll", cfg->idle_poll)},
      {"autologout", duration("autologout", cfg->autologout)},
      {"login-timeout", duration("login-timeout", cfg->login_timeout)},
      {"login-failure-delay", duration("login-failure-delay", cfg->login_failure_delay)},
      {"login-failure-delay-max", duration("login-failure-delay-max", cfg->login_failure_delay_max)},
      {"login-lockout-failures", size("login-lockout-failures", lockout_failures, 0)},
      {"login-lockout-time", duration("login-lockout-time", cfg->login_lockout_time)},
  };
  for (const auto& [name, ok] : checks) {
    if (!ok) return sdk::Status::error(std::string("imap: invalid value for ") + name);
  }
  cfg->max_login_failures = static_cast<uint32_t>(std::min<size_t>(failures, UINT32_MAX));
  cfg->login_lockout_failures = static_cast<uint32_t>(std::min<size_t>(lockout_failures, UINT32_MAX));
  // Beyond a year a duration means "forever"; clamping keeps the throttle's sums finite.
  for (auto* d : {&cfg->login_failure_delay, &cfg->login_failure_delay_max, &cfg->login_lockout_time}) {
    *d = mail::LoginThrottle::clamp_duration(*d);
  }
  if (cfg->login_failure_delay_max < cfg->login_failure_delay) {
    return sdk::Status::error("imap: login-failure-delay-max must not be below login-failure-delay");
  }
  cfg->throttle = std::make_shared<mail::LoginThrottle>(cfg->throttle_settings());
  cfg->limits.max_command_literals = std::max(cfg->limits.max_command_literals, cfg->limits.max_literal);
  // RFC 3501 §5.4: the autologout timer is at least 30 minutes.
  if (cfg->autologout < std::chrono::minutes(30)) {
    return sdk::Status::error("imap: autologout must be at least 30m (RFC 3501 5.4)");
  }
  if (cfg->idle_poll < std::chrono::milliseconds(100)) return sdk::Status::error("imap: idle-poll below 100ms");
  sdk::Host host = ctx.host();
  // IDLE wakes on the store's mailbox events (ABI 1.3); the poll stays as a
  // slow safety net, or as the only source on a host without events.
  auto waiters = std::make_shared<imap::IdleWaiters>();
  if (host.on_mailbox_events(POSTERN_MBOX_MASK_ALL, [waiters](const sdk::MailboxEvent& ev) { waiters->notify(ev); }) !=
      0) {
    cfg->idle_waiters = waiters;
    if (!c.attr("idle-poll")) cfg->idle_poll = std::chrono::seconds(30);
  } else {
    host.info("imap: no mailbox events from the host; IDLE polls every " +
              std::to_string(cfg->idle_poll.count()) + " ms");
  }
  config_ = cfg;
  std::shared_ptr<const imap::SessionConfig> shared = cfg;
  return ctx.serve("imap", [host, shared](sdk::Stream stream) -> std::unique_ptr<sdk::Connection> {
    auto session = std::make_shared<imap::Session>(host, std::move(stream), shared);
    session->start();
    return std::make_unique<imap::Connection>(std::move(session));
  });
}

}  // namespace postern::plugins::imap

POSTERN_PLUGIN(postern::plugins::imap::ImapPlugin)
