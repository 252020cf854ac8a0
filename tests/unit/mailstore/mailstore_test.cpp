// Unit tests of the mailbox store (core/mailstore): delivery, folders,
// UIDs/UIDVALIDITY, flags/MODSEQ, expunge, copy/move, quota, retention,
// recovery after simulated crash points, views, names.

#include "core/mailstore/mailstore.hpp"
#include "tests/unit/temp_dir.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fstream>
#include <random>
#include <set>
#include <sys/stat.h>
#include <utime.h>

namespace fs = std::filesystem;
using namespace postern::core::mailstore;

namespace {

using postern::testing::TempDir;

/** A clock the test moves. */
struct ManualClock {
  std::shared_ptr<std::chrono::system_clock::time_point> now =
      std::make_shared<std::chrono::system_clock::time_point>(std::chrono::sys_days{std::chrono::year{2026} / 3 / 1});
  std::function<std::chrono::system_clock::time_point()> fn() const {
    auto p = now;
    return [p] { return *p; };
  }
  void advance(std::chrono::seconds s) { *now += s; }
};

std::string msg(std::string_view subject, std::string_view body = "Hello.") {
  return fmt::format("From: a@example.org\r\nTo: b@example.net\r\nSubject: {}\r\n\r\n{}\r\n", subject, body);
}

std::shared_ptr<AccountStore> open(MailStore& s, std::string_view account = "bob@example.net") {
  auto r = s.open_account(account);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  return *r;
}

std::unique_ptr<FolderView> view(AccountStore& a, std::string_view folder) {
  auto r = a.open_folder(folder);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  return r.ok() ? std::move(*r) : nullptr;
}

std::vector<uint32_t> uids_of(const FolderView& v) {
  std::vector<uint32_t> out;
  for (const auto& m : v.messages()) out.push_back(m.uid);
  return out;
}

size_t files_in(const fs::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

// The folder directory of a folder (by its index id, read from the index).
fs::path folder_dir(AccountStore& a, std::string_view folder) {
  sqlite3* db = nullptr;
  sqlite3_open((a.directory() / "index.sqlite").c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT id FROM folders WHERE name = ?", -1, &st, nullptr);
  sqlite3_bind_text(st, 1, folder.data(), static_cast<int>(folder.size()), SQLITE_TRANSIENT);
  int64_t id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return a.directory() / "folders" / std::to_string(id);
}

void sql(const fs::path& index, const std::string& statement) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(index.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, statement.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

void write_file(const fs::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
}

}  // namespace

TEST(MailStoreTest, DeliversIntoInboxWithAscendingUidsAndExactOctets) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  std::vector<std::string> bodies = {msg("one"), msg("two", "Line\r\n.dot\r\n"), msg("three")};
  for (size_t i = 0; i < bodies.size(); ++i) {
    auto r = store.deliver("bob@example.net", bodies[i], 0);
    ASSERT_EQ(r.status, DeliverResult::Status::Ok) << r.detail;
    EXPECT_EQ(r.uid, i + 1);
  }
  auto acc = open(store);
  auto v = view(*acc, "INBOX");
  ASSERT_EQ(v->messages().size(), 3u);
  for (size_t i = 0; i < bodies.size(); ++i) {
    const auto& m = v->messages()[i];
    EXPECT_EQ(m.uid, i + 1);
    EXPECT_EQ(m.size, bodies[i].size());
    EXPECT_EQ(m.flags, 0u);
    auto data = acc->read_message("INBOX", m.uid);
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(*data, bodies[i]);
  }
  EXPECT_EQ(v->uidnext(), 4u);
  EXPECT_EQ(files_in(folder_dir(*acc, "INBOX") / "cur"), 3u);
  EXPECT_EQ(files_in(folder_dir(*acc, "INBOX") / "tmp"), 0u);
  uint64_t total = bodies[0].size() + bodies[1].size() + bodies[2].size();
  EXPECT_EQ(store.usage_bytes("bob@example.net"), total);
  EXPECT_EQ(store.usage_bytes("nobody@example.net"), std::nullopt);
}

TEST(MailStoreTest, DeliveryToMissingFolderFallsBackToInbox) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  auto r = store.deliver("bob@example.net", msg("x"), 0, "NoSuchFolder");
  ASSERT_EQ(r.status, DeliverResult::Status::Ok);
  EXPECT_NE(r.detail.find("INBOX"), std::string::npos);
  auto j = store.deliver("bob@example.net", msg("spam"), 0, "Junk");
  ASSERT_EQ(j.status, DeliverResult::Status::Ok);
  auto acc = open(store);
  EXPECT_EQ(view(*acc, "INBOX")->messages().size(), 1u);
  EXPECT_EQ(view(*acc, "Junk")->messages().size(), 1u);
}

TEST(MailStoreTest, NewAccountHasDefaultFoldersWithSpecialUse) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  auto acc = open(store);
  auto folders = acc->list_folders();
  ASSERT_TRUE(folders.ok());
  std::vector<std::pair<std::string, SpecialUse>> got;
  for (const auto& f : *folders) got.emplace_back(f.name, f.special_use);
  std::vector<std::pair<std::string, SpecialUse>> want = {
      {"INBOX", SpecialUse::None},  {"Archive", SpecialUse::Archive}, {"Drafts", SpecialUse::Drafts},
      {"Junk", SpecialUse::Junk},   {"Sent", SpecialUse::Sent},       {"Trash", SpecialUse::Trash}};
  EXPECT_EQ(got, want);
  for (const auto& f : *folders) EXPECT_TRUE(f.subscribed);
  EXPECT_EQ(*acc->folder_for(SpecialUse::Sent), "Sent");
  EXPECT_EQ(special_use_name(SpecialUse::Junk), "\\Junk");
  EXPECT_EQ(parse_special_use("\\trash"), SpecialUse::Trash);
  EXPECT_EQ(parse_special_use("\\Nope"), std::nullopt);
}

