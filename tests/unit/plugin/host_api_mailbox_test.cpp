// The ABI 1.2 directory and mailbox-store functions (host_api_mailbox.cpp),
// called through the host API table a plugin receives, against a real
// Directory and MailStore in a temporary directory. The postern_host_t
// belongs to a real LoadedPlugin (tests/abi/noop) whose HostServices carry
// the directory and the store.
#include "core/directory/directory.hpp"
#include "core/directory/store.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/plugin/loader.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace postern::core::plugin {
namespace {

using postern::testing::TempDir;

postern_str_t S(std::string_view s) { return postern_str_t{s.data(), s.size()}; }
std::string str(postern_str_t s) { return std::string(s.ptr != nullptr ? s.ptr : "", s.len); }
postern_bytes_t B(std::string_view s) { return postern_bytes_t{reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

std::string msg(std::string_view subject, std::string_view body = "Hello.") {
  return "From: a@example.org\r\nTo: alice@example.test\r\nSubject: " + std::string(subject) + "\r\n\r\n" +
         std::string(body) + "\r\n";
}

/** Owns a result; frees it through the table. */
struct Res {
  const postern_host_api_v1_t* api;
  postern_mresult_t* r = nullptr;
  explicit Res(const postern_host_api_v1_t* a) : api(a) {}
  ~Res() { api->mresult_free(r); }
  Res(const Res&) = delete;
  Res& operator=(const Res&) = delete;
  postern_mresult_t** out() {
    api->mresult_free(r);
    r = nullptr;
    return &r;
  }
  const postern_mresult_t* operator->() const { return r; }
  std::vector<uint32_t> uids() const { return r != nullptr ? std::vector<uint32_t>(r->uids, r->uids + r->uid_count) : std::vector<uint32_t>{}; }
  std::vector<uint32_t> message_uids() const {
    std::vector<uint32_t> out;
    for (size_t i = 0; r != nullptr && i < r->message_count; ++i) out.push_back(r->messages[i].uid);
    return out;
  }
  std::vector<uint32_t> changed_uids() const {
    std::vector<uint32_t> out;
    for (size_t i = 0; r != nullptr && i < r->changed_count; ++i) out.push_back(r->changed[i].uid);
    return out;
  }
};

class HostApiMailboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory::Directory::Options o;
    o.file = (tmp_.path / "directory.sqlite").string();
    o.default_domain = "example.test";
    o.hash = directory::HashParams{1, 64, 1};
    dir_ = std::make_shared<directory::Directory>(o);
    dir_->ensure_defaults({});
    ok(dir_->add_account("alice@example.test", "Alice Liddell", std::string("wonder"), 0));
    ok(dir_->add_account("bob@example.test", "", std::string("builder"), 0));

    mailstore::MailStore::Options so;
    so.root = (tmp_.path / "mail").string();
    store_ = std::make_shared<mailstore::MailStore>(so);

    HostServices s;
    s.io = &io_;
    s.workers = &workers_;
    s.state_root = tmp_.path / "state";
    s.directory = dir_;
    s.store = store_;
    plugin_ = load(s);
    ASSERT_NE(plugin_, nullptr);
    host_.plugin = plugin_.get();
    api_ = host_api();
  }
  void TearDown() override { workers_.join(); }

  static void ok(const directory::Status& s) { ASSERT_TRUE(s.ok()) << s.message; }

  std::unique_ptr<LoadedPlugin> load(const HostServices& s) {
    auto& doc = docs_.emplace_back(std::make_unique<pugi::xml_document>());
    EXPECT_TRUE(doc->load_string(R"(<plugin name="noop"/>)"));
    LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "noop.so";
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "noop.plugin.xml";
    r.name = "noop";
    r.config = doc->document_element();
    auto loaded = LoadedPlugin::load(r, s);
    if (!std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) {
      ADD_FAILURE() << std::get<std::string>(loaded);
      return nullptr;
    }
    return std::move(std::get<0>(loaded));
  }

  std::string last_error() { return str(api_->last_error(&host_)); }

  postern_mailbox_t* open(std::string_view account = "alice@example.test") {
    postern_mailbox_t* mb = nullptr;
    EXPECT_EQ(api_->mbox_open(&host_, S(account), &mb), POSTERN_OK) << last_error();
    mailboxes_.emplace_back(mb, api_->mbox_release);
    return mb;
  }

  uint32_t append(postern_mailbox_t* mb, std::string_view folder, std::string_view message, uint32_t flags = 0) {
    Res r(api_);
    EXPECT_EQ(api_->mbox_append(mb, S(folder), B(message), flags, nullptr, 0, -1, r.out()), POSTERN_OK)
        << last_error();
    return r.r != nullptr ? r->uid : 0;
  }

  TempDir tmp_{"postern-hostmbox"};
  boost::asio::io_context io_;
  boost::asio::thread_pool workers_{1};
  std::shared_ptr<directory::Directory> dir_;
  std::shared_ptr<mailstore::MailStore> store_;
  std::vector<std::unique_ptr<pugi::xml_document>> docs_;
  std::unique_ptr<LoadedPlugin> plugin_;
  postern_host host_{};
  const postern_host_api_v1_t* api_ = nullptr;
  std::vector<std::unique_ptr<postern_mailbox_t, void (*)(postern_mailbox_t*)>> mailboxes_;
};

TEST_F(HostApiMailboxTest, TableOffersEveryMailboxFunction) {
  ASSERT_GE(api_->struct_size, offsetof(postern_host_api_v1_t, view_release) + sizeof(void*));
  EXPECT_NE(api_->dir_authenticate, nullptr);
  EXPECT_NE(api_->view_release, nullptr);
}

TEST_F(HostApiMailboxTest, AuthenticateAcceptsLoginFormsAndFillsTheAccount) {
  ok(dir_->set_quota("alice@example.test", 5000));
  for (std::string_view login : {"alice@example.test", "Alice%Example.Test", "alice"}) {
    postern_account_info_t info{};
    info.struct_size = sizeof info;
    ASSERT_EQ(api_->dir_authenticate(&host_, S(login), S("wonder"), POSTERN_SERVICE_IMAP, &info), POSTERN_OK)
        << login << ": " << last_error();
    EXPECT_EQ(str(info.address), "alice@example.test");
    EXPECT_EQ(str(info.real_name), "Alice Liddell");
    EXPECT_EQ(info.quota_bytes, 5000u);
    EXPECT_EQ(info.services, POSTERN_SERVICE_SMTP | POSTERN_SERVICE_IMAP | POSTERN_SERVICE_POP3);
    EXPECT_EQ(info.enabled, 1u);
  }
}

TEST_F(HostApiMailboxTest, AuthenticateRefusalsLookAlike) {
  ok(dir_->set_enabled("bob@example.test", false, directory::kPop3));
  postern_account_info_t info{};
  info.struct_size = sizeof info;
  // Wrong password, unknown login, service not allowed: the same status and text.
  EXPECT_EQ(api_->dir_authenticate(&host_, S("alice"), S("Wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_NOT_FOUND);
  const std::string wrong_password = last_error();
  EXPECT_EQ(api_->dir_authenticate(&host_, S("nobody"), S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_NOT_FOUND);
  const std::string unknown = last_error();
  EXPECT_EQ(api_->dir_authenticate(&host_, S("bob"), S("builder"), POSTERN_SERVICE_POP3, &info),
            POSTERN_ERR_NOT_FOUND);
  const std::string not_allowed = last_error();
  EXPECT_EQ(wrong_password, "authentication failed");
  EXPECT_EQ(unknown, wrong_password);
  EXPECT_EQ(not_allowed, wrong_password);
  // Bob may still use IMAP.
  EXPECT_EQ(api_->dir_authenticate(&host_, S("bob"), S("builder"), POSTERN_SERVICE_IMAP, &info), POSTERN_OK);
  EXPECT_EQ(info.services, POSTERN_SERVICE_SMTP | POSTERN_SERVICE_IMAP);
  // A disabled account is refused for everything.
  ok(dir_->set_enabled("alice@example.test", false, 0));
  EXPECT_EQ(api_->dir_authenticate(&host_, S("alice"), S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(last_error(), "authentication failed");
}

TEST_F(HostApiMailboxTest, AuthenticateRejectsBadArguments) {
  postern_account_info_t info{};
  info.struct_size = sizeof info;
  EXPECT_EQ(api_->dir_authenticate(&host_, S("alice"), S("wonder"), 3, &info), POSTERN_ERR_INVALID);
  EXPECT_NE(last_error().find("service"), std::string::npos);
  EXPECT_EQ(api_->dir_authenticate(&host_, S("alice"), S("wonder"), POSTERN_SERVICE_IMAP, nullptr),
            POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->dir_authenticate(nullptr, S("alice"), S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->dir_authenticate(&host_, postern_str_t{nullptr, 5}, S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_INVALID);
  info.struct_size = 4;  // an older, smaller struct than 1.2's
  EXPECT_EQ(api_->dir_authenticate(&host_, S("alice"), S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_INVALID);
}

TEST_F(HostApiMailboxTest, DirAccountLooksUpWithoutPassword) {
  postern_account_info_t info{};
  info.struct_size = sizeof info;
  ASSERT_EQ(api_->dir_account(&host_, S("BOB@example.test"), &info), POSTERN_OK);
  EXPECT_EQ(str(info.address), "bob@example.test");
  EXPECT_EQ(api_->dir_account(&host_, S("carol@example.test"), &info), POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(last_error(), "no such account");
}

TEST_F(HostApiMailboxTest, WithoutDirectoryOrStoreEverythingIsUnavailable) {
  HostServices bare;
  bare.io = &io_;
  bare.workers = &workers_;
  bare.state_root = tmp_.path / "state2";
  auto plugin = load(bare);
  ASSERT_NE(plugin, nullptr);
  postern_host host{plugin.get()};
  postern_account_info_t info{};
  info.struct_size = sizeof info;
  EXPECT_EQ(api_->dir_authenticate(&host, S("alice"), S("wonder"), POSTERN_SERVICE_IMAP, &info),
            POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(str(api_->last_error(&host)), "no directory is configured");
  EXPECT_EQ(api_->dir_account(&host, S("alice"), &info), POSTERN_ERR_UNAVAILABLE);
  postern_mailbox_t* mb = nullptr;
  EXPECT_EQ(api_->mbox_open(&host, S("alice@example.test"), &mb), POSTERN_ERR_UNAVAILABLE);
  EXPECT_EQ(mb, nullptr);
  EXPECT_EQ(str(api_->last_error(&host)), "no mailbox store is configured");
}

TEST_F(HostApiMailboxTest, OpenRefusesAddressesThatAreNoAccount) {
  postern_mailbox_t* mb = nullptr;
  EXPECT_EQ(api_->mbox_open(&host_, S("mallory@example.test"), &mb), POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(mb, nullptr);
  EXPECT_FALSE(store_->has_account("mallory@example.test"));
  EXPECT_EQ(api_->mbox_open(&host_, S(""), &mb), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_open(&host_, S("alice@example.test"), nullptr), POSTERN_ERR_INVALID);
  // The login form opens the canonical account.
  ASSERT_EQ(api_->mbox_open(&host_, S("Alice%example.test"), &mb), POSTERN_OK) << last_error();
  api_->mbox_release(mb);
  EXPECT_TRUE(store_->has_account("alice@example.test"));
}

TEST_F(HostApiMailboxTest, ListFoldersInboxFirstWithSpecialUse) {
  auto* mb = open();
  Res r(api_);
  ASSERT_EQ(api_->mbox_list_folders(mb, r.out()), POSTERN_OK);
  ASSERT_EQ(r->struct_size, sizeof(postern_mresult_t));
  std::vector<std::string> names;
  std::string sent_use;
  for (size_t i = 0; i < r->folder_count; ++i) {
    names.push_back(str(r->folders[i].name));
    if (names.back() == "Sent") sent_use = str(r->folders[i].special_use);
    EXPECT_EQ(r->folders[i].subscribed, 1u);
    EXPECT_GT(r->folders[i].uidvalidity, 0u);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"}));
  EXPECT_EQ(sent_use, "\\Sent");
  EXPECT_EQ(r->message_count, 0u);
  EXPECT_EQ(r->uid_count, 0u);
  EXPECT_EQ(r->bytes.len, 0u);
}

TEST_F(HostApiMailboxTest, CreateRenameDeleteAndTheirErrors) {
  auto* mb = open();
  EXPECT_EQ(api_->mbox_create_folder(mb, S("Work/Projects"), S("")), POSTERN_OK) << last_error();
  EXPECT_EQ(api_->mbox_create_folder(mb, S("Work/Projects"), S("")), POSTERN_ERR_EXISTS);
  EXPECT_FALSE(last_error().empty());
  EXPECT_EQ(api_->mbox_create_folder(mb, S("a//b"), S("")), POSTERN_ERR_INVALID);
  EXPECT_FALSE(last_error().empty());
  EXPECT_EQ(api_->mbox_create_folder(mb, S("Bogus"), S("\\Bogus")), POSTERN_ERR_INVALID);
  EXPECT_EQ(last_error(), "unknown special-use attribute \\Bogus");
  EXPECT_EQ(api_->mbox_create_folder(mb, S("Old Sent"), S("\\sent")), POSTERN_OK) << last_error();
  EXPECT_EQ(api_->mbox_delete_folder(mb, S("INBOX")), POSTERN_ERR_FORBIDDEN);
  EXPECT_EQ(api_->mbox_delete_folder(mb, S("Work")), POSTERN_ERR_HAS_CHILDREN);
  EXPECT_EQ(api_->mbox_delete_folder(mb, S("Nope")), POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(api_->mbox_rename_folder(mb, S("Work"), S("Jobs")), POSTERN_OK) << last_error();
  EXPECT_EQ(api_->mbox_rename_folder(mb, S("Jobs"), S("Sent")), POSTERN_ERR_EXISTS);
  EXPECT_EQ(api_->mbox_subscribe(mb, S("Jobs/Projects"), 0), POSTERN_OK);

  Res st(api_);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("Jobs/Projects"), st.out()), POSTERN_OK) << last_error();
  ASSERT_EQ(st->folder_count, 1u);
  EXPECT_EQ(str(st->folders[0].name), "Jobs/Projects");
  EXPECT_EQ(st->folders[0].subscribed, 0u);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("Old Sent"), st.out()), POSTERN_OK);
  EXPECT_EQ(str(st->folders[0].special_use), "\\Sent");
  EXPECT_EQ(api_->mbox_folder_status(mb, S("Work/Projects"), st.out()), POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(st.r, nullptr);

  EXPECT_EQ(api_->mbox_delete_folder(mb, S("Jobs/Projects")), POSTERN_OK);
  EXPECT_EQ(api_->mbox_delete_folder(mb, S("Jobs")), POSTERN_OK);
}

TEST_F(HostApiMailboxTest, AppendThenReadIsByteExact) {
  auto* mb = open();
  std::string raw = msg("binary", std::string("8bit \xC3\xA9 and a NUL \0 here", 25));
  std::vector<std::string> kw = {"$Forwarded", "Work"};
  std::vector<postern_str_t> kws = {S(kw[0]), S(kw[1])};
  Res a(api_);
  ASSERT_EQ(api_->mbox_append(mb, S("INBOX"), B(raw), POSTERN_FLAG_SEEN | POSTERN_FLAG_FLAGGED, kws.data(), kws.size(),
                              1700000000, a.out()),
            POSTERN_OK)
      << last_error();
  EXPECT_EQ(a->uid, 1u);
  EXPECT_GT(a->uidvalidity, 0u);

  Res m(api_);
  ASSERT_EQ(api_->mbox_read_message(mb, S("INBOX"), a->uid, m.out()), POSTERN_OK);
  ASSERT_EQ(m->bytes.len, raw.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->bytes.ptr), m->bytes.len), raw);
  EXPECT_EQ(m->message_count, 0u);

  postern_folder_view_t* v = nullptr;
  Res snap(api_);
  ASSERT_EQ(api_->mbox_open_folder(mb, S("inbox"), &v, snap.out()), POSTERN_OK);
  ASSERT_EQ(snap->message_count, 1u);
  const postern_message_info_t& info = snap->messages[0];
  EXPECT_EQ(info.uid, 1u);
  EXPECT_EQ(info.flags, POSTERN_FLAG_SEEN | POSTERN_FLAG_FLAGGED);
  EXPECT_EQ(info.internal_date, 1700000000);
  EXPECT_EQ(info.size, raw.size());
  ASSERT_EQ(info.keyword_count, 2u);
  EXPECT_EQ(str(info.keywords[0]), "$Forwarded");
  EXPECT_EQ(str(info.keywords[1]), "Work");
  EXPECT_EQ(snap->uidvalidity, a->uidvalidity);
  EXPECT_EQ(snap->uidnext, 2u);
  ASSERT_EQ(snap->folder_count, 1u);
  EXPECT_EQ(str(snap->folders[0].name), "INBOX");
  EXPECT_EQ(snap->folders[0].messages, 1u);
  EXPECT_EQ(snap->folders[0].unseen, 0u);
  EXPECT_EQ(snap->folders[0].size, raw.size());
  api_->view_release(v);

  // internal_date < 0 means now.
  const auto before = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  const uint32_t uid2 = append(mb, "INBOX", msg("now"));
  ASSERT_EQ(api_->mbox_changes_since(mb, S("INBOX"), a->uidvalidity, 0, m.out()), POSTERN_OK);
  ASSERT_EQ(m.message_uids(), (std::vector<uint32_t>{1, uid2}));
  EXPECT_GE(m->messages[1].internal_date, before - 1);
  EXPECT_LE(m->messages[1].internal_date, before + 60);

  EXPECT_EQ(api_->mbox_read_message(mb, S("INBOX"), 99, m.out()), POSTERN_ERR_NOT_FOUND);
  EXPECT_EQ(api_->mbox_append(mb, S("Nope"), B(raw), 0, nullptr, 0, -1, a.out()), POSTERN_ERR_NOT_FOUND);
  std::vector<postern_str_t> bad = {S("bad keyword")};
  EXPECT_EQ(api_->mbox_append(mb, S("INBOX"), B(raw), 0, bad.data(), 1, -1, a.out()), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_append(mb, S("INBOX"), B(raw), 0x100, nullptr, 0, -1, a.out()), POSTERN_ERR_INVALID);
  EXPECT_EQ(last_error(), "unknown flag bits");
}

TEST_F(HostApiMailboxTest, StoreFlagsHonoursUnchangedSince) {
  auto* mb = open();
  const uint32_t u1 = append(mb, "INBOX", msg("one"));
  const uint32_t u2 = append(mb, "INBOX", msg("two"));
  std::vector<uint32_t> both = {u1, u2};

  Res r(api_);
  ASSERT_EQ(api_->mbox_store_flags(mb, S("INBOX"), &u1, 1, POSTERN_FLAGS_ADD, POSTERN_FLAG_FLAGGED, nullptr, 0, 0, 0,
                                   r.out()),
            POSTERN_OK);
  ASSERT_EQ(r->message_count, 1u);
  const uint64_t flagged_modseq = r->messages[0].modseq;
  EXPECT_EQ(r->highest_modseq, flagged_modseq);
  EXPECT_EQ(r->uid_count, 0u);

  // u1 changed after `since`: left alone and reported MODIFIED; u2 is stored.
  const uint64_t since = flagged_modseq - 1;
  std::string kw = "Important";
  postern_str_t kws[] = {S(kw)};
  ASSERT_EQ(api_->mbox_store_flags(mb, S("INBOX"), both.data(), both.size(), POSTERN_FLAGS_ADD, POSTERN_FLAG_SEEN, kws,
                                   1, 1, since, r.out()),
            POSTERN_OK);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{u1}));
  // `messages` holds what was stored; a MODIFIED message is left out (and unchanged).
  ASSERT_EQ(r.message_uids(), (std::vector<uint32_t>{u2}));
  EXPECT_EQ(r->messages[0].flags, POSTERN_FLAG_SEEN);
  ASSERT_EQ(r->messages[0].keyword_count, 1u);
  EXPECT_EQ(str(r->messages[0].keywords[0]), "Important");
  EXPECT_GT(r->highest_modseq, flagged_modseq);
  Res check(api_);
  ASSERT_EQ(api_->mbox_changes_since(mb, S("INBOX"), 0, 0, check.out()), POSTERN_ERR_STALE);

  ASSERT_EQ(api_->mbox_store_flags(mb, S("INBOX"), both.data(), both.size(), POSTERN_FLAGS_REPLACE, POSTERN_FLAG_DRAFT,
                                   nullptr, 0, 0, 0, r.out()),
            POSTERN_OK);
  EXPECT_EQ(r->messages[0].flags, POSTERN_FLAG_DRAFT);
  EXPECT_EQ(r->messages[1].flags, POSTERN_FLAG_DRAFT);
  ASSERT_EQ(api_->mbox_store_flags(mb, S("INBOX"), &u2, 1, POSTERN_FLAGS_REMOVE, POSTERN_FLAG_DRAFT, nullptr, 0, 0, 0,
                                   r.out()),
            POSTERN_OK);
  EXPECT_EQ(r->messages[0].flags, 0u);

  std::string bad = "no spaces";
  postern_str_t badkw[] = {S(bad)};
  EXPECT_EQ(api_->mbox_store_flags(mb, S("INBOX"), &u1, 1, POSTERN_FLAGS_ADD, 0, badkw, 1, 0, 0, r.out()),
            POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_store_flags(mb, S("INBOX"), &u1, 1, 7u, 0, nullptr, 0, 0, 0,
                                   r.out()),
            POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_store_flags(mb, S("INBOX"), nullptr, 2, POSTERN_FLAGS_ADD, 0, nullptr, 0, 0, 0, r.out()),
            POSTERN_ERR_INVALID);
}

TEST_F(HostApiMailboxTest, ExpungeModes) {
  auto* mb = open();
  for (int i = 0; i < 4; ++i) append(mb, "INBOX", msg("m" + std::to_string(i)));
  std::vector<uint32_t> del = {1, 2};
  Res r(api_);
  ASSERT_EQ(api_->mbox_store_flags(mb, S("INBOX"), del.data(), del.size(), POSTERN_FLAGS_ADD, POSTERN_FLAG_DELETED,
                                   nullptr, 0, 0, 0, r.out()),
            POSTERN_OK);

  std::vector<uint32_t> listed = {1, 3};
  ASSERT_EQ(api_->mbox_expunge(mb, S("INBOX"), listed.data(), listed.size(), POSTERN_EXPUNGE_LISTED_DELETED, r.out()),
            POSTERN_OK);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{1}));  // 3 has no \Deleted
  const uint32_t three = 3;
  ASSERT_EQ(api_->mbox_expunge(mb, S("INBOX"), &three, 1, POSTERN_EXPUNGE_LISTED, r.out()), POSTERN_OK);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{3}));  // POP3 DELE: no flag needed
  ASSERT_EQ(api_->mbox_expunge(mb, S("INBOX"), nullptr, 0, POSTERN_EXPUNGE_ALL_DELETED, r.out()), POSTERN_OK);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{2}));
  ASSERT_EQ(api_->mbox_expunge(mb, S("INBOX"), nullptr, 0, POSTERN_EXPUNGE_ALL_DELETED, r.out()), POSTERN_OK);
  EXPECT_EQ(r->uid_count, 0u);

  Res st(api_);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("INBOX"), st.out()), POSTERN_OK);
  EXPECT_EQ(st->folders[0].messages, 1u);
  EXPECT_EQ(api_->mbox_expunge(mb, S("INBOX"), nullptr, 0, 9u, r.out()),
            POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_expunge(mb, S("Nope"), nullptr, 0, POSTERN_EXPUNGE_ALL_DELETED, r.out()),
            POSTERN_ERR_NOT_FOUND);
}

