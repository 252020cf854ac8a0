/* A well-formed plugin whose descriptor (or its absence) must make the loader refuse it. */
#include "minimal.h"
MINIMAL_TABLE(kTable, "bad_descriptor", minimal_init);
POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
