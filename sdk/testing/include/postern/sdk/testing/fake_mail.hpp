#pragma once
/**
 * @file fake_mail.hpp
 * The directory and mailbox store behind FakeHost's ABI 1.2 dir_* / mbox_* /
 * view_* functions, for unit tests of service plugins (IMAP, POP3).
 *
 * Two ways to answer them:
 *   - std::function overrides (FakeHost::set_authenticate, set_account_lookup,
 *     set_mailbox_opener) returning the SDK's value types, where a test wants
 *     to script answers (e.g. a TEMPORARY failure), with FakeMailbox /
 *     FakeFolderView subclasses whose members default to UNAVAILABLE;
 *   - MemoryMailStore: an in-memory directory plus mailbox store with the
 *     semantics of core/mailstore (UIDs, UIDVALIDITY, MODSEQ, \Deleted,
 *     views, quota), installed with FakeHost::use_mail_store(store).
 *
 *   auto store = std::make_shared<sdk::testing::MemoryMailStore>();
 *   store->add_account("alice@example.test", "secret");
 *   store->deliver("alice@example.test", "Subject: hi\r\n\r\nbody\r\n");
 *   host.use_mail_store(store);
 *
 * Without either, every call answers POSTERN_ERR_UNAVAILABLE, as posternd
 * does without a directory or store.
 */

#include <postern/sdk/mailbox.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <postern/mail/ascii.hpp>

namespace postern::sdk::testing {

namespace mail_detail {
inline MailError unavailable() { return MailError{POSTERN_ERR_UNAVAILABLE, "not offered by this fake mailbox"}; }
}  // namespace mail_detail

/** One session's folder view behind view_refresh. */
class FakeFolderView {
 public:
  virtual ~FakeFolderView() = default;
  virtual Expected<ViewUpdate> refresh() { return mail_detail::unavailable(); }
};

/**
 * One opened account behind the mbox_* functions. Every member defaults to
 * POSTERN_ERR_UNAVAILABLE; override what the test needs.
 * THREADING: called from whatever thread the plugin calls from.
 */
class FakeMailbox {
 public:
  virtual ~FakeMailbox() = default;
  virtual Expected<std::vector<FolderInfo>> list_folders() { return mail_detail::unavailable(); }
  virtual Expected<FolderInfo> folder_status(std::string_view /*name*/) { return mail_detail::unavailable(); }
  virtual Expected<Done> create_folder(std::string_view /*name*/, std::string_view /*special_use*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<Done> delete_folder(std::string_view /*name*/) { return mail_detail::unavailable(); }
  virtual Expected<Done> rename_folder(std::string_view /*from*/, std::string_view /*to*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<Done> subscribe(std::string_view /*name*/, bool /*subscribed*/) { return mail_detail::unavailable(); }
  virtual Expected<uint32_t> claim_recent(std::string_view /*name*/) { return mail_detail::unavailable(); }
  virtual Expected<FolderChanges> changes_since(std::string_view /*name*/, uint32_t /*uidvalidity*/, uint64_t /*since*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<std::string> read_message(std::string_view /*folder*/, uint32_t /*uid*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<StoreOutcome> store_flags(std::string_view /*folder*/, const std::vector<uint32_t>& /*uids*/,
                                             postern_flag_op_t /*op*/, uint32_t /*flags*/,
                                             const std::vector<std::string>& /*keywords*/,
                                             std::optional<uint64_t> /*unchanged_since*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<std::vector<uint32_t>> expunge(std::string_view /*folder*/, const std::vector<uint32_t>& /*uids*/,
                                                  postern_expunge_mode_t /*mode*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<AppendOutcome> append(std::string_view /*folder*/, std::string_view /*message*/, uint32_t /*flags*/,
                                         const std::vector<std::string>& /*keywords*/,
                                         std::optional<int64_t> /*internal_date*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<CopyOutcome> copy(std::string_view /*from*/, const std::vector<uint32_t>& /*uids*/,
                                     std::string_view /*to*/) {
    return mail_detail::unavailable();
  }
  virtual Expected<CopyOutcome> move(std::string_view /*from*/, const std::vector<uint32_t>& /*uids*/,
                                     std::string_view /*to*/) {
    return mail_detail::unavailable();
  }
  /** (used octets, quota octets or 0). */
  virtual Expected<std::pair<uint64_t, uint64_t>> usage() { return mail_detail::unavailable(); }
  virtual Expected<std::pair<std::unique_ptr<FakeFolderView>, FolderSnapshot>> open_folder(std::string_view /*name*/) {
    return mail_detail::unavailable();
  }
};

namespace mail_detail {

/**
 * Packs an answer into one heap block (as posternd does), so mresult_free
 * is one std::free: [header][folders][messages][changed][keywords][uids][pairs][chars].
 */
struct ResultBuilder {
  uint32_t flags = 0;
  std::vector<FolderInfo> folders;
  std::vector<MessageInfo> messages;
  std::vector<MessageInfo> changed;
  std::vector<uint32_t> uids;
  std::vector<std::pair<uint32_t, uint32_t>> uid_pairs;
  std::string bytes;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 0;
  uint64_t highest_modseq = 0;
  uint32_t uid = 0;

