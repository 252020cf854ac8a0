#pragma once
// pop3: the sizes LIST and STAT report are octets as sent (CRLF lines), which
// differ from the stored size for a message with bare LFs. Computing them
// reads the message, so they are kept per (account, UIDVALIDITY, UID): a
// message's octets never change under its UID (RFC 3501 §2.3.1.1), so an
// entry never goes stale; entries of expunged messages are pruned.

#include <postern/sdk/storage.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace postern::plugins::pop3 {

class SizeCache {
 public:
  /**
   * Opens (creating) the cache database. BLOCKING (init).
   * @return the cache, or nullptr with `error` set.
   */
  static std::shared_ptr<SizeCache> open(const std::filesystem::path& file, std::string* error);

  /** UID -> size of one folder incarnation. BLOCKING. Throws sdk::storage::Error. */
  std::unordered_map<uint32_t, uint64_t> load(const std::string& account, uint32_t uidvalidity);

  /**
   * Adds `fresh` sizes and drops the account's entries that are not in
   * `present` (expunged meanwhile, or of an older UIDVALIDITY), in one
   * transaction. BLOCKING. Throws sdk::storage::Error.
   */
  void update(const std::string& account, uint32_t uidvalidity, const std::vector<std::pair<uint32_t, uint64_t>>& fresh,
              const std::vector<uint32_t>& stale);

 private:
  explicit SizeCache(std::shared_ptr<sdk::storage::Database> db) : db_(std::move(db)) {}
  std::shared_ptr<sdk::storage::Database> db_;
};

}  // namespace postern::plugins::pop3
