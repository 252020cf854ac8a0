#include "core/directory/password.hpp"

#include "core/smtp/auth.hpp"

#include <argon2.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <string>

namespace postern::core::directory {

namespace {

constexpr uint32_t kSaltLen = 16;
constexpr uint32_t kHashLen = 32;

bool is_argon2(std::string_view e) {
  return e.starts_with("$argon2id$") || e.starts_with("$argon2i$") || e.starts_with("$argon2d$");
}

argon2_type argon2_type_of(std::string_view e) {
  if (e.starts_with("$argon2id$")) return Argon2_id;
  if (e.starts_with("$argon2i$")) return Argon2_i;
  return Argon2_d;
}

}  // namespace

std::string hash_password(std::string_view password, const HashParams& p) {
  unsigned char salt[kSaltLen];
  if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("RAND_bytes failed");
  const size_t len = argon2_encodedlen(p.time_cost, p.memory_kib, p.parallelism, kSaltLen, kHashLen, Argon2_id);
  std::string encoded(len, '\0');
  const int rc = argon2id_hash_encoded(p.time_cost, p.memory_kib, p.parallelism, password.data(), password.size(),
                                       salt, sizeof salt, kHashLen, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) throw std::runtime_error(std::string("argon2id: ") + argon2_error_message(rc));
  encoded.resize(encoded.find('\0') == std::string::npos ? encoded.size() : encoded.find('\0'));
  return encoded;
}

bool verify_password(std::string_view password, std::string_view encoded) {
  if (is_argon2(encoded)) {
    // argon2_verify recomputes the hash with the stored parameters and
    // compares in constant time; it needs a NUL-terminated string.
    const std::string e(encoded);
    return argon2_verify(e.c_str(), password.data(), password.size(), argon2_type_of(encoded)) == ARGON2_OK;
  }
  if (encoded.starts_with("$pbkdf2-sha512$")) return smtp::verify_password(password, encoded);
  return false;
}

bool is_supported_hash(std::string_view encoded) {
  if (encoded.starts_with("$pbkdf2-sha512$")) return smtp::is_valid_password_hash(encoded);
  if (!is_argon2(encoded)) return false;
  // The PHC fields: $type$v=19$m=..,t=..,p=..$salt$hash
  size_t dollars = 0;
  for (char c : encoded) dollars += c == '$';
  return dollars == 5 && encoded.find("$m=") != std::string_view::npos;
}

}  // namespace postern::core::directory