  static size_t align(size_t n) {
    constexpr size_t a = alignof(std::max_align_t);
    return (n + a - 1) / a * a;
  }

  postern_mresult_t* build() const {
    size_t kw_count = 0;
    size_t chars = bytes.size();
    for (const auto* list : {&messages, &changed})
      for (const auto& m : *list) {
        kw_count += m.keywords.size();
        for (const auto& k : m.keywords) chars += k.size();
      }
    for (const auto& f : folders) chars += f.name.size() + f.special_use.size();
    const size_t off_f = align(sizeof(postern_mresult_t));
    const size_t off_m = align(off_f + folders.size() * sizeof(postern_folder_info_t));
    const size_t off_c = align(off_m + messages.size() * sizeof(postern_message_info_t));
    const size_t off_k = align(off_c + changed.size() * sizeof(postern_message_info_t));
    const size_t off_u = align(off_k + kw_count * sizeof(postern_str_t));
    const size_t off_p = align(off_u + uids.size() * sizeof(uint32_t));
    const size_t off_t = align(off_p + uid_pairs.size() * 2 * sizeof(uint32_t));
    auto* base = static_cast<unsigned char*>(std::malloc(off_t + chars + 1));
    if (base == nullptr) return nullptr;
    std::memset(base, 0, off_t);
    auto* r = reinterpret_cast<postern_mresult_t*>(base);
    r->struct_size = sizeof(postern_mresult_t);
    r->flags = flags;
    r->uidvalidity = uidvalidity;
    r->uidnext = uidnext;
    r->highest_modseq = highest_modseq;
    r->uid = uid;
    char* text = reinterpret_cast<char*>(base + off_t);
    auto put = [&](std::string_view s) {
      postern_str_t out{text, s.size()};
      if (!s.empty()) std::memcpy(text, s.data(), s.size());
      text += s.size();
      return out;
    };
    auto* kw = reinterpret_cast<postern_str_t*>(base + off_k);
    auto put_messages = [&](const std::vector<MessageInfo>& src, size_t off) -> const postern_message_info_t* {
      if (src.empty()) return nullptr;
      auto* dst = reinterpret_cast<postern_message_info_t*>(base + off);
      for (size_t i = 0; i < src.size(); ++i) {
        dst[i].uid = src[i].uid;
        dst[i].flags = src[i].flags;
        dst[i].modseq = src[i].modseq;
        dst[i].internal_date = src[i].internal_date;
        dst[i].saved_date = src[i].saved_date;
        dst[i].size = src[i].size;
        dst[i].keywords = src[i].keywords.empty() ? nullptr : kw;
        dst[i].keyword_count = src[i].keywords.size();
        for (const auto& k : src[i].keywords) *kw++ = put(k);
      }
      return dst;
    };
    if (!folders.empty()) {
      auto* dst = reinterpret_cast<postern_folder_info_t*>(base + off_f);
      for (size_t i = 0; i < folders.size(); ++i) {
        const FolderInfo& f = folders[i];
        dst[i].name = put(f.name);
        dst[i].special_use = put(f.special_use);
        dst[i].subscribed = f.subscribed ? 1 : 0;
        dst[i].has_children = f.has_children ? 1 : 0;
        dst[i].uidvalidity = f.uidvalidity;
        dst[i].uidnext = f.uidnext;
        dst[i].highest_modseq = f.highest_modseq;
        dst[i].messages = f.messages;
        dst[i].unseen = f.unseen;
        dst[i].deleted = f.deleted;
        dst[i].size = f.size;
      }
      r->folders = dst;
      r->folder_count = folders.size();
    }
    r->messages = put_messages(messages, off_m);
    r->message_count = messages.size();
    r->changed = put_messages(changed, off_c);
    r->changed_count = changed.size();
    if (!uids.empty()) {
      auto* dst = reinterpret_cast<uint32_t*>(base + off_u);
      std::copy(uids.begin(), uids.end(), dst);
      r->uids = dst;
      r->uid_count = uids.size();
    }
    if (!uid_pairs.empty()) {
      auto* dst = reinterpret_cast<uint32_t*>(base + off_p);
      for (size_t i = 0; i < uid_pairs.size(); ++i) {
        dst[2 * i] = uid_pairs[i].first;
        dst[2 * i + 1] = uid_pairs[i].second;
      }
      r->uid_pairs = dst;
      r->uid_pair_count = uid_pairs.size();
    }
    const postern_str_t b = put(bytes);
    r->bytes = postern_bytes_t{reinterpret_cast<const uint8_t*>(b.ptr), b.len};
    *text = '\0';
    return r;
  }
};

using ::postern::mail::iequals;

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace mail_detail

/**
 * An in-memory directory and mailbox store with core/mailstore's rules:
 * INBOX in any case; '/' between levels; new accounts get INBOX, Drafts,
 * Sent, Trash, Junk and Archive; UIDs rise and are never reused; one MODSEQ
 * step per operation; UNCHANGEDSINCE; \Deleted and the three expunge modes;
 * COPY/MOVE with COPYUID; views with expunged/added/changed; quota on
 * deliver/append/copy (not move). Logins: the address, `%` for `@`, or the
 * local part of the first account's domain. Thread-safe (one mutex).
 */
class MemoryMailStore : public std::enable_shared_from_this<MemoryMailStore> {
 public:
  /** @param now_seconds the clock for internal and saved dates (default: the system clock). */
  explicit MemoryMailStore(std::function<int64_t()> now_seconds = {}) : now_(std::move(now_seconds)) {
    if (!now_) {
      now_ = [] {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
      };
    }
  }

