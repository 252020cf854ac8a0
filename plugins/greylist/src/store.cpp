#include "store.hpp"

namespace postern::plugins::greylist {

const std::vector<std::string>& schema_migrations() {
  static const std::vector<std::string> kMigrations = {
      // Version 1. Times are milliseconds since the Unix epoch.
      "CREATE TABLE triplet ("
      "  network TEXT NOT NULL,"             // "192.0.2.0/24"
      "  sender TEXT NOT NULL,"              // lower case; "<>" for the null sender
      "  recipient TEXT NOT NULL,"           // lower case
      "  first_seen INTEGER NOT NULL,"
      "  last_seen INTEGER NOT NULL,"
      "  passed_at INTEGER NOT NULL DEFAULT 0,"  // 0 = still greylisted
      "  attempts INTEGER NOT NULL DEFAULT 1,"
      "  PRIMARY KEY (network, sender, recipient)) WITHOUT ROWID;"
      "CREATE INDEX triplet_last_seen ON triplet(last_seen);"
      "CREATE TABLE whitelist ("
      "  network TEXT PRIMARY KEY,"          // canonical "10.0.0.0/8"
      "  lo BLOB NOT NULL,"                  // first address, 16 octets (IPv4 mapped)
      "  hi BLOB NOT NULL,"                  // last address
      "  passes INTEGER NOT NULL DEFAULT 0,"
      "  expires INTEGER NOT NULL DEFAULT 0,"
      "  manual INTEGER NOT NULL DEFAULT 0," // 1 = posternctl greylist allow; never expires
      "  created INTEGER NOT NULL);"
      "CREATE INDEX whitelist_lo ON whitelist(lo);",
  };
  return kMigrations;
}

std::unique_ptr<TripletStore> TripletStore::open(const std::filesystem::path& file, std::string* error) {
  auto db = sdk::storage::Database::open(file, schema_migrations(), error);
  if (!db) return nullptr;
  return std::unique_ptr<TripletStore>(new TripletStore(std::move(db)));
}

Verdict TripletStore::check(const Network& network, const Address& client, const std::string& sender,
                            const std::string& recipient, int64_t now, const Policy& policy) {
  const std::string net = network.to_string();
  return db_->with([&](sdk::storage::Database& d) {
    return d.transaction([&](sdk::storage::Database& t) {
      Verdict v;
      auto& wl = t.prepared(
          "SELECT network, lo, hi, manual, expires FROM whitelist WHERE lo <= ?1 AND hi >= ?1 AND "
          "(manual = 1 OR (?2 > 0 AND passes >= ?2 AND expires > ?3)) LIMIT 1");
      wl.bind(1, client.blob()).bind(2, policy.whitelist_after).bind(3, now);
      if (wl.step()) {
        v.kind = Verdict::Kind::Whitelisted;
        v.whitelist = wl.column_string(0);
        WhitelistEntry e;
        if (WhitelistEntry::from_blobs(wl.column_text(1), wl.column_text(2),
                                       wl.column_int64(3) != 0 ? WhitelistEntry::kNever : wl.column_int64(4), &e)) {
          v.whitelist_entry = e;
        }
        wl.reset();
        return v;
      }
      wl.reset();

      auto& get = t.prepared(
          "SELECT first_seen, last_seen, passed_at FROM triplet WHERE network = ?1 AND sender = ?2 AND recipient = ?3");
      get.bind(1, net).bind(2, sender).bind(3, recipient);
      const bool found = get.step();
      const int64_t first = found ? get.column_int64(0) : 0;
      const int64_t last = found ? get.column_int64(1) : 0;
      const int64_t passed = found ? get.column_int64(2) : 0;
      get.reset();

      auto restart = [&] {
        t.prepared(
             "INSERT INTO triplet (network, sender, recipient, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4) "
             "ON CONFLICT (network, sender, recipient) DO UPDATE SET first_seen = ?4, last_seen = ?4, passed_at = 0, "
             "attempts = 1")
            .bind(1, net)
            .bind(2, sender)
            .bind(3, recipient)
            .bind(4, now)
            .run();
        v.kind = Verdict::Kind::TempFail;
        v.retry_in_ms = policy.delay_ms;
        return v;
      };
      auto touch = [&](int64_t passed_at) {
        t.prepared(
             "UPDATE triplet SET last_seen = ?4, attempts = attempts + 1, passed_at = ?5 "
             "WHERE network = ?1 AND sender = ?2 AND recipient = ?3")
            .bind(1, net)
            .bind(2, sender)
            .bind(3, recipient)
            .bind(4, now)
            .bind(5, passed_at)
            .run();
      };

      if (!found) return restart();
      if (passed != 0) {
        // A triplet that passed stays valid while it keeps being used.
        if (now - last > policy.whitelist_for_ms) return restart();
        touch(passed);
        v.kind = Verdict::Kind::Pass;
        return v;
      }
      const int64_t age = now - first;
      if (age > policy.window_ms) return restart();  // retried too late: a new first sight
      if (age < policy.delay_ms) {
        touch(0);
        v.kind = Verdict::Kind::TempFail;
        v.retry_in_ms = policy.delay_ms - age;
        return v;
      }
      touch(now);
      // One more success for the client network (auto-whitelist).
      t.prepared(
           "INSERT INTO whitelist (network, lo, hi, passes, expires, manual, created) VALUES (?1, ?2, ?3, 1, ?4, 0, ?5) "
           "ON CONFLICT (network) DO UPDATE SET passes = passes + 1, expires = max(expires, ?4)")
          .bind(1, net)
          .bind(2, network.lo.blob())
          .bind(3, network.hi.blob())
          .bind(4, now + policy.whitelist_for_ms)
          .bind(5, now)
          .run();
      if (policy.whitelist_after > 0) {
        auto& now_listed = t.prepared("SELECT passes, expires, manual FROM whitelist WHERE network = ?1");
        now_listed.bind(1, net);
        if (now_listed.step() && (now_listed.column_int64(2) != 0 || now_listed.column_int64(0) >= policy.whitelist_after)) {
          v.whitelist_entry =
              WhitelistEntry::of(network, now_listed.column_int64(2) != 0 ? WhitelistEntry::kNever : now_listed.column_int64(1));
        }
        now_listed.reset();
      }
      v.kind = Verdict::Kind::Pass;
      v.first_pass = true;
      v.waited_ms = age;
      return v;
    });
  });
}

int64_t TripletStore::prune(int64_t now, const Policy& policy) {
  return db_->with([&](sdk::storage::Database& d) {
    return d.transaction([&](sdk::storage::Database& t) {
      int64_t n = t.prepared(
                       "DELETE FROM triplet WHERE (passed_at = 0 AND first_seen < ?1) OR "
                       "(passed_at <> 0 AND last_seen < ?2)")
                      .bind(1, now - policy.window_ms)
                      .bind(2, now - policy.whitelist_for_ms)
                      .run();
      n += t.prepared("DELETE FROM whitelist WHERE manual = 0 AND expires < ?1").bind(1, now).run();
      return n;
    });
  });
}

std::vector<WhitelistEntry> TripletStore::load_whitelist(int64_t now, const Policy& policy) {
  return db_->with([&](sdk::storage::Database& d) {
    std::vector<WhitelistEntry> out;
    auto& q = d.prepared(
        "SELECT lo, hi, manual, expires FROM whitelist WHERE manual = 1 OR (?1 > 0 AND passes >= ?1 AND expires > ?2)");
    q.bind(1, policy.whitelist_after).bind(2, now);
    try {
      while (q.step()) {
        WhitelistEntry e;
        // A row whose lo/hi are not 16 octets (not written by the plugin or
        // posternctl) is skipped: its misses still go to the database.
        if (WhitelistEntry::from_blobs(q.column_text(0), q.column_text(1),
                                       q.column_int64(2) != 0 ? WhitelistEntry::kNever : q.column_int64(3), &e)) {
          out.push_back(e);
        }
      }
    } catch (...) {
      q.reset();
      throw;
    }
    q.reset();
    return out;
  });
}

}  // namespace postern::plugins::greylist
