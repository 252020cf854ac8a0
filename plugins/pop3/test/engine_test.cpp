#include "engine.hpp"

#include "codec.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace postern::plugins::pop3 {
namespace {

/** An Engine whose output is collected; the driver's part is played by the test. */
class Harness {
 public:
  explicit Harness(Environment env = cleartext()) : engine(env, [this](std::string_view s) { out.append(s); }) {
    engine.start();
    greeting = take();
  }
  static Environment cleartext() {
    Environment env;
    env.server_name = "mx.example.test";
    env.cleartext_auth = true;
    return env;
  }
  std::string take() { return std::exchange(out, {}); }
  /** Feeds input and returns what came out. */
  std::string send(std::string_view data) {
    engine.feed(data);
    return take();
  }
  /** Logs in as alice with `messages` sizes (UIDs 10, 20, 30...). */
  void login(std::vector<uint64_t> sizes) {
    send("USER alice\r\n");
    send("PASS secret\r\n");
    ASSERT_TRUE(std::holds_alternative<LoginRequest>(engine.request()));
    Maildrop drop;
    drop.account = "alice@example.test";
    drop.uidvalidity = 1700000000;
    uint32_t uid = 10;
    for (auto s : sizes) {
      drop.messages.push_back(DropMessage{uid, s});
      uid += 10;
    }
    engine.login_succeeded(std::move(drop));
    take();
  }

