// The host side of the ABI 1.2 directory and mailbox-store functions
// (postern_abi.h: last_error, dir_*, mbox_*, view_*), over core/directory
// and core/mailstore. Every function validates its arguments, never throws
// into the plugin, and reports a failure as a postern_status_t plus a
// one-line detail in this thread's last_error.
//
// THREADING: every function blocks (password hashing, file and SQLite I/O)
// except last_error, mresult_free, mbox_release, view_release and
// mbox_usage (cached usage plus a directory snapshot lookup: no I/O). All are
// thread-safe; a folder view is used by one thread at a time (a mutex makes
// a misuse serialise instead of corrupting the view).
//
// Results: each postern_mresult_t is ONE heap block (std::malloc) holding the
// header, every array and every string it points to, so mresult_free is a
// single std::free and a result can be handed between threads freely.
#include "core/plugin/host_api_v12.hpp"

#include "core/directory/directory.hpp"
#include "core/log/log.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/plugin/loader.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ms = postern::core::mailstore;
namespace dir = postern::core::directory;

// The service bits of the ABI are the directory's (dir_authenticate passes them through).
static_assert(POSTERN_SERVICE_SMTP == dir::kSmtpAuth);
static_assert(POSTERN_SERVICE_IMAP == dir::kImap);
static_assert(POSTERN_SERVICE_POP3 == dir::kPop3);
// The flag bits of the ABI are the store's.
static_assert(POSTERN_FLAG_SEEN == ms::kSeen);
static_assert(POSTERN_FLAG_ANSWERED == ms::kAnswered);
static_assert(POSTERN_FLAG_FLAGGED == ms::kFlagged);
static_assert(POSTERN_FLAG_DELETED == ms::kDeleted);
static_assert(POSTERN_FLAG_DRAFT == ms::kDraft);

/** The opaque postern_mailbox_t: one opened account. Immutable after mbox_open. */
struct postern_mailbox {
  std::shared_ptr<ms::MailStore> store;        // keeps the store alive while the plugin holds the handle
  std::shared_ptr<dir::Directory> directory;   // for the quota; may be null (no quota)
  std::shared_ptr<ms::AccountStore> account;
  std::string address;                         // canonical
  std::string actor;                           // the opening plugin's name: who acts in mailbox events
};

/** The opaque postern_folder_view_t: one session's view; keeps the account open. */
struct postern_folder_view {
  std::shared_ptr<ms::MailStore> store;
  std::mutex mutex;  // the ABI says one thread at a time; this makes a misuse harmless
  std::unique_ptr<ms::FolderView> view;
};

