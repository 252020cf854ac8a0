#pragma once
// Who may send to whom (RFC 5321 §3.6, §7.1): the RCPT TO decision from the
// parsed address, the directory's answer (RecipientPolicy) and whether the
// client may relay (trusted network or authenticated). Pure: the directory's
// answer comes in as a value, looked up by the session.

#include "core/smtp/command.hpp"
#include "core/smtp/recipient_policy.hpp"
#include "core/smtp/reply.hpp"
#include "core/smtp/smtp_config.hpp"

#include <optional>
#include <string_view>

namespace postern::core::smtp {

/** A client may relay when it is in a trusted network or has authenticated. */
bool may_relay(bool trusted, std::string_view auth_user);

/** Whether the directory must be asked about `rcpt` (a policy is set and the local part cannot route elsewhere). */
bool needs_directory(const SmtpConfig& cfg, const RcptTo& rcpt);

/**
 * The RCPT decision.
 * @param check the directory's answer; null when needs_directory() is false.
 * @return the refusal (every one counts as a protocol error), nullopt to accept.
 */
std::optional<Reply> recipient_refusal(const SmtpConfig& cfg, const RcptTo& rcpt, bool relay_ok,
                                       const RcptCheck* check);

}  // namespace postern::core::smtp
