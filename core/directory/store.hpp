#pragma once
// The directory's storage interface (DESIGN.md §5: SQLite by default, a
// shared backend later). A store keeps records and enforces their integrity
// inside its own transactions (an address is an account, an alias or a list,
// never two of them; accounts and lists live in local domains); the Directory
// above it normalises and validates the syntax of what it passes down.
// Addresses and domains arrive lower-case.

#include "core/directory/directory.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::directory {

enum class DomainKind { Local, Gateway, Alias };
std::string_view domain_kind_name(DomainKind kind);

struct DomainRecord {
  std::string name;
  DomainKind kind = DomainKind::Local;
  std::string alias_of;  // DomainKind::Alias: the local domain it maps to
};

struct AccountRecord {
  std::string address;
  std::string real_name;
  std::string password_hash;  // kNoPassword ("!"): no login
  uint64_t quota_bytes = 0;
  uint32_t services = kAllServices;
  bool enabled = true;
  std::vector<std::string> forward;  // forwarding targets; empty: none
  bool keep_copy = true;             // with forwarding: also deliver to the mailbox
};

/** An alias: one address to several. The local part "*" is the domain's catch-all. */
struct AliasRecord {
  std::string address;
  std::vector<std::string> targets;
};

/** Who may post to a list. */
enum class PostPolicy { Anyone, Members, Senders };
std::string_view post_policy_name(PostPolicy policy);
std::optional<PostPolicy> parse_post_policy(std::string_view text);

struct ListRecord {
  std::string address;
  PostPolicy policy = PostPolicy::Anyone;
  std::vector<std::string> members;
  std::vector<std::string> senders;  // PostPolicy::Senders: who may post (members may not unless listed)
};

/** Everything, read in one consistent transaction. */
struct DirectoryData {
  std::vector<DomainRecord> domains;
  std::vector<AccountRecord> accounts;
  std::vector<AliasRecord> aliases;
  std::vector<ListRecord> lists;
  std::vector<std::string> router;  // rule texts in table order (position 1..n)
};

/** The outcome of a management call; `message` is a complete sentence for the operator. */
struct Status {
  enum class Code {
    Ok,
    NotFound,  // the domain/account/alias/list/rule does not exist
    Exists,    // already there (or the address is taken by another kind)
    Invalid,   // bad input: syntax, wrong domain kind
    Refused,   // valid but not allowed now (a domain that still has accounts)
  };
  Code code = Code::Ok;
  std::string message;
  bool ok() const { return code == Code::Ok; }
  static Status success() { return {}; }
  static Status not_found(std::string m) { return {Code::NotFound, std::move(m)}; }
  static Status exists(std::string m) { return {Code::Exists, std::move(m)}; }
  static Status invalid(std::string m) { return {Code::Invalid, std::move(m)}; }
  static Status refused(std::string m) { return {Code::Refused, std::move(m)}; }
};

/**
 * THREADING: one store object is used under the Directory's mutex; several
 * processes may open the same database (posternctl while posternd runs).
 * ERRORS: storage failures (I/O, corruption, lock timeout) throw std::runtime_error.
 */
class DirectoryStore {
 public:
  virtual ~DirectoryStore() = default;

  virtual DirectoryData load() = 0;
  /** A value that changes whenever any process commits a change (cheap; polled once a second). */
  virtual uint64_t change_marker() = 0;

  virtual Status add_domain(const DomainRecord& d) = 0;
  /** Refuses when the domain has accounts, aliases, lists or domain aliases, unless `force` removes them too. */
  virtual Status del_domain(const std::string& name, bool force) = 0;

  virtual Status add_account(const AccountRecord& a) = 0;
  virtual Status del_account(const std::string& address) = 0;
  /** Replaces the account's fields except the address (password, quota, flags, forwarding). */
  virtual Status update_account(const AccountRecord& a) = 0;

  /** Adds targets to an alias (creating it). */
  virtual Status add_alias(const std::string& address, const std::vector<std::string>& targets) = 0;
  /** Removes `targets` from the alias, or the whole alias when `targets` is empty. */
  virtual Status del_alias(const std::string& address, const std::vector<std::string>& targets) = 0;

  virtual Status add_list(const std::string& address, PostPolicy policy) = 0;
  virtual Status del_list(const std::string& address) = 0;
  virtual Status set_list_policy(const std::string& address, PostPolicy policy) = 0;
  /** `sender` false: members; true: listed senders. */
  virtual Status add_list_entries(const std::string& list, const std::vector<std::string>& addresses, bool sender) = 0;
  virtual Status del_list_entries(const std::string& list, const std::vector<std::string>& addresses, bool sender) = 0;

  /** Inserts a rule at `position` (1-based; 0 or past the end: append). */
  virtual Status add_router_rule(const std::string& rule, size_t position) = 0;
  virtual Status del_router_rule(size_t position) = 0;
};

}  // namespace postern::core::directory
