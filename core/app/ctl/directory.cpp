// posternctl domain/user/alias/list/router: the directory database
// (<directory file=>, docs/directory.md). With posternd running, these run
// in the daemon on its own Directory, so a change is in force when the
// command returns; without it, posternctl opens the SQLite file itself. Passwords are read from stdin
// (--password-stdin, the default for `user passwd`) so that they never show
// in ps; hashes are never printed.

#include "core/app/ctl/ctl.hpp"
#include "core/directory/directory.hpp"
#include "core/directory/directory_config.hpp"
#include "core/directory/router.hpp"
#include "core/directory/store.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>

namespace postern::core::ctl {

namespace {

using namespace directory;

constexpr const char* kDomainUsage =
    "usage: posternctl --config FILE domain add NAME [--gateway | --alias-of DOMAIN]\n"
    "       posternctl --config FILE domain del NAME [--force]\n"
    "       posternctl --config FILE domain list [--json]\n";
constexpr const char* kUserUsage =
    "usage: posternctl --config FILE user add ADDRESS [--password-stdin | --password P] [--name \"Real Name\"] "
    "[--quota SIZE]\n"
    "       posternctl --config FILE user del ADDRESS\n"
    "       posternctl --config FILE user list [DOMAIN] [--json]\n"
    "       posternctl --config FILE user show ADDRESS [--json]\n"
    "       posternctl --config FILE user passwd ADDRESS [--password-stdin | --password P]\n"
    "       posternctl --config FILE user quota ADDRESS SIZE|unlimited\n"
    "       posternctl --config FILE user name ADDRESS \"Real Name\"\n"
    "       posternctl --config FILE user enable|disable ADDRESS [--service smtp|imap|pop3]...\n"
    "       posternctl --config FILE user forward ADDRESS TARGET... [--keep-copy] | --off\n";
constexpr const char* kAliasUsage =
    "usage: posternctl --config FILE alias add ADDRESS TARGET...   (ADDRESS *@DOMAIN: the catch-all)\n"
    "       posternctl --config FILE alias del ADDRESS [TARGET...]\n"
    "       posternctl --config FILE alias list [DOMAIN] [--json]\n";
constexpr const char* kListUsage =
    "usage: posternctl --config FILE list add ADDRESS [--policy anyone|members|senders]\n"
    "       posternctl --config FILE list del ADDRESS\n"
    "       posternctl --config FILE list policy ADDRESS anyone|members|senders\n"
    "       posternctl --config FILE list show [ADDRESS] [--json]\n"
    "       posternctl --config FILE list members ADDRESS [add|del MEMBER...] [--json]\n"
    "       posternctl --config FILE list senders ADDRESS [add|del SENDER...] [--json]\n";
constexpr const char* kRouterUsage =
    "usage: posternctl --config FILE router show [--json]\n"
    "       posternctl --config FILE router test ADDRESS [--sender ADDRESS] [--json]\n"
    "       posternctl --config FILE router add 'PATTERN = REPLACEMENT' [--position N]\n"
    "       posternctl --config FILE router del N\n";

int usage(const char* text) {
  eprint_str(text);
  return kUsage;
}

int bad_usage(const std::string& why, const char* text) {
  fail(kUsage, why);
  return usage(text);
}

/** Options of the form --name VALUE / --flag, removed from the positional arguments. */
struct Args {
  std::vector<std::string> pos;
  std::vector<std::pair<std::string, std::string>> opts;
  std::string bad;  // an unknown option or one missing its value

