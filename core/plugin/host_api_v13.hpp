#pragma once
// Host functions added in ABI 1.3 that live outside host_api.cpp: mailbox
// events (host_api_events.cpp, over core/plugin/mailbox_events). The pending
// edits are in host_api.cpp beside the synchronous ones they mirror.

#include <postern/abi/v1/postern_abi.h>

namespace postern::core::plugin::abi13 {

uint64_t mbox_events_subscribe(postern_host_t* host, uint32_t mask, postern_mbox_event_cb fn, void* user);
void mbox_events_unsubscribe(postern_host_t* host, uint64_t id);

}  // namespace postern::core::plugin::abi13