  std::string out;
  Engine engine;
  std::string greeting;
};

TEST(Pop3EngineTest, GreetsWithoutApopTimestamp) {
  Harness h;
  EXPECT_EQ(h.greeting, "+OK mx.example.test POP3 server ready\r\n");
  EXPECT_EQ(h.greeting.find('<'), std::string::npos);
}

TEST(Pop3EngineTest, CapaListsExtensionsAndAuthOnlyWhenAllowed) {
  Harness h;
  const std::string capa = h.send("CAPA\r\n");
  for (const char* cap : {"TOP\r\n", "UIDL\r\n", "RESP-CODES\r\n", "AUTH-RESP-CODE\r\n", "PIPELINING\r\n", "USER\r\n",
                          "SASL PLAIN\r\n"}) {
    EXPECT_NE(capa.find(cap), std::string::npos) << cap;
  }
  EXPECT_EQ(capa.find("STLS"), std::string::npos);
  EXPECT_EQ(capa.find("APOP"), std::string::npos);
  EXPECT_TRUE(capa.ends_with("\r\n.\r\n"));

  Environment starttls;
  starttls.can_starttls = true;  // a starttls listener without cleartext-auth
  Harness s(starttls);
  const std::string before = s.send("CAPA\r\n");
  EXPECT_NE(before.find("STLS\r\n"), std::string::npos);
  EXPECT_EQ(before.find("USER\r\n"), std::string::npos);
  EXPECT_EQ(before.find("SASL"), std::string::npos);
}

TEST(Pop3EngineTest, RefusesCleartextLoginBeforeTls) {
  Environment env;
  env.can_starttls = true;
  Harness h(env);
  EXPECT_TRUE(h.send("USER alice\r\n").starts_with("-ERR [AUTH] Plaintext authentication disallowed"));
  EXPECT_TRUE(h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n").starts_with("-ERR [AUTH] Plaintext"));
  EXPECT_FALSE(h.engine.busy());
  EXPECT_EQ(h.send("STLS\r\n"), "+OK Begin TLS negotiation\r\n");
  EXPECT_TRUE(std::holds_alternative<StartTlsRequest>(h.engine.request()));
  h.engine.tls_started();
  EXPECT_EQ(h.send("USER alice\r\n"), "+OK Send PASS\r\n");
  EXPECT_EQ(h.send("STLS\r\n"), "-ERR Already using TLS\r\n");
}

TEST(Pop3EngineTest, StlsDropsPipelinedCommands) {
  Environment env;
  env.can_starttls = true;
  Harness h(env);
  // RFC 2595 §4 / the STARTTLS injection attack: bytes after STLS in the same packet.
  EXPECT_EQ(h.send("STLS\r\nCAPA\r\nUSER mallory\r\n"), "+OK Begin TLS negotiation\r\n");
  h.engine.tls_started();
  h.engine.process();
  EXPECT_EQ(h.take(), "");
  EXPECT_EQ(h.engine.buffered(), 0u);
  EXPECT_EQ(h.send("PASS x\r\n"), "-ERR Send USER first\r\n");
}

TEST(Pop3EngineTest, UserPassLoginAndFailureText) {
  Harness h;
  EXPECT_EQ(h.send("USER alice\r\n"), "+OK Send PASS\r\n");
  EXPECT_EQ(h.send("PASS two words\r\n"), "");
  const auto* req = std::get_if<LoginRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->login, "alice");
  EXPECT_EQ(req->password, "two words");
  // Input waits while the login runs.
  EXPECT_EQ(h.send("STAT\r\n"), "");
  h.engine.login_failed(LoginFailure::Credentials);
  EXPECT_EQ(h.take(), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
  h.engine.process();
  EXPECT_EQ(h.take(), "-ERR Log in first (USER/PASS or AUTH)\r\n");
}

TEST(Pop3EngineTest, ClosesAfterMaxFailures) {
  Environment env = Harness::cleartext();
  env.max_failures = 2;
  Harness h(env);
  for (int i = 0; i < 2; ++i) {
    h.send("USER alice\r\nPASS bad\r\n");
    ASSERT_TRUE(std::holds_alternative<LoginRequest>(h.engine.request()));
    h.engine.login_failed(LoginFailure::Credentials);
  }
  EXPECT_TRUE(std::holds_alternative<CloseRequest>(h.engine.request()));
  EXPECT_EQ(h.engine.failures(), 2u);
}

TEST(Pop3EngineTest, InUseAndTemporaryResponseCodes) {
  Harness h;
  h.send("USER alice\r\nPASS secret\r\n");
  h.engine.login_failed(LoginFailure::InUse);
  EXPECT_EQ(h.take(), "-ERR [IN-USE] The maildrop is in use by another POP3 session\r\n");
  h.send("USER alice\r\nPASS secret\r\n");
  h.engine.login_failed(LoginFailure::Temporary);
  EXPECT_TRUE(h.take().starts_with("-ERR [SYS/TEMP] "));
  EXPECT_EQ(h.engine.failures(), 0u);
}

TEST(Pop3EngineTest, AuthPlainWithInitialResponseContinuationAndCancel) {
  Harness h;
  h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
  auto* req = std::get_if<LoginRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->login, "alice");
  EXPECT_EQ(req->password, "secret");
  EXPECT_FALSE(req->malformed);
  h.engine.login_failed(LoginFailure::Credentials);
  h.take();

  EXPECT_EQ(h.send("AUTH plain\r\n"), "+ \r\n");
  h.send("AGJvYgBwdw==\r\n");
  req = std::get_if<LoginRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->login, "bob");
  h.engine.login_failed(LoginFailure::Credentials);
  h.take();

  EXPECT_EQ(h.send("AUTH PLAIN\r\n"), "+ \r\n");
  EXPECT_EQ(h.send("*\r\n"), "-ERR Authentication cancelled\r\n");
  EXPECT_EQ(h.send("AUTH CRAM-MD5\r\n"), "-ERR Unsupported authentication mechanism\r\n");
  EXPECT_EQ(h.send("AUTH\r\n"), "+OK\r\nPLAIN\r\n.\r\n");
  EXPECT_EQ(h.send("AUTH PLAIN !!\r\n"), "-ERR Invalid base64 data\r\n");
  // An authzid other than the login: a failed login (no proxy authorization).
  h.send("AUTH PLAIN " + std::string("Ym9iAGFsaWNlAHNlY3JldA==") + "\r\n");
  req = std::get_if<LoginRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_TRUE(req->malformed);
}

