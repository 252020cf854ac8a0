#pragma once
// Address forms the directory accepts and how it compares them.
// Every key in the directory is the lower-cased address: domains compare
// case-insensitively (RFC 5321 §2.4) and so do local parts here, as every
// deployed MTA does; the case an operator typed is not kept.

#include <optional>
#include <string>
#include <string_view>

namespace postern::core::directory {

struct SplitAddress {
  std::string local;   // lower-case
  std::string domain;  // lower-case
  std::string str() const { return local + "@" + domain; }
};

/**
 * Lower-cases and splits "local@domain" at the last '@'; strips one pair of
 * angle brackets. A bare local part gets `default_domain`; a login may use
 * '%' instead of '@' ("alice%example.test", as CommuniGate allows for clients
 * that cut at '@') when `login` is true.
 * @return nullopt when empty, no local part or no domain.
 */
std::optional<SplitAddress> split_address(std::string_view address, std::string_view default_domain,
                                          bool login = false);

/**
 * Validates an address an operator stores (account, alias, list, member,
 * forward): a dot-atom local part (RFC 5322 §3.2.3, no quoted forms, no
 * routing characters % ! @) and an RFC 5321 domain.
 * @return the normalised address, or nullopt with `error` set.
 */
std::optional<SplitAddress> parse_stored_address(std::string_view address, std::string_view default_domain,
                                                 std::string* error);

/** Validates and lower-cases a domain name (no address literals). */
std::optional<std::string> parse_domain(std::string_view domain, std::string* error);

}  // namespace postern::core::directory