TEST(MailStoreTest, UidValidityIsStableAcrossReopenAndNewWhenFolderIsRecreated) {
  TempDir t;
  uint32_t v1 = 0;
  {
    MailStore store({.root = t.path.string()});
    auto acc = open(store);
    auto f = acc->create_folder("Projects");
    ASSERT_TRUE(f.ok());
    v1 = f->uidvalidity;
    ASSERT_TRUE(acc->append("Projects", msg("a"), 0, {}, std::nullopt, 0).ok());
  }
  MailStore store({.root = t.path.string()});
  auto acc = open(store);
  EXPECT_EQ(acc->folder_status("Projects")->uidvalidity, v1);
  EXPECT_EQ(acc->folder_status("Projects")->uidnext, 2u);
  ASSERT_TRUE(acc->delete_folder("Projects").ok());
  auto again = acc->create_folder("Projects");
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->uidvalidity, v1);
  EXPECT_EQ(again->messages, 0u);
  // Every folder of an account has its own UIDVALIDITY.
  std::set<uint32_t> seen;
  for (const auto& f : *acc->list_folders()) EXPECT_TRUE(seen.insert(f.uidvalidity).second) << f.name;
}

TEST(MailStoreTest, UidsAreNeverReusedAfterExpunge) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  for (int i = 0; i < 3; ++i) store.deliver("bob@example.net", msg("m"), 0);
  auto acc = open(store);
  auto removed = acc->expunge("INBOX", {2, 3}, false);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, (std::vector<uint32_t>{2, 3}));
  auto r = store.deliver("bob@example.net", msg("n"), 0);
  EXPECT_EQ(r.uid, 4u);
  EXPECT_EQ(uids_of(*view(*acc, "INBOX")), (std::vector<uint32_t>{1, 4}));
  EXPECT_EQ(files_in(folder_dir(*acc, "INBOX") / "cur"), 2u);
  EXPECT_EQ(acc->read_message("INBOX", 2).error().code, StoreError::Code::NotFound);
}

