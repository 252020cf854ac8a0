#include "core/directory/directory.hpp"

#include "core/directory/address.hpp"
#include "core/directory/snapshot.hpp"
#include "core/directory/sqlite_store.hpp"
#include "core/directory/store.hpp"
#include "core/log/log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace postern::core::directory {

struct Directory::Impl {
  Options opt;
  mutable std::mutex mu;  // the store and `marker`
  std::unique_ptr<DirectoryStore> store;
  uint64_t marker = 0;
  bool loaded = false;
  std::shared_ptr<const Snapshot> snap;     // atomic_load/atomic_store
  std::shared_ptr<const UsageLookup> usage; // atomic_load/atomic_store
  mutable std::once_flag dummy_once;
  mutable std::string dummy_hash;

  std::shared_ptr<const Snapshot> snapshot() const { return std::atomic_load(&snap); }

  /**
   * Caller holds `mu`. Re-reads when the marker moved (or always with `force`).
   * @return whether a new snapshot was installed.
   */
  bool reload_locked(bool force) {
    const uint64_t m = store->change_marker();
    if (!force && loaded && m == marker) return false;
    auto next = std::make_shared<Snapshot>(Snapshot::build(store->load(), opt.default_domain, opt.router_loop_limit));
    // The marker is read before the load: a change committed in between is
    // loaded now and loaded once more on the next refresh, never missed.
    marker = m;
    const bool first = !loaded;
    loaded = true;
    if (first || !force) {
      for (const std::string& p : next->problems) log::warn("directory", "{}", p);
    }
    std::atomic_store(&snap, std::shared_ptr<const Snapshot>(std::move(next)));
    return true;
  }

  /** Runs a store change under the lock and reloads after a success. */
  template <typename F>
  Status change(F&& f) {
    std::lock_guard lock(mu);
    Status s = f(*store);
    if (s.ok()) reload_locked(true);
    return s;
  }

  const std::string& dummy() const {
    // Unknown logins cost as much as known ones: verify against a hash made with the same parameters.
    std::call_once(dummy_once, [this] { dummy_hash = hash_password("postern-timing-equaliser", opt.hash); });
    return dummy_hash;
  }

  std::optional<SplitAddress> stored(std::string_view address, Status& err, bool allow_catch_all = false) const {
    std::string why;
    auto a = parse_stored_address(address, opt.default_domain, &why);
    if (!a) {
      err = Status::invalid(why);
      return std::nullopt;
    }
    if (a->local == "*" && !allow_catch_all) {
      err = Status::invalid(fmt::format("'{}': '*' is only valid as a catch-all alias (alias add *@domain ...)", address));
      return std::nullopt;
    }
    return a;
  }

  std::optional<std::vector<std::string>> stored_list(const std::vector<std::string>& in, Status& err) const {
    std::vector<std::string> out;
    for (const std::string& t : in) {
      auto a = stored(t, err);
      if (!a) return std::nullopt;
      if (std::find(out.begin(), out.end(), a->str()) == out.end()) out.push_back(a->str());
    }
    return out;
  }

  /** Read-modify-write of one account (password, quota, flags, forwarding). */
  template <typename F>
  Status update(std::string_view address, F&& edit) {
    Status err;
    auto a = stored(address, err);
    if (!a) return err;
    return change([&](DirectoryStore& st) -> Status {
      const DirectoryData d = st.load();
      auto it = std::find_if(d.accounts.begin(), d.accounts.end(),
                             [&](const AccountRecord& r) { return r.address == a->str(); });
      if (it == d.accounts.end()) return Status::not_found(fmt::format("account {} does not exist", a->str()));
      AccountRecord rec = *it;
      if (Status s = edit(rec); !s.ok()) return s;
      return st.update_account(rec);
    });
  }
};

Directory::Directory(Options options) : Directory(options, open_sqlite_store(options.file)) {}

Directory::Directory(Options options, std::unique_ptr<DirectoryStore> store) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  impl_->opt.default_domain = smtp_lower(impl_->opt.default_domain);
  impl_->store = std::move(store);
  std::lock_guard lock(impl_->mu);
  impl_->reload_locked(true);
}