namespace postern::core::plugin::abi12 {
namespace {

constexpr uint32_t kAllServices = POSTERN_SERVICE_SMTP | POSTERN_SERVICE_IMAP | POSTERN_SERVICE_POP3;
constexpr std::string_view kComponent = "plugin";

thread_local std::string t_last_error;

// The strings of the last dir_* answer on this thread (valid until the next dir_* call).
struct AccountBuffer {
  std::string address;
  std::string real_name;
};
thread_local AccountBuffer t_account;

std::string_view sv(postern_str_t s) { return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view{}; }
// A string argument is invalid when it claims octets but has no pointer.
bool bad_str(postern_str_t s) { return s.ptr == nullptr && s.len != 0; }

postern_status_t fail(postern_status_t code, std::string_view detail) {
  set_last_error(detail);
  return code;
}
postern_status_t invalid(std::string_view detail) { return fail(POSTERN_ERR_INVALID, detail); }

postern_status_t map_code(ms::StoreError::Code c) {
  using C = ms::StoreError::Code;
  switch (c) {
    case C::NotFound: return POSTERN_ERR_NOT_FOUND;
    case C::Exists: return POSTERN_ERR_EXISTS;
    case C::InvalidName: return POSTERN_ERR_INVALID;
    case C::HasChildren: return POSTERN_ERR_HAS_CHILDREN;
    case C::Forbidden: return POSTERN_ERR_FORBIDDEN;
    case C::OverQuota: return POSTERN_ERR_OVER_QUOTA;
    case C::Stale: return POSTERN_ERR_STALE;
    case C::Io: return POSTERN_ERR_TEMPORARY;
  }
  return POSTERN_ERR_FAILED;
}

postern_status_t store_fail(const ms::StoreError& e) {
  return fail(map_code(e.code), e.detail.empty() ? std::string_view("mailbox store error") : e.detail);
}

// Runs `body`, turning an exception into a status: nothing may unwind into C.
template <class F>
postern_status_t guarded(std::string_view what, F&& body) noexcept {
  try {
    t_last_error.clear();
    return body();
  } catch (const std::bad_alloc&) {
    return fail(POSTERN_ERR_TEMPORARY, "out of memory");
  } catch (const std::exception& e) {
    try {
      log::error(kComponent, "{}: unexpected error: {}", what, e.what());
      return fail(POSTERN_ERR_FAILED, std::string(what) + ": internal error");
    } catch (...) {
      return POSTERN_ERR_FAILED;
    }
  } catch (...) {
    return POSTERN_ERR_FAILED;
  }
}

const HostServices* services_of(postern_host_t* host) {
  if (host == nullptr || host->plugin == nullptr) return nullptr;
  return &host->plugin->services();
}

// The account's quota from the directory (0 = unlimited; also without a directory).
uint64_t quota_of(const postern_mailbox& mb) {
  if (!mb.directory) return 0;
  auto info = mb.directory->account(mb.address);
  return info ? info->quota_bytes : 0;
}

void fill_account(const dir::AccountInfo& a, postern_account_info_t* out) {
  t_account.address = a.address;
  t_account.real_name = a.real_name;
  out->address = postern_str_t{t_account.address.data(), t_account.address.size()};
  out->real_name = postern_str_t{t_account.real_name.data(), t_account.real_name.size()};
  out->quota_bytes = a.quota_bytes;
  out->services = a.services & kAllServices;
  out->enabled = a.enabled ? 1 : 0;
  if (out->struct_size == 0) out->struct_size = sizeof(postern_account_info_t);
}

// The out struct must be a 1.2 one (or struct_size left 0 by a careless caller: we fill it).
bool account_out_ok(const postern_account_info_t* out) {
  return out != nullptr && (out->struct_size == 0 || out->struct_size >= sizeof(postern_account_info_t));
}

std::vector<std::string> keyword_list(const postern_str_t* keywords, size_t count) {
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) out.emplace_back(sv(keywords[i]));
  return out;
}

bool keywords_ok(const postern_str_t* keywords, size_t count) {
  if (count == 0) return true;
  if (keywords == nullptr) return false;
  for (size_t i = 0; i < count; ++i)
    if (bad_str(keywords[i])) return false;
  return true;
}

/**
 * Collects what a call answers, then packs it into one heap block:
 * [header][folders][messages][changed][keyword strs][uids][uid pairs][chars].
 */
struct ResultBuilder {
  uint32_t flags = 0;
  std::vector<ms::FolderInfo> folders;
  std::vector<ms::MessageInfo> messages;
  std::vector<ms::MessageInfo> changed;
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

