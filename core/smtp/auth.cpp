#include "core/smtp/auth.hpp"

#include "core/smtp/address.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fmt/format.h>

#include <stdexcept>

namespace postern::core::smtp {

namespace {

constexpr std::string_view kPrefix = "$pbkdf2-sha512$";

std::string to_hex(const unsigned char* data, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int h = v(hex[i]), l = v(hex[i + 1]);
    if (h < 0 || l < 0) return std::nullopt;
    out += static_cast<char>(h * 16 + l);
  }
  return out;
}

struct ParsedHash {
  uint32_t iterations = 0;
  std::string salt;
  std::string key;
};

std::optional<ParsedHash> parse_hash(std::string_view hash) {
  if (hash.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  hash.remove_prefix(kPrefix.size());
  size_t a = hash.find('$');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = hash.find('$', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  ParsedHash p;
  std::string_view iters = hash.substr(0, a);
  if (iters.empty() || iters.size() > 9) return std::nullopt;
  for (char c : iters) {
    if (c < '0' || c > '9') return std::nullopt;
    p.iterations = p.iterations * 10 + static_cast<uint32_t>(c - '0');
  }
  auto salt = from_hex(hash.substr(a + 1, b - a - 1));
  auto key = from_hex(hash.substr(b + 1));
  if (!salt || !key || salt->empty() || key->size() < 16 || p.iterations < 1) return std::nullopt;
  p.salt = std::move(*salt);
  p.key = std::move(*key);
  return p;
}

std::string pbkdf2(std::string_view password, std::string_view salt, uint32_t iterations, size_t len) {
  std::string out(len, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                        static_cast<int>(iterations), EVP_sha512(), static_cast<int>(len),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
  }
  return out;
}

}  // namespace

std::string hash_password(std::string_view password, uint32_t iterations) {
  unsigned char salt[16];
  if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("RAND_bytes failed");
  std::string s(reinterpret_cast<char*>(salt), sizeof salt);
  std::string key = pbkdf2(password, s, iterations, 64);
  return fmt::format("{}{}${}${}", kPrefix, iterations, to_hex(salt, sizeof salt),
                     to_hex(reinterpret_cast<const unsigned char*>(key.data()), key.size()));
}

bool is_valid_password_hash(std::string_view hash) {
  return parse_hash(hash).has_value();
}

bool verify_password(std::string_view password, std::string_view hash) {
  auto p = parse_hash(hash);
  if (!p) return false;
  std::string key = pbkdf2(password, p->salt, p->iterations, p->key.size());
  return CRYPTO_memcmp(key.data(), p->key.data(), key.size()) == 0;
}

const StaticAccount* StaticAuthBackend::find(std::string_view user) const {
  for (const auto& a : accounts_)
    if (iequals(a.user, user)) return &a;
  return nullptr;
}

std::optional<std::string> StaticAuthBackend::authenticate(std::string_view user, std::string_view password) const {
  const StaticAccount* a = find(user);
  if (!a) {
    // Spend the same time for an unknown user so that timing does not reveal accounts.
    static const std::string dummy = hash_password("dummy", 100000);
    (void)verify_password(password, dummy);
    return std::nullopt;
  }
  if (!verify_password(password, a->password_hash)) return std::nullopt;
  return a->user;
}

bool StaticAuthBackend::owns_address(std::string_view user, std::string_view address) const {
  const StaticAccount* a = find(user);
  if (!a) return false;
  auto same = [](std::string_view x, std::string_view y) {
    // Local parts are case-sensitive in theory; accounts here compare case-insensitively
    // like every deployed MTA does.
    return iequals(x, y);
  };
  if (same(a->user, address)) return true;
  for (const auto& addr : a->addresses)
    if (same(addr, address)) return true;
  return false;
}

}  // namespace postern::core::smtp