  bool has(std::string_view k) const {
    for (const auto& o : opts)
      if (o.first == k) return true;
    return false;
  }
  std::optional<std::string> get(std::string_view k) const {
    for (const auto& o : opts)
      if (o.first == k) return o.second;
    return std::nullopt;
  }
  std::vector<std::string> all(std::string_view k) const {
    std::vector<std::string> out;
    for (const auto& o : opts)
      if (o.first == k) out.push_back(o.second);
    return out;
  }
};

Args parse_args(const std::vector<std::string>& in, std::initializer_list<std::string_view> with_value,
                std::initializer_list<std::string_view> flags) {
  Args a;
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string& s = in[i];
    if (!s.starts_with("--")) {
      a.pos.push_back(s);
      continue;
    }
    std::string key = s, value;
    bool inline_value = false;
    if (size_t eq = s.find('='); eq != std::string::npos) {
      key = s.substr(0, eq);
      value = s.substr(eq + 1);
      inline_value = true;
    }
    bool known = false;
    for (auto k : with_value) {
      if (key == k) {
        known = true;
        if (!inline_value) {
          if (i + 1 >= in.size()) {
            a.bad = fmt::format("{} needs a value", key);
            return a;
          }
          value = in[++i];
        }
      }
    }
    for (auto k : flags) known = known || (key == k && !inline_value);
    if (!known) {
      a.bad = fmt::format("unknown option {}", s);
      return a;
    }
    a.opts.emplace_back(key, value);
  }
  return a;
}

int exit_for(const Status& s) {
  switch (s.code) {
    case Status::Code::Ok: return kOk;
    case Status::Code::NotFound: return kNotFound;
    case Status::Code::Exists: return kExists;
    case Status::Code::Invalid: return kUsage;
    case Status::Code::Refused: return kFail;
  }
  return kFail;
}

/** Reports a management result; `done` is the confirmation line. */
int report(const Command& c, const Status& s, const std::string& done) {
  if (!s.ok()) return fail(exit_for(s), s.message);
  if (c.json) print("{\"ok\":true,\"message\":\"%s\"}\n", json_escape(done).c_str());
  else print("%s\n", done.c_str());
  return kOk;
}

std::string jstr(std::string_view s) { return "\"" + json_escape(s) + "\""; }

std::string jarray(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + jstr(v[i]);
  return out + "]";
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(sep) : "") + v[i];
  return out;
}

bool in_domain(const std::string& address, const std::optional<std::string>& domain) {
  if (!domain) return true;
  const size_t at = address.rfind('@');
  std::string d = address.substr(at + 1), want = *domain;
  for (char& ch : want)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return d == want;
}

/**
 * The directory: posternd's own when the area runs in the daemon (its
 * snapshot is reloaded by every change, so a change is in force when the
 * command returns), else the one the manifest names; nullptr after printing why.
 */
std::shared_ptr<Directory> open(const Command& c, int& code) {
  if (c.directory) return c.directory;
  const DirectoryConfig cfg = parse_directory_config(c.manifest, nullptr);
  if (!cfg.enabled) {
    code = fail(kFail, "the manifest has no <directory> element; add <directory/> to use the directory");
    return nullptr;
  }
  try {
    auto dir = std::make_shared<Directory>(cfg.options);
    // Same first-start state whichever program opens the database first.
    for (const std::string& line : dir->ensure_defaults(cfg.local_domains)) {
      eprint("posternctl: note: %s\n", line.c_str());
    }
    return dir;
  } catch (const std::exception& e) {
    code = fail(kFail, fmt::format("cannot open the directory {}: {}", cfg.options.file, e.what()));
    return nullptr;
  }
}

/** The password from --password or stdin (one line). nullopt after printing why. */
std::optional<std::string> read_password(const Args& a, bool required, int& code) {
  if (auto p = a.get("--password")) {
    if (p->empty()) {
      code = fail(kUsage, "empty password");
      return std::nullopt;
    }
    return p;
  }
  if (!a.has("--password-stdin") && !required) return std::string();
  if (capturing()) {
    // In posternd: stdin is not the operator's; posternctl sends --password over the owner-only socket.
    code = fail(kUsage, "no password given (--password-stdin is read by posternctl, not by posternd)");
    return std::nullopt;
  }
  std::string line;
  if (!std::getline(std::cin, line)) {
    code = fail(kUsage, "no password on stdin (--password-stdin reads one line)");
    return std::nullopt;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    code = fail(kUsage, "empty password");
    return std::nullopt;
  }
  return line;
}

std::optional<uint64_t> parse_quota(std::string_view v) {
  if (v == "unlimited" || v == "none") return 0;
  return config::parse_size(v);
}

std::string services_text(uint32_t s) {
  std::vector<std::string> out;
  if (s & kSmtpAuth) out.emplace_back("smtp");
  if (s & kImap) out.emplace_back("imap");
  if (s & kPop3) out.emplace_back("pop3");
  return out.empty() ? "none" : join(out, ",");
}

std::vector<std::string> services_list(uint32_t s) {
  std::vector<std::string> out;
  if (s & kSmtpAuth) out.emplace_back("smtp");
  if (s & kImap) out.emplace_back("imap");
  if (s & kPop3) out.emplace_back("pop3");
  return out;
}

