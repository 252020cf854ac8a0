#pragma once
// The SMTP framing of AUTH (RFC 4954): when the command is allowed, and the
// reply for each way a SASL exchange (mail::SaslExchange) can fail. The
// exchange itself and the login throttle are the mail library's; checking a
// password is AuthBackend's (auth.hpp). Pure.

#include "core/smtp/reply.hpp"

#include "postern/mail/sasl.hpp"

#include <optional>

namespace postern::core::smtp {

/** The session's state as AUTH sees it. */
struct AuthContext {
  bool enabled = false;             // an AuthBackend is configured
  bool tls = false;                 // TLS is active
  bool cleartext_allowed = false;   // the listener allows AUTH before TLS
  bool ehlo = false;                // EHLO (not HELO) was accepted
  bool authenticated = false;       // AUTH already succeeded
  bool in_transaction = false;      // MAIL FROM was accepted
};

/** @return the refusal of an AUTH command (each counts as a protocol error), nullopt when it may start. */
std::optional<Reply> auth_refusal(const AuthContext& ctx);

/** 454 4.7.0: the client address is locked out by the login throttle. */
Reply auth_locked_reply();

/** 535 5.7.8: the credentials were refused. */
Reply auth_failed_reply();

/**
 * The reply for a failed exchange.
 * @return nullopt when the failure counts as a failed login (535 after the
 *   throttle's delay): credentials the exchange cannot yield (an empty user or
 *   password, PLAIN without its two NULs) and a foreign authorization identity
 *   (no proxy authorization).
 */
std::optional<Reply> sasl_error_reply(mail::SaslError error);

}  // namespace postern::core::smtp
