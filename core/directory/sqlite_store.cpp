#include "core/directory/sqlite_store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <stdexcept>

namespace postern::core::directory {

std::string_view domain_kind_name(DomainKind kind) {
  switch (kind) {
    case DomainKind::Local: return "local";
    case DomainKind::Gateway: return "gateway";
    case DomainKind::Alias: return "alias";
  }
  return "local";
}

std::string_view post_policy_name(PostPolicy policy) {
  switch (policy) {
    case PostPolicy::Anyone: return "anyone";
    case PostPolicy::Members: return "members";
    case PostPolicy::Senders: return "senders";
  }
  return "anyone";
}

std::optional<PostPolicy> parse_post_policy(std::string_view text) {
  if (text == "anyone") return PostPolicy::Anyone;
  if (text == "members") return PostPolicy::Members;
  if (text == "senders") return PostPolicy::Senders;
  return std::nullopt;
}

namespace {

// The schema, one step per version. A step never changes once released: a
// new need is a new step (the migration test builds every older version).
constexpr const char* kSteps[] = {
    // 1: domains, accounts, aliases (with catch-all "*@domain"), the router table.
    "CREATE TABLE domains(name TEXT PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK(kind IN ('local','gateway','alias')), alias_of TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE accounts(address TEXT PRIMARY KEY, domain TEXT NOT NULL, real_name TEXT NOT NULL DEFAULT '',"
    " password_hash TEXT NOT NULL DEFAULT '!', quota INTEGER NOT NULL DEFAULT 0, enabled INTEGER NOT NULL DEFAULT 1);"
    "CREATE INDEX accounts_domain ON accounts(domain);"
    "CREATE TABLE aliases(address TEXT NOT NULL, target TEXT NOT NULL, domain TEXT NOT NULL,"
    " PRIMARY KEY(address, target));"
    "CREATE INDEX aliases_domain ON aliases(domain);"
    "CREATE TABLE router(position INTEGER PRIMARY KEY, rule TEXT NOT NULL);",
    // 2: per-service enabled flags (SMTP AUTH, IMAP, POP3) and forwarding.
    "ALTER TABLE accounts ADD COLUMN services INTEGER NOT NULL DEFAULT 7;"
    "ALTER TABLE accounts ADD COLUMN keep_copy INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE forwards(account TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY(account, target));",
    // 3: distribution lists with a posting policy.
    "CREATE TABLE lists(address TEXT PRIMARY KEY, domain TEXT NOT NULL,"
    " policy TEXT NOT NULL DEFAULT 'anyone' CHECK(policy IN ('anyone','members','senders')));"
    "CREATE INDEX lists_domain ON lists(domain);"
    "CREATE TABLE list_entries(list TEXT NOT NULL, address TEXT NOT NULL,"
    " role TEXT NOT NULL CHECK(role IN ('member','sender')), PRIMARY KEY(list, role, address));",
};
static_assert(std::size(kSteps) == kSchemaVersion);

[[noreturn]] void throw_db(sqlite3* db, std::string_view what) {
  throw std::runtime_error(fmt::format("directory database: {}: {}", what, sqlite3_errmsg(db)));
}

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    throw std::runtime_error(fmt::format("directory database: {}", msg));
  }
}

class Stmt {
 public:
  Stmt(sqlite3* db, std::string_view sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK) {
      throw_db(db, fmt::format("prepare '{}'", sql));
    }
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  template <typename... Args>
  Stmt& bind(const Args&... args) {
    sqlite3_reset(st_);
    int i = 0;
    (bind_one(++i, args), ...);
    return *this;
  }
  /** @return true when a row is available. */
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw_db(db_, "step");
  }
  void run() {
    while (step()) {
    }
  }
  std::string text(int col) const {
    const unsigned char* t = sqlite3_column_text(st_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(st_, col)))
             : std::string();
  }
  int64_t integer(int col) const { return sqlite3_column_int64(st_, col); }

 private:
  void bind_one(int i, const std::string& v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_one(int i, std::string_view v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_one(int i, const char* v) { bind_one(i, std::string_view(v)); }
  void bind_one(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }
  void bind_one(int i, uint64_t v) { sqlite3_bind_int64(st_, i, static_cast<int64_t>(v)); }
  void bind_one(int i, uint32_t v) { sqlite3_bind_int64(st_, i, v); }
  void bind_one(int i, int v) { sqlite3_bind_int64(st_, i, v); }
  void bind_one(int i, bool v) { sqlite3_bind_int64(st_, i, v ? 1 : 0); }

  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
};

/** BEGIN IMMEDIATE (writers queue on the busy timeout, never deadlock on upgrade); rolls back unless committed. */
class WriteTx {
 public:
  explicit WriteTx(sqlite3* db) : db_(db) { exec(db_, "BEGIN IMMEDIATE"); }
  ~WriteTx() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    exec(db_, "COMMIT");
    done_ = true;
  }

 private:
  sqlite3* db_;
  bool done_ = false;
};

