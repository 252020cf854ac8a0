// The schema migrates from every earlier version with the data intact.

#include "core/directory/directory.hpp"
#include "core/directory/sqlite_store.hpp"
#include "core/directory/store.hpp"
#include "tests/unit/directory/directory_fixture.hpp"

#include <sqlite3.h>

namespace postern::core::directory {
namespace {

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "") << " in " << sql;
}

/** Data as a database of `version` holds it, written with that version's columns only. */
void insert_data(sqlite3* db, int version) {
  if (version >= 1) {
    exec(db, "INSERT INTO domains(name, kind, alias_of) VALUES('example.test','local','')");
    exec(db, "INSERT INTO domains(name, kind, alias_of) VALUES('alias.test','alias','example.test')");
    exec(db, "INSERT INTO domains(name, kind, alias_of) VALUES('gw.test','gateway','')");
    exec(db,
         "INSERT INTO accounts(address, domain, real_name, password_hash, quota, enabled) "
         "VALUES('alice@example.test','example.test','Alice','!',12345,1)");
    exec(db,
         "INSERT INTO accounts(address, domain, real_name, password_hash, quota, enabled) "
         "VALUES('bob@example.test','example.test','Bob','!',0,0)");
    exec(db, "INSERT INTO aliases(address, target, domain) VALUES('team@example.test','alice@example.test','example.test')");
    exec(db, "INSERT INTO aliases(address, target, domain) VALUES('*@example.test','alice@example.test','example.test')");
    exec(db, "INSERT INTO router(position, rule) VALUES(1, '*@old.test = *@example.test')");
  }
  if (version >= 2) {
    exec(db, "UPDATE accounts SET services=5, keep_copy=0 WHERE address='alice@example.test'");
    exec(db, "INSERT INTO forwards(account, target) VALUES('alice@example.test','alice@home.example')");
  }
  if (version >= 3) {
    exec(db, "INSERT INTO lists(address, domain, policy) VALUES('staff@example.test','example.test','members')");
    exec(db, "INSERT INTO list_entries(list, address, role) VALUES('staff@example.test','alice@example.test','member')");
  }
}

class MigrationTest : public ::testing::TestWithParam<int> {};

TEST_P(MigrationTest, MigratesFromVersionToLatestKeepingData) {
  const int from = GetParam();
  auto tmp = testing::make_temp_dir("migrate");
  const std::string file = (tmp / "directory.sqlite").string();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
    migrate_schema(db, from);
    EXPECT_EQ(schema_version(db), from);
    insert_data(db, from);
    sqlite3_close(db);
  }
  auto o = testing::cheap_options(tmp);
  {
    Directory d(o);  // migrates on open
    const auto data = d.data();
    if (from >= 1) {
      ASSERT_EQ(data->domains.size(), 3u);
      auto alice = d.account("alice@example.test");
      ASSERT_TRUE(alice.has_value());
      EXPECT_EQ(alice->real_name, "Alice");
      EXPECT_EQ(alice->quota_bytes, 12345u);
      // v2 added per-service flags: accounts from v1 get every service.
      EXPECT_EQ(alice->services, from >= 2 ? (kSmtpAuth | kPop3) : kAllServices);
      EXPECT_FALSE(d.account("bob@example.test")->enabled);
      EXPECT_EQ(d.resolve("bob@alias.test", "").status, Resolution::Status::Disabled);
      EXPECT_EQ(d.resolve("x@old.test", "").status, Resolution::Status::Ok);  // router + catch-all
      EXPECT_TRUE(d.is_gateway_domain("gw.test"));
      Resolution team = d.resolve("team@example.test", "");
      ASSERT_EQ(team.status, Resolution::Status::Ok);
      if (from >= 2) {
        ASSERT_EQ(team.targets.size(), 1u);
        EXPECT_EQ(team.targets[0].address, "alice@home.example");  // forward without a copy
      } else {
        ASSERT_EQ(team.targets.size(), 1u);
        EXPECT_EQ(team.targets[0].address, "alice@example.test");
      }
      EXPECT_EQ(d.resolve("staff@example.test", "stranger@x.example").status,
                from >= 3 ? Resolution::Status::Refused : Resolution::Status::Ok);  // v<3: no list, the catch-all
    } else {
      EXPECT_TRUE(data->domains.empty());
    }
    // The migrated database takes every kind of write.
    EXPECT_TRUE(d.add_domain("new.test", DomainKind::Local).ok());
    EXPECT_TRUE(d.add_list("l@new.test", PostPolicy::Senders).ok());
    EXPECT_TRUE(d.add_account("u@new.test", "", std::string("pw"), 0).ok());
    EXPECT_TRUE(d.set_forward("u@new.test", {"v@else.example"}, true).ok());
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(schema_version(db), kSchemaVersion);
    sqlite3_close(db);
  }
  std::filesystem::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(EveryEarlierVersion, MigrationTest, ::testing::Range(0, kSchemaVersion),
                         [](const ::testing::TestParamInfo<int>& i) { return "FromV" + std::to_string(i.param); });

TEST(MigrationStepTest, OpeningTheLatestTwiceChangesNothing) {
  auto tmp = testing::make_temp_dir("twice");
  auto o = testing::cheap_options(tmp);
  { Directory d(o); }
  {
    Directory d(o);
    EXPECT_TRUE(d.data()->domains.empty());
  }
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace postern::core::directory