Directory::~Directory() = default;

std::string Directory::smtp_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

Resolution Directory::resolve(std::string_view address, std::string_view sender) const {
  return impl_->snapshot()->resolve(address, sender);
}

std::optional<AccountInfo> Directory::account(std::string_view address) const {
  auto snap = impl_->snapshot();
  const AccountRecord* a = snap->find_account(address, true);
  if (a == nullptr) return std::nullopt;
  return AccountInfo{a->address, a->real_name, a->quota_bytes, a->services, a->enabled};
}

bool Directory::is_local_domain(std::string_view domain) const {
  const DomainRecord* d = impl_->snapshot()->domain(smtp_lower(domain));
  return d != nullptr && (d->kind == DomainKind::Local || d->kind == DomainKind::Alias);
}

bool Directory::is_gateway_domain(std::string_view domain) const {
  const DomainRecord* d = impl_->snapshot()->domain(smtp_lower(domain));
  return d != nullptr && d->kind == DomainKind::Gateway;
}

void Directory::refresh() {
  std::lock_guard lock(impl_->mu);
  if (impl_->reload_locked(false)) {
    const auto snap = impl_->snapshot();
    log::info("directory", "reloaded: domains={} accounts={} aliases={} lists={} router-rules={}",
              snap->domains.size(), snap->accounts.size(), snap->aliases.size(), snap->lists.size(),
              snap->router.size());
  }
}

void Directory::set_usage_lookup(UsageLookup usage) {
  std::atomic_store(&impl_->usage, std::make_shared<const UsageLookup>(std::move(usage)));
}

std::optional<std::string> Directory::authenticate(std::string_view login, std::string_view password,
                                                   Service service) const {
  auto snap = impl_->snapshot();
  const AccountRecord* a = snap->find_account(login, true);
  if (a == nullptr || !is_supported_hash(a->password_hash)) {
    (void)verify_password(password, impl_->dummy());
    return std::nullopt;
  }
  // Verify first, then look at the flags: the time spent does not tell a
  // disabled account from a wrong password.
  const bool good = verify_password(password, a->password_hash);
  if (!good || !a->enabled || (a->services & service) == 0) return std::nullopt;
  return a->address;
}

bool Directory::owns_address(std::string_view account, std::string_view address) const {
  auto snap = impl_->snapshot();
  const AccountRecord* acc = snap->find_account(account, false);
  auto split = split_address(address, "");
  if (acc == nullptr || !split) return false;
  const std::string addr = split->local + "@" + snap->canonical_domain(split->domain);
  if (addr == acc->address) return true;
  auto al = snap->aliases.find(addr);
  return al != snap->aliases.end() && al->second.size() == 1 && al->second.front() == acc->address;
}

bool Directory::over_quota(std::string_view account) const {
  if (auto known = over_quota_cached(account)) return *known;
  auto snap = impl_->snapshot();
  const AccountRecord* a = snap->find_account(account, false);
  auto usage = std::atomic_load(&impl_->usage);
  if (a == nullptr || !usage || !usage->read) return false;
  const std::optional<uint64_t> used = usage->read(a->address);
  return used && *used >= a->quota_bytes;
}

std::optional<bool> Directory::over_quota_cached(std::string_view account) const {
  auto snap = impl_->snapshot();
  const AccountRecord* a = snap->find_account(account, false);
  if (a == nullptr || a->quota_bytes == 0) return false;
  auto usage = std::atomic_load(&impl_->usage);
  if (!usage || (!usage->cached && !usage->read)) return false;
  if (!usage->cached) return std::nullopt;
  const std::optional<uint64_t> used = usage->cached(a->address);
  if (!used) return std::nullopt;
  return *used >= a->quota_bytes;
}

const std::string& Directory::default_domain() const { return impl_->opt.default_domain; }

std::shared_ptr<const DirectoryData> Directory::data() const {
  auto snap = impl_->snapshot();
  return std::shared_ptr<const DirectoryData>(snap, &snap->data);
}