  /** @return the block, or nullptr when out of memory. */
  postern_mresult_t* build() const {
    size_t keyword_count = 0;
    size_t chars = bytes.size();
    auto count_message = [&](const ms::MessageInfo& m) {
      keyword_count += m.keywords.size();
      for (const auto& k : m.keywords) chars += k.size();
    };
    for (const auto& m : messages) count_message(m);
    for (const auto& m : changed) count_message(m);
    for (const auto& f : folders) chars += f.name.size() + ms::special_use_name(f.special_use).size();

    const size_t off_folders = align(sizeof(postern_mresult_t));
    const size_t off_messages = align(off_folders + folders.size() * sizeof(postern_folder_info_t));
    const size_t off_changed = align(off_messages + messages.size() * sizeof(postern_message_info_t));
    const size_t off_keywords = align(off_changed + changed.size() * sizeof(postern_message_info_t));
    const size_t off_uids = align(off_keywords + keyword_count * sizeof(postern_str_t));
    const size_t off_pairs = align(off_uids + uids.size() * sizeof(uint32_t));
    const size_t off_chars = align(off_pairs + uid_pairs.size() * 2 * sizeof(uint32_t));
    const size_t total = off_chars + chars + 1;  // +1: never a zero-length char area

    auto* base = static_cast<unsigned char*>(std::malloc(total));
    if (base == nullptr) return nullptr;
    std::memset(base, 0, off_chars);

    auto* r = reinterpret_cast<postern_mresult_t*>(base);
    r->struct_size = sizeof(postern_mresult_t);
    r->flags = flags;
    r->uidvalidity = uidvalidity;
    r->uidnext = uidnext;
    r->highest_modseq = highest_modseq;
    r->uid = uid;

    char* text = reinterpret_cast<char*>(base + off_chars);
    // Strings point into the char area; an empty one still gets a valid pointer.
    auto put = [&](std::string_view s) {
      postern_str_t out{text, s.size()};
      if (!s.empty()) std::memcpy(text, s.data(), s.size());
      text += s.size();
      return out;
    };

    auto* kw = reinterpret_cast<postern_str_t*>(base + off_keywords);
    auto put_messages = [&](const std::vector<ms::MessageInfo>& src, size_t off) -> const postern_message_info_t* {
      if (src.empty()) return nullptr;
      auto* dst = reinterpret_cast<postern_message_info_t*>(base + off);
      for (size_t i = 0; i < src.size(); ++i) {
        const ms::MessageInfo& m = src[i];
        postern_message_info_t& d = dst[i];
        d.uid = m.uid;
        d.flags = m.flags & ms::kAllFlags;
        d.modseq = m.modseq;
        d.internal_date = m.internal_date;
        d.saved_date = m.saved_date;
        d.size = m.size;
        d.keywords = m.keywords.empty() ? nullptr : kw;
        d.keyword_count = m.keywords.size();
        for (const auto& k : m.keywords) *kw++ = put(k);
      }
      return dst;
    };

    if (!folders.empty()) {
      auto* dst = reinterpret_cast<postern_folder_info_t*>(base + off_folders);
      for (size_t i = 0; i < folders.size(); ++i) {
        const ms::FolderInfo& f = folders[i];
        postern_folder_info_t& d = dst[i];
        d.name = put(f.name);
        d.special_use = put(ms::special_use_name(f.special_use));
        d.subscribed = f.subscribed ? 1 : 0;
        d.has_children = f.has_children ? 1 : 0;
        d.uidvalidity = f.uidvalidity;
        d.uidnext = f.uidnext;
        d.highest_modseq = f.highest_modseq;
        d.messages = f.messages;
        d.unseen = f.unseen;
        d.deleted = f.deleted;
        d.size = f.size;
      }
      r->folders = dst;
      r->folder_count = folders.size();
    }
    r->messages = put_messages(messages, off_messages);
    r->message_count = messages.size();
    r->changed = put_messages(changed, off_changed);
    r->changed_count = changed.size();
    if (!uids.empty()) {
      auto* dst = reinterpret_cast<uint32_t*>(base + off_uids);
      std::copy(uids.begin(), uids.end(), dst);
      r->uids = dst;
      r->uid_count = uids.size();
    }
    if (!uid_pairs.empty()) {
      auto* dst = reinterpret_cast<uint32_t*>(base + off_pairs);
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

postern_status_t emit(const ResultBuilder& b, postern_mresult_t** out) {
  postern_mresult_t* r = b.build();
  if (r == nullptr) return fail(POSTERN_ERR_TEMPORARY, "out of memory");
  *out = r;
  return POSTERN_OK;
}

#define POSTERN_CHECK_MB(mb)                                                                  \
  do {                                                                                        \
    if ((mb) == nullptr || !(mb)->account) return invalid("invalid mailbox handle");          \
  } while (0)

}  // namespace

// ---------------------------------------------------------------------------
// last_error

void set_last_error(std::string_view detail) {
  try {
    // One line: a detail goes into client replies and logs.
    t_last_error.assign(detail.substr(0, 1000));
    std::replace_if(t_last_error.begin(), t_last_error.end(), [](char c) { return c == '\r' || c == '\n'; }, ' ');
  } catch (...) {
    t_last_error.clear();
  }
}

postern_str_t last_error(postern_host_t* /*host*/) { return postern_str_t{t_last_error.data(), t_last_error.size()}; }

// ---------------------------------------------------------------------------
// directory

postern_status_t dir_authenticate(postern_host_t* host, postern_str_t login, postern_str_t password, uint32_t service,
                                  postern_account_info_t* out) {
  return guarded("dir_authenticate", [&]() -> postern_status_t {
    if (host == nullptr || host->plugin == nullptr) return invalid("invalid host handle");
    if (!account_out_ok(out)) return invalid("invalid account out argument");
    if (bad_str(login) || bad_str(password)) return invalid("invalid login or password argument");
    if (service != POSTERN_SERVICE_SMTP && service != POSTERN_SERVICE_IMAP && service != POSTERN_SERVICE_POP3)
      return invalid("service must be one of POSTERN_SERVICE_SMTP, _IMAP, _POP3");
    const HostServices* s = services_of(host);
    if (!s->directory) return fail(POSTERN_ERR_UNAVAILABLE, "no directory is configured");
    // Bad login, bad password, disabled account or service not allowed all
    // answer alike, so a client cannot probe which accounts exist.
    constexpr std::string_view kRefused = "authentication failed";
    if (login.len == 0 || password.len == 0) return fail(POSTERN_ERR_NOT_FOUND, kRefused);
    auto canonical = s->directory->authenticate(sv(login), sv(password), static_cast<dir::Service>(service));
    if (!canonical) return fail(POSTERN_ERR_NOT_FOUND, kRefused);
    auto info = s->directory->account(*canonical);
    if (!info) return fail(POSTERN_ERR_NOT_FOUND, kRefused);  // deleted in between
    fill_account(*info, out);
    return POSTERN_OK;
  });
}

postern_status_t dir_account(postern_host_t* host, postern_str_t address, postern_account_info_t* out) {
  return guarded("dir_account", [&]() -> postern_status_t {
    if (host == nullptr || host->plugin == nullptr) return invalid("invalid host handle");
    if (!account_out_ok(out)) return invalid("invalid account out argument");
    if (bad_str(address)) return invalid("invalid address argument");
    const HostServices* s = services_of(host);
    if (!s->directory) return fail(POSTERN_ERR_UNAVAILABLE, "no directory is configured");
    auto info = s->directory->account(sv(address));
    if (!info) return fail(POSTERN_ERR_NOT_FOUND, "no such account");
    fill_account(*info, out);
    return POSTERN_OK;
  });
}

// ---------------------------------------------------------------------------
// mailbox handles

postern_status_t mbox_open(postern_host_t* host, postern_str_t account, postern_mailbox_t** out) {
  return guarded("mbox_open", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    if (host == nullptr || host->plugin == nullptr) return invalid("invalid host handle");
    if (bad_str(account) || account.len == 0) return invalid("empty account address");
    const HostServices* s = services_of(host);
    if (!s->store) return fail(POSTERN_ERR_UNAVAILABLE, "no mailbox store is configured");
    std::string address(sv(account));
    if (s->directory) {
      // Only accounts of the directory have mailboxes: an arbitrary string must
      // not create a store on disk.
      auto info = s->directory->account(address);
      if (!info) return fail(POSTERN_ERR_NOT_FOUND, "no such account");
      address = info->address;
    }
    auto opened = s->store->open_account(address, true);
    if (!opened) return store_fail(opened.error());
    auto mb = std::make_unique<postern_mailbox>();
    mb->store = s->store;
    mb->directory = s->directory;
    mb->account = std::move(*opened);
    mb->address = std::move(address);
    mb->actor = host->plugin->name();
    *out = mb.release();
    return POSTERN_OK;
  });
}

void mbox_release(postern_mailbox_t* mb) { delete mb; }

void mresult_free(postern_mresult_t* r) { std::free(r); }

// ---------------------------------------------------------------------------
// folders

postern_status_t mbox_list_folders(postern_mailbox_t* mb, postern_mresult_t** out) {
  return guarded("mbox_list_folders", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    auto folders = mb->account->list_folders();
    if (!folders) return store_fail(folders.error());
    ResultBuilder b;
    b.folders = std::move(*folders);
    return emit(b, out);
  });
}

postern_status_t mbox_folder_status(postern_mailbox_t* mb, postern_str_t name, postern_mresult_t** out) {
  return guarded("mbox_folder_status", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto f = mb->account->folder_status(sv(name));
    if (!f) return store_fail(f.error());
    ResultBuilder b;
    b.folders.push_back(std::move(*f));
    return emit(b, out);
  });
}

