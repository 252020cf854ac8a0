// AccountStore and FolderView: one account's folders and messages.
// File and index protocol, crash rules and recovery: docs/mailstore.md.

#include "core/log/log.hpp"
#include "core/mailstore/account_impl.hpp"
#include "postern/mail/ascii.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace postern::core::mailstore {

using detail::Db;
using detail::SqliteError;
using detail::Stmt;
using detail::Txn;

namespace {

constexpr std::string_view kLog = "mailstore";
constexpr int64_t kSchemaVersion = 1;

struct DefaultFolder {
  const char* name;
  SpecialUse use;
};
constexpr DefaultFolder kDefaultFolders[] = {
    {"INBOX", SpecialUse::None},   {"Drafts", SpecialUse::Drafts}, {"Sent", SpecialUse::Sent},
    {"Trash", SpecialUse::Trash},  {"Junk", SpecialUse::Junk},     {"Archive", SpecialUse::Archive},
};

StoreError io_error(std::string detail) { return StoreError{StoreError::Code::Io, std::move(detail)}; }
StoreError not_found(std::string_view folder) {
  return StoreError{StoreError::Code::NotFound, fmt::format("no folder named \"{}\"", folder)};
}

std::string errno_text(int err) { return std::strerror(err); }

// A unique file name in the Maildir style: time, microseconds, pid, a
// per-process counter and randomness, so names from concurrent processes and
// threads never collide (O_EXCL checks anyway).
std::string unique_name() {
  static std::atomic<uint64_t> counter{0};
  static const uint32_t salt = [] {
    std::random_device rd;
    return rd();
  }();
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  return fmt::format("{}.M{}P{}Q{}R{:08x}", us / 1000000, us % 1000000, ::getpid(), counter.fetch_add(1), salt);
}

bool fsync_dir(const std::filesystem::path& dir, std::string* err) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (err) *err = fmt::format("open {}: {}", dir.string(), errno_text(errno));
    return false;
  }
  bool ok = ::fsync(fd) == 0;
  if (!ok && err) *err = fmt::format("fsync {}: {}", dir.string(), errno_text(errno));
  ::close(fd);
  return ok;
}

// Writes `data` to a new file and makes its contents durable (not its name:
// the caller fsyncs the directory once for a batch).
bool write_new_file(const std::filesystem::path& path, std::string_view data, std::string* err) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    *err = fmt::format("create {}: {}", path.string(), errno_text(errno));
    return false;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = fmt::format("write {}: {}", path.string(), errno_text(errno));
      ::close(fd);
      ::unlink(path.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    *err = fmt::format("fdatasync {}: {}", path.string(), errno_text(errno));
    ::close(fd);
    ::unlink(path.c_str());
    return false;
  }
  if (::close(fd) != 0) {
    *err = fmt::format("close {}: {}", path.string(), errno_text(errno));
    ::unlink(path.c_str());
    return false;
  }
  return true;
}

