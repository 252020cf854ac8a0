/**
 * hello_filter — the smallest useful Postern filter, built out of tree.
 *
 * data_end: adds `X-Hello: <greeting>; peer=<peer ip>` and the symbol HELLO.
 * rcpt_to:  rejects a recipient whose local part equals `reject-local`
 *           with 550 5.7.1.
 * admin:    `posternctl hello stats [--json]`: messages greeted since start
 *           (an admin command, ABI 1.3; skipped on an older host).
 * Configuration (attributes of its <plugin> element in postern.xml):
 *   greeting="world"  weight="0.1"  reject-local=""  (see README.md)
 */
#include <postern/sdk/sdk.hpp>

#include <atomic>
#include <charconv>
#include <string>
#include <system_error>
#include <string_view>

namespace hello {

namespace sdk = postern::sdk;

class HelloFilter {
 public:
  static constexpr const char* kName = "hello_filter";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx) {
    const sdk::Config config = ctx.config();
    greeting_ = config.attr_or("greeting", "world");
    reject_local_ = config.attr_or("reject-local", "");
    if (auto w = config.attr("weight")) {
      // from_chars, not stod: the manifest's "0.1" must not depend on the process locale.
      const auto [end, ec] = std::from_chars(w->data(), w->data() + w->size(), weight_);
      if (ec != std::errc{} || end != w->data() + w->size()) {
        return sdk::Status::error("weight=\"" + std::string(*w) + "\" is not a number (line " +
                                  std::to_string(config.line()) + ")");
      }
    }
    if (auto s = ctx.on_rcpt_to([this](sdk::Event& ev) { return check_rcpt(ev); }); !s) return s;
    if (auto s = ctx.on_data_end([this](sdk::Event& ev) { return greet(ev); }); !s) return s;
    if (POSTERN_SDK_API_HAS(ctx.host().api(), command_complete)) {
      auto s = ctx.command(sdk::CommandSpec("hello", "stats", "messages greeted since start"),
                           [this](sdk::CommandArgs, sdk::CommandReply reply) {
                             const uint64_t n = greeted_.load();
                             reply.ok("{\"greeted\":" + std::to_string(n) + "}",
                                      "greeted " + std::to_string(n) + " message(s)\n");
                           });
      if (!s) return s;
    }
    ctx.host().info("greeting \"" + greeting_ + "\", weight " + std::to_string(weight_) +
                    (reject_local_.empty() ? std::string{} : ", rejecting local part \"" + reject_local_ + "\""));
    return sdk::Status::ok();
  }

 private:
  sdk::HookResult check_rcpt(sdk::Event& ev) const {
    if (reject_local_.empty()) return sdk::HookResult::continue_();
    const std::string_view rcpt = ev.rcpt();
    const std::string_view local = rcpt.substr(0, rcpt.rfind('@'));
    if (local != reject_local_) return sdk::HookResult::continue_();
    return sdk::HookResult::reject("5.7.1", "Recipient refused by hello_filter", 550);
  }

  sdk::HookResult greet(sdk::Event& ev) {
    ev.add_header("X-Hello", greeting_ + "; peer=" + std::string(ev.peer_ip()));
    ev.add_symbol("HELLO", weight_);
    greeted_.fetch_add(1);
    return sdk::HookResult::continue_();
  }

  std::string greeting_ = "world";
  std::string reject_local_;
  double weight_ = 0.1;
  std::atomic<uint64_t> greeted_{0};
};

}  // namespace hello

POSTERN_PLUGIN(hello::HelloFilter)