TEST(Pop3EngineTest, AuthPlainAnswersEachResponse) {
  struct Case {
    std::string name;
    std::vector<std::string> lines;  // the AUTH command, then continuation lines
    std::string last_reply;          // to the last line; "login" = a LoginRequest instead
    std::string login;               // the LoginRequest's login ("" and malformed for an unusable one)
  };
  const Case cases[] = {
      {"initial response", {"AUTH PLAIN AGFsaWNlAHNlY3JldA=="}, "login", "alice"},
      {"continuation", {"AUTH PLAIN", "AGFsaWNlAHNlY3JldA=="}, "login", "alice"},
      {"authzid equal to the login", {"AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0"}, "login", "alice"},
      {"another authzid", {"AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA=="}, "login", ""},
      {"= is an empty response", {"AUTH PLAIN ="}, "login", ""},
      {"no NUL", {"AUTH PLAIN", "YWxpY2U="}, "login", ""},
      {"empty line", {"AUTH PLAIN", ""}, "login", ""},
      {"cancel", {"AUTH PLAIN", "*"}, "-ERR Authentication cancelled\r\n", ""},
      {"cancel as the initial response", {"AUTH PLAIN *"}, "-ERR Authentication cancelled\r\n", ""},
      {"bad base64", {"AUTH PLAIN", "AGFsaWNlAHNlY3JldA"}, "-ERR Invalid base64 data\r\n", ""},
      {"lower-case mechanism", {"AUTH plain AGFsaWNlAHNlY3JldA=="}, "login", "alice"},
      {"LOGIN is not offered", {"AUTH LOGIN"}, "-ERR Unsupported authentication mechanism\r\n", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Harness h;
    std::string reply;
    for (size_t i = 0; i < c.lines.size(); ++i) {
      reply = h.send(c.lines[i] + "\r\n");
      if (i + 1 < c.lines.size()) {
        EXPECT_EQ(reply, "+ \r\n");
      }
    }
    if (c.last_reply != "login") {
      EXPECT_EQ(reply, c.last_reply);
      EXPECT_FALSE(h.engine.busy());
      continue;
    }
    EXPECT_EQ(reply, "");
    const auto* req = std::get_if<LoginRequest>(&h.engine.request());
    ASSERT_NE(req, nullptr);
    EXPECT_EQ(req->login, c.login);
    EXPECT_EQ(req->malformed, c.login.empty());
    if (!c.login.empty()) {
      EXPECT_EQ(req->password, "secret");
    }
    // Every unusable response fails like a wrong password: the same reply, a counted failure.
    h.engine.login_failed(LoginFailure::Credentials);
    EXPECT_EQ(h.take(), "-ERR [AUTH] Login failure or POP3 disabled\r\n");
    EXPECT_EQ(h.engine.failures(), 1u);
  }
}

TEST(Pop3EngineTest, ApopIsNotAvailable) {
  Harness h;
  EXPECT_EQ(h.send("APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n"),
            "-ERR APOP is not available: use USER/PASS or AUTH PLAIN\r\n");
}

TEST(Pop3EngineTest, TransactionCommands) {
  Harness h;
  h.login({100, 200, 300});
  EXPECT_EQ(h.send("STAT\r\n"), "+OK 3 600\r\n");
  EXPECT_EQ(h.send("LIST\r\n"), "+OK 3 messages (600 octets)\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n");
  EXPECT_EQ(h.send("LIST 2\r\n"), "+OK 2 200\r\n");
  EXPECT_EQ(h.send("UIDL\r\n"),
            "+OK Unique-ID listing follows\r\n1 1700000000.10\r\n2 1700000000.20\r\n3 1700000000.30\r\n.\r\n");
  EXPECT_EQ(h.send("UIDL 3\r\n"), "+OK 3 1700000000.30\r\n");
  EXPECT_EQ(h.send("DELE 2\r\n"), "+OK Message 2 deleted\r\n");
  EXPECT_EQ(h.send("DELE 2\r\n"), "-ERR Message 2 is deleted\r\n");
  EXPECT_EQ(h.send("RETR 2\r\n"), "-ERR Message 2 is deleted\r\n");
  EXPECT_EQ(h.send("LIST 2\r\n"), "-ERR Message 2 is deleted\r\n");
  EXPECT_EQ(h.send("STAT\r\n"), "+OK 2 400\r\n");
  EXPECT_EQ(h.send("LIST\r\n"), "+OK 2 messages (400 octets)\r\n1 100\r\n3 300\r\n.\r\n");
  EXPECT_EQ(h.send("RSET\r\n"), "+OK 3 messages (600 octets)\r\n");
  EXPECT_EQ(h.send("NOOP\r\n"), "+OK\r\n");
  EXPECT_EQ(h.send("LIST 4\r\n"), "-ERR No such message\r\n");
  EXPECT_EQ(h.send("LIST 0\r\n"), "-ERR No such message\r\n");
  EXPECT_EQ(h.send("RETR -1\r\n"), "-ERR Syntax: a message number is expected\r\n");
  EXPECT_EQ(h.send("RETR 99999999999\r\n"), "-ERR Syntax: a message number is expected\r\n");
  EXPECT_EQ(h.send("TOP 1\r\n"), "-ERR Syntax: TOP msg lines\r\n");
  EXPECT_EQ(h.send("USER bob\r\n"), "-ERR Already logged in\r\n");
  EXPECT_EQ(h.send("STLS\r\n"), "-ERR STLS is only allowed before login\r\n");
  const std::string capa = h.send("CAPA\r\n");
  EXPECT_EQ(capa.find("USER"), std::string::npos);
}

TEST(Pop3EngineTest, RetrAndTopGoThroughFetchRequests) {
  Harness h;
  h.login({20});
  h.send("RETR 1\r\nNOOP\r\n");
  const auto* req = std::get_if<FetchRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->uid, 10u);
  EXPECT_FALSE(req->body_lines);
  std::string encoded;
  encode_message("Subject: a\n\nbody\n", std::nullopt, encoded);
  h.engine.fetch_succeeded(encoded);
  EXPECT_EQ(h.take(), "+OK 20 octets\r\nSubject: a\r\n\r\nbody\r\n.\r\n");
  h.engine.process();
  EXPECT_EQ(h.take(), "+OK\r\n");

  h.send("TOP 1 0\r\n");
  req = std::get_if<FetchRequest>(&h.engine.request());
  ASSERT_NE(req, nullptr);
  EXPECT_EQ(req->body_lines, 0u);
  h.engine.fetch_failed(true, "gone");
  EXPECT_EQ(h.take(), "-ERR Message 1 was removed by another session\r\n");
}

