#include "size_cache.hpp"

namespace postern::plugins::pop3 {

std::shared_ptr<SizeCache> SizeCache::open(const std::filesystem::path& file, std::string* error) {
  auto db = sdk::storage::Database::open(file,
                                         {
                                             "CREATE TABLE wire_size ("
                                             " account TEXT NOT NULL, uidvalidity INTEGER NOT NULL,"
                                             " uid INTEGER NOT NULL, size INTEGER NOT NULL,"
                                             " PRIMARY KEY (account, uidvalidity, uid)) WITHOUT ROWID",
                                         },
                                         error);
  if (!db) return nullptr;
  return std::shared_ptr<SizeCache>(new SizeCache(std::move(db)));
}

std::unordered_map<uint32_t, uint64_t> SizeCache::load(const std::string& account, uint32_t uidvalidity) {
  return db_->with([&](sdk::storage::Database& d) {
    std::unordered_map<uint32_t, uint64_t> out;
    auto& st = d.prepared("SELECT uid, size FROM wire_size WHERE account = ?1 AND uidvalidity = ?2");
    st.bind(1, account).bind(2, static_cast<int64_t>(uidvalidity));
    while (st.step()) out.emplace(static_cast<uint32_t>(st.column_int64(0)), static_cast<uint64_t>(st.column_int64(1)));
    st.reset();
    return out;
  });
}

void SizeCache::update(const std::string& account, uint32_t uidvalidity,
                       const std::vector<std::pair<uint32_t, uint64_t>>& fresh, const std::vector<uint32_t>& stale) {
  if (fresh.empty() && stale.empty()) return;
  db_->with([&](sdk::storage::Database& d) {
    d.transaction([&](sdk::storage::Database& t) {
      // A re-created INBOX has a new UIDVALIDITY: the old incarnation's entries go.
      auto& old = t.prepared("DELETE FROM wire_size WHERE account = ?1 AND uidvalidity <> ?2");
      old.bind(1, account).bind(2, static_cast<int64_t>(uidvalidity)).run();
      auto& del = t.prepared("DELETE FROM wire_size WHERE account = ?1 AND uidvalidity = ?2 AND uid = ?3");
      for (uint32_t uid : stale) {
        del.bind(1, account).bind(2, static_cast<int64_t>(uidvalidity)).bind(3, static_cast<int64_t>(uid)).run();
      }
      auto& ins = t.prepared("INSERT OR REPLACE INTO wire_size (account, uidvalidity, uid, size) VALUES (?1, ?2, ?3, ?4)");
      for (const auto& [uid, size] : fresh) {
        ins.bind(1, account)
            .bind(2, static_cast<int64_t>(uidvalidity))
            .bind(3, static_cast<int64_t>(uid))
            .bind(4, static_cast<int64_t>(size))
            .run();
      }
    });
  });
}

}  // namespace postern::plugins::pop3