bool read_file(const std::filesystem::path& path, std::string& out, int* err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

struct DirEntry {
  std::string name;
  bool is_dir = false;
};

// Entries of a directory except "." and ".."; ENOENT gives an empty list.
std::vector<DirEntry> list_dir(const std::filesystem::path& dir) {
  std::vector<DirEntry> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    throw std::runtime_error(fmt::format("opendir {}: {}", dir.string(), errno_text(errno)));
  }
  while (dirent* e = ::readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::stat((dir / e->d_name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    out.push_back({std::string(n), is_dir});
  }
  ::closedir(d);
  return out;
}

using mail::iequals;

std::vector<std::string> parse_keywords(std::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(' ', i);
    if (j == std::string_view::npos) j = text.size();
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

std::string join_keywords(const std::vector<std::string>& kw) {
  std::string out;
  for (const auto& k : kw) {
    if (!out.empty()) out += ' ';
    out += k;
  }
  return out;
}

bool has_keyword(const std::vector<std::string>& kw, std::string_view k) {
  for (const auto& x : kw)
    if (iequals(x, k)) return true;
  return false;
}

// Unique keywords (case-insensitive, first spelling kept), or InvalidName.
std::optional<StoreError> check_keywords(const std::vector<std::string>& keywords) {
  for (const auto& k : keywords)
    if (!valid_keyword(k))
      return StoreError{StoreError::Code::InvalidName, fmt::format("not a valid keyword: \"{}\"", k)};
  return std::nullopt;
}

std::vector<std::string> unique_keywords(const std::vector<std::string>& keywords) {
  std::vector<std::string> out;
  for (const auto& k : keywords)
    if (!has_keyword(out, k)) out.push_back(k);
  return out;
}

struct FolderRow {
  int64_t id = 0;
  std::string name;
  SpecialUse use = SpecialUse::None;
  bool subscribed = true;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 1;
  uint64_t vanished_floor = 0;
};

constexpr const char* kFolderCols =
    "id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq, vanished_floor";

FolderRow folder_from(const Stmt& s) {
  FolderRow f;
  f.id = s.int64(0);
  f.name = s.text(1);
  f.use = static_cast<SpecialUse>(s.int64(2));
  f.subscribed = s.int64(3) != 0;
  f.uidvalidity = static_cast<uint32_t>(s.int64(4));
  f.uidnext = static_cast<uint32_t>(s.int64(5));
  f.highest_modseq = static_cast<uint64_t>(s.int64(6));
  f.vanished_floor = static_cast<uint64_t>(s.int64(7));
  return f;
}

std::optional<FolderRow> folder_by_name(Db& db, std::string_view name) {
  auto s = db.prepare(fmt::format("SELECT {} FROM folders WHERE name = ?", kFolderCols));
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return folder_from(s);
}

std::optional<FolderRow> folder_by_id(Db& db, int64_t id) {
  auto s = db.prepare(fmt::format("SELECT {} FROM folders WHERE id = ?", kFolderCols));
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return folder_from(s);
}

std::vector<FolderRow> all_folders(Db& db) {
  std::vector<FolderRow> out;
  auto s = db.prepare(fmt::format("SELECT {} FROM folders ORDER BY name", kFolderCols));
  while (s.step()) out.push_back(folder_from(s));
  return out;
}

void write_folder_counters(Db& db, const FolderRow& f) {
  db.prepare("UPDATE folders SET uidnext = ?, highest_modseq = ? WHERE id = ?")
      .bind(1, static_cast<int64_t>(f.uidnext))
      .bind(2, static_cast<int64_t>(f.highest_modseq))
      .bind(3, f.id)
      .run();
}

constexpr const char* kMessageCols = "uid, flags, keywords, modseq, internal_date, saved_date, size";

MessageInfo message_from(const Stmt& s) {
  MessageInfo m;
  m.uid = static_cast<uint32_t>(s.int64(0));
  m.flags = static_cast<uint32_t>(s.int64(1));
  m.keywords = parse_keywords(s.text(2));
  m.modseq = static_cast<uint64_t>(s.int64(3));
  m.internal_date = s.int64(4);
  m.saved_date = s.int64(5);
  m.size = static_cast<uint64_t>(s.int64(6));
  return m;
}

int64_t meta_get(Db& db, std::string_view key, int64_t fallback) {
  auto s = db.prepare("SELECT value FROM meta WHERE key = ?");
  s.bind(1, key);
  return s.step() ? s.int64(0) : fallback;
}

void meta_set(Db& db, std::string_view key, int64_t value) {
  db.prepare("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
      .bind(1, key)
      .bind(2, value)
      .run();
}

void add_usage(Db& db, int64_t delta) {
  db.prepare("UPDATE meta SET value = MAX(0, value + ?) WHERE key = 'usage'").bind(1, delta).run();
}

// RFC 9051 §2.3.1.1: UIDVALIDITY must grow when a name is re-used; seconds
// since the epoch, and always above the last one handed out in this account.
uint32_t next_uidvalidity(Db& db, int64_t now) {
  int64_t last = meta_get(db, "last_uidvalidity", 0);
  int64_t v = std::max<int64_t>(now & 0xffffffff, last + 1);
  if (v > 0xffffffffLL) v = 1;  // after 2106; wrap (never happens in practice)
  meta_set(db, "last_uidvalidity", v);
  return static_cast<uint32_t>(v);
}

// Inserts a folder row and its directories; the caller commits.
FolderRow insert_folder(Db& db, const std::filesystem::path& account_dir, std::string_view name, SpecialUse use,
                        int64_t now) {
  FolderRow f;
  f.name = std::string(name);
  f.use = use;
  f.uidvalidity = next_uidvalidity(db, now);
  db.prepare("INSERT INTO folders(name, special_use, subscribed, uidvalidity, uidnext, highest_modseq, "
             "vanished_floor) VALUES(?, ?, 1, ?, 1, 1, 0)")
      .bind(1, name)
      .bind(2, static_cast<int64_t>(use))
      .bind(3, static_cast<int64_t>(f.uidvalidity))
      .run();
  f.id = db.last_insert_rowid();
  auto fdir = account_dir / "folders" / std::to_string(f.id);
  std::error_code ec;
  std::filesystem::create_directories(fdir / "tmp", ec);
  if (!ec) std::filesystem::create_directories(fdir / "cur", ec);
  if (ec) throw std::runtime_error(fmt::format("create {}: {}", fdir.string(), ec.message()));
  return f;
}

// The parents of "a/b/c": "a", "a/b".
std::vector<std::string> parents_of(std::string_view name) {
  std::vector<std::string> out;
  for (size_t i = name.find('/'); i != std::string_view::npos; i = name.find('/', i + 1))
    out.emplace_back(name.substr(0, i));
  return out;
}

bool is_child_of(std::string_view name, std::string_view parent) {
  return name.size() > parent.size() + 1 && name.substr(0, parent.size()) == parent && name[parent.size()] == '/';
}

struct FileRow {
  uint32_t uid = 0;
  std::string file;
  uint64_t size = 0;
  uint32_t flags = 0;
  std::string keywords;
  int64_t internal_date = 0;
};

std::optional<FileRow> file_row(Db& db, int64_t folder_id, uint32_t uid) {
  auto s = db.prepare(
      "SELECT uid, file, size, flags, keywords, internal_date FROM messages WHERE folder_id = ? AND uid = ?");
  s.bind(1, folder_id).bind(2, static_cast<int64_t>(uid));
  if (!s.step()) return std::nullopt;
  return FileRow{static_cast<uint32_t>(s.int64(0)), s.text(1), static_cast<uint64_t>(s.int64(2)),
                 static_cast<uint32_t>(s.int64(3)), s.text(4), s.int64(5)};
}

std::string pending_path(int64_t folder_id, std::string_view file) {
  return fmt::format("folders/{}/cur/{}", folder_id, file);
}

// Removes message rows inside the caller's write transaction: records each
// UID as expunged at `modseq` (for refresh/QRESYNC) and its file for unlinking
// after the commit (pending_unlink: a crash in between never resurrects it).
// @return octets removed.
uint64_t remove_rows(Db& db, int64_t folder_id, const std::vector<FileRow>& rows, uint64_t modseq, int64_t now,
                     std::vector<std::string>& unlink_later) {
  auto del = db.prepare("DELETE FROM messages WHERE folder_id = ? AND uid = ?");
  auto tomb = db.prepare("INSERT OR REPLACE INTO expunged(folder_id, uid, modseq, at) VALUES(?, ?, ?, ?)");
  auto pend = db.prepare("INSERT OR IGNORE INTO pending_unlink(path, is_dir) VALUES(?, 0)");
  uint64_t bytes = 0;
  for (const auto& r : rows) {
    del.bind(1, folder_id).bind(2, static_cast<int64_t>(r.uid)).run();
    tomb.bind(1, folder_id).bind(2, static_cast<int64_t>(r.uid)).bind(3, static_cast<int64_t>(modseq)).bind(4, now).run();
    auto p = pending_path(folder_id, r.file);
    pend.bind(1, p).run();
    unlink_later.push_back(std::move(p));
    bytes += r.size;
  }
  return bytes;
}

}  // namespace

AccountStore::Impl::Conn::~Conn() {
  if (!db_) return;
  std::lock_guard lock(impl_.pool_mu);
  // Keep a few idle connections; more only exist while many threads read at once.
  if (impl_.pool.size() < 4) impl_.pool.push_back(std::move(db_));
}

AccountStore::Impl::Conn AccountStore::Impl::conn() {
  {
    std::lock_guard lock(pool_mu);
    if (!pool.empty()) {
      auto db = std::move(pool.back());
      pool.pop_back();
      return Conn(*this, std::move(db));
    }
  }
  return Conn(*this, std::make_unique<Db>(index_path().string(), true,
                                          static_cast<int>(settings->busy_timeout.count())));
}

void AccountStore::Impl::initialise() {
  std::lock_guard wl(write_mu);
  auto db = conn();
  Txn txn(*db, true);
  db->exec(
      "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
      "CREATE TABLE IF NOT EXISTS folders(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
      " special_use INTEGER NOT NULL DEFAULT 0, subscribed INTEGER NOT NULL DEFAULT 1,"
      " uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
      " highest_modseq INTEGER NOT NULL DEFAULT 1, vanished_floor INTEGER NOT NULL DEFAULT 0,"
      " first_recent INTEGER NOT NULL DEFAULT 1);"
      "CREATE TABLE IF NOT EXISTS messages(folder_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
      " file TEXT NOT NULL, size INTEGER NOT NULL, internal_date INTEGER NOT NULL,"
      " saved_date INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0, keywords TEXT NOT NULL DEFAULT '',"
      " modseq INTEGER NOT NULL, PRIMARY KEY(folder_id, uid)) WITHOUT ROWID;"
      "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(folder_id, modseq);"
      "CREATE TABLE IF NOT EXISTS expunged(folder_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
      " modseq INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(folder_id, uid)) WITHOUT ROWID;"
      "CREATE TABLE IF NOT EXISTS pending_unlink(path TEXT PRIMARY KEY, is_dir INTEGER NOT NULL)"
      " WITHOUT ROWID;");
  int64_t version = meta_get(*db, "schema_version", 0);
  if (version > kSchemaVersion)
    throw std::runtime_error(fmt::format("{}: schema version {} is newer than this server ({})",
                                         index_path().string(), version, kSchemaVersion));
  if (version == 0) {
    meta_set(*db, "schema_version", kSchemaVersion);
    meta_set(*db, "usage", 0);
    int64_t now = settings->now();
    for (const auto& f : kDefaultFolders)
      if (!folder_by_name(*db, f.name)) insert_folder(*db, dir, f.name, f.use, now);
  }
  txn.commit();
}

void AccountStore::Impl::recover() {
  std::lock_guard wl(write_mu);
  auto db = conn();
  const int64_t now = settings->now();
  const int64_t stale_before = now - settings->stale_tmp_age.count();

  // 1. Finish unlinks that were committed but maybe not done.
  {
    Txn txn(*db, true);
    auto s = db->prepare("SELECT path, is_dir FROM pending_unlink");
    while (s.step()) {
      auto p = dir / s.text(0);
      std::error_code ec;
      if (s.int64(1)) {
        std::filesystem::remove_all(p, ec);
      } else {
        std::filesystem::remove(p, ec);
        std::filesystem::remove(p.parent_path().parent_path() / "tmp" / p.filename(), ec);
      }
    }
    db->exec("DELETE FROM pending_unlink");
    txn.commit();
  }

  // 2. Per folder: rows against files.
  std::set<int64_t> folder_ids;
  for (const auto& folder : all_folders(*db)) {
    folder_ids.insert(folder.id);
    Txn txn(*db, true);
    auto f = folder_by_id(*db, folder.id);
    if (!f) continue;
    auto fdir = folder_dir(f->id);
    std::error_code ec;
    std::filesystem::create_directories(fdir / "tmp", ec);
    std::filesystem::create_directories(fdir / "cur", ec);
    std::unordered_set<std::string> cur;
    for (auto& e : list_dir(fdir / "cur"))
      if (!e.is_dir) cur.insert(std::move(e.name));
    std::unordered_set<std::string> tmp;
    for (auto& e : list_dir(fdir / "tmp"))
      if (!e.is_dir) tmp.insert(std::move(e.name));

    std::vector<FileRow> missing;
    size_t rolled_forward = 0;
    {
      auto s = db->prepare("SELECT uid, file, size FROM messages WHERE folder_id = ?");
      s.bind(1, f->id);
      while (s.step()) {
        std::string file = s.text(1);
        if (cur.erase(file)) {
          // A second name of a finished rename that power loss brought back.
          if (tmp.erase(file)) std::filesystem::remove(fdir / "tmp" / file, ec);
          continue;
        }
        if (tmp.erase(file)) {
          // Committed but not yet renamed: roll forward.
          if (::rename((fdir / "tmp" / file).c_str(), (fdir / "cur" / file).c_str()) != 0)
            throw std::runtime_error(fmt::format("rename into {}: {}", (fdir / "cur").string(), errno_text(errno)));
          ++rolled_forward;
          continue;
        }
        missing.push_back(FileRow{static_cast<uint32_t>(s.int64(0)), std::move(file),
                                  static_cast<uint64_t>(s.int64(2)), 0, {}, 0});
      }
    }
    FolderRow state = *f;
    bool changed = false;
    if (!missing.empty()) {
      // Rows whose file is gone (damage outside our protocol): drop them as expunged.
      ++state.highest_modseq;
      std::vector<std::string> ignored;
      uint64_t bytes = remove_rows(*db, state.id, missing, state.highest_modseq, now, ignored);
      auto del = db->prepare("DELETE FROM pending_unlink WHERE path = ?");
      for (const auto& p : ignored) del.bind(1, p).run();
      add_usage(*db, -static_cast<int64_t>(bytes));
      changed = true;
      for (const auto& r : missing)
        log::warn(kLog, "account={} folder=\"{}\" uid={} file={}: message file missing; index row removed",
                  account, state.name, r.uid, r.file);
    }
    if (!cur.empty()) {
      // Files without rows (copied in by hand, or an index rebuilt): index them with new UIDs.
      std::vector<std::pair<int64_t, std::string>> found;
      for (const auto& name : cur) {
        struct stat st {};
        if (::stat((fdir / "cur" / name).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
        found.emplace_back(static_cast<int64_t>(st.st_mtime), name);
      }
      std::sort(found.begin(), found.end());
      ++state.highest_modseq;
      auto ins = db->prepare(
          "INSERT INTO messages(folder_id, uid, file, size, internal_date, saved_date, flags, keywords, modseq)"
          " VALUES(?, ?, ?, ?, ?, ?, 0, '', ?)");
      int64_t added_bytes = 0;
      for (const auto& [mtime, name] : found) {
        struct stat st {};
        if (::stat((fdir / "cur" / name).c_str(), &st) != 0) continue;
        ins.bind(1, state.id)
            .bind(2, static_cast<int64_t>(state.uidnext))
            .bind(3, name)
            .bind(4, static_cast<int64_t>(st.st_size))
            .bind(5, mtime)
            .bind(6, now)
            .bind(7, static_cast<int64_t>(state.highest_modseq))
            .run();
        log::info(kLog, "account={} folder=\"{}\" file={}: file without index row; indexed as uid={}", account,
                  state.name, name, state.uidnext);
        ++state.uidnext;
        added_bytes += st.st_size;
      }
      add_usage(*db, added_bytes);
      changed = true;
    }
    size_t stale = 0;
    for (const auto& name : tmp) {
      struct stat st {};
      auto p = fdir / "tmp" / name;
      if (::stat(p.c_str(), &st) != 0) continue;
      if (static_cast<int64_t>(st.st_mtime) < stale_before && ::unlink(p.c_str()) == 0) ++stale;
    }
    if (changed) write_folder_counters(*db, state);
    txn.commit();
    if (rolled_forward || stale)
      log::info(kLog, "account={} folder=\"{}\": recovery finished {} rename(s), removed {} stale tmp file(s)",
                account, state.name, rolled_forward, stale);
  }

  // 3. Folder directories without a row: empty leftovers of a crashed CREATE
  //    are removed; anything with messages is kept and reported.
  for (const auto& e : list_dir(dir / "folders")) {
    if (!e.is_dir) continue;
    char* end = nullptr;
    long long id = std::strtoll(e.name.c_str(), &end, 10);
    if (end && *end == '\0' && folder_ids.count(id)) continue;
    auto p = dir / "folders" / e.name;
    if (list_dir(p / "cur").empty() && list_dir(p / "tmp").empty()) {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    } else {
      log::warn(kLog, "account={} directory {} has messages but no folder in the index; left alone", account,
                p.string());
    }
  }

  // 4. Usage from the rows (self-healing).
  {
    Txn txn(*db, true);
    auto s = db->prepare("SELECT COALESCE(SUM(size), 0) FROM messages");
    s.step();
    int64_t total = s.int64(0);
    meta_set(*db, "usage", total);
    txn.commit();
    usage->store(static_cast<uint64_t>(total));
  }
}

void AccountStore::Impl::prune_tombstones(int64_t cutoff) {
  std::lock_guard wl(write_mu);
  auto db = conn();
  Txn txn(*db, true);
  db->prepare(
        "UPDATE folders SET vanished_floor = MAX(vanished_floor, (SELECT COALESCE(MAX(modseq), 0) FROM expunged "
        "WHERE expunged.folder_id = folders.id AND at < ?))")
      .bind(1, cutoff)
      .run();
  db->prepare("DELETE FROM expunged WHERE at < ?").bind(1, cutoff).run();
  txn.commit();
}

void AccountStore::Impl::publish(MailboxEvent event) const {
  if (!settings->events->active()) return;
  event.account = account;
  settings->events->publish(std::move(event));
}

Result<AppendOutcome> AccountStore::Impl::save(std::string_view folder_name, std::string_view message, uint32_t flags,
                                               const std::vector<std::string>& keywords,
                                               std::optional<int64_t> internal_date, uint64_t quota_bytes,
                                               std::string_view actor) {
  std::string folder;
  auto saved = save_locked(folder_name, message, flags, keywords, internal_date, quota_bytes, &folder);
  if (saved) {
    MailboxEvent ev;
    ev.kind = MailboxEvent::Kind::Stored;
    ev.folder = std::move(folder);
    ev.actor = current_actor(actor);
    ev.uidvalidity = saved->uidvalidity;
    ev.uids = {saved->uid};
    ev.size = message.size();
    publish(std::move(ev));
  }
  return saved;
}

Result<AppendOutcome> AccountStore::Impl::save_locked(std::string_view folder_name, std::string_view message,
                                                      uint32_t flags, const std::vector<std::string>& keywords,
                                                      std::optional<int64_t> internal_date, uint64_t quota_bytes,
                                                      std::string* folder_out) {
  auto name = normalize_folder_name(folder_name);
  if (!name) return not_found(folder_name);
  *folder_out = *name;
  if (auto bad = check_keywords(keywords)) return *bad;
  auto kw = unique_keywords(keywords);
  const uint64_t size = message.size();
  // Cheap early refusal from the cached usage; the authoritative check is in the transaction.
  if (quota_bytes && usage->load() + size > quota_bytes)
    return StoreError{StoreError::Code::OverQuota,
                      fmt::format("quota exceeded ({} + {} > {} octets)", usage->load(), size, quota_bytes)};
  std::optional<FolderRow> f;
  {
    auto db = conn();
    f = folder_by_name(*db, *name);
  }
  if (!f) return not_found(*name);

  const auto fdir = folder_dir(f->id);
  const std::string file = unique_name();
  const auto tmp_path = fdir / "tmp" / file;
  std::string err;
  if (!write_new_file(tmp_path, message, &err)) {
    // The folder's directories may have been removed by hand: make them and try once more.
    std::error_code ec;
    std::filesystem::create_directories(fdir / "tmp", ec);
    std::filesystem::create_directories(fdir / "cur", ec);
    err.clear();
    if (!write_new_file(tmp_path, message, &err)) return io_error(err);
  }
  if (!fsync_dir(fdir / "tmp", &err)) {
    ::unlink(tmp_path.c_str());
    return io_error(err);
  }

  const int64_t now = settings->now();
  AppendOutcome out;
  std::lock_guard wl(write_mu);
  try {
    auto db = conn();
    Txn txn(*db, true);
    auto state = folder_by_id(*db, f->id);
    if (!state) {
      ::unlink(tmp_path.c_str());
      return StoreError{StoreError::Code::NotFound, fmt::format("folder \"{}\" was deleted", *name)};
    }
    int64_t used = meta_get(*db, "usage", 0);
    if (quota_bytes && static_cast<uint64_t>(used) + size > quota_bytes) {
      ::unlink(tmp_path.c_str());
      usage->store(static_cast<uint64_t>(used));
      return StoreError{StoreError::Code::OverQuota,
                        fmt::format("quota exceeded ({} + {} > {} octets)", used, size, quota_bytes)};
    }
    ++state->highest_modseq;
    out.uidvalidity = state->uidvalidity;
    out.uid = state->uidnext++;
    db->prepare("INSERT INTO messages(folder_id, uid, file, size, internal_date, saved_date, flags, keywords, modseq)"
                " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(1, state->id)
        .bind(2, static_cast<int64_t>(out.uid))
        .bind(3, file)
        .bind(4, static_cast<int64_t>(size))
        .bind(5, internal_date.value_or(now))
        .bind(6, now)
        .bind(7, static_cast<int64_t>(flags & kAllFlags))
        .bind(8, join_keywords(kw))
        .bind(9, static_cast<int64_t>(state->highest_modseq))
        .run();
    write_folder_counters(*db, *state);
    add_usage(*db, static_cast<int64_t>(size));
    txn.commit();  // the commit point: the message exists from here on
    usage->store(static_cast<uint64_t>(used) + size);
  } catch (const std::exception& e) {
    ::unlink(tmp_path.c_str());
    return io_error(e.what());
  }
  // The index points at the file; moving it to cur/ needs no fsync: if the
  // rename is lost, recovery finds the row's file in tmp/ and redoes it.
  if (::rename(tmp_path.c_str(), (fdir / "cur" / file).c_str()) != 0)
    log::warn(kLog, "account={} folder=\"{}\" uid={}: rename into cur/ failed ({}); recovery will finish it",
              account, *name, out.uid, errno_text(errno));
  return out;
}

AccountStore::AccountStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AccountStore::~AccountStore() = default;

const std::string& AccountStore::account() const { return impl_->account; }
const std::filesystem::path& AccountStore::directory() const { return impl_->dir; }
uint64_t AccountStore::usage_bytes() const { return impl_->usage->load(); }

namespace {

// Runs `f`, turning database and file-system exceptions into Io errors (logged once here).
template <class F>
auto guarded(std::string_view account, std::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    log::error(kLog, "account={} {}: {}", account, what, e.what());
    return io_error(fmt::format("{}: {}", what, e.what()));
  }
}

}  // namespace

Result<std::vector<FolderInfo>> AccountStore::list_folders() {
  return guarded(impl_->account, "list folders", [&]() -> Result<std::vector<FolderInfo>> {
    auto db = impl_->conn();
    Txn txn(*db, false);  // one snapshot for folders and counters
    auto folders = all_folders(*db);
    std::unordered_map<int64_t, FolderInfo> counts;
    auto s = db->prepare(
        "SELECT folder_id, COUNT(*), SUM((flags & 1) = 0), SUM((flags & 8) != 0), SUM(size) FROM messages "
        "GROUP BY folder_id");
    while (s.step()) {
      auto& c = counts[s.int64(0)];
      c.messages = static_cast<uint32_t>(s.int64(1));
      c.unseen = static_cast<uint32_t>(s.int64(2));
      c.deleted = static_cast<uint32_t>(s.int64(3));
      c.size = static_cast<uint64_t>(s.int64(4));
    }
    txn.commit();
    std::vector<FolderInfo> out;
    for (const auto& f : folders) {
      FolderInfo i = counts[f.id];
      i.name = f.name;
      i.special_use = f.use;
      i.subscribed = f.subscribed;
      i.uidvalidity = f.uidvalidity;
      i.uidnext = f.uidnext;
      i.highest_modseq = f.highest_modseq;
      out.push_back(std::move(i));
    }
    for (auto& i : out)
      for (const auto& other : folders)
        if (is_child_of(other.name, i.name)) i.has_children = true;
    std::stable_partition(out.begin(), out.end(), [](const FolderInfo& i) { return i.name == "INBOX"; });
    return out;
  });
}

Result<FolderInfo> AccountStore::folder_status(std::string_view name_in) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "folder status", [&]() -> Result<FolderInfo> {
    auto db = impl_->conn();
    Txn txn(*db, false);
    auto f = folder_by_name(*db, *name);
    if (!f) return not_found(*name);
    FolderInfo i;
    i.name = f->name;
    i.special_use = f->use;
    i.subscribed = f->subscribed;
    i.uidvalidity = f->uidvalidity;
    i.uidnext = f->uidnext;
    i.highest_modseq = f->highest_modseq;
    auto s = db->prepare(
        "SELECT COUNT(*), COALESCE(SUM((flags & 1) = 0), 0), COALESCE(SUM((flags & 8) != 0), 0), "
        "COALESCE(SUM(size), 0) FROM messages WHERE folder_id = ?");
    s.bind(1, f->id);
    s.step();
    i.messages = static_cast<uint32_t>(s.int64(0));
    i.unseen = static_cast<uint32_t>(s.int64(1));
    i.deleted = static_cast<uint32_t>(s.int64(2));
    i.size = static_cast<uint64_t>(s.int64(3));
    for (const auto& other : all_folders(*db))
      if (is_child_of(other.name, f->name)) i.has_children = true;
    txn.commit();
    return i;
  });
}

Result<FolderInfo> AccountStore::create_folder(std::string_view name_in, SpecialUse use) {
  std::string why;
  auto name = normalize_folder_name(name_in, &why);
  if (!name) return StoreError{StoreError::Code::InvalidName, why};
  {
    auto r = guarded(impl_->account, "create folder", [&]() -> Result<void> {
      std::lock_guard wl(impl_->write_mu);
      auto db = impl_->conn();
      Txn txn(*db, true);
      if (folder_by_name(*db, *name))
        return StoreError{StoreError::Code::Exists, fmt::format("folder \"{}\" exists", *name)};
      const int64_t now = impl_->settings->now();
      for (const auto& parent : parents_of(*name))
        if (!folder_by_name(*db, parent)) insert_folder(*db, impl_->dir, parent, SpecialUse::None, now);
      insert_folder(*db, impl_->dir, *name, use, now);
      txn.commit();
      return {};
    });
    if (!r) return r.error();
  }
  return folder_status(*name);
}

Result<void> AccountStore::delete_folder(std::string_view name_in) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  if (*name == "INBOX") return StoreError{StoreError::Code::Forbidden, "INBOX cannot be deleted"};
  return guarded(impl_->account, "delete folder", [&]() -> Result<void> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    int64_t id = 0;
    {
      Txn txn(*db, true);
      auto f = folder_by_name(*db, *name);
      if (!f) return not_found(*name);
      for (const auto& other : all_folders(*db))
        if (is_child_of(other.name, f->name))
          return StoreError{StoreError::Code::HasChildren,
                            fmt::format("folder \"{}\" has child folders; delete them first", *name)};
      id = f->id;
      auto s = db->prepare("SELECT COALESCE(SUM(size), 0) FROM messages WHERE folder_id = ?");
      s.bind(1, id);
      s.step();
      int64_t bytes = s.int64(0);
      db->prepare("DELETE FROM messages WHERE folder_id = ?").bind(1, id).run();
      db->prepare("DELETE FROM expunged WHERE folder_id = ?").bind(1, id).run();
      db->prepare("DELETE FROM folders WHERE id = ?").bind(1, id).run();
      db->prepare("INSERT OR IGNORE INTO pending_unlink(path, is_dir) VALUES(?, 1)")
          .bind(1, fmt::format("folders/{}", id))
          .run();
      add_usage(*db, -bytes);
      const int64_t used = meta_get(*db, "usage", 0);
      txn.commit();
      impl_->usage->store(static_cast<uint64_t>(used));
    }
    std::error_code ec;
    std::filesystem::remove_all(impl_->folder_dir(id), ec);
    if (ec) {
      log::warn(kLog, "account={} remove {}: {}; recovery will retry", impl_->account,
                impl_->folder_dir(id).string(), ec.message());
      return {};
    }
    Txn txn(*db, true);
    db->prepare("DELETE FROM pending_unlink WHERE path = ?").bind(1, fmt::format("folders/{}", id)).run();
    txn.commit();
    return {};
  });
}

Result<void> AccountStore::rename_folder(std::string_view from_in, std::string_view to_in) {
  std::string why;
  auto from = normalize_folder_name(from_in);
  if (!from) return not_found(from_in);
  auto to = normalize_folder_name(to_in, &why);
  if (!to) return StoreError{StoreError::Code::InvalidName, why};
  if (*to == "INBOX" || *from == *to)
    return StoreError{StoreError::Code::Exists, fmt::format("folder \"{}\" exists", *to)};
  if (is_child_of(*to, *from))
    return StoreError{StoreError::Code::InvalidName, "a folder cannot be renamed into its own child"};
  if (*from == "INBOX") {
    // RFC 9051 §6.3.6: a new folder receives INBOX's messages; INBOX stays, empty.
    auto created = create_folder(*to);
    if (!created) return created.error();
    std::vector<uint32_t> uids;
    {
      auto view = open_folder("INBOX");
      if (!view) return view.error();
      for (const auto& m : (*view)->messages()) uids.push_back(m.uid);
    }
    if (!uids.empty()) {
      auto moved = move("INBOX", uids, *to);
      if (!moved) return moved.error();
    }
    return {};
  }
  return guarded(impl_->account, "rename folder", [&]() -> Result<void> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    Txn txn(*db, true);
    auto folders = all_folders(*db);
    bool found = false;
    for (const auto& f : folders) {
      if (f.name == *from) found = true;
      if (f.name == *to || is_child_of(f.name, *to))
        return StoreError{StoreError::Code::Exists, fmt::format("folder \"{}\" exists", f.name)};
    }
    if (!found) return not_found(*from);
    auto upd = db->prepare("UPDATE folders SET name = ? WHERE id = ?");
    for (const auto& f : folders) {
      if (f.name == *from) upd.bind(1, *to).bind(2, f.id).run();
      else if (is_child_of(f.name, *from)) upd.bind(1, *to + f.name.substr(from->size())).bind(2, f.id).run();
    }
    const int64_t now = impl_->settings->now();
    for (const auto& parent : parents_of(*to))
      if (!folder_by_name(*db, parent)) insert_folder(*db, impl_->dir, parent, SpecialUse::None, now);
    txn.commit();
    return {};
  });
}

