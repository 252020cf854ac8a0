#pragma once
// The mailbox store (M1, M4): per account, Maildir-style message files plus a
// SQLite index (folders with special use, UIDVALIDITY/UIDNEXT, UIDs, flags,
// keywords, MODSEQ, internal date, size). Format, crash rules, threading and
// limits: docs/mailstore.md.
//
// Three layers of handles:
//   MailStore     the whole store (one per posternd); deliver() and
//                 usage_bytes() are the contract the queue manager and the
//                 SMTP engine code against; open_account() gives the rest.
//   AccountStore  one account's folders and messages (shared, thread-safe);
//                 what IMAP and POP3 sessions hold.
//   FolderView    one session's view of one folder (the IMAP "selected
//                 mailbox"): a snapshot with message sequence numbers that
//                 refresh() brings up to date (new, changed and expunged
//                 messages) while deliveries and other sessions go on.
// Every call that touches the disk blocks (file and SQLite I/O): call it on a
// worker pool, never on an I/O thread.

#include "core/mailstore/events.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::core::mailstore {

struct DeliverResult {
  enum class Status { Ok, OverQuota, TempError, PermError };
  Status status = Status::TempError;
  uint32_t uid = 0;      // UID in the folder when Ok
  std::string detail;    // one line, for logs and DSNs
};

/** System flags (RFC 9051 §2.3.2) as a bit set. \Recent is per session and not stored. */
enum Flag : uint32_t {
  kSeen = 1,
  kAnswered = 2,
  kFlagged = 4,
  kDeleted = 8,
  kDraft = 16,
  kAllFlags = 31,
};

/** Special-use attributes (RFC 6154). */
enum class SpecialUse { None, All, Archive, Drafts, Flagged, Junk, Sent, Trash };
/** "\\Sent" etc.; "" for None. */
std::string_view special_use_name(SpecialUse use);
/** Parses "\\Sent" (any case); nullopt when unknown. */
std::optional<SpecialUse> parse_special_use(std::string_view text);

/** Why a store operation failed. */
struct StoreError {
  enum class Code {
    NotFound,     // no such folder (or message)
    Exists,       // a folder of that name exists
    InvalidName,  // folder name or keyword not acceptable (detail says why)
    HasChildren,  // delete of a folder with child folders
    Forbidden,    // e.g. deleting INBOX
    OverQuota,    // the operation would exceed the quota
    Stale,        // the folder was deleted or re-created (UIDVALIDITY changed)
    Io,           // disk or database error (temporary: retry later)
  };
  Code code = Code::Io;
  std::string detail;  // one line, for logs and client replies
};

/** A value or a StoreError. */
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(StoreError error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  /** On a temporary, the value itself (so `for (auto& x : *store.f())` does not dangle). */
  T operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const StoreError& error() const { return error_; }

 private:
  std::optional<T> value_;
  StoreError error_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  Result(StoreError error) : failed_(true), error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const StoreError& error() const { return error_; }

 private:
  bool failed_ = false;
  StoreError error_;
};

/** One message as the index knows it. */
struct MessageInfo {
  uint32_t uid = 0;
  uint32_t flags = 0;                 // Flag bits
  std::vector<std::string> keywords;  // in the order they were first set; unique (case-insensitive)
  uint64_t modseq = 0;                // RFC 7162 mod-sequence of the last change
  int64_t internal_date = 0;          // seconds since the epoch, UTC (RFC 9051 INTERNALDATE)
  int64_t saved_date = 0;             // when it entered this folder (RFC 8514 SAVEDATE; retention)
  uint64_t size = 0;                  // octets of the stored file (RFC822.SIZE)
};

/** A folder as LIST/STATUS need it. */
struct FolderInfo {
  std::string name;  // UTF-8, '/' separates levels; INBOX is always "INBOX"
  SpecialUse special_use = SpecialUse::None;
  bool subscribed = false;
  bool has_children = false;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  uint32_t messages = 0;
  uint32_t unseen = 0;  // messages without \Seen
  uint32_t deleted = 0; // messages with \Deleted
  uint64_t size = 0;    // octets (STATUS SIZE, RFC 8438)
};