TEST(Pop3EngineTest, QuitCommitsDeletionsAndRetrievedOnly) {
  Harness h;
  h.login({10, 20, 30});
  h.send("RETR 1\r\n");
  h.engine.fetch_succeeded(".\r\n");
  h.send("DELE 2\r\nQUIT\r\n");
  const auto* commit = std::get_if<CommitRequest>(&h.engine.request());
  ASSERT_NE(commit, nullptr);
  EXPECT_EQ(commit->expunge, std::vector<uint32_t>{20});
  EXPECT_EQ(commit->seen, std::vector<uint32_t>{10});
  h.take();
  h.engine.commit_done(true, "");
  EXPECT_EQ(h.take(), "+OK Bye, 1 messages deleted\r\n");
  EXPECT_TRUE(std::holds_alternative<CloseRequest>(h.engine.request()));
}

TEST(Pop3EngineTest, QuitWithoutChangesClosesAtOnce) {
  Harness h;
  h.login({10});
  EXPECT_EQ(h.send("QUIT\r\n"), "+OK Bye\r\n");
  EXPECT_TRUE(std::holds_alternative<CloseRequest>(h.engine.request()));
  Harness a;
  EXPECT_EQ(a.send("QUIT\r\n"), "+OK Bye\r\n");
  EXPECT_TRUE(std::holds_alternative<CloseRequest>(a.engine.request()));
}

