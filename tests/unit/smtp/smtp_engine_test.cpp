// Engine tests: whole SMTP sessions driven through SmtpEngine without a
// socket. The harness plays the session's part: it runs each Request the
// engine makes (hook stages, directory lookups, password checks, delays,
// the spool, STARTTLS) synchronously and records what it was asked.
#include "core/smtp/auth.hpp"
#include "core/smtp/engine.hpp"
#include "core/smtp/smtp_config.hpp"
#include "core/smtp/throttle.hpp"

#include "postern/mail/codec.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::smtp {
namespace {

using namespace std::chrono_literals;

const std::string kPassword = "correct horse";

std::string b64(std::string_view s) {
  return mail::encode_base64(s);
}

struct Spooled {
  queue::Envelope envelope;
  std::string message;
  std::string subdir;
};

class EngineHarness {
 public:
  EngineHarness() {
    cfg.local_domains = {"example.test"};
    cfg.max_errors = 20;
    cfg.tarpit_after = 0;
    cfg.auth_failure_delay = 10ms;
    cfg.auth_failure_delay_max = 40ms;
    cfg.auth_lockout_failures = 3;
    cfg.auth_lockout_time = 10min;
    cfg.auth = std::make_shared<StaticAuthBackend>(std::vector<StaticAccount>{
        {"alice@example.test", hash_password(kPassword, 1000), {"alias@example.test"}}});
    env.server_name = "mx.example.test";
    env.starttls_offered = true;
  }

  /**
   * Builds the engine (after the test adjusted cfg/env) and runs the connect stage. Again:
   * a new connection from the same address (the old one dropped), same throttle.
   */
  std::string open() {
    if (!throttle) throttle.emplace(login_throttle_settings(cfg));
    EngineServices services;
    services.new_queue_id = [this] { return "Q" + std::to_string(++queue_ids); };
    services.free_bytes = [this] { return free_bytes; };
    services.wall_clock = [] { return std::chrono::system_clock::time_point{} + 24h * 365 * 50; };
    services.monotonic_clock = [this] { return now; };
    services.login_throttle = &*throttle;
    event::SessionInfo info;
    info.session_id = "test-1";
    info.server_name = env.server_name;
    info.peer_ip = "192.0.2.7";
    engine.emplace(std::make_shared<const SmtpConfig>(cfg), env, std::move(services), info,
                   [this](std::string_view data) { out += data; });
    engine->start();
    run();
    return take();
  }

  /** Feeds input, runs every request the engine makes, returns what it answered. */
  std::string send(std::string_view data) {
    engine->feed(data);
    run();
    return take();
  }

  std::string take() {
    std::string r = std::move(out);
    out.clear();
    return r;
  }

  /** Completes requests until the engine waits for input (or `manual` is set). */
  void run() {
    while (engine->busy() && !manual) step();
  }

  void step() {
    EngineRequest& r = engine->request();
    if (auto* s = std::get_if<StageRequest>(&r)) {
      stages.push_back(std::string(event::stage_name(s->stage)));
      event::Outcome o;
      if (auto it = hooks.find(s->stage); it != hooks.end()) o = it->second(s->event);
      engine->stage_done(o);
    } else if (auto* rc = std::get_if<RecipientRequest>(&r)) {
      lookups.push_back(rc->address);
      engine->recipient_checked(directory ? directory(rc->address) : RcptCheck{RcptStatus::Accept, "", {}});
    } else if (auto* p = std::get_if<PasswordRequest>(&r)) {
      passwords.push_back(p->user);
      engine->password_checked(cfg.auth->authenticate(p->user, p->password));
    } else if (auto* d = std::get_if<DelayRequest>(&r)) {
      delays.push_back(d->delay);
      now += d->delay;  // the session waits on a timer: monotonic time passes
      engine->delay_done();
    } else if (auto* m = std::get_if<ParseRequest>(&r)) {
      parsed.push_back(*m->message);
      engine->message_parsed(nullptr);
    } else if (auto* sp = std::get_if<SpoolRequest>(&r)) {
      spooled.push_back(Spooled{sp->envelope, *sp->message, sp->subdir});
      engine->spooled(spool_error);
    } else if (std::holds_alternative<StartTlsRequest>(r)) {
      ++tls_starts;
      engine->tls_started(TlsFacts{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256});
    }
  }

