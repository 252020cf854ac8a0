#pragma once
/**
 * @file storage.hpp
 * Plugin state in SQLite, kept in the plugin's state directory, queried on
 * the host's worker pool. Header-only; the plugin links SQLite
 * (`postern_add_plugin(... LINK Postern::sdk_storage)` or `SQLite::SQLite3`).
 *
 *   // init: open and migrate (blocking; init runs on a control thread)
 *   auto db = sdk::storage::Database::open(ctx.state_dir() / "greylist.sqlite", {
 *       "CREATE TABLE triplet (k TEXT PRIMARY KEY, first INTEGER NOT NULL)",  // version 1
 *       "ALTER TABLE triplet ADD COLUMN passes INTEGER NOT NULL DEFAULT 0",   // version 2
 *   }, &error);
 *
 *   // a hook: never touch the database on the session's thread
 *   return sdk::storage::complete_on_worker(ev.host(), ev.defer(), [db](){
 *     return db->with([&](sdk::storage::Database& d) {
 *       auto& st = d.prepared("SELECT first FROM triplet WHERE k = ?1");
 *       ...
 *       return sdk::HookResult::continue_();
 *     });
 *   });
 *
 * Crash rules: WAL journal with synchronous=NORMAL (a power loss may lose the
 * last transactions, never corrupt the file); each migration runs in its own
 * transaction together with its `user_version` bump.
 * THREADING: one connection per Database; with() serialises its users, so a
 * Database may be shared by every worker thread (SQLite's own mutexes are not
 * relied on for statement state).
 */

#include <postern/sdk/event.hpp>
#include <postern/sdk/host.hpp>
#include <postern/sdk/types.hpp>

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace postern::sdk::storage {

/** An SQLite failure; what() names the statement or step and SQLite's message. */
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/**
 * A prepared statement. Bind parameters are 1-based (`?1`), columns 0-based.
 * Owned by its Database (prepared()) or by the caller (prepare()).
 */
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, std::string_view sql) : db_(db) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &st, nullptr) !=
        SQLITE_OK) {
      throw Error("prepare \"" + std::string(sql) + "\": " + sqlite3_errmsg(db));
    }
    st_.reset(st);
  }

  Statement& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(st_.get(), i, v), "bind");
    return *this;
  }
  Statement& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Statement& bind(int i, double v) {
    check(sqlite3_bind_double(st_.get(), i, v), "bind");
    return *this;
  }
  /** The text is copied (SQLITE_TRANSIENT). */
  Statement& bind(int i, std::string_view v) {
    check(sqlite3_bind_text64(st_.get(), i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8), "bind");
    return *this;
  }
  Statement& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Statement& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Statement& bind_null(int i) {
    check(sqlite3_bind_null(st_.get(), i), "bind");
    return *this;
  }

  /** Steps once. @return true when a row is available, false when done. */
  bool step() {
    const int rc = sqlite3_step(st_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw Error(std::string("step \"") + sqlite3_sql(st_.get()) + "\": " + sqlite3_errmsg(db_));
  }
  /** Runs a statement that returns no rows; resets it. @return rows changed. */
  int64_t run() {
    while (step()) {
    }
    const int64_t n = sqlite3_changes64(db_);
    reset();
    return n;
  }
  /** Clears bindings and rewinds, ready for reuse. */
  Statement& reset() {
    sqlite3_reset(st_.get());
    sqlite3_clear_bindings(st_.get());
    return *this;
  }

  int64_t column_int64(int i) const { return sqlite3_column_int64(st_.get(), i); }
  double column_double(int i) const { return sqlite3_column_double(st_.get(), i); }
  bool column_null(int i) const { return sqlite3_column_type(st_.get(), i) == SQLITE_NULL; }
  /** Valid until the next step/reset. */
  std::string_view column_text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_.get(), i));
    return p == nullptr ? std::string_view{} : std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(st_.get(), i)));
  }
  std::string column_string(int i) const { return std::string(column_text(i)); }

  sqlite3_stmt* handle() const { return st_.get(); }

 private:
  void check(int rc, const char* what) const {
    if (rc != SQLITE_OK) throw Error(std::string(what) + " \"" + sqlite3_sql(st_.get()) + "\": " + sqlite3_errmsg(db_));
  }
  struct Finalize {
    void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
  };
  sqlite3* db_ = nullptr;
  std::unique_ptr<sqlite3_stmt, Finalize> st_;
};

/** Options of Database::open. */
struct OpenOptions {
  /** How long a writer waits for another connection's lock (posternctl, a second instance). */
  std::chrono::milliseconds busy_timeout{5000};
  /** Open read-only: no journal change, no migrations. */
  bool read_only = false;
  /**
   * Run the migrations (the plugin). A tool that edits a plugin's database
   * passes false and checks schema_version() itself.
   */
  bool migrate = true;
};

/**
 * One SQLite connection. Create with open(); use from worker threads through
 * with(), which serialises access.
 */
