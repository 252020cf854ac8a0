#pragma once
// posternctl's command areas. Each area lives in its own file under
// core/app/ctl/ and gets the validated manifest and its own arguments.
// Exit codes every area keeps (scripts rely on them):
//   0 ok, 1 failure (the error is one line on stderr), 2 usage error,
//   3 not found (unknown user, queue id, ...), 4 already exists.

#include "core/config/manifest.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace postern::core::ctl {

enum Exit : int { kOk = 0, kFail = 1, kUsage = 2, kNotFound = 3, kExists = 4 };

struct Command {
  const config::Manifest& manifest;
  std::string area;               // "user"
  std::vector<std::string> args;  // after the area, without --json
  bool json = false;
};

/** A JSON string body (no quotes) with ", \ and control characters escaped. */
std::string json_escape(std::string_view s);
/** Prints "posternctl: <message>" on stderr and returns `code`. */
int fail(int code, std::string_view message);

// One function per area; each prints its own usage on kUsage.
int plugins(Command& c);   // ctl/plugins.cpp
int domain(Command& c);    // ctl/directory.cpp: domain, user, alias, list, router
int user(Command& c);
int alias(Command& c);
int list(Command& c);
int router(Command& c);
int queue(Command& c);     // ctl/queue.cpp
int relay(Command& c);     // ctl/relay.cpp
int greylist(Command& c);  // ctl/greylist.cpp

}  // namespace postern::core::ctl
