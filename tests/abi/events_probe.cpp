// ABI 1.3 probe. At data_end it defers and, from its own thread after
// `delay` ms, edits through the pending handle, then completes:
//   add-header="Name: value"  remove-header="Name"  add-rcpt / remove-rcpt
//   mail-from="new@example" (+ mail-from-args="RET=HDRS")  replace-body="text"
//   mode = complete | late (completes after the host's timeout: nothing may
//          apply) | error (completes with POSTERN_RESULT_ERROR) | release
//          (drops the handle without completing: Continue) | checks (tries
//          invalid edits first and adds "X-Checks: refused" when every one
//          was refused, else "X-Checks: accepted <which>")
//   verdict = continue | quarantine
// At rcpt_to it also defers and tries a recipient, a sender and a body edit
// (never allowed there): the rcpt is rejected when one was accepted.
// With `events-log` set it subscribes to mailbox events and appends one line
// per event to <state dir>/<events-log>:
//   <kind> actor=<a> account=<acct> folder=<f> target=<t> uids=1,2 target-uids=3,4 size=<n>
#include <postern/sdk/sdk.hpp>

#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace postern;

std::string join(const std::vector<uint32_t>& v) {
  std::string out;
  for (uint32_t u : v) out += (out.empty() ? "" : ",") + std::to_string(u);
  return out;
}

std::string_view kind_name(postern_mbox_event_kind_t k) {
  switch (k) {
    case POSTERN_MBOX_EVENT_STORED: return "stored";
    case POSTERN_MBOX_EVENT_COPIED: return "copied";
    case POSTERN_MBOX_EVENT_MOVED: return "moved";
    case POSTERN_MBOX_EVENT_EXPUNGED: return "expunged";
    case POSTERN_MBOX_EVENT_FLAGS: return "flags";
  }
  return "unknown";
}

class EventsProbe {
 public:
  static constexpr const char* kName = "events_probe";
  static constexpr const char* kVersion = "1.0.0";

  ~EventsProbe() {
    for (auto& t : threads_) t.join();
  }

  sdk::Status init(sdk::InitContext& ctx) {
    const sdk::Config c = ctx.config();
    mode_ = c.attr_or("mode", "complete");
    delay_ = std::chrono::milliseconds(c.integer("delay").value_or(30));
    quarantine_ = c.attr_or("verdict", "continue") == "quarantine";
    add_rcpt_ = c.attr_or("add-rcpt", "");
    remove_rcpt_ = c.attr_or("remove-rcpt", "");
    remove_header_ = c.attr_or("remove-header", "");
    if (auto v = c.attr("mail-from")) mail_from_ = std::string(*v);
    mail_from_args_ = c.attr_or("mail-from-args", "");
    if (auto v = c.attr("replace-body")) replace_body_ = std::string(*v);
    const std::string header = c.attr_or("add-header", "");
    if (const auto colon = header.find(':'); colon != std::string::npos) {
      header_name_ = header.substr(0, colon);
      header_value_ = header.substr(colon + 1);
      if (!header_value_.empty() && header_value_[0] == ' ') header_value_.erase(0, 1);
    }
    ctx.on_data_end([this](sdk::Event& ev) { return on_data_end(ev); });
    ctx.on_rcpt_to([this](sdk::Event& ev) { return on_rcpt(ev); });
    if (auto log = c.attr("events-log")) {
      sdk::Host host = ctx.host();
      path_ = (host.state_dir() / std::string(*log)).string();
      if (host.on_mailbox_events(POSTERN_MBOX_MASK_ALL, [this](const sdk::MailboxEvent& e) { record(e); }) == 0)
        return sdk::Status::error("events_probe: the host refused mbox_events_subscribe");
    }
    return sdk::Status::ok();
  }

 private:
  sdk::HookResult on_rcpt(sdk::Event& ev) {
    sdk::Pending pending = ev.defer();
    // Recipients may change only at data_end: a pending rcpt_to hook must be refused too.
    if (pending.add_recipient("extra@example.test") || pending.set_mail_from("other@example.test") ||
        pending.replace_body("new body\r\n")) {
      pending.complete(sdk::HookResult::reject("5.7.1", "events_probe: edit accepted at rcpt_to", 550));
    }
    return pending.result();
  }

