// Continues on every stage it declares: the dispatch benchmark's plugin.
#include <postern/abi/v1/postern_abi.h>

#include <initializer_list>

namespace {
postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char*, size_t) {
  *inst = nullptr;
  for (postern_stage_t s : {POSTERN_STAGE_CONNECT, POSTERN_STAGE_HELO, POSTERN_STAGE_MAIL_FROM, POSTERN_STAGE_RCPT_TO,
                            POSTERN_STAGE_DATA_END}) {
    if (api->subscribe(host, s) != POSTERN_OK) return POSTERN_ERR_FAILED;
  }
  return POSTERN_OK;
}
postern_verdict_t hook(void*, postern_stage_t, postern_event_t*, postern_hook_result_t*) {
  return POSTERN_VERDICT_CONTINUE;
}
void destroy(void*) {}
const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR,
                                    "noop", "1.0.0", init, hook, destroy};
}  // namespace

extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t*) {
  return &kTable;
}