  /** Adds (or replaces) an account with the default folders. */
  void add_account(std::string address, std::string password, uint32_t services = POSTERN_SERVICE_SMTP |
                                                                                  POSTERN_SERVICE_IMAP |
                                                                                  POSTERN_SERVICE_POP3,
                   uint64_t quota_bytes = 0, std::string real_name = {}) {
    std::lock_guard lock(mu_);
    address = canonical(address);
    if (default_domain_.empty()) default_domain_ = address.substr(address.rfind('@') + 1);
    AccountData& a = accounts_[address];
    a.info = Account{address, std::move(real_name), quota_bytes, services, true};
    a.password = std::move(password);
    if (a.folders.empty()) {
      for (auto [name, use] : {std::pair<const char*, const char*>{"INBOX", ""}, {"Drafts", "\\Drafts"},
                               {"Sent", "\\Sent"}, {"Trash", "\\Trash"}, {"Junk", "\\Junk"}, {"Archive", "\\Archive"}})
        make_folder(a, name, use);
    }
  }
  void set_enabled(std::string_view address, bool enabled) {
    std::lock_guard lock(mu_);
    if (auto* a = find(address)) a->info.enabled = enabled;
  }
  void set_quota(std::string_view address, uint64_t quota_bytes) {
    std::lock_guard lock(mu_);
    if (auto* a = find(address)) a->info.quota_bytes = quota_bytes;
  }
  /** Makes every later store call fail with `code` (e.g. POSTERN_ERR_TEMPORARY); POSTERN_OK clears it. */
  void fail_next_calls(postern_status_t code, std::string detail = "injected failure") {
    std::lock_guard lock(mu_);
    injected_ = code == POSTERN_OK ? std::nullopt : std::optional<MailError>(MailError{code, std::move(detail)});
  }

  /** Delivers as the queue manager does (quota checked). @return the UID, or the error. */
  Expected<uint32_t> deliver(std::string_view account, std::string_view message, std::string_view folder = "INBOX") {
    std::lock_guard lock(mu_);
    AccountData* a = find(account);
    if (a == nullptr) return MailError{POSTERN_ERR_NOT_FOUND, "no such account"};
    auto r = add_message(*a, folder, message, 0, {}, std::nullopt, true);
    if (!r) return r.error();
    return r->uid;
  }

  /** The UIDs in a folder now (for assertions). */
  std::vector<uint32_t> uids(std::string_view account, std::string_view folder) const {
    std::lock_guard lock(mu_);
    std::vector<uint32_t> out;
    if (const AccountData* a = find(account))
      if (const Folder* f = folder_of(*a, folder))
        for (const auto& [uid, m] : f->messages) out.push_back(uid);
    return out;
  }
  /** A message's state now (for assertions). */
  std::optional<MessageInfo> message(std::string_view account, std::string_view folder, uint32_t uid) const {
    std::lock_guard lock(mu_);
    if (const AccountData* a = find(account))
      if (const Folder* f = folder_of(*a, folder))
        if (auto it = f->messages.find(uid); it != f->messages.end()) return it->second.info;
    return std::nullopt;
  }
  std::optional<std::string> message_bytes(std::string_view account, std::string_view folder, uint32_t uid) const {
    std::lock_guard lock(mu_);
    if (const AccountData* a = find(account))
      if (const Folder* f = folder_of(*a, folder))
        if (auto it = f->messages.find(uid); it != f->messages.end()) return it->second.bytes;
    return std::nullopt;
  }
  uint64_t usage_bytes(std::string_view account) const {
    std::lock_guard lock(mu_);
    const AccountData* a = find(account);
    return a != nullptr ? a->usage : 0;
  }

