// Wiring of the scheduler subsystem into posternd (see runtime.hpp).
// STATUS: placeholder until the scheduler module lands; does nothing.

#include "core/app/runtime.hpp"

namespace postern::core::app {

void check_scheduler(const config::Manifest&, config::Diagnostics&) {}

bool wire_scheduler(Runtime&) { return true; }

}  // namespace postern::core::app
