#pragma once
// The directory (D1-D3): domains, accounts, aliases, lists and the address
// router, stored in SQLite (directory.sqlite under the data dir) behind the
// DirectoryStore interface so that a shared backend can replace it later.
// posternd keeps an in-memory snapshot that it refreshes when the database
// changes (posternctl writes the file directly); lookups never block.
//
// The types and the first members of Directory are the contract other
// modules (SMTP engine, queue manager, IMAP/POP3) code against; the
// management members below them serve posternctl and the wiring.
// Design, schema, rules: docs/directory.md.

#include "core/directory/password.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::directory {

/** Services an account may use (D2 enabled flags). */
enum Service : uint32_t { kSmtpAuth = 1, kImap = 2, kPop3 = 4, kAllServices = 7 };

// Management types (core/directory/store.hpp, router.hpp); include those to call the management members.
struct Status;
struct DirectoryData;
struct RouteResult;
class DirectoryStore;
enum class DomainKind;
enum class PostPolicy;

/** Where a resolved address goes. */
struct Target {
  enum class Kind {
    Local,   // a local account's mailbox: `address` is the account's canonical address
    Remote,  // an address outside (forwarding, alias to remote, gateway domain): queue it out
  };
  Kind kind = Kind::Local;
  std::string address;
};

/** The result of resolving one envelope recipient through router, aliases, lists, forwards. */
struct Resolution {
  enum class Status {
    Ok,           // deliver to `targets` (never empty)
    NotOurs,      // the domain is neither local nor gateway: relay rules apply
    UnknownUser,  // 5.1.1
    Disabled,     // 5.2.1
    Refused,      // list posting policy etc.: 5.7.1, `reason` says why
    Loop,         // the router or alias expansion exceeded its loop limit: 5.4.6
  };
  Status status = Status::NotOurs;
  std::vector<Target> targets;
  std::string reason;
};

/** An account as the services see it. */
struct AccountInfo {
  std::string address;     // canonical local@domain, lower-case domain
  std::string real_name;
  uint64_t quota_bytes = 0;  // 0 = unlimited
  uint32_t services = kAllServices;
  bool enabled = true;
};

/**
 * The directory as posternd and posternctl use it. The members below are the
 * contract; the implementation may add more (management API for posternctl).
 * THREADING: lookups are thread-safe and answer from the in-memory snapshot.
 */
class Directory {
 public:
  struct Options {
    std::string file;                  // SQLite database path
    std::string default_domain;        // for bare local parts and the postmaster account
    size_t router_loop_limit = 10;
    HashParams hash;                   // argon2id cost for new passwords
  };
  /** Opens (creates and migrates) the database and loads the snapshot. @throws std::runtime_error with the reason. */
  explicit Directory(Options options);
  /** Over another storage backend (tests, a shared backend later). */
  Directory(Options options, std::unique_ptr<DirectoryStore> store);
  ~Directory();
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  /** Resolves one envelope recipient (router, aliases, catch-all, lists, forwards). */
  Resolution resolve(std::string_view address, std::string_view sender) const;
  /** The account with this canonical address (or login form: `%` for `@`); nullopt if none. */
  std::optional<AccountInfo> account(std::string_view address) const;
  /** Whether `domain` (any case) is a local domain or a domain alias of one. */
  bool is_local_domain(std::string_view domain) const;
  /** Whether `domain` is a gateway (remote) domain we accept mail for. */
  bool is_gateway_domain(std::string_view domain) const;
  /** Re-reads the database if it changed since the last load (posternd calls it periodically). */
  void refresh();
  /** Where RCPT checks learn an account's mailbox usage (octets) for 452 4.2.2. */
  struct UsageLookup {
    /**
     * Memory only (called on session strands): the usage when known without
     * I/O, 0 for an account known to have no mailbox yet; nullopt when only
     * `read` can tell. Null: always `read`.
     */
    std::function<std::optional<uint64_t>(std::string_view account)> cached;
    /** May block (disk; called on a worker): the usage, nullopt when the account has no mailbox. */
    std::function<std::optional<uint64_t>(std::string_view account)> read;
  };
  /** Set once by the mailstore wiring before the listeners start. */
  void set_usage_lookup(UsageLookup usage);