  // --- what FakeHost calls -----------------------------------------------------

  Expected<Account> authenticate(std::string_view login, std::string_view password, uint32_t service) {
    std::lock_guard lock(mu_);
    const AccountData* a = find(login);
    // One answer for every refusal, as posternd: no account probing.
    if (a == nullptr || a->password.empty() || a->password != password || !a->info.enabled ||
        (a->info.services & service) == 0)
      return MailError{POSTERN_ERR_NOT_FOUND, "authentication failed"};
    return a->info;
  }
  Expected<Account> account(std::string_view address) {
    std::lock_guard lock(mu_);
    const AccountData* a = find(address);
    if (a == nullptr) return MailError{POSTERN_ERR_NOT_FOUND, "no such account"};
    return a->info;
  }
  Expected<std::shared_ptr<FakeMailbox>> open(std::string_view address) {
    std::lock_guard lock(mu_);
    const AccountData* a = find(address);
    if (a == nullptr) return MailError{POSTERN_ERR_NOT_FOUND, "no such account"};
    return std::shared_ptr<FakeMailbox>(std::make_shared<Box>(shared_from_this(), a->info.address));
  }

 private:
  struct Msg {
    MessageInfo info;
    std::string bytes;
  };
  struct Folder {
    std::string name;
    std::string special_use;
    bool subscribed = true;
    uint32_t uidvalidity = 0;
    uint32_t uidnext = 1;
    uint64_t highest_modseq = 1;
    uint32_t first_recent = 1;
    std::map<uint32_t, Msg> messages;
    std::map<uint32_t, uint64_t> expunged;  // uid -> modseq of the expunge
  };
  struct AccountData {
    Account info;
    std::string password;
    std::map<std::string, Folder> folders;  // key: name ("INBOX" canonical)
    uint64_t usage = 0;
    uint32_t last_uidvalidity = 0;
  };

  std::string canonical(std::string_view login) const {
    std::string s(login);
    if (auto p = s.find('%'); p != std::string::npos && s.find('@') == std::string::npos) s[p] = '@';
    if (s.find('@') == std::string::npos && !default_domain_.empty()) s += "@" + default_domain_;
    const auto at = s.rfind('@');
    if (at != std::string::npos) s = s.substr(0, at + 1) + mail_detail::lower(s.substr(at + 1));
    return s;
  }
  AccountData* find(std::string_view login) {
    auto it = accounts_.find(canonical(login));
    if (it == accounts_.end()) {
      for (auto& [k, a] : accounts_)
        if (mail_detail::iequals(k, canonical(login))) return &a;
      return nullptr;
    }
    return &it->second;
  }
  const AccountData* find(std::string_view login) const { return const_cast<MemoryMailStore*>(this)->find(login); }

