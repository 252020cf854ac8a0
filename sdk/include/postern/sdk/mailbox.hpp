#pragma once
/**
 * @file mailbox.hpp
 * The directory and the mailbox store as a service plugin sees them (ABI 1.2).
 * Every call here BLOCKS (password hashing, file and SQLite I/O): run it in
 * Host::post_work() and answer the client through Stream::post().
 *
 *   host.post_work([host, stream, login, pw] {
 *     auto acct = sdk::authenticate(host, login, pw, POSTERN_SERVICE_POP3);
 *     stream.post([acct] { ... });
 *   });
 *
 * Folder names are UTF-8 with '/' between levels; "INBOX" names the inbox.
 */

#include <postern/sdk/host.hpp>
#include <postern/sdk/types.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::sdk {

/** Why a directory or mailbox call failed. */
struct MailError {
  postern_status_t code = POSTERN_ERR_FAILED;  // NOT_FOUND, EXISTS, INVALID, OVER_QUOTA, TEMPORARY, ...
  std::string detail;                          // one line
};

/** A value or a MailError. */
template <class T>
class Expected {
 public:
  Expected(T value) : value_(std::move(value)) {}           // NOLINT(google-explicit-constructor)
  Expected(MailError error) : error_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  const MailError& error() const { return error_; }

 private:
  std::optional<T> value_;
  MailError error_;
};

/** Success or a MailError. */
struct Done {};

struct Account {
  std::string address;  // canonical local@domain
  std::string real_name;
  uint64_t quota_bytes = 0;  // 0 = unlimited
  uint32_t services = 0;     // POSTERN_SERVICE_*
  bool enabled = true;
};

struct FolderInfo {
  std::string name;
  std::string special_use;  // "\\Sent" or empty
  bool subscribed = false;
  bool has_children = false;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  uint32_t messages = 0;
  uint32_t unseen = 0;
  uint32_t deleted = 0;
  uint64_t size = 0;
};

struct MessageInfo {
  uint32_t uid = 0;
  uint32_t flags = 0;  // POSTERN_FLAG_*
  uint64_t modseq = 0;
  int64_t internal_date = 0;
  int64_t saved_date = 0;
  uint64_t size = 0;
  std::vector<std::string> keywords;
};

/** SELECT / open: the whole folder. Message sequence number = index + 1. */
struct FolderSnapshot {
  FolderInfo folder;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  std::vector<MessageInfo> messages;
};

/** view refresh: what to report (EXPUNGE, EXISTS, FETCH FLAGS). */
struct ViewUpdate {
  std::vector<uint32_t> expunged;  // UIDs, ascending as they were in the view
  std::vector<MessageInfo> added;  // at the end of the view
  std::vector<MessageInfo> changed;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  bool gone = false;  // the folder was deleted or re-created
};

struct FolderChanges {
  std::vector<MessageInfo> changed;  // new or changed since, ascending UID
  std::vector<uint32_t> expunged;
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 0;
  bool expunged_incomplete = false;
};

struct StoreOutcome {
  std::vector<MessageInfo> messages;  // state after the store
  std::vector<uint32_t> modified;     // RFC 7162 MODIFIED
  uint64_t highest_modseq = 0;
};

struct AppendOutcome {
  uint32_t uidvalidity = 0;
  uint32_t uid = 0;
};

struct CopyOutcome {
  uint32_t uidvalidity = 0;                          // of the target
  std::vector<std::pair<uint32_t, uint32_t>> uids;  // (source, new), ascending source
};