  // ---- Services (thread-safe; authenticate() hashes: never on an I/O thread) ----

  /**
   * Checks a login (full address, `%` for `@`, or a bare local part in the default domain).
   * @param service the service asking; an account without that flag, disabled, or without a
   *        usable password is refused. @return the account's canonical address on success.
   */
  std::optional<std::string> authenticate(std::string_view login, std::string_view password, Service service) const;
  /** Whether `account` may use `address` as a sender: its own address, through a domain alias, or an alias whose only target it is. */
  bool owns_address(std::string_view account, std::string_view address) const;
  /**
   * Whether the usage lookup reports the account at or over its quota (false
   * without a quota or a lookup). May block (UsageLookup::read): call it on a worker.
   */
  bool over_quota(std::string_view account) const;
  /**
   * over_quota() from memory only (never blocks): nullopt when the account has
   * a quota and its usage is not cached, i.e. only over_quota() on a worker can tell.
   */
  std::optional<bool> over_quota_cached(std::string_view account) const;
  const std::string& default_domain() const;
  /** The records as last loaded (listings). */
  std::shared_ptr<const DirectoryData> data() const;
  /** The router's steps for an address (posternctl router test). */
  RouteResult route(std::string_view address) const;

  // ---- Management (posternctl, wiring): blocking (SQLite, hashing), the snapshot is reloaded after each change ----

  Status add_domain(std::string_view name, DomainKind kind, std::string_view alias_of = {});
  /** Refuses a domain with accounts, aliases, lists or domain aliases unless `force`. */
  Status del_domain(std::string_view name, bool force);
  /** @param password nullopt: no usable password until set_password(). */
  Status add_account(std::string_view address, std::string_view real_name, const std::optional<std::string>& password,
                     uint64_t quota_bytes);
  Status del_account(std::string_view address);
  Status set_password(std::string_view address, std::string_view password);
  Status set_quota(std::string_view address, uint64_t quota_bytes);
  Status set_real_name(std::string_view address, std::string_view real_name);
  /** @param services 0: the account as a whole (mail and every login); else the listed service flags. */
  Status set_enabled(std::string_view address, bool enabled, uint32_t services);
  /** @param targets empty: forwarding off. */
  Status set_forward(std::string_view address, const std::vector<std::string>& targets, bool keep_copy);
  /** Adds targets to an alias ("*@domain" is the domain's catch-all). */
  Status add_alias(std::string_view address, const std::vector<std::string>& targets);
  /** Removes targets, or the alias when `targets` is empty. */
  Status del_alias(std::string_view address, const std::vector<std::string>& targets);
  Status add_list(std::string_view address, PostPolicy policy);
  Status del_list(std::string_view address);
  Status set_list_policy(std::string_view address, PostPolicy policy);
  /** @param senders false: members; true: the senders a Senders policy admits. */
  Status add_list_entries(std::string_view list, const std::vector<std::string>& addresses, bool senders);
  Status del_list_entries(std::string_view list, const std::vector<std::string>& addresses, bool senders);
  /** @param position 1-based; 0: append. */
  Status add_router_rule(std::string_view rule, size_t position);
  Status del_router_rule(size_t position);
  /**
   * Makes sure the default domain and the other `local_domains` exist as local domains and
   * postmaster@<default domain> exists (without a usable password).
   * @return one line per thing created (posternd logs them).
   */
  std::vector<std::string> ensure_defaults(const std::vector<std::string>& local_domains);

  struct Impl;

 private:
  static std::string smtp_lower(std::string_view s);
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::core::directory