TEST(MailStoreTest, StoreFlagsAddRemoveReplaceWithModseq) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  for (int i = 0; i < 3; ++i) store.deliver("bob@example.net", msg("m"), 0);
  auto acc = open(store);
  uint64_t m0 = acc->folder_status("INBOX")->highest_modseq;

  auto a = acc->store_flags("INBOX", {1, 2, 99}, FlagOp::Add, kSeen | kFlagged, {"$Label1", "project"});
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->messages.size(), 2u);  // 99 does not exist
  EXPECT_GT(a->highest_modseq, m0);
  for (const auto& m : a->messages) {
    EXPECT_EQ(m.flags, kSeen | kFlagged);
    EXPECT_EQ(m.keywords, (std::vector<std::string>{"$Label1", "project"}));
    EXPECT_EQ(m.modseq, a->highest_modseq);
  }
  // Adding what is there changes nothing: no new modseq.
  auto same = acc->store_flags("INBOX", {1}, FlagOp::Add, kSeen, {"PROJECT"});
  EXPECT_EQ(same->highest_modseq, a->highest_modseq);
  EXPECT_EQ(same->messages[0].keywords.size(), 2u);

  auto r = acc->store_flags("INBOX", {1}, FlagOp::Remove, kFlagged, {"Project"});
  EXPECT_EQ(r->messages[0].flags, kSeen);
  EXPECT_EQ(r->messages[0].keywords, (std::vector<std::string>{"$Label1"}));
  EXPECT_GT(r->highest_modseq, a->highest_modseq);

  auto p = acc->store_flags("INBOX", {3}, FlagOp::Replace, kAnswered | kDraft, {"x"});
  EXPECT_EQ(p->messages[0].flags, kAnswered | kDraft);

  // RFC 7162 UNCHANGEDSINCE: message 1 changed after a->highest_modseq, message 2 did not.
  auto c = acc->store_flags("INBOX", {1, 2}, FlagOp::Add, kDeleted, {}, a->highest_modseq);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->modified, (std::vector<uint32_t>{1}));
  ASSERT_EQ(c->messages.size(), 1u);
  EXPECT_EQ(c->messages[0].uid, 2u);
  EXPECT_TRUE(c->messages[0].flags & kDeleted);

  auto bad = acc->store_flags("INBOX", {1}, FlagOp::Add, 0, {"bad keyword"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, StoreError::Code::InvalidName);
  EXPECT_FALSE(valid_keyword("\\Seen"));
  EXPECT_TRUE(valid_keyword("$Forwarded"));

  auto status = acc->folder_status("INBOX");
  EXPECT_EQ(status->unseen, 1u);
  EXPECT_EQ(status->deleted, 1u);
}

TEST(MailStoreTest, RecentMessagesAreClaimedByOneSessionOnly) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  store.deliver("bob@example.net", msg("a"), 0);
  store.deliver("bob@example.net", msg("b"), 0);
  auto acc = open(store);
  EXPECT_EQ(*acc->claim_recent("INBOX"), 1u);  // UIDs 1 and 2 are recent to this session
  EXPECT_EQ(*acc->claim_recent("INBOX"), 3u);  // a second session: none
  store.deliver("bob@example.net", msg("c"), 0);
  EXPECT_EQ(*acc->claim_recent("INBOX"), 3u);  // UID 3 is new to whoever claims first
  EXPECT_EQ(*acc->claim_recent("INBOX"), 4u);
  EXPECT_EQ(acc->claim_recent("Nope").error().code, StoreError::Code::NotFound);
}

TEST(MailStoreTest, ExpungeOnlyDeletedKeepsTheRest) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  for (int i = 0; i < 4; ++i) store.deliver("bob@example.net", msg("m"), 0);
  auto acc = open(store);
  acc->store_flags("INBOX", {2, 4}, FlagOp::Add, kDeleted, {});
  auto before = acc->usage_bytes();
  auto removed = acc->expunge_deleted("INBOX");
  EXPECT_EQ(*removed, (std::vector<uint32_t>{2, 4}));
  EXPECT_EQ(uids_of(*view(*acc, "INBOX")), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(acc->usage_bytes(), before / 2);
  EXPECT_TRUE(acc->expunge("INBOX", {}, false)->empty());  // no UIDs: nothing, never "all"
  // UID EXPUNGE: only the named UIDs among the \Deleted ones.
  acc->store_flags("INBOX", {1, 3}, FlagOp::Add, kDeleted, {});
  EXPECT_EQ(*acc->expunge("INBOX", {3}, true), (std::vector<uint32_t>{3}));
  EXPECT_EQ(uids_of(*view(*acc, "INBOX")), (std::vector<uint32_t>{1}));
}