postern_status_t mbox_create_folder(postern_mailbox_t* mb, postern_str_t name, postern_str_t special_use) {
  return guarded("mbox_create_folder", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (bad_str(name) || bad_str(special_use)) return invalid("invalid string argument");
    ms::SpecialUse use = ms::SpecialUse::None;
    if (special_use.len != 0) {
      auto parsed = ms::parse_special_use(sv(special_use));
      if (!parsed) return invalid("unknown special-use attribute " + std::string(sv(special_use)));
      use = *parsed;
    }
    auto r = mb->account->create_folder(sv(name), use);
    if (!r) return store_fail(r.error());
    return POSTERN_OK;
  });
}

postern_status_t mbox_delete_folder(postern_mailbox_t* mb, postern_str_t name) {
  return guarded("mbox_delete_folder", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto r = mb->account->delete_folder(sv(name));
    if (!r) return store_fail(r.error());
    return POSTERN_OK;
  });
}

postern_status_t mbox_rename_folder(postern_mailbox_t* mb, postern_str_t from, postern_str_t to) {
  return guarded("mbox_rename_folder", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (bad_str(from) || bad_str(to)) return invalid("invalid folder name argument");
    auto r = mb->account->rename_folder(sv(from), sv(to));
    if (!r) return store_fail(r.error());
    return POSTERN_OK;
  });
}

