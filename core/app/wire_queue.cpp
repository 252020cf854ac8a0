// Wiring of the queue subsystem into posternd (see runtime.hpp).
// STATUS: placeholder until the queue module lands; does nothing.

#include "core/app/runtime.hpp"

namespace postern::core::app {

void check_queue(const config::Manifest&, config::Diagnostics&) {}

bool wire_queue(Runtime&) { return true; }

}  // namespace postern::core::app
