#pragma once
// The directory's in-memory view: built from DirectoryData, immutable, shared
// by readers through a shared_ptr that refresh() swaps. Resolution (router,
// domain aliases, lists, accounts with forwarding, aliases, catch-all) is a
// pure function of a snapshot, which is what the unit tests exercise.

#include "core/directory/directory.hpp"
#include "core/directory/router.hpp"
#include "core/directory/store.hpp"

#include <string>
#include <unordered_map>
#include <vector>

namespace postern::core::directory {

struct Snapshot {
  std::string default_domain;
  size_t router_loop_limit = 10;
  std::unordered_map<std::string, DomainRecord> domains;
  std::unordered_map<std::string, AccountRecord> accounts;
  std::unordered_map<std::string, std::vector<std::string>> aliases;
  std::unordered_map<std::string, ListRecord> lists;
  std::vector<RouterRule> router;
  std::vector<std::string> problems;  // stored rules that no longer parse (logged by the owner)
  DirectoryData data;                 // as loaded, for listings

  /** @param data as loaded; invalid router rules are skipped and listed in `problems`. */
  static Snapshot build(DirectoryData data, std::string default_domain, size_t router_loop_limit);

  const DomainRecord* domain(std::string_view name) const;
  /** Maps a domain alias to its local domain; other names unchanged (lower-case in, lower-case out). */
  std::string canonical_domain(const std::string& domain) const;
  /** The account for an address or login form (`%`, bare local part, domain alias); nullptr if none. */
  const AccountRecord* find_account(std::string_view address, bool login) const;

  Resolution resolve(std::string_view address, std::string_view sender) const;
  /** The router's rewriting steps for an address (posternctl router test). */
  RouteResult route(std::string_view address) const;
};

}  // namespace postern::core::directory