postern_status_t mbox_subscribe(postern_mailbox_t* mb, postern_str_t name, int32_t subscribed) {
  return guarded("mbox_subscribe", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto r = mb->account->subscribe(sv(name), subscribed != 0);
    if (!r) return store_fail(r.error());
    return POSTERN_OK;
  });
}

postern_status_t mbox_claim_recent(postern_mailbox_t* mb, postern_str_t name, uint32_t* first_recent_uid) {
  return guarded("mbox_claim_recent", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (first_recent_uid == nullptr) return invalid("invalid out argument");
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto r = mb->account->claim_recent(sv(name));
    if (!r) return store_fail(r.error());
    *first_recent_uid = *r;
    return POSTERN_OK;
  });
}

postern_status_t mbox_changes_since(postern_mailbox_t* mb, postern_str_t name, uint32_t uidvalidity, uint64_t since,
                                    postern_mresult_t** out) {
  return guarded("mbox_changes_since", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto c = mb->account->changes_since(sv(name), uidvalidity, since);
    if (!c) return store_fail(c.error());
    ResultBuilder b;
    b.messages = std::move(c->changed);
    b.uids = std::move(c->expunged);
    b.uidvalidity = c->uidvalidity;
    b.uidnext = c->uidnext;
    b.highest_modseq = c->highest_modseq;
    if (c->expunged_incomplete) b.flags |= POSTERN_MRESULT_EXPUNGED_INCOMPLETE;
    return emit(b, out);
  });
}

// ---------------------------------------------------------------------------
// messages

postern_status_t mbox_read_message(postern_mailbox_t* mb, postern_str_t folder, uint32_t uid, postern_mresult_t** out) {
  return guarded("mbox_read_message", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    if (bad_str(folder)) return invalid("invalid folder name argument");
    if (uid == 0) return invalid("UID 0 is not a message");
    auto m = mb->account->read_message(sv(folder), uid);
    if (!m) return store_fail(m.error());
    ResultBuilder b;
    b.bytes = std::move(*m);
    return emit(b, out);
  });
}