RouteResult Directory::route(std::string_view address) const {
  auto snap = impl_->snapshot();
  auto split = split_address(address, snap->default_domain);
  if (!split) return RouteResult{RouteResult::Status::Refused, std::string(address), "not an address", {}};
  return snap->route(split->str());
}

Status Directory::add_domain(std::string_view name, DomainKind kind, std::string_view alias_of) {
  std::string why;
  auto n = parse_domain(name, &why);
  if (!n) return Status::invalid(why);
  DomainRecord rec{*n, kind, {}};
  if (kind == DomainKind::Alias) {
    auto t = parse_domain(alias_of, &why);
    if (!t) return Status::invalid(why);
    if (*t == *n) return Status::invalid(fmt::format("domain {} cannot be an alias of itself", *n));
    rec.alias_of = *t;
  }
  return impl_->change([&](DirectoryStore& st) { return st.add_domain(rec); });
}

Status Directory::del_domain(std::string_view name, bool force) {
  std::string why;
  auto n = parse_domain(name, &why);
  if (!n) return Status::invalid(why);
  if (*n == impl_->opt.default_domain && !force) {
    return Status::refused(fmt::format("{} is the default domain (postmaster lives there); use --force", *n));
  }
  return impl_->change([&](DirectoryStore& st) { return st.del_domain(*n, force); });
}

Status Directory::add_account(std::string_view address, std::string_view real_name,
                              const std::optional<std::string>& password, uint64_t quota_bytes) {
  Status err;
  auto a = impl_->stored(address, err);
  if (!a) return err;
  AccountRecord rec;
  rec.address = a->str();
  rec.real_name = std::string(real_name);
  rec.quota_bytes = quota_bytes;
  // Hash before taking the lock: argon2 is slow on purpose.
  rec.password_hash = password ? hash_password(*password, impl_->opt.hash) : std::string(kNoPassword);
  return impl_->change([&](DirectoryStore& st) { return st.add_account(rec); });
}

Status Directory::del_account(std::string_view address) {
  Status err;
  auto a = impl_->stored(address, err);
  if (!a) return err;
  return impl_->change([&](DirectoryStore& st) { return st.del_account(a->str()); });
}

Status Directory::set_password(std::string_view address, std::string_view password) {
  const std::string hash = hash_password(password, impl_->opt.hash);
  return impl_->update(address, [&](AccountRecord& r) {
    r.password_hash = hash;
    return Status::success();
  });
}

Status Directory::set_quota(std::string_view address, uint64_t quota_bytes) {
  return impl_->update(address, [&](AccountRecord& r) {
    r.quota_bytes = quota_bytes;
    return Status::success();
  });
}

Status Directory::set_real_name(std::string_view address, std::string_view real_name) {
  return impl_->update(address, [&](AccountRecord& r) {
    r.real_name = std::string(real_name);
    return Status::success();
  });
}

Status Directory::set_enabled(std::string_view address, bool enabled, uint32_t services) {
  return impl_->update(address, [&](AccountRecord& r) {
    if (services == 0) r.enabled = enabled;
    else if (enabled) r.services |= (services & kAllServices);
    else r.services &= ~services & kAllServices;
    return Status::success();
  });
}

Status Directory::set_forward(std::string_view address, const std::vector<std::string>& targets, bool keep_copy) {
  Status err;
  auto list = impl_->stored_list(targets, err);
  if (!list) return err;
  return impl_->update(address, [&](AccountRecord& r) {
    if (std::find(list->begin(), list->end(), r.address) != list->end()) {
      return Status::invalid(fmt::format("{} cannot forward to itself (use --keep-copy to keep a local copy)", r.address));
    }
    r.forward = *list;
    r.keep_copy = list->empty() ? true : keep_copy;
    return Status::success();
  });
}

Status Directory::add_alias(std::string_view address, const std::vector<std::string>& targets) {
  Status err;
  auto a = impl_->stored(address, err, true);
  if (!a) return err;
  if (targets.empty()) return Status::invalid("an alias needs at least one target");
  auto list = impl_->stored_list(targets, err);
  if (!list) return err;
  if (std::find(list->begin(), list->end(), a->str()) != list->end()) {
    return Status::invalid(fmt::format("alias {} cannot point to itself", a->str()));
  }
  return impl_->change([&](DirectoryStore& st) { return st.add_alias(a->str(), *list); });
}