TEST_F(HostApiMailboxTest, CopyAndMoveReportCopyUid) {
  auto* mb = open();
  append(mb, "INBOX", msg("one"));
  append(mb, "INBOX", msg("two"));
  append(mb, "INBOX", msg("three"));
  Res st(api_);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("Archive"), st.out()), POSTERN_OK);
  const uint32_t archive_validity = st->folders[0].uidvalidity;

  std::vector<uint32_t> uids = {1, 3, 99};
  Res r(api_);
  ASSERT_EQ(api_->mbox_copy(mb, S("INBOX"), uids.data(), uids.size(), S("Archive"), r.out()), POSTERN_OK)
      << last_error();
  EXPECT_EQ(r->uidvalidity, archive_validity);
  ASSERT_EQ(r->uid_pair_count, 2u);
  EXPECT_EQ(std::vector<uint32_t>(r->uid_pairs, r->uid_pairs + 4), (std::vector<uint32_t>{1, 1, 3, 2}));

  std::vector<uint32_t> two = {2};
  ASSERT_EQ(api_->mbox_move(mb, S("INBOX"), two.data(), two.size(), S("Archive"), r.out()), POSTERN_OK);
  ASSERT_EQ(r->uid_pair_count, 1u);
  EXPECT_EQ(r->uid_pairs[0], 2u);
  EXPECT_EQ(r->uid_pairs[1], 3u);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("INBOX"), st.out()), POSTERN_OK);
  EXPECT_EQ(st->folders[0].messages, 2u);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("Archive"), st.out()), POSTERN_OK);
  EXPECT_EQ(st->folders[0].messages, 3u);
  Res m(api_);
  ASSERT_EQ(api_->mbox_read_message(mb, S("Archive"), 3, m.out()), POSTERN_OK);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->bytes.ptr), m->bytes.len), msg("two"));

  EXPECT_EQ(api_->mbox_copy(mb, S("INBOX"), uids.data(), uids.size(), S("Nope"), r.out()), POSTERN_ERR_NOT_FOUND);
}

