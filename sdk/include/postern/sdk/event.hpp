#pragma once
/**
 * @file event.hpp
 * What a hook works on: the event (session, transaction), the message, and
 * the Pending handle for hooks that answer later.
 */

#include <postern/sdk/host.hpp>
#include <postern/sdk/types.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::sdk {

/** One MIME part (see postern_mime_part_t). Views live as long as the message. */
struct MimePart {
  size_t index = 0;
  int32_t parent = -1;
  uint32_t depth = 0;
  std::string_view content_type;
  std::string_view charset;
  std::string_view filename;
  std::string_view disposition;
  std::string_view transfer_encoding;
  std::string_view section;
  uint64_t raw_offset = 0;
  uint64_t raw_length = 0;
};

/** The message of the transaction. Valid only during the hook call. */
class Message {
 public:
  Message(const postern_host_api_v1_t* api, const postern_message_t* msg) : api_(api), msg_(msg) {}

  /** The raw octets as received (CRLF, no dot-stuffing). */
  std::string_view raw() const {
    postern_bytes_t b = api_->message_raw(msg_);
    return {reinterpret_cast<const char*>(b.ptr), b.len};
  }
  size_t header_count() const { return api_->message_header_count(msg_); }
  /** The i-th header as (name, decoded value). */
  std::pair<std::string_view, std::string_view> header_at(size_t i) const {
    postern_str_t n{}, v{};
    api_->message_header_at(msg_, i, &n, &v);
    return {to_string_view(n), to_string_view(v)};
  }
  /** The nth header of that name (case-insensitive), decoded. */
  std::optional<std::string_view> header(std::string_view name, size_t nth = 0) const {
    postern_str_t v{};
    if (api_->message_header_find(msg_, to_abi(name), nth, &v) != POSTERN_OK) return std::nullopt;
    return to_string_view(v);
  }
  size_t part_count() const { return api_->message_part_count(msg_); }
  MimePart part(size_t i) const {
    postern_mime_part_t p{};
    p.struct_size = sizeof p;
    MimePart out;
    if (api_->message_part_at(msg_, i, &p) != POSTERN_OK) return out;
    out.index = i;
    out.parent = p.parent;
    out.depth = p.depth;
    out.content_type = to_string_view(p.content_type);
    out.charset = to_string_view(p.charset);
    out.filename = to_string_view(p.filename);
    out.disposition = to_string_view(p.disposition);
    out.transfer_encoding = to_string_view(p.transfer_encoding);
    out.section = to_string_view(p.section);
    out.raw_offset = p.raw_offset;
    out.raw_length = p.raw_length;
    return out;
  }
  /** The part's body with base64 / quoted-printable undone. */
  std::string_view part_body(size_t i) const {
    postern_bytes_t b{};
    if (api_->message_part_body(msg_, i, &b) != POSTERN_OK) return {};
    return {reinterpret_cast<const char*>(b.ptr), b.len};
  }

 private:
  const postern_host_api_v1_t* api_;
  const postern_message_t* msg_;
};

/**
 * A deferred hook answer. Copyable (reference counted) and thread-safe.
 * The hook completes with the first complete(); when the last copy goes
 * without one, it completes as Continue.
 */
class Pending {
 public:
  Pending() = default;
  Pending(const postern_host_api_v1_t* api, postern_pending_t* p) : api_(api), p_(p) {}
  Pending(const Pending& o) : api_(o.api_), p_(o.p_ ? o.api_->pending_retain(o.p_) : nullptr) {}
  Pending(Pending&& o) noexcept : api_(o.api_), p_(std::exchange(o.p_, nullptr)) {}
  Pending& operator=(Pending o) noexcept {
    std::swap(api_, o.api_);
    std::swap(p_, o.p_);
    return *this;
  }
  ~Pending() {
    if (p_ != nullptr) api_->pending_release(p_);
  }

  bool valid() const { return p_ != nullptr; }
  /** Adds a symbol; ignored once completed. */
  void add_symbol(std::string_view name, double weight, std::string_view detail = {}) const {
    if (p_) api_->pending_add_symbol(p_, to_abi(name), weight, to_abi(detail));
  }
  /** Completes the hook. @return false if it was already completed or timed out. */
  bool complete(const HookResult& r) const {
    if (!p_) return false;
    postern_hook_result_t out{};
    out.struct_size = sizeof out;
    r.to_abi(out);
    return api_->pending_complete(p_, &out) == POSTERN_OK;
  }
  /** Whether the host takes edits through a pending handle (ABI 1.3). */
  bool can_edit() const { return p_ != nullptr && POSTERN_SDK_API_HAS(api_, pending_rcpt_remove); }