Result<void> AccountStore::subscribe(std::string_view name_in, bool subscribed) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "subscribe", [&]() -> Result<void> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    Txn txn(*db, true);
    db->prepare("UPDATE folders SET subscribed = ? WHERE name = ?").bind(1, subscribed ? 1 : 0).bind(2, *name).run();
    if (db->changes() == 0) return not_found(*name);
    txn.commit();
    return {};
  });
}

Result<void> AccountStore::set_special_use(std::string_view name_in, SpecialUse use) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "set special use", [&]() -> Result<void> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    Txn txn(*db, true);
    db->prepare("UPDATE folders SET special_use = ? WHERE name = ?")
        .bind(1, static_cast<int64_t>(use))
        .bind(2, *name)
        .run();
    if (db->changes() == 0) return not_found(*name);
    txn.commit();
    return {};
  });
}

Result<std::string> AccountStore::folder_for(SpecialUse use) {
  return guarded(impl_->account, "folder for special use", [&]() -> Result<std::string> {
    auto db = impl_->conn();
    auto s = db->prepare("SELECT name FROM folders WHERE special_use = ? ORDER BY name LIMIT 1");
    s.bind(1, static_cast<int64_t>(use));
    if (!s.step())
      return StoreError{StoreError::Code::NotFound,
                        fmt::format("no folder with special use {}", special_use_name(use))};
    return s.text(0);
  });
}