std::string account_json(const AccountRecord& a) {
  return fmt::format(
      "{{\"address\":{},\"real_name\":{},\"quota\":{},\"enabled\":{},\"services\":{},\"has_password\":{},"
      "\"forward\":{},\"keep_copy\":{}}}",
      jstr(a.address), jstr(a.real_name), a.quota_bytes, a.enabled ? "true" : "false",
      jarray(services_list(a.services)), a.password_hash != kNoPassword && !a.password_hash.empty() ? "true" : "false",
      jarray(a.forward), a.keep_copy ? "true" : "false");
}

std::string list_json(const ListRecord& l) {
  return fmt::format("{{\"address\":{},\"policy\":{},\"members\":{},\"senders\":{}}}", jstr(l.address),
                     jstr(post_policy_name(l.policy)), jarray(l.members), jarray(l.senders));
}

}  // namespace

int domain(Command& c) {
  Args a = parse_args(c.args, {"--alias-of"}, {"--gateway", "--force"});
  if (!a.bad.empty()) return bad_usage(a.bad, kDomainUsage);
  if (a.pos.empty()) return usage(kDomainUsage);
  const std::string verb = a.pos[0];
  int code = kOk;
  if (verb == "add" && a.pos.size() == 2) {
    if (a.has("--gateway") && a.has("--alias-of")) return fail(kUsage, "--gateway and --alias-of exclude each other");
    auto dir = open(c, code);
    if (!dir) return code;
    const DomainKind kind = a.has("--gateway") ? DomainKind::Gateway
                            : a.has("--alias-of") ? DomainKind::Alias
                                                  : DomainKind::Local;
    Status s = dir->add_domain(a.pos[1], kind, a.get("--alias-of").value_or(""));
    return report(c, s, fmt::format("domain {} added ({})", a.pos[1], domain_kind_name(kind)));
  }
  if (verb == "del" && a.pos.size() == 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->del_domain(a.pos[1], a.has("--force")), fmt::format("domain {} deleted", a.pos[1]));
  }
  if (verb == "list" && a.pos.size() == 1) {
    auto dir = open(c, code);
    if (!dir) return code;
    const auto data = dir->data();
    std::string out = c.json ? "[" : "";
    for (size_t i = 0; i < data->domains.size(); ++i) {
      const DomainRecord& d = data->domains[i];
      const bool dflt = d.name == dir->default_domain();
      if (c.json) {
        out += fmt::format("{}{{\"name\":{},\"kind\":{},\"alias_of\":{},\"default\":{}}}", i ? "," : "", jstr(d.name),
                           jstr(domain_kind_name(d.kind)), d.alias_of.empty() ? "null" : jstr(d.alias_of),
                           dflt ? "true" : "false");
      } else {
        out += fmt::format("{:<32} {:<8}{}{}\n", d.name, domain_kind_name(d.kind),
                           d.alias_of.empty() ? "" : " -> " + d.alias_of, dflt ? " (default)" : "");
      }
    }
    if (c.json) out += "]\n";
    print_str(out.c_str());
    return kOk;
  }
  return usage(kDomainUsage);
}