TEST(MailStoreTest, CopyAndMoveReturnUidMappingAndKeepFlags) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  for (int i = 0; i < 3; ++i) store.deliver("bob@example.net", msg("m" + std::to_string(i)), 0);
  auto acc = open(store);
  acc->store_flags("INBOX", {2}, FlagOp::Add, kFlagged, {"work"});
  const uint64_t one = acc->usage_bytes();
  ASSERT_TRUE(acc->append("Archive", msg("old"), kSeen, {}, 1000000000, 0).ok());
  const uint64_t base = acc->usage_bytes();
  ASSERT_GT(base, one);

  auto c = acc->copy("INBOX", {3, 2, 77}, "Archive", 0);
  ASSERT_TRUE(c.ok()) << c.error().detail;
  EXPECT_EQ(c->dest_uidvalidity, acc->folder_status("Archive")->uidvalidity);
  EXPECT_EQ(c->uids, (std::vector<std::pair<uint32_t, uint32_t>>{{2, 2}, {3, 3}}));
  auto arch = view(*acc, "Archive");
  ASSERT_EQ(arch->messages().size(), 3u);
  EXPECT_EQ(arch->messages()[0].internal_date, 1000000000);
  EXPECT_EQ(arch->messages()[1].flags, kFlagged);
  EXPECT_EQ(arch->messages()[1].keywords, (std::vector<std::string>{"work"}));
  EXPECT_EQ(*acc->read_message("Archive", 2), *acc->read_message("INBOX", 2));
  EXPECT_EQ(view(*acc, "INBOX")->messages().size(), 3u);
  EXPECT_GT(acc->usage_bytes(), base);

  const uint64_t before_move = acc->usage_bytes();
  auto m = acc->move("INBOX", {1, 2}, "Trash");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->uids, (std::vector<std::pair<uint32_t, uint32_t>>{{1, 1}, {2, 2}}));
  EXPECT_EQ(uids_of(*view(*acc, "INBOX")), (std::vector<uint32_t>{3}));
  EXPECT_EQ(uids_of(*view(*acc, "Trash")), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(acc->usage_bytes(), before_move);
  EXPECT_EQ(files_in(folder_dir(*acc, "INBOX") / "cur"), 1u);
  EXPECT_EQ(files_in(folder_dir(*acc, "Trash") / "cur"), 2u);

  auto missing = acc->copy("INBOX", {3}, "Nowhere", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().detail.find("TRYCREATE"), std::string::npos);
}

TEST(MailStoreTest, QuotaIsEnforcedOnDeliverAppendAndCopy) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  const std::string m = msg("q", std::string(1000, 'x'));
  const uint64_t quota = m.size() * 2 + 10;
  EXPECT_EQ(store.deliver("bob@example.net", m, quota).status, DeliverResult::Status::Ok);
  EXPECT_EQ(store.deliver("bob@example.net", m, quota).status, DeliverResult::Status::Ok);
  auto over = store.deliver("bob@example.net", m, quota);
  EXPECT_EQ(over.status, DeliverResult::Status::OverQuota);
  EXPECT_NE(over.detail.find("quota"), std::string::npos);
  auto acc = open(store);
  auto ap = acc->append("INBOX", m, 0, {}, std::nullopt, quota);
  ASSERT_FALSE(ap.ok());
  EXPECT_EQ(ap.error().code, StoreError::Code::OverQuota);
  auto cp = acc->copy("INBOX", {1}, "Archive", quota);
  ASSERT_FALSE(cp.ok());
  EXPECT_EQ(cp.error().code, StoreError::Code::OverQuota);
  EXPECT_EQ(view(*acc, "INBOX")->messages().size(), 2u);
  EXPECT_EQ(files_in(folder_dir(*acc, "INBOX") / "tmp"), 0u);
  EXPECT_EQ(files_in(folder_dir(*acc, "Archive") / "tmp"), 0u);
  // Moving does not add usage: allowed at the limit.
  EXPECT_TRUE(acc->move("INBOX", {1}, "Archive").ok());
  // Freeing space lets mail in again.
  acc->expunge("INBOX", {2}, false);
  EXPECT_EQ(store.deliver("bob@example.net", m, quota).status, DeliverResult::Status::Ok);
  EXPECT_EQ(*store.usage_bytes("bob@example.net"), m.size() * 2);
}

