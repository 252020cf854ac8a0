#pragma once
/**
 * @file types.hpp
 * Value types of the Postern C++ SDK: stages, verdicts, status, hook results.
 * Header-only; wraps postern_abi.h. No exception crosses into the host.
 */

#include <postern/abi/v1/postern_abi.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace postern::sdk {

/** Stages and observer events (values equal postern_stage_t). */
enum class Stage : uint32_t {
  Connect = POSTERN_STAGE_CONNECT,
  Helo = POSTERN_STAGE_HELO,
  Auth = POSTERN_STAGE_AUTH,
  MailFrom = POSTERN_STAGE_MAIL_FROM,
  RcptTo = POSTERN_STAGE_RCPT_TO,
  DataStart = POSTERN_STAGE_DATA_START,
  Headers = POSTERN_STAGE_HEADERS,
  DataEnd = POSTERN_STAGE_DATA_END,
  Queued = POSTERN_STAGE_QUEUED,
  Delivery = POSTERN_STAGE_DELIVERY,
  Disconnect = POSTERN_STAGE_DISCONNECT,
  Delivered = POSTERN_EVENT_DELIVERED,
  Deferred = POSTERN_EVENT_DEFERRED,
  Bounced = POSTERN_EVENT_BOUNCED,
  Stored = POSTERN_EVENT_STORED,
};
inline constexpr size_t kStageCount = POSTERN_STAGE_COUNT_V1_0;

/** Verdicts (values equal postern_verdict_t). */
enum class Verdict : uint32_t {
  Continue = POSTERN_VERDICT_CONTINUE,
  Accept = POSTERN_VERDICT_ACCEPT,
  Reject = POSTERN_VERDICT_REJECT,
  TempFail = POSTERN_VERDICT_TEMPFAIL,
  Discard = POSTERN_VERDICT_DISCARD,
  Quarantine = POSTERN_VERDICT_QUARANTINE,
  Pending = POSTERN_VERDICT_PENDING,
};

enum class LogLevel : uint32_t {
  Trace = POSTERN_LOG_TRACE,
  Debug = POSTERN_LOG_DEBUG,
  Info = POSTERN_LOG_INFO,
  Warn = POSTERN_LOG_WARN,
  Error = POSTERN_LOG_ERROR,
};

/**
 * Whether the host's API table has `member` (a 1.0 host's table ends before
 * the 1.1 members). Every SDK call of a member added after 1.0 checks it.
 */
#define POSTERN_SDK_API_HAS(api, member) \
  ((api) != nullptr && (api)->struct_size >= offsetof(postern_host_api_v1_t, member) + sizeof((api)->member))

/** The session tag a connection filter sets for a trusted source (ABI 1.1). */
inline constexpr std::string_view kTagWhitelisted = POSTERN_TAG_WHITELISTED;

inline std::string_view to_string_view(postern_str_t s) { return {s.ptr, s.len}; }
inline postern_str_t to_abi(std::string_view s) { return postern_str_t{s.data(), s.size()}; }
/** Octets as an ABI buffer (borrowed, like to_abi). */
inline postern_bytes_t to_abi_bytes(std::string_view s) {
  return postern_bytes_t{reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

/** Outcome of init and of fallible SDK calls. */
class Status {
 public:
  static Status ok() { return Status{}; }
  static Status error(std::string message) { return Status{std::move(message)}; }
  bool is_ok() const { return !message_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const {
    static const std::string kEmpty;
    return message_ ? *message_ : kEmpty;
  }

 private:
  Status() = default;
  explicit Status(std::string m) : message_(std::move(m)) {}
  std::optional<std::string> message_;
};

/**
 * What a hook answers. Build with the named constructors:
 * `HookResult::reject("5.7.1", "Blocked by policy")`.
 */
class HookResult {
 public:
  HookResult() = default;
  static HookResult continue_() { return HookResult{}; }
  static HookResult accept() { return with(Verdict::Accept); }
  static HookResult discard() { return with(Verdict::Discard); }
  static HookResult quarantine(std::string text = {}) {
    auto r = with(Verdict::Quarantine);
    r.text_ = std::move(text);
    return r;
  }
  /** 5xx; `code` 0 means the engine's default for the stage (550 / 554). */
  static HookResult reject(std::string enhanced = {}, std::string text = {}, uint16_t code = 0) {
    auto r = with(Verdict::Reject);
    r.enhanced_ = std::move(enhanced);
    r.text_ = std::move(text);
    r.code_ = code;
    return r;
  }
  /** 4xx; `code` 0 means the engine's default (451). */
  static HookResult tempfail(std::string enhanced = {}, std::string text = {}, uint16_t code = 0) {
    auto r = with(Verdict::TempFail);
    r.enhanced_ = std::move(enhanced);
    r.text_ = std::move(text);
    r.code_ = code;
    return r;
  }
  /** The hook failed: the host applies the manifest's on-failure policy. */
  static HookResult failed(std::string why) {
    HookResult r;
    r.failed_ = true;
    r.text_ = std::move(why);
    return r;
  }
  /** Returned by Pending::result(); the real answer follows via the pending handle. */
  static HookResult pending() { return with(Verdict::Pending); }

  HookResult& disconnect(bool yes = true) {
    disconnect_ = yes;
    return *this;
  }

  Verdict verdict() const { return verdict_; }
  uint16_t code() const { return code_; }
  const std::string& enhanced() const { return enhanced_; }
  const std::string& text() const { return text_; }
  bool disconnects() const { return disconnect_; }
  bool is_failure() const { return failed_; }

  /** Fills the ABI struct; its strings borrow from *this. */
  void to_abi(postern_hook_result_t& out) const {
    out.verdict = static_cast<uint32_t>(verdict_);
    out.smtp_code = code_;
    out.enhanced = sdk::to_abi(enhanced_);
    out.text = sdk::to_abi(text_);
    out.flags = (disconnect_ ? POSTERN_RESULT_DISCONNECT : 0u) | (failed_ ? POSTERN_RESULT_ERROR : 0u);
  }

 private:
  static HookResult with(Verdict v) {
    HookResult r;
    r.verdict_ = v;
    return r;
  }
  Verdict verdict_ = Verdict::Continue;
  uint16_t code_ = 0;
  std::string enhanced_;
  std::string text_;
  bool disconnect_ = false;
  bool failed_ = false;
};

}  // namespace postern::sdk
