// The host side of mbox_events_subscribe / mbox_events_unsubscribe (ABI 1.3).
#include "core/plugin/host_api_v13.hpp"

#include "core/plugin/loader.hpp"
#include "core/plugin/mailbox_events.hpp"

namespace postern::core::plugin::abi13 {

uint64_t mbox_events_subscribe(postern_host_t* host, uint32_t mask, postern_mbox_event_cb fn, void* user) {
  if (host == nullptr || host->plugin == nullptr) return 0;
  const auto& bus = host->plugin->services().mailbox_events;
  if (!bus) return 0;
  try {
    return bus->subscribe(host->plugin->outstanding(), mask, fn, user);
  } catch (...) {
    return 0;  // out of memory: nothing may unwind into the plugin
  }
}

void mbox_events_unsubscribe(postern_host_t* host, uint64_t id) {
  if (host == nullptr || host->plugin == nullptr || id == 0) return;
  const auto& bus = host->plugin->services().mailbox_events;
  if (bus) bus->unsubscribe(host->plugin->outstanding().get(), id);
}

}  // namespace postern::core::plugin::abi13