std::string domain_of(std::string_view address) {
  const size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string() : std::string(address.substr(at + 1));
}

class SqliteStore final : public DirectoryStore {
 public:
  explicit SqliteStore(const std::string& file) {
    std::error_code ec;
    const auto parent = std::filesystem::path(file).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw std::runtime_error(fmt::format("cannot open directory database {}: {}", file, why));
    }
    try {
      sqlite3_busy_timeout(db_, 5000);
      exec(db_, "PRAGMA journal_mode=WAL");
      exec(db_, "PRAGMA synchronous=NORMAL");
      migrate_schema(db_);
    } catch (const std::exception& e) {
      sqlite3_close(db_);
      throw std::runtime_error(fmt::format("{}: {}", file, e.what()));
    }
  }
  ~SqliteStore() override { sqlite3_close(db_); }

  DirectoryData load() override {
    DirectoryData d;
    // One read transaction: a snapshot of a consistent state.
    exec(db_, "BEGIN");
    try {
      Stmt dom(db_, "SELECT name, kind, alias_of FROM domains ORDER BY name");
      while (dom.step()) {
        const std::string kind = dom.text(1);
        d.domains.push_back({dom.text(0),
                             kind == "gateway" ? DomainKind::Gateway
                             : kind == "alias" ? DomainKind::Alias
                                               : DomainKind::Local,
                             dom.text(2)});
      }
      std::map<std::string, std::vector<std::string>> forwards;
      Stmt fw(db_, "SELECT account, target FROM forwards ORDER BY rowid");
      while (fw.step()) forwards[fw.text(0)].push_back(fw.text(1));
      Stmt acc(db_,
               "SELECT address, real_name, password_hash, quota, enabled, services, keep_copy FROM accounts "
               "ORDER BY address");
      while (acc.step()) {
        AccountRecord a;
        a.address = acc.text(0);
        a.real_name = acc.text(1);
        a.password_hash = acc.text(2);
        a.quota_bytes = static_cast<uint64_t>(acc.integer(3));
        a.enabled = acc.integer(4) != 0;
        a.services = static_cast<uint32_t>(acc.integer(5)) & kAllServices;
        a.keep_copy = acc.integer(6) != 0;
        if (auto it = forwards.find(a.address); it != forwards.end()) a.forward = std::move(it->second);
        d.accounts.push_back(std::move(a));
      }
      Stmt al(db_, "SELECT address, target FROM aliases ORDER BY address, rowid");
      while (al.step()) {
        std::string address = al.text(0);
        if (d.aliases.empty() || d.aliases.back().address != address) d.aliases.push_back({address, {}});
        d.aliases.back().targets.push_back(al.text(1));
      }
      std::map<std::string, size_t> list_index;
      Stmt li(db_, "SELECT address, policy FROM lists ORDER BY address");
      while (li.step()) {
        ListRecord l;
        l.address = li.text(0);
        l.policy = parse_post_policy(li.text(1)).value_or(PostPolicy::Members);
        list_index[l.address] = d.lists.size();
        d.lists.push_back(std::move(l));
      }
      Stmt le(db_, "SELECT list, address, role FROM list_entries ORDER BY rowid");
      while (le.step()) {
        auto it = list_index.find(le.text(0));
        if (it == list_index.end()) continue;
        ListRecord& l = d.lists[it->second];
        (le.text(2) == "sender" ? l.senders : l.members).push_back(le.text(1));
      }
      Stmt ro(db_, "SELECT rule FROM router ORDER BY position");
      while (ro.step()) d.router.push_back(ro.text(0));
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    exec(db_, "COMMIT");
    return d;
  }

  uint64_t change_marker() override {
    // PRAGMA data_version changes when another connection commits; our own
    // commits bump local_changes_.
    Stmt s(db_, "PRAGMA data_version");
    const uint64_t v = s.step() ? static_cast<uint64_t>(s.integer(0)) : 0;
    return (v << 32) ^ local_changes_;
  }

  Status add_domain(const DomainRecord& d) override {
    WriteTx tx(db_);
    if (auto k = domain_kind(d.name)) {
      return Status::exists(fmt::format("domain {} already exists ({})", d.name, *k));
    }
    if (d.kind == DomainKind::Alias) {
      auto target = domain_kind(d.alias_of);
      if (!target) return Status::not_found(fmt::format("domain {} does not exist", d.alias_of));
      if (*target != "local") {
        return Status::invalid(fmt::format("a domain alias must point to a local domain; {} is {}", d.alias_of, *target));
      }
    }
    Stmt(db_, "INSERT INTO domains(name, kind, alias_of) VALUES(?,?,?)")
        .bind(d.name, domain_kind_name(d.kind), d.kind == DomainKind::Alias ? d.alias_of : std::string())
        .run();
    return commit(tx);
  }

  Status del_domain(const std::string& name, bool force) override {
    WriteTx tx(db_);
    if (!domain_kind(name)) return Status::not_found(fmt::format("domain {} does not exist", name));
    const int64_t accounts = count("SELECT count(*) FROM accounts WHERE domain=?", name);
    const int64_t aliases = count("SELECT count(DISTINCT address) FROM aliases WHERE domain=?", name);
    const int64_t lists = count("SELECT count(*) FROM lists WHERE domain=?", name);
    const int64_t domain_aliases = count("SELECT count(*) FROM domains WHERE alias_of=?", name);
    if (!force && accounts + aliases + lists + domain_aliases > 0) {
      return Status::refused(fmt::format(
          "domain {} still has {} account(s), {} alias(es), {} list(s), {} domain alias(es); delete them first or "
          "use --force",
          name, accounts, aliases, lists, domain_aliases));
    }
    for (const char* sql : {"DELETE FROM forwards WHERE account IN (SELECT address FROM accounts WHERE domain=?1)",
                            "DELETE FROM accounts WHERE domain=?1", "DELETE FROM aliases WHERE domain=?1",
                            "DELETE FROM list_entries WHERE list IN (SELECT address FROM lists WHERE domain=?1)",
                            "DELETE FROM lists WHERE domain=?1", "DELETE FROM domains WHERE alias_of=?1",
                            "DELETE FROM domains WHERE name=?1"}) {
      Stmt(db_, sql).bind(name).run();
    }
    return commit(tx);
  }

  Status add_account(const AccountRecord& a) override {
    WriteTx tx(db_);
    if (Status s = check_new_address(a.address); !s.ok()) return s;
    Stmt(db_,
         "INSERT INTO accounts(address, domain, real_name, password_hash, quota, enabled, services, keep_copy) "
         "VALUES(?,?,?,?,?,?,?,?)")
        .bind(a.address, domain_of(a.address), a.real_name, a.password_hash, a.quota_bytes, a.enabled, a.services,
              a.keep_copy)
        .run();
    write_forwards(a);
    return commit(tx);
  }

  Status del_account(const std::string& address) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM accounts WHERE address=?", address)) {
      return Status::not_found(fmt::format("account {} does not exist", address));
    }
    Stmt(db_, "DELETE FROM forwards WHERE account=?").bind(address).run();
    Stmt(db_, "DELETE FROM accounts WHERE address=?").bind(address).run();
    return commit(tx);
  }

  Status update_account(const AccountRecord& a) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM accounts WHERE address=?", a.address)) {
      return Status::not_found(fmt::format("account {} does not exist", a.address));
    }
    Stmt(db_,
         "UPDATE accounts SET real_name=?, password_hash=?, quota=?, enabled=?, services=?, keep_copy=? "
         "WHERE address=?")
        .bind(a.real_name, a.password_hash, a.quota_bytes, a.enabled, a.services, a.keep_copy, a.address)
        .run();
    Stmt(db_, "DELETE FROM forwards WHERE account=?").bind(a.address).run();
    write_forwards(a);
    return commit(tx);
  }

  Status add_alias(const std::string& address, const std::vector<std::string>& targets) override {
    WriteTx tx(db_);
    const bool existing = exists("SELECT 1 FROM aliases WHERE address=?", address);
    if (!existing) {
      if (Status s = check_new_address(address); !s.ok()) return s;
    }
    size_t added = 0;
    for (const std::string& t : targets) {
      if (exists("SELECT 1 FROM aliases WHERE address=? AND target=?", address, t)) continue;
      Stmt(db_, "INSERT INTO aliases(address, target, domain) VALUES(?,?,?)").bind(address, t, domain_of(address)).run();
      ++added;
    }
    if (added == 0) return Status::exists(fmt::format("alias {} already has these targets", address));
    return commit(tx);
  }

  Status del_alias(const std::string& address, const std::vector<std::string>& targets) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM aliases WHERE address=?", address)) {
      return Status::not_found(fmt::format("alias {} does not exist", address));
    }
    if (targets.empty()) {
      Stmt(db_, "DELETE FROM aliases WHERE address=?").bind(address).run();
    } else {
      for (const std::string& t : targets) {
        if (!exists("SELECT 1 FROM aliases WHERE address=? AND target=?", address, t)) {
          return Status::not_found(fmt::format("alias {} has no target {}", address, t));
        }
        Stmt(db_, "DELETE FROM aliases WHERE address=? AND target=?").bind(address, t).run();
      }
    }
    return commit(tx);
  }

  Status add_list(const std::string& address, PostPolicy policy) override {
    WriteTx tx(db_);
    if (Status s = check_new_address(address); !s.ok()) return s;
    Stmt(db_, "INSERT INTO lists(address, domain, policy) VALUES(?,?,?)")
        .bind(address, domain_of(address), post_policy_name(policy))
        .run();
    return commit(tx);
  }

  Status del_list(const std::string& address) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM lists WHERE address=?", address)) {
      return Status::not_found(fmt::format("list {} does not exist", address));
    }
    Stmt(db_, "DELETE FROM list_entries WHERE list=?").bind(address).run();
    Stmt(db_, "DELETE FROM lists WHERE address=?").bind(address).run();
    return commit(tx);
  }

  Status set_list_policy(const std::string& address, PostPolicy policy) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM lists WHERE address=?", address)) {
      return Status::not_found(fmt::format("list {} does not exist", address));
    }
    Stmt(db_, "UPDATE lists SET policy=? WHERE address=?").bind(post_policy_name(policy), address).run();
    return commit(tx);
  }

  Status add_list_entries(const std::string& list, const std::vector<std::string>& addresses, bool sender) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM lists WHERE address=?", list)) {
      return Status::not_found(fmt::format("list {} does not exist", list));
    }
    const char* role = sender ? "sender" : "member";
    for (const std::string& a : addresses) {
      if (a == list) return Status::invalid(fmt::format("list {} cannot contain itself", list));
      if (exists("SELECT 1 FROM list_entries WHERE list=? AND role=? AND address=?", list, role, a)) {
        return Status::exists(fmt::format("{} is already a {} of {}", a, role, list));
      }
      Stmt(db_, "INSERT INTO list_entries(list, address, role) VALUES(?,?,?)").bind(list, a, role).run();
    }
    return commit(tx);
  }

  Status del_list_entries(const std::string& list, const std::vector<std::string>& addresses, bool sender) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM lists WHERE address=?", list)) {
      return Status::not_found(fmt::format("list {} does not exist", list));
    }
    const char* role = sender ? "sender" : "member";
    for (const std::string& a : addresses) {
      if (!exists("SELECT 1 FROM list_entries WHERE list=? AND role=? AND address=?", list, role, a)) {
        return Status::not_found(fmt::format("{} is not a {} of {}", a, role, list));
      }
      Stmt(db_, "DELETE FROM list_entries WHERE list=? AND role=? AND address=?").bind(list, role, a).run();
    }
    return commit(tx);
  }

  Status add_router_rule(const std::string& rule, size_t position) override {
    WriteTx tx(db_);
    const auto n = static_cast<size_t>(count("SELECT count(*) FROM router"));
    if (position == 0 || position > n + 1) position = n + 1;
    // Positions stay 1..n: shift through negative values (the key is unique at every step).
    Stmt(db_, "UPDATE router SET position = -(position + 1) WHERE position >= ?").bind(position).run();
    Stmt(db_, "UPDATE router SET position = -position WHERE position < 0").run();
    Stmt(db_, "INSERT INTO router(position, rule) VALUES(?,?)").bind(position, rule).run();
    return commit(tx);
  }

  Status del_router_rule(size_t position) override {
    WriteTx tx(db_);
    if (!exists("SELECT 1 FROM router WHERE position=?", position)) {
      return Status::not_found(fmt::format("router rule #{} does not exist", position));
    }
    Stmt(db_, "DELETE FROM router WHERE position=?").bind(position).run();
    Stmt(db_, "UPDATE router SET position = -(position - 1) WHERE position > ?").bind(position).run();
    Stmt(db_, "UPDATE router SET position = -position WHERE position < 0").run();
    return commit(tx);
  }

 private:
  Status commit(WriteTx& tx) {
    tx.commit();
    ++local_changes_;
    return Status::success();
  }

  template <typename... Args>
  bool exists(const char* sql, const Args&... args) {
    Stmt s(db_, sql);
    s.bind(args...);
    return s.step();
  }

  template <typename... Args>
  int64_t count(const char* sql, const Args&... args) {
    Stmt s(db_, sql);
    s.bind(args...);
    return s.step() ? s.integer(0) : 0;
  }

  std::optional<std::string> domain_kind(const std::string& name) {
    Stmt s(db_, "SELECT kind FROM domains WHERE name=?");
    s.bind(name);
    if (!s.step()) return std::nullopt;
    return s.text(0);
  }

  /** A new account, alias or list: a local domain, and no other kind holds the address. */
  Status check_new_address(const std::string& address) {
    const std::string domain = domain_of(address);
    auto kind = domain_kind(domain);
    if (!kind) return Status::not_found(fmt::format("domain {} does not exist", domain));
    if (*kind != "local") {
      return Status::invalid(fmt::format("domain {} is a {} domain; addresses live in local domains", domain, *kind));
    }
    if (exists("SELECT 1 FROM accounts WHERE address=?", address)) {
      return Status::exists(fmt::format("{} is already an account", address));
    }
    if (exists("SELECT 1 FROM aliases WHERE address=?", address)) {
      return Status::exists(fmt::format("{} is already an alias", address));
    }
    if (exists("SELECT 1 FROM lists WHERE address=?", address)) {
      return Status::exists(fmt::format("{} is already a list", address));
    }
    return Status::success();
  }

  void write_forwards(const AccountRecord& a) {
    for (const std::string& t : a.forward) {
      Stmt(db_, "INSERT OR IGNORE INTO forwards(account, target) VALUES(?,?)").bind(a.address, t).run();
    }
  }

  sqlite3* db_ = nullptr;
  uint64_t local_changes_ = 0;
};

}  // namespace

int schema_version(sqlite3* db) {
  Stmt s(db, "PRAGMA user_version");
  return s.step() ? static_cast<int>(s.integer(0)) : 0;
}

void migrate_schema(sqlite3* db, int target) {
  for (;;) {
    // Concurrent openers (posternd and posternctl) serialise on the write lock
    // and re-read the version inside it, so a step never runs twice.
    WriteTx tx(db);
    const int current = schema_version(db);
    if (current > kSchemaVersion) {
      throw std::runtime_error(fmt::format("schema version {} is newer than this build's {}; upgrade Postern",
                                           current, kSchemaVersion));
    }
    if (current >= target) return;
    exec(db, kSteps[current]);
    exec(db, fmt::format("PRAGMA user_version={}", current + 1).c_str());
    tx.commit();
  }
}

std::unique_ptr<DirectoryStore> open_sqlite_store(const std::string& file) {
  return std::make_unique<SqliteStore>(file);
}

}  // namespace postern::core::directory
