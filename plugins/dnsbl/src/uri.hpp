#pragma once
/**
 * @file uri.hpp
 * Host names of URLs in message text, for URI blocklists (SURBL style).
 *
 * Found: `http://` and `https://` URLs (any case) and bare `www.` or `WWW.`
 * names at a word start, in plain text and in HTML (attribute values are plain text to
 * this scanner). The host is the URL's authority without user info and port,
 * with %XX escapes undone, lower-cased, without a trailing dot.
 *
 * Not found (documented limits): internationalised host names written in
 * Unicode (their xn-- form is found), IPv6 literals, IPv4 addresses written
 * as one number or in hex/octal, URLs split by HTML entities or markup, and
 * schemes other than http/https.
 */

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace postern::plugins::dnsbl {

/**
 * Appends the hosts of the URLs in `text` to `out`, skipping hosts already in
 * `out`, until `out` holds `limit` hosts. Hosts are valid DNS names of two or
 * more labels, or dotted-quad IPv4 addresses. At most 4096 URLs are examined
 * per call (a body made of URLs costs bounded time).
 * @return false when `limit` or the URL budget was reached (more hosts may follow).
 */
bool extract_url_hosts(std::string_view text, size_t limit, std::vector<std::string>& out);

/**
 * The registered domain of a host name (what URI lists list): the last two
 * labels, or the last three when the last two form a two-level public suffix
 * of the built-in list (co.uk, com.au, ...). This is not the full Public
 * Suffix List: a host under a suffix that is not built in, or under a private
 * suffix (blogspot.com), is reduced to two labels. IPv4 addresses are returned
 * unchanged.
 */
std::string registered_domain(std::string_view host);

/** Whether `host` is a dotted-quad IPv4 address. */
bool is_ipv4_literal(std::string_view host);

}  // namespace postern::plugins::dnsbl
