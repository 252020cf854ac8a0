// PLACEHOLDER until the module lands this session: every call reports
// POSTERN_ERR_UNAVAILABLE. Replaced by the real implementation.
#include "core/plugin/host_api_v12.hpp"

namespace postern::core::plugin::abi12 {

postern_status_t service_register(postern_host_t* /*host*/, postern_str_t /*protocol*/, const postern_service_v1_t* /*svc*/, void* /*user*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_stream_t* stream_retain(postern_stream_t* /*s*/) { return nullptr; }
void stream_release(postern_stream_t* /*s*/) {}
postern_status_t stream_write(postern_stream_t* /*s*/, postern_bytes_t /*data*/) { return POSTERN_ERR_UNAVAILABLE; }
size_t stream_queued(postern_stream_t* /*s*/) { return 0; }
postern_status_t stream_want_drain(postern_stream_t* /*s*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t stream_pause(postern_stream_t* /*s*/, int32_t /*paused*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t stream_starttls(postern_stream_t* /*s*/) { return POSTERN_ERR_UNAVAILABLE; }
void stream_close(postern_stream_t* /*s*/) {}
postern_status_t stream_set_idle_timeout(postern_stream_t* /*s*/, uint64_t /*timeout_ms*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t stream_post(postern_stream_t* /*s*/, postern_task_cb /*fn*/, void* /*user*/) { return POSTERN_ERR_UNAVAILABLE; }
postern_status_t stream_get(postern_stream_t* /*s*/, postern_stream_prop_t /*prop*/, postern_str_t* /*out*/) { return POSTERN_ERR_UNAVAILABLE; }

}  // namespace postern::core::plugin::abi12
