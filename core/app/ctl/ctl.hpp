#pragma once
// Core's command areas of the control plane (docs/control-plane.md). Each
// area lives in its own file under core/app/ctl/ and gets the validated
// manifest and its own arguments; core/app/ctl/registry.cpp registers them
// as `<area> <verb>` commands. They run in posternd (on the worker pool,
// output captured for the reply) or, when no daemon runs, in posternctl.
// Exit codes every area keeps (scripts rely on them):
//   0 ok, 1 failure (the error is one line on stderr), 2 usage error,
//   3 not found (unknown user, queue id, ...), 4 already exists.

#include "core/config/manifest.hpp"
#include "core/control/registry.hpp"

#include <memory>

#include <string>
#include <string_view>
#include <vector>

namespace postern::core::directory {
class Directory;
}

namespace postern::core::ctl {

enum Exit : int { kOk = 0, kFail = 1, kUsage = 2, kNotFound = 3, kExists = 4 };

struct Command {
  const config::Manifest& manifest;
  std::string area;               // "user"
  std::vector<std::string> args;  // after the area, without --json
  bool json = false;
  /** posternd's directory: changes go through it, so they are in force when the command returns. Null offline. */
  std::shared_ptr<directory::Directory> directory;
};

/**
 * Where an area's output goes: stdout and stderr, or, while a Capture is
 * alive on this thread (posternd), its buffers.
 */
__attribute__((format(printf, 1, 2))) void print(const char* format, ...);
__attribute__((format(printf, 1, 2))) void eprint(const char* format, ...);
void print_str(std::string_view text);
void eprint_str(std::string_view text);

/** Captures this thread's area output until destroyed (posternd runs areas this way). */
class Capture {
 public:
  Capture();
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
  std::string out;
  std::string err;

 private:
  Capture* previous_;
};
/** Whether this thread's output is captured: the area runs inside posternd (no terminal, no stdin). */
bool capturing();

/** A JSON string body (no quotes) with ", \ and control characters escaped. */
std::string json_escape(std::string_view s);
/** Prints "posternctl: <message>" on stderr and returns `code`. */
int fail(int code, std::string_view message);

// One function per area; each prints its own usage on kUsage. The greylist
// area is the greylist plugin's own (plugins/greylist/src/commands.cpp).
int plugins(Command& c);   // ctl/plugins.cpp
int domain(Command& c);    // ctl/directory.cpp: domain, user, alias, list, router
int user(Command& c);
int alias(Command& c);
int list(Command& c);
int router(Command& c);
int queue(Command& c);     // ctl/queue.cpp
int relay(Command& c);     // ctl/relay.cpp

/** What a core command runs against: the manifest in force, and posternd's directory (null offline). */
struct CoreContext {
  std::shared_ptr<const config::Manifest> manifest;
  std::shared_ptr<directory::Directory> directory;
};

/**
 * Registers core's areas (domain, user, alias, list, router, queue, relay,
 * plugins) as commands. Each call runs inside `run` (posternd: the worker
 * pool; posternctl offline: inline) against `context()`, with its output
 * captured into the reply.
 */
void add_core_commands(control::Registry& registry, std::function<CoreContext()> context,
                       std::function<void(std::function<void()>)> run);

/**
 * The area's command-line words for a core verb called with typed, validated
 * `args` (spec order: positionals bare, options as `--name VALUE`, flags as
 * `--name`, a repeatable option once per item), starting with `verb`.
 */
std::vector<std::string> area_argv(std::string_view verb, const std::vector<control::ArgSpec>& spec,
                                   const boost::json::object& args);

}  // namespace postern::core::ctl