TEST(MailStoreTest, RetentionEmptiesTrashAndJunkBySavedDate) {
  TempDir t;
  ManualClock clock;
  MailStore store({.root = t.path.string(), .clock = clock.fn()});
  store.deliver("bob@example.net", msg("inbox"), 0);
  store.deliver("bob@example.net", msg("junk"), 0, "Junk");
  store.deliver("bob@example.net", msg("trash"), 0, "Trash");
  store.deliver("carol@example.net", msg("junk"), 0, "Junk");
  auto acc = open(store);
  // An old message moved to Trash today stays: the clock starts when it arrives there.
  ASSERT_TRUE(acc->append("Archive", msg("ancient"), 0, {}, 100, 0).ok());
  clock.advance(std::chrono::hours(24 * 5));
  ASSERT_TRUE(acc->move("Archive", {1}, "Trash").ok());

  MailStore::RetentionPolicy policy;  // 30 d / 10 d
  clock.advance(std::chrono::hours(24 * 6));  // day 11
  auto r1 = store.run_retention(policy);
  EXPECT_EQ(r1.accounts, 2u);
  EXPECT_EQ(r1.messages, 2u);  // both Junk messages
  EXPECT_EQ(r1.failures, 0u);
  EXPECT_EQ(view(*acc, "Junk")->messages().size(), 0u);
  EXPECT_EQ(view(*acc, "Trash")->messages().size(), 2u);

  clock.advance(std::chrono::hours(24 * 20));  // day 31: the delivered one, not the moved one (day 26)
  auto r2 = store.run_retention(policy);
  EXPECT_EQ(r2.messages, 1u);
  EXPECT_EQ(view(*acc, "Trash")->messages().size(), 1u);
  clock.advance(std::chrono::hours(24 * 5));
  EXPECT_EQ(store.run_retention(policy).messages, 1u);
  EXPECT_EQ(view(*acc, "Trash")->messages().size(), 0u);
  EXPECT_EQ(view(*acc, "INBOX")->messages().size(), 1u);
}

TEST(MailStoreTest, RecoveryIndexesOrphanFilesDropsRowsWithoutFilesAndRemovesStaleTmp) {
  TempDir t;
  fs::path inbox;
  fs::path index;
  {
    MailStore store({.root = t.path.string()});
    for (int i = 0; i < 3; ++i) store.deliver("bob@example.net", msg("m" + std::to_string(i)), 0);
    auto acc = open(store);
    inbox = folder_dir(*acc, "INBOX");
    index = acc->directory() / "index.sqlite";
  }
  // Crash point "file renamed in, row never written" cannot happen (the row
  // commits first); a file without a row comes from outside: it is indexed.
  write_file(inbox / "cur" / "1700000000.M1P1Q1.handmade", msg("by hand"));
  // A row whose file vanished (disk damage): the row goes.
  std::string victim;
  for (const auto& e : fs::directory_iterator(inbox / "cur"))
    if (e.path().filename().string().find("handmade") == std::string::npos) victim = e.path().filename();
  fs::remove(inbox / "cur" / victim);
  // A crash after writing tmp/ but before the commit: the file is stale once old.
  write_file(inbox / "tmp" / "old.partial", "partial");
  struct utimbuf old {1000, 1000};
  utime((inbox / "tmp" / "old.partial").c_str(), &old);
  write_file(inbox / "tmp" / "fresh.partial", "being written");

  MailStore store({.root = t.path.string()});
  auto acc = open(store);
  auto v = view(*acc, "INBOX");
  ASSERT_EQ(v->messages().size(), 3u);  // 3 - 1 missing + 1 handmade
  EXPECT_EQ(v->messages().back().uid, 4u);
  EXPECT_EQ(*acc->read_message("INBOX", 4), msg("by hand"));
  EXPECT_FALSE(fs::exists(inbox / "tmp" / "old.partial"));
  EXPECT_TRUE(fs::exists(inbox / "tmp" / "fresh.partial"));
  uint64_t sum = 0;
  for (const auto& m : v->messages()) sum += m.size;
  EXPECT_EQ(acc->usage_bytes(), sum);
  EXPECT_EQ(files_in(inbox / "cur"), 3u);
}