int user(Command& c) {
  Args a = parse_args(c.args, {"--password", "--name", "--quota", "--service"},
                      {"--password-stdin", "--keep-copy", "--off"});
  if (!a.bad.empty()) return bad_usage(a.bad, kUserUsage);
  if (a.pos.empty()) return usage(kUserUsage);
  const std::string verb = a.pos[0];
  int code = kOk;
  if (verb == "add" && a.pos.size() == 2) {
    uint64_t quota = 0;
    if (auto q = a.get("--quota")) {
      auto v = parse_quota(*q);
      if (!v) return fail(kUsage, fmt::format("--quota {}: not a size (e.g. 100M, 2G, unlimited)", *q));
      quota = *v;
    }
    auto pw = read_password(a, false, code);
    if (!pw) return code;
    auto dir = open(c, code);
    if (!dir) return code;
    Status s = dir->add_account(a.pos[1], a.get("--name").value_or(""),
                                pw->empty() ? std::nullopt : std::optional<std::string>(*pw), quota);
    return report(c, s,
                  fmt::format("account {} added{}", a.pos[1],
                              pw->empty() ? " (no password: logins are refused until `user passwd`)" : ""));
  }
  if (verb == "del" && a.pos.size() == 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->del_account(a.pos[1]), fmt::format("account {} deleted", a.pos[1]));
  }
  if (verb == "passwd" && a.pos.size() == 2) {
    auto pw = read_password(a, true, code);
    if (!pw) return code;
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->set_password(a.pos[1], *pw), fmt::format("password of {} changed", a.pos[1]));
  }
  if (verb == "quota" && a.pos.size() == 3) {
    auto q = parse_quota(a.pos[2]);
    if (!q) return fail(kUsage, fmt::format("{}: not a size (e.g. 100M, 2G, unlimited)", a.pos[2]));
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->set_quota(a.pos[1], *q),
                  fmt::format("quota of {} set to {}", a.pos[1], *q ? std::to_string(*q) + " octets" : "unlimited"));
  }
  if (verb == "name" && a.pos.size() == 3) {
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->set_real_name(a.pos[1], a.pos[2]), fmt::format("real name of {} set", a.pos[1]));
  }
  if ((verb == "enable" || verb == "disable") && a.pos.size() == 2) {
    uint32_t services = 0;
    for (const std::string& s : a.all("--service")) {
      if (s == "smtp") services |= kSmtpAuth;
      else if (s == "imap") services |= kImap;
      else if (s == "pop3") services |= kPop3;
      else return fail(kUsage, fmt::format("--service {}: expected smtp, imap or pop3", s));
    }
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->set_enabled(a.pos[1], verb == "enable", services),
                  fmt::format("{} {}{}", a.pos[1], verb == "enable" ? "enabled" : "disabled",
                              services ? " for " + services_text(services) : ""));
  }
  if (verb == "forward" && a.pos.size() >= 2) {
    const bool off = a.has("--off");
    if (off == (a.pos.size() > 2)) return fail(kUsage, "user forward ADDRESS TARGET... [--keep-copy], or --off");
    auto dir = open(c, code);
    if (!dir) return code;
    std::vector<std::string> targets(a.pos.begin() + 2, a.pos.end());
    return report(c, dir->set_forward(a.pos[1], targets, a.has("--keep-copy")),
                  off ? fmt::format("forwarding of {} off", a.pos[1])
                      : fmt::format("{} forwards to {}{}", a.pos[1], join(targets, ", "),
                                    a.has("--keep-copy") ? " and keeps a copy" : ""));
  }
  if ((verb == "list" && a.pos.size() <= 2) || (verb == "show" && a.pos.size() == 2)) {
    auto dir = open(c, code);
    if (!dir) return code;
    const auto data = dir->data();
    if (verb == "show") {
      auto info = dir->account(a.pos[1]);
      const AccountRecord* rec = nullptr;
      for (const AccountRecord& r : data->accounts)
        if (info && r.address == info->address) rec = &r;
      if (!rec) return fail(kNotFound, fmt::format("account {} does not exist", a.pos[1]));
      if (c.json) {
        print("%s\n", account_json(*rec).c_str());
      } else {
        print("address:   %s\nname:      %s\nenabled:   %s\nservices:  %s\nquota:     %s\npassword:  %s\n",
                    rec->address.c_str(), rec->real_name.c_str(), rec->enabled ? "yes" : "no",
                    services_text(rec->services).c_str(),
                    rec->quota_bytes ? std::to_string(rec->quota_bytes).c_str() : "unlimited",
                    rec->password_hash == kNoPassword ? "not set (logins refused)" : "set");
        if (!rec->forward.empty()) {
          print("forward:   %s%s\n", join(rec->forward, ", ").c_str(),
                      rec->keep_copy ? " (keeps a copy)" : "");
        }
      }
      return kOk;
    }
    std::optional<std::string> dom;
    if (a.pos.size() == 2) dom = a.pos[1];
    std::string out = c.json ? "[" : "";
    bool first = true;
    for (const AccountRecord& r : data->accounts) {
      if (!in_domain(r.address, dom)) continue;
      if (c.json) out += (first ? "" : ",") + account_json(r);
      else
        out += fmt::format("{:<40} {:<8} {:<14} {}\n", r.address, r.enabled ? "enabled" : "disabled",
                           r.quota_bytes ? std::to_string(r.quota_bytes) : "unlimited", r.real_name);
      first = false;
    }
    if (c.json) out += "]\n";
    print_str(out.c_str());
    return kOk;
  }
  return usage(kUserUsage);
}

