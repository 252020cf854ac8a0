// posternctl — Postern's administration tool, a client of the control plane
// (docs/control-plane.md).
//
//   posternctl --config FILE <area> <verb> [args] [--json]
//   posternctl --config FILE help [AREA]
//
// With posternd running, every command goes to its control socket
// (<server control-socket=>, default <data-dir>/posternd.sock): core's areas
// (domain, user, alias, list, router, queue, relay, plugins) and each
// plugin's (greylist, ...). Without the daemon, core's areas run here on the
// data directory's files; a plugin's area then fails with one line saying
// that posternd must run.
// Passwords (--password-stdin, and `user passwd`) are read here from stdin
// and sent over the owner-only socket, never on a command line.
// Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 exists.

#include "core/app/ctl/ctl.hpp"
#include "core/config/manifest.hpp"
#include "core/control/client.hpp"
#include "core/control/registry.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace postern::core;

int usage(FILE* out) {
  std::fprintf(out,
               "usage: posternctl --config FILE <area> <verb> [args] [--json]\n"
               "       posternctl --config FILE help [AREA]   (every command; with posternd running, plugins' too)\n"
               "areas: plugins domain user alias list router queue relay, and those of loaded plugins (greylist)\n");
  return ctl::kUsage;
}

/**
 * Reads the password from stdin where the command asks for it (user add
 * --password-stdin, user passwd without --password) and puts it into the
 * arguments. @return false after printing why not.
 */
bool take_password(std::vector<std::string>& args, int& code) {
  if (args.size() < 2 || args[0] != "user" || (args[1] != "add" && args[1] != "passwd")) return true;
  bool given = false;
  size_t stdin_flag = args.size();
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--password" || args[i].starts_with("--password=")) given = true;
    if (args[i] == "--password-stdin") stdin_flag = i;
  }
  if (given || (stdin_flag == args.size() && args[1] == "add")) return true;
  std::string line;
  if (!std::getline(std::cin, line)) {
    code = ctl::fail(ctl::kUsage, "no password on stdin (--password-stdin reads one line)");
    return false;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (stdin_flag != args.size()) args.erase(args.begin() + static_cast<std::ptrdiff_t>(stdin_flag));
  args.push_back("--password=" + line);
  return true;
}

int print(const control::Reply& r) {
  std::fwrite(r.output.data(), 1, r.output.size(), stdout);
  if (!r.diagnostics.empty()) {
    std::fputs(r.diagnostics.c_str(), stderr);
  } else if (!r.error.empty()) {
    std::fprintf(stderr, "posternctl: %s\n", r.error.c_str());
  }
  return static_cast<int>(r.exit);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file;
  std::vector<std::string> args;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (a.starts_with("--config=")) {
      config_file = std::string(a.substr(9));
    } else if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      args.emplace_back(a);
    }
  }
  if (config_file.empty() || args.empty()) return usage(stderr);
  // The plugins area's own spelling of its verb.
  if (args[0] == "plugins" && args.size() >= 2 && args[1] == "--order") args[1] = "order";

  config::LoadResult lr = config::load_manifest(config_file);
  if (!lr.manifest || !lr.errors.empty()) {
    for (const auto& e : lr.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "posternctl: %s is invalid\n", config_file.c_str());
    return ctl::kFail;
  }
  int code = ctl::kOk;
  if (!take_password(args, code)) return code;
  // posternd has its own working directory: a file named here is named absolutely there.
  if (args[0] == "relay") {
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--message" && i + 1 < args.size()) {
        args[i + 1] = std::filesystem::absolute(args[i + 1]).string();
      } else if (args[i].starts_with("--message=")) {
        args[i] = "--message=" + std::filesystem::absolute(args[i].substr(10)).string();
      }
    }
  }

  boost::json::array words;
  for (const auto& a : args) words.emplace_back(a);
  const boost::json::object request{{"argv", std::move(words)}, {"format", json ? "json" : "text"}};

  control::ClientResult daemon = control::call_daemon(lr.manifest->control_socket, request);
  if (daemon.kind == control::ClientResult::Kind::Replied) return print(daemon.reply);
  if (daemon.kind == control::ClientResult::Kind::Error) return ctl::fail(ctl::kFail, daemon.error);

  // No daemon: core's areas work on the files here.
  control::Registry local;
  ctl::add_core_commands(
      local, [m = lr.manifest] { return ctl::CoreContext{m, nullptr}; },
      [](std::function<void()> fn) { fn(); });
  if (args[0] != "help" && !local.core_area(args[0])) {
    return ctl::fail(ctl::kFail, "'" + args[0] + "' is not a core area; if a plugin serves it, posternd must run (" +
                                     daemon.error + ")");
  }
  control::Reply reply;
  local.call(request, [&reply](control::Reply r) { reply = std::move(r); });
  return print(reply);
}
