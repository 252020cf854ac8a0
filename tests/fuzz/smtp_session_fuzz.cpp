// libFuzzer target for the SMTP protocol engine (core/smtp/engine.*): whole
// sessions without a socket. Every Request is completed at once (hooks say
// Continue or, per the flags, Reject at one stage; recipients exist; passwords
// are wrong; the spool succeeds; STARTTLS succeeds), so the fuzzer reaches every
// command, AUTH, DATA, BDAT and the line limits. Checks that the output is a
// sequence of well-formed reply lines, that input held back stays bounded, and
// that a closed engine neither answers nor asks for more.
// Input: one octet of flags, one octet of chunk size, then what the client sent.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "core/smtp/auth.hpp"
#include "core/smtp/engine.hpp"
#include "core/smtp/throttle.hpp"

namespace smtp = postern::core::smtp;
namespace event = postern::core::event;

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "smtp session invariant broken: %s\n", what);
    std::abort();
  }
}

/** Each line: three digits, ' ' or '-', text without CR/LF, CRLF. */
void check_replies(std::string_view out) {
  while (!out.empty()) {
    const size_t end = out.find("\r\n");
    require(end != std::string_view::npos, "reply ends in CRLF");
    const std::string_view line = out.substr(0, end);
    require(line.size() >= 4, "reply has a code");
    require(line[0] >= '2' && line[0] <= '5', "reply class 2-5");
    require(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9', "three digits");
    require(line[3] == ' ' || line[3] == '-', "separator");
    for (char c : line) require(c != '\r' && c != '\n', "no CR/LF inside a reply");
    out.remove_prefix(end + 2);
  }
}

std::shared_ptr<const smtp::SmtpConfig> make_config() {
  auto cfg = std::make_shared<smtp::SmtpConfig>();
  cfg->local_domains = {"example.test"};
  cfg->max_message_size = 4096;
  cfg->max_errors = 50;
  cfg->tarpit_after = 3;
  cfg->auth_lockout_failures = 3;
  // A static hash: hashing per run would make the fuzzer slow.
  cfg->auth = std::make_shared<smtp::StaticAuthBackend>(std::vector<smtp::StaticAccount>{
      {"alice@example.test", smtp::hash_password("pw", 1), {}}});
  return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static const std::shared_ptr<const smtp::SmtpConfig> cfg = make_config();
  const uint8_t flags = data[0];
  const size_t chunk = 1 + data[1] % 128;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);

  smtp::EngineEnvironment env;
  env.server_name = "mx.example.test";
  env.starttls_offered = flags & 1;
  env.cleartext_auth = flags & 2;
  env.trusted = flags & 4;
  env.require_auth = flags & 8;
  env.parse_for_hooks = flags & 16;
  const auto reject_stage = static_cast<event::Stage>((flags >> 5) + 1);  // helo ... data_start, or none

  postern::mail::LoginThrottle throttle(smtp::login_throttle_settings(*cfg));
  smtp::EngineServices services;
  int ids = 0;
  services.new_queue_id = [&ids] { return "Q" + std::to_string(++ids); };
  services.free_bytes = [] { return std::optional<uint64_t>(); };
  services.wall_clock = [] { return std::chrono::system_clock::time_point{}; };
  services.monotonic_clock = [] { return std::chrono::steady_clock::time_point{}; };
  services.login_throttle = &throttle;
  event::SessionInfo info;
  info.peer_ip = "192.0.2.7";
  info.server_name = env.server_name;
  std::string out;
  smtp::SmtpEngine engine(cfg, env, std::move(services), info, [&out](std::string_view d) { out += d; });

  auto run = [&] {
    while (engine.busy()) {
      smtp::EngineRequest& r = engine.request();
      if (auto* s = std::get_if<smtp::StageRequest>(&r)) {
        event::Outcome o;
        if (s->stage == reject_stage) o.verdict = event::Verdict::Reject;
        engine.stage_done(o);
      } else if (std::holds_alternative<smtp::RecipientRequest>(r)) {
        engine.recipient_checked(smtp::RcptCheck{smtp::RcptStatus::Accept, "", {}});
      } else if (std::holds_alternative<smtp::PasswordRequest>(r)) {
        engine.password_checked(std::nullopt);
      } else if (std::holds_alternative<smtp::DelayRequest>(r)) {
        engine.delay_done();
      } else if (auto* p = std::get_if<smtp::ParseRequest>(&r)) {
        require(p->message != nullptr && p->message->starts_with("Received: "), "parse sees the traced message");
        engine.message_parsed(nullptr);
      } else if (auto* sp = std::get_if<smtp::SpoolRequest>(&r)) {
        require(!sp->envelope.recipients.empty(), "a spooled message has recipients");
        require(sp->message->size() <= cfg->max_message_size + 4096, "size limit holds");
        engine.spooled("");
      } else if (std::holds_alternative<smtp::StartTlsRequest>(r)) {
        require(engine.buffered() == 0, "nothing sent before STARTTLS survives it");
        engine.tls_started(smtp::TlsFacts{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128});
      }
    }
  };

  engine.start();
  run();
  while (!input.empty() && !engine.closed()) {
    const std::string_view piece = input.substr(0, chunk);
    input.remove_prefix(piece.size());
    engine.feed(piece);
    run();
    require(engine.buffered() <= smtp::kAuthLineMax + chunk, "held-back input is bounded");
  }
  if (!engine.closed()) engine.input_ended(smtp::InputEnd::Timeout);
  require(engine.closed(), "input_ended closes");
  check_replies(out);
  const size_t before = out.size();
  engine.feed("NOOP\r\n");
  require(out.size() == before && !engine.busy(), "a closed engine is silent");
  return 0;
}
