#pragma once
// SMTP AUTH (RFC 4954) support: the account source interface, a static
// account list from the manifest's <smtp> element (until the directory module
// provides accounts) and salted password hashes. The SASL exchange itself is
// the mail library's (postern/mail/sasl.hpp).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>


namespace postern::core::smtp {

/** Where AUTH checks credentials and MAIL FROM checks ownership. Thread-safe. */
class AuthBackend {
 public:
  virtual ~AuthBackend() = default;
  /**
   * Checks a user name and password. May block briefly (hashing); called on the session strand.
   * @return the canonical user name on success, nullopt otherwise.
   */
  virtual std::optional<std::string> authenticate(std::string_view user, std::string_view password) const = 0;
  /**
   * @param user a name authenticate() returned.
   * @param address a MAIL FROM address (no <>).
   * @return whether `user` may send as `address` (submission, RFC 6409 §6.1).
   */
  virtual bool owns_address(std::string_view user, std::string_view address) const = 0;
};

/** One account: <account user="alice@example.test" password-hash="..." addresses="a@x b@y"/>. */
struct StaticAccount {
  std::string user;
  std::string password_hash;
  std::vector<std::string> addresses;  // besides `user` itself when it is an address
};

/** AuthBackend over a fixed account list. */
class StaticAuthBackend : public AuthBackend {
 public:
  explicit StaticAuthBackend(std::vector<StaticAccount> accounts) : accounts_(std::move(accounts)) {}
  std::optional<std::string> authenticate(std::string_view user, std::string_view password) const override;
  bool owns_address(std::string_view user, std::string_view address) const override;
  size_t size() const { return accounts_.size(); }

 private:
  const StaticAccount* find(std::string_view user) const;
  std::vector<StaticAccount> accounts_;
};

/**
 * Hashes a password as "$pbkdf2-sha512$ITERATIONS$SALT_HEX$HASH_HEX"
 * (PBKDF2-HMAC-SHA512, 16-octet random salt, 64-octet key).
 */
std::string hash_password(std::string_view password, uint32_t iterations = 100000);

/** Checks a password against a hash_password() string in constant time; false for malformed hashes. */
bool verify_password(std::string_view password, std::string_view hash);

/** Whether `hash` is a well-formed hash_password() string. */
bool is_valid_password_hash(std::string_view hash);


}  // namespace postern::core::smtp
