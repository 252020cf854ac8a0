#pragma once
/**
 * @file dnsbl.hpp
 * The dnsbl filter: DNS blocklists on the client address (connect), on the
 * sender domain and HELO name (mail_from) and on the hosts of URLs in the
 * body (data_end), plus a local whitelist/blacklist of addresses and
 * domains. README.md in this directory is the user's documentation.
 *
 * Threading: hooks run on session strands, DNS answers and timers on I/O
 * threads. The settings are immutable after init and shared by pointer; the
 * resolved domain sets lock internally; the state of one stage's lookups
 * (StageRun) locks its own mutex and is kept alive by its DNS callbacks.
 */

#include "address.hpp"
#include "lookup.hpp"
#include "resolved.hpp"
#include "settings.hpp"

#include <postern/sdk/sdk.hpp>

#include <memory>
#include <string>

namespace postern::plugins::dnsbl {

/** Where the client stands before any lookup. */
enum class Standing {
  Normal,       ///< look it up
  Whitelisted,  ///< <whitelist>: no lookups; the session is tagged whitelisted
  Excepted,     ///< <exceptions> address or MX host: no lookups
  Blacklisted,  ///< <blacklist>: 554 5.7.1 at connect
};

class DnsblPlugin {
 public:
  static constexpr const char* kName = "dnsbl";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx);

  /** Where `ip` stands; `entry` says which configured item matched (for logs). */
  Standing standing(const IpAddress& ip, std::string* entry = nullptr) const;

  const Settings& settings() const { return *settings_; }

 private:
  sdk::HookResult check_client(sdk::Event& ev);
  sdk::HookResult check_sender(sdk::Event& ev);
  sdk::HookResult check_body(sdk::Event& ev);

  /** Parses the peer address; nullopt (and no lookups) for a non-IP peer. */
  std::optional<IpAddress> peer(const sdk::Event& ev) const;
  bool name_excepted(std::string_view name) const;
  void mark_whitelisted(sdk::Event& ev) const;

  sdk::Host host_{nullptr, nullptr};
  std::shared_ptr<const Settings> settings_;
  std::shared_ptr<AnswerCache> cache_;
  std::unique_ptr<ResolvedDomains> white_domains_;
  std::unique_ptr<ResolvedDomains> black_domains_;
  std::unique_ptr<ResolvedDomains> mx_exceptions_;
};

}  // namespace postern::plugins::dnsbl