/** How store_flags() combines the given flags with the present ones (STORE FLAGS / +FLAGS / -FLAGS). */
enum class FlagOp { Replace, Add, Remove };

/** Result of store_flags(). */
struct StoreFlagsOutcome {
  std::vector<MessageInfo> messages;  // every existing message asked for and not in `modified`, with its state after the store
  std::vector<uint32_t> modified;     // RFC 7162 UNCHANGEDSINCE failures: not changed (MODIFIED response code)
  uint64_t highest_modseq = 0;
};

/** Result of append(). */
struct AppendOutcome {
  uint32_t uidvalidity = 0;
  uint32_t uid = 0;  // APPENDUID (RFC 4315)
};

/** Result of copy() and move(): COPYUID (RFC 4315). */
struct CopyOutcome {
  uint32_t dest_uidvalidity = 0;
  std::vector<std::pair<uint32_t, uint32_t>> uids;  // (source UID, new UID), ascending source UID
};

/** What changed in a folder since a mod-sequence (IDLE/NOOP updates, QRESYNC). */
struct FolderChanges {
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  std::vector<MessageInfo> changed;  // new or changed messages (modseq > since), ascending UID
  std::vector<uint32_t> expunged;    // UIDs expunged since then, ascending
  /** Expunge records older than `since` were pruned: `expunged` is incomplete; resync from a full snapshot. */
  bool expunged_incomplete = false;
};

class AccountStore;

/**
 * One session's view of one folder: a snapshot (ascending UIDs; message
 * sequence number = index + 1) that changes only when refresh() is called, so
 * the session decides when to report EXISTS/EXPUNGE/FETCH (RFC 9051 §7.5).
 * THREADING: one session uses a view at a time (not thread-safe); the view
 * keeps its AccountStore alive.
 */
class FolderView {
 public:
  /** What refresh() found, to report to the client. */
  struct Update {
    std::vector<uint32_t> expunged;     // UIDs removed from the view (ascending, as they were in it)
    std::vector<MessageInfo> added;     // appended at the end of the view (ascending UID)
    std::vector<MessageInfo> changed;   // flags, keywords or modseq changed (state after)
    bool gone = false;                  // the folder was deleted or re-created: the view is dead
  };

  const std::string& name() const { return name_; }
  uint32_t uidvalidity() const { return uidvalidity_; }
  uint32_t uidnext() const { return uidnext_; }
  uint64_t highest_modseq() const { return highest_modseq_; }
  SpecialUse special_use() const { return special_use_; }
  const std::vector<MessageInfo>& messages() const { return messages_; }
  /** Index (MSN - 1) of `uid` in the view, or nullopt. O(log n). */
  std::optional<size_t> index_of(uint32_t uid) const;
  /** Brings the view up to date; an expunge made through this view is also reported here. */
  Result<Update> refresh();
  AccountStore& account() const { return *account_; }

 private:
  friend class AccountStore;
  std::shared_ptr<AccountStore> account_;
  int64_t folder_id_ = 0;
  std::string name_;
  SpecialUse special_use_ = SpecialUse::None;
  uint32_t uidvalidity_ = 0;
  uint32_t uidnext_ = 1;
  uint64_t highest_modseq_ = 0;
  std::vector<MessageInfo> messages_;
};

/**
 * One account's mailbox. Obtained from MailStore::open_account(); shared by
 * every session of the account. THREADING: every member is thread-safe and
 * blocking. Folder names are UTF-8 with '/' as the hierarchy separator
 * (the IMAP layer converts modified UTF-7 when the client did not enable
 * UTF8=ACCEPT); "INBOX" in any case names the inbox.
 */
class AccountStore : public std::enable_shared_from_this<AccountStore> {
 public:
  ~AccountStore();
  AccountStore(const AccountStore&) = delete;
  AccountStore& operator=(const AccountStore&) = delete;

  /** The canonical account address. */
  const std::string& account() const;
  /** The account's directory on disk. */
  const std::filesystem::path& directory() const;