TEST(MailStoreTest, RecoveryFinishesCommittedRenamesAndPendingUnlinks) {
  TempDir t;
  fs::path inbox;
  fs::path index;
  std::string body = msg("committed");
  {
    MailStore store({.root = t.path.string()});
    store.deliver("bob@example.net", body, 0);
    store.deliver("bob@example.net", msg("expunged"), 0);
    auto acc = open(store);
    inbox = folder_dir(*acc, "INBOX");
    index = acc->directory() / "index.sqlite";
  }
  // Crash after COMMIT, before rename: the row's file is still in tmp/.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(inbox / "cur")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 2u);
  fs::rename(inbox / "cur" / names[0], inbox / "tmp" / names[0]);
  struct utimbuf old {1000, 1000};
  utime((inbox / "tmp" / names[0]).c_str(), &old);  // old, yet it has a row: never "stale"
  // Crash after an expunge's COMMIT, before its unlink: the file must not come back.
  sql(index, "DELETE FROM messages WHERE uid = 2; INSERT INTO pending_unlink(path, is_dir) VALUES('folders/" +
                 inbox.filename().string() + "/cur/" + names[1] + "', 0)");

  MailStore store({.root = t.path.string()});
  auto acc = open(store);
  auto v = view(*acc, "INBOX");
  EXPECT_EQ(uids_of(*v), (std::vector<uint32_t>{1}));
  EXPECT_TRUE(fs::exists(inbox / "cur" / names[0]));
  EXPECT_FALSE(fs::exists(inbox / "tmp" / names[0]));
  EXPECT_FALSE(fs::exists(inbox / "cur" / names[1]));
  EXPECT_EQ(*acc->read_message("INBOX", 1), body);
  EXPECT_EQ(acc->usage_bytes(), body.size());
}

TEST(MailStoreTest, ReaderFindsAMessageBetweenCommitAndRename) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  store.deliver("bob@example.net", msg("x"), 0);
  auto acc = open(store);
  auto inbox = folder_dir(*acc, "INBOX");
  auto name = fs::directory_iterator(inbox / "cur")->path().filename();
  fs::rename(inbox / "cur" / name, inbox / "tmp" / name);
  EXPECT_EQ(*acc->read_message("INBOX", 1), msg("x"));
}

TEST(MailStoreTest, FolderViewRefreshReportsNewChangedAndExpunged) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  for (int i = 0; i < 3; ++i) store.deliver("bob@example.net", msg("m"), 0);
  auto acc = open(store);
  auto v = view(*acc, "INBOX");
  ASSERT_EQ(v->messages().size(), 3u);
  EXPECT_FALSE(v->refresh()->added.size());

  store.deliver("bob@example.net", msg("new"), 0);
  store.deliver("bob@example.net", msg("new2"), 0);
  acc->store_flags("INBOX", {1}, FlagOp::Add, kSeen, {});
  acc->expunge("INBOX", {2, 5}, false);  // 5 arrives and goes before the view sees it
  EXPECT_EQ(v->messages().size(), 3u);   // unchanged until refresh
  auto up = v->refresh();
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->expunged, (std::vector<uint32_t>{2}));
  ASSERT_EQ(up->added.size(), 1u);
  EXPECT_EQ(up->added[0].uid, 4u);
  ASSERT_EQ(up->changed.size(), 1u);
  EXPECT_EQ(up->changed[0].uid, 1u);
  EXPECT_EQ(up->changed[0].flags, kSeen);
  EXPECT_EQ(uids_of(*v), (std::vector<uint32_t>{1, 3, 4}));
  EXPECT_EQ(v->index_of(4), 2u);
  EXPECT_EQ(v->index_of(2), std::nullopt);
  EXPECT_EQ(v->uidnext(), 6u);

  auto ch = acc->changes_since("INBOX", v->uidvalidity(), 0);
  ASSERT_TRUE(ch.ok());
  EXPECT_EQ(ch->expunged, (std::vector<uint32_t>{2, 5}));
  EXPECT_EQ(acc->changes_since("INBOX", v->uidvalidity() + 1, 0).error().code, StoreError::Code::Stale);

  // A rename keeps the view; a delete kills it.
  ASSERT_TRUE(acc->create_folder("Work").ok());
  auto w = view(*acc, "Work");
  ASSERT_TRUE(acc->rename_folder("Work", "Jobs").ok());
  EXPECT_FALSE(w->refresh()->gone);
  EXPECT_EQ(w->name(), "Jobs");
  ASSERT_TRUE(acc->delete_folder("Jobs").ok());
  EXPECT_TRUE(w->refresh()->gone);
}

