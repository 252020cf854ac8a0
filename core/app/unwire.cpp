// Reverse-order shutdown of the subsystems (runtime.hpp).

#include "core/app/runtime.hpp"

namespace postern::core::app {

// Each subsystem's destructor stops it; the order matters: the queue manager
// delivers into the store and resolves through the directory, and jobs of the
// scheduler may use all of them.
void unwire_all(Runtime& rt) {
  rt.queue.reset();
  rt.store.reset();
  rt.directory.reset();
  rt.scheduler.reset();
}

}  // namespace postern::core::app
