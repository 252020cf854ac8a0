#include "core/smtp/auth_command.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

TEST(AuthCommandTest, RefusalsInRfc4954Order) {
  AuthContext ok{true, true, false, true, false, false};
  EXPECT_FALSE(auth_refusal(ok));
  struct Case {
    AuthContext ctx;
    int code;
  };
  const Case cases[] = {
      {{false, true, false, true, false, false}, 502},  // not enabled
      {{true, false, false, true, false, false}, 538},  // no TLS, no cleartext
      {{true, false, true, false, false, false}, 503},  // cleartext allowed, but HELO not EHLO
      {{true, true, false, true, true, false}, 503},    // already authenticated
      {{true, true, false, true, false, true}, 503},    // inside a transaction
  };
  for (const Case& c : cases) {
    const auto r = auth_refusal(c.ctx);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->code, c.code) << r->text;
  }
}

TEST(AuthCommandTest, SaslErrorsMapToRepliesOrFailedLogins) {
  EXPECT_EQ(sasl_error_reply(mail::SaslError::Cancelled)->code, 501);
  EXPECT_EQ(sasl_error_reply(mail::SaslError::Cancelled)->enhanced, "5.0.0");
  EXPECT_EQ(sasl_error_reply(mail::SaslError::BadBase64)->enhanced, "5.5.2");
  EXPECT_EQ(sasl_error_reply(mail::SaslError::TooLong)->code, 500);
  EXPECT_FALSE(sasl_error_reply(mail::SaslError::Malformed));
  EXPECT_FALSE(sasl_error_reply(mail::SaslError::AuthzidNotAllowed));
  EXPECT_EQ(auth_failed_reply().code, 535);
  EXPECT_EQ(auth_locked_reply().code, 454);
}

}  // namespace
}  // namespace postern::core::smtp
