#pragma once

// The MIME parser lives in the mail library (sdk/lib, Postern::mail, namespace
// postern::mail). Core code may keep naming it postern::core::mime.
#include "postern/mail/mime.hpp"

namespace postern::core {
namespace mime = ::postern::mail;
}  // namespace postern::core
