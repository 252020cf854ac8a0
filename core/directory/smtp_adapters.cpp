#include "core/directory/smtp_adapters.hpp"

#include <fmt/format.h>

namespace postern::core::directory {

smtp::RcptCheck DirectoryRecipientPolicy::check(std::string_view address, std::string_view sender) const {
  const Resolution r = dir_->resolve(address, sender);
  switch (r.status) {
    case Resolution::Status::Ok:
      // One full mailbox refuses the address; a list or an alias with one full
      // member still delivers to the others (the store tempfails that copy).
      if (r.targets.size() == 1 && r.targets.front().kind == Target::Kind::Local) {
        const std::string& account = r.targets.front().address;
        const std::optional<bool> over = dir_->over_quota_cached(account);
        if (!over) {
          // The usage is not in memory: the engine reads it on a worker, not on the strand.
          smtp::RcptCheck later{smtp::RcptStatus::Accept, "", {}};
          later.on_worker = [dir = dir_, account]() -> smtp::RcptCheck {
            return {dir->over_quota(account) ? smtp::RcptStatus::OverQuota : smtp::RcptStatus::Accept, "", {}};
          };
          return later;
        }
        if (*over) return {smtp::RcptStatus::OverQuota, "", {}};
      }
      return {smtp::RcptStatus::Accept, "", {}};
    case Resolution::Status::NotOurs: return {smtp::RcptStatus::NotOurs, "", {}};
    case Resolution::Status::UnknownUser: return {smtp::RcptStatus::UnknownUser, "", {}};
    case Resolution::Status::Disabled: return {smtp::RcptStatus::Disabled, "", {}};
    case Resolution::Status::Refused:
      return {smtp::RcptStatus::Refused, fmt::format("Recipient address rejected: {}", r.reason), {}};
    case Resolution::Status::Loop:
      return {smtp::RcptStatus::Loop, fmt::format("Recipient address rejected: routing loop ({})", r.reason), {}};
  }
  return {smtp::RcptStatus::TempFail, "", {}};
}

bool DirectoryRecipientPolicy::serves_domain(std::string_view domain) const {
  return dir_->is_local_domain(domain) || dir_->is_gateway_domain(domain);
}

std::optional<std::string> DirectoryAuthBackend::authenticate(std::string_view user, std::string_view password) const {
  return dir_->authenticate(user, password, kSmtpAuth);
}

bool DirectoryAuthBackend::owns_address(std::string_view user, std::string_view address) const {
  return dir_->owns_address(user, address);
}

std::optional<std::string> ChainAuthBackend::authenticate(std::string_view user, std::string_view password) const {
  for (const auto& b : backends_) {
    if (auto who = b->authenticate(user, password)) return who;
  }
  return std::nullopt;
}

bool ChainAuthBackend::owns_address(std::string_view user, std::string_view address) const {
  for (const auto& b : backends_) {
    if (b->owns_address(user, address)) return true;
  }
  return false;
}

}  // namespace postern::core::directory
