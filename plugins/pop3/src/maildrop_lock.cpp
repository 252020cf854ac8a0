#include "maildrop_lock.hpp"

#include <cctype>
#include <mutex>
#include <unordered_set>

namespace postern::plugins::pop3 {
namespace {

struct Registry {
  std::mutex mutex;
  std::unordered_set<std::string> held;
};

Registry& registry() {
  // Shared by every instance of the plugin in the process (a reload keeps
  // the shared object loaded, so old and new sessions see one registry).
  static Registry r;
  return r;
}

}  // namespace

std::unique_ptr<MaildropLock> MaildropLock::acquire(const std::string& account) {
  std::string key = account;
  for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  if (!r.held.insert(key).second) return nullptr;
  return std::unique_ptr<MaildropLock>(new MaildropLock(std::move(key)));
}

MaildropLock::~MaildropLock() {
  auto& r = registry();
  std::lock_guard lock(r.mutex);
  r.held.erase(key_);
}

}  // namespace postern::plugins::pop3
