// ABI 1.1 through the C++ SDK: a cron job (config `cron`, optional `sleep-ms`
// per run) that appends to <state>/abi11.log, as on_destroy does; session
// tags: connect marks 192.0.2.1 as whitelisted and records the peer under
// "abi11.seen"; rcpt_to accepts a whitelisted session and otherwise tempfails
// with the recorded tag in the text.
#include <postern/sdk/sdk.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

using namespace postern;

void append(const std::string& path, const std::string& line) {
  if (std::FILE* f = std::fopen(path.c_str(), "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

class Abi11 {
 public:
  static constexpr const char* kName = "abi11";
  static constexpr const char* kVersion = "1.0.0";

  ~Abi11() {
    if (!log_.empty()) append(log_, "destroyed");
  }

  sdk::Status init(sdk::InitContext& ctx) {
    log_ = (ctx.state_dir() / "abi11.log").string();
    const sdk::Config cfg = ctx.config();
    if (auto cron = cfg.attr("cron")) {
      const int64_t sleep_ms = cfg.integer("sleep-ms").value_or(0);
      const std::string log = log_;
      const auto id = ctx.host().cron_add("tick", *cron, [log, sleep_ms] {
        append(log, "cron start");
        std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
        append(log, "cron end");
      });
      if (id == 0) return sdk::Status::error("cron refused: '" + std::string(*cron) + "'");
    }
    ctx.on_connect([](sdk::Event& ev) {
      if (ev.peer_ip() == "192.0.2.1") ev.set_tag(sdk::kTagWhitelisted, "1");
      if (!ev.set_tag("abi11.seen", ev.peer_ip())) return sdk::HookResult::failed("set_tag refused");
      return sdk::HookResult{};
    });
    ctx.on_rcpt_to([](sdk::Event& ev) {
      if (ev.whitelisted()) return sdk::HookResult::accept();
      if (ev.set_tag("bad key", "x")) return sdk::HookResult::failed("a key with a space was accepted");
      return sdk::HookResult::tempfail("4.7.1", "seen=" + std::string(ev.tag("abi11.seen").value_or("none")));
    });
    return sdk::Status::ok();
  }

 private:
  std::string log_;
};

}  // namespace

POSTERN_PLUGIN(Abi11)
