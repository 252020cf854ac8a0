#include "core/directory/snapshot.hpp"

#include "core/directory/address.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <unordered_set>

namespace postern::core::directory {

namespace {

constexpr size_t kMaxDepth = 20;      // nested aliases/lists/forwards
constexpr size_t kMaxWork = 100000;   // addresses visited for one recipient (list explosions)

struct Expander {
  explicit Expander(const Snapshot& snap) : s(snap) {}

  const Snapshot& s;
  std::string sender;  // canonical, "" for the null sender
  std::vector<Target> targets;
  std::unordered_set<std::string> emitted;
  std::vector<std::string> path;  // the chain being expanded: a repeat is a loop
  std::optional<Resolution> stop;
  bool saw_disabled = false;
  bool saw_empty_list = false;
  size_t work = 0;

  void add(Target::Kind kind, const std::string& address) {
    if (emitted.insert((kind == Target::Kind::Local ? "L" : "R") + address).second) {
      targets.push_back({kind, address});
    }
  }

  void finish(Resolution::Status status, std::string reason) {
    if (!stop) stop = Resolution{status, {}, std::move(reason)};
  }

  bool may_post(const ListRecord& list) const {
    switch (list.policy) {
      case PostPolicy::Anyone: return true;
      case PostPolicy::Members: return std::find(list.members.begin(), list.members.end(), sender) != list.members.end();
      case PostPolicy::Senders: return std::find(list.senders.begin(), list.senders.end(), sender) != list.senders.end();
    }
    return false;
  }

