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

}  // namespace postern::core::mailstore
