#include "core/smtp/relay_policy.hpp"

#include <fmt/format.h>

namespace postern::core::smtp {

bool may_relay(bool trusted, std::string_view auth_user) {
  return trusted || !auth_user.empty();
}

bool needs_directory(const SmtpConfig& cfg, const RcptTo& rcpt) {
  return cfg.recipients && !rcpt.suspicious && !local_part_is_routing(rcpt.mailbox);
}

std::optional<Reply> recipient_refusal(const SmtpConfig& cfg, const RcptTo& rcpt, bool relay_ok,
                                       const RcptCheck* check) {
  if (rcpt.suspicious) {
    // A relay trick is a syntax error for a client that may relay anyway, a relay attempt otherwise.
    if (relay_ok) return Reply{501, "5.1.3", "Bad recipient address syntax"};
    return Reply{554, "5.7.1", "Relay access denied"};
  }
  const Mailbox& mb = rcpt.mailbox;
  // Local or gateway domain, and a local part that cannot route elsewhere (%-hack, bang path).
  bool local = rcpt.postmaster || (cfg.accepts_domain(mb.domain) && !local_part_is_routing(mb));
  if (check) {
    // The directory knows which mailboxes exist (D1-D3); unknown users are
    // refused here so that nothing is accepted that would only bounce.
    const std::string who = clean_text(mb.str());
    const auto text = [&](std::string_view dflt) {
      return fmt::format("<{}>: {}", who, check->text.empty() ? dflt : clean_text(check->text));
    };
    switch (check->status) {
      case RcptStatus::Accept: local = true; break;
      case RcptStatus::NotOurs: break;
      case RcptStatus::UnknownUser:
        if (rcpt.postmaster) break;  // RFC 5321 §4.5.1: postmaster is always accepted
        return Reply{550, "5.1.1", text("Recipient address rejected: User unknown")};
      case RcptStatus::Disabled: return Reply{550, "5.2.1", text("Recipient address rejected: Mailbox disabled")};
      case RcptStatus::OverQuota: return Reply{452, "4.2.2", text("Mailbox full")};
      case RcptStatus::Refused: return Reply{550, "5.7.1", text("Recipient address rejected")};
      case RcptStatus::Loop: return Reply{554, "5.4.6", text("Recipient address rejected: routing loop")};
      case RcptStatus::TempFail: return Reply{451, "4.3.0", text("Recipient lookup failed; try again later")};
    }
  }
  if (!local && !relay_ok) {
    return Reply{554, "5.7.1", fmt::format("<{}>: Relay access denied", clean_text(mb.str()))};
  }
  return std::nullopt;
}

}  // namespace postern::core::smtp