TEST_F(HostApiMailboxTest, ViewRefreshSeesAnotherSessionsChanges) {
  auto* mb = open();
  auto* other = open();  // a second session of the same account
  append(mb, "INBOX", msg("one"));
  append(mb, "INBOX", msg("two"));
  append(mb, "INBOX", msg("three"));

  postern_folder_view_t* v = nullptr;
  Res snap(api_);
  ASSERT_EQ(api_->mbox_open_folder(mb, S("INBOX"), &v, snap.out()), POSTERN_OK);
  std::unique_ptr<postern_folder_view_t, void (*)(postern_folder_view_t*)> guard(v, api_->view_release);
  EXPECT_EQ(snap.message_uids(), (std::vector<uint32_t>{1, 2, 3}));

  Res r(api_);
  ASSERT_EQ(api_->view_refresh(v, r.out()), POSTERN_OK);
  EXPECT_EQ(r->uid_count + r->message_count + r->changed_count, 0u);
  EXPECT_EQ(r->highest_modseq, snap->highest_modseq);

  // Meanwhile: a delivery, an expunge and a flag change by the other session.
  ASSERT_EQ(store_->deliver("alice@example.test", msg("four"), 0).status, mailstore::DeliverResult::Status::Ok);
  const uint32_t two = 2, three = 3;
  ASSERT_EQ(api_->mbox_expunge(other, S("INBOX"), &two, 1, POSTERN_EXPUNGE_LISTED, r.out()), POSTERN_OK);
  ASSERT_EQ(api_->mbox_store_flags(other, S("INBOX"), &three, 1, POSTERN_FLAGS_ADD, POSTERN_FLAG_SEEN, nullptr, 0, 0, 0,
                                   r.out()),
            POSTERN_OK);
  const uint64_t modseq = r->highest_modseq;

  ASSERT_EQ(api_->view_refresh(v, r.out()), POSTERN_OK);
  EXPECT_EQ(r->flags, 0u);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{2}));
  EXPECT_EQ(r.message_uids(), (std::vector<uint32_t>{4}));
  EXPECT_EQ(r.changed_uids(), (std::vector<uint32_t>{3}));
  EXPECT_EQ(r->changed[0].flags, POSTERN_FLAG_SEEN);
  EXPECT_EQ(r->uidnext, 5u);
  EXPECT_EQ(r->highest_modseq, modseq);
  EXPECT_EQ(r->uidvalidity, snap->uidvalidity);

  // A deleted folder's view reports GONE with every message expunged.
  ASSERT_EQ(api_->mbox_create_folder(mb, S("Temp"), S("")), POSTERN_OK);
  append(mb, "Temp", msg("t"));
  postern_folder_view_t* tv = nullptr;
  ASSERT_EQ(api_->mbox_open_folder(mb, S("Temp"), &tv, snap.out()), POSTERN_OK);
  ASSERT_EQ(api_->mbox_delete_folder(other, S("Temp")), POSTERN_OK);
  ASSERT_EQ(api_->view_refresh(tv, r.out()), POSTERN_OK);
  EXPECT_EQ(r->flags & POSTERN_MRESULT_GONE, POSTERN_MRESULT_GONE);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{1}));
  // The view outlives the mailbox handle that opened it.
  api_->view_release(tv);
}