  /** Every folder, INBOX first, then by name. */
  Result<std::vector<FolderInfo>> list_folders();
  /** One folder's counters (STATUS). */
  Result<FolderInfo> folder_status(std::string_view name);
  /**
   * Creates a folder (and missing parents, RFC 9051 §6.3.4) with a new
   * UIDVALIDITY. @return Exists when present, InvalidName with the reason.
   */
  Result<FolderInfo> create_folder(std::string_view name, SpecialUse use = SpecialUse::None);
  /** Deletes a folder and its messages. INBOX: Forbidden; child folders: HasChildren. */
  Result<void> delete_folder(std::string_view name);
  /**
   * Renames a folder and its children (UIDVALIDITY kept). Renaming INBOX
   * moves its messages into a new folder and leaves INBOX empty (RFC 9051 §6.3.6).
   */
  Result<void> rename_folder(std::string_view from, std::string_view to);
  Result<void> subscribe(std::string_view name, bool subscribed);
  /** Sets (or clears with None) a folder's special use (CREATE USE / SETMETADATA). */
  Result<void> set_special_use(std::string_view name, SpecialUse use);
  /** The folder with this special use, if any (the first by name). */
  Result<std::string> folder_for(SpecialUse use);

  /** Opens a view (SELECT/EXAMINE; POP3 opens INBOX). */
  Result<std::unique_ptr<FolderView>> open_folder(std::string_view name);
  /**
   * Claims the folder's \Recent messages for one session (RFC 3501 §2.3.2;
   * IMAP4rev1 SELECT, and each refresh of a read-write selection): returns
   * the first UID that is recent to the caller — every message with a UID at
   * or above it and below the folder's UIDNEXT now — and moves the mark to
   * UIDNEXT, so no other session sees them as recent.
   */
  Result<uint32_t> claim_recent(std::string_view name);
  /** Changes in a folder since `since` (which must be of the same UIDVALIDITY, else Stale). */
  Result<FolderChanges> changes_since(std::string_view name, uint32_t uidvalidity, uint64_t since);

  /** The file of a message (for sendfile/mmap). It may vanish when another session expunges it. */
  Result<std::filesystem::path> message_path(std::string_view folder, uint32_t uid);
  /** The whole message as stored (CRLF). */
  Result<std::string> read_message(std::string_view folder, uint32_t uid);

  /**
   * Changes flags and keywords of `uids` (missing UIDs are ignored) with one
   * new mod-sequence for the messages that actually change.
   * @param unchanged_since RFC 7162 UNCHANGEDSINCE: messages whose modseq is
   *        greater are left alone and listed in `modified`.
   * @return InvalidName when a keyword is not an IMAP atom.
   */
  Result<StoreFlagsOutcome> store_flags(std::string_view folder, const std::vector<uint32_t>& uids, FlagOp op,
                                        uint32_t flags, const std::vector<std::string>& keywords,
                                        std::optional<uint64_t> unchanged_since = std::nullopt);
  /**
   * Removes the messages `uids` (empty: none; missing UIDs are ignored).
   * @param only_deleted remove only those with \Deleted (UID EXPUNGE, RFC 4315).
   * @return the UIDs removed, ascending.
   */
  Result<std::vector<uint32_t>> expunge(std::string_view folder, const std::vector<uint32_t>& uids,
                                        bool only_deleted);
  /** Removes every message with \Deleted (EXPUNGE, CLOSE). @return the UIDs removed, ascending. */
  Result<std::vector<uint32_t>> expunge_deleted(std::string_view folder);
  /**
   * Appends a message (APPEND). @param internal_date seconds since the epoch;
   * nullopt = now. @param quota_bytes 0 = unlimited; OverQuota when exceeded.
   */
  Result<AppendOutcome> append(std::string_view folder, std::string_view message, uint32_t flags,
                               const std::vector<std::string>& keywords, std::optional<int64_t> internal_date,
                               uint64_t quota_bytes);
  /** Copies messages (flags, keywords, internal date kept); missing UIDs are skipped. Quota applies. */
  Result<CopyOutcome> copy(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to,
                           uint64_t quota_bytes);
  /** Moves messages atomically (RFC 6851): the copies appear and the originals vanish in one commit. */
  Result<CopyOutcome> move(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to);

  /** Octets used by all messages of the account (cached; no I/O). */
  uint64_t usage_bytes() const;

