#include "core/directory/password.hpp"
#include "core/smtp/auth.hpp"

#include <gtest/gtest.h>

namespace postern::core::directory {
namespace {

constexpr HashParams kCheap{1, 64, 1};

TEST(PasswordTest, Argon2idEncodedFormWithParameters) {
  const std::string h = hash_password("correct horse", HashParams{2, 256, 1});
  EXPECT_TRUE(h.starts_with("$argon2id$v=19$m=256,t=2,p=1$")) << h;
  EXPECT_TRUE(is_supported_hash(h));
  EXPECT_TRUE(verify_password("correct horse", h));
  EXPECT_FALSE(verify_password("correct horsE", h));
  EXPECT_FALSE(verify_password("", h));
}

TEST(PasswordTest, SaltMakesEveryHashDifferent) {
  const std::string a = hash_password("same", kCheap), b = hash_password("same", kCheap);
  EXPECT_NE(a, b);
  EXPECT_TRUE(verify_password("same", a));
  EXPECT_TRUE(verify_password("same", b));
}

TEST(PasswordTest, DefaultParametersAreTheDocumentedOnes) {
  HashParams p;
  EXPECT_EQ(p.time_cost, 3u);
  EXPECT_EQ(p.memory_kib, 65536u);
  EXPECT_EQ(p.parallelism, 1u);
}

TEST(PasswordTest, VerifiesPbkdf2HashesFromTheManifest) {
  const std::string h = smtp::hash_password("legacy", 1000);
  EXPECT_TRUE(is_supported_hash(h));
  EXPECT_TRUE(verify_password("legacy", h));
  EXPECT_FALSE(verify_password("Legacy", h));
}

TEST(PasswordTest, LockedMalformedAndUnknownHashesNeverVerify) {
  for (const char* h : {"", "!", "plain", "$1$abc$def", "$argon2id$v=19$m=64,t=1,p=1$AAAA", "$argon2id$garbage",
                        "$pbkdf2-sha512$x$y$z"}) {
    EXPECT_FALSE(verify_password("", h)) << h;
    EXPECT_FALSE(verify_password("plain", h)) << h;
  }
  EXPECT_FALSE(is_supported_hash("!"));
  EXPECT_FALSE(is_supported_hash(""));
}

TEST(PasswordTest, Utf8AndLongPasswords) {
  const std::string pw = "пароль-" + std::string(500, 'x');
  const std::string h = hash_password(pw, kCheap);
  EXPECT_TRUE(verify_password(pw, h));
  EXPECT_FALSE(verify_password(pw.substr(0, pw.size() - 1), h));
}

}  // namespace
}  // namespace postern::core::directory