namespace detail {

inline MailError last_error(const Host& host, postern_status_t code) {
  std::string detail;
  if (POSTERN_SDK_API_HAS(host.api(), last_error)) detail = std::string(to_string_view(host.api()->last_error(host.handle())));
  if (detail.empty()) detail = "mailbox store error";
  return MailError{code, std::move(detail)};
}

inline Account copy_account(const postern_account_info_t& a) {
  return Account{std::string(to_string_view(a.address)), std::string(to_string_view(a.real_name)), a.quota_bytes,
                 a.services, a.enabled != 0};
}

inline FolderInfo copy_folder(const postern_folder_info_t& f) {
  FolderInfo out;
  out.name = std::string(to_string_view(f.name));
  out.special_use = std::string(to_string_view(f.special_use));
  out.subscribed = f.subscribed != 0;
  out.has_children = f.has_children != 0;
  out.uidvalidity = f.uidvalidity;
  out.uidnext = f.uidnext;
  out.highest_modseq = f.highest_modseq;
  out.messages = f.messages;
  out.unseen = f.unseen;
  out.deleted = f.deleted;
  out.size = f.size;
  return out;
}

inline MessageInfo copy_message(const postern_message_info_t& m) {
  MessageInfo out;
  out.uid = m.uid;
  out.flags = m.flags;
  out.modseq = m.modseq;
  out.internal_date = m.internal_date;
  out.saved_date = m.saved_date;
  out.size = m.size;
  out.keywords.reserve(m.keyword_count);
  for (size_t i = 0; i < m.keyword_count; ++i) out.keywords.emplace_back(to_string_view(m.keywords[i]));
  return out;
}

inline std::vector<MessageInfo> copy_messages(const postern_message_info_t* m, size_t n) {
  std::vector<MessageInfo> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(copy_message(m[i]));
  return out;
}

/** Frees a postern_mresult_t on scope exit. */
class ResultGuard {
 public:
  explicit ResultGuard(const postern_host_api_v1_t* api) : api_(api) {}
  ~ResultGuard() {
    if (r_ != nullptr) api_->mresult_free(r_);
  }
  ResultGuard(const ResultGuard&) = delete;
  ResultGuard& operator=(const ResultGuard&) = delete;
  postern_mresult_t** out() { return &r_; }
  const postern_mresult_t& operator*() const { return *r_; }
  const postern_mresult_t* operator->() const { return r_; }
  bool valid() const { return r_ != nullptr; }

 private:
  const postern_host_api_v1_t* api_;
  postern_mresult_t* r_ = nullptr;
};

inline std::vector<postern_str_t> abi_strings(const std::vector<std::string>& v) {
  std::vector<postern_str_t> out;
  out.reserve(v.size());
  for (const auto& s : v) out.push_back(to_abi(s));
  return out;
}

}  // namespace detail

/** Whether the host offers the directory and mailbox API (ABI 1.2). */
inline bool has_mailbox_api(const Host& host) { return POSTERN_SDK_API_HAS(host.api(), view_release); }

/** Checks a login and password for `service` (POSTERN_SERVICE_*). Blocks. NOT_FOUND = refused. */
inline Expected<Account> authenticate(const Host& host, std::string_view login, std::string_view password,
                                      uint32_t service) {
  if (!has_mailbox_api(host)) return MailError{POSTERN_ERR_UNAVAILABLE, "the host has no directory API"};
  postern_account_info_t info{};
  info.struct_size = sizeof(info);
  const auto st = host.api()->dir_authenticate(host.handle(), to_abi(login), to_abi(password), service, &info);
  if (st != POSTERN_OK) return detail::last_error(host, st);
  return detail::copy_account(info);
}

/** Looks an account up without a password. Blocks briefly. */
inline Expected<Account> lookup_account(const Host& host, std::string_view address) {
  if (!has_mailbox_api(host)) return MailError{POSTERN_ERR_UNAVAILABLE, "the host has no directory API"};
  postern_account_info_t info{};
  info.struct_size = sizeof(info);
  const auto st = host.api()->dir_account(host.handle(), to_abi(address), &info);
  if (st != POSTERN_OK) return detail::last_error(host, st);
  return detail::copy_account(info);
}

class Mailbox;

/** One session's view of a folder (see postern_folder_view_t). Move-only. */
class FolderView {
 public:
  FolderView() = default;
  FolderView(FolderView&& o) noexcept : host_(o.host_), v_(std::exchange(o.v_, nullptr)) {}
  FolderView& operator=(FolderView&& o) noexcept {
    if (this != &o) {
      reset();
      host_ = o.host_;
      v_ = std::exchange(o.v_, nullptr);
    }
    return *this;
  }
  FolderView(const FolderView&) = delete;
  FolderView& operator=(const FolderView&) = delete;
  ~FolderView() { reset(); }
  bool valid() const { return v_ != nullptr; }
  void reset() {
    if (v_ != nullptr) host_->api()->view_release(v_);
    v_ = nullptr;
  }

  /** Brings the view up to date. Blocks. */
  Expected<ViewUpdate> refresh() {
    detail::ResultGuard r(host_->api());
    const auto st = host_->api()->view_refresh(v_, r.out());
    if (st != POSTERN_OK) return detail::last_error(*host_, st);
    ViewUpdate u;
    u.expunged.assign(r->uids, r->uids + r->uid_count);
    u.added = detail::copy_messages(r->messages, r->message_count);
    u.changed = detail::copy_messages(r->changed, r->changed_count);
    u.uidvalidity = r->uidvalidity;
    u.uidnext = r->uidnext;
    u.highest_modseq = r->highest_modseq;
    u.gone = (r->flags & POSTERN_MRESULT_GONE) != 0;
    return u;
  }

