// Wiring of the mailstore subsystem into posternd (see runtime.hpp):
//   <mailstore root="mail" trash-retention="30d" junk-retention="10d"
//              retention-schedule="17 3 * * *"/>
// Every attribute is optional; docs/mailstore.md describes them.

#include "core/app/runtime.hpp"
#include "core/directory/directory.hpp"
#include "core/directory/store.hpp"
#include "core/log/log.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/scheduler/scheduler.hpp"

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <chrono>

namespace postern::core::app {

namespace {

struct MailstoreSettings {
  std::filesystem::path root;  // empty: <data-dir>/mail
  mailstore::MailStore::RetentionPolicy retention;
  std::string schedule = "17 3 * * *";
};

MailstoreSettings parse_mailstore(const config::Manifest& m, config::Diagnostics& diag) {
  MailstoreSettings s;
  const pugi::xml_node node = m.mailstore;
  if (!node) return s;
  for (auto a : node.attributes()) {
    std::string_view name = a.name();
    std::string_view value = a.value();
    if (name == "root") {
      if (value.empty()) {
        diag.error(node, "<mailstore root=\"\">: a directory is required");
        continue;
      }
      std::filesystem::path p(value);
      s.root = p.is_absolute() ? p : m.path.parent_path() / p;
    } else if (name == "trash-retention" || name == "junk-retention") {
      auto d = config::parse_duration(value);
      if (!d || d->count() < 0) {
        diag.error(node, fmt::format("<mailstore {}=\"{}\">: not a duration (e.g. 30d, 12h; 0 = keep forever)",
                                     name, value));
        continue;
      }
      auto secs = std::chrono::duration_cast<std::chrono::seconds>(*d);
      (name == "trash-retention" ? s.retention.trash : s.retention.junk) = secs;
    } else if (name == "retention-schedule") {
      std::string why;
      if (!scheduler::CronExpr::parse(value, &why)) {
        diag.error(node, fmt::format("<mailstore retention-schedule=\"{}\">: {}", value, why));
        continue;
      }
      s.schedule = std::string(value);
    } else {
      diag.error(node, fmt::format("<mailstore>: unknown attribute {}", name));
    }
  }
  for (auto child : node.children())
    if (child.type() == pugi::node_element)
      diag.error(child, fmt::format("<mailstore>: unknown element <{}>", child.name()));
  return s;
}

}  // namespace

void check_mailstore(const config::Manifest& m, config::Diagnostics& diag) { parse_mailstore(m, diag); }

bool wire_mailstore(Runtime& rt) {
  const config::Manifest& m = *rt.manifest;
  config::Diagnostics diag(m.path.string(), "");
  MailstoreSettings s = parse_mailstore(m, diag);
  if (!diag.ok()) {
    for (const auto& e : diag.errors()) log::error("mailstore", "{}", e.message);
    return false;
  }
  if (s.root.empty()) s.root = m.data_dir / "mail";
  std::shared_ptr<mailstore::MailStore> store;
  try {
    store = std::make_shared<mailstore::MailStore>(mailstore::MailStore::Options{.root = s.root.string()});
  } catch (const std::exception& e) {
    log::error("mailstore", "{}", e.what());
    return false;
  }
  rt.store = store;
  if (rt.scheduler) {
    // The job holds the store: a run in progress at shutdown finishes safely.
    auto policy = s.retention;
    rt.scheduler->add("mailstore-retention", s.schedule, [store, policy] {
      auto r = store->run_retention(policy);
      log::info("mailstore", "retention: {} account(s) examined, {} message(s) removed, {} failure(s)", r.accounts,
                r.messages, r.failures);
    });
  }
  if (rt.directory) {
    // RCPT checks answer from the store's memory; a miss is read on a worker
    // (the SMTP engine runs UsageLookup::read there, never on a session strand).
    std::weak_ptr<mailstore::MailStore> weak = store;
    directory::Directory::UsageLookup lookup;
    lookup.cached = [weak](std::string_view account) -> std::optional<uint64_t> {
      if (auto st = weak.lock()) return st->cached_usage(account);
      return std::nullopt;
    };
    lookup.read = [weak](std::string_view account) -> std::optional<uint64_t> {
      if (auto st = weak.lock()) return st->usage_bytes(account);
      return std::nullopt;
    };
    rt.directory->set_usage_lookup(std::move(lookup));
    // Warm the cache for the accounts with a quota (the only ones the check
    // needs), off the I/O threads, so that the first RCPT for them is cheap.
    std::vector<std::string> with_quota;
    for (const auto& a : rt.directory->data()->accounts)
      if (a.quota_bytes != 0) with_quota.push_back(a.address);
    if (!with_quota.empty() && rt.workers) {
      boost::asio::post(*rt.workers, [weak, with_quota = std::move(with_quota)] {
        if (auto st = weak.lock()) {
          const size_t stores = st->warm_usage(with_quota);
          log::info("mailstore", "usage cached for {} account(s) with a quota ({} with a mailbox)", with_quota.size(),
                    stores);
        }
      });
    }
  }
  log::info("mailstore", "root={} trash-retention={}d junk-retention={}d schedule=\"{}\"", s.root.string(),
            s.retention.trash.count() / 86400, s.retention.junk.count() / 86400, s.schedule);
  return true;
}

}  // namespace postern::core::app
