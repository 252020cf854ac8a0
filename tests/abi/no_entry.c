/* Exports no postern_plugin_entry_v1: the loader must refuse it. */
#include <postern/abi/v1/postern_abi.h>
POSTERN_ABI_EXPORT int postern_plugin_entry_v0(void) { return 0; }
