// MailStore: the store's root, account directories, the open-account cache,
// delivery and retention. Per-account work: account_store.cpp.

#include "core/mailstore/mailstore.hpp"

#include "core/log/log.hpp"
#include "core/mailstore/account_impl.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace postern::core::mailstore {

namespace {

constexpr std::string_view kLog = "mailstore";
// Expunge records (for refresh and QRESYNC) are kept this long.
constexpr int64_t kTombstoneAge = 30 * 86400;

struct UseName {
  SpecialUse use;
  std::string_view name;
};
constexpr UseName kUseNames[] = {
    {SpecialUse::All, "\\All"},     {SpecialUse::Archive, "\\Archive"}, {SpecialUse::Drafts, "\\Drafts"},
    {SpecialUse::Flagged, "\\Flagged"}, {SpecialUse::Junk, "\\Junk"},   {SpecialUse::Sent, "\\Sent"},
    {SpecialUse::Trash, "\\Trash"},
};

bool keep_char(unsigned char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  if (c == '-' || c == '_' || c == '+' || c == '=') return true;
  return c == '.' && !first;
}

// Reversible escaping of one path component: lower-case letters, digits and
// "-_+=" (and '.' except first) stay, every other octet becomes %XX (upper-case
// hex); the empty string is "%". No result is ".", ".." or contains '/'.
std::string escape_component(std::string_view s) {
  if (s.empty()) return "%";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (keep_char(c, i == 0)) out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> unescape_component(std::string_view s) {
  if (s == "%") return std::string();
  if (s.empty()) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      if (!keep_char(static_cast<unsigned char>(s[i]), i == 0)) return std::nullopt;
      out += s[i];
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// "Local@Example.ORG" -> "Local@example.org": domains are case-insensitive.
std::string canonical_account(std::string_view account) {
  auto at = account.rfind('@');
  if (at == std::string_view::npos) return std::string(account);
  return std::string(account.substr(0, at + 1)) + lower(account.substr(at + 1));
}

bool valid_account(std::string_view account) {
  if (account.empty() || account.size() > 320) return false;
  for (unsigned char c : account)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

std::string_view special_use_name(SpecialUse use) {
  for (const auto& u : kUseNames)
    if (u.use == use) return u.name;
  return "";
}

std::optional<SpecialUse> parse_special_use(std::string_view text) {
  for (const auto& u : kUseNames) {
    if (u.name.size() != text.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < text.size() && eq; ++i)
      eq = std::tolower(static_cast<unsigned char>(text[i])) == std::tolower(static_cast<unsigned char>(u.name[i]));
    if (eq) return u.use;
  }
  return std::nullopt;
}

std::string account_relative_path(std::string_view account) {
  auto canon = canonical_account(account);
  auto at = canon.rfind('@');
  std::string_view local = canon, domain;
  if (at != std::string::npos) {
    local = std::string_view(canon).substr(0, at);
    domain = std::string_view(canon).substr(at + 1);
  }
  return escape_component(domain) + "/" + escape_component(local);
}

std::optional<std::string> account_from_relative_path(std::string_view domain_dir, std::string_view local_dir) {
  auto domain = unescape_component(domain_dir);
  auto local = unescape_component(local_dir);
  if (!domain || !local) return std::nullopt;
  if (domain->empty()) return *local;
  return *local + "@" + *domain;
}

std::optional<std::string> normalize_folder_name(std::string_view name, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<std::string> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (name.empty()) return fail("a folder name cannot be empty");
  if (name.size() > 1000) return fail("folder name longer than 1000 octets");
  if (name.front() == '/' || name.back() == '/') return fail("a folder name cannot start or end with '/'");
  if (name.find("//") != std::string_view::npos) return fail("a folder name cannot contain an empty level (\"//\")");
  size_t level_start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '/') {
      if (i - level_start > 255) return fail("a folder level longer than 255 octets");
      level_start = i + 1;
      continue;
    }
    auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) return fail("control characters are not allowed in folder names");
    // '*' and '%' are LIST wildcards (RFC 9051 §6.3.9): a folder so named could not be listed exactly.
    if (c == '*' || c == '%') return fail("'*' and '%' are not allowed in folder names");
  }
  // RFC 9051 §5.1: INBOX is case-insensitive.
  if (name.size() == 5 && lower(name) == "inbox") return std::string("INBOX");
  return std::string(name);
}

bool valid_keyword(std::string_view keyword) {
  if (keyword.empty() || keyword.size() > 128) return false;
  for (unsigned char c : keyword) {
    // RFC 9051 §9: flag-keyword = atom; atom excludes ( ) { SP CTL % * " \ ]
    if (c <= 0x20 || c >= 0x7f) return false;
    if (c == '(' || c == ')' || c == '{' || c == '%' || c == '*' || c == '"' || c == '\\' || c == ']') return false;
  }
  return true;
}

struct MailStore::Impl {
  std::filesystem::path root;
  size_t max_open = 256;
  bool create_accounts = true;
  std::shared_ptr<StoreSettings> settings;

