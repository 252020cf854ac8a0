// posternctl domain/user/alias/list/router. STATUS: placeholder until the directory lands.

#include "core/app/ctl/ctl.hpp"

namespace postern::core::ctl {

int domain(Command&) { return fail(kFail, "domain: the directory is not built yet"); }
int user(Command&) { return fail(kFail, "user: the directory is not built yet"); }
int alias(Command&) { return fail(kFail, "alias: the directory is not built yet"); }
int list(Command&) { return fail(kFail, "list: the directory is not built yet"); }
int router(Command&) { return fail(kFail, "router: the directory is not built yet"); }

}  // namespace postern::core::ctl
