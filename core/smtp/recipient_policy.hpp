#pragma once
// What the SMTP engine asks at RCPT TO about a recipient in one of our
// domains: does the mailbox exist, may it receive. Implemented by the
// directory (core/directory); the engine falls back to the manifest's
// <local-domain>/<relay-domain> lists when no policy is set or the policy
// answers NotOurs.

#include <functional>
#include <string>
#include <string_view>

namespace postern::core::smtp {

enum class RcptStatus {
  Accept,       // a local or gateway recipient that exists and may receive: 250
  NotOurs,      // not a domain the directory serves: relay rules decide
  UnknownUser,  // 550 5.1.1
  Disabled,     // 550 5.2.1
  OverQuota,    // 452 4.2.2
  Refused,      // 550 5.7.1 (e.g. a list the sender may not post to); text says why
  Loop,         // 554 5.4.6: the router or alias expansion loops (RFC 3463 routing loop)
  TempFail,     // 451 4.3.0 (directory unavailable)
};

struct RcptCheck {
  RcptStatus status = RcptStatus::NotOurs;
  std::string text;  // optional reply text; the engine has defaults
  /**
   * Set when only blocking I/O can finish the answer (e.g. the mailbox usage of
   * an account not yet in memory, for 452 4.2.2). The engine then runs it on
   * its worker pool, never on the session strand, and replies with its result
   * instead of `status`; the session reads its next command only after that,
   * so PIPELINING order holds. An exception from it gives 451 4.3.0.
   * OWNERSHIP: moved to the pool. THREADING: runs on a worker thread.
   */
  std::function<RcptCheck()> on_worker;
};

/**
 * THREADING: called concurrently from session strands. Must not block: answer
 * from memory, and hand what needs the disk back in RcptCheck::on_worker.
 */
class RecipientPolicy {
 public:
  virtual ~RecipientPolicy() = default;
  /**
   * @param address the RCPT address without <> (local@domain as the client gave it).
   * @param sender the transaction's MAIL FROM ("" for the null sender).
   */
  virtual RcptCheck check(std::string_view address, std::string_view sender) const = 0;
  /** Whether `domain` is local or gateway in the directory (for MAIL FROM and relay decisions). */
  virtual bool serves_domain(std::string_view domain) const = 0;
};

}  // namespace postern::core::smtp
