// Throws from the entry point itself.
#include <postern/abi/v1/postern_abi.h>

#include <stdexcept>

extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t*) {
  throw std::logic_error("entry exploded");
}