Result<std::unique_ptr<FolderView>> AccountStore::open_folder(std::string_view name_in) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "open folder", [&]() -> Result<std::unique_ptr<FolderView>> {
    auto db = impl_->conn();
    Txn txn(*db, false);
    auto f = folder_by_name(*db, *name);
    if (!f) return not_found(*name);
    auto view = std::unique_ptr<FolderView>(new FolderView());
    view->account_ = shared_from_this();
    view->folder_id_ = f->id;
    view->name_ = f->name;
    view->special_use_ = f->use;
    view->uidvalidity_ = f->uidvalidity;
    view->uidnext_ = f->uidnext;
    view->highest_modseq_ = f->highest_modseq;
    auto s = db->prepare(fmt::format("SELECT {} FROM messages WHERE folder_id = ? ORDER BY uid", kMessageCols));
    s.bind(1, f->id);
    while (s.step()) view->messages_.push_back(message_from(s));
    txn.commit();
    return view;
  });
}

Result<uint32_t> AccountStore::claim_recent(std::string_view name_in) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "claim recent", [&]() -> Result<uint32_t> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    Txn txn(*db, true);
    auto s = db->prepare("SELECT first_recent, uidnext FROM folders WHERE name = ?");
    s.bind(1, *name);
    if (!s.step()) return not_found(*name);
    auto first = static_cast<uint32_t>(s.int64(0));
    auto next = s.int64(1);
    s.reset();
    db->prepare("UPDATE folders SET first_recent = ? WHERE name = ?").bind(1, next).bind(2, *name).run();
    txn.commit();
    return first;
  });
}

