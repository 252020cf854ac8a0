// Loads fine, then throws from on_hook without the SDK wrapper: the host must
// treat it as a failed hook (on-failure policy) and keep the session alive.
#include <postern/abi/v1/postern_abi.h>

#include <stdexcept>

namespace {
postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char*, size_t) {
  *inst = nullptr;
  return api->subscribe(host, POSTERN_STAGE_RCPT_TO);
}
postern_verdict_t hook(void*, postern_stage_t, postern_event_t*, postern_hook_result_t*) {
  throw std::runtime_error("hook exploded");
}
void destroy(void*) {}
const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR,
                                    "hook_throws", "1.0.0", init, hook, destroy};
}  // namespace

extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t*) {
  return &kTable;
}