  static std::optional<std::string> normalize(std::string_view name, std::string* why) {
    if (name.empty()) return *why = "empty folder name", std::nullopt;
    if (mail_detail::iequals(name, "INBOX")) return std::string("INBOX");
    if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string_view::npos)
      return *why = "empty level in folder name", std::nullopt;
    for (char c : name)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '*' || c == '%')
        return *why = "folder name contains a forbidden character", std::nullopt;
    std::string out(name);
    if (out.size() > 6 && mail_detail::iequals(out.substr(0, 6), "INBOX/")) out.replace(0, 5, "INBOX");
    return out;
  }
  static bool valid_keyword(std::string_view k) {
    if (k.empty() || k.size() > 128) return false;
    for (char c : k) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f || std::strchr("(){%*\"\\]", c) != nullptr) return false;
    }
    return true;
  }

  Folder& make_folder(AccountData& a, const std::string& name, std::string_view use) {
    Folder f;
    f.name = name;
    f.special_use = std::string(use);
    f.uidvalidity = std::max<uint32_t>(static_cast<uint32_t>(now_()), a.last_uidvalidity + 1);
    a.last_uidvalidity = f.uidvalidity;
    return a.folders.emplace(name, std::move(f)).first->second;
  }
  static Folder* folder_of(AccountData& a, std::string_view name) {
    std::string why;
    auto n = normalize(name, &why);
    if (!n) return nullptr;
    auto it = a.folders.find(*n);
    return it == a.folders.end() ? nullptr : &it->second;
  }
  static const Folder* folder_of(const AccountData& a, std::string_view name) {
    return folder_of(const_cast<AccountData&>(a), name);
  }
  static bool has_children(const AccountData& a, const std::string& name) {
    const std::string prefix = name + "/";
    return std::any_of(a.folders.begin(), a.folders.end(), [&](const auto& e) { return e.first.rfind(prefix, 0) == 0; });
  }
  static FolderInfo info_of(const AccountData& a, const Folder& f) {
    FolderInfo i;
    i.name = f.name;
    i.special_use = f.special_use;
    i.subscribed = f.subscribed;
    i.has_children = has_children(a, f.name);
    i.uidvalidity = f.uidvalidity;
    i.uidnext = f.uidnext;
    i.highest_modseq = f.highest_modseq;
    for (const auto& [uid, m] : f.messages) {
      ++i.messages;
      if ((m.info.flags & POSTERN_FLAG_SEEN) == 0) ++i.unseen;
      if ((m.info.flags & POSTERN_FLAG_DELETED) != 0) ++i.deleted;
      i.size += m.info.size;
    }
    return i;
  }
  static MailError no_folder(std::string_view name) {
    return MailError{POSTERN_ERR_NOT_FOUND, "no folder named " + std::string(name)};
  }

  Expected<MessageInfo> add_message(AccountData& a, std::string_view folder, std::string_view bytes, uint32_t flags,
                                    const std::vector<std::string>& keywords, std::optional<int64_t> date,
                                    bool deliver) {
    Folder* f = folder_of(a, folder);
    if (f == nullptr && deliver) f = folder_of(a, "INBOX");  // as MailStore::deliver
    if (f == nullptr) return no_folder(folder);
    for (const auto& k : keywords)
      if (!valid_keyword(k)) return MailError{POSTERN_ERR_INVALID, "invalid keyword " + k};
    if (a.info.quota_bytes != 0 && a.usage + bytes.size() > a.info.quota_bytes)
      return MailError{POSTERN_ERR_OVER_QUOTA, "mailbox is over quota"};
    Msg m;
    m.info.uid = f->uidnext++;
    m.info.flags = flags;
    for (const auto& k : keywords) add_keyword(m.info.keywords, k);
    m.info.modseq = ++f->highest_modseq;
    m.info.saved_date = now_();
    m.info.internal_date = date.value_or(m.info.saved_date);
    m.info.size = bytes.size();
    m.bytes = std::string(bytes);
    a.usage += bytes.size();
    MessageInfo out = m.info;
    f->messages.emplace(out.uid, std::move(m));
    return out;
  }
  static void add_keyword(std::vector<std::string>& list, const std::string& k) {
    if (std::none_of(list.begin(), list.end(), [&](const std::string& x) { return mail_detail::iequals(x, k); }))
      list.push_back(k);
  }

  /** The mailbox of one account; every call locks the store. */
  class Box : public FakeMailbox {
   public:
    Box(std::shared_ptr<MemoryMailStore> s, std::string account) : s_(std::move(s)), account_(std::move(account)) {}

    template <class F>
    auto locked(F f) -> decltype(f(std::declval<AccountData&>())) {
      std::lock_guard lock(s_->mu_);
      if (s_->injected_) return *s_->injected_;
      AccountData* a = s_->find(account_);
      if (a == nullptr) return MailError{POSTERN_ERR_NOT_FOUND, "the account was removed"};
      return f(*a);
    }

    Expected<std::vector<FolderInfo>> list_folders() override {
      return locked([&](AccountData& a) -> Expected<std::vector<FolderInfo>> {
        std::vector<FolderInfo> out;
        out.push_back(info_of(a, a.folders.at("INBOX")));
        for (const auto& [name, f] : a.folders)
          if (name != "INBOX") out.push_back(info_of(a, f));
        return out;
      });
    }
    Expected<FolderInfo> folder_status(std::string_view name) override {
      return locked([&](AccountData& a) -> Expected<FolderInfo> {
        const Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        return info_of(a, *f);
      });
    }
    Expected<Done> create_folder(std::string_view name, std::string_view use) override {
      return locked([&](AccountData& a) -> Expected<Done> {
        std::string why;
        auto n = normalize(name, &why);
        if (!n) return MailError{POSTERN_ERR_INVALID, why};
        if (a.folders.count(*n)) return MailError{POSTERN_ERR_EXISTS, "folder " + *n + " exists"};
        for (size_t p = n->find('/'); p != std::string::npos; p = n->find('/', p + 1))
          if (!a.folders.count(n->substr(0, p))) s_->make_folder(a, n->substr(0, p), "");
        s_->make_folder(a, *n, use);
        return Done{};
      });
    }
    Expected<Done> delete_folder(std::string_view name) override {
      return locked([&](AccountData& a) -> Expected<Done> {
        Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        if (f->name == "INBOX") return MailError{POSTERN_ERR_FORBIDDEN, "INBOX cannot be deleted"};
        if (has_children(a, f->name)) return MailError{POSTERN_ERR_HAS_CHILDREN, "folder has child folders"};
        for (const auto& [uid, m] : f->messages) a.usage -= m.info.size;
        a.folders.erase(f->name);
        return Done{};
      });
    }
    Expected<Done> rename_folder(std::string_view from, std::string_view to) override {
      return locked([&](AccountData& a) -> Expected<Done> {
        Folder* f = folder_of(a, from);
        if (f == nullptr) return no_folder(from);
        std::string why;
        auto n = normalize(to, &why);
        if (!n) return MailError{POSTERN_ERR_INVALID, why};
        if (a.folders.count(*n)) return MailError{POSTERN_ERR_EXISTS, "folder " + *n + " exists"};
        if (f->name == "INBOX") {
          // RFC 9051 §6.3.6: the messages move to the new folder; INBOX stays, empty.
          Folder& dst = s_->make_folder(a, *n, "");
          Folder& inbox = a.folders.at("INBOX");
          for (auto& [uid, m] : inbox.messages) {
            Msg copy = m;
            copy.info.uid = dst.uidnext++;
            copy.info.modseq = dst.highest_modseq + 1;
            dst.messages.emplace(copy.info.uid, std::move(copy));
            inbox.expunged[uid] = inbox.highest_modseq + 1;
          }
          if (!inbox.messages.empty()) {
            ++dst.highest_modseq;
            ++inbox.highest_modseq;
          }
          inbox.messages.clear();
          return Done{};
        }
        const std::string old = f->name;
        std::vector<std::string> names;
        for (const auto& [k, v] : a.folders)
          if (k == old || k.rfind(old + "/", 0) == 0) names.push_back(k);
        for (const auto& k : names) {
          auto node = a.folders.extract(k);
          node.key() = *n + k.substr(old.size());
          node.mapped().name = node.key();
          a.folders.insert(std::move(node));
        }
        return Done{};
      });
    }
    Expected<Done> subscribe(std::string_view name, bool subscribed) override {
      return locked([&](AccountData& a) -> Expected<Done> {
        Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        f->subscribed = subscribed;
        return Done{};
      });
    }
    Expected<uint32_t> claim_recent(std::string_view name) override {
      return locked([&](AccountData& a) -> Expected<uint32_t> {
        Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        const uint32_t first = f->first_recent;
        f->first_recent = f->uidnext;
        return first;
      });
    }
    Expected<FolderChanges> changes_since(std::string_view name, uint32_t uidvalidity, uint64_t since) override {
      return locked([&](AccountData& a) -> Expected<FolderChanges> {
        const Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        if (f->uidvalidity != uidvalidity) return MailError{POSTERN_ERR_STALE, "UIDVALIDITY changed"};
        FolderChanges c;
        c.uidvalidity = f->uidvalidity;
        c.uidnext = f->uidnext;
        c.highest_modseq = f->highest_modseq;
        for (const auto& [uid, m] : f->messages)
          if (m.info.modseq > since) c.changed.push_back(m.info);
        for (const auto& [uid, modseq] : f->expunged)
          if (modseq > since) c.expunged.push_back(uid);
        return c;
      });
    }
    Expected<std::string> read_message(std::string_view folder, uint32_t uid) override {
      return locked([&](AccountData& a) -> Expected<std::string> {
        const Folder* f = folder_of(a, folder);
        if (f == nullptr) return no_folder(folder);
        auto it = f->messages.find(uid);
        if (it == f->messages.end()) return MailError{POSTERN_ERR_NOT_FOUND, "no such message"};
        return it->second.bytes;
      });
    }
    Expected<StoreOutcome> store_flags(std::string_view folder, const std::vector<uint32_t>& uids,
                                       postern_flag_op_t op, uint32_t flags, const std::vector<std::string>& keywords,
                                       std::optional<uint64_t> unchanged_since) override {
      return locked([&](AccountData& a) -> Expected<StoreOutcome> {
        Folder* f = folder_of(a, folder);
        if (f == nullptr) return no_folder(folder);
        for (const auto& k : keywords)
          if (!valid_keyword(k)) return MailError{POSTERN_ERR_INVALID, "invalid keyword " + k};
        StoreOutcome out;
        const uint64_t modseq = f->highest_modseq + 1;
        bool changed_any = false;
        std::set<uint32_t> wanted(uids.begin(), uids.end());
        for (uint32_t uid : wanted) {
          auto it = f->messages.find(uid);
          if (it == f->messages.end()) continue;
          MessageInfo& m = it->second.info;
          if (unchanged_since && m.modseq > *unchanged_since) {
            out.modified.push_back(uid);  // left alone and not in `messages`, as core/mailstore
            continue;
          }
          uint32_t nf = m.flags;
          std::vector<std::string> nk = m.keywords;
          if (op == POSTERN_FLAGS_REPLACE) {
            nf = flags;
            nk.clear();
            for (const auto& k : keywords) add_keyword(nk, k);
          } else if (op == POSTERN_FLAGS_ADD) {
            nf |= flags;
            for (const auto& k : keywords) add_keyword(nk, k);
          } else {
            nf &= ~flags;
            std::erase_if(nk, [&](const std::string& x) {
              return std::any_of(keywords.begin(), keywords.end(),
                                  [&](const std::string& k) { return mail_detail::iequals(k, x); });
            });
          }
          if (nf != m.flags || nk != m.keywords) {
            m.flags = nf;
            m.keywords = std::move(nk);
            m.modseq = modseq;
            changed_any = true;
          }
          out.messages.push_back(m);
        }
        if (changed_any) f->highest_modseq = modseq;
        out.highest_modseq = f->highest_modseq;
        return out;
      });
    }
    Expected<std::vector<uint32_t>> expunge(std::string_view folder, const std::vector<uint32_t>& uids,
                                            postern_expunge_mode_t mode) override {
      return locked([&](AccountData& a) -> Expected<std::vector<uint32_t>> {
        Folder* f = folder_of(a, folder);
        if (f == nullptr) return no_folder(folder);
        std::vector<uint32_t> gone;
        if (mode == POSTERN_EXPUNGE_ALL_DELETED) {
          for (const auto& [uid, m] : f->messages)
            if (m.info.flags & POSTERN_FLAG_DELETED) gone.push_back(uid);
        } else {
          for (uint32_t uid : std::set<uint32_t>(uids.begin(), uids.end())) {
            auto it = f->messages.find(uid);
            if (it == f->messages.end()) continue;
            if (mode == POSTERN_EXPUNGE_LISTED_DELETED && !(it->second.info.flags & POSTERN_FLAG_DELETED)) continue;
            gone.push_back(uid);
          }
        }
        if (gone.empty()) return gone;
        const uint64_t modseq = ++f->highest_modseq;
        for (uint32_t uid : gone) {
          a.usage -= f->messages.at(uid).info.size;
          f->messages.erase(uid);
          f->expunged[uid] = modseq;
        }
        return gone;
      });
    }
    Expected<AppendOutcome> append(std::string_view folder, std::string_view message, uint32_t flags,
                                   const std::vector<std::string>& keywords,
                                   std::optional<int64_t> internal_date) override {
      return locked([&](AccountData& a) -> Expected<AppendOutcome> {
        auto m = s_->add_message(a, folder, message, flags, keywords, internal_date, false);
        if (!m) return m.error();
        return AppendOutcome{folder_of(a, folder)->uidvalidity, m->uid};
      });
    }
    Expected<CopyOutcome> copy(std::string_view from, const std::vector<uint32_t>& uids,
                               std::string_view to) override {
      return transfer(from, uids, to, false);
    }
    Expected<CopyOutcome> move(std::string_view from, const std::vector<uint32_t>& uids,
                               std::string_view to) override {
      return transfer(from, uids, to, true);
    }
    Expected<std::pair<uint64_t, uint64_t>> usage() override {
      return locked([&](AccountData& a) -> Expected<std::pair<uint64_t, uint64_t>> {
        return std::make_pair(a.usage, a.info.quota_bytes);
      });
    }
    Expected<std::pair<std::unique_ptr<FakeFolderView>, FolderSnapshot>> open_folder(std::string_view name) override {
      using R = Expected<std::pair<std::unique_ptr<FakeFolderView>, FolderSnapshot>>;
      return locked([&](AccountData& a) -> R {
        const Folder* f = folder_of(a, name);
        if (f == nullptr) return no_folder(name);
        FolderSnapshot snap;
        snap.folder = info_of(a, *f);
        snap.uidvalidity = f->uidvalidity;
        snap.uidnext = f->uidnext;
        snap.highest_modseq = f->highest_modseq;
        for (const auto& [uid, m] : f->messages) snap.messages.push_back(m.info);
        auto view = std::make_unique<View>(s_, account_, snap);
        return std::make_pair(std::unique_ptr<FakeFolderView>(std::move(view)), std::move(snap));
      });
    }

   private:
    Expected<CopyOutcome> transfer(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to,
                                   bool move) {
      return locked([&](AccountData& a) -> Expected<CopyOutcome> {
        Folder* src = folder_of(a, from);
        if (src == nullptr) return no_folder(from);
        Folder* dst = folder_of(a, to);
        if (dst == nullptr) return no_folder(to);
        std::vector<uint32_t> list;
        uint64_t bytes = 0;
        for (uint32_t uid : std::set<uint32_t>(uids.begin(), uids.end()))
          if (auto it = src->messages.find(uid); it != src->messages.end()) {
            list.push_back(uid);
            bytes += it->second.info.size;
          }
        if (!move && a.info.quota_bytes != 0 && a.usage + bytes > a.info.quota_bytes)
          return MailError{POSTERN_ERR_OVER_QUOTA, "mailbox is over quota"};
        CopyOutcome out;
        out.uidvalidity = dst->uidvalidity;
        if (list.empty()) return out;
        const uint64_t dst_modseq = ++dst->highest_modseq;
        const uint64_t src_modseq = move ? ++src->highest_modseq : 0;
        for (uint32_t uid : list) {
          Msg m = src->messages.at(uid);
          m.info.uid = dst->uidnext++;
          m.info.modseq = dst_modseq;
          m.info.saved_date = s_->now_();
          out.uids.emplace_back(uid, m.info.uid);
          if (!move) a.usage += m.info.size;
          dst->messages.emplace(m.info.uid, std::move(m));
          if (move) {
            src->messages.erase(uid);
            src->expunged[uid] = src_modseq;
          }
        }
        return out;
      });
    }

    std::shared_ptr<MemoryMailStore> s_;
    std::string account_;
  };

  /** A view: compares its snapshot with the folder (found by UIDVALIDITY, so renames keep it). */
  class View : public FakeFolderView {
   public:
    View(std::shared_ptr<MemoryMailStore> s, std::string account, const FolderSnapshot& snap)
        : s_(std::move(s)), account_(std::move(account)), uidvalidity_(snap.uidvalidity), uidnext_(snap.uidnext),
          highest_modseq_(snap.highest_modseq), messages_(snap.messages) {}

    Expected<ViewUpdate> refresh() override {
      std::lock_guard lock(s_->mu_);
      if (s_->injected_) return *s_->injected_;
      ViewUpdate up;
      up.uidvalidity = uidvalidity_;
      const Folder* f = nullptr;
      if (AccountData* a = s_->find(account_))
        for (const auto& [name, folder] : a->folders)
          if (folder.uidvalidity == uidvalidity_) f = &folder;
      if (f == nullptr) {
        up.gone = true;
        for (const auto& m : messages_) up.expunged.push_back(m.uid);
        messages_.clear();
        up.uidnext = uidnext_;
        up.highest_modseq = highest_modseq_;
        return up;
      }
      std::vector<MessageInfo> kept;
      for (auto& m : messages_) {
        auto it = f->messages.find(m.uid);
        if (it == f->messages.end()) {
          up.expunged.push_back(m.uid);
          continue;
        }
        if (it->second.info.modseq > highest_modseq_) {
          m = it->second.info;
          up.changed.push_back(m);
        }
        kept.push_back(m);
      }
      messages_ = std::move(kept);
      for (auto it = f->messages.lower_bound(uidnext_); it != f->messages.end(); ++it) {
        up.added.push_back(it->second.info);
        messages_.push_back(it->second.info);
      }
      uidnext_ = f->uidnext;
      highest_modseq_ = f->highest_modseq;
      up.uidnext = uidnext_;
      up.highest_modseq = highest_modseq_;
      return up;
    }

   private:
    std::shared_ptr<MemoryMailStore> s_;
    std::string account_;
    uint32_t uidvalidity_;
    uint32_t uidnext_;
    uint64_t highest_modseq_;
    std::vector<MessageInfo> messages_;
  };

  mutable std::mutex mu_;
  std::function<int64_t()> now_;
  std::map<std::string, AccountData> accounts_;
  std::string default_domain_;
  std::optional<MailError> injected_;
};

}  // namespace postern::sdk::testing