Status Directory::del_alias(std::string_view address, const std::vector<std::string>& targets) {
  Status err;
  auto a = impl_->stored(address, err, true);
  if (!a) return err;
  auto list = impl_->stored_list(targets, err);
  if (!list) return err;
  return impl_->change([&](DirectoryStore& st) { return st.del_alias(a->str(), *list); });
}

Status Directory::add_list(std::string_view address, PostPolicy policy) {
  Status err;
  auto a = impl_->stored(address, err);
  if (!a) return err;
  return impl_->change([&](DirectoryStore& st) { return st.add_list(a->str(), policy); });
}

Status Directory::del_list(std::string_view address) {
  Status err;
  auto a = impl_->stored(address, err);
  if (!a) return err;
  return impl_->change([&](DirectoryStore& st) { return st.del_list(a->str()); });
}

Status Directory::set_list_policy(std::string_view address, PostPolicy policy) {
  Status err;
  auto a = impl_->stored(address, err);
  if (!a) return err;
  return impl_->change([&](DirectoryStore& st) { return st.set_list_policy(a->str(), policy); });
}

Status Directory::add_list_entries(std::string_view list, const std::vector<std::string>& addresses, bool senders) {
  Status err;
  auto l = impl_->stored(list, err);
  if (!l) return err;
  if (addresses.empty()) return Status::invalid("no addresses given");
  auto entries = impl_->stored_list(addresses, err);
  if (!entries) return err;
  return impl_->change([&](DirectoryStore& st) { return st.add_list_entries(l->str(), *entries, senders); });
}

Status Directory::del_list_entries(std::string_view list, const std::vector<std::string>& addresses, bool senders) {
  Status err;
  auto l = impl_->stored(list, err);
  if (!l) return err;
  if (addresses.empty()) return Status::invalid("no addresses given");
  auto entries = impl_->stored_list(addresses, err);
  if (!entries) return err;
  return impl_->change([&](DirectoryStore& st) { return st.del_list_entries(l->str(), *entries, senders); });
}

Status Directory::add_router_rule(std::string_view rule, size_t position) {
  std::string why;
  auto r = parse_router_rule(rule, &why);
  if (!r) return Status::invalid(why);
  return impl_->change([&](DirectoryStore& st) { return st.add_router_rule(r->source, position); });
}

Status Directory::del_router_rule(size_t position) {
  return impl_->change([&](DirectoryStore& st) { return st.del_router_rule(position); });
}

std::vector<std::string> Directory::ensure_defaults(const std::vector<std::string>& local_domains) {
  std::vector<std::string> created;
  const std::string& dflt = impl_->opt.default_domain;
  if (dflt.empty()) throw std::runtime_error("the directory has no default domain");
  std::vector<std::string> wanted{dflt};
  for (const std::string& d : local_domains) {
    const std::string l = smtp_lower(d);
    if (std::find(wanted.begin(), wanted.end(), l) == wanted.end()) wanted.push_back(l);
  }
  for (const std::string& d : wanted) {
    if (impl_->snapshot()->domain(d) != nullptr) continue;
    Status s = add_domain(d, DomainKind::Local);
    if (s.ok()) created.push_back(fmt::format("local domain {} created", d));
    else if (s.code != Status::Code::Exists) throw std::runtime_error(s.message);
  }
  const std::string postmaster = "postmaster@" + dflt;
  const auto snap = impl_->snapshot();
  if (snap->accounts.count(postmaster) == 0 && snap->aliases.count(postmaster) == 0 &&
      snap->lists.count(postmaster) == 0) {
    Status s = add_account(postmaster, "Postmaster", std::nullopt, 0);
    if (s.ok()) {
      created.push_back(fmt::format("account {} created without a password; set one with: posternctl user passwd {}",
                                    postmaster, postmaster));
    } else if (s.code != Status::Code::Exists) {
      throw std::runtime_error(s.message);
    }
  }
  return created;
}

}  // namespace postern::core::directory
