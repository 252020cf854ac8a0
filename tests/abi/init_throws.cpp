// Throws a C++ exception straight out of on_init, without the SDK wrapper:
// the host must catch it and refuse the plugin.
#include <postern/abi/v1/postern_abi.h>

#include <stdexcept>

namespace {
postern_status_t throwing_init(postern_host_t*, const postern_host_api_v1_t*, void**, char*, size_t) {
  throw std::runtime_error("database file is corrupt");
}
postern_verdict_t hook(void*, postern_stage_t, postern_event_t*, postern_hook_result_t*) {
  return POSTERN_VERDICT_CONTINUE;
}
void destroy(void*) {}
const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR,
                                    "init_throws", "1.0.0", throwing_init, hook, destroy};
}  // namespace

extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t*) {
  return &kTable;
}