Result<FolderChanges> AccountStore::changes_since(std::string_view name_in, uint32_t uidvalidity, uint64_t since) {
  auto name = normalize_folder_name(name_in);
  if (!name) return not_found(name_in);
  return guarded(impl_->account, "changes since", [&]() -> Result<FolderChanges> {
    auto db = impl_->conn();
    Txn txn(*db, false);
    auto f = folder_by_name(*db, *name);
    if (!f) return not_found(*name);
    if (f->uidvalidity != uidvalidity)
      return StoreError{StoreError::Code::Stale, fmt::format("UIDVALIDITY of \"{}\" is now {}", *name, f->uidvalidity)};
    FolderChanges c;
    c.uidvalidity = f->uidvalidity;
    c.uidnext = f->uidnext;
    c.highest_modseq = f->highest_modseq;
    c.expunged_incomplete = since < f->vanished_floor;
    auto s = db->prepare(
        fmt::format("SELECT {} FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid", kMessageCols));
    s.bind(1, f->id).bind(2, static_cast<int64_t>(since));
    while (s.step()) c.changed.push_back(message_from(s));
    auto e = db->prepare("SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid");
    e.bind(1, f->id).bind(2, static_cast<int64_t>(since));
    while (e.step()) c.expunged.push_back(static_cast<uint32_t>(e.int64(0)));
    txn.commit();
    return c;
  });
}

