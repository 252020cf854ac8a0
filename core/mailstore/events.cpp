#include "core/mailstore/events.hpp"

#include <utility>

namespace postern::core::mailstore {
namespace {

thread_local std::string t_actor;

}  // namespace

std::string_view event_kind_name(MailboxEvent::Kind kind) {
  switch (kind) {
    case MailboxEvent::Kind::Stored: return "stored";
    case MailboxEvent::Kind::Copied: return "copied";
    case MailboxEvent::Kind::Moved: return "moved";
    case MailboxEvent::Kind::Expunged: return "expunged";
    case MailboxEvent::Kind::Flags: return "flags";
  }
  return "unknown";
}

ActingAs::ActingAs(std::string_view actor) : previous_(std::exchange(t_actor, std::string(actor))) {}
ActingAs::~ActingAs() { t_actor = std::move(previous_); }

std::string current_actor(std::string_view fallback) {
  return t_actor.empty() ? std::string(fallback) : t_actor;
}

void EventRelay::set_sink(EventSink sink) {
  std::lock_guard lock(mu_);
  sink_ = std::move(sink);
}

bool EventRelay::active() const {
  std::lock_guard lock(mu_);
  return static_cast<bool>(sink_);
}

void EventRelay::publish(MailboxEvent event) const {
  EventSink sink;
  {
    std::lock_guard lock(mu_);
    sink = sink_;
  }
  // Called outside the relay's own mutex too: a sink may take its own locks.
  if (sink) sink(std::move(event));
}

}  // namespace postern::core::mailstore
