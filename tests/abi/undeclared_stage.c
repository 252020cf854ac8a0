/* Subscribes to data_end, which its descriptor does not declare: init fails. */
#include "minimal.h"
static postern_status_t greedy_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char* err,
                                    size_t cap) {
  *inst = (void*)0x1;
  if (api->subscribe(host, POSTERN_STAGE_DATA_END) != POSTERN_OK) {
    strncpy(err, "subscription to data_end refused", cap - 1);
    err[cap - 1] = '\0';
    return POSTERN_ERR_FAILED;
  }
  return POSTERN_OK;
}
MINIMAL_TABLE(kTable, "undeclared_stage", greedy_init);
POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
