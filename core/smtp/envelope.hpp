#pragma once
// One mail transaction as the engine records it (MAIL FROM ... end of data)
// and what it becomes: the Received: trace field (RFC 5321 §4.4, RFC 3848
// "with" keywords) and the spool envelope, hooks' recipient edits applied.
// Pure.

#include "core/event/event.hpp"
#include "core/queue/envelope.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::smtp {

/** The engine's side of one transaction (the hooks see event::Transaction). */
struct MailTransaction {
  bool active = false;  // MAIL FROM accepted
  std::string mail_from;
  std::vector<queue::EnvelopeRecipient> rcpts;
  size_t rcpt_attempts = 0;  // RCPT commands, accepted or not (tarpit, RFC 2920 §3.1 reply)
  std::string envid;
  std::string ret;
  queue::BodyType body = queue::BodyType::SevenBit;
  bool smtputf8 = false;
  uint64_t declared_size = 0;
  bool bdat = false;         // RFC 3030: BDAT started this transaction's body
  bool bdat_failed = false;  // a refused BDAT: later chunks are read and dropped
  std::chrono::system_clock::time_point received_at{};
};

/** How the client came in, for the trace field. */
struct Transport {
  bool esmtp = false;  // EHLO, not HELO
  bool tls = false;
  int tls_bits = 0;
};

/** RFC 5322 §3.3 date-time in UTC ("Mon, 07 Dec 2026 20:56:01 +0000"). */
std::string rfc5322_date(std::chrono::system_clock::time_point tp);

/** RFC 3848 / RFC 6531 §3.7.4 "with" keyword: SMTP, ESMTP[S][A], UTF8SMTP[S][A]. */
std::string protocol_name(bool smtputf8, bool esmtp, bool tls, bool authenticated);

/** The Received: field we prepend, CRLF-terminated. */
std::string received_header(const event::SessionInfo& session, const MailTransaction& txn, std::string_view queue_id,
                            const Transport& transport);

/**
 * The spool envelope: the transaction's recipients with the hooks' removals
 * (case-insensitive) and additions applied, and the session's facts.
 */
queue::Envelope build_envelope(const MailTransaction& txn, const event::Transaction& hooks,
                               const event::SessionInfo& session);

}  // namespace postern::core::smtp
