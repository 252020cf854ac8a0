// Wiring of the directory subsystem into posternd (see runtime.hpp).
// STATUS: placeholder until the directory module lands; does nothing.

#include "core/app/runtime.hpp"

namespace postern::core::app {

void check_directory(const config::Manifest&, config::Diagnostics&) {}

bool wire_directory(Runtime&) { return true; }

}  // namespace postern::core::app
