#pragma once
/**
 * @file lookup.hpp
 * One stage's blocklist lookups, run in parallel through the host's
 * asynchronous resolver while the hook is deferred.
 *
 * Every query starts at once; each has its list's timeout (the host answers
 * POSTERN_DNS_TIMEOUT when it passes). A hit of a reject/tempfail list fetches
 * the list's TXT record for the reply within what is left of that timeout.
 * When the last answer is in, hits are logged and scored, and the hook
 * completes: with the first reject in list order, else the first tempfail,
 * else Continue. A list that fails (timeout, SERVFAIL) counts as not listed:
 * the message is never failed because of a blocklist. Answers are kept in an
 * AnswerCache for their TTL; a stage whose answers are all cached is decided
 * inside the hook call.
 */

#include "settings.hpp"

#include <postern/sdk/sdk.hpp>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace postern::plugins::dnsbl {

/** A list's verdict on one query name, as cached by the plugin. */
struct CachedAnswer {
  bool hit = false;
  std::string answer;  ///< the matching A record
  std::string txt;     ///< reject/tempfail hits: the TXT text (may be empty)
};

/**
 * The plugin's own cache of list answers, for their DNS TTL. The daemon's
 * resolver caches too; this one lets a stage whose answers are all known
 * complete at once, without deferring the hook (no thread hops per message).
 * Bounded: when full, expired entries are dropped, then everything.
 * Thread-safe.
 */
class AnswerCache {
 public:
  explicit AnswerCache(size_t capacity) : capacity_(capacity) {}
  std::optional<CachedAnswer> get(const std::string& key, int64_t now_ms) const;
  /** Keeps `a` for `ttl_seconds` (0: not at all). */
  void put(const std::string& key, CachedAnswer a, uint32_t ttl_seconds, int64_t now_ms);
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::pair<CachedAnswer, int64_t>> map_;  // value, expiry
  size_t capacity_;
};

/** One question to one list. */
struct Lookup {
  const List* list = nullptr;
  std::string item;    ///< what is listed: the address or the name
  std::string source;  ///< "client", "sender", "helo" or "url"
  std::string qname;   ///< item (reversed for addresses) + "." + zone
  bool is_address = false;
  // Results (under StageRun's mutex).
  bool done = false;
  bool hit = false;
  std::string answer;
  std::string txt;
  uint32_t ttl = 0;  ///< of the A answer, for the cache
};

class StageRun : public std::enable_shared_from_this<StageRun> {
 public:
  /**
   * @param context log fields that identify the session ("session=… qid=…")
   * @param stage_name "connect", "mail_from" or "data_end"
   */
  StageRun(sdk::Host host, std::shared_ptr<const Settings> settings, std::shared_ptr<AnswerCache> cache,
           std::string stage_name, std::string client_ip, std::string context, uint16_t reject_code);

  void add(Lookup lookup) { lookups_.push_back(std::move(lookup)); }
  bool empty() const { return lookups_.empty(); }

  /**
   * Answers from the cache when it knows every lookup (the hook's result is
   * returned at once); otherwise defers the hook, starts the missing queries
   * and returns Pending. Call once, from the hook, on a shared_ptr.
   */
  sdk::HookResult run(sdk::Event& ev);

 private:
  struct Decision {
    std::vector<std::string> log_lines;
    struct Symbol {
      std::string name;
      double weight;
      std::string detail;
    };
    std::vector<Symbol> symbols;
    sdk::HookResult result;
  };

  void on_answer(size_t index, const sdk::DnsAnswer& answer);
  void on_txt(size_t index, const sdk::DnsAnswer& answer);
  void note_failure(const Lookup& l, const sdk::DnsAnswer& answer);
  void one_done(size_t index);
  void finish();
  Decision decide() const;  // under mu_
  std::string reply_text(const Lookup& l) const;
  std::string cache_key(const Lookup& l) const;

  sdk::Host host_;
  std::shared_ptr<const Settings> settings_;  // keeps every Lookup::list alive
  std::shared_ptr<AnswerCache> cache_;
  std::string stage_;
  std::string client_ip_;
  std::string context_;
  uint16_t reject_code_;
  int64_t started_ms_ = 0;

  mutable std::mutex mu_;
  std::vector<Lookup> lookups_;
  size_t remaining_ = 0;
  sdk::Pending pending_;
};

/** Milliseconds on the host's clock. */
int64_t now_ms(const sdk::Host& host);

}  // namespace postern::plugins::dnsbl
