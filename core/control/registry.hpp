#pragma once
// The one registry of administrative commands (docs/control-plane.md). Core
// areas are added at start; plugin areas come from a source the daemon sets
// (the plugins of the current chain), so a reload replaces them and an
// unloaded plugin's commands are gone with it.
//
// call() takes a request as the control socket carries it (a JSON object),
// validates it against the command's spec and runs the handler.
// THREADING: add() and set_source() before serving; call() from any thread.

#include "core/control/command.hpp"

#include <boost/json/value.hpp>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace postern::core::control {

class Registry {
 public:
  /** Plugin commands: every call asks the source for the current list. */
  using Source = std::function<std::vector<Command>()>;

  /** Adds a core command. @throws std::logic_error for a duplicate or an invalid spec. */
  void add(CommandSpec spec, Handler handler);
  void set_source(Source source) { source_ = std::move(source); }

  /** The command `area verb` (core first, then the source), or nullopt. */
  std::optional<Command> find(std::string_view area, std::string_view verb) const;
  /** Every command, core ones first, by area and verb. */
  std::vector<Command> all() const;
  /** Whether a core command serves `area`. */
  bool core_area(std::string_view area) const;

  /**
   * Runs one request (docs/control-plane.md "Requests"): `{"command": "area verb",
   * "args": {...}}` or `{"argv": ["area", "verb", ...]}`, with an optional
   * `"format": "text"|"json"`. Malformed requests, unknown commands and bad
   * arguments are answered with exit Usage and a one-line error, without
   * running anything. The built-in `help` command lists every command.
   * `done` runs exactly once (possibly on this thread).
   */
  void call(const boost::json::value& request, Done done) const;

 private:
  std::map<std::string, Command, std::less<>> core_;  // key: "area verb"
  Source source_;
};

/** Checks a spec (names, at most one positional StringList, last). @return why not, or empty. */
std::string check_spec(const CommandSpec& spec);

/**
 * Converts command-line words (after `area verb`) into arguments per `spec`.
 * @return the arguments, or nullopt with `error` set (a usage error).
 */
std::optional<boost::json::object> parse_command_line(const CommandSpec& spec, const std::vector<std::string>& words,
                                                      std::string* error);

/** Validates arguments against `spec`. @return empty, or the one-line usage error. */
std::string validate_args(const CommandSpec& spec, const boost::json::object& args);

/** The reply as a JSON object (docs/control-plane.md "Replies"), `id` echoed when not null. */
boost::json::object reply_to_json(const Reply& reply, const boost::json::value& id);
/** The inverse of reply_to_json (the client side). Missing fields stay default. */
Reply reply_from_json(const boost::json::object& o);

}  // namespace postern::core::control