  mutable std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<AccountStore>> open;
  mutable std::unordered_map<std::string, std::shared_ptr<std::atomic<uint64_t>>> usage;
  std::unordered_map<std::string, std::shared_ptr<std::mutex>> opening;
  std::unordered_map<std::string, bool> recovered;
  // Not opened yet, but known without I/O: the usage cell holds the index's
  // stored counter (usage_read), or the account has no store (no_store).
  // Opening the account takes over (recovery recomputes the cell).
  std::unordered_set<std::string> usage_read;
  std::unordered_set<std::string> no_store;

  std::shared_ptr<std::atomic<uint64_t>> usage_cell(const std::string& account) const {
    auto& cell = usage[account];
    if (!cell) cell = std::make_shared<std::atomic<uint64_t>>(0);
    return cell;
  }

  void evict_idle() {
    if (open.size() <= max_open) return;
    for (auto it = open.begin(); it != open.end() && open.size() > max_open;) {
      if (it->second.use_count() == 1) it = open.erase(it);
      else ++it;
    }
  }
};

MailStore::MailStore(Options options) : impl_(std::make_unique<Impl>()) {
  if (options.root.empty()) throw std::runtime_error("mailstore: root directory is empty");
  impl_->root = options.root;
  impl_->max_open = std::max<size_t>(options.max_open_accounts, 1);
  impl_->create_accounts = options.create_accounts;
  auto settings = std::make_shared<StoreSettings>();
  settings->busy_timeout = options.busy_timeout;
  settings->stale_tmp_age = options.stale_tmp_age;
  settings->clock = options.clock ? options.clock : [] { return std::chrono::system_clock::now(); };
  impl_->settings = std::move(settings);
  std::error_code ec;
  std::filesystem::create_directories(impl_->root, ec);
  if (ec) throw std::runtime_error(fmt::format("mailstore: cannot create {}: {}", impl_->root.string(), ec.message()));
  ::chmod(impl_->root.c_str(), 0700);
}

MailStore::~MailStore() = default;

std::filesystem::path MailStore::account_dir(std::string_view account) const {
  return impl_->root / account_relative_path(account);
}

bool MailStore::has_account(std::string_view account) const {
  struct stat st {};
  return ::stat((account_dir(account) / "index.sqlite").c_str(), &st) == 0;
}

std::vector<std::string> MailStore::accounts() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& d : std::filesystem::directory_iterator(impl_->root, ec)) {
    if (!d.is_directory()) continue;
    std::error_code ec2;
    for (const auto& l : std::filesystem::directory_iterator(d.path(), ec2)) {
      if (!std::filesystem::exists(l.path() / "index.sqlite")) continue;
      if (auto a = account_from_relative_path(d.path().filename().string(), l.path().filename().string()))
        out.push_back(std::move(*a));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::shared_ptr<AccountStore>> MailStore::open_account(std::string_view account_in, bool create) {
  if (!valid_account(account_in))
    return StoreError{StoreError::Code::InvalidName, fmt::format("not a valid account name: \"{}\"", account_in)};
  const std::string account = canonical_account(account_in);
  std::shared_ptr<std::mutex> gate;
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->open.find(account); it != impl_->open.end()) return it->second;
    auto& g = impl_->opening[account];
    if (!g) g = std::make_shared<std::mutex>();
    gate = g;
  }
  // One opener per account; others wait here and then find it open.
  std::lock_guard opening(*gate);
  std::shared_ptr<std::atomic<uint64_t>> usage;
  bool recovered = false;
  {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->open.find(account); it != impl_->open.end()) return it->second;
    usage = impl_->usage_cell(account);
    recovered = impl_->recovered[account];
  }
  auto dir = account_dir(account);
  bool exists = has_account(account);
  if (!exists && !create)
    return StoreError{StoreError::Code::NotFound, fmt::format("account {} has no mailbox", account)};
  try {
    if (!exists) {
      std::error_code ec;
      std::filesystem::create_directories(dir / "folders", ec);
      if (ec) throw std::runtime_error(fmt::format("create {}: {}", dir.string(), ec.message()));
    }
    auto impl = std::make_unique<AccountStore::Impl>();
    impl->account = account;
    impl->dir = dir;
    impl->settings = impl_->settings;
    impl->usage = usage;
    impl->initialise();
    if (!recovered) impl->recover();
    auto store = std::shared_ptr<AccountStore>(new AccountStore(std::move(impl)));
    std::lock_guard lock(impl_->mu);
    impl_->recovered[account] = true;
    impl_->no_store.erase(account);
    impl_->open[account] = store;
    impl_->evict_idle();
    return store;
  } catch (const std::exception& e) {
    log::error(kLog, "account={} open {}: {}", account, dir.string(), e.what());
    return StoreError{StoreError::Code::Io, fmt::format("cannot open the mailbox of {}: {}", account, e.what())};
  }
}

