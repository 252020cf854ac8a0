// ABI 1.2 services and streams: service_register stores the plugin's table on
// its LoadedPlugin (only during on_init); the stream functions forward to the
// stream object of core/service (docs/services.md). A null handle is refused
// with POSTERN_ERR_INVALID, never dereferenced.
#include "core/plugin/host_api_v12.hpp"

#include "core/plugin/loader.hpp"
#include "core/service/stream.hpp"

namespace postern::core::plugin::abi12 {

postern_status_t service_register(postern_host_t* host, postern_str_t protocol, const postern_service_v1_t* svc,
                                  void* user) {
  if (host == nullptr || host->plugin == nullptr) return POSTERN_ERR_INVALID;
  if (protocol.ptr == nullptr && protocol.len != 0) return POSTERN_ERR_INVALID;
  const std::string_view name = protocol.ptr != nullptr ? std::string_view(protocol.ptr, protocol.len) : "";
  return host->plugin->register_service(name, svc, user);
}

postern_stream_t* stream_retain(postern_stream_t* s) {
  if (s != nullptr) intrusive_ptr_add_ref(s);
  return s;
}

void stream_release(postern_stream_t* s) {
  if (s != nullptr) intrusive_ptr_release(s);
}

postern_status_t stream_write(postern_stream_t* s, postern_bytes_t data) {
  return s != nullptr ? s->write(data) : POSTERN_ERR_INVALID;
}

size_t stream_queued(postern_stream_t* s) { return s != nullptr ? s->queued() : 0; }

postern_status_t stream_want_drain(postern_stream_t* s) { return s != nullptr ? s->want_drain() : POSTERN_ERR_INVALID; }

postern_status_t stream_pause(postern_stream_t* s, int32_t paused) {
  return s != nullptr ? s->pause(paused != 0) : POSTERN_ERR_INVALID;
}

postern_status_t stream_starttls(postern_stream_t* s) { return s != nullptr ? s->starttls() : POSTERN_ERR_INVALID; }

void stream_close(postern_stream_t* s) {
  if (s != nullptr) s->close();
}

postern_status_t stream_set_idle_timeout(postern_stream_t* s, uint64_t timeout_ms) {
  return s != nullptr ? s->set_idle_timeout(timeout_ms) : POSTERN_ERR_INVALID;
}

postern_status_t stream_post(postern_stream_t* s, postern_task_cb fn, void* user) {
  return s != nullptr ? s->post(fn, user) : POSTERN_ERR_INVALID;
}

postern_status_t stream_get(postern_stream_t* s, uint32_t prop, postern_str_t* out) {
  return s != nullptr ? s->get(prop, out) : POSTERN_ERR_INVALID;
}

}  // namespace postern::core::plugin::abi12
