#include "core/event/event.hpp"

#include <array>

namespace postern::core::event {
namespace {

constexpr std::array<std::string_view, kStageCount> kStageNames = {
    "connect",    "helo",     "auth",   "mail_from", "rcpt_to",   "data_start", "headers", "data_end",
    "queued",     "delivery", "disconnect", "delivered", "deferred", "bounced",  "stored"};

}  // namespace

std::string_view stage_name(Stage stage) {
  const auto i = static_cast<size_t>(stage);
  return i < kStageNames.size() ? kStageNames[i] : std::string_view{"unknown"};
}

std::optional<Stage> stage_from_name(std::string_view name) {
  for (size_t i = 0; i < kStageNames.size(); ++i) {
    if (kStageNames[i] == name) return static_cast<Stage>(i);
  }
  return std::nullopt;
}

bool is_observer(Stage stage) { return static_cast<uint32_t>(stage) >= POSTERN_EVENT_DELIVERED; }

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::Continue: return "continue";
    case Verdict::Accept: return "accept";
    case Verdict::Reject: return "reject";
    case Verdict::TempFail: return "tempfail";
    case Verdict::Discard: return "discard";
    case Verdict::Quarantine: return "quarantine";
    case Verdict::Pending: return "pending";
  }
  return "unknown";
}

}  // namespace postern::core::event
