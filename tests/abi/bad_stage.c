/* Subscribes to stage 99, which is no postern_stage_t: the host takes the
 * stage as an integer (ABI 1.3 contract fix), refuses it and init fails. */
#include "minimal.h"
static postern_status_t bad_stage_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char* err,
                                       size_t cap) {
  *inst = (void*)0x1;
  if (api->subscribe(host, 99u) != POSTERN_ERR_INVALID) {
    strncpy(err, "stage 99 was accepted", cap - 1);
  } else {
    strncpy(err, "subscription to stage 99 refused", cap - 1);
  }
  err[cap - 1] = '\0';
  return POSTERN_ERR_FAILED;
}
MINIMAL_TABLE(kTable, "bad_stage", bad_stage_init);
POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
