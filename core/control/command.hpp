#pragma once
// The control plane's vocabulary (DESIGN.md §3a, docs/control-plane.md): a
// named command `<area> <verb>` with described, typed arguments, a JSON
// result and an exit class. Core areas and plugin areas (ABI 1.3 admin
// commands) register the same kind of Command in one Registry; posternd
// serves it on its control socket, posternctl and the web admin's /api/v1
// are front ends of that one registry.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::control {

/** How a command ended; the values are posternctl's exit codes (scripts rely on them). */
enum class Exit : int { Ok = 0, Fail = 1, Usage = 2, NotFound = 3, Exists = 4 };

/** "ok", "fail", "usage", "not_found", "exists" (the `status` of a reply). */
std::string_view exit_name(Exit e);
/** The exit class of a wire integer; values outside 0..4 are Fail. */
Exit exit_from_int(int64_t v);

enum class ArgType { String, Integer, Boolean, StringList };
std::string_view arg_type_name(ArgType t);

/** One argument of a command. */
struct ArgSpec {
  std::string name;          // JSON key; on the command line --name (underscores as dashes)
  ArgType type = ArgType::String;
  bool required = false;
  /** Given on the command line without --name, in declaration order; a positional StringList takes the rest. */
  bool positional = false;
  std::string description;
};

struct CommandSpec {
  std::string area;     // "greylist"
  std::string verb;     // "allow"
  std::string summary;  // one line
  std::vector<ArgSpec> args;
  /** Who implements it: "core" or the plugin's name. */
  std::string owner = "core";
  /**
   * Command-line arguments are passed through unparsed as the StringList
   * `argv` (core areas whose verbs keep their own option syntax).
   */
  bool raw = false;

  std::string name() const { return area + " " + verb; }
  /** "greylist allow NETWORK [--flag] [--name VALUE]" — the command-line synopsis. */
  std::string synopsis() const;
};

enum class Format { Text, Json };

/** A validated call: arguments match the spec (names, types, required ones present). */
struct Request {
  std::string area;
  std::string verb;
  boost::json::object args;
  Format format = Format::Text;
};

/** What a command answers. */
struct Reply {
  Exit exit = Exit::Ok;
  /** The machine-readable result (API clients); null when the command has none. */
  boost::json::value result;
  /** What a command-line client prints on stdout, rendered for the requested format. */
  std::string output;
  /** One line: why the command failed (exit != Ok). */
  std::string error;
  /** Further lines for stderr as they are (usage text, notes), possibly empty. */
  std::string diagnostics;

  static Reply failure(Exit exit, std::string error) {
    Reply r;
    r.exit = exit;
    r.error = std::move(error);
    return r;
  }
  /** A successful reply whose output is `text` in text format and the result's JSON in JSON format. */
  static Reply success(boost::json::value result, std::string text, Format format);
};

/**
 * Called exactly once with the reply, from any thread. The control server
 * makes a second call harmless; handlers must not rely on that.
 */
using Done = std::function<void(Reply)>;
/**
 * Runs a command. Called on the caller's thread (an I/O strand in posternd):
 * a handler that touches disk or SQLite posts that work to the worker pool
 * (control::on_pool) and calls `done` from there.
 */
using Handler = std::function<void(Request, Done)>;

struct Command {
  CommandSpec spec;
  Handler handler;
};

}  // namespace postern::core::control