Result<std::filesystem::path> AccountStore::message_path(std::string_view folder_in, uint32_t uid) {
  auto name = normalize_folder_name(folder_in);
  if (!name) return not_found(folder_in);
  return guarded(impl_->account, "message path", [&]() -> Result<std::filesystem::path> {
    auto db = impl_->conn();
    auto s = db->prepare(
        "SELECT m.folder_id, m.file FROM messages m JOIN folders f ON f.id = m.folder_id WHERE f.name = ? AND "
        "m.uid = ?");
    s.bind(1, *name).bind(2, static_cast<int64_t>(uid));
    if (!s.step())
      return StoreError{StoreError::Code::NotFound, fmt::format("no message with UID {} in \"{}\"", uid, *name)};
    auto fdir = impl_->folder_dir(s.int64(0));
    auto file = s.text(1);
    auto p = fdir / "cur" / file;
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0) return p;
    // Committed but not yet moved out of tmp/ (a writer is between COMMIT and rename).
    auto t = fdir / "tmp" / file;
    if (::stat(t.c_str(), &st) == 0) return t;
    if (::stat(p.c_str(), &st) == 0) return p;
    return StoreError{StoreError::Code::NotFound, fmt::format("message UID {} in \"{}\" was expunged", uid, *name)};
  });
}

Result<std::string> AccountStore::read_message(std::string_view folder, uint32_t uid) {
  auto path = message_path(folder, uid);
  if (!path) return path.error();
  std::string out;
  int err = 0;
  if (read_file(*path, out, &err)) return out;
  if (err == ENOENT) {
    // Renamed into cur/ between our stat and open: one more look.
    auto again = message_path(folder, uid);
    if (!again) return again.error();
    out.clear();
    if (read_file(*again, out, &err)) return out;
  }
  if (err == ENOENT)
    return StoreError{StoreError::Code::NotFound, fmt::format("message UID {} was expunged", uid)};
  return io_error(fmt::format("read {}: {}", path->string(), errno_text(err)));
}

Result<StoreFlagsOutcome> AccountStore::store_flags(std::string_view folder_in, const std::vector<uint32_t>& uids,
                                                    FlagOp op, uint32_t flags,
                                                    const std::vector<std::string>& keywords,
                                                    std::optional<uint64_t> unchanged_since) {
  auto name = normalize_folder_name(folder_in);
  if (!name) return not_found(folder_in);
  if (auto bad = check_keywords(keywords)) return *bad;
  const auto kw = unique_keywords(keywords);
  flags &= kAllFlags;
  MailboxEvent ev;
  ev.kind = MailboxEvent::Kind::Flags;
  ev.folder = *name;
  auto result = guarded(impl_->account, "store flags", [&]() -> Result<StoreFlagsOutcome> {
    std::lock_guard wl(impl_->write_mu);
    auto db = impl_->conn();
    Txn txn(*db, true);
    auto f = folder_by_name(*db, *name);
    if (!f) return not_found(*name);
    StoreFlagsOutcome out;
    const uint64_t modseq = f->highest_modseq + 1;
    bool any = false;
    auto sel = db->prepare(fmt::format("SELECT {} FROM messages WHERE folder_id = ? AND uid = ?", kMessageCols));
    auto upd = db->prepare("UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE folder_id = ? AND uid = ?");
    std::vector<uint32_t> sorted = uids;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (uint32_t uid : sorted) {
      sel.bind(1, f->id).bind(2, static_cast<int64_t>(uid));
      if (!sel.step()) {
        sel.reset();
        continue;
      }
      MessageInfo m = message_from(sel);
      sel.reset();
      // RFC 7162 §3.2: UNCHANGEDSINCE fails for messages changed after it.
      if (unchanged_since && m.modseq > *unchanged_since) {
        out.modified.push_back(uid);
        continue;
      }
      uint32_t nf = m.flags;
      std::vector<std::string> nk = m.keywords;
      switch (op) {
        case FlagOp::Replace:
          nf = flags;
          nk = kw;
          break;
        case FlagOp::Add:
          nf |= flags;
          for (const auto& k : kw)
            if (!has_keyword(nk, k)) nk.push_back(k);
          break;
        case FlagOp::Remove:
          nf &= ~flags;
          std::erase_if(nk, [&](const std::string& k) { return has_keyword(kw, k); });
          break;
      }
      if (nf != m.flags || nk != m.keywords) {
        m.flags = nf;
        m.keywords = std::move(nk);
        m.modseq = modseq;
        upd.bind(1, static_cast<int64_t>(nf))
            .bind(2, join_keywords(m.keywords))
            .bind(3, static_cast<int64_t>(modseq))
            .bind(4, f->id)
            .bind(5, static_cast<int64_t>(uid))
            .run();
        any = true;
        ev.uids.push_back(uid);
      }
      out.messages.push_back(std::move(m));
    }
    if (any) {
      f->highest_modseq = modseq;
      write_folder_counters(*db, *f);
    }
    out.highest_modseq = f->highest_modseq;
    ev.uidvalidity = f->uidvalidity;
    txn.commit();
    return out;
  });
  // Announced after the commit, with the write lock released.
  if (result && !ev.uids.empty()) {
    ev.actor = current_actor();
    impl_->publish(std::move(ev));
  }
  return result;
}

namespace {

// After the commit that recorded them in pending_unlink: unlink the files,
// make that durable, then forget them. A failure leaves them for recovery.
void finish_unlinks(AccountStore::Impl& impl, Db& db, const std::vector<std::string>& paths) {
  if (paths.empty()) return;
  std::set<std::filesystem::path> dirs;
  for (const auto& rel : paths) {
    auto p = impl.dir / rel;
    ::unlink(p.c_str());
    ::unlink((p.parent_path().parent_path() / "tmp" / p.filename()).c_str());
    dirs.insert(p.parent_path());
  }
  for (const auto& d : dirs) {
    std::string err;
    if (!fsync_dir(d, &err)) {
      log::warn(kLog, "account={} {}; recovery will finish the unlinks", impl.account, err);
      return;
    }
  }
  try {
    Txn txn(db, true);
    auto del = db.prepare("DELETE FROM pending_unlink WHERE path = ?");
    for (const auto& rel : paths) del.bind(1, rel).run();
    txn.commit();
  } catch (const std::exception& e) {
    log::warn(kLog, "account={} clearing pending unlinks: {}; recovery will finish", impl.account, e.what());
  }
}

}  // namespace

