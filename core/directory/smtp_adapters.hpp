#pragma once
// The directory as the SMTP engine sees it: the RCPT check (RecipientPolicy),
// SMTP AUTH accounts (AuthBackend), and a chain of AuthBackends so that the
// manifest's static <smtp><account>s keep working next to the directory.

#include "core/directory/directory.hpp"
#include "core/smtp/auth.hpp"
#include "core/smtp/recipient_policy.hpp"

#include <memory>
#include <vector>

namespace postern::core::directory {

/**
 * RCPT checks from the directory's snapshot (never blocks). Maps resolve():
 * Ok -> Accept (OverQuota when the address is one local mailbox at or over
 * its quota), UnknownUser, Disabled, Refused (and Loop, with its reason) -> Refused, NotOurs.
 * When the mailbox has a quota and its usage is not cached, the quota part
 * comes back as RcptCheck::on_worker (Directory::over_quota on a worker).
 */
class DirectoryRecipientPolicy final : public smtp::RecipientPolicy {
 public:
  explicit DirectoryRecipientPolicy(std::shared_ptr<const Directory> dir) : dir_(std::move(dir)) {}
  smtp::RcptCheck check(std::string_view address, std::string_view sender) const override;
  bool serves_domain(std::string_view domain) const override;

 private:
  std::shared_ptr<const Directory> dir_;
};

/** SMTP AUTH against directory accounts with the SMTP AUTH service flag. */
class DirectoryAuthBackend final : public smtp::AuthBackend {
 public:
  explicit DirectoryAuthBackend(std::shared_ptr<const Directory> dir) : dir_(std::move(dir)) {}
  std::optional<std::string> authenticate(std::string_view user, std::string_view password) const override;
  bool owns_address(std::string_view user, std::string_view address) const override;

 private:
  std::shared_ptr<const Directory> dir_;
};

/**
 * Tries each backend in order; the first that accepts the credentials wins.
 * owns_address() asks every backend (a user name is one person whichever list holds it).
 */
class ChainAuthBackend final : public smtp::AuthBackend {
 public:
  explicit ChainAuthBackend(std::vector<std::shared_ptr<const smtp::AuthBackend>> backends)
      : backends_(std::move(backends)) {}
  std::optional<std::string> authenticate(std::string_view user, std::string_view password) const override;
  bool owns_address(std::string_view user, std::string_view address) const override;

 private:
  std::vector<std::shared_ptr<const smtp::AuthBackend>> backends_;
};

}  // namespace postern::core::directory
