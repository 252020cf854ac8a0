#pragma once
// The greylist database (README.md "Storage"): triplets and whitelisted
// networks in <state>/greylist.sqlite. Every call blocks: the plugin runs
// them on the host's worker pool, posternctl directly.

#include "network.hpp"
#include "whitelist.hpp"

#include <postern/sdk/storage.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace postern::plugins::greylist {

/** The schema, one migration per version (PRAGMA user_version). */
const std::vector<std::string>& schema_migrations();

struct Policy {
  int64_t delay_ms = 5 * 60'000;               // a retry passes after this
  int64_t window_ms = 24 * 3'600'000;          // ... and before this (from first sight)
  int64_t whitelist_for_ms = 36LL * 86'400'000;  // auto-whitelist lifetime, refreshed per pass
  int64_t whitelist_after = 1;                 // passes of a network before it is whitelisted; 0 = never
};

struct Verdict {
  enum class Kind { Pass, Whitelisted, TempFail };
  Kind kind = Kind::Pass;
  int64_t retry_in_ms = 0;  // TempFail: time left until a retry passes
  bool first_pass = false;  // Pass: this attempt ended the triplet's delay
  int64_t waited_ms = 0;    // first_pass: time since first sight
  std::string whitelist;    // Whitelisted: the entry that matched
  // Whitelisted: that entry; Pass with first_pass: the client network's entry
  // when this pass made (or kept) it auto-whitelisted. For the memory copy.
  std::optional<WhitelistEntry> whitelist_entry;
};

class TripletStore {
 public:
  /** Opens (creating and migrating) the database. @return nullptr with `error` set on failure. */
  static std::unique_ptr<TripletStore> open(const std::filesystem::path& file, std::string* error);

  /** Decides one (network, sender, recipient) attempt at `now_ms` and records it. */
  Verdict check(const Network& network, const Address& client, const std::string& sender,
                const std::string& recipient, int64_t now_ms, const Policy& policy);
  /** Deletes expired triplets and auto-whitelist entries. @return rows deleted. */
  int64_t prune(int64_t now_ms, const Policy& policy);
  /** The entries that whitelist a network at `now_ms`: manual ones and live automatic ones. */
  std::vector<WhitelistEntry> load_whitelist(int64_t now_ms, const Policy& policy);

  sdk::storage::Database& db() { return *db_; }

 private:
  explicit TripletStore(std::shared_ptr<sdk::storage::Database> db) : db_(std::move(db)) {}
  std::shared_ptr<sdk::storage::Database> db_;
};

}  // namespace postern::plugins::greylist
