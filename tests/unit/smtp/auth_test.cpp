#include "core/smtp/auth.hpp"

#include <gtest/gtest.h>

namespace postern::core::smtp {
namespace {

TEST(PasswordHashTest, VerifiesOnlyTheRightPassword) {
  std::string h = hash_password("s3cret", 1000);
  EXPECT_TRUE(is_valid_password_hash(h));
  EXPECT_TRUE(verify_password("s3cret", h));
  EXPECT_FALSE(verify_password("s3cret ", h));
  EXPECT_FALSE(verify_password("", h));
  EXPECT_NE(hash_password("s3cret", 1000), h) << "salted";
}

TEST(PasswordHashTest, RejectsMalformedHashes) {
  for (const char* bad : {"", "plain", "$pbkdf2-sha512$", "$pbkdf2-sha512$10$zz$00",
                          "$pbkdf2-sha512$0$00$00000000000000000000000000000000",
                          "$6$salt$abcdef", "$pbkdf2-sha512$10$00$0011"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(is_valid_password_hash(bad));
    EXPECT_FALSE(verify_password("x", bad));
  }
}

TEST(PasswordHashTest, MatchesAKnownVector) {
  // python3 -c "import hashlib;print(hashlib.pbkdf2_hmac('sha512',b'pw',bytes.fromhex('00112233'),10).hex())"
  const std::string h =
      "$pbkdf2-sha512$10$00112233$"
      "56cb35d4e734ecc868b73933723a148ef986f61b15b3b1779f4f80fe2f5eed1c"
      "d7fd1e816a7d4dff9fd745c6a5cdac32a406cd91cfd4765f9f74de0c92ce2663";
  EXPECT_TRUE(is_valid_password_hash(h));
  EXPECT_TRUE(verify_password("pw", h));
  EXPECT_FALSE(verify_password("pW", h));
}

TEST(StaticAuthBackendTest, AuthenticatesAndChecksOwnership) {
  StaticAuthBackend b({{"alice@example.test", hash_password("pw", 1000), {"alias@example.test"}}});
  EXPECT_EQ(b.authenticate("alice@example.test", "pw"), "alice@example.test");
  EXPECT_EQ(b.authenticate("ALICE@example.test", "pw"), "alice@example.test");
  EXPECT_FALSE(b.authenticate("alice@example.test", "wrong"));
  EXPECT_FALSE(b.authenticate("bob@example.test", "pw"));
  EXPECT_TRUE(b.owns_address("alice@example.test", "alice@example.test"));
  EXPECT_TRUE(b.owns_address("alice@example.test", "alias@example.test"));
  EXPECT_FALSE(b.owns_address("alice@example.test", "bob@example.test"));
  EXPECT_FALSE(b.owns_address("nobody", "alice@example.test"));
}

}  // namespace
}  // namespace postern::core::smtp
