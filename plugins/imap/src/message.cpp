// The message side of plugins/imap (see message.hpp); being written.
#include "message.hpp"