  /**
   * Edits from the pending hook (ABI 1.3), from any thread before complete():
   * the same edits and rules as Event's, applied on the session's strand
   * with the completion, in call order; dropped with a late completion.
   * @return false when refused (bad argument, a stage that does not allow
   *   the edit, already completed or timed out, or a 1.2 host).
   */
  bool add_header(std::string_view name, std::string_view value, bool prepend = true) const {
    return can_edit() && api_->pending_header_add(p_, to_abi(name), to_abi(value), prepend ? 1 : 0) == POSTERN_OK;
  }
  bool change_header(std::string_view name, int32_t index, std::string_view value) const {
    return can_edit() && api_->pending_header_change(p_, to_abi(name), index, to_abi(value)) == POSTERN_OK;
  }
  bool remove_header(std::string_view name, int32_t index = -1) const {
    return can_edit() && api_->pending_header_remove(p_, to_abi(name), index) == POSTERN_OK;
  }
  bool add_recipient(std::string_view address) const {
    return can_edit() && api_->pending_rcpt_add(p_, to_abi(address)) == POSTERN_OK;
  }
  bool remove_recipient(std::string_view address) const {
    return can_edit() && api_->pending_rcpt_remove(p_, to_abi(address)) == POSTERN_OK;
  }

  /** Whether the host takes sender and body edits through a pending handle (ABI 1.3). */
  bool can_edit_sender_and_body() const { return p_ != nullptr && POSTERN_SDK_API_HAS(api_, pending_body_replace); }
  /**
   * Changes the envelope sender from the pending hook (ABI 1.3, data_end;
   * milter's CHGFROM): `address` without <> ("" = the null sender),
   * `esmtp_args` e.g. "RET=HDRS ENVID=x" (each replaces that parameter).
   * @return false when refused (not a reverse-path, a bad parameter, another
   *   stage, completed or timed out, or an older host).
   */
  bool set_mail_from(std::string_view address, std::string_view esmtp_args = {}) const {
    return can_edit_sender_and_body() &&
           api_->pending_mail_from_set(p_, to_abi(address), to_abi(esmtp_args)) == POSTERN_OK;
  }
  /**
   * Replaces the message body from the pending hook (ABI 1.3, data_end;
   * milter's REPLBODY): headers stay; CRLF or LF line ends; no NUL or bare CR.
   * @return false when refused (see set_mail_from; also a body too large).
   */
  bool replace_body(std::string_view body) const {
    return can_edit_sender_and_body() && api_->pending_body_replace(p_, to_abi_bytes(body)) == POSTERN_OK;
  }

  /** What the hook returns right after defer(). */
  HookResult result() const { return p_ ? HookResult::pending() : HookResult::continue_(); }

 private:
  const postern_host_api_v1_t* api_ = nullptr;
  postern_pending_t* p_ = nullptr;
};

/** The event a hook is called for. Valid only during the hook call. */
class Event {
 public:
  Event(postern_host_t* host, const postern_host_api_v1_t* api, postern_event_t* ev, Stage stage)
      : host_(host), api_(api), ev_(ev), stage_(stage) {}

  Stage stage() const { return stage_; }
  Host host() const { return Host(host_, api_); }

  /** A property, empty when unset. */
  std::string_view get(postern_property_t prop) const {
    postern_str_t out{};
    if (api_->event_get(ev_, prop, &out) != POSTERN_OK) return {};
    return to_string_view(out);
  }
  std::string_view session_id() const { return get(POSTERN_PROP_SESSION_ID); }
  std::string_view queue_id() const { return get(POSTERN_PROP_QUEUE_ID); }
  std::string_view peer_ip() const { return get(POSTERN_PROP_PEER_IP); }
  std::string_view helo() const { return get(POSTERN_PROP_HELO); }
  std::string_view auth_user() const { return get(POSTERN_PROP_AUTH_USER); }
  std::string_view mail_from() const { return get(POSTERN_PROP_MAIL_FROM); }
  std::string_view rcpt() const { return get(POSTERN_PROP_RCPT); }
  std::string_view listener() const { return get(POSTERN_PROP_LISTENER); }
  std::string_view tls_protocol() const { return get(POSTERN_PROP_TLS_PROTOCOL); }

