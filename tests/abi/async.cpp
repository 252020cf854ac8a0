// Answers rcpt_to later from its own thread, to test the pending path.
// Config: mode = complete | never | double | release | late | sync;
// delay (ms); verdict = continue | reject | tempfail.
#include <postern/sdk/sdk.hpp>

#include <chrono>
#include <thread>

namespace {

using namespace postern;

class Async {
 public:
  static constexpr const char* kName = "async";
  static constexpr const char* kVersion = "1.0.0";

  ~Async() {
    for (auto& t : threads_) t.join();
  }

  sdk::Status init(sdk::InitContext& ctx) {
    mode_ = ctx.config().attr_or("mode", "complete");
    delay_ = std::chrono::milliseconds(ctx.config().integer("delay").value_or(20));
    const std::string v = ctx.config().attr_or("verdict", "reject");
    result_ = v == "reject"     ? sdk::HookResult::reject("5.7.1", "async says no", 554)
              : v == "tempfail" ? sdk::HookResult::tempfail("4.7.1", "async says later")
                                : sdk::HookResult{};
    ctx.on_rcpt_to([this](sdk::Event& ev) { return on_rcpt(ev); });
    return sdk::Status::ok();
  }

 private:
  sdk::HookResult on_rcpt(sdk::Event& ev) {
    sdk::Pending pending = ev.defer();
    if (mode_ == "sync") {
      pending.add_symbol("ASYNC_SYNC", 1.0);
      pending.complete(result_);
      return pending.result();
    }
    if (mode_ == "release") return pending.result();  // released at return: Continue
    if (mode_ == "never") {
      parked_.push_back(pending);  // never completes: the host's timeout applies
      return pending.result();
    }
    const auto delay = delay_;
    const auto result = result_;
    const bool twice = mode_ == "double";
    threads_.emplace_back([pending, delay, result, twice] {
      std::this_thread::sleep_for(delay);
      pending.add_symbol("ASYNC_DONE", 2.0, "from a thread");
      pending.complete(result);
      if (twice) pending.complete(sdk::HookResult::accept());
    });
    return pending.result();
  }

  std::string mode_;
  std::chrono::milliseconds delay_{20};
  sdk::HookResult result_;
  std::vector<std::thread> threads_;
  std::vector<sdk::Pending> parked_;
};

}  // namespace

POSTERN_PLUGIN(Async)
