// Management API: validation, duplicates, unknown domains, logins, refresh across two handles.

#include "core/directory/smtp_adapters.hpp"
#include "core/directory/sqlite_store.hpp"
#include "tests/unit/directory/directory_fixture.hpp"

#include <sqlite3.h>

#include <atomic>
#include <map>

namespace postern::core::directory {
namespace {

using testing::DirectoryFixture;

class ManagementTest : public DirectoryFixture {};

TEST_F(ManagementTest, RejectsInvalidAddressesAndDomains) {
  for (const char* bad : {"", "@example.test", "a..b@example.test", ".a@example.test", "a.@example.test",
                          "a b@example.test", "a%b@example.test", "a!b@example.test", "\"q\"@example.test",
                          "a@-bad-.test", "a@[192.0.2.1]", "*@example.test"}) {
    Status s = dir_->add_account(bad, "", std::nullopt, 0);
    EXPECT_EQ(s.code, Status::Code::Invalid) << bad << ": " << s.message;
    EXPECT_FALSE(s.message.empty());
  }
  EXPECT_EQ(dir_->add_domain("bad_domain!", DomainKind::Local).code, Status::Code::Invalid);
  EXPECT_EQ(dir_->add_domain("[192.0.2.1]", DomainKind::Local).code, Status::Code::Invalid);
}

TEST_F(ManagementTest, DuplicatesAndUnknownDomains) {
  ok(dir_->add_account("alice@example.test", "", std::nullopt, 0));
  EXPECT_EQ(dir_->add_account("ALICE@example.test", "", std::nullopt, 0).code, Status::Code::Exists);
  EXPECT_EQ(dir_->add_alias("alice@example.test", {"bob@example.test"}).code, Status::Code::Exists);
  EXPECT_EQ(dir_->add_list("alice@example.test", PostPolicy::Anyone).code, Status::Code::Exists);
  EXPECT_EQ(dir_->add_account("x@nowhere.test", "", std::nullopt, 0).code, Status::Code::NotFound);
  EXPECT_EQ(dir_->add_domain("Example.Test", DomainKind::Local).code, Status::Code::Exists);
  EXPECT_EQ(dir_->del_account("ghost@example.test").code, Status::Code::NotFound);
  EXPECT_EQ(dir_->set_password("ghost@example.test", "pw").code, Status::Code::NotFound);
  EXPECT_EQ(dir_->del_alias("ghost@example.test", {}).code, Status::Code::NotFound);
  EXPECT_EQ(dir_->del_list("ghost@example.test").code, Status::Code::NotFound);
  EXPECT_EQ(dir_->del_domain("nowhere.test", false).code, Status::Code::NotFound);
}

TEST_F(ManagementTest, DomainWithAccountsNeedsForce) {
  ok(dir_->add_domain("other.test", DomainKind::Local));
  ok(dir_->add_account("u@other.test", "", std::nullopt, 0));
  ok(dir_->add_alias("a@other.test", {"u@other.test"}));
  Status s = dir_->del_domain("other.test", false);
  EXPECT_EQ(s.code, Status::Code::Refused);
  EXPECT_NE(s.message.find("1 account(s)"), std::string::npos);
  ok(dir_->del_domain("other.test", true));
  EXPECT_FALSE(dir_->account("u@other.test").has_value());
  EXPECT_TRUE(dir_->data()->aliases.empty());
  EXPECT_EQ(dir_->del_domain("example.test", false).code, Status::Code::Refused);  // the default domain
}

TEST_F(ManagementTest, LoginWithAddressPercentOrLocalPart) {
  ok(dir_->add_account("alice@example.test", "Alice", std::string("s3cret"), 0));
  EXPECT_EQ(dir_->authenticate("alice@example.test", "s3cret", kSmtpAuth), "alice@example.test");
  EXPECT_EQ(dir_->authenticate("Alice%Example.Test", "s3cret", kImap), "alice@example.test");
  EXPECT_EQ(dir_->authenticate("alice", "s3cret", kPop3), "alice@example.test");
  EXPECT_FALSE(dir_->authenticate("alice@example.test", "S3cret", kSmtpAuth).has_value());
  EXPECT_FALSE(dir_->authenticate("nobody@example.test", "s3cret", kSmtpAuth).has_value());
  ok(dir_->add_domain("alias.test", DomainKind::Alias, "example.test"));
  EXPECT_EQ(dir_->authenticate("alice@alias.test", "s3cret", kSmtpAuth), "alice@example.test");
}

TEST_F(ManagementTest, ServiceFlagsAndDisabledAccountsRefuseLogin) {
  ok(dir_->add_account("alice@example.test", "", std::string("pw"), 0));
  ok(dir_->set_enabled("alice@example.test", false, kImap));
  EXPECT_FALSE(dir_->authenticate("alice@example.test", "pw", kImap).has_value());
  EXPECT_TRUE(dir_->authenticate("alice@example.test", "pw", kSmtpAuth).has_value());
  EXPECT_EQ(dir_->account("alice@example.test")->services, kSmtpAuth | kPop3);
  ok(dir_->set_enabled("alice@example.test", true, kImap));
  EXPECT_EQ(dir_->account("alice@example.test")->services, kAllServices);
  ok(dir_->set_enabled("alice@example.test", false, 0));
  EXPECT_FALSE(dir_->authenticate("alice@example.test", "pw", kSmtpAuth).has_value());
  EXPECT_FALSE(dir_->account("alice@example.test")->enabled);
}

TEST_F(ManagementTest, PasswordChangeTakesEffect) {
  ok(dir_->add_account("alice@example.test", "", std::string("old"), 0));
  ok(dir_->set_password("alice@example.test", "new"));
  EXPECT_FALSE(dir_->authenticate("alice@example.test", "old", kSmtpAuth).has_value());
  EXPECT_TRUE(dir_->authenticate("alice@example.test", "new", kSmtpAuth).has_value());
  // The stored hash is argon2id and never the password.
  const auto data = dir_->data();
  for (const AccountRecord& a : data->accounts) {
    if (a.address != "alice@example.test") continue;
    EXPECT_TRUE(a.password_hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$")) << a.password_hash;
    EXPECT_EQ(a.password_hash.find("new"), std::string::npos);
  }
}

TEST_F(ManagementTest, SnapshotRefreshSeesAnotherProcessChanges) {
  // A second handle on the same file plays posternctl.
  Directory ctl(testing::cheap_options(tmp_));
  ok(ctl.add_account("late@example.test", "", std::string("pw1"), 0));
  EXPECT_FALSE(dir_->account("late@example.test").has_value());  // the snapshot is not re-read yet
  dir_->refresh();
  ASSERT_TRUE(dir_->account("late@example.test").has_value());
  EXPECT_TRUE(dir_->authenticate("late@example.test", "pw1", kSmtpAuth).has_value());
  ok(ctl.set_password("late@example.test", "pw2"));
  dir_->refresh();
  EXPECT_FALSE(dir_->authenticate("late@example.test", "pw1", kSmtpAuth).has_value());
  EXPECT_TRUE(dir_->authenticate("late@example.test", "pw2", kSmtpAuth).has_value());
  // Without changes a refresh keeps the same snapshot object.
  auto before = dir_->data();
  dir_->refresh();
  EXPECT_EQ(before.get(), dir_->data().get());
}

TEST_F(ManagementTest, RecipientPolicyMapsStatusesAndQuota) {
  ok(dir_->add_account("alice@example.test", "", std::nullopt, 1000));
  ok(dir_->add_account("bob@example.test", "", std::nullopt, 0));
  ok(dir_->add_account("off@example.test", "", std::nullopt, 0));
  ok(dir_->set_enabled("off@example.test", false, 0));
  ok(dir_->add_list("closed@example.test", PostPolicy::Members));
  ok(dir_->add_list_entries("closed@example.test", {"bob@example.test"}, false));
  auto shared = std::shared_ptr<const Directory>(dir_.get(), [](const Directory*) {});
  DirectoryRecipientPolicy policy(shared);
  EXPECT_EQ(policy.check("alice@example.test", "").status, smtp::RcptStatus::Accept);
  Directory::UsageLookup usage;
  usage.cached = [](std::string_view account) -> std::optional<uint64_t> {
    if (account == "alice@example.test") return 1000;
    return 5;
  };
  dir_->set_usage_lookup(usage);
  EXPECT_EQ(policy.check("alice@example.test", "").status, smtp::RcptStatus::OverQuota);
  EXPECT_FALSE(policy.check("alice@example.test", "").on_worker) << "answered from memory";
  EXPECT_EQ(policy.check("bob@example.test", "").status, smtp::RcptStatus::Accept);  // no quota
  EXPECT_EQ(policy.check("nobody@example.test", "").status, smtp::RcptStatus::UnknownUser);
  EXPECT_EQ(policy.check("off@example.test", "").status, smtp::RcptStatus::Disabled);
  auto refused = policy.check("closed@example.test", "x@outside.example");
  EXPECT_EQ(refused.status, smtp::RcptStatus::Refused);
  EXPECT_NE(refused.text.find("only members"), std::string::npos);
  EXPECT_EQ(policy.check("closed@example.test", "bob@example.test").status, smtp::RcptStatus::Accept);
  EXPECT_EQ(policy.check("x@elsewhere.example", "").status, smtp::RcptStatus::NotOurs);
  EXPECT_TRUE(policy.serves_domain("Example.Test"));
  EXPECT_FALSE(policy.serves_domain("elsewhere.example"));
}

TEST_F(ManagementTest, QuotaCheckLeavesTheDiskReadToAWorker) {
  ok(dir_->add_account("alice@example.test", "", std::nullopt, 1000));
  ok(dir_->add_account("bob@example.test", "", std::nullopt, 0));
  ok(dir_->add_alias("both@example.test", {"alice@example.test", "bob@example.test"}));
  auto shared = std::shared_ptr<const Directory>(dir_.get(), [](const Directory*) {});
  DirectoryRecipientPolicy policy(shared);
  std::map<std::string, uint64_t> in_memory;  // what the store has cached
  std::atomic<int> reads{0};
  Directory::UsageLookup usage;
  usage.cached = [&](std::string_view account) -> std::optional<uint64_t> {
    auto it = in_memory.find(std::string(account));
    if (it == in_memory.end()) return std::nullopt;
    return it->second;
  };
  usage.read = [&](std::string_view account) -> std::optional<uint64_t> {
    ++reads;
    return account == "alice@example.test" ? 1500 : 0;
  };
  dir_->set_usage_lookup(usage);

  // Not cached: check() must not read; it hands the read over.
  EXPECT_EQ(dir_->over_quota_cached("alice@example.test"), std::nullopt);
  smtp::RcptCheck c = policy.check("alice@example.test", "");
  EXPECT_EQ(reads.load(), 0) << "check() read the disk";
  ASSERT_TRUE(c.on_worker);
  smtp::RcptCheck later = c.on_worker();
  EXPECT_EQ(reads.load(), 1);
  EXPECT_EQ(later.status, smtp::RcptStatus::OverQuota);
  EXPECT_FALSE(later.on_worker);

  // No quota, or more than one target: nothing to read.
  EXPECT_EQ(dir_->over_quota_cached("bob@example.test"), false);
  EXPECT_FALSE(policy.check("bob@example.test", "").on_worker);
  EXPECT_FALSE(policy.check("both@example.test", "").on_worker);

  // Cached: answered in check().
  in_memory["alice@example.test"] = 999;
  c = policy.check("alice@example.test", "");
  EXPECT_FALSE(c.on_worker);
  EXPECT_EQ(c.status, smtp::RcptStatus::Accept);
  in_memory["alice@example.test"] = 1000;
  EXPECT_EQ(policy.check("alice@example.test", "").status, smtp::RcptStatus::OverQuota);
  EXPECT_EQ(reads.load(), 1);
  EXPECT_TRUE(dir_->over_quota("alice@example.test"));
  EXPECT_EQ(reads.load(), 1) << "over_quota() prefers the cached value";
}

TEST_F(ManagementTest, AuthChainTriesDirectoryThenStaticAccounts) {
  ok(dir_->add_account("alice@example.test", "", std::string("dirpw"), 0));
  ok(dir_->add_alias("sales@example.test", {"alice@example.test"}));
  ok(dir_->add_alias("all@example.test", {"alice@example.test", "postmaster@example.test"}));
  auto shared = std::shared_ptr<const Directory>(dir_.get(), [](const Directory*) {});
  auto statics = std::make_shared<smtp::StaticAuthBackend>(std::vector<smtp::StaticAccount>{
      {"legacy@example.test", smtp::hash_password("legacypw", 1000), {"old@example.test"}}});
  ChainAuthBackend chain({std::make_shared<DirectoryAuthBackend>(shared), statics});
  EXPECT_EQ(chain.authenticate("alice@example.test", "dirpw"), "alice@example.test");
  EXPECT_EQ(chain.authenticate("legacy@example.test", "legacypw"), "legacy@example.test");
  EXPECT_FALSE(chain.authenticate("alice@example.test", "legacypw").has_value());
  EXPECT_TRUE(chain.owns_address("alice@example.test", "Alice@example.test"));
  EXPECT_TRUE(chain.owns_address("alice@example.test", "sales@example.test"));
  EXPECT_FALSE(chain.owns_address("alice@example.test", "all@example.test"));  // shared alias: not hers alone
  EXPECT_TRUE(chain.owns_address("legacy@example.test", "old@example.test"));
  EXPECT_FALSE(chain.owns_address("alice@example.test", "bob@example.test"));
}

TEST(DirectoryOpenTest, RefusesADatabaseFromANewerBuild) {
  auto tmp = testing::make_temp_dir("newer");
  const std::string file = (tmp / "d.sqlite").string();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto o = testing::cheap_options(tmp);
  o.file = file;
  try {
    Directory d(o);
    FAIL() << "opened a newer schema";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace postern::core::directory