TEST(MailStoreTest, FolderCreateRenameDeleteAndNames) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  auto acc = open(store);
  ASSERT_TRUE(acc->create_folder("Lists/postern/dev").ok());
  EXPECT_TRUE(acc->folder_status("Lists").ok());  // parents made
  EXPECT_TRUE(acc->folder_status("Lists")->has_children);
  EXPECT_EQ(acc->create_folder("Lists").error().code, StoreError::Code::Exists);
  EXPECT_EQ(acc->create_folder("inbox").error().code, StoreError::Code::Exists);
  EXPECT_EQ(acc->create_folder("a//b").error().code, StoreError::Code::InvalidName);
  EXPECT_EQ(acc->create_folder("/a").error().code, StoreError::Code::InvalidName);
  EXPECT_EQ(acc->create_folder("a*").error().code, StoreError::Code::InvalidName);
  EXPECT_EQ(acc->create_folder("").error().code, StoreError::Code::InvalidName);
  EXPECT_TRUE(acc->create_folder("Entwürfe ✉").ok());

  ASSERT_TRUE(acc->append("Lists/postern/dev", msg("d"), 0, {}, std::nullopt, 0).ok());
  auto v0 = acc->folder_status("Lists/postern/dev")->uidvalidity;
  ASSERT_TRUE(acc->rename_folder("Lists", "Mail/Lists").ok());
  EXPECT_EQ(acc->folder_status("Lists").error().code, StoreError::Code::NotFound);
  EXPECT_EQ(acc->folder_status("Mail/Lists/postern/dev")->uidvalidity, v0);
  EXPECT_EQ(acc->folder_status("Mail/Lists/postern/dev")->messages, 1u);
  EXPECT_TRUE(acc->folder_status("Mail").ok());
  EXPECT_EQ(acc->rename_folder("Mail", "Mail/Sub").error().code, StoreError::Code::InvalidName);
  EXPECT_EQ(acc->rename_folder("Mail", "Sent").error().code, StoreError::Code::Exists);

  EXPECT_EQ(acc->delete_folder("INBOX").error().code, StoreError::Code::Forbidden);
  EXPECT_EQ(acc->delete_folder("Mail/Lists").error().code, StoreError::Code::HasChildren);
  ASSERT_TRUE(acc->delete_folder("Mail/Lists/postern/dev").ok());
  EXPECT_EQ(acc->usage_bytes(), 0u);

  ASSERT_TRUE(acc->subscribe("Sent", false).ok());
  EXPECT_FALSE(acc->folder_status("Sent")->subscribed);
  EXPECT_EQ(acc->subscribe("Nope", true).error().code, StoreError::Code::NotFound);
  ASSERT_TRUE(acc->set_special_use("Mail", SpecialUse::Flagged).ok());
  EXPECT_EQ(*acc->folder_for(SpecialUse::Flagged), "Mail");

  // RFC 9051 §6.3.6: renaming INBOX moves its messages and leaves it empty.
  store.deliver("bob@example.net", msg("in"), 0);
  ASSERT_TRUE(acc->rename_folder("INBOX", "Old Inbox").ok());
  EXPECT_EQ(acc->folder_status("INBOX")->messages, 0u);
  EXPECT_EQ(acc->folder_status("Old Inbox")->messages, 1u);
}

