#pragma once
// The envelope of one message as the SMTP engine decides it and the spool
// stores it (docs/spool.md). Plain data: no I/O, no Asio.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::queue {

/** One envelope recipient with its RFC 3461 parameters. */
struct EnvelopeRecipient {
  std::string address;  // without <>
  std::string notify;   // "" (not given), "NEVER", or e.g. "SUCCESS,FAILURE,DELAY"
  std::string orcpt;    // "" or "addr-type;xtext" as received (e.g. "rfc822;bob@example.org")
};

/** RFC 6152 / RFC 3030 BODY= of the transaction. */
enum class BodyType { SevenBit, EightBitMime, BinaryMime };
std::string_view body_type_name(BodyType body);
std::optional<BodyType> body_type_from_name(std::string_view name);

/** The envelope of one message: everything the SMTP transaction decided. */
struct Envelope {
  std::string queue_id;
  std::string mail_from;  // without <>; "" is the null sender
  std::vector<EnvelopeRecipient> recipients;
  std::string envid;      // RFC 3461 ENVID (xtext as received), "" if absent
  std::string ret;        // "FULL", "HDRS" or ""
  std::chrono::system_clock::time_point received_at{};
  std::string peer;       // client IP address
  std::string helo;
  std::string auth_user;  // "" if not authenticated
  BodyType body = BodyType::SevenBit;
  bool smtputf8 = false;
  /** Who made the message: "" (an SMTP client), "dsn" (our delivery status
   *  notification), "double-bounce" (a failed DSN reported to the postmaster),
   *  "resend" (posternctl queue resend). Written only when not empty. */
  std::string origin;
  /** origin "plugin" (ABI 1.3 inject): the manifest name of the injecting plugin. */
  std::string injected_by;
  /** Plugins whose queue-side hooks this message skips ("*": all); inject's skip list. */
  std::vector<std::string> skip_filters;
};

}  // namespace postern::core::queue
