#pragma once
// SMTP command lines and their arguments (RFC 5321 §4.1, §4.1.2): the verb,
// the HELO/EHLO domain, MAIL FROM and RCPT TO with their ESMTP parameters
// (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET/ENVID/NOTIFY/
// ORCPT, RFC 4954 AUTH=) and BDAT's chunk size (RFC 3030). Pure: every error
// comes back as the reply the client gets.

#include "core/queue/envelope.hpp"
#include "core/smtp/address.hpp"
#include "core/smtp/reply.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::core::smtp {

/** ASCII upper case. */
std::string upper(std::string_view s);
/** ASCII case-insensitive prefix test. */
bool starts_with_ci(std::string_view s, std::string_view prefix);

/** A command line split at its first space: the verb upper-cased, the rest as sent. */
struct Command {
  std::string verb;
  std::string_view arg;  // points into the line
};
Command split_command(std::string_view line);

/**
 * The HELO/EHLO argument (trailing spaces dropped): 1 to 255 printable ASCII
 * octets without spaces. @return the domain, or nullopt for a 501.
 */
std::optional<std::string_view> helo_argument(std::string_view arg);

/** MAIL FROM as parsed. */
struct MailFrom {
  std::string address;  // "" for the null reverse-path
  uint64_t declared_size = 0;  // SIZE=; UINT64_MAX for a valid value above 2^64
  queue::BodyType body = queue::BodyType::SevenBit;
  bool smtputf8 = false;
  std::string ret;
  std::string envid;
};

/**
 * Parses what follows "MAIL FROM:".
 * @return the reply for a syntax error (every one counts as a protocol error), nullopt when `out` is filled.
 */
std::optional<Reply> parse_mail_from(std::string_view arg, MailFrom& out);

/** RCPT TO as parsed. */
struct RcptTo {
  Mailbox mailbox;
  bool postmaster = false;  // "<postmaster>" without a domain (RFC 5321 §4.5.1)
  bool suspicious = false;  // a relay trick (PathStatus::Suspicious): parameters not parsed
  queue::EnvelopeRecipient params;  // notify and orcpt; the address is set by the caller
};

/**
 * Parses what follows "RCPT TO:".
 * @param smtputf8 the transaction's SMTPUTF8.
 * @param postmaster_domain the domain given to a bare "<postmaster>".
 * @return the reply for a syntax error (counted), nullopt when `out` is filled.
 */
std::optional<Reply> parse_rcpt_to(std::string_view arg, bool smtputf8, std::string_view postmaster_domain,
                                   RcptTo& out);

/** RFC 3461 NOTIFY: "NEVER" or a list of SUCCESS, FAILURE, DELAY; normalized to upper case. */
std::optional<std::string> parse_notify(std::string_view value);
/** RFC 3461 ORCPT: addr-type ";" xtext. */
bool valid_orcpt(std::string_view value);

/** "BDAT <chunk-size> [LAST]". */
struct BdatCommand {
  uint64_t size = 0;
  bool last = false;
};
/** @return nullopt when the size is unusable (the session cannot find the chunk's end). */
std::optional<BdatCommand> parse_bdat(std::string_view arg);

}  // namespace postern::core::smtp