TEST(Pop3EngineTest, CommitFailureSaysSomeMessagesWereNotRemoved) {
  Harness h;
  h.login({10});
  h.send("DELE 1\r\nQUIT\r\n");
  h.engine.commit_done(false, "disk full");
  EXPECT_EQ(h.take(), "-ERR [SYS/TEMP] Some deleted messages were not removed: disk full\r\n");
}

TEST(Pop3EngineTest, OverlongLinesAreAnsweredOnceAndDiscarded) {
  Harness h;
  // 300 octets without a line end, arriving in pieces: one -ERR, nothing kept.
  EXPECT_EQ(h.send(std::string(200, 'A')), "");
  EXPECT_EQ(h.send(std::string(100, 'A')), "-ERR Line too long (the limit is 255 octets with CRLF)\r\n");
  EXPECT_EQ(h.engine.buffered(), 0u);
  EXPECT_EQ(h.send(std::string(100000, 'A')), "");
  EXPECT_EQ(h.engine.buffered(), 0u);
  EXPECT_EQ(h.send("AAAA\r\nNOOP\r\n"), "-ERR Log in first (USER/PASS or AUTH)\r\n");
  // Exactly 255 octets with CRLF is allowed.
  EXPECT_EQ(h.send("USER " + std::string(248, 'u') + "\r\n"), "+OK Send PASS\r\n");
  EXPECT_EQ(h.send("USER " + std::string(249, 'u') + "\r\n"),
            "-ERR Line too long (the limit is 255 octets with CRLF)\r\n");
}

TEST(Pop3EngineTest, NulAndGarbageGetClearErrorsThenTheConnectionCloses) {
  Environment env = Harness::cleartext();
  env.max_bad_commands = 4;
  Harness h(env);
  EXPECT_EQ(h.send(std::string("US\0ER a\r\n", 9)), "-ERR NUL octets are not allowed\r\n");
  EXPECT_EQ(h.send("\r\n"), "-ERR Empty command\r\n");
  EXPECT_EQ(h.send("\xff\xfe\r\n"), "-ERR Unknown command\r\n");
  EXPECT_EQ(h.send("RETR 1\r\n"), "-ERR Too many bad commands, closing the connection\r\n");
  EXPECT_TRUE(std::holds_alternative<CloseRequest>(h.engine.request()));
  EXPECT_EQ(h.send("NOOP\r\n"), "");
}

TEST(Pop3EngineTest, AcceptsBareLfLineEndsAndSplitInput) {
  Harness h;
  EXPECT_EQ(h.send("US"), "");
  EXPECT_EQ(h.send("ER alice\n"), "+OK Send PASS\r\n");
  EXPECT_EQ(h.send("capa\r"), "");
  EXPECT_TRUE(h.send("\n").starts_with("+OK Capability list follows"));
}

TEST(Pop3EngineTest, PipelinedCommandsAreAnsweredInOrder) {
  Harness h;
  h.login({5, 6});
  EXPECT_EQ(h.send("STAT\r\nLIST 1\r\nRETR 2\r\nDELE 1\r\n"), "+OK 2 11\r\n+OK 1 5\r\n");
  ASSERT_TRUE(std::holds_alternative<FetchRequest>(h.engine.request()));
  h.engine.fetch_succeeded("x\r\n.\r\n");
  h.engine.process();
  EXPECT_EQ(h.take(), "+OK 6 octets\r\nx\r\n.\r\n+OK Message 1 deleted\r\n");
}

}  // namespace
}  // namespace postern::plugins::pop3