  /**
   * Removes messages saved into `folder` before `cutoff` (seconds since the
   * epoch, compared with saved_date). @return how many were removed.
   */
  Result<size_t> expire(std::string_view folder, int64_t cutoff);

  struct Impl;

 private:
  friend class MailStore;
  friend class FolderView;
  explicit AccountStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
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
    /** How long a writer waits for another's SQLite lock before TempError. */
    std::chrono::milliseconds busy_timeout{10000};
    /** tmp/ files without an index row older than this are removed by recovery (Maildir: 36 h). */
    std::chrono::seconds stale_tmp_age{36 * 3600};
    /** Accounts kept open when idle (each holds SQLite connections); the rest are closed. */
    size_t max_open_accounts = 256;
    /** Whether an account's store is created on first use (deliver, open_account). */
    bool create_accounts = true;
    /** The wall clock (internal dates, retention); default system_clock::now. */
    std::function<std::chrono::system_clock::time_point()> clock{};
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
   * A folder that does not exist falls back to INBOX (detail says so).
   * @param quota_bytes 0 = unlimited; OverQuota when usage + size would exceed it.
   */
  DeliverResult deliver(std::string_view account, std::string_view message, uint64_t quota_bytes,
                        std::string_view folder = "INBOX");
  /**
   * Octets used by the account's messages; nullopt when it has no store yet.
   * Answers from memory once the account was opened or read; the first call
   * for an account may block (stat, SQLite): call it on a worker.
   */
  std::optional<uint64_t> usage_bytes(std::string_view account) const;
  /**
   * usage_bytes() from memory only (never blocks; safe on an I/O strand): the
   * usage, 0 for an account known to have no store, nullopt when only
   * usage_bytes() can tell.
   */
  std::optional<uint64_t> cached_usage(std::string_view account) const;
  /**
   * Reads the usage of `accounts` into memory (usage_bytes() for each), so
   * that cached_usage() answers for them. Blocks: run it on a worker.
   * @return how many of them have a store.
   */
  size_t warm_usage(const std::vector<std::string>& accounts) const;

  /**
   * Opens an account's store; the first open in a process runs recovery
   * (docs/mailstore.md). @param create make it (with the default folders
   * INBOX, Drafts, Sent, Trash, Junk, Archive) when missing; otherwise NotFound.
   */
  Result<std::shared_ptr<AccountStore>> open_account(std::string_view account, bool create = true);
  /** Whether the account has a store on disk. */
  bool has_account(std::string_view account) const;
  /** Every account with a store (decoded from the directory names). */
  std::vector<std::string> accounts() const;
  /** Where the account's store lives (whether or not it exists). */
  std::filesystem::path account_dir(std::string_view account) const;

  /**
   * Sets where the store announces committed changes (MailboxEvent): called
   * on the changing thread after the commit, with no store lock held. Empty
   * turns announcements off (the default).
   */
  void set_event_sink(EventSink sink);

  /** Retention: how long messages stay in the Trash and Junk folders. */
  struct RetentionPolicy {
    std::chrono::seconds trash{30 * 86400};
    std::chrono::seconds junk{10 * 86400};
  };
  struct RetentionReport {
    size_t accounts = 0;   // accounts examined
    size_t messages = 0;   // messages removed
    size_t failures = 0;   // accounts that failed (logged)
  };
  /**
   * Removes messages older than the policy (by saved date) from every
   * account's \Trash and \Junk folders. The scheduler runs it (wire_mailstore).
   */
  RetentionReport run_retention(const RetentionPolicy& policy);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/** The directory name of an account ("<domain>/<local>", each component escaped; docs/mailstore.md). */
std::string account_relative_path(std::string_view account);
/** The account of a relative path made by account_relative_path(); nullopt when it is not one. */
std::optional<std::string> account_from_relative_path(std::string_view domain_dir, std::string_view local_dir);
/** Normalises and checks a folder name; nullopt with `why` set when it is not acceptable. */
std::optional<std::string> normalize_folder_name(std::string_view name, std::string* why = nullptr);
/** Whether `keyword` is an acceptable IMAP keyword (an atom without '\\', at most 128 octets). */
bool valid_keyword(std::string_view keyword);

}  // namespace postern::core::mailstore
