#pragma once
// The directory (D1-D3): domains, accounts, aliases, lists and the address
// router, stored in SQLite (directory.sqlite under the data dir) behind the
// DirectoryStore interface so that a shared backend can replace it later.
// posternd keeps an in-memory snapshot that it refreshes when the database
// changes (posternctl writes the file directly); lookups never block.
//
// STATUS: the types below are the contract other modules (SMTP engine, queue
// manager, IMAP/POP3) code against; directory.cpp implements them.

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
  };
  /** Opens (creates and migrates) the database and loads the snapshot. @throws std::runtime_error with the reason. */
  explicit Directory(Options options);
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
  /**
   * Where RCPT checks learn an account's current mailbox usage (octets) for
   * 452 4.2.2; set once by the mailstore wiring before the listeners start.
   */
  void set_usage_lookup(std::function<std::optional<uint64_t>(std::string_view account)> usage);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::core::directory
