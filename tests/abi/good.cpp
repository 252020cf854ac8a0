// A well-behaved SDK plugin for loader and bus tests: rejects the recipient
// whose local part is `reject-local`, tempfails `tempfail-local`, adds a
// header and a symbol at data_end; `data-end` = discard | quarantine,
// `add-rcpt` / `remove-rcpt` edit the envelope there; `reject-subject` rejects
// a message whose parsed Subject: is that text (data_end), and
// `delivery-reject-subject` does the same at the queue's delivery stage.
// ABI 1.3: `mail-from` (+ `mail-from-args`) changes the envelope sender and
// `replace-body` the body at data_end, then adds "X-Sender-Now: <mail_from()>";
// with either set, the rcpt_to hook tries the same edits (never allowed
// there) and rejects the recipient when one was accepted.
#include <postern/sdk/sdk.hpp>

namespace {

using namespace postern;

class Good {
 public:
  static constexpr const char* kName = "good";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx) {
    reject_ = ctx.config().attr_or("reject-local", "");
    tempfail_ = ctx.config().attr_or("tempfail-local", "");
    ctx.on_rcpt_to([this](sdk::Event& ev) {
      if ((mail_from_ && ev.set_mail_from(*mail_from_)) || (replace_body_ && ev.replace_body(*replace_body_)))
        return sdk::HookResult::reject("5.7.1", "good: sender or body edit accepted at rcpt_to", 550);
      return check(ev.rcpt());
    });
    data_end_verdict_ = ctx.config().attr_or("data-end", "");
    add_rcpt_ = ctx.config().attr_or("add-rcpt", "");
    remove_rcpt_ = ctx.config().attr_or("remove-rcpt", "");
    reject_subject_ = ctx.config().attr_or("reject-subject", "");
    delivery_reject_subject_ = ctx.config().attr_or("delivery-reject-subject", "");
    mail_from_ = ctx.config().attr("mail-from");
    mail_from_args_ = ctx.config().attr_or("mail-from-args", "");
    replace_body_ = ctx.config().attr("replace-body");
    if (!delivery_reject_subject_.empty()) {
      ctx.on_delivery([this](sdk::Event& ev) {
        const auto msg = ev.message();
        if (msg && msg->header("Subject") == std::optional<std::string_view>(delivery_reject_subject_))
          return sdk::HookResult::reject("5.7.1", "delivery refused by good", 550);
        return sdk::HookResult{};
      });
    }
    ctx.on_data_end([this](sdk::Event& ev) {
      if (!reject_subject_.empty()) {
        const auto msg = ev.message();
        if (msg && msg->header("Subject") == std::optional<std::string_view>(reject_subject_))
          return sdk::HookResult::reject("5.7.1", "subject refused by good", 550);
      }
      ev.add_header("X-Good", "seen");
      ev.add_symbol("GOOD_SEEN", 0.5, "test");
      if (!add_rcpt_.empty()) ev.add_recipient(add_rcpt_);
      if (!remove_rcpt_.empty()) ev.remove_recipient(remove_rcpt_);
      if (mail_from_ && !ev.set_mail_from(*mail_from_, mail_from_args_))
        return sdk::HookResult::tempfail("4.3.0", "good: sender change refused");
      if (replace_body_ && !ev.replace_body(*replace_body_))
        return sdk::HookResult::tempfail("4.3.0", "good: body replacement refused");
      if (mail_from_ || replace_body_) ev.add_header("X-Sender-Now", "<" + std::string(ev.mail_from()) + ">");
      if (data_end_verdict_ == "discard") return sdk::HookResult::discard();
      if (data_end_verdict_ == "quarantine") return sdk::HookResult::quarantine("held by good");
      return sdk::HookResult{};
    });
    return sdk::Status::ok();
  }

 private:
  sdk::HookResult check(std::string_view rcpt) const {
    const std::string_view local = rcpt.substr(0, rcpt.find('@'));
    if (!reject_.empty() && local == reject_) return sdk::HookResult::reject("5.7.1", "rejected by good", 550);
    if (!tempfail_.empty() && local == tempfail_) return sdk::HookResult::tempfail("4.7.1", "try later, says good");
    return sdk::HookResult{};
  }
  std::string reject_;
  std::string tempfail_;
  std::string data_end_verdict_;
  std::string add_rcpt_;
  std::string remove_rcpt_;
  std::string reject_subject_;
  std::string delivery_reject_subject_;
  std::optional<std::string> mail_from_;
  std::string mail_from_args_;
  std::optional<std::string> replace_body_;
};

}  // namespace

POSTERN_PLUGIN(Good)
