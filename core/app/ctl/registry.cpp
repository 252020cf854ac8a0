// Core's areas in the control plane's registry (docs/control-plane.md):
// every verb of domain, user, alias, list, router, queue, relay and plugins
// becomes a command `<area> <verb>` whose handler runs the area's existing
// implementation with its output captured into the reply. Their arguments
// keep the areas' command-line syntax (the spec is `raw`: one string list,
// `argv`); the plugins' commands are typed (ABI 1.3).

#include "core/app/ctl/ctl.hpp"

#include <boost/json.hpp>

namespace postern::core::ctl {

namespace {

struct VerbInfo {
  const char* area;
  const char* verb;
  int (*run)(Command&);
  const char* summary;
};

int plugins_order(Command& c) {
  c.args.insert(c.args.begin() + 1, "--order");
  c.args.erase(c.args.begin());  // "order" -> "--order": the area's own spelling
  return plugins(c);
}

constexpr VerbInfo kVerbs[] = {
    {"plugins", "list", plugins, "plugins of the manifest, their versions and status"},
    {"plugins", "order", plugins_order, "the effective hook chain per stage (also: plugins --order)"},
    {"domain", "add", domain, "NAME [--gateway | --alias-of DOMAIN]"},
    {"domain", "del", domain, "NAME [--force]"},
    {"domain", "list", domain, "every domain"},
    {"user", "add", user, "ADDRESS [--password P] [--name \"Real Name\"] [--quota SIZE]"},
    {"user", "del", user, "ADDRESS"},
    {"user", "list", user, "[DOMAIN]"},
    {"user", "show", user, "ADDRESS"},
    {"user", "passwd", user, "ADDRESS --password P (posternctl reads it from stdin)"},
    {"user", "quota", user, "ADDRESS SIZE|unlimited"},
    {"user", "name", user, "ADDRESS \"Real Name\""},
    {"user", "enable", user, "ADDRESS [--service smtp|imap|pop3]..."},
    {"user", "disable", user, "ADDRESS [--service smtp|imap|pop3]..."},
    {"user", "forward", user, "ADDRESS TARGET... [--keep-copy] | --off"},
    {"alias", "add", alias, "ADDRESS TARGET... (ADDRESS *@DOMAIN: the catch-all)"},
    {"alias", "del", alias, "ADDRESS [TARGET...]"},
    {"alias", "list", alias, "[DOMAIN]"},
    {"list", "add", list, "ADDRESS [--policy anyone|members|senders]"},
    {"list", "del", list, "ADDRESS"},
    {"list", "policy", list, "ADDRESS anyone|members|senders"},
    {"list", "show", list, "[ADDRESS]"},
    {"list", "members", list, "ADDRESS [add|del MEMBER...]"},
    {"list", "senders", list, "ADDRESS [add|del SENDER...]"},
    {"router", "show", router, "the address router's rules"},
    {"router", "test", router, "ADDRESS [--sender ADDRESS]"},
    {"router", "add", router, "'PATTERN = REPLACEMENT' [--position N]"},
    {"router", "del", router, "N"},
    {"queue", "list", queue, "every message in the queue"},
    {"queue", "show", queue, "ID"},
    {"queue", "flush", queue, "[ID]: retry now"},
    {"queue", "hold", queue, "ID"},
    {"queue", "release", queue, "ID"},
    {"queue", "delete", queue, "ID"},
    {"queue", "resend", queue, "ID: requeue under a new id"},
    {"relay", "test", relay, "--from ADDR --to ADDR [--host HOST[:PORT]] [--tls ...]: a test message"},
};

}  // namespace

void add_core_commands(control::Registry& registry, std::function<CoreContext()> context,
                       std::function<void(std::function<void()>)> run) {
  for (const VerbInfo& v : kVerbs) {
    control::CommandSpec spec;
    spec.area = v.area;
    spec.verb = v.verb;
    spec.summary = v.summary;
    spec.raw = true;
    spec.args.push_back(control::ArgSpec{"argv", control::ArgType::StringList, false, true,
                                         "the verb's arguments, as on posternctl's command line"});
    registry.add(std::move(spec), [v, context, run](control::Request req, control::Done done) {
      run([v, context, req = std::move(req), done = std::move(done)]() mutable {
        const CoreContext cx = context();
        Command cmd{*cx.manifest, v.area, {v.verb}, req.format == control::Format::Json, cx.directory};
        if (const auto* argv = req.args.if_contains("argv")) {
          for (const auto& w : argv->as_array()) cmd.args.emplace_back(w.as_string());
        }
        control::Reply reply;
        int code = kFail;
        {
          Capture capture;
          try {
            code = v.run(cmd);
          } catch (const std::exception& e) {
            code = fail(kFail, e.what());
          }
          reply.output = std::move(capture.out);
          reply.diagnostics = std::move(capture.err);
        }
        reply.exit = control::exit_from_int(code);
        if (code != kOk) {
          // The first diagnostic line, without the program's name, is the error for API clients.
          std::string_view first(reply.diagnostics);
          first = first.substr(0, first.find('\n'));
          if (first.starts_with("posternctl: ")) first.remove_prefix(12);
          reply.error = std::string(first);
        }
        if (req.format == control::Format::Json) {
          boost::system::error_code ec;
          boost::json::value parsed = boost::json::parse(reply.output, ec);
          if (!ec) reply.result = std::move(parsed);
        }
        done(std::move(reply));
      });
    });
  }
}

}  // namespace postern::core::ctl
