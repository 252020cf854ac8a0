#pragma once
// A bounded LRU cache of DNS answers that expire by TTL. Not thread-safe: the
// Resolver uses it from its strand only. Time is passed in, so tests need no clock.

#include "core/dns/resolver.hpp"

#include <chrono>
#include <cstddef>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace postern::core::dns {

/** Answers keyed by (lower-cased name without trailing dot, type). */
class AnswerCache {
 public:
  using Clock = std::chrono::steady_clock;

  /** @param capacity the most entries kept; 0 disables the cache */
  explicit AnswerCache(size_t capacity) : capacity_(capacity) {}

  /**
   * Stores `answer` for answer.min_ttl seconds from `now`, evicting the least
   * recently used entry when full. Only Ok, NoData and NxDomain answers with a
   * non-zero min_ttl are stored; anything else is ignored.
   */
  void put(const Answer& answer, Clock::time_point now);

  /**
   * @return the cached answer for `name`/`type` with every TTL reduced by the
   *   whole seconds it spent in the cache and `name` set to the one asked for,
   *   or nullopt when absent or expired (an expired entry is dropped)
   */
  std::optional<Answer> get(std::string_view name, uint16_t type, Clock::time_point now);

  /** @return the number of entries, expired ones included until touched */
  size_t size() const { return index_.size(); }

  /** @return the key of `name`/`type`: DNS names compare case-insensitively (RFC 4343) */
  static std::string key(std::string_view name, uint16_t type);

 private:
  struct Entry {
    std::string key;
    Answer answer;
    Clock::time_point stored;
  };
  size_t capacity_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace postern::core::dns
