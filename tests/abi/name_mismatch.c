/* Its table calls it "someone_else" while the descriptor says name_mismatch. */
#include "minimal.h"
MINIMAL_TABLE(kTable, "someone_else", minimal_init);
POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
