#include "core/mailstore/sqlite_db.hpp"

#include <fmt/format.h>

namespace postern::core::mailstore::detail {

namespace {

[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what) {
  throw SqliteError(rc, fmt::format("sqlite {}: {} ({})", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc));
}

}  // namespace

Stmt::Stmt(sqlite3* db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &st_, nullptr);
  if (rc != SQLITE_OK) fail(db, rc, fmt::format("prepare \"{}\"", sql));
}

Stmt::~Stmt() {
  if (st_) sqlite3_finalize(st_);
}

Stmt& Stmt::bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(st_, index, value);
  if (rc != SQLITE_OK) fail(db_, rc, "bind");
  return *this;
}

Stmt& Stmt::bind(int index, std::string_view text) {
  int rc = sqlite3_bind_text(st_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) fail(db_, rc, "bind");
  return *this;
}

Stmt& Stmt::bind_null(int index) {
  int rc = sqlite3_bind_null(st_, index);
  if (rc != SQLITE_OK) fail(db_, rc, "bind");
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, rc, "step");
}

void Stmt::run() {
  while (step()) {
  }
  reset();
}

void Stmt::reset() {
  sqlite3_reset(st_);
  sqlite3_clear_bindings(st_);
}

std::string Stmt::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
  if (!p) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col)));
}

Db::Db(const std::string& path, bool create, int busy_timeout_ms) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(rc, fmt::format("sqlite open {}: {}", path, msg));
  }
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  // Closing the last connection would checkpoint the WAL into the database
  // (two fsyncs). Idle accounts are closed often (MailStore's open-account
  // cache), so leave that to the automatic checkpoints.
  sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_extended_result_codes(db_, 1);
  // WAL: readers never block the writer and see a consistent snapshot.
  // synchronous=FULL: a commit is on disk when COMMIT returns, which is the
  // moment a delivery is acknowledged (docs/mailstore.md, crash rules).
  exec("PRAGMA journal_mode=WAL");
  exec("PRAGMA synchronous=FULL");
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

void Db::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError(rc, fmt::format("sqlite exec \"{}\": {}", s.substr(0, 60), msg));
  }
}

Txn::Txn(Db& db, bool immediate) : db_(db) { db_.exec(immediate ? "BEGIN IMMEDIATE" : "BEGIN"); }

Txn::~Txn() {
  if (!open_) return;
  try {
    db_.exec("ROLLBACK");
  } catch (...) {
    // The connection already rolled back (e.g. after SQLITE_FULL); nothing left to undo.
  }
}

void Txn::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace postern::core::mailstore::detail