TEST_F(HostApiMailboxTest, ViewOutlivesItsMailboxHandle) {
  postern_mailbox_t* mb = nullptr;
  ASSERT_EQ(api_->mbox_open(&host_, S("alice@example.test"), &mb), POSTERN_OK);
  append(mb, "INBOX", msg("one"));
  postern_folder_view_t* v = nullptr;
  Res snap(api_);
  ASSERT_EQ(api_->mbox_open_folder(mb, S("INBOX"), &v, snap.out()), POSTERN_OK);
  api_->mbox_release(mb);
  ASSERT_EQ(store_->deliver("alice@example.test", msg("two"), 0).status, mailstore::DeliverResult::Status::Ok);
  Res r(api_);
  ASSERT_EQ(api_->view_refresh(v, r.out()), POSTERN_OK);
  EXPECT_EQ(r.message_uids(), (std::vector<uint32_t>{2}));
  api_->view_release(v);
}

TEST_F(HostApiMailboxTest, QuotaRefusesAppendAndCopy) {
  auto* mb = open();
  const std::string big = msg("big", std::string(300, 'x'));
  ok(dir_->set_quota("alice@example.test", 400));
  append(mb, "INBOX", big);
  uint64_t used = 0, quota = 0;
  ASSERT_EQ(api_->mbox_usage(mb, &used, &quota), POSTERN_OK);
  EXPECT_EQ(used, big.size());
  EXPECT_EQ(quota, 400u);

  Res r(api_);
  EXPECT_EQ(api_->mbox_append(mb, S("INBOX"), B(big), 0, nullptr, 0, -1, r.out()), POSTERN_ERR_OVER_QUOTA);
  EXPECT_FALSE(last_error().empty());
  EXPECT_EQ(r.r, nullptr);
  const uint32_t one = 1;
  EXPECT_EQ(api_->mbox_copy(mb, S("INBOX"), &one, 1, S("Archive"), r.out()), POSTERN_ERR_OVER_QUOTA);
  // MOVE does not grow the mailbox.
  EXPECT_EQ(api_->mbox_move(mb, S("INBOX"), &one, 1, S("Archive"), r.out()), POSTERN_OK);
  // The quota is read live from the directory: raising it lets the append in.
  ok(dir_->set_quota("alice@example.test", 0));
  EXPECT_EQ(api_->mbox_append(mb, S("INBOX"), B(big), 0, nullptr, 0, -1, r.out()), POSTERN_OK);
  ASSERT_EQ(api_->mbox_usage(mb, &used, &quota), POSTERN_OK);
  EXPECT_EQ(quota, 0u);
  EXPECT_EQ(used, 2 * big.size());
}

