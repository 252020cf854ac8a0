#pragma once
// greylist (MISSION F4): temporary rejection of unknown (client network,
// sender, recipient) triplets at RCPT TO; see ../README.md.

#include "network.hpp"
#include "store.hpp"
#include "whitelist.hpp"

#include <postern/sdk/sdk.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace postern::plugins::greylist {

/** Who is never greylisted (<except .../> elements). */
struct Exceptions {
  std::vector<Network> networks;          // ip= and cidr=
  std::vector<std::string> sender_domains;  // lower case
  std::vector<std::string> senders;         // lower case
  std::vector<std::string> recipients;      // lower case; "@domain" matches a whole domain

  /** @return why the attempt is exempt, or empty. */
  std::string match(const Address& client, std::string_view sender, std::string_view recipient) const;
};

struct Settings {
  Policy policy;
  unsigned ipv4_prefix = 24;
  unsigned ipv6_prefix = 64;
  std::string prune_cron = "23 * * * *";  // empty = never
  bool skip_authenticated = true;
  int64_t whitelist_refresh_ms = 30'000;  // the memory copy of the whitelist is reloaded this often
  Exceptions exceptions;
};

/**
 * Reads the <plugin name="greylist"> element.
 * @return the settings, or nullopt with a one-line `error` naming the line.
 */
std::optional<Settings> parse_settings(const sdk::Config& config, std::string* error);

class GreylistPlugin {
 public:
  static constexpr const char* kName = "greylist";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx);

  /** Prunes the database now (the cron job's body), then reloads the whitelist. */
  int64_t prune();
  /** Replaces the memory copy of the whitelist with the database's (blocks: a worker or init). */
  void reload_whitelist();
  /** Entries in the memory copy of the whitelist. */
  size_t whitelist_size() const;
  const Settings& settings() const { return settings_; }

 private:
  // Admin commands (commands.cpp): `greylist list | allow | flush`.
  sdk::Status add_commands(sdk::InitContext& ctx);
  void list_command(sdk::CommandReply& reply);
  void allow_command(const std::string& network, sdk::CommandReply& reply);
  void flush_command(bool expired, bool all, sdk::CommandReply& reply);

  sdk::HookResult on_rcpt(sdk::Event& ev);
  sdk::HookResult decide(const sdk::Host& host, const Network& net, const Address& client, const std::string& sender,
                         const std::string& rcpt, const std::string& queue_id);
  int64_t now_ms() const;
  /** Starts the timer of the next whitelist reload (which runs on the worker pool). */
  void schedule_refresh();

  // Passed triplets, remembered for a minute so a busy sender costs no
  // database query; a miss goes to the database.
  bool cached(const std::string& key, int64_t now);
  void remember(const std::string& key, int64_t now);

  // The whitelist in memory, consulted on the session strand.
  bool whitelisted(const Address& client, int64_t now) const;
  void learn_whitelisted(const WhitelistEntry& e);

  std::optional<sdk::Host> host_;
  Settings settings_;
  std::unique_ptr<TripletStore> store_;
  std::mutex cache_mutex_;
  std::unordered_map<std::string, int64_t> cache_;  // key -> valid until (ms)

  mutable std::shared_mutex whitelist_mutex_;
  WhitelistSet whitelist_;
  bool reloading_ = false;                   // a reload is reading the database
  std::vector<WhitelistEntry> learned_;      // entries learned meanwhile, re-applied to its result
  std::mutex reload_mutex_;                  // one reload at a time
};

}  // namespace postern::plugins::greylist
