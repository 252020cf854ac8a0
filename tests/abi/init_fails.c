/* on_init fails with a reason the loader must report. */
#include "minimal.h"
static postern_status_t failing_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst,
                                     char* err, size_t cap) {
  (void)host;
  (void)api;
  (void)inst;
  strncpy(err, "missing required attribute 'zone'", cap - 1);
  err[cap - 1] = '\0';
  return POSTERN_ERR_FAILED;
}
MINIMAL_TABLE(kTable, "init_fails", failing_init);
POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