Result<std::vector<uint32_t>> AccountStore::expunge(std::string_view folder, const std::vector<uint32_t>& uids,
                                                    bool only_deleted) {
  if (uids.empty()) return std::vector<uint32_t>{};
  return impl_->remove_messages(folder, &uids, only_deleted);
}

Result<std::vector<uint32_t>> AccountStore::expunge_deleted(std::string_view folder) {
  return impl_->remove_messages(folder, nullptr, true);
}

Result<std::vector<uint32_t>> AccountStore::Impl::remove_messages(std::string_view folder_in,
                                                                  const std::vector<uint32_t>* uids,
                                                                  bool only_deleted) {
  auto name = normalize_folder_name(folder_in);
  if (!name) return not_found(folder_in);
  uint32_t uidvalidity = 0;
  auto result = guarded(account, "expunge", [&]() -> Result<std::vector<uint32_t>> {
    std::lock_guard wl(write_mu);
    auto db = conn();
    std::vector<std::string> unlink_later;
    std::vector<uint32_t> removed;
    {
      Txn txn(*db, true);
      auto f = folder_by_name(*db, *name);
      if (!f) return not_found(*name);
      std::vector<FileRow> rows;
      auto collect = [&](Stmt& s) {
        while (s.step()) {
          uint32_t fl = static_cast<uint32_t>(s.int64(3));
          if (only_deleted && !(fl & kDeleted)) continue;
          rows.push_back(FileRow{static_cast<uint32_t>(s.int64(0)), s.text(1), static_cast<uint64_t>(s.int64(2)), fl,
                                 {}, 0});
        }
      };
      if (!uids) {
        auto s = db->prepare("SELECT uid, file, size, flags FROM messages WHERE folder_id = ? ORDER BY uid");
        s.bind(1, f->id);
        collect(s);
      } else {
        std::vector<uint32_t> sorted = *uids;
        std::sort(sorted.begin(), sorted.end());
        sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
        auto s = db->prepare("SELECT uid, file, size, flags FROM messages WHERE folder_id = ? AND uid = ?");
        for (uint32_t uid : sorted) {
          s.bind(1, f->id).bind(2, static_cast<int64_t>(uid));
          collect(s);
          s.reset();
        }
      }
      if (rows.empty()) return removed;
      uidvalidity = f->uidvalidity;
      ++f->highest_modseq;
      uint64_t bytes = remove_rows(*db, f->id, rows, f->highest_modseq, settings->now(), unlink_later);
      write_folder_counters(*db, *f);
      add_usage(*db, -static_cast<int64_t>(bytes));
      const int64_t used = meta_get(*db, "usage", 0);
      txn.commit();
      usage->store(static_cast<uint64_t>(used));
      for (const auto& r : rows) removed.push_back(r.uid);
    }
    finish_unlinks(*this, *db, unlink_later);
    return removed;
  });
  // Announced after the commit and the unlinks, with the write lock released.
  if (result && !result->empty()) {
    MailboxEvent ev;
    ev.kind = MailboxEvent::Kind::Expunged;
    ev.folder = *name;
    ev.actor = current_actor();
    ev.uidvalidity = uidvalidity;
    ev.uids = *result;
    publish(std::move(ev));
  }
  return result;
}

Result<AppendOutcome> AccountStore::append(std::string_view folder, std::string_view message, uint32_t flags,
                                           const std::vector<std::string>& keywords,
                                           std::optional<int64_t> internal_date, uint64_t quota_bytes) {
  return impl_->save(folder, message, flags, keywords, internal_date, quota_bytes, "unknown");
}

namespace {

struct Linked {
  FileRow src;
  std::string new_file;
};

}  // namespace

// COPY and MOVE share one path: link (or copy) each source file into the
// destination's tmp/, fsync that directory once, then one transaction adds
// the rows (and, for MOVE, removes the sources), then the renames.
static Result<CopyOutcome> copy_or_move(AccountStore::Impl& impl, std::string_view from_in,
                                        const std::vector<uint32_t>& uids, std::string_view to_in,
                                        uint64_t quota_bytes, bool is_move, MailboxEvent& ev) {
  auto from = normalize_folder_name(from_in);
  if (!from) return not_found(from_in);
  auto to = normalize_folder_name(to_in);
  if (!to) return not_found(to_in);
  std::optional<FolderRow> src, dst;
  std::vector<FileRow> rows;
  {
    auto db = impl.conn();
    Txn txn(*db, false);
    src = folder_by_name(*db, *from);
    if (!src) return not_found(*from);
    dst = folder_by_name(*db, *to);
    if (!dst)
      return StoreError{StoreError::Code::NotFound, fmt::format("[TRYCREATE] no folder named \"{}\"", *to)};
    std::vector<uint32_t> sorted = uids;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (uint32_t uid : sorted)
      if (auto r = file_row(*db, src->id, uid)) rows.push_back(std::move(*r));
    txn.commit();
  }
  CopyOutcome out;
  out.dest_uidvalidity = dst->uidvalidity;
  if (rows.empty()) return out;

  uint64_t total = 0;
  for (const auto& r : rows) total += r.size;
  if (!is_move && quota_bytes && impl.usage->load() + total > quota_bytes)
    return StoreError{StoreError::Code::OverQuota,
                      fmt::format("quota exceeded ({} + {} > {} octets)", impl.usage->load(), total, quota_bytes)};

  const auto sdir = impl.folder_dir(src->id);
  const auto ddir = impl.folder_dir(dst->id);
  std::error_code ec;
  std::filesystem::create_directories(ddir / "tmp", ec);
  std::filesystem::create_directories(ddir / "cur", ec);
  std::vector<Linked> linked;
  auto drop_linked = [&] {
    for (const auto& l : linked) ::unlink((ddir / "tmp" / l.new_file).c_str());
  };
  for (auto& r : rows) {
    Linked l{r, unique_name()};
    auto target = ddir / "tmp" / l.new_file;
    bool ok = false;
    for (const char* sub : {"cur", "tmp"}) {
      auto source = sdir / sub / r.file;
      if (::link(source.c_str(), target.c_str()) == 0) {
        ok = true;
        break;
      }
      if (errno == ENOENT) continue;
      // No hard links here (EXDEV, EPERM, EMLINK): copy the octets.
      std::string data, err;
      int rerr = 0;
      if (!read_file(source, data, &rerr)) {
        if (rerr == ENOENT) continue;
        drop_linked();
        return io_error(fmt::format("read {}: {}", source.string(), errno_text(rerr)));
      }
      if (!write_new_file(target, data, &err)) {
        drop_linked();
        return io_error(err);
      }
      ok = true;
      break;
    }
    if (ok) linked.push_back(std::move(l));  // else expunged meanwhile: skipped
  }
  if (linked.empty()) return out;
  std::string err;
  if (!fsync_dir(ddir / "tmp", &err)) {
    drop_linked();
    return io_error(err);
  }

  std::vector<std::string> unlink_later;
  std::lock_guard wl(impl.write_mu);
  try {
    auto db = impl.conn();
    {
      Txn txn(*db, true);
      auto s = folder_by_id(*db, src->id);
      auto d = folder_by_id(*db, dst->id);
      if (!s || !d) {
        drop_linked();
        return StoreError{StoreError::Code::NotFound, "a folder was deleted meanwhile"};
      }
      // Sources expunged since we read them are not copied (their links go).
      std::vector<Linked> still;
      for (auto& l : linked) {
        if (file_row(*db, src->id, l.src.uid)) still.push_back(std::move(l));
        else ::unlink((ddir / "tmp" / l.new_file).c_str());
      }
      linked = std::move(still);
      uint64_t bytes = 0;
      for (const auto& l : linked) bytes += l.src.size;
      int64_t used = meta_get(*db, "usage", 0);
      if (!is_move && quota_bytes && static_cast<uint64_t>(used) + bytes > quota_bytes) {
        drop_linked();
        return StoreError{StoreError::Code::OverQuota,
                          fmt::format("quota exceeded ({} + {} > {} octets)", used, bytes, quota_bytes)};
      }
      const int64_t now = impl.settings->now();
      FolderRow& dstate = *d;
      FolderRow* sstate = (s->id == d->id) ? &dstate : &*s;
      ++dstate.highest_modseq;
      auto ins = db->prepare(
          "INSERT INTO messages(folder_id, uid, file, size, internal_date, saved_date, flags, keywords, modseq)"
          " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)");
      for (const auto& l : linked) {
        uint32_t uid = dstate.uidnext++;
        ins.bind(1, dstate.id)
            .bind(2, static_cast<int64_t>(uid))
            .bind(3, l.new_file)
            .bind(4, static_cast<int64_t>(l.src.size))
            .bind(5, l.src.internal_date)
            .bind(6, now)
            .bind(7, static_cast<int64_t>(l.src.flags))
            .bind(8, l.src.keywords)
            .bind(9, static_cast<int64_t>(dstate.highest_modseq))
            .run();
        out.uids.emplace_back(l.src.uid, uid);
        ev.uids.push_back(l.src.uid);
        ev.target_uids.push_back(uid);
        ev.size += l.src.size;
      }
      ev.folder = s->name;
      ev.target_folder = d->name;
      ev.uidvalidity = s->uidvalidity;
      ev.target_uidvalidity = d->uidvalidity;
      if (is_move) {
        if (sstate != &dstate) ++sstate->highest_modseq;
        std::vector<FileRow> gone;
        for (const auto& l : linked) gone.push_back(l.src);
        remove_rows(*db, sstate->id, gone, sstate->highest_modseq, now, unlink_later);
        if (sstate != &dstate) write_folder_counters(*db, *sstate);
      } else {
        add_usage(*db, static_cast<int64_t>(bytes));
      }
      write_folder_counters(*db, dstate);
      txn.commit();
      if (!is_move) impl.usage->store(static_cast<uint64_t>(used) + bytes);
    }
    for (const auto& l : linked)
      if (::rename((ddir / "tmp" / l.new_file).c_str(), (ddir / "cur" / l.new_file).c_str()) != 0)
        log::warn(kLog, "account={} rename into {} failed ({}); recovery will finish it", impl.account,
                  (ddir / "cur").string(), errno_text(errno));
    finish_unlinks(impl, *db, unlink_later);
  } catch (const std::exception& e) {
    drop_linked();
    log::error(kLog, "account={} {}: {}", impl.account, is_move ? "move" : "copy", e.what());
    return io_error(e.what());
  }
  return out;
}