postern_status_t mbox_store_flags(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids, size_t uid_count,
                                  uint32_t op, uint32_t flags, const postern_str_t* keywords,
                                  size_t keyword_count, int32_t has_unchanged_since, uint64_t unchanged_since,
                                  postern_mresult_t** out) {
  return guarded("mbox_store_flags", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    const ms::ActingAs acting(mb->actor);  // names the plugin in the mailbox events this call raises
    if (bad_str(folder)) return invalid("invalid folder name argument");
    if (uid_count != 0 && uids == nullptr) return invalid("invalid UID list");
    if (!keywords_ok(keywords, keyword_count)) return invalid("invalid keyword list");
    if ((flags & ~static_cast<uint32_t>(ms::kAllFlags)) != 0) return invalid("unknown flag bits");
    ms::FlagOp fop;
    switch (op) {  // an integer from the plugin (postern_flag_op_t values)
      case POSTERN_FLAGS_REPLACE: fop = ms::FlagOp::Replace; break;
      case POSTERN_FLAGS_ADD: fop = ms::FlagOp::Add; break;
      case POSTERN_FLAGS_REMOVE: fop = ms::FlagOp::Remove; break;
      default: return invalid("unknown flag operation");
    }
    std::optional<uint64_t> since;
    if (has_unchanged_since != 0) since = unchanged_since;
    auto r = mb->account->store_flags(sv(folder), std::vector<uint32_t>(uids, uids + uid_count), fop, flags,
                                      keyword_list(keywords, keyword_count), since);
    if (!r) return store_fail(r.error());
    ResultBuilder b;
    b.messages = std::move(r->messages);
    b.uids = std::move(r->modified);
    std::sort(b.uids.begin(), b.uids.end());
    b.highest_modseq = r->highest_modseq;
    return emit(b, out);
  });
}

postern_status_t mbox_expunge(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids, size_t uid_count,
                              uint32_t mode, postern_mresult_t** out) {
  return guarded("mbox_expunge", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    const ms::ActingAs acting(mb->actor);  // names the plugin in the mailbox events this call raises
    if (bad_str(folder)) return invalid("invalid folder name argument");
    ms::Result<std::vector<uint32_t>> r = std::vector<uint32_t>{};
    const uint32_t mode_value = mode;  // postern_expunge_mode_t values
    switch (mode_value) {
      case POSTERN_EXPUNGE_LISTED:
      case POSTERN_EXPUNGE_LISTED_DELETED:
        if (uid_count != 0 && uids == nullptr) return invalid("invalid UID list");
        r = mb->account->expunge(sv(folder), std::vector<uint32_t>(uids, uids + uid_count),
                                 mode_value == POSTERN_EXPUNGE_LISTED_DELETED);
        break;
      case POSTERN_EXPUNGE_ALL_DELETED:
        r = mb->account->expunge_deleted(sv(folder));
        break;
      default:
        return invalid("unknown expunge mode");
    }
    if (!r) return store_fail(r.error());
    ResultBuilder b;
    b.uids = std::move(*r);
    return emit(b, out);
  });
}

postern_status_t mbox_append(postern_mailbox_t* mb, postern_str_t folder, postern_bytes_t message, uint32_t flags,
                             const postern_str_t* keywords, size_t keyword_count, int64_t internal_date,
                             postern_mresult_t** out) {
  return guarded("mbox_append", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    const ms::ActingAs acting(mb->actor);  // names the plugin in the mailbox events this call raises
    if (bad_str(folder)) return invalid("invalid folder name argument");
    if (message.ptr == nullptr && message.len != 0) return invalid("invalid message argument");
    if (!keywords_ok(keywords, keyword_count)) return invalid("invalid keyword list");
    if ((flags & ~static_cast<uint32_t>(ms::kAllFlags)) != 0) return invalid("unknown flag bits");
    std::optional<int64_t> date;
    if (internal_date >= 0) date = internal_date;
    const std::string_view bytes(reinterpret_cast<const char*>(message.ptr), message.len);
    auto r = mb->account->append(sv(folder), bytes, flags, keyword_list(keywords, keyword_count), date, quota_of(*mb));
    if (!r) return store_fail(r.error());
    ResultBuilder b;
    b.uidvalidity = r->uidvalidity;
    b.uid = r->uid;
    return emit(b, out);
  });
}

namespace {

postern_status_t copy_or_move(const char* what, bool move, postern_mailbox_t* mb, postern_str_t from,
                              const uint32_t* uids, size_t uid_count, postern_str_t to, postern_mresult_t** out) {
  return guarded(what, [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    const ms::ActingAs acting(mb->actor);  // names the plugin in the mailbox events this call raises
    if (bad_str(from) || bad_str(to)) return invalid("invalid folder name argument");
    if (uid_count != 0 && uids == nullptr) return invalid("invalid UID list");
    std::vector<uint32_t> list(uids, uids + uid_count);
    auto r = move ? mb->account->move(sv(from), list, sv(to))
                  : mb->account->copy(sv(from), list, sv(to), quota_of(*mb));
    if (!r) return store_fail(r.error());
    ResultBuilder b;
    b.uidvalidity = r->dest_uidvalidity;
    b.uid_pairs = std::move(r->uids);
    return emit(b, out);
  });
}

}  // namespace