 private:
  friend class Mailbox;
  FolderView(const Host& host, postern_folder_view_t* v) : host_(host), v_(v) {}
  std::optional<Host> host_;
  postern_folder_view_t* v_ = nullptr;
};

/** One account's mailbox. Move-only; every member blocks. */
class Mailbox {
 public:
  /** Opens `account` (canonical address). */
  static Expected<Mailbox> open(const Host& host, std::string_view account) {
    if (!has_mailbox_api(host)) return MailError{POSTERN_ERR_UNAVAILABLE, "the host has no mailbox API"};
    postern_mailbox_t* mb = nullptr;
    const auto st = host.api()->mbox_open(host.handle(), to_abi(account), &mb);
    if (st != POSTERN_OK) return detail::last_error(host, st);
    return Mailbox(host, mb);
  }

  Mailbox(Mailbox&& o) noexcept : host_(o.host_), mb_(std::exchange(o.mb_, nullptr)) {}
  Mailbox& operator=(Mailbox&& o) noexcept {
    if (this != &o) {
      reset();
      host_ = o.host_;
      mb_ = std::exchange(o.mb_, nullptr);
    }
    return *this;
  }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  ~Mailbox() { reset(); }
  void reset() {
    if (mb_ != nullptr) host_.api()->mbox_release(mb_);
    mb_ = nullptr;
  }

  Expected<std::vector<FolderInfo>> list_folders() {
    detail::ResultGuard r(api());
    if (auto st = api()->mbox_list_folders(mb_, r.out()); st != POSTERN_OK) return fail(st);
    std::vector<FolderInfo> out;
    for (size_t i = 0; i < r->folder_count; ++i) out.push_back(detail::copy_folder(r->folders[i]));
    return out;
  }
  Expected<FolderInfo> folder_status(std::string_view name) {
    detail::ResultGuard r(api());
    if (auto st = api()->mbox_folder_status(mb_, to_abi(name), r.out()); st != POSTERN_OK) return fail(st);
    if (r->folder_count == 0) return MailError{POSTERN_ERR_NOT_FOUND, "no such folder"};
    return detail::copy_folder(r->folders[0]);
  }
  Expected<Done> create_folder(std::string_view name, std::string_view special_use = {}) {
    return done(api()->mbox_create_folder(mb_, to_abi(name), to_abi(special_use)));
  }
  Expected<Done> delete_folder(std::string_view name) { return done(api()->mbox_delete_folder(mb_, to_abi(name))); }
  Expected<Done> rename_folder(std::string_view from, std::string_view to) {
    return done(api()->mbox_rename_folder(mb_, to_abi(from), to_abi(to)));
  }
  Expected<Done> subscribe(std::string_view name, bool subscribed) {
    return done(api()->mbox_subscribe(mb_, to_abi(name), subscribed ? 1 : 0));
  }
  /** The first UID that is \Recent to this session (RFC 3501 §2.3.2). */
  Expected<uint32_t> claim_recent(std::string_view name) {
    uint32_t first = 0;
    if (auto st = api()->mbox_claim_recent(mb_, to_abi(name), &first); st != POSTERN_OK) return fail(st);
    return first;
  }
  Expected<FolderChanges> changes_since(std::string_view name, uint32_t uidvalidity, uint64_t since) {
    detail::ResultGuard r(api());
    if (auto st = api()->mbox_changes_since(mb_, to_abi(name), uidvalidity, since, r.out()); st != POSTERN_OK)
      return fail(st);
    FolderChanges c;
    c.changed = detail::copy_messages(r->messages, r->message_count);
    c.expunged.assign(r->uids, r->uids + r->uid_count);
    c.uidvalidity = r->uidvalidity;
    c.uidnext = r->uidnext;
    c.highest_modseq = r->highest_modseq;
    c.expunged_incomplete = (r->flags & POSTERN_MRESULT_EXPUNGED_INCOMPLETE) != 0;
    return c;
  }
  /** The message as stored (CRLF). NOT_FOUND when expunged meanwhile. */
  Expected<std::string> read_message(std::string_view folder, uint32_t uid) {
    detail::ResultGuard r(api());
    if (auto st = api()->mbox_read_message(mb_, to_abi(folder), uid, r.out()); st != POSTERN_OK) return fail(st);
    return std::string(reinterpret_cast<const char*>(r->bytes.ptr), r->bytes.len);
  }
  Expected<StoreOutcome> store_flags(std::string_view folder, const std::vector<uint32_t>& uids, postern_flag_op_t op,
                                     uint32_t flags, const std::vector<std::string>& keywords,
                                     std::optional<uint64_t> unchanged_since = std::nullopt) {
    detail::ResultGuard r(api());
    auto kw = detail::abi_strings(keywords);
    if (auto st = api()->mbox_store_flags(mb_, to_abi(folder), uids.data(), uids.size(), op, flags, kw.data(),
                                          kw.size(), unchanged_since ? 1 : 0, unchanged_since.value_or(0), r.out());
        st != POSTERN_OK)
      return fail(st);
    StoreOutcome o;
    o.messages = detail::copy_messages(r->messages, r->message_count);
    o.modified.assign(r->uids, r->uids + r->uid_count);
    o.highest_modseq = r->highest_modseq;
    return o;
  }
  /** @return the UIDs removed, ascending. */
  Expected<std::vector<uint32_t>> expunge(std::string_view folder, const std::vector<uint32_t>& uids,
                                          postern_expunge_mode_t mode) {
    detail::ResultGuard r(api());
    if (auto st = api()->mbox_expunge(mb_, to_abi(folder), uids.data(), uids.size(), mode, r.out()); st != POSTERN_OK)
      return fail(st);
    return std::vector<uint32_t>(r->uids, r->uids + r->uid_count);
  }
  /** @param internal_date seconds since the epoch; nullopt = now. */
  Expected<AppendOutcome> append(std::string_view folder, std::string_view message, uint32_t flags,
                                 const std::vector<std::string>& keywords, std::optional<int64_t> internal_date) {
    detail::ResultGuard r(api());
    auto kw = detail::abi_strings(keywords);
    const postern_bytes_t bytes{reinterpret_cast<const uint8_t*>(message.data()), message.size()};
    if (auto st = api()->mbox_append(mb_, to_abi(folder), bytes, flags, kw.data(), kw.size(),
                                     internal_date.value_or(-1), r.out());
        st != POSTERN_OK)
      return fail(st);
    return AppendOutcome{r->uidvalidity, r->uid};
  }
  Expected<CopyOutcome> copy(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to) {
    return copy_or_move(false, from, uids, to);
  }
  Expected<CopyOutcome> move(std::string_view from, const std::vector<uint32_t>& uids, std::string_view to) {
    return copy_or_move(true, from, uids, to);
  }
  /** (used octets, quota octets or 0). */
  Expected<std::pair<uint64_t, uint64_t>> usage() {
    uint64_t used = 0, quota = 0;
    if (auto st = api()->mbox_usage(mb_, &used, &quota); st != POSTERN_OK) return fail(st);
    return std::make_pair(used, quota);
  }

