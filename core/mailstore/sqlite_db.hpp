#pragma once
// A thin RAII layer over the SQLite C API for the mailbox index: one
// connection, prepared statements with positional binding, and errors as
// exceptions of type SqliteError (caught at the store's API boundary and
// turned into StoreError). Not thread-safe: one thread uses a connection at a
// time (the store pools them).

#include <sqlite3.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace postern::core::mailstore::detail {

class SqliteError : public std::runtime_error {
 public:
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }
  /** SQLITE_BUSY / SQLITE_LOCKED: another writer held the lock past the busy timeout. */
  bool busy() const { return (code_ & 0xff) == SQLITE_BUSY || (code_ & 0xff) == SQLITE_LOCKED; }

 private:
  int code_;
};

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& o) noexcept : db_(o.db_), st_(o.st_) { o.st_ = nullptr; }

  Stmt& bind(int index, int64_t value);
  Stmt& bind(int index, std::string_view text);
  Stmt& bind_null(int index);
  /** @return true while a row is available. */
  bool step();
  /** Runs to completion (for statements without rows). */
  void run();
  void reset();

  int64_t int64(int col) const { return sqlite3_column_int64(st_, col); }
  std::string text(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

class Db {
 public:
  /** Opens (creating when `create`) a database in WAL mode with a busy timeout. */
  Db(const std::string& path, bool create, int busy_timeout_ms);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(std::string_view sql);
  Stmt prepare(std::string_view sql) { return Stmt(db_, sql); }
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

/**
 * A transaction; rolls back unless commit() was called. `immediate` takes the
 * write lock at BEGIN (writers), so two writers never deadlock on upgrade.
 */
class Txn {
 public:
  Txn(Db& db, bool immediate);
  ~Txn();
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  void commit();

 private:
  Db& db_;
  bool open_ = true;
};

}  // namespace postern::core::mailstore::detail