postern_status_t mbox_copy(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                           postern_str_t to, postern_mresult_t** out) {
  return copy_or_move("mbox_copy", false, mb, from, uids, uid_count, to, out);
}

postern_status_t mbox_move(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                           postern_str_t to, postern_mresult_t** out) {
  return copy_or_move("mbox_move", true, mb, from, uids, uid_count, to, out);
}

// Cheap: the store's cached usage and the directory's in-memory snapshot, no I/O.
postern_status_t mbox_usage(postern_mailbox_t* mb, uint64_t* used_bytes, uint64_t* quota_bytes) {
  return guarded("mbox_usage", [&]() -> postern_status_t {
    POSTERN_CHECK_MB(mb);
    if (used_bytes == nullptr || quota_bytes == nullptr) return invalid("invalid out argument");
    *used_bytes = mb->account->usage_bytes();
    *quota_bytes = quota_of(*mb);
    return POSTERN_OK;
  });
}

// ---------------------------------------------------------------------------
// folder views

postern_status_t mbox_open_folder(postern_mailbox_t* mb, postern_str_t name, postern_folder_view_t** view,
                                  postern_mresult_t** out) {
  return guarded("mbox_open_folder", [&]() -> postern_status_t {
    if (view == nullptr || out == nullptr) return invalid("invalid out argument");
    *view = nullptr;
    *out = nullptr;
    POSTERN_CHECK_MB(mb);
    if (bad_str(name)) return invalid("invalid folder name argument");
    auto opened = mb->account->open_folder(sv(name));
    if (!opened) return store_fail(opened.error());
    std::unique_ptr<ms::FolderView>& v = *opened;

    ResultBuilder b;
    // The counters describe the snapshot itself, so they agree with `messages`
    // even when a delivery lands between the two reads; the attributes
    // (subscribed, children) come from the folder's row.
    ms::FolderInfo info;
    if (auto st = mb->account->folder_status(v->name())) info = std::move(*st);
    info.name = v->name();
    info.special_use = v->special_use();
    info.uidvalidity = v->uidvalidity();
    info.uidnext = v->uidnext();
    info.highest_modseq = v->highest_modseq();
    info.messages = static_cast<uint32_t>(v->messages().size());
    info.unseen = 0;
    info.deleted = 0;
    info.size = 0;
    for (const auto& m : v->messages()) {
      if ((m.flags & ms::kSeen) == 0) ++info.unseen;
      if ((m.flags & ms::kDeleted) != 0) ++info.deleted;
      info.size += m.size;
    }
    b.folders.push_back(std::move(info));
    b.messages = v->messages();
    b.uidvalidity = v->uidvalidity();
    b.uidnext = v->uidnext();
    b.highest_modseq = v->highest_modseq();

    auto handle = std::make_unique<postern_folder_view>();
    handle->store = mb->store;
    handle->view = std::move(v);
    if (auto st = emit(b, out); st != POSTERN_OK) return st;
    *view = handle.release();
    return POSTERN_OK;
  });
}

postern_status_t view_refresh(postern_folder_view_t* view, postern_mresult_t** out) {
  return guarded("view_refresh", [&]() -> postern_status_t {
    if (out == nullptr) return invalid("invalid out argument");
    *out = nullptr;
    if (view == nullptr || !view->view) return invalid("invalid folder view handle");
    std::lock_guard lock(view->mutex);
    auto up = view->view->refresh();
    if (!up) return store_fail(up.error());
    ResultBuilder b;
    b.uids = std::move(up->expunged);
    b.messages = std::move(up->added);
    b.changed = std::move(up->changed);
    b.uidvalidity = view->view->uidvalidity();
    b.uidnext = view->view->uidnext();
    b.highest_modseq = view->view->highest_modseq();
    if (up->gone) b.flags |= POSTERN_MRESULT_GONE;
    return emit(b, out);
  });
}

void view_release(postern_folder_view_t* view) { delete view; }

}  // namespace postern::core::plugin::abi12
