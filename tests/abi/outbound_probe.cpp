// ABI 1.3 end to end through the C++ SDK (tests/integration/outbound): at
// init, sdk::connect to `echo-port` on 127.0.0.1 (writes a line, expects it
// back), sdk::connect to `closed-port` (expects Refused), and sdk::inject of
// two messages to `inject-to`: "skipped" names this plugin in its skip list,
// "observed" does not. Every outcome is one line in <state>/results.log:
//   echo <line> | echo-failed <status> | closed <status> |
//   injected <subject> <queue id> | inject-failed <subject> <error> |
//   delivery <subject> injected-by=<tag>
#include <postern/sdk/sdk.hpp>

#include <fstream>
#include <memory>
#include <mutex>
#include <string>

namespace {

using namespace postern;

class Results {
 public:
  explicit Results(std::filesystem::path file) : file_(std::move(file)) {}
  void add(const std::string& line) {
    std::lock_guard lock(mu_);
    std::ofstream(file_, std::ios::app) << line << "\n";
  }

 private:
  std::mutex mu_;
  std::filesystem::path file_;
};

/** Writes one line and reports the first complete line that comes back. */
class EchoClient : public sdk::Connection {
 public:
  EchoClient(sdk::Stream s, std::shared_ptr<Results> r) : stream_(std::move(s)), results_(std::move(r)) {
    stream_.write("hello through postern\r\n");
  }
  void on_data(std::string_view d) override {
    got_.append(d);
    const auto eol = got_.find("\r\n");
    if (eol == std::string::npos) return;
    results_->add("echo " + got_.substr(0, eol));
    stream_.close();
  }
  void on_close(sdk::CloseReason reason) override {
    results_->add("echo-closed " + std::to_string(static_cast<int>(reason)));
  }

 private:
  sdk::Stream stream_;
  std::shared_ptr<Results> results_;
  std::string got_;
};

class OutboundProbe {
 public:
  static constexpr const char* kName = "outbound_probe";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx) {
    results_ = std::make_shared<Results>(ctx.state_dir() / "results.log");
    const sdk::Host host = ctx.host();
    if (!sdk::has_outbound(host)) return sdk::Status::error("the host lacks ABI 1.3");
    const auto cfg = ctx.config();
    const auto echo_port = static_cast<uint16_t>(std::stoi(std::string(cfg.attr_or("echo-port", "0"))));
    const auto closed_port = static_cast<uint16_t>(std::stoi(std::string(cfg.attr_or("closed-port", "0"))));
    const std::string to(cfg.attr_or("inject-to", ""));
    ctx.on_delivery([results = results_](sdk::Event& ev) {
      std::string subject = "?";
      if (auto m = ev.message()) subject = std::string(m->header("Subject").value_or("?"));
      results->add("delivery " + subject + " injected-by=" + std::string(ev.tag(sdk::kTagInjected).value_or("-")));
      return sdk::HookResult::continue_();
    });

    auto results = results_;
    sdk::ConnectOptions echo = sdk::ConnectOptions::tcp("127.0.0.1", echo_port);
    echo.timeout = std::chrono::seconds(5);
    if (sdk::connect(
            host, echo,
            [results](sdk::Stream s) { return std::make_unique<EchoClient>(std::move(s), results); },
            [results](sdk::ConnectStatus st, std::string_view why) {
              results->add("echo-failed " + std::string(sdk::connect_status_name(st)) + " " + std::string(why));
            }) == 0)
      return sdk::Status::error("stream_connect refused the echo target");
    if (sdk::connect(
            host, sdk::ConnectOptions::tcp("127.0.0.1", closed_port),
            [results](sdk::Stream) -> std::unique_ptr<sdk::Connection> {
              results->add("closed connected");
              return nullptr;
            },
            [results](sdk::ConnectStatus st, std::string_view) {
              results->add("closed " + std::string(sdk::connect_status_name(st)));
            }) == 0)
      return sdk::Status::error("stream_connect refused the closed target");

    for (const char* subject : {"skipped", "observed"}) {
      sdk::InjectMessage m;
      m.mail_from = "";  // the null sender, as an autoreply sends
      m.recipients = {to};
      m.message = std::string("From: probe@example.test\nTo: ") + to + "\nSubject: " + subject +
                  "\nAuto-Submitted: auto-generated\n\nInjected by outbound_probe.\n";
      if (std::string_view(subject) == "skipped") m.skip_filters = {kName};
      const std::string s = subject;
      if (!sdk::inject(host, m, [results, s](const sdk::InjectResult& r) {
            results->add(r.ok() ? "injected " + s + " " + r.queue_id : "inject-failed " + s + " " + r.error);
          }))
        return sdk::Status::error("inject refused the message");
    }
    return sdk::Status::ok();
  }

 private:
  std::shared_ptr<Results> results_;
};

}  // namespace

POSTERN_PLUGIN(OutboundProbe)
