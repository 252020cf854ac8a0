#pragma once
// Internals shared by mailstore.cpp (MailStore) and account_store.cpp
// (AccountStore, FolderView): the per-account state and its connection pool.

#include "core/mailstore/events.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/mailstore/sqlite_db.hpp"

#include <atomic>
#include <mutex>
#include <vector>

namespace postern::core::mailstore {

/** Settings every account of a store shares. */
struct StoreSettings {
  std::chrono::milliseconds busy_timeout{10000};
  std::chrono::seconds stale_tmp_age{36 * 3600};
  std::function<std::chrono::system_clock::time_point()> clock;
  /** Where committed changes are announced (MailStore::set_event_sink). */
  std::shared_ptr<EventRelay> events = std::make_shared<EventRelay>();
  int64_t now() const { return std::chrono::duration_cast<std::chrono::seconds>(clock().time_since_epoch()).count(); }
};

struct AccountStore::Impl {
  std::string account;
  std::filesystem::path dir;
  std::shared_ptr<const StoreSettings> settings;
  std::shared_ptr<std::atomic<uint64_t>> usage;  // shared with MailStore's usage cache

  // Serialises this process's writers of the account: a writer holds it from
  // BEGIN IMMEDIATE through the renames/unlinks that follow its COMMIT, so
  // recovery and other writers never see a half-finished operation of ours.
  // Other processes are excluded by SQLite's write lock; the crash rules make
  // their half-finished operations harmless (docs/mailstore.md).
  std::mutex write_mu;

  std::mutex pool_mu;
  std::vector<std::unique_ptr<detail::Db>> pool;

  /** A pooled connection, returned on destruction. */
  class Conn {
   public:
    Conn(Impl& impl, std::unique_ptr<detail::Db> db) : impl_(impl), db_(std::move(db)) {}
    ~Conn();
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;
    detail::Db& operator*() { return *db_; }
    detail::Db* operator->() { return db_.get(); }

   private:
    Impl& impl_;
    std::unique_ptr<detail::Db> db_;
  };
  Conn conn();

  std::filesystem::path index_path() const { return dir / "index.sqlite"; }
  std::filesystem::path folder_dir(int64_t id) const { return dir / "folders" / std::to_string(id); }

  /** Creates the schema and the default folders when the index is new. */
  void initialise();
  /** Reconciles files and index (docs/mailstore.md, "Recovery"). */
  void recover();
  /** Drops expunge records older than `cutoff` (raising each folder's vanished floor). */
  void prune_tombstones(int64_t cutoff);
  /** expunge()/expunge_deleted(): `uids` null = every message (with only_deleted). */
  Result<std::vector<uint32_t>> remove_messages(std::string_view folder, const std::vector<uint32_t>* uids,
                                                bool only_deleted);
  /** Announces a committed change; call with no lock held (write_mu, a transaction). */
  void publish(MailboxEvent event) const;
  /** Saves one message (deliver and APPEND) and announces it (`actor` when no ActingAs is set). */
  Result<AppendOutcome> save(std::string_view folder, std::string_view message, uint32_t flags,
                             const std::vector<std::string>& keywords, std::optional<int64_t> internal_date,
                             uint64_t quota_bytes, std::string_view actor);
  /** save() without the announcement; `folder_out` gets the folder's normalised name. */
  Result<AppendOutcome> save_locked(std::string_view folder, std::string_view message, uint32_t flags,
                             const std::vector<std::string>& keywords, std::optional<int64_t> internal_date,
                             uint64_t quota_bytes, std::string* folder_out);
};

}  // namespace postern::core::mailstore