Result<CopyOutcome> AccountStore::copy(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to,
                                       uint64_t quota_bytes) {
  MailboxEvent ev;
  ev.kind = MailboxEvent::Kind::Copied;
  auto result = guarded(impl_->account, "copy", [&]() -> Result<CopyOutcome> {
    return copy_or_move(*impl_, from, uids, to, quota_bytes, false, ev);
  });
  // Announced after the commit and the renames, with the write lock released.
  if (result && !result->uids.empty()) {
    ev.actor = current_actor();
    impl_->publish(std::move(ev));
  }
  return result;
}

Result<CopyOutcome> AccountStore::move(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to) {
  MailboxEvent ev;
  ev.kind = MailboxEvent::Kind::Moved;
  auto result = guarded(impl_->account, "move",
                        [&]() -> Result<CopyOutcome> { return copy_or_move(*impl_, from, uids, to, 0, true, ev); });
  if (result && !result->uids.empty()) {
    ev.actor = current_actor();
    impl_->publish(std::move(ev));
  }
  return result;
}

Result<size_t> AccountStore::expire(std::string_view folder_in, int64_t cutoff) {
  auto name = normalize_folder_name(folder_in);
  if (!name) return not_found(folder_in);
  std::vector<uint32_t> uids;
  {
    auto r = guarded(impl_->account, "expire", [&]() -> Result<void> {
      auto db = impl_->conn();
      auto f = folder_by_name(*db, *name);
      if (!f) return not_found(*name);
      auto s = db->prepare("SELECT uid FROM messages WHERE folder_id = ? AND saved_date < ? ORDER BY uid");
      s.bind(1, f->id).bind(2, cutoff);
      while (s.step()) uids.push_back(static_cast<uint32_t>(s.int64(0)));
      return {};
    });
    if (!r) return r.error();
  }
  if (uids.empty()) return size_t{0};
  auto removed = expunge(*name, uids, false);
  if (!removed) return removed.error();
  return removed->size();
}

std::optional<size_t> FolderView::index_of(uint32_t uid) const {
  auto it = std::lower_bound(messages_.begin(), messages_.end(), uid,
                             [](const MessageInfo& m, uint32_t u) { return m.uid < u; });
  if (it == messages_.end() || it->uid != uid) return std::nullopt;
  return static_cast<size_t>(it - messages_.begin());
}

Result<FolderView::Update> FolderView::refresh() {
  auto& impl = *account_->impl_;
  return guarded(impl.account, "refresh", [&]() -> Result<Update> {
    Update up;
    auto db = impl.conn();
    Txn txn(*db, false);
    auto f = folder_by_id(*db, folder_id_);
    if (!f || f->uidvalidity != uidvalidity_) {
      up.gone = true;
      for (const auto& m : messages_) up.expunged.push_back(m.uid);
      messages_.clear();
      return up;
    }
    name_ = f->name;  // renamed folders keep their views
    special_use_ = f->use;
    if (f->highest_modseq == highest_modseq_) return up;
    std::vector<MessageInfo> rows;
    std::unordered_set<uint32_t> gone;
    if (highest_modseq_ < f->vanished_floor) {
      // Expunge records were pruned: compare against a full snapshot.
      auto s = db->prepare(fmt::format("SELECT {} FROM messages WHERE folder_id = ? ORDER BY uid", kMessageCols));
      s.bind(1, folder_id_);
      std::unordered_set<uint32_t> present;
      while (s.step()) {
        auto m = message_from(s);
        present.insert(m.uid);
        if (m.modseq > highest_modseq_) rows.push_back(std::move(m));
      }
      for (const auto& m : messages_)
        if (!present.count(m.uid)) gone.insert(m.uid);
    } else {
      auto s = db->prepare(
          fmt::format("SELECT {} FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid", kMessageCols));
      s.bind(1, folder_id_).bind(2, static_cast<int64_t>(highest_modseq_));
      while (s.step()) rows.push_back(message_from(s));
      auto e = db->prepare("SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ?");
      e.bind(1, folder_id_).bind(2, static_cast<int64_t>(highest_modseq_));
      while (e.step()) gone.insert(static_cast<uint32_t>(e.int64(0)));
    }
    txn.commit();
    if (!gone.empty()) {
      std::vector<MessageInfo> kept;
      kept.reserve(messages_.size());
      for (auto& m : messages_) {
        if (gone.count(m.uid)) up.expunged.push_back(m.uid);
        else kept.push_back(std::move(m));
      }
      messages_ = std::move(kept);
    }
    for (auto& m : rows) {
      if (auto i = index_of(m.uid)) {
        messages_[*i] = m;
        up.changed.push_back(std::move(m));
      } else if (m.uid >= uidnext_) {
        up.added.push_back(m);
        messages_.push_back(std::move(m));
      }
    }
    uidnext_ = f->uidnext;
    highest_modseq_ = f->highest_modseq;
    return up;
  });
}

}  // namespace postern::core::mailstore
