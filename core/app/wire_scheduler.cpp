// Wiring of the scheduler (C6, docs/scheduler.md) into posternd.
//
// <scheduler enabled="true"/> (optional; the element and the attribute may be
// left out). With enabled="false" there is no scheduler: plugins' cron_add()
// returns 0 and core jobs (mailstore retention) are not registered.

#include "core/app/runtime.hpp"
#include "core/log/log.hpp"
#include "core/scheduler/scheduler.hpp"

#include <fmt/format.h>

#include <optional>
#include <string_view>

namespace postern::core::app {
namespace {

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

bool scheduler_enabled(const config::Manifest& m) {
  if (!m.scheduler) return true;
  pugi::xml_attribute a = m.scheduler.attribute("enabled");
  return !a || parse_bool(a.value()).value_or(true);
}

}  // namespace

void check_scheduler(const config::Manifest& m, config::Diagnostics& diag) {
  const pugi::xml_node s = m.scheduler;
  if (!s) return;
  for (pugi::xml_attribute a : s.attributes()) {
    const std::string_view name = a.name();
    if (name == "enabled") {
      if (!parse_bool(a.value())) {
        diag.error(s, fmt::format("<scheduler enabled=\"{}\">: expected true or false", a.value()));
      }
    } else {
      diag.error(s, fmt::format("<scheduler>: unknown attribute '{}' (allowed: enabled)", name));
    }
  }
  for (pugi::xml_node c : s.children()) {
    if (c.type() == pugi::node_element) {
      diag.error(c, fmt::format("<scheduler>: unexpected element <{}>; jobs are registered by the subsystems and "
                                "plugins that own them",
                                c.name()));
    }
  }
}

bool wire_scheduler(Runtime& rt) {
  if (rt.manifest != nullptr && !scheduler_enabled(*rt.manifest)) {
    log::info("scheduler", "disabled by <scheduler enabled=\"false\">");
    return true;
  }
  if (rt.io == nullptr || rt.workers == nullptr) {
    log::error("scheduler", "no io_context or worker pool to run on");
    return false;
  }
  rt.scheduler = std::make_shared<scheduler::Scheduler>(*rt.io, *rt.workers);
  return true;
}

}  // namespace postern::core::app