int alias(Command& c) {
  Args a = parse_args(c.args, {}, {});
  if (!a.bad.empty()) return bad_usage(a.bad, kAliasUsage);
  if (a.pos.empty()) return usage(kAliasUsage);
  const std::string verb = a.pos[0];
  int code = kOk;
  if (verb == "add" && a.pos.size() >= 3) {
    auto dir = open(c, code);
    if (!dir) return code;
    std::vector<std::string> targets(a.pos.begin() + 2, a.pos.end());
    return report(c, dir->add_alias(a.pos[1], targets), fmt::format("alias {} -> {}", a.pos[1], join(targets, ", ")));
  }
  if (verb == "del" && a.pos.size() >= 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    std::vector<std::string> targets(a.pos.begin() + 2, a.pos.end());
    return report(c, dir->del_alias(a.pos[1], targets),
                  targets.empty() ? fmt::format("alias {} deleted", a.pos[1])
                                  : fmt::format("alias {}: removed {}", a.pos[1], join(targets, ", ")));
  }
  if (verb == "list" && a.pos.size() <= 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    std::optional<std::string> dom;
    if (a.pos.size() == 2) dom = a.pos[1];
    std::string out = c.json ? "[" : "";
    bool first = true;
    for (const AliasRecord& r : dir->data()->aliases) {
      if (!in_domain(r.address, dom)) continue;
      const bool catch_all = r.address.starts_with("*@");
      if (c.json) {
        out += fmt::format("{}{{\"address\":{},\"targets\":{},\"catch_all\":{}}}", first ? "" : ",", jstr(r.address),
                           jarray(r.targets), catch_all ? "true" : "false");
      } else {
        out += fmt::format("{:<40} -> {}{}\n", r.address, join(r.targets, ", "), catch_all ? "   (catch-all)" : "");
      }
      first = false;
    }
    if (c.json) out += "]\n";
    print_str(out.c_str());
    return kOk;
  }
  return usage(kAliasUsage);
}

int list(Command& c) {
  Args a = parse_args(c.args, {"--policy"}, {});
  if (!a.bad.empty()) return bad_usage(a.bad, kListUsage);
  if (a.pos.empty()) return usage(kListUsage);
  const std::string verb = a.pos[0];
  int code = kOk;
  auto policy_of = [&](const std::string& text) -> std::optional<PostPolicy> {
    auto p = parse_post_policy(text);
    if (!p) fail(kUsage, fmt::format("policy {}: expected anyone, members or senders", text));
    return p;
  };
  if (verb == "add" && a.pos.size() == 2) {
    auto p = policy_of(a.get("--policy").value_or("anyone"));
    if (!p) return kUsage;
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->add_list(a.pos[1], *p),
                  fmt::format("list {} added (posting: {})", a.pos[1], post_policy_name(*p)));
  }
  if (verb == "del" && a.pos.size() == 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->del_list(a.pos[1]), fmt::format("list {} deleted", a.pos[1]));
  }
  if (verb == "policy" && a.pos.size() == 3) {
    auto p = policy_of(a.pos[2]);
    if (!p) return kUsage;
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->set_list_policy(a.pos[1], *p),
                  fmt::format("list {}: posting {}", a.pos[1], post_policy_name(*p)));
  }
  if ((verb == "members" || verb == "senders") && a.pos.size() >= 2) {
    const bool senders = verb == "senders";
    auto dir = open(c, code);
    if (!dir) return code;
    if (a.pos.size() >= 3) {
      const std::string& op = a.pos[2];
      std::vector<std::string> who(a.pos.begin() + 3, a.pos.end());
      if ((op != "add" && op != "del") || who.empty()) return usage(kListUsage);
      Status s = op == "add" ? dir->add_list_entries(a.pos[1], who, senders)
                             : dir->del_list_entries(a.pos[1], who, senders);
      return report(c, s,
                    fmt::format("list {}: {} {} {}", a.pos[1], op == "add" ? "added" : "removed",
                                senders ? "sender(s)" : "member(s)", join(who, ", ")));
    }
    auto data = dir->data();
    std::string want = a.pos[1];
    for (char& ch : want)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (want.find('@') == std::string::npos) want += "@" + dir->default_domain();
    for (const ListRecord& l : data->lists) {
      if (l.address != want) continue;
      const auto& v = senders ? l.senders : l.members;
      if (c.json) print("%s\n", jarray(v).c_str());
      else
        for (const auto& m : v) print("%s\n", m.c_str());
      return kOk;
    }
    return fail(kNotFound, fmt::format("list {} does not exist", want));
  }
  if (verb == "show" && a.pos.size() <= 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    std::optional<std::string> one;
    if (a.pos.size() == 2) {
      one = a.pos[1];
      for (char& ch : *one)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      if (one->find('@') == std::string::npos) *one += "@" + dir->default_domain();
    }
    std::string out = c.json && !one ? "[" : "";
    bool first = true;
    for (const ListRecord& l : dir->data()->lists) {
      if (one && l.address != *one) continue;
      if (c.json) out += (first ? "" : ",") + list_json(l) + (one ? "\n" : "");
      else
        out += fmt::format("{:<40} posting={:<8} members={} senders={}\n", l.address, post_policy_name(l.policy),
                           l.members.size(), l.senders.size());
      first = false;
    }
    if (one && first) return fail(kNotFound, fmt::format("list {} does not exist", *one));
    if (c.json && !one) out += "]\n";
    print_str(out.c_str());
    return kOk;
  }
  return usage(kListUsage);
}

