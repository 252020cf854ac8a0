// Wiring of the mailstore subsystem into posternd (see runtime.hpp).
// STATUS: placeholder until the mailstore module lands; does nothing.

#include "core/app/runtime.hpp"

namespace postern::core::app {

void check_mailstore(const config::Manifest&, config::Diagnostics&) {}

bool wire_mailstore(Runtime&) { return true; }

}  // namespace postern::core::app
