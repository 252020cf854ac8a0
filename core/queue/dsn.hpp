#pragma once
// Delivery status notifications (RFC 3464, RFC 3461; RFC 6533 for SMTPUTF8
// messages): who gets one (NOTIFY, the null sender), and the
// multipart/report message itself. Pure functions; the queue manager spools
// the result like any other message. Design: docs/queue.md.

#include "core/queue/spool.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::queue {

enum class DsnKind { Failure, Delay, Success };

/**
 * Whether a recipient with this NOTIFY value wants a DSN of `kind`
 * (RFC 3461 §4.1). An absent NOTIFY means FAILURE,DELAY (our choice, the
 * common one); NEVER means none.
 */
bool notify_wants(std::string_view notify, DsnKind kind);

/** Decodes RFC 3461 §4 xtext ("+2B" -> "+"); invalid escapes are kept as written. */
std::string xtext_decode(std::string_view text);

/** One recipient's block of the message/delivery-status part. */
struct DsnRecipient {
  std::string final_recipient;  // the address the status is about (after alias expansion)
  std::string orcpt;            // ORCPT as received ("rfc822;bob%40x" in xtext) or ""
  std::string action;           // failed | delayed | delivered | relayed | expanded
  std::string status;           // "5.1.1"
  std::string remote_mta;       // host name of the peer, "" when none
  std::string diagnostic;       // "550 5.1.1 User unknown" (a reply, or our own text)
  bool smtp_diagnostic = true;  // Diagnostic-Code type: smtp, or x-postern for our own texts
  std::chrono::system_clock::time_point last_attempt{};
  std::chrono::system_clock::time_point will_retry_until{};  // Delay only
};

struct DsnRequest {
  DsnKind kind = DsnKind::Failure;
  const Envelope* original = nullptr;
  std::string_view original_message;  // CRLF
  std::string to;                     // normally the original sender; the postmaster for a double bounce
  std::string reporting_mta;          // our server name
  std::string queue_id;               // the new message's id
  std::chrono::system_clock::time_point now{};
  std::vector<DsnRecipient> recipients;
  uint64_t bounce_size_limit = 64 * 1024;        // RET absent: whole message up to this size
  uint64_t full_return_limit = 10 * 1024 * 1024; // RET=FULL: whole message up to this size
  std::string origin = "dsn";                    // the new envelope's origin
};

struct DsnMessage {
  Envelope envelope;  // null sender, one recipient (`to`), origin set
  std::string message;
};

/** Builds the notification. The message is CRLF text, lines of at most 998 octets. */
DsnMessage compose_dsn(const DsnRequest& request);

/** RFC 5322 date-time in UTC ("Tue, 18 Nov 2025 10:15:57 +0000"). */
std::string rfc5322_date(std::chrono::system_clock::time_point t);

}  // namespace postern::core::queue