int router(Command& c) {
  Args a = parse_args(c.args, {"--sender", "--position"}, {});
  if (!a.bad.empty()) return bad_usage(a.bad, kRouterUsage);
  if (a.pos.empty()) return usage(kRouterUsage);
  const std::string verb = a.pos[0];
  int code = kOk;
  if (verb == "show" && a.pos.size() == 1) {
    auto dir = open(c, code);
    if (!dir) return code;
    const auto data = dir->data();
    std::string out = c.json ? "[" : "";
    for (size_t i = 0; i < data->router.size(); ++i) {
      std::string err;
      const bool valid = parse_router_rule(data->router[i], &err).has_value();
      if (c.json) {
        out += fmt::format("{}{{\"position\":{},\"rule\":{},\"valid\":{}}}", i ? "," : "", i + 1,
                           jstr(data->router[i]), valid ? "true" : "false");
      } else {
        out += fmt::format("{:>3}  {}{}\n", i + 1, data->router[i], valid ? "" : "   (invalid: ignored)");
      }
    }
    if (c.json) out += "]\n";
    print_str(out.c_str());
    return kOk;
  }
  if (verb == "test" && a.pos.size() == 2) {
    auto dir = open(c, code);
    if (!dir) return code;
    const RouteResult r = dir->route(a.pos[1]);
    const Resolution res = dir->resolve(a.pos[1], a.get("--sender").value_or(""));
    static constexpr const char* kNames[] = {"ok", "not-ours", "unknown-user", "disabled", "refused", "loop"};
    const char* status = kNames[static_cast<int>(res.status)];
    if (c.json) {
      std::string targets = "[";
      for (size_t i = 0; i < res.targets.size(); ++i) {
        targets += fmt::format("{}{{\"kind\":{},\"address\":{}}}", i ? "," : "",
                               jstr(res.targets[i].kind == Target::Kind::Local ? "local" : "remote"),
                               jstr(res.targets[i].address));
      }
      targets += "]";
      print("{\"address\":%s,\"routed\":%s,\"steps\":%s,\"status\":%s,\"reason\":%s,\"targets\":%s}\n",
                  jstr(a.pos[1]).c_str(), jstr(r.address).c_str(), jarray(r.steps).c_str(), jstr(status).c_str(),
                  jstr(res.reason).c_str(), targets.c_str());
    } else {
      for (const std::string& s : r.steps) print("%s\n", s.c_str());
      print("routed:  %s\nresult:  %s%s\n", r.address.c_str(), status,
                  res.reason.empty() ? "" : (" (" + res.reason + ")").c_str());
      for (const Target& t : res.targets) {
        print("  %-6s  %s\n", t.kind == Target::Kind::Local ? "local" : "remote", t.address.c_str());
      }
    }
    return kOk;
  }
  if (verb == "add" && a.pos.size() >= 2) {
    size_t position = 0;
    if (auto p = a.get("--position")) {
      try {
        position = std::stoul(*p);
      } catch (const std::exception&) {
        return fail(kUsage, fmt::format("--position {}: expected a number", *p));
      }
    }
    const std::string rule = join(std::vector<std::string>(a.pos.begin() + 1, a.pos.end()), " ");
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->add_router_rule(rule, position), fmt::format("router rule added: {}", rule));
  }
  if (verb == "del" && a.pos.size() == 2) {
    size_t position = 0;
    try {
      position = std::stoul(a.pos[1]);
    } catch (const std::exception&) {
      return fail(kUsage, fmt::format("{}: expected a rule number (router show)", a.pos[1]));
    }
    auto dir = open(c, code);
    if (!dir) return code;
    return report(c, dir->del_router_rule(position), fmt::format("router rule #{} deleted", position));
  }
  return usage(kRouterUsage);
}

}  // namespace postern::core::ctl
