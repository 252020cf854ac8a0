#pragma once
// The mailbox store (M1, M4): per account, Maildir-style message files plus a
// SQLite index (folders with special use, UIDVALIDITY/UIDNEXT, UIDs, flags,
// keywords, MODSEQ, internal date, size). Format and crash rules:
// docs/mailstore.md.
//
// STATUS: the delivery entry point and quota view below are the contract the
// queue manager and the SMTP engine code against; the store's full API (what
// IMAP and POP3 use) lives beside them.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace postern::core::mailstore {

struct DeliverResult {
  enum class Status { Ok, OverQuota, TempError, PermError };
  Status status = Status::TempError;
  uint32_t uid = 0;      // UID in the folder when Ok
  std::string detail;    // one line, for logs and DSNs
};

/**
 * The store. The members below are the contract the queue manager, the
 * directory wiring and (later) IMAP/POP3 code against; the implementation
 * adds the folder/message API.
 * THREADING: every member is thread-safe; deliver() blocks (file and SQLite
 * I/O): call it on a worker pool, never on an I/O thread.
 */
class MailStore {
 public:
  struct Options {
    std::string root;  // <data-dir>/mail: one directory per account
  };
  /** @throws std::runtime_error when the root cannot be created. */
  explicit MailStore(Options options);
  ~MailStore();
  MailStore(const MailStore&) = delete;
  MailStore& operator=(const MailStore&) = delete;

  /**
   * Delivers one message atomically (tmp -> new, then the index) into
   * `folder` of `account` (canonical address), creating the account's store
   * on first use. `message` is CRLF text as it should be stored.
   * @param quota_bytes 0 = unlimited; OverQuota when usage + size would exceed it.
   */
  DeliverResult deliver(std::string_view account, std::string_view message, uint64_t quota_bytes,
                        std::string_view folder = "INBOX");
  /** Octets used by the account's messages; nullopt when it has no store yet. Fast (cached). */
  std::optional<uint64_t> usage_bytes(std::string_view account) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace postern::core::mailstore
