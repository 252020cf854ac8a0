// posternctl greylist. STATUS: placeholder until its module lands.

#include "core/app/ctl/ctl.hpp"

namespace postern::core::ctl {

int greylist(Command&) { return fail(kFail, "greylist: not built yet"); }

}  // namespace postern::core::ctl
