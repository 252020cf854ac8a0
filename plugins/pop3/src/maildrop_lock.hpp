#pragma once
// pop3: one POP3 session per maildrop (RFC 1939 §8 exclusive-access lock).
// Process-wide: posternd is the only POP3 server of its store.

#include <memory>
#include <string>

namespace postern::plugins::pop3 {

/** Held while a session is in the TRANSACTION state; released when destroyed. */
class MaildropLock {
 public:
  /**
   * Takes the lock of `account` (canonical address, compared without case).
   * Thread-safe. @return nullptr when another session holds it ([IN-USE]).
   */
  static std::unique_ptr<MaildropLock> acquire(const std::string& account);
  ~MaildropLock();
  MaildropLock(const MaildropLock&) = delete;
  MaildropLock& operator=(const MaildropLock&) = delete;

 private:
  explicit MaildropLock(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

}  // namespace postern::plugins::pop3
