// posternctl relay. STATUS: placeholder until its module lands.

#include "core/app/ctl/ctl.hpp"

namespace postern::core::ctl {

int relay(Command&) { return fail(kFail, "relay: not built yet"); }

}  // namespace postern::core::ctl
