#pragma once
// Account password hashes (D2): argon2id through libargon2, stored in the
// PHC string format "$argon2id$v=19$m=65536,t=3,p=1$SALT_B64$HASH_B64".
// Verification also accepts the SMTP engine's "$pbkdf2-sha512$..." hashes
// (manifest <account>s, imported accounts). Comparison is constant-time
// (libargon2's argon2_verify, OpenSSL's CRYPTO_memcmp). Hashing is slow on
// purpose: never call it on an I/O thread.

#include <cstdint>
#include <string>
#include <string_view>

namespace postern::core::directory {

/** argon2id cost parameters (RFC 9106 §4 second recommended option by default). */
struct HashParams {
  uint32_t time_cost = 3;         // passes
  uint32_t memory_kib = 65536;    // 64 MiB
  uint32_t parallelism = 1;       // lanes
};

/**
 * Hashes a password with argon2id and a 16-octet random salt.
 * @return the encoded PHC string. @throws std::runtime_error if libargon2 fails (bad parameters, no memory).
 */
std::string hash_password(std::string_view password, const HashParams& params);

/**
 * Checks a password against an argon2id/argon2i/argon2d or $pbkdf2-sha512$ hash.
 * @return false for a wrong password, an empty or "!"-locked hash, or a malformed hash.
 */
bool verify_password(std::string_view password, std::string_view encoded);

/** Whether `encoded` is a hash verify_password() understands (not whether it is usable). */
bool is_supported_hash(std::string_view encoded);

/** The marker stored for an account that has no usable password yet (postmaster at first start). */
inline constexpr std::string_view kNoPassword = "!";

}  // namespace postern::core::directory