TEST_F(HostApiMailboxTest, ClaimRecentAndChangesSince) {
  auto* mb = open();
  append(mb, "INBOX", msg("one"));
  append(mb, "INBOX", msg("two"));
  uint32_t first = 0;
  ASSERT_EQ(api_->mbox_claim_recent(mb, S("INBOX"), &first), POSTERN_OK);
  EXPECT_EQ(first, 1u);
  ASSERT_EQ(api_->mbox_claim_recent(mb, S("INBOX"), &first), POSTERN_OK);
  EXPECT_EQ(first, 3u);  // nothing recent for a second claimant
  EXPECT_EQ(api_->mbox_claim_recent(mb, S("INBOX"), nullptr), POSTERN_ERR_INVALID);

  Res st(api_);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("INBOX"), st.out()), POSTERN_OK);
  const uint32_t validity = st->folders[0].uidvalidity;
  const uint64_t since = st->folders[0].highest_modseq;
  const uint32_t one = 1;
  Res r(api_);
  ASSERT_EQ(api_->mbox_expunge(mb, S("INBOX"), &one, 1, POSTERN_EXPUNGE_LISTED, r.out()), POSTERN_OK);
  append(mb, "INBOX", msg("three"));
  ASSERT_EQ(api_->mbox_changes_since(mb, S("INBOX"), validity, since, r.out()), POSTERN_OK);
  EXPECT_EQ(r.uids(), (std::vector<uint32_t>{1}));
  EXPECT_EQ(r.message_uids(), (std::vector<uint32_t>{3}));
  EXPECT_EQ(r->uidnext, 4u);
  EXPECT_EQ(r->uidvalidity, validity);
  EXPECT_EQ(api_->mbox_changes_since(mb, S("INBOX"), validity + 1, since, r.out()), POSTERN_ERR_STALE);
}