  /** @param top the envelope recipient itself (not reached through an alias, list or forward). */
  void expand(std::string_view address, bool top) {
    if (stop) return;
    if (++work > kMaxWork) return finish(Resolution::Status::Refused, "address expansion too large");
    auto split = split_address(address, s.default_domain);
    if (!split) {
      if (top) return finish(Resolution::Status::UnknownUser, "not an address");
      return;
    }
    const bool input_ours = s.domain(split->domain) != nullptr;
    const std::string input = split->str();
    RouteResult routed = s.route(input);
    if (routed.status == RouteResult::Status::Loop) return finish(Resolution::Status::Loop, routed.reason);
    if (routed.status == RouteResult::Status::Refused) return finish(Resolution::Status::Refused, routed.reason);
    const size_t at = routed.address.rfind('@');
    const std::string domain = s.canonical_domain(routed.address.substr(at + 1));
    const std::string addr = routed.address.substr(0, at) + "@" + domain;
    const DomainRecord* d = s.domain(domain);
    if (d == nullptr) {
      // A foreign address stays foreign at the top (relay rules decide);
      // reached from one of our addresses it is an explicit forward.
      if (top && !input_ours) return finish(Resolution::Status::NotOurs, "");
      return add(Target::Kind::Remote, addr);
    }
    if (d->kind == DomainKind::Gateway) return add(Target::Kind::Remote, addr);

    if (std::find(path.begin(), path.end(), addr) != path.end()) {
      return finish(Resolution::Status::Loop, fmt::format("alias loop: {} expands to itself", addr));
    }
    if (path.size() >= kMaxDepth) {
      return finish(Resolution::Status::Loop, fmt::format("aliases nested deeper than {} at {}", kMaxDepth, addr));
    }
    path.push_back(addr);
    if (auto l = s.lists.find(addr); l != s.lists.end()) {
      // The policy holds wherever the list is reached, so an alias cannot open a closed list.
      if (!may_post(l->second)) {
        path.pop_back();
        return finish(Resolution::Status::Refused,
                      fmt::format("only {} may post to list {}",
                                  l->second.policy == PostPolicy::Members ? "members" : "listed senders", addr));
      }
      if (l->second.members.empty()) saw_empty_list = true;
      for (const std::string& m : l->second.members) expand(m, false);
    } else if (auto a = s.accounts.find(addr); a != s.accounts.end()) {
      const AccountRecord& acc = a->second;
      if (!acc.enabled) {
        path.pop_back();
        if (top) return finish(Resolution::Status::Disabled, fmt::format("account {} is disabled", addr));
        saw_disabled = true;  // one disabled member does not stop an alias or a list
        return;
      }
      if (acc.forward.empty() || acc.keep_copy) add(Target::Kind::Local, addr);
      for (const std::string& f : acc.forward) expand(f, false);
    } else if (auto al = s.aliases.find(addr); al != s.aliases.end()) {
      for (const std::string& t : al->second) expand(t, false);
    } else if (auto ca = s.aliases.find("*@" + domain); ca != s.aliases.end()) {
      for (const std::string& t : ca->second) expand(t, false);
    } else if (addr.compare(0, at + 1, "postmaster@") == 0 && domain != s.default_domain) {
      // RFC 5321 §4.5.1: every domain we serve has a postmaster. A domain the
      // operator gave none of its own shares the default domain's (made at
      // first start), as Postfix's "postmaster" alias does for every local domain.
      expand("postmaster@" + s.default_domain, false);
    } else if (top) {
      path.pop_back();
      return finish(Resolution::Status::UnknownUser, fmt::format("no such user {}", addr));
    }
    path.pop_back();
  }
};

}  // namespace

Snapshot Snapshot::build(DirectoryData data, std::string default_domain, size_t router_loop_limit) {
  Snapshot s;
  s.default_domain = std::move(default_domain);
  s.router_loop_limit = router_loop_limit;
  for (const DomainRecord& d : data.domains) s.domains.emplace(d.name, d);
  for (const AccountRecord& a : data.accounts) s.accounts.emplace(a.address, a);
  for (const AliasRecord& a : data.aliases) s.aliases.emplace(a.address, a.targets);
  for (const ListRecord& l : data.lists) s.lists.emplace(l.address, l);
  for (size_t i = 0; i < data.router.size(); ++i) {
    std::string err;
    if (auto r = parse_router_rule(data.router[i], &err)) s.router.push_back(std::move(*r));
    else s.problems.push_back(fmt::format("rule #{} ignored: {}", i + 1, err));
  }
  s.data = std::move(data);
  return s;
}

const DomainRecord* Snapshot::domain(std::string_view name) const {
  auto it = domains.find(std::string(name));
  return it == domains.end() ? nullptr : &it->second;
}

std::string Snapshot::canonical_domain(const std::string& name) const {
  const DomainRecord* d = domain(name);
  if (d != nullptr && d->kind == DomainKind::Alias) return d->alias_of;
  return name;
}

const AccountRecord* Snapshot::find_account(std::string_view address, bool login) const {
  auto split = split_address(address, default_domain, login);
  if (!split) return nullptr;
  auto it = accounts.find(split->local + "@" + canonical_domain(split->domain));
  return it == accounts.end() ? nullptr : &it->second;
}

RouteResult Snapshot::route(std::string_view address) const {
  return route_address(router, address, router_loop_limit);
}

Resolution Snapshot::resolve(std::string_view address, std::string_view sender) const {
  Expander e(*this);
  if (!sender.empty()) {
    if (auto s = split_address(sender, "")) e.sender = s->local + "@" + canonical_domain(s->domain);
  }
  e.expand(address, true);
  if (e.stop) return std::move(*e.stop);
  Resolution r;
  if (!e.targets.empty()) {
    r.status = Resolution::Status::Ok;
    r.targets = std::move(e.targets);
  } else if (e.saw_disabled) {
    r.status = Resolution::Status::Disabled;
    r.reason = "every mailbox behind this address is disabled";
  } else if (e.saw_empty_list) {
    r.status = Resolution::Status::Refused;
    r.reason = "the list has no members";
  } else {
    r.status = Resolution::Status::UnknownUser;
    r.reason = "no mailbox behind this address";
  }
  return r;
}

}  // namespace postern::core::directory