  /** EHLO plus MAIL FROM. */
  void begin(std::string_view from = "<bob@example.net>") {
    ASSERT_EQ(send("EHLO client.example.net\r\n").substr(0, 4), "250-");
    ASSERT_EQ(send(fmt::format("MAIL FROM:{}\r\n", from)), "250 2.1.0 Ok\r\n");
  }

  SmtpConfig cfg;
  EngineEnvironment env;
  std::optional<mail::LoginThrottle> throttle;
  std::optional<SmtpEngine> engine;
  std::string out;
  bool manual = false;
  int queue_ids = 0;
  std::optional<uint64_t> free_bytes = std::nullopt;
  std::chrono::steady_clock::time_point now{};
  std::map<event::Stage, std::function<event::Outcome(event::EventData&)>> hooks;
  std::function<RcptCheck(const std::string&)> directory;
  std::string spool_error;
  std::vector<std::string> stages;
  std::vector<std::string> lookups;
  std::vector<std::string> passwords;
  std::vector<std::chrono::milliseconds> delays;
  std::vector<std::string> parsed;
  std::vector<Spooled> spooled;
  int tls_starts = 0;
};

TEST(SmtpEngineTest, GreetsAfterTheConnectStage) {
  EngineHarness h;
  EXPECT_EQ(h.open(), "220 mx.example.test ESMTP Postern\r\n");
  EXPECT_EQ(h.stages, std::vector<std::string>{"connect"});
  EXPECT_TRUE(h.engine->started());
  EXPECT_FALSE(h.engine->closed());
}

TEST(SmtpEngineTest, ConnectRejectionRefusesAndCloses) {
  EngineHarness h;
  h.hooks[event::Stage::Connect] = [](event::EventData&) {
    event::Outcome o;
    o.verdict = event::Verdict::Reject;
    return o;
  };
  EXPECT_EQ(h.open(), "554 5.7.1 Access denied\r\n");
  EXPECT_TRUE(h.engine->closed());
}

TEST(SmtpEngineTest, EhloListsExtensionsAndStarttlsOnlyBeforeTls) {
  EngineHarness h;
  h.open();
  const std::string ehlo = h.send("EHLO client.example.net\r\n");
  EXPECT_TRUE(ehlo.starts_with("250-mx.example.test Hello client.example.net [192.0.2.7]\r\n"));
  for (const char* ext : {"PIPELINING", "SIZE 26214400", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING",
                          "DSN", "STARTTLS"}) {
    EXPECT_NE(ehlo.find(std::string("250-") + ext + "\r\n"), std::string::npos) << ext;
  }
  EXPECT_EQ(ehlo.find("AUTH"), std::string::npos) << "no AUTH before TLS without cleartext-auth";
  EXPECT_TRUE(ehlo.ends_with("250 HELP\r\n"));
  EXPECT_EQ(h.send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(h.tls_starts, 1);
  const std::string after = h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(after.find("STARTTLS"), std::string::npos);
  EXPECT_NE(after.find("250-AUTH PLAIN LOGIN\r\n"), std::string::npos);
  EXPECT_EQ(h.send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
}

TEST(SmtpEngineTest, HeloAnswersWithTheServerName) {
  EngineHarness h;
  h.open();
  EXPECT_EQ(h.send("HELO client.example.net\r\n"), "250 mx.example.test\r\n");
  EXPECT_EQ(h.send("HELO\r\n"), "501 5.5.4 Syntax: HELO hostname\r\n");
  EXPECT_EQ(h.send("EHLO bad host\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
}

TEST(SmtpEngineTest, DataTransactionSpoolsTheUnstuffedMessageWithATraceField) {
  EngineHarness h;
  h.open();
  h.begin("<bob@example.net> SIZE=100 BODY=8BITMIME RET=HDRS ENVID=abc+2B1");
  EXPECT_EQ(h.send("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@example.test\r\n"),
            "250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_TRUE(h.engine->in_body());
  EXPECT_EQ(h.send("Subject: hi\r\n\r\n..dot\r\n"), "");
  EXPECT_EQ(h.send(".\r\n"), "250 2.0.0 Ok: queued as Q1\r\n");
  EXPECT_FALSE(h.engine->in_body());
  ASSERT_EQ(h.spooled.size(), 1u);
  const Spooled& s = h.spooled[0];
  EXPECT_EQ(s.subdir, "incoming");
  EXPECT_EQ(s.envelope.queue_id, "Q1");
  EXPECT_EQ(s.envelope.mail_from, "bob@example.net");
  ASSERT_EQ(s.envelope.recipients.size(), 1u);
  EXPECT_EQ(s.envelope.recipients[0].address, "alice@example.test");
  EXPECT_EQ(s.envelope.recipients[0].notify, "SUCCESS,FAILURE");
  EXPECT_EQ(s.envelope.recipients[0].orcpt, "rfc822;alice@example.test");
  EXPECT_EQ(s.envelope.ret, "HDRS");
  EXPECT_EQ(s.envelope.envid, "abc+2B1");
  EXPECT_EQ(s.envelope.body, queue::BodyType::EightBitMime);
  EXPECT_EQ(s.envelope.peer, "192.0.2.7");
  EXPECT_EQ(s.envelope.helo, "client.example.net");
  EXPECT_TRUE(s.message.starts_with("Received: from client.example.net ([192.0.2.7])\r\n"
                                    "\tby mx.example.test (Postern) with ESMTP id Q1\r\n"
                                    "\tfor <alice@example.test>; "));
  EXPECT_TRUE(s.message.ends_with("\r\nSubject: hi\r\n\r\n.dot\r\n"));
  EXPECT_EQ(h.stages, (std::vector<std::string>{"connect", "helo", "mail_from", "rcpt_to", "data_start", "headers",
                                                "data_end", "queued"}));
  EXPECT_TRUE(h.parsed.empty()) << "no plugins: nobody reads the parsed message";
  EXPECT_EQ(h.engine->messages(), 1u);
  // The transaction is over: RCPT needs a new MAIL.
  EXPECT_EQ(h.send("RCPT TO:<alice@example.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(SmtpEngineTest, PipelinedCommandsWaitForEachRequestAndAnswerInOrder) {
  EngineHarness h;
  h.open();
  h.send("EHLO client.example.net\r\n");
  h.manual = true;
  h.engine->feed(
      "MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.net>\r\n"
      "DATA\r\nhello\r\n.\r\nQUIT\r\n");
  // The engine stops at the first stage; nothing after MAIL was answered yet.
  ASSERT_TRUE(std::holds_alternative<StageRequest>(h.engine->request()));
  EXPECT_EQ(std::get<StageRequest>(h.engine->request()).stage, event::Stage::MailFrom);
  EXPECT_EQ(h.take(), "");
  EXPECT_GT(h.engine->buffered(), 0u);
  h.manual = false;
  h.run();
  EXPECT_EQ(h.take(),
            "250 2.1.0 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "554 5.7.1 <nobody@example.net>: Relay access denied\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.0.0 Ok: queued as Q1\r\n"
            "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(h.engine->closed());
  ASSERT_EQ(h.spooled.size(), 1u);
  EXPECT_TRUE(h.spooled[0].message.ends_with("\r\nhello\r\n"));
}

TEST(SmtpEngineTest, NoValidRecipientsAfterFailedRcptsIs554) {
  EngineHarness h;
  h.open();
  h.begin();
  h.send("RCPT TO:<x@example.net>\r\n");
  EXPECT_EQ(h.send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(h.send("RSET\r\nMAIL FROM:<>\r\nDATA\r\n"),
            "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n503 5.5.1 Error: need RCPT command\r\n");
}

TEST(SmtpEngineTest, BdatChunksMakeOneMessage) {
  EngineHarness h;
  h.open();
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\n");
  EXPECT_EQ(h.send("BDAT 10\r\nSubject: x"), "250 2.0.0 10 octets received\r\n");
  // The chunk's octets are data even when they look like commands.
  EXPECT_EQ(h.send("BDAT 14 LAST\r\n\r\nQUIT\r\nbody\r\n"), "250 2.0.0 Ok: queued as Q1\r\n");
  ASSERT_EQ(h.spooled.size(), 1u);
  EXPECT_TRUE(h.spooled[0].message.ends_with("\r\nSubject: x\r\nQUIT\r\nbody\r\n"));
  EXPECT_EQ(h.send("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(SmtpEngineTest, BdatRefusedTransactionSwallowsItsChunks) {
  EngineHarness h;
  h.open();
  h.send("EHLO client.example.net\r\n");
  // No MAIL: refused, but the 6 octets are still read as data, not as a command.
  EXPECT_EQ(h.send("BDAT 6\r\nNOOP\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(h.send("BDAT 6 LAST\r\nNOOP\r\n"), "503 5.5.1 Error: transaction already failed\r\n");
  EXPECT_EQ(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_TRUE(h.spooled.empty());
}

TEST(SmtpEngineTest, BdatWithABadSizeCloses) {
  EngineHarness h;
  h.open();
  h.begin();
  EXPECT_EQ(h.send("BDAT ten\r\n"), "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n");
  EXPECT_TRUE(h.engine->closed());
}

TEST(SmtpEngineTest, DataAfterBdatIsRefused) {
  EngineHarness h;
  h.open();
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\n");
  h.send("BDAT 3\r\nabc");
  EXPECT_EQ(h.send("DATA\r\n"), "503 5.5.1 Error: DATA after BDAT\r\n");
}

TEST(SmtpEngineTest, RsetForgetsTheTransaction) {
  EngineHarness h;
  h.open();
  h.begin();
  EXPECT_EQ(h.send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(h.send("RCPT TO:<alice@example.test>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(h.send("RSET x\r\n"), "501 5.5.4 Syntax: RSET\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<bob@example.net>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST(SmtpEngineTest, CommandsSentBeforeStarttlsAreDropped) {
  EngineHarness h;
  h.open();
  h.send("EHLO client.example.net\r\n");
  // CVE-2011-0411: the MAIL injected in the same packet must not be answered after the handshake.
  EXPECT_EQ(h.send("STARTTLS\r\nMAIL FROM:<evil@example.net>\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(h.tls_starts, 1);
  EXPECT_EQ(h.engine->buffered(), 0u);
  // RFC 3207 §4.2: the EHLO before TLS is forgotten.
  EXPECT_EQ(h.send("MAIL FROM:<bob@example.net>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n");
  ASSERT_EQ(h.spooled.size(), 1u);
  EXPECT_NE(h.spooled[0].message.find("(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits))"),
            std::string::npos);
  EXPECT_NE(h.spooled[0].message.find("with ESMTPS id Q1"), std::string::npos);
}

TEST(SmtpEngineTest, StarttlsNotOfferedIs502) {
  EngineHarness h;
  h.env.starttls_offered = false;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
  EXPECT_EQ(h.tls_starts, 0);
}

TEST(SmtpEngineTest, AuthPlainWithInitialResponse) {
  EngineHarness h;
  h.env.cleartext_auth = true;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN " + b64(std::string("\0alice@example.test\0", 20) + kPassword) + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(h.engine->info().auth_user, "alice@example.test");
  EXPECT_EQ(h.stages.back(), "auth");
  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "503 5.5.1 Error: already authenticated\r\n");
  // Submission: the sender must be one of the account's addresses.
  EXPECT_EQ(h.send("MAIL FROM:<mallory@example.test>\r\n"),
            "553 5.7.1 <mallory@example.test>: Sender address rejected: not owned by auth user alice@example.test\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<alias@example.test>\r\n"), "250 2.1.0 Ok\r\n");
  // Authenticated clients may relay.
  EXPECT_EQ(h.send("RCPT TO:<carol@example.net>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST(SmtpEngineTest, AuthLoginExchange) {
  EngineHarness h;
  h.env.cleartext_auth = true;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(h.send(b64("alice@example.test") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(h.send(b64(kPassword) + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(h.passwords, std::vector<std::string>{"alice@example.test"});
}

TEST(SmtpEngineTest, AuthFailuresAreDelayedThenLockTheAddressOut) {
  EngineHarness h;
  h.env.cleartext_auth = true;
  h.open();
  h.send("EHLO client.example.net\r\n");
  const std::string wrong = "AUTH PLAIN " + b64(std::string("\0alice@example.test\0wrong", 25)) + "\r\n";
  EXPECT_EQ(h.send(wrong), "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(h.send(wrong), "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(h.delays, (std::vector<std::chrono::milliseconds>{10ms, 20ms}));
  EXPECT_EQ(h.send(wrong), "535 5.7.8 Error: authentication failed\r\n");
  // Three failures from one address (auth_lockout_failures): locked, even with the right password.
  EXPECT_EQ(h.send("AUTH PLAIN " + b64(std::string("\0alice@example.test\0", 20) + kPassword) + "\r\n"),
            "454 4.7.0 Too many authentication failures, try again later\r\n");
  h.now += 11min;
  EXPECT_EQ(h.send("AUTH PLAIN " + b64(std::string("\0alice@example.test\0", 20) + kPassword) + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
}

TEST(SmtpEngineTest, ANewConnectionPaysThePenaltyBeforeItsPasswordIsChecked) {
  // The guesser drops the connection instead of waiting for the 535, and guesses again on
  // another one: its password is checked only once the address's penalty is paid.
  EngineHarness h;
  h.env.cleartext_auth = true;
  h.cfg.auth_lockout_failures = 0;
  h.open();
  h.send("EHLO client.example.net\r\n");
  h.manual = true;
  h.engine->feed("AUTH PLAIN " + b64(std::string("\0alice@example.test\0wrong", 25)) + "\r\n");
  ASSERT_TRUE(std::holds_alternative<PasswordRequest>(h.engine->request()));
  h.step();  // checked: failed; the 535 waits 10 ms, but the client is gone
  ASSERT_TRUE(std::holds_alternative<DelayRequest>(h.engine->request()));
  // Another connection from the same address, 3 ms later.
  h.manual = false;
  h.now += 3ms;
  h.open();
  h.send("EHLO client.example.net\r\n");
  h.delays.clear();
  h.passwords.clear();
  h.manual = true;
  h.engine->feed("AUTH PLAIN " + b64(std::string("\0alice@example.test\0", 20) + kPassword) + "\r\n");
  // The 7 ms still owed come first; the password waits.
  EXPECT_EQ(std::get<DelayRequest>(h.engine->request()).delay, 7ms);
  EXPECT_TRUE(h.passwords.empty());
  h.manual = false;
  h.run();
  EXPECT_EQ(h.take(), "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(h.passwords, std::vector<std::string>{"alice@example.test"});
}

TEST(SmtpEngineTest, AuthErrorsNameTheProblem) {
  EngineHarness h;
  h.env.cleartext_auth = true;
  h.open();
  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "503 5.5.1 Error: send EHLO first\r\n");
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("AUTH CRAM-MD5\r\n"), "504 5.5.4 Unrecognized authentication type\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(h.send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN !!!\r\n"), "501 5.5.2 Error: invalid base64 data\r\n");
  // An authorization identity other than the login is a failed login (no proxy authorization).
  EXPECT_EQ(h.send("AUTH PLAIN " + b64(std::string("bob\0alice@example.test\0", 23) + kPassword) + "\r\n"),
            "535 5.7.8 Error: authentication failed\r\n");
  // No password (a directory account without one yet) or no NULs: a failed login too.
  EXPECT_EQ(h.send("AUTH PLAIN " + b64(std::string("\0alice@example.test\0", 20)) + "\r\n"),
            "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN " + b64("alice") + "\r\n"), "535 5.7.8 Error: authentication failed\r\n");
  EXPECT_TRUE(h.passwords.empty());
}

TEST(SmtpEngineTest, AuthNeedsTlsUnlessCleartextIsAllowed) {
  EngineHarness h;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
}

TEST(SmtpEngineTest, OverLongCommandLineIs500AndTheSessionGoesOn) {
  EngineHarness h;
  h.open();
  EXPECT_EQ(h.send("NOOP " + std::string(600, 'x') + "\r\n"), "500 5.5.2 Error: line too long\r\n");
  // Exactly the limit (512 octets with CRLF) is fine.
  EXPECT_EQ(h.send("NOOP " + std::string(505, 'x') + "\r\n"), "250 2.0.0 Ok\r\n");
  // A long line in small pieces is refused once, at its end.
  EXPECT_EQ(h.send(std::string(400, 'y')), "");
  EXPECT_EQ(h.send(std::string(400, 'y')), "");
  EXPECT_TRUE(h.engine->mid_line()) << "the line's timeout is not renewed while it is dropped";
  EXPECT_EQ(h.send("\r\nNOOP\r\n"), "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n");
  EXPECT_FALSE(h.engine->mid_line());
  EXPECT_EQ(h.send("NO"), "");
  EXPECT_TRUE(h.engine->mid_line());
  EXPECT_FALSE(h.engine->closed());
}

TEST(SmtpEngineTest, EndlessLineCloses) {
  EngineHarness h;
  h.open();
  std::string got;
  for (int i = 0; i < 20 && !h.engine->closed(); ++i) got += h.send(std::string(4096, 'z'));
  EXPECT_EQ(got, "421 4.7.0 mx.example.test Error: line too long, closing\r\n");
  EXPECT_TRUE(h.engine->closed());
  EXPECT_LE(h.engine->buffered(), 4096u);
}

TEST(SmtpEngineTest, BadCommands) {
  struct Case {
    std::string line;
    std::string reply;
  };
  const std::vector<Case> cases{
      {"FOO", "500 5.5.1 Error: command not recognized\r\n"},
      {std::string("NO\0OP", 5), "500 5.5.2 Error: NUL in command\r\n"},
      {"MAIL FROM:<a@b.example>", "503 5.5.1 Error: send HELO/EHLO first\r\n"},
      {"EXPN staff", "502 5.5.1 Error: EXPN not supported\r\n"},
      {"VRFY", "501 5.5.4 Syntax: VRFY address\r\n"},
      {"VRFY alice", "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"},
      {"DATA", "503 5.5.1 Error: need MAIL command\r\n"},
      {"DATA now", "501 5.5.4 Syntax: DATA\r\n"},
  };
  for (const Case& c : cases) {
    EngineHarness h;
    h.open();
    EXPECT_EQ(h.send(c.line + "\r\n"), c.reply) << c.line;
    EXPECT_FALSE(h.engine->closed()) << c.line;
  }
}

TEST(SmtpEngineTest, MailParameterErrors) {
  struct Case {
    std::string args;
    std::string reply;
  };
  const std::vector<Case> cases{
      {"bob@example.net", "501 5.1.7 Bad sender address syntax\r\n"},
      {"<bob@example.net> SIZE=x", "501 5.5.4 Syntax: SIZE=<octets>\r\n"},
      {"<bob@example.net> SIZE=99999999999999999999", "552 5.3.4 Message size exceeds fixed maximum message size\r\n"},
      {"<bob@example.net> BODY=BINARYMIME", "501 5.5.4 Syntax: BODY=7BIT|8BITMIME\r\n"},
      {"<bob@example.net> FOO=1", "555 5.5.4 Unsupported parameter FOO\r\n"},
      {"<bob@example.net> RET=FULL RET=HDRS", "501 5.5.4 Duplicate parameter RET\r\n"},
      {"<b\xc3\xb6@example.net>", "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n"},
      {"<b\xc3\xb6@example.net> SMTPUTF8", "250 2.1.0 Ok\r\n"},
  };
  for (const Case& c : cases) {
    EngineHarness h;
    h.open();
    h.send("EHLO client.example.net\r\n");
    EXPECT_EQ(h.send("MAIL FROM:" + c.args + "\r\n"), c.reply) << c.args;
  }
}

TEST(SmtpEngineTest, TooManyErrorsCloses) {
  EngineHarness h;
  h.cfg.max_errors = 3;
  h.open();
  EXPECT_EQ(h.send("A\r\nB\r\nC\r\nNOOP\r\n"),
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "421 4.7.0 mx.example.test Error: too many errors\r\n");
  EXPECT_TRUE(h.engine->closed());
}

TEST(SmtpEngineTest, HttpRequestCloses) {
  EngineHarness h;
  h.open();
  EXPECT_EQ(h.send("GET / HTTP/1.0\r\nHost: x\r\n"), "554 5.7.0 Error: non-SMTP command, closing\r\n");
  EXPECT_TRUE(h.engine->closed());
}

TEST(SmtpEngineTest, RelayPolicy) {
  EngineHarness h;
  h.open();
  h.begin();
  EXPECT_EQ(h.send("RCPT TO:<carol@example.net>\r\n"), "554 5.7.1 <carol@example.net>: Relay access denied\r\n");
  EXPECT_EQ(h.send("RCPT TO:<carol%example.net@example.test>\r\n"),
            "554 5.7.1 <carol%example.net@example.test>: Relay access denied\r\n");
  EXPECT_EQ(h.send("RCPT TO:<carol@example.net@example.test>\r\n"), "554 5.7.1 Relay access denied\r\n");
  // RFC 5321 §4.5.1: <postmaster> without a domain.
  EXPECT_EQ(h.send("RCPT TO:<Postmaster>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.send("RCPT TO:<alice@EXAMPLE.test>\r\n"), "250 2.1.5 Ok\r\n");

  EngineHarness trusted;
  trusted.env.trusted = true;
  trusted.open();
  trusted.begin();
  EXPECT_EQ(trusted.send("RCPT TO:<carol@example.net>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(trusted.send("RCPT TO:<carol@example.net@example.test>\r\n"), "501 5.1.3 Bad recipient address syntax\r\n");
}

TEST(SmtpEngineTest, DirectoryAnswersDecideRcpt) {
  struct Case {
    RcptStatus status;
    std::string reply;
  };
  const std::vector<Case> cases{
      {RcptStatus::Accept, "250 2.1.5 Ok\r\n"},
      {RcptStatus::UnknownUser, "550 5.1.1 <zed@example.test>: Recipient address rejected: User unknown\r\n"},
      {RcptStatus::Disabled, "550 5.2.1 <zed@example.test>: Recipient address rejected: Mailbox disabled\r\n"},
      {RcptStatus::OverQuota, "452 4.2.2 <zed@example.test>: Mailbox full\r\n"},
      {RcptStatus::Loop, "554 5.4.6 <zed@example.test>: Recipient address rejected: routing loop\r\n"},
      {RcptStatus::TempFail, "451 4.3.0 <zed@example.test>: Recipient lookup failed; try again later\r\n"},
      {RcptStatus::NotOurs, "250 2.1.5 Ok\r\n"},  // example.test is a local domain
  };
  struct NoPolicy : RecipientPolicy {
    RcptCheck check(std::string_view, std::string_view) const override { return {}; }
    bool serves_domain(std::string_view) const override { return true; }
  };
  for (const Case& c : cases) {
    EngineHarness h;
    h.cfg.recipients = std::make_shared<NoPolicy>();
    h.directory = [&](const std::string&) { return RcptCheck{c.status, "", {}}; };
    h.open();
    h.begin();
    EXPECT_EQ(h.send("RCPT TO:<zed@example.test>\r\n"), c.reply);
    EXPECT_EQ(h.lookups, std::vector<std::string>{"zed@example.test"});
  }
}

TEST(SmtpEngineTest, TarpitDelaysRecipientsAfterTheThreshold) {
  EngineHarness h;
  h.cfg.tarpit_after = 2;
  h.cfg.tarpit_delay = 1s;
  h.open();
  h.begin();
  h.send("RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n");
  EXPECT_TRUE(h.delays.empty());
  EXPECT_EQ(h.send("RCPT TO:<c@example.test>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(h.delays, std::vector<std::chrono::milliseconds>{1s});

  EngineHarness exempt;
  exempt.cfg.tarpit_after = 2;
  exempt.env.trusted = true;
  exempt.open();
  exempt.begin();
  exempt.send("RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\n");
  EXPECT_TRUE(exempt.delays.empty());
}

TEST(SmtpEngineTest, TooManyRecipientsIs452) {
  EngineHarness h;
  h.cfg.max_recipients = 1;
  h.open();
  h.begin();
  EXPECT_EQ(h.send("RCPT TO:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"),
            "250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n");
}

TEST(SmtpEngineTest, BodyRefusals) {
  struct Case {
    std::string body;
    std::string reply;
  };
  const std::vector<Case> cases{
      {"a\nb\r\n.\r\n", "554 5.5.2 Message contains bare <LF> or <CR> (see RFC 5321 §2.3.8)\r\n"},
      {std::string("a\0b\r\n.\r\n", 8), "554 5.6.0 Message contains NUL octets\r\n"},
      {std::string(200, 'x') + "\r\n.\r\n", "552 5.3.4 Message size exceeds fixed maximum message size\r\n"},
  };
  for (const Case& c : cases) {
    EngineHarness h;
    h.cfg.max_message_size = 100;
    h.open();
    h.begin();
    h.send("RCPT TO:<alice@example.test>\r\nDATA\r\n");
    EXPECT_EQ(h.send(c.body), c.reply);
    EXPECT_TRUE(h.spooled.empty());
    EXPECT_EQ(h.send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  }
}

TEST(SmtpEngineTest, HooksEditTheEnvelopeAndHeaders) {
  EngineHarness h;
  h.hooks[event::Stage::DataEnd] = [](event::EventData& ev) {
    ev.transaction->recipients_removed.push_back("ALICE@example.test");
    ev.transaction->recipients_added.push_back("archive@example.test");
    event::HeaderEdit edit;
    edit.name = "X-Checked";
    edit.value = "yes";
    ev.transaction->header_edits.push_back(edit);
    return event::Outcome{};
  };
  h.open();
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: s\r\n\r\nb\r\n.\r\n");
  ASSERT_EQ(h.spooled.size(), 1u);
  ASSERT_EQ(h.spooled[0].envelope.recipients.size(), 1u);
  EXPECT_EQ(h.spooled[0].envelope.recipients[0].address, "archive@example.test");
  EXPECT_TRUE(h.spooled[0].message.starts_with("X-Checked: yes\r\nReceived: "));
}

TEST(SmtpEngineTest, HookVerdictsAtTheEndOfData) {
  EngineHarness reject;
  reject.hooks[event::Stage::DataEnd] = [](event::EventData&) {
    event::Outcome o;
    o.verdict = event::Verdict::Reject;
    o.code = 554;
    o.enhanced = "5.7.1";
    o.text = "spam\r\nQUIT";
    return o;
  };
  reject.open();
  reject.begin();
  EXPECT_EQ(reject.send("RCPT TO:<alice@example.test>\r\nDATA\r\nb\r\n.\r\n"),
            "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n554 5.7.1 spam  QUIT\r\n");
  EXPECT_TRUE(reject.spooled.empty());

  EngineHarness quarantine;
  quarantine.hooks[event::Stage::Headers] = [](event::EventData&) {
    event::Outcome o;
    o.verdict = event::Verdict::Quarantine;
    return o;
  };
  quarantine.open();
  quarantine.begin();
  quarantine.send("RCPT TO:<alice@example.test>\r\nDATA\r\nb\r\n.\r\n");
  ASSERT_EQ(quarantine.spooled.size(), 1u);
  EXPECT_EQ(quarantine.spooled[0].subdir, "quarantine");

  EngineHarness discard;
  discard.hooks[event::Stage::DataEnd] = [](event::EventData&) {
    event::Outcome o;
    o.verdict = event::Verdict::Discard;
    return o;
  };
  discard.open();
  discard.begin();
  EXPECT_TRUE(discard.send("RCPT TO:<alice@example.test>\r\nDATA\r\nb\r\n.\r\n").ends_with(
      "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n"));
  EXPECT_TRUE(discard.spooled.empty());
}

TEST(SmtpEngineTest, SpoolFailureIs451) {
  EngineHarness h;
  h.spool_error = "disk full";
  h.open();
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\nDATA\r\n");
  EXPECT_EQ(h.send("b\r\n.\r\n"), "451 4.3.0 Error: queue file write error\r\n");
  EXPECT_EQ(h.engine->messages(), 0u);
  EXPECT_EQ(h.stages.back(), "data_end") << "no queued stage for a message not queued";
}

TEST(SmtpEngineTest, LowSpoolSpaceIs452) {
  EngineHarness h;
  h.free_bytes = 1024;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<bob@example.net>\r\n"), "452 4.3.1 Insufficient system storage\r\n");
}

TEST(SmtpEngineTest, InputEndsDependOnThePhase) {
  EngineHarness idle;
  idle.open();
  idle.engine->input_ended(InputEnd::Timeout);
  EXPECT_EQ(idle.take(), "421 4.4.2 mx.example.test Error: timeout exceeded\r\n");
  EXPECT_TRUE(idle.engine->closed());

  EngineHarness stopping;
  stopping.open();
  stopping.engine->request_shutdown();
  EXPECT_EQ(stopping.send("NOOP\r\n"), "421 4.3.2 mx.example.test Service shutting down\r\n");
  EXPECT_TRUE(stopping.engine->closed());

  EngineHarness data;
  data.open();
  data.begin();
  data.send("RCPT TO:<alice@example.test>\r\nDATA\r\npart");
  data.engine->input_ended(InputEnd::Closed);
  EXPECT_EQ(data.take(), "");
  EXPECT_TRUE(data.engine->closed());
  EXPECT_TRUE(data.spooled.empty());
}

TEST(SmtpEngineTest, RequireAuthListenerRefusesMailBeforeAuth) {
  EngineHarness h;
  h.env.require_auth = true;
  h.open();
  h.send("EHLO client.example.net\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<bob@example.net>\r\n"), "530 5.7.0 Authentication required\r\n");
}

TEST(SmtpEngineTest, TooManyMessagesCloses) {
  EngineHarness h;
  h.cfg.max_messages_per_session = 1;
  h.open();
  h.begin();
  h.send("RCPT TO:<alice@example.test>\r\nDATA\r\nb\r\n.\r\n");
  EXPECT_EQ(h.send("MAIL FROM:<bob@example.net>\r\n"),
            "421 4.7.0 mx.example.test Error: too many messages in this session\r\n");
  EXPECT_TRUE(h.engine->closed());
}

}  // namespace
}  // namespace postern::core::smtp
