#pragma once
// Host functions added in ABI 1.3 that live outside host_api.cpp (which puts
// them into the table):
// - mailbox events (host_api_events.cpp, over core/plugin/mailbox_events);
// - outbound connections (host_api_connect.cpp, over core/service's stream and
//   core/dns) and message injection (host_api_inject.cpp, over core/queue's spool).
// The pending edits are in host_api.cpp beside the synchronous ones they mirror;
// the admin commands in host_api_command.cpp (core/plugin/commands.hpp).

#include "core/plugin/loader.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <memory>
#include <string>

namespace postern::core::plugin {

struct ConnectOp;

/**
 * One stream_connect: the plugin's callback, run exactly once by whoever
 * erases the entry from Outstanding::connects (the connect's I/O, the
 * stream's on_open, stream_connect_cancel, or unload).
 */
struct ConnectCall {
  uint64_t id = 0;
  postern_connect_cb cb = nullptr;
  void* user = nullptr;
  std::string target;                       // "host:port" or "unix:path", for logs and details
  ServiceRegistration table;                // the plugin's callbacks; on_open is the host's trampoline
  std::weak_ptr<Outstanding> outstanding;
  std::weak_ptr<ConnectOp> op;              // the I/O in progress, to stop it
};

namespace abi13 {

uint64_t mbox_events_subscribe(postern_host_t* host, uint32_t mask, postern_mbox_event_cb fn, void* user);
void mbox_events_unsubscribe(postern_host_t* host, uint64_t id);

postern_status_t stream_connect(postern_host_t* host, const postern_connect_options_t* options,
                                const postern_service_v1_t* callbacks, postern_connect_cb on_connected, void* user,
                                uint64_t* connect_id);
void stream_connect_cancel(postern_host_t* host, uint64_t connect_id);
postern_status_t inject(postern_host_t* host, const postern_inject_request_t* request, postern_inject_cb done,
                        void* user);

}  // namespace abi13
}  // namespace postern::core::plugin