  std::vector<std::string_view> recipients() const {
    std::vector<std::string_view> out;
    const size_t n = api_->event_rcpt_count(ev_);
    for (size_t i = 0; i < n; ++i) {
      postern_str_t s{};
      if (api_->event_rcpt_at(ev_, i, &s) == POSTERN_OK) out.push_back(to_string_view(s));
    }
    return out;
  }

  /** The message, from the headers stage on. */
  std::optional<Message> message() const {
    const postern_message_t* m = api_->event_message(ev_);
    if (m == nullptr) return std::nullopt;
    return Message(api_, m);
  }

  void add_symbol(std::string_view name, double weight, std::string_view detail = {}) const {
    api_->event_add_symbol(ev_, to_abi(name), weight, to_abi(detail));
  }
  double score() const { return api_->event_score(ev_); }

  /** Header edits, applied when the message is stored. */
  bool add_header(std::string_view name, std::string_view value, bool prepend = true) const {
    return api_->event_header_add(ev_, to_abi(name), to_abi(value), prepend ? 1 : 0) == POSTERN_OK;
  }
  bool change_header(std::string_view name, int32_t index, std::string_view value) const {
    return api_->event_header_change(ev_, to_abi(name), index, to_abi(value)) == POSTERN_OK;
  }
  bool remove_header(std::string_view name, int32_t index = -1) const {
    return api_->event_header_remove(ev_, to_abi(name), index) == POSTERN_OK;
  }
  bool add_recipient(std::string_view address) const {
    return api_->event_rcpt_add(ev_, to_abi(address)) == POSTERN_OK;
  }
  bool remove_recipient(std::string_view address) const {
    return api_->event_rcpt_remove(ev_, to_abi(address)) == POSTERN_OK;
  }

  /**
   * Changes the envelope sender at data_end (ABI 1.3; milter's CHGFROM):
   * `address` without <> ("" = the null sender), `esmtp_args` e.g.
   * "RET=HDRS ENVID=x BODY=8BITMIME" (each replaces that parameter, the
   * others are kept). Later hooks see the new mail_from().
   * @return false when refused (not a reverse-path, a bad parameter, another
   *   stage, or an older host).
   */
  bool set_mail_from(std::string_view address, std::string_view esmtp_args = {}) const {
    if (!POSTERN_SDK_API_HAS(api_, event_mail_from_set)) return false;
    return api_->event_mail_from_set(ev_, to_abi(address), to_abi(esmtp_args)) == POSTERN_OK;
  }
  /**
   * Replaces the message body at data_end (ABI 1.3; milter's REPLBODY): the
   * header section stays (keep Content-Type in step with change_header).
   * CRLF or LF line ends; NUL or a bare CR are refused, and so is a body
   * above max-message-size. @return false when refused or on an older host.
   */
  bool replace_body(std::string_view body) const {
    if (!POSTERN_SDK_API_HAS(api_, event_body_replace)) return false;
    return api_->event_body_replace(ev_, to_abi_bytes(body)) == POSTERN_OK;
  }

  /**
   * A session tag set by this or another plugin of the session (ABI 1.1);
   * nullopt when unset or on a 1.0 host. The view lives until the hook returns
   * or the next set_tag().
   */
  std::optional<std::string_view> tag(std::string_view key) const {
    if (!POSTERN_SDK_API_HAS(api_, event_tag_get)) return std::nullopt;
    postern_str_t out{};
    if (api_->event_tag_get(ev_, to_abi(key), &out) != POSTERN_OK) return std::nullopt;
    return to_string_view(out);
  }
  /**
   * Sets a session tag for the later stages and the other plugins of the
   * session ("postern.whitelisted" = "1": kTagWhitelisted). @return false on
   * a bad key/value, an event without a session, or a 1.0 host.
   */
  bool set_tag(std::string_view key, std::string_view value) const {
    if (!POSTERN_SDK_API_HAS(api_, event_tag_set)) return false;
    return api_->event_tag_set(ev_, to_abi(key), to_abi(value)) == POSTERN_OK;
  }
  /** Whether a connection filter marked the source as trusted (tag postern.whitelisted = "1"). */
  bool whitelisted() const { return tag(kTagWhitelisted) == std::optional<std::string_view>("1"); }

  /** Defers the hook: return `pending.result()` and complete it later from any thread. */
  Pending defer() const { return Pending(api_, api_->event_defer(ev_)); }

 private:
  postern_host_t* host_;
  const postern_host_api_v1_t* api_;
  postern_event_t* ev_;
  Stage stage_;
};

}  // namespace postern::sdk