  sdk::HookResult on_data_end(sdk::Event& ev) {
    sdk::Pending pending = ev.defer();
    std::lock_guard lock(mu_);
    threads_.emplace_back([this, pending]() mutable { work(std::move(pending)); });
    return pending.result();
  }

  void work(sdk::Pending pending) {
    std::this_thread::sleep_for(delay_);
    if (mode_ == "checks") {
      std::string accepted;
      if (pending.add_header("Bad:Name", "x")) accepted += " colon-name";
      if (pending.add_header("X-Inject", "a\r\nBcc: victim@example.test")) accepted += " crlf-value";
      if (pending.add_header("X-Inject", std::string("a\0b", 3))) accepted += " nul-value";
      if (pending.change_header("Subject", -1, "x")) accepted += " negative-index";
      if (pending.add_recipient("not-an-address")) accepted += " bad-rcpt";
      if (pending.add_recipient("<a@b.example>")) accepted += " bracket-rcpt";
      if (pending.remove_recipient("nobody@nowhere.example")) accepted += " unknown-rcpt";
      if (pending.set_mail_from("no-at-sign")) accepted += " bad-sender";
      if (pending.set_mail_from("<a@b.example>")) accepted += " bracket-sender";
      if (pending.set_mail_from("a@b.example", "RET=BOGUS")) accepted += " bad-ret";
      if (pending.set_mail_from("a@b.example", "X-UNKNOWN=1")) accepted += " unknown-param";
      if (pending.set_mail_from("a@b.example", "RET=FULL RET=HDRS")) accepted += " repeated-param";
      if (pending.replace_body(std::string("a\0b\r\n", 5))) accepted += " nul-body";
      if (pending.replace_body("bare\rcr\r\n")) accepted += " bare-cr-body";
      pending.add_header("X-Checks", accepted.empty() ? "refused" : "accepted" + accepted);
    }
    if (!remove_header_.empty()) pending.remove_header(remove_header_);
    if (!header_name_.empty()) pending.add_header(header_name_, header_value_);
    if (!add_rcpt_.empty()) pending.add_recipient(add_rcpt_);
    if (!remove_rcpt_.empty()) pending.remove_recipient(remove_rcpt_);
    if (mail_from_ && !pending.set_mail_from(*mail_from_, mail_from_args_))
      pending.add_header("X-Probe-Refused", "mail-from");
    if (replace_body_ && !pending.replace_body(*replace_body_)) pending.add_header("X-Probe-Refused", "body");
    if (mode_ == "release") return;  // the last copy goes: Continue, with the edits
    if (mode_ == "late") std::this_thread::sleep_for(delay_);  // past the host's timeout
    sdk::HookResult result = quarantine_ ? sdk::HookResult::quarantine("held by events_probe") : sdk::HookResult{};
    if (mode_ == "error") result = sdk::HookResult::failed("events_probe: failing on purpose");
    pending.complete(result);
  }

  void record(const sdk::MailboxEvent& e) {
    std::lock_guard lock(mu_);
    std::ofstream out(path_, std::ios::app);
    out << kind_name(e.kind) << " actor=" << e.actor << " account=" << e.account << " folder=" << e.folder
        << " target=" << e.target_folder << " uids=" << join(e.uids) << " target-uids=" << join(e.target_uids)
        << " size=" << e.size << "\n";
  }

  std::string mode_;
  std::chrono::milliseconds delay_{30};
  bool quarantine_ = false;
  std::string add_rcpt_;
  std::string remove_rcpt_;
  std::string remove_header_;
  std::optional<std::string> mail_from_;
  std::string mail_from_args_;
  std::optional<std::string> replace_body_;
  std::string header_name_;
  std::string header_value_;
  std::string path_;
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

}  // namespace

POSTERN_PLUGIN(EventsProbe)