class Database {
 public:
  /**
   * Opens (creating) `path`, sets WAL, synchronous=NORMAL, foreign keys and
   * the busy timeout, then brings the schema to `migrations.size()`:
   * migration i (0-based) takes `PRAGMA user_version` from i to i+1, each in
   * one transaction. A database newer than the plugin (user_version larger
   * than the number of migrations) is refused.
   * BLOCKING: call from init or a worker, never from a hook.
   * @return the database, or nullptr with `error` set to a one-line reason.
   */
  static std::shared_ptr<Database> open(const std::filesystem::path& path, const std::vector<std::string>& migrations,
                                        std::string* error = nullptr, OpenOptions options = {}) {
    try {
      auto db = std::shared_ptr<Database>(new Database());
      const int flags = options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
      sqlite3* raw = nullptr;
      const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
      db->db_.reset(raw);
      if (rc != SQLITE_OK) {
        throw Error("cannot open " + path.string() + ": " + (raw != nullptr ? sqlite3_errmsg(raw) : "out of memory"));
      }
      sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));
      sqlite3_extended_result_codes(raw, 1);
      if (!options.read_only) {
        db->exec("PRAGMA journal_mode=WAL");
        db->exec("PRAGMA synchronous=NORMAL");
      }
      db->exec("PRAGMA foreign_keys=ON");
      if (!options.read_only && options.migrate) db->migrate(migrations);
      return db;
    } catch (const std::exception& e) {
      if (error != nullptr) *error = e.what();
      return nullptr;
    }
  }

  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  /** Runs SQL without results (several statements allowed). Throws Error. */
  void exec(std::string_view sql) {
    char* msg = nullptr;
    const std::string text(sql);
    if (sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
      std::string why = msg != nullptr ? msg : sqlite3_errmsg(db_.get());
      sqlite3_free(msg);
      throw Error("\"" + text + "\": " + why);
    }
  }

  /** A statement prepared once and cached by its text; reset before it is returned. */
  Statement& prepared(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) it = cache_.emplace(sql, Statement(db_.get(), sql)).first;
    return it->second.reset();
  }

  /** A fresh statement owned by the caller. */
  Statement prepare(std::string_view sql) { return Statement(db_.get(), sql); }

  /** PRAGMA user_version: the schema version the migrations reached. */
  int64_t schema_version() {
    Statement st(db_.get(), "PRAGMA user_version");
    return st.step() ? st.column_int64(0) : 0;
  }

  /**
   * Runs `fn(*this)` inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK when it
   * throws, and the exception goes on). Call inside with().
   */
  template <class F>
  auto transaction(F&& fn) -> decltype(fn(std::declval<Database&>())) {
    exec("BEGIN IMMEDIATE");
    try {
      if constexpr (std::is_void_v<decltype(fn(*this))>) {
        fn(*this);
        exec("COMMIT");
      } else {
        auto result = fn(*this);
        exec("COMMIT");
        return result;
      }
    } catch (...) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  /** Runs `fn(*this)` holding the connection's lock: the way to use a shared Database. */
  template <class F>
  auto with(F&& fn) -> decltype(fn(std::declval<Database&>())) {
    std::lock_guard lock(mutex_);
    return fn(*this);
  }

  sqlite3* handle() const { return db_.get(); }

 private:
  Database() = default;

  void migrate(const std::vector<std::string>& migrations) {
    const int64_t have = schema_version();
    if (have > static_cast<int64_t>(migrations.size())) {
      throw Error("schema version " + std::to_string(have) + " is newer than this plugin's " +
                  std::to_string(migrations.size()) + "; refusing to use it");
    }
    for (size_t v = static_cast<size_t>(have); v < migrations.size(); ++v) {
      transaction([&](Database& d) {
        d.exec(migrations[v]);
        d.exec("PRAGMA user_version=" + std::to_string(v + 1));
      });
    }
  }

  struct Close {
    void operator()(sqlite3* d) const { sqlite3_close_v2(d); }
  };
  std::mutex mutex_;
  // Declared after the connection so that statements are finalised first.
  std::unique_ptr<sqlite3, Close> db_;
  std::map<std::string, Statement> cache_;
};

/**
 * Runs `work()` on the host's worker pool, then `done(result)` on the same
 * worker thread. An exception from work() becomes `on_error(what)` instead
 * (done is not called). THREADING: callable from any thread, e.g. a hook.
 */
template <class Work, class Done, class OnError>
void run_on_worker(const Host& host, Work work, Done done, OnError on_error) {
  host.post_work([work = std::move(work), done = std::move(done), on_error = std::move(on_error)]() mutable {
    std::optional<decltype(work())> result;
    try {
      result.emplace(work());
    } catch (const std::exception& e) {
      on_error(std::string(e.what()));
      return;
    } catch (...) {
      on_error(std::string("unknown exception"));
      return;
    }
    done(std::move(*result));
  });
}

/**
 * The usual hook shape: defer, compute the answer on a worker, complete.
 * `work()` returns the HookResult; an exception fails the hook (the manifest's
 * on-failure applies) and is logged. If the pool is unavailable (unloading),
 * the pending handle is released and the hook continues.
 * @return what the hook returns (Pending).
 */
template <class Work>
HookResult complete_on_worker(const Host& host, Pending pending, Work work) {
  HookResult r = pending.result();
  host.post_work([host, pending = std::move(pending), work = std::move(work)]() mutable {
    try {
      pending.complete(work());
    } catch (const std::exception& e) {
      host.error(std::string("storage: ") + e.what());
      pending.complete(HookResult::failed(e.what()));
    } catch (...) {
      pending.complete(HookResult::failed("unknown exception"));
    }
  });
  return r;
}

}  // namespace postern::sdk::storage
