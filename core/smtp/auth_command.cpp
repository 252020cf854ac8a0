#include "core/smtp/auth_command.hpp"

namespace postern::core::smtp {

std::optional<Reply> auth_refusal(const AuthContext& ctx) {
  if (!ctx.enabled) return Reply{502, "5.5.1", "Error: authentication not enabled"};
  if (!ctx.tls && !ctx.cleartext_allowed) {
    return Reply{538, "5.7.11", "Encryption required for requested authentication mechanism"};
  }
  if (!ctx.ehlo) return Reply{503, "5.5.1", "Error: send EHLO first"};
  if (ctx.authenticated) return Reply{503, "5.5.1", "Error: already authenticated"};
  if (ctx.in_transaction) return Reply{503, "5.5.1", "Error: MAIL transaction in progress"};
  return std::nullopt;
}

Reply auth_locked_reply() {
  return Reply{454, "4.7.0", "Too many authentication failures, try again later"};
}

Reply auth_failed_reply() {
  return Reply{535, "5.7.8", "Error: authentication failed"};
}

std::optional<Reply> sasl_error_reply(mail::SaslError error) {
  switch (error) {
    case mail::SaslError::Cancelled: return Reply{501, "5.0.0", "Authentication cancelled"};
    case mail::SaslError::BadBase64: return Reply{501, "5.5.2", "Error: invalid base64 data"};
    case mail::SaslError::TooLong: return Reply{500, "5.5.6", "Error: authentication exchange line too long"};
    case mail::SaslError::Malformed:
    case mail::SaslError::AuthzidNotAllowed: return std::nullopt;
    case mail::SaslError::Finished: break;
  }
  return Reply{503, "5.5.1", "Error: no authentication exchange in progress"};
}

}  // namespace postern::core::smtp
