/* Shared bits of the tiny C test plugins: a plugin that does nothing. */
#include <postern/abi/v1/postern_abi.h>
#include <string.h>

static postern_status_t minimal_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst,
                                     char* err, size_t cap) {
  (void)err;
  (void)cap;
  *inst = (void*)0x1;
  return api->subscribe(host, POSTERN_STAGE_CONNECT);
}
static postern_verdict_t minimal_hook(void* inst, postern_stage_t stage, postern_event_t* ev,
                                      postern_hook_result_t* out) {
  (void)inst;
  (void)stage;
  (void)ev;
  (void)out;
  return POSTERN_VERDICT_CONTINUE;
}
static void minimal_destroy(void* inst) { (void)inst; }

#define MINIMAL_TABLE(var, name_str, init_fn)                                                        \
  static const postern_plugin_v1_t var = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR,     \
                                          POSTERN_ABI_VERSION_MINOR, name_str, "1.0.0", init_fn,      \
                                          minimal_hook, minimal_destroy}
