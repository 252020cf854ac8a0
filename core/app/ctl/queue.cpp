// posternctl queue. STATUS: placeholder until its module lands.

#include "core/app/ctl/ctl.hpp"

namespace postern::core::ctl {

int queue(Command&) { return fail(kFail, "queue: not built yet"); }

}  // namespace postern::core::ctl
