#pragma once
// Slowing clients down: the RCPT tarpit (against address harvesting and bulk
// senders) and the settings of the mail library's login throttle for AUTH
// (postern::mail::LoginThrottle: a growing delay per failure, a lockout per
// client address). Pure: the session waits the delays.

#include "core/smtp/smtp_config.hpp"

#include "postern/mail/throttle.hpp"

#include <chrono>
#include <cstddef>

namespace postern::core::smtp {

/**
 * The delay before answering a RCPT.
 * @param rcpt_attempts RCPT commands of the transaction, this one included.
 * @param exempt a trusted network or an authenticated client (a mailing to 60 colleagues is normal).
 * @return zero for no delay.
 */
std::chrono::milliseconds tarpit_delay(const SmtpConfig& cfg, size_t rcpt_attempts, bool exempt);

/**
 * The login throttle's policy from <smtp>'s AUTH settings: auth-failure-delay
 * doubled per failure up to auth-failure-delay-max; auth-lockout-failures
 * failures from one address within auth-lockout-time lock it out for as long.
 */
mail::ThrottleSettings login_throttle_settings(const SmtpConfig& cfg);

}  // namespace postern::core::smtp