TEST(MailStoreTest, AccountDirectoryNamesAreEscapedAndReversible) {
  EXPECT_EQ(account_relative_path("bob@Example.NET"), "example.net/bob");
  EXPECT_EQ(account_relative_path("../x@example.net"), "example.net/%2E.%2Fx");
  EXPECT_EQ(account_relative_path("Bob.Smith@example.net"), "example.net/%42ob.%53mith");
  EXPECT_EQ(account_relative_path("postmaster"), "%/postmaster");
  for (std::string a : {"bob@example.net", "a.b+c@example.org", "Ünï@example.net", "postmaster", ".x@y"}) {
    auto rel = account_relative_path(a);
    auto slash = rel.find('/');
    EXPECT_EQ(account_from_relative_path(rel.substr(0, slash), rel.substr(slash + 1)), a) << rel;
  }
  EXPECT_EQ(account_from_relative_path("example.net", "%zz"), std::nullopt);

  TempDir t;
  MailStore store({.root = t.path.string()});
  store.deliver("bob@example.net", msg("x"), 0);
  store.deliver("Carol@Example.net", msg("x"), 0);
  EXPECT_EQ(store.accounts(), (std::vector<std::string>{"Carol@example.net", "bob@example.net"}));
  EXPECT_FALSE(store.open_account("nobody@example.net", false).ok());
  EXPECT_EQ(store.deliver("", msg("x"), 0).status, DeliverResult::Status::PermError);
}

TEST(MailStoreTest, UsageIsReadFromDiskByAFreshStore) {
  TempDir t;
  const std::string m = msg("u");
  {
    MailStore store({.root = t.path.string()});
    store.deliver("bob@example.net", m, 0);
    store.deliver("bob@example.net", m, 0);
  }
  MailStore fresh({.root = t.path.string()});
  EXPECT_EQ(fresh.usage_bytes("bob@example.net"), m.size() * 2);
  EXPECT_EQ(fresh.usage_bytes("alice@example.net"), std::nullopt);
}

TEST(MailStoreTest, CachedUsageAnswersFromMemoryOnceWarmed) {
  TempDir t;
  const std::string m = msg("u");
  {
    MailStore store({.root = t.path.string()});
    store.deliver("bob@example.net", m, 0);
    store.deliver("bob@example.net", m, 0);
  }
  MailStore fresh({.root = t.path.string()});
  // Nothing read yet: only usage_bytes() (disk) can tell.
  EXPECT_EQ(fresh.cached_usage("bob@example.net"), std::nullopt);
  EXPECT_EQ(fresh.cached_usage("alice@example.net"), std::nullopt);
  EXPECT_EQ(fresh.warm_usage({"bob@example.net", "alice@example.net"}), 1u);
  // With the account directories out of reach the answers still come: from memory.
  const fs::path away = t.path.parent_path() / (t.path.filename().string() + "-away");
  fs::rename(t.path, away);
  EXPECT_EQ(fresh.cached_usage("bob@example.net"), m.size() * 2);
  EXPECT_EQ(fresh.cached_usage("bob@Example.NET"), m.size() * 2);  // the domain in any case
  EXPECT_EQ(fresh.cached_usage("alice@example.net"), 0u);  // known: no store
  EXPECT_EQ(fresh.usage_bytes("bob@example.net"), m.size() * 2);
  EXPECT_EQ(fresh.usage_bytes("alice@example.net"), std::nullopt);
  fs::rename(away, t.path);
  // Deliveries keep the cached values current (the account's own cell).
  ASSERT_EQ(fresh.deliver("alice@example.net", m, 0).status, DeliverResult::Status::Ok);
  EXPECT_EQ(fresh.cached_usage("alice@example.net"), m.size());
  ASSERT_EQ(fresh.deliver("bob@example.net", m, 0).status, DeliverResult::Status::Ok);
  EXPECT_EQ(fresh.cached_usage("bob@example.net"), m.size() * 3);
}

TEST(MailStoreTest, IdleAccountsAreClosedBeyondTheLimitAndReopenIntact) {
  TempDir t;
  MailStore store({.root = t.path.string(), .max_open_accounts = 3});
  for (int i = 0; i < 8; ++i)
    ASSERT_EQ(store.deliver(fmt::format("user{}@example.net", i), msg("x"), 0).status, DeliverResult::Status::Ok);
  for (int i = 0; i < 8; ++i) {
    auto r = store.deliver(fmt::format("user{}@example.net", i), msg("y"), 0);
    EXPECT_EQ(r.uid, 2u);
  }
  EXPECT_EQ(store.accounts().size(), 8u);
}
