// A well-behaved SDK plugin for loader and bus tests: rejects the recipient
// whose local part is `reject-local`, tempfails `tempfail-local`, adds a
// header and a symbol at data_end.
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
    ctx.on_rcpt_to([this](sdk::Event& ev) { return check(ev.rcpt()); });
    ctx.on_data_end([](sdk::Event& ev) {
      ev.add_header("X-Good", "seen");
      ev.add_symbol("GOOD_SEEN", 0.5, "test");
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
};

}  // namespace

POSTERN_PLUGIN(Good)
