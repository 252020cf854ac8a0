// Core's areas in the control plane's registry (docs/control-plane.md):
// every verb of domain, user, alias, list, router, queue, relay and plugins
// becomes a command `<area> <verb>` with typed arguments (what posternctl
// parses and the web admin's forms are made from), whose handler turns them
// back into the area's words and runs the area's existing implementation
// with its output captured into the reply.

#include "core/app/ctl/ctl.hpp"

#include <boost/json.hpp>

namespace postern::core::ctl {

namespace {

using control::ArgSpec;
using control::ArgType;

/** A positional string (required unless `optional`). */
ArgSpec pos(std::string name, std::string description, bool required = true) {
  return ArgSpec{std::move(name), ArgType::String, required, true, std::move(description)};
}
/** A positional list: the rest of the words. */
ArgSpec rest(std::string name, std::string description, bool required = false) {
  return ArgSpec{std::move(name), ArgType::StringList, required, true, std::move(description)};
}
/** --name VALUE. */
ArgSpec opt(std::string name, std::string description, ArgType type = ArgType::String) {
  return ArgSpec{std::move(name), type, false, false, std::move(description)};
}
/** A bare --name. */
ArgSpec flag(std::string name, std::string description) {
  return ArgSpec{std::move(name), ArgType::Boolean, false, false, std::move(description)};
}
/** --name VALUE, repeatable. */
ArgSpec repeated(std::string name, std::string description) {
  return ArgSpec{std::move(name), ArgType::StringList, false, false, std::move(description)};
}

struct VerbInfo {
  const char* area;
  const char* verb;
  int (*run)(Command&);
  const char* summary;
  std::vector<ArgSpec> args;
};

int plugins_order(Command& c) {
  c.args.erase(c.args.begin());  // "order" -> "--order": the area's own spelling
  c.args.insert(c.args.begin(), "--order");
  return plugins(c);
}

const std::vector<VerbInfo>& verbs() {
  static const std::vector<VerbInfo> kVerbs = [] {
    const ArgSpec address = pos("address", "the account's address");
    const ArgSpec list_address = pos("address", "the list's address");
    const ArgSpec queue_id = pos("id", "the queue id");
    const ArgSpec services = repeated("service", "smtp, imap or pop3 (repeatable; none: all of them)");
    const ArgSpec members = rest("addresses", "the addresses to add or remove");
    const ArgSpec action = pos("action", "add or del (none: show)", false);
    return std::vector<VerbInfo>{
        {"plugins", "list", plugins, "plugins of the manifest, their versions and status", {}},
        {"plugins", "order", plugins_order, "the effective hook chain per stage (also: plugins --order)", {}},
        {"domain", "add", domain, "adds a domain served here, a gateway domain or an alias domain",
         {pos("name", "the domain"), flag("gateway", "relay the domain's mail to its own MX instead of storing it"),
          opt("alias_of", "the domain this one is an alias of")}},
        {"domain", "del", domain, "removes a domain (--force: with its accounts and aliases)",
         {pos("name", "the domain"), flag("force", "also when accounts or aliases remain")}},
        {"domain", "list", domain, "every domain", {}},
        {"user", "add", user, "adds an account",
         {address, opt("password", "the password (posternctl: --password-stdin reads it from stdin)"),
          opt("name", "the real name"), opt("quota", "the mailbox quota: a size such as 500M, or unlimited")}},
        {"user", "del", user, "removes an account (its mail stays on disk)", {address}},
        {"user", "list", user, "accounts, of one domain or all", {pos("domain", "only this domain's", false)}},
        {"user", "show", user, "one account", {address}},
        {"user", "passwd", user, "sets a password (posternctl reads it from stdin)",
         {address, opt("password", "the new password")}},
        {"user", "quota", user, "sets the mailbox quota", {address, pos("size", "a size such as 500M, or unlimited")}},
        {"user", "name", user, "sets the real name", {address, pos("name", "the real name")}},
        {"user", "enable", user, "enables an account, or some of its services", {address, services}},
        {"user", "disable", user, "disables an account, or some of its services", {address, services}},
        {"user", "forward", user, "forwards an account's mail (--off: stops)",
         {address, rest("targets", "where to forward"), flag("keep_copy", "also keep a copy in the mailbox"),
          flag("off", "stop forwarding")}},
        {"alias", "add", alias, "adds targets to an alias (ADDRESS *@DOMAIN: the catch-all)",
         {pos("address", "the alias"), rest("targets", "where its mail goes", true)}},
        {"alias", "del", alias, "removes an alias, or some of its targets",
         {pos("address", "the alias"), rest("targets", "only these targets")}},
        {"alias", "list", alias, "aliases, of one domain or all", {pos("domain", "only this domain's", false)}},
        {"list", "add", list, "adds a distribution list",
         {list_address, opt("policy", "who may post: anyone, members or senders")}},
        {"list", "del", list, "removes a distribution list", {list_address}},
        {"list", "policy", list, "sets who may post",
         {list_address, pos("policy", "anyone, members or senders")}},
        {"list", "show", list, "one list or all", {pos("address", "the list's address", false)}},
        {"list", "members", list, "shows, adds or removes members", {list_address, action, members}},
        {"list", "senders", list, "shows, adds or removes the allowed senders", {list_address, action, members}},
        {"router", "show", router, "the address router's rules", {}},
        {"router", "test", router, "where the router sends an address",
         {pos("address", "the recipient"), opt("sender", "the envelope sender")}},
        {"router", "add", router, "adds a rule",
         {pos("rule", "'PATTERN = REPLACEMENT'"), opt("position", "1-based place in the list", ArgType::Integer)}},
        {"router", "del", router, "removes a rule", {ArgSpec{"index", ArgType::Integer, true, true, "the rule's number"}}},
        {"queue", "list", queue, "every message in the queue", {}},
        {"queue", "show", queue, "one message's envelope and state", {queue_id}},
        {"queue", "flush", queue, "retries now: one message or all", {pos("id", "the queue id", false)}},
        {"queue", "hold", queue, "holds a message (no delivery until released)", {queue_id}},
        {"queue", "release", queue, "releases a held message", {queue_id}},
        {"queue", "delete", queue, "deletes a message without a bounce", {queue_id}},
        {"queue", "resend", queue, "requeues a message under a new id", {queue_id}},
        {"relay", "test", relay, "sends a test message through the delivery path",
         {opt("from", "the envelope sender"), repeated("to", "a recipient (repeatable; at least one)"),
          opt("host", "HOST[:PORT]: this relay instead of the routing"),
          opt("tls", "the TLS policy for this test (none, may, encrypt, verify)"),
          opt("message", "a file with the message to send (posternctl makes the path absolute)"),
          flag("require_tls", "fail unless TLS is up"), flag("verify", "verify the certificate"),
          flag("verbose", "print the SMTP dialogue")}},
    };
  }();
  return kVerbs;
}

std::string option_word(std::string_view name) {
  std::string out = "--";
  for (char c : name) out += c == '_' ? '-' : c;
  return out;
}

}  // namespace

std::vector<std::string> area_argv(std::string_view verb, const std::vector<control::ArgSpec>& spec,
                                   const boost::json::object& args) {
  std::vector<std::string> out{std::string(verb)};
  for (const ArgSpec& a : spec) {
    const boost::json::value* v = args.if_contains(a.name);
    if (v == nullptr) continue;
    switch (a.type) {
      case ArgType::String:
        if (!a.positional) out.push_back(option_word(a.name));
        out.emplace_back(v->as_string());
        break;
      case ArgType::Integer:
        if (!a.positional) out.push_back(option_word(a.name));
        out.push_back(std::to_string(v->is_int64() ? v->as_int64() : static_cast<int64_t>(v->as_uint64())));
        break;
      case ArgType::Boolean:
        if (v->as_bool()) out.push_back(option_word(a.name));
        break;
      case ArgType::StringList:
        for (const auto& item : v->as_array()) {
          if (!a.positional) out.push_back(option_word(a.name));
          out.emplace_back(item.as_string());
        }
        break;
    }
  }
  return out;
}

void add_core_commands(control::Registry& registry, std::function<CoreContext()> context,
                       std::function<void(std::function<void()>)> run) {
  for (const VerbInfo& v : verbs()) {
    control::CommandSpec spec;
    spec.area = v.area;
    spec.verb = v.verb;
    spec.summary = v.summary;
    spec.args = v.args;
    registry.add(std::move(spec), [v, context, run](control::Request req, control::Done done) {
      run([v, context, req = std::move(req), done = std::move(done)]() mutable {
        const CoreContext cx = context();
        // One implementation per verb: the typed arguments become the area's words again.
        Command cmd{*cx.manifest, v.area, area_argv(v.verb, v.args, req.args), req.format == control::Format::Json,
                    cx.directory};
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