TEST_F(HostApiMailboxTest, NullHandlesAndResultsAreHandled) {
  api_->mresult_free(nullptr);
  api_->mbox_release(nullptr);
  api_->view_release(nullptr);
  postern_mresult_t* r = reinterpret_cast<postern_mresult_t*>(0x1);
  EXPECT_EQ(api_->mbox_list_folders(nullptr, &r), POSTERN_ERR_INVALID);
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(last_error(), "invalid mailbox handle");
  EXPECT_EQ(api_->view_refresh(nullptr, &r), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_open(nullptr, S("alice@example.test"), nullptr), POSTERN_ERR_INVALID);
  auto* mb = open();
  EXPECT_EQ(api_->mbox_list_folders(mb, nullptr), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_usage(mb, nullptr, nullptr), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_folder_status(mb, postern_str_t{nullptr, 3}, &r), POSTERN_ERR_INVALID);
  EXPECT_EQ(api_->mbox_read_message(mb, S("INBOX"), 0, &r), POSTERN_ERR_INVALID);
  // A successful call clears the detail.
  ASSERT_EQ(api_->mbox_list_folders(mb, &r), POSTERN_OK);
  EXPECT_EQ(last_error(), "");
  api_->mresult_free(r);
}

TEST_F(HostApiMailboxTest, LastErrorIsPerThread) {
  auto* mb = open();
  postern_mresult_t* r = nullptr;
  EXPECT_EQ(api_->mbox_folder_status(mb, S("Nope"), &r), POSTERN_ERR_NOT_FOUND);
  const std::string mine = last_error();
  EXPECT_FALSE(mine.empty());
  std::string theirs = "unset";
  std::thread([&] { theirs = str(api_->last_error(&host_)); }).join();
  EXPECT_EQ(theirs, "");
  EXPECT_EQ(last_error(), mine);
}

TEST_F(HostApiMailboxTest, ConcurrentAppendsFromManyThreads) {
  auto* mb = open();
  constexpr int kThreads = 4, kEach = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string m = msg("t" + std::to_string(t) + "-" + std::to_string(i));
        postern_mresult_t* r = nullptr;
        if (api_->mbox_append(mb, S("INBOX"), B(m), 0, nullptr, 0, -1, &r) != POSTERN_OK) ++failures;
        api_->mresult_free(r);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  Res st(api_);
  ASSERT_EQ(api_->mbox_folder_status(mb, S("INBOX"), st.out()), POSTERN_OK);
  EXPECT_EQ(st->folders[0].messages, static_cast<uint32_t>(kThreads * kEach));
  EXPECT_EQ(st->folders[0].uidnext, static_cast<uint32_t>(kThreads * kEach + 1));
}

}  // namespace
}  // namespace postern::core::plugin