  /** Opens a view of `name` and returns it with the folder's snapshot. */
  Expected<std::pair<FolderView, FolderSnapshot>> open_folder(std::string_view name) {
    detail::ResultGuard r(api());
    postern_folder_view_t* v = nullptr;
    if (auto st = api()->mbox_open_folder(mb_, to_abi(name), &v, r.out()); st != POSTERN_OK) return fail(st);
    FolderView view(host_, v);
    FolderSnapshot snap;
    if (r->folder_count > 0) snap.folder = detail::copy_folder(r->folders[0]);
    snap.uidvalidity = r->uidvalidity;
    snap.uidnext = r->uidnext;
    snap.highest_modseq = r->highest_modseq;
    snap.messages = detail::copy_messages(r->messages, r->message_count);
    return std::make_pair(std::move(view), std::move(snap));
  }

 private:
  Mailbox(const Host& host, postern_mailbox_t* mb) : host_(host), mb_(mb) {}
  const postern_host_api_v1_t* api() const { return host_.api(); }
  MailError fail(postern_status_t st) const { return detail::last_error(host_, st); }
  Expected<Done> done(postern_status_t st) const {
    if (st != POSTERN_OK) return fail(st);
    return Done{};
  }
  Expected<CopyOutcome> copy_or_move(bool move, std::string_view from, const std::vector<uint32_t>& uids,
                                     std::string_view to) {
    detail::ResultGuard r(api());
    const auto fn = move ? api()->mbox_move : api()->mbox_copy;
    if (auto st = fn(mb_, to_abi(from), uids.data(), uids.size(), to_abi(to), r.out()); st != POSTERN_OK)
      return fail(st);
    CopyOutcome o;
    o.uidvalidity = r->uidvalidity;
    for (size_t i = 0; i < r->uid_pair_count; ++i) o.uids.emplace_back(r->uid_pairs[2 * i], r->uid_pairs[2 * i + 1]);
    return o;
  }

  Host host_;
  postern_mailbox_t* mb_ = nullptr;
};

}  // namespace postern::sdk