std::optional<uint64_t> MailStore::usage_bytes(std::string_view account_in) const {
  const std::string account = canonical_account(account_in);
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->recovered.count(account) || impl_->usage_read.count(account)) {
      if (auto it = impl_->usage.find(account); it != impl_->usage.end()) return it->second->load();
    }
    if (impl_->no_store.count(account)) return std::nullopt;
  }
  if (!valid_account(account)) return std::nullopt;
  if (!has_account(account)) {
    std::lock_guard lock(impl_->mu);
    // Only this process creates stores (open_account clears the mark).
    if (!impl_->recovered.count(account)) impl_->no_store.insert(account);
    return std::nullopt;
  }
  // Not opened by this process yet: read the stored counter once (a few
  // hundred microseconds); later calls answer from memory.
  try {
    detail::Db db((account_dir(account) / "index.sqlite").string(), false,
                  static_cast<int>(impl_->settings->busy_timeout.count()));
    auto s = db.prepare("SELECT value FROM meta WHERE key = 'usage'");
    uint64_t value = s.step() ? static_cast<uint64_t>(s.int64(0)) : 0;
    std::lock_guard lock(impl_->mu);
    auto cell = impl_->usage_cell(account);
    if (!impl_->recovered.count(account)) {
      cell->store(value);
      impl_->usage_read.insert(account);
    }
    return cell->load();
  } catch (const std::exception& e) {
    log::warn(kLog, "account={} reading usage: {}", account, e.what());
    return std::nullopt;
  }
}

std::optional<uint64_t> MailStore::cached_usage(std::string_view account_in) const {
  const std::string account = canonical_account(account_in);
  std::lock_guard lock(impl_->mu);
  if (impl_->recovered.count(account) || impl_->usage_read.count(account)) {
    if (auto it = impl_->usage.find(account); it != impl_->usage.end()) return it->second->load();
  }
  if (impl_->no_store.count(account)) return 0;
  return std::nullopt;
}

size_t MailStore::warm_usage(const std::vector<std::string>& accounts) const {
  size_t known = 0;
  for (const auto& a : accounts)
    if (usage_bytes(a)) ++known;
  return known;
}

DeliverResult MailStore::deliver(std::string_view account, std::string_view message, uint64_t quota_bytes,
                                 std::string_view folder) {
  DeliverResult r;
  auto store = open_account(account, impl_->create_accounts);
  if (!store) {
    const auto& e = store.error();
    r.status = e.code == StoreError::Code::Io ? DeliverResult::Status::TempError : DeliverResult::Status::PermError;
    r.detail = e.detail;
    return r;
  }
  std::string note;
  std::string target(folder.empty() ? std::string_view("INBOX") : folder);
  auto saved = (*store)->impl_->save(target, message, 0, {}, std::nullopt, quota_bytes, "delivery");
  if (!saved && saved.error().code == StoreError::Code::NotFound && target != "INBOX") {
    // Dovecot LDA's default: a missing target folder means the inbox.
    note = fmt::format(" (folder \"{}\" does not exist; delivered to INBOX)", target);
    target = "INBOX";
    saved = (*store)->impl_->save(target, message, 0, {}, std::nullopt, quota_bytes, "delivery");
  }
  if (saved) {
    r.status = DeliverResult::Status::Ok;
    r.uid = saved->uid;
    r.detail = fmt::format("delivered to {} folder {} uid {}{}", (*store)->account(), target, saved->uid, note);
    return r;
  }
  const auto& e = saved.error();
  switch (e.code) {
    case StoreError::Code::OverQuota:
      r.status = DeliverResult::Status::OverQuota;
      break;
    case StoreError::Code::Io:
    case StoreError::Code::NotFound:  // INBOX missing: damaged index; retry after repair
      r.status = DeliverResult::Status::TempError;
      break;
    default:
      r.status = DeliverResult::Status::PermError;
  }
  r.detail = e.detail;
  return r;
}

void MailStore::set_event_sink(EventSink sink) { impl_->settings->events->set_sink(std::move(sink)); }

MailStore::RetentionReport MailStore::run_retention(const RetentionPolicy& policy) {
  ActingAs acting("system");
  RetentionReport report;
  const int64_t now = impl_->settings->now();
  for (const auto& account : accounts()) {
    ++report.accounts;
    auto store = open_account(account, false);
    if (!store) {
      ++report.failures;
      continue;
    }
    auto folders = (*store)->list_folders();
    if (!folders) {
      ++report.failures;
      continue;
    }
    bool failed = false;
    for (const auto& f : *folders) {
      std::chrono::seconds keep{0};
      if (f.special_use == SpecialUse::Trash) keep = policy.trash;
      else if (f.special_use == SpecialUse::Junk) keep = policy.junk;
      else continue;
      if (keep.count() <= 0 || f.messages == 0) continue;
      auto removed = (*store)->expire(f.name, now - keep.count());
      if (!removed) {
        failed = true;
        continue;
      }
      if (*removed)
        log::info(kLog, "account={} folder=\"{}\": retention removed {} message(s) older than {}d", account, f.name,
                  *removed, keep.count() / 86400);
      report.messages += *removed;
    }
    try {
      (*store)->impl_->prune_tombstones(now - kTombstoneAge);
    } catch (const std::exception& e) {
      log::warn(kLog, "account={} pruning expunge records: {}", account, e.what());
      failed = true;
    }
    if (failed) ++report.failures;
  }
  return report;
}

}  // namespace postern::core::mailstore
