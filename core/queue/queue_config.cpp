#include "core/queue/queue_config.hpp"

#include "core/config/manifest.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <sstream>

namespace postern::core::queue {

using std::chrono::seconds;

seconds QueueConfig::backoff(uint32_t failed_attempts) const {
  seconds d = retry.empty() ? max_backoff
                            : retry[std::min<size_t>(std::max<uint32_t>(failed_attempts, 1), retry.size()) - 1];
  d = std::max(d, min_backoff);
  if (max_backoff.count() > 0) d = std::min(d, max_backoff);
  return std::max(d, seconds(1));
}

QueueConfig parse_queue_config(const pugi::xml_node& node, config::Diagnostics& diag) {
  QueueConfig cfg;
  if (!node) return cfg;
  auto duration = [&](const pugi::xml_attribute& a, seconds& out, bool zero_ok) {
    auto v = config::parse_duration(a.value());
    if (!v || (!zero_ok && v->count() <= 0)) {
      diag.error(node, fmt::format("<queue {}=\"{}\">: not a {}duration (e.g. 30m, 4h, 7d)", a.name(), a.value(),
                                   zero_ok ? "" : "positive "));
      return;
    }
    out = std::chrono::duration_cast<seconds>(*v);
  };
  auto number = [&](const pugi::xml_attribute& a, size_t& out, size_t min) {
    const std::string_view text = a.value();
    size_t v = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size() || v < min) {
      diag.error(node, fmt::format("<queue {}=\"{}\">: expected a whole number >= {}", a.name(), text, min));
      return;
    }
    out = v;
  };
  auto size = [&](const pugi::xml_attribute& a, uint64_t& out) {
    auto v = config::parse_size(a.value());
    if (!v) {
      diag.error(node, fmt::format("<queue {}=\"{}\">: not a size (e.g. 64k, 10M)", a.name(), a.value()));
      return;
    }
    out = *v;
  };
  for (const pugi::xml_attribute& a : node.attributes()) {
    const std::string_view name = a.name();
    if (name == "max-connections") number(a, cfg.max_connections, 1);
    else if (name == "max-per-destination") number(a, cfg.max_per_destination, 1);
    else if (name == "recipients-per-attempt") number(a, cfg.recipients_per_attempt, 1);
    else if (name == "max-active-messages") number(a, cfg.max_active_messages, 1);
    else if (name == "min-backoff") duration(a, cfg.min_backoff, true);
    else if (name == "max-backoff") duration(a, cfg.max_backoff, false);
    else if (name == "lifetime") duration(a, cfg.lifetime, true);
    else if (name == "delay-warning") duration(a, cfg.delay_warning, true);
    else if (name == "destination-backoff") duration(a, cfg.destination_backoff, true);
    else if (name == "bounce-size-limit") size(a, cfg.bounce_size_limit);
    else if (name == "full-return-limit") size(a, cfg.full_return_limit);
    else if (name == "deliver") {
      auto v = config::parse_bool(a.value());
      if (!v) diag.error(node, fmt::format("<queue deliver=\"{}\">: expected true or false", a.value()));
      else cfg.deliver = *v;
    } else if (name == "postmaster") {
      cfg.postmaster = a.value();
      if (cfg.postmaster.find('@') == std::string::npos || cfg.postmaster.find_first_of(" <>\r\n") != std::string::npos)
        diag.error(node, fmt::format("<queue postmaster=\"{}\">: expected an address local@domain", cfg.postmaster));
    } else if (name == "retry") {
      std::vector<seconds> list;
      std::istringstream in{std::string(a.value())};
      std::string word;
      bool ok = true;
      while (in >> word) {
        auto v = config::parse_duration(word);
        if (!v || v->count() <= 0) {
          diag.error(node, fmt::format("<queue retry=\"{}\">: \"{}\" is not a positive duration", a.value(), word));
          ok = false;
          break;
        }
        list.push_back(std::chrono::duration_cast<seconds>(*v));
      }
      if (ok && list.empty()) diag.error(node, "<queue retry=\"\">: expected durations, e.g. \"30m 1h 2h 3h 4h\"");
      if (ok && !list.empty()) cfg.retry = std::move(list);
    } else {
      diag.error(node, fmt::format("<queue>: unknown attribute {}", name));
    }
  }
  if (cfg.max_per_destination > cfg.max_connections)
    diag.error(node, fmt::format("<queue>: max-per-destination ({}) exceeds max-connections ({})",
                                 cfg.max_per_destination, cfg.max_connections));
  if (cfg.max_backoff.count() > 0 && cfg.min_backoff > cfg.max_backoff)
    diag.error(node, "<queue>: min-backoff exceeds max-backoff");
  for (const pugi::xml_node& child : node.children()) {
    if (child.type() == pugi::node_element) diag.error(child, fmt::format("<queue>: unknown element <{}>", child.name()));
  }
  return cfg;
}

}  // namespace postern::core::queue
