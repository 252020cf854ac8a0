// The IMAP session against the SDK's FakeHost and its in-memory mail store:
// no sockets, no threads, no sleeping.
#include "imap.hpp"

#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <cctype>
#include <string>
#include <string_view>

namespace postern::imap {
namespace {

// The digits right after each `prefix` (a UIDVALIDITY, a MODSEQ), or "".
std::string number_after(const std::string& s, std::string_view prefix) {
  const size_t at = s.find(prefix);
  if (at == std::string::npos) return {};
  size_t end = at + prefix.size();
  while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
  return s.substr(at + prefix.size(), end - at - prefix.size());
}

// `s` with the digits after each `prefix` replaced by '#' (values the test cannot know).
std::string mask_number_after(std::string s, std::string_view prefix) {
  for (size_t at = s.find(prefix); at != std::string::npos; at = s.find(prefix, at + 1)) {
    const size_t from = at + prefix.size();
    size_t end = from;
    while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
    if (end > from) s.replace(from, end - from, "#");
  }
  return s;
}

using sdk::testing::FakeHost;
using sdk::testing::FakeStream;
using sdk::testing::StreamOptions;

const char* kMessage =
    "From: Bob <bob@example.net>\r\n"
    "To: alice@example.test\r\n"
    "Subject: Hello\r\n"
    "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    "\r\n"
    "Hi Alice.\r\n";

class ImapSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The login throttle runs on a monotonic clock; here it follows the fake host's clock.
    mail::set_throttle_clock(
        [this] { return std::chrono::steady_clock::time_point(host_.clock().now().time_since_epoch()); });
    store_->add_account("alice@example.test", "secret");
    host_.use_mail_store(store_);
    plugin_ = host_.load<plugins::imap::ImapPlugin>(R"(<plugin name="imap" login-failure-delay="1s"/>)");
    ASSERT_TRUE(plugin_.ok()) << plugin_.error();
  }

  void TearDown() override { mail::set_throttle_clock(nullptr); }

  FakeStream connect(bool cleartext = true, StreamOptions o = {}) {
    o.cleartext_auth = cleartext;
    FakeStream c = host_.connect("imap", o);
    EXPECT_TRUE(c.opened()) << c.error();
    return c;
  }
  static std::string send(FakeStream& c, std::string_view line) {
    c.send(line);
    return c.take_output();
  }
  FakeStream logged_in() {
    FakeStream c = connect();
    c.take_output();
    EXPECT_NE(send(c, "l LOGIN alice@example.test secret\r\n").find("l OK "), std::string::npos);
    return c;
  }
  FakeStream selected(std::string_view box = "INBOX") {
    FakeStream c = logged_in();
    const std::string out = send(c, "s SELECT " + std::string(box) + "\r\n");
    EXPECT_NE(out.find("s OK [READ-WRITE]"), std::string::npos) << out;
    return c;
  }

  std::shared_ptr<sdk::testing::MemoryMailStore> store_ = std::make_shared<sdk::testing::MemoryMailStore>();
  FakeHost host_;
  sdk::testing::Loaded plugin_;
};

TEST_F(ImapSessionTest, GreetsWithCapabilitiesAndRefusesCleartextLogin) {
  FakeStream c = connect(false);
  const std::string greeting = c.take_output();
  EXPECT_EQ(greeting.substr(0, 18), "* OK [CAPABILITY I");
  EXPECT_NE(greeting.find(" STARTTLS"), std::string::npos);
  EXPECT_NE(greeting.find(" LOGINDISABLED"), std::string::npos);
  EXPECT_EQ(greeting.find("AUTH=PLAIN"), std::string::npos);
  EXPECT_EQ(send(c, "a LOGIN alice@example.test secret\r\n"),
            "a NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS\r\n");
  EXPECT_EQ(send(c, "b SELECT INBOX\r\n"), "b BAD SELECT needs authentication first\r\n");
}

TEST_F(ImapSessionTest, StartTlsDropsInjectedCommandsThenAllowsLogin) {
  FakeStream c = connect(false);
  c.take_output();
  // RFC 3501 §6.2.1: "b" was sent in the same packet as STARTTLS and must not run.
  const std::string out = send(c, "a STARTTLS\r\nb LOGIN alice@example.test secret\r\n");
  EXPECT_EQ(out, "a OK Begin TLS negotiation now\r\n");
  EXPECT_TRUE(c.tls_active());
  const std::string caps = send(c, "c CAPABILITY\r\n");
  EXPECT_EQ(caps.find("STARTTLS"), std::string::npos);
  EXPECT_NE(caps.find("AUTH=PLAIN"), std::string::npos);
  EXPECT_NE(send(c, "d LOGIN alice@example.test secret\r\n").find("d OK [CAPABILITY "), std::string::npos);
  EXPECT_EQ(send(c, "e STARTTLS\r\n"), "e BAD STARTTLS is only valid before authentication\r\n");
}

TEST_F(ImapSessionTest, AuthenticatePlainWithAndWithoutInitialResponse) {
  FakeStream c = connect();
  c.take_output();
  // "\0alice@example.test\0secret"
  EXPECT_EQ(send(c, "a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
  EXPECT_NE(send(c, "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n").find("a OK "), std::string::npos);
  FakeStream d = connect();
  d.take_output();
  EXPECT_NE(send(d, "a AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n").find("a OK "), std::string::npos);
  FakeStream e = connect();
  e.take_output();
  send(e, "a AUTHENTICATE PLAIN\r\n");
  EXPECT_EQ(send(e, "*\r\n"), "a BAD Authentication cancelled\r\n");
  EXPECT_EQ(send(e, "b AUTHENTICATE CRAM-MD5\r\n"), "b NO Unsupported authentication mechanism (PLAIN only)\r\n");
}

TEST_F(ImapSessionTest, AuthenticateRepliesToEachBrokenResponse) {
  struct Case {
    std::string command;  // after "a AUTHENTICATE "
    std::string response;  // a continuation line, empty: none
    std::string reply;
  };
  const Case cases[] = {
      {"PLAIN !!!!", "", "a BAD Invalid base64 in the authentication response\r\n"},
      {"PLAIN", "AGFsaWNlAHNlY3JldA", "a BAD Invalid base64 in the authentication response\r\n"},
      {"PLAIN =", "", "a BAD Malformed PLAIN response\r\n"},  // RFC 4959: "=" is an empty response
      {"PLAIN", "YWxpY2U=", "a BAD Malformed PLAIN response\r\n"},  // "alice": no NUL
      // "bob\0alice@example.test\0secret": no proxy authorization.
      {"PLAIN Ym9iAGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=", "",
       "a NO [AUTHORIZATIONFAILED] Logging in as another user is not allowed\r\n"},
      {"plain", std::string(13000, 'A'), "a BAD Authentication response too long\r\n"},
  };
  for (const Case& k : cases) {
    FakeStream c = connect();
    c.take_output();
    std::string out = send(c, "a AUTHENTICATE " + k.command + "\r\n");
    if (!k.response.empty()) {
      EXPECT_EQ(out, "+ \r\n") << k.command;
      out = send(c, k.response + "\r\n");
    }
    EXPECT_EQ(out, k.reply) << k.command;
    // The session goes on: nothing of the exchange is left behind.
    EXPECT_EQ(send(c, "b NOOP\r\n"), "b OK NOOP completed\r\n") << k.command;
  }
  // "alice@example.test\0alice@example.test\0secret": the authzid is the login itself.
  FakeStream c = connect();
  c.take_output();
  EXPECT_NE(send(c, "a AUTHENTICATE PLAIN YWxpY2VAZXhhbXBsZS50ZXN0AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n")
                .find("a OK "),
            std::string::npos);
}

TEST_F(ImapSessionTest, LoginFailuresAreDelayedThenDisconnected) {
  FakeStream c = connect();
  c.take_output();
  EXPECT_EQ(send(c, "a LOGIN alice@example.test wrong\r\n"), "");  // held back for a second
  EXPECT_TRUE(c.paused());
  host_.clock().advance(std::chrono::milliseconds(1000));
  c.pump();
  EXPECT_EQ(c.take_output(), "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  EXPECT_EQ(send(c, "b LOGIN alice@example.test wrong\r\n"), "");
  host_.clock().advance(std::chrono::milliseconds(1999));
  c.pump();
  EXPECT_EQ(c.take_output(), "");  // the second failure waits two seconds
  host_.clock().advance(std::chrono::milliseconds(1));
  c.pump();
  EXPECT_EQ(c.take_output(), "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  // The last failure allowed waits its delay (four seconds) too, then NO and BYE.
  EXPECT_EQ(send(c, "c LOGIN alice@example.test wrong\r\n"), "");
  host_.clock().advance(std::chrono::milliseconds(3999));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  c.pump();
  EXPECT_EQ(c.take_output(),
            "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n* BYE Too many authentication failures\r\n");
  EXPECT_FALSE(c.send("d NOOP\r\n"));
}

TEST_F(ImapSessionTest, DroppingTheConnectionDoesNotSkipThePenalty) {
  FakeStream a = connect();
  a.take_output();
  EXPECT_EQ(send(a, "a LOGIN alice@example.test wrong\r\n"), "");
  a.close();  // the guesser does not wait for the NO
  // The next password from that address is checked only once the penalty is paid.
  FakeStream b = connect();
  b.take_output();
  EXPECT_EQ(send(b, "b LOGIN alice@example.test secret\r\n"), "");
  host_.clock().advance(std::chrono::milliseconds(999));
  b.pump();
  EXPECT_EQ(b.take_output(), "");
  host_.clock().advance(std::chrono::milliseconds(1));
  b.pump();
  EXPECT_NE(b.take_output().find("b OK [CAPABILITY "), std::string::npos);
}

TEST_F(ImapSessionTest, OverlongLoginNamesAreRefusedWithoutALookup) {
  FakeStream c = connect();
  c.take_output();
  EXPECT_EQ(send(c, "a LOGIN " + std::string(1025, 'x') + " secret\r\n"),
            "a NO [AUTHENTICATIONFAILED] Login name too long\r\n");
  // Not counted as a failure: the next login is answered at once.
  EXPECT_NE(send(c, "b LOGIN alice@example.test secret\r\n").find("b OK "), std::string::npos);
}

TEST_F(ImapSessionTest, OverlongAuthenticateResponseEndsTheExchange) {
  FakeStream c = connect();
  c.take_output();
  EXPECT_EQ(send(c, "a AUTHENTICATE PLAIN\r\n"), "+ \r\n");
  EXPECT_EQ(send(c, std::string(70000, 'Q') + "\r\n"), "a BAD Authentication response too long\r\n");
  // The next line is a command again, not base64.
  EXPECT_EQ(send(c, "b NOOP\r\n"), "b OK NOOP completed\r\n");
}

// The address lockout (off by default) and its monotonic clock, on a host of their own.
TEST(ImapLockoutTest, LockedAddressIsRefusedBeforeThePasswordAndIgnoresClockSteps) {
  auto store = std::make_shared<sdk::testing::MemoryMailStore>();
  store->add_account("alice@example.test", "secret");
  FakeHost host;
  host.use_mail_store(store);
  // The throttle's monotonic clock follows the host's timers but not its steps.
  std::chrono::milliseconds steady{0};
  mail::set_throttle_clock([&steady] { return std::chrono::steady_clock::time_point(steady); });
  auto plugin = host.load<plugins::imap::ImapPlugin>(
      R"(<plugin name="imap" login-failure-delay="0s" login-lockout-failures="2" login-lockout-time="10m"/>)");
  ASSERT_TRUE(plugin.ok()) << plugin.error();
  StreamOptions o;
  o.cleartext_auth = true;
  FakeStream c = host.connect("imap", o);
  c.take_output();
  c.send("a LOGIN alice@example.test wrong\r\n");
  EXPECT_EQ(c.take_output(), "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  c.send("b LOGIN alice@example.test wrong\r\n");
  EXPECT_EQ(c.take_output(), "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  FakeStream d = host.connect("imap", o);
  d.take_output();
  d.send("c LOGIN alice@example.test secret\r\n");
  EXPECT_EQ(d.take_output(), "c NO [UNAVAILABLE] Too many failed logins from your address, try again later\r\n");
  // The system clock jumps an hour ahead: the lockout does not end with it.
  host.clock().set(host.clock().now() + std::chrono::hours(1));
  d.send("d LOGIN alice@example.test secret\r\n");
  EXPECT_NE(d.take_output().find("d NO [UNAVAILABLE]"), std::string::npos);
  // Ten minutes of monotonic time end it.
  steady += std::chrono::minutes(10) + std::chrono::milliseconds(1);
  d.send("e LOGIN alice@example.test secret\r\n");
  EXPECT_NE(d.take_output().find("e OK "), std::string::npos);
  mail::set_throttle_clock(nullptr);
}

TEST_F(ImapSessionTest, LoginFailuresFromOneAddressAddUpAcrossConnections) {
  FakeStream a = connect();
  send(a, "a LOGIN alice@example.test wrong\r\n");
  host_.clock().advance(std::chrono::seconds(1));
  a.pump();
  EXPECT_NE(a.take_output().find("a NO [AUTHENTICATIONFAILED]"), std::string::npos);
  // A new connection from the same address does not start again at one second.
  FakeStream b = connect();
  b.take_output();
  EXPECT_EQ(send(b, "b LOGIN alice@example.test wrong\r\n"), "");
  host_.clock().advance(std::chrono::seconds(1));
  b.pump();
  EXPECT_EQ(b.take_output(), "");
  host_.clock().advance(std::chrono::seconds(1));
  b.pump();
  EXPECT_EQ(b.take_output(), "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
}

TEST_F(ImapSessionTest, SelectFetchStoreExpunge) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream c = logged_in();
  const std::string sel = send(c, "s SELECT INBOX\r\n");
  EXPECT_NE(sel.find("* 2 EXISTS\r\n"), std::string::npos) << sel;
  EXPECT_NE(sel.find("* 2 RECENT\r\n"), std::string::npos);
  EXPECT_NE(sel.find("* OK [UNSEEN 1]"), std::string::npos);
  EXPECT_NE(sel.find("* OK [UIDVALIDITY "), std::string::npos);
  EXPECT_NE(sel.find("* OK [UIDNEXT 3]"), std::string::npos);
  EXPECT_NE(sel.find("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]"), std::string::npos);

  const std::string size = std::to_string(std::string_view(kMessage).size());
  EXPECT_EQ(send(c, "f FETCH 1 (FLAGS UID RFC822.SIZE)\r\n"),
            "* 1 FETCH (FLAGS (\\Recent) UID 1 RFC822.SIZE " + size + ")\r\nf OK FETCH completed\r\n");
  // BODY.PEEK leaves \Seen alone; BODY[] sets it and reports the new FLAGS.
  EXPECT_EQ(send(c, "g FETCH 1 BODY.PEEK[]\r\n"),
            "* 1 FETCH (BODY[] {" + size + "}\r\n" + kMessage + ")\r\ng OK FETCH completed\r\n");
  EXPECT_EQ(send(c, "h FETCH 1 BODY[]<0.4>\r\n"),
            "* 1 FETCH (BODY[]<0> {4}\r\nFrom FLAGS (\\Seen \\Recent))\r\nh OK FETCH completed\r\n");
  EXPECT_EQ(send(c, "i UID FETCH 2 (FLAGS)\r\n"), "* 2 FETCH (UID 2 FLAGS (\\Recent))\r\ni OK UID FETCH completed\r\n");
  EXPECT_EQ(send(c, "j FETCH 3 FLAGS\r\n"), "j BAD Invalid message sequence number\r\n");

  EXPECT_EQ(send(c, "k STORE 1 +FLAGS (\\Deleted)\r\n"),
            "* 1 FETCH (FLAGS (\\Seen \\Deleted \\Recent))\r\nk OK STORE completed\r\n");
  EXPECT_EQ(send(c, "l STORE 2 +FLAGS.SILENT (\\Flagged $Important)\r\n"),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)\r\n"
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)] Flags permitted\r\n"
            "l OK STORE completed\r\n");
  EXPECT_EQ(send(c, "m EXPUNGE\r\n"), "* 1 EXPUNGE\r\nm OK EXPUNGE completed\r\n");
  EXPECT_EQ(send(c, "n FETCH 1:* (UID FLAGS)\r\n"),
            "* 1 FETCH (UID 2 FLAGS (\\Flagged \\Recent $Important))\r\nn OK FETCH completed\r\n");
  EXPECT_EQ(send(c, "o LOGOUT\r\n"), "* BYE Logging out\r\no OK LOGOUT completed\r\n");
}

TEST_F(ImapSessionTest, TwoSessionsSeeEachOthersChangesAtAllowedPoints) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream a = selected();
  FakeStream b = selected();
  EXPECT_EQ(send(b, "1 STORE 2 +FLAGS.SILENT (\\Deleted)\r\n"), "1 OK STORE completed\r\n");
  EXPECT_EQ(send(b, "2 EXPUNGE\r\n"), "* 2 EXPUNGE\r\n2 OK EXPUNGE completed\r\n");
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  EXPECT_EQ(send(b, "3 STORE 1 +FLAGS.SILENT (\\Answered)\r\n"), "3 OK STORE completed\r\n");
  // RFC 3501 §7.4.1: no EXPUNGE during FETCH without UID; the message keeps its number.
  const std::string fetch = send(a, "4 FETCH 2 (UID)\r\n");
  EXPECT_EQ(fetch, "* 2 FETCH (UID 2)\r\n4 OK FETCH completed\r\n");
  // NOOP reports everything, with sequence numbers as the client knows them.
  const std::string noop = send(a, "5 NOOP\r\n");
  EXPECT_EQ(noop,
            "* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\n* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))\r\n"
            "5 OK NOOP completed\r\n");
  EXPECT_EQ(send(a, "6 FETCH 2 UID\r\n"), "* 2 FETCH (UID 3)\r\n6 OK FETCH completed\r\n");
}

TEST_F(ImapSessionTest, ExpungedMessageIsReportedAsExpungeIssued) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream a = selected();
  FakeStream b = selected();
  send(b, "1 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n");
  send(b, "2 EXPUNGE\r\n");
  EXPECT_EQ(send(a, "3 FETCH 1 BODY.PEEK[]\r\n"),
            "3 NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n");
  // Data the session still holds may be returned; then the expunge is reported.
  EXPECT_EQ(send(a, "4 UID FETCH 1 FLAGS\r\n"),
            "* 1 FETCH (UID 1 FLAGS (\\Recent))\r\n* 1 EXPUNGE\r\n4 OK UID FETCH completed\r\n");
}

TEST_F(ImapSessionTest, AppendWithSynchronizingAndNonSynchronizingLiterals) {
  FakeStream c = selected();
  const std::string msg = kMessage;
  EXPECT_EQ(send(c, "a APPEND INBOX (\\Seen) {" + std::to_string(msg.size()) + "}\r\n"), "+ Ready for literal data\r\n");
  const std::string out = send(c, msg + "\r\n");
  EXPECT_NE(out.find("* 1 EXISTS\r\n"), std::string::npos) << out;
  EXPECT_TRUE(mask_number_after(out, "APPENDUID ").ends_with("a OK [APPENDUID # 1] APPEND completed\r\n")) << out;
  const std::string out2 =
      send(c, "b APPEND Sent \"05-Jan-2024 10:00:00 +0100\" {" + std::to_string(msg.size()) + "+}\r\n" + msg + "\r\n");
  EXPECT_EQ(mask_number_after(out2, "APPENDUID "), "b OK [APPENDUID # 1] APPEND completed\r\n");
  EXPECT_EQ(send(c, "c APPEND Nowhere {1+}\r\nx\r\n"), "c NO [TRYCREATE] No such mailbox\r\n");
  EXPECT_EQ(send(c, "d APPEND INBOX \"bad date\" {1+}\r\nx\r\n"),
            "d BAD Invalid date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")\r\n");
  const std::string ex = send(c, "e EXAMINE Sent\r\n");
  EXPECT_NE(ex.find("* 1 EXISTS\r\n"), std::string::npos) << ex;
  EXPECT_NE(ex.find("e OK [READ-ONLY] EXAMINE completed\r\n"), std::string::npos) << ex;
  EXPECT_EQ(send(c, "f FETCH 1 INTERNALDATE\r\n"),
            "* 1 FETCH (INTERNALDATE \"05-Jan-2024 09:00:00 +0000\")\r\nf OK FETCH completed\r\n");
  EXPECT_EQ(send(c, "g STORE 1 +FLAGS (\\Seen)\r\n"), "g NO [READ-ONLY] The mailbox is read-only\r\n");
}

TEST_F(ImapSessionTest, CopyAndMoveReportUidPlus) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream c = selected();
  const std::string copy = send(c, "a COPY 1:2 Archive\r\n");
  EXPECT_EQ(mask_number_after(copy, "COPYUID "), "a OK [COPYUID # 1:2 1:2] COPY completed\r\n");
  const std::string move = send(c, "b UID MOVE 2 Trash\r\n");
  EXPECT_EQ(mask_number_after(move, "COPYUID "), "* OK [COPYUID # 2 1] Moved\r\n* 2 EXPUNGE\r\nb OK UID MOVE completed\r\n");
  EXPECT_EQ(send(c, "c COPY 1 Missing\r\n"), "c NO [TRYCREATE] No such mailbox\r\n");
  EXPECT_EQ(send(c, "d UID COPY 99 Archive\r\n"), "d OK UID COPY completed\r\n");
}

TEST_F(ImapSessionTest, MailboxManagementAndList) {
  FakeStream c = logged_in();
  EXPECT_EQ(send(c, "a CREATE \"Projekt/Entw&APw-rfe\"\r\n"), "a OK CREATE completed\r\n");
  EXPECT_EQ(send(c, "b CREATE INBOX\r\n").substr(0, 20), "b NO [ALREADYEXISTS]");
  const std::string list = send(c, "c LIST \"\" \"Projekt/*\"\r\n");
  EXPECT_EQ(list, "* LIST (\\HasNoChildren) \"/\" \"Projekt/Entw&APw-rfe\"\r\nc OK LIST completed\r\n");
  EXPECT_EQ(send(c, "d LIST \"\" %\r\n").find("\"Projekt/"), std::string::npos);
  EXPECT_NE(send(c, "e LIST \"\" %\r\n").find("* LIST (\\HasChildren) \"/\" \"Projekt\"\r\n"), std::string::npos);
  EXPECT_NE(send(c, "f LIST \"\" *\r\n").find("* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"), std::string::npos);
  EXPECT_EQ(send(c, "g LIST \"\" \"\"\r\n"), "* LIST (\\Noselect) \"/\" \"\"\r\ng OK LIST completed\r\n");
  EXPECT_EQ(send(c, "h RENAME Projekt Work\r\n"), "h OK RENAME completed\r\n");
  EXPECT_EQ(send(c, "i SUBSCRIBE \"Work/Entw&APw-rfe\"\r\n"), "i OK SUBSCRIBE completed\r\n");
  EXPECT_EQ(send(c, "j LSUB \"\" \"Work/%\"\r\n"), "* LSUB () \"/\" \"Work/Entw&APw-rfe\"\r\nj OK LSUB completed\r\n");
  send(c, "k0 UNSUBSCRIBE Work\r\n");
  EXPECT_EQ(send(c, "k LSUB \"\" \"W%\"\r\n"), "* LSUB (\\Noselect) \"/\" \"Work\"\r\nk OK LSUB completed\r\n");
  EXPECT_EQ(send(c, "l DELETE Work\r\n").substr(0, 4), "l NO");
  EXPECT_EQ(send(c, "m DELETE \"Work/Entw&APw-rfe\"\r\n"), "m OK DELETE completed\r\n");
  EXPECT_EQ(send(c, "n SELECT Work/Nope\r\n").substr(0, 18), "n NO [NONEXISTENT]");
  EXPECT_EQ(send(c, "o CREATE \"../x\"\r\n"), "o NO Mailbox name may not contain '.' or '..' levels\r\n");
  EXPECT_EQ(send(c, "p NAMESPACE\r\n"), "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\np OK NAMESPACE completed\r\n");
}

TEST_F(ImapSessionTest, StatusReportsCounters) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream c = logged_in();
  const std::string out = send(c, "a STATUS INBOX (MESSAGES UNSEEN UIDNEXT)\r\n");
  EXPECT_EQ(out, "* STATUS \"INBOX\" (MESSAGES 1 UNSEEN 1 UIDNEXT 2)\r\na OK STATUS completed\r\n");
}

TEST_F(ImapSessionTest, SearchUsesTheMessageSide) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  ASSERT_TRUE(store_->deliver("alice@example.test", "Subject: other\r\n\r\nnothing\r\n"));
  FakeStream c = selected();
  EXPECT_EQ(send(c, "a SEARCH SUBJECT hello\r\n"), "* SEARCH 1\r\na OK SEARCH completed\r\n");
  EXPECT_EQ(send(c, "b UID SEARCH NOT SUBJECT hello\r\n"), "* SEARCH 2\r\nb OK UID SEARCH completed\r\n");
  EXPECT_EQ(send(c, "c SEARCH ALL\r\n"), "* SEARCH 1 2\r\nc OK SEARCH completed\r\n");
  EXPECT_EQ(send(c, "d SEARCH CHARSET BIG5 ALL\r\n"),
            "d NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset BIG5\r\n");
}

TEST_F(ImapSessionTest, CondstoreReportsModseqAndConditionalStore) {
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  FakeStream c = logged_in();
  EXPECT_EQ(send(c, "a ENABLE CONDSTORE\r\n"), "* ENABLED CONDSTORE\r\na OK ENABLE completed\r\n");
  const std::string sel = send(c, "b SELECT INBOX\r\n");
  EXPECT_NE(sel.find("* OK [HIGHESTMODSEQ "), std::string::npos);
  const std::string f = send(c, "c FETCH 1 (MODSEQ)\r\n");
  const std::string modseq = number_after(f, "MODSEQ (");
  ASSERT_FALSE(modseq.empty()) << f;
  const std::string st = send(c, "d STORE 1 (UNCHANGEDSINCE " + modseq + ") +FLAGS (\\Flagged)\r\n");
  EXPECT_EQ(mask_number_after(st, "MODSEQ ("), "* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (#))\r\nd OK STORE completed\r\n");
  EXPECT_EQ(send(c, "e STORE 1 (UNCHANGEDSINCE " + modseq + ") -FLAGS (\\Flagged)\r\n"),
            "e OK [MODIFIED 1] Conditional STORE failed\r\n");
  EXPECT_EQ(send(c, "f FETCH 1 (FLAGS) (CHANGEDSINCE 999999)\r\n"), "f OK FETCH completed\r\n");
}

// With mailbox events (ABI 1.3) the poll is a slow safety net (30 s by default).
TEST_F(ImapSessionTest, IdleSendsUpdatesUntilDone) {
  FakeStream c = selected();
  EXPECT_EQ(send(c, "i IDLE\r\n"), "+ idling\r\n");
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));  // MemoryMailStore raises no event
  host_.clock().advance(std::chrono::seconds(29));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  host_.clock().advance(std::chrono::seconds(1));
  c.pump();
  EXPECT_EQ(c.take_output(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
  host_.clock().advance(std::chrono::seconds(30));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  EXPECT_EQ(send(c, "DONE\r\n"), "i OK IDLE terminated\r\n");
  EXPECT_EQ(send(c, "n NOOP\r\n"), "n OK NOOP completed\r\n");
}

sdk::MailboxEvent stored_event(std::string account, std::string folder) {
  sdk::MailboxEvent e;
  e.kind = POSTERN_MBOX_EVENT_STORED;
  e.account = std::move(account);
  e.folder = std::move(folder);
  e.actor = "delivery";
  e.uids = {1};
  return e;
}

TEST_F(ImapSessionTest, IdleWakesOnAMailboxEventWithoutWaitingForThePoll) {
  FakeStream c = selected();
  EXPECT_EQ(send(c, "i IDLE\r\n"), "+ idling\r\n");
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  // Another account's or another folder's event wakes nobody here.
  EXPECT_EQ(host_.raise_mailbox_event(stored_event("bob@example.test", "INBOX")), 1u);
  EXPECT_EQ(host_.raise_mailbox_event(stored_event("alice@example.test", "Archive")), 1u);
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  // The clock does not move: the event alone brings the update.
  host_.raise_mailbox_event(stored_event("alice@example.test", "INBOX"));
  c.pump();
  EXPECT_EQ(c.take_output(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
  // A move into the selected folder wakes it as the target.
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  sdk::MailboxEvent moved = stored_event("alice@example.test", "Archive");
  moved.kind = POSTERN_MBOX_EVENT_MOVED;
  moved.target_folder = "INBOX";
  host_.raise_mailbox_event(moved);
  c.pump();
  EXPECT_EQ(c.take_output(), "* 2 EXISTS\r\n* 2 RECENT\r\n");
  EXPECT_EQ(send(c, "DONE\r\n"), "i OK IDLE terminated\r\n");
  // After DONE the session no longer listens: updates wait for the next command.
  ASSERT_TRUE(store_->deliver("alice@example.test", kMessage));
  host_.raise_mailbox_event(stored_event("alice@example.test", "INBOX"));
  c.pump();
  EXPECT_EQ(c.take_output(), "");
  EXPECT_EQ(send(c, "n NOOP\r\n"), "* 3 EXISTS\r\n* 3 RECENT\r\nn OK NOOP completed\r\n");
}

TEST(ImapIdleWithoutEventsTest, PollsEveryTwoSecondsOnAHostWithoutMailboxEvents) {
  FakeHost host;
  auto store = std::make_shared<sdk::testing::MemoryMailStore>();
  store->add_account("alice@example.test", "secret");
  host.use_mail_store(store);
  host.set_mailbox_events_available(false);
  auto plugin = host.load<plugins::imap::ImapPlugin>(R"(<plugin name="imap"/>)");
  ASSERT_TRUE(plugin.ok()) << plugin.error();
  StreamOptions o;
  o.cleartext_auth = true;
  FakeStream c = host.connect("imap", o);
  c.send("l LOGIN alice@example.test secret\r\ns SELECT INBOX\r\ni IDLE\r\n");
  c.take_output();
  ASSERT_TRUE(store->deliver("alice@example.test", kMessage));
  host.clock().advance(std::chrono::seconds(2));
  c.pump();
  EXPECT_EQ(c.take_output(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
}

TEST_F(ImapSessionTest, LargeFetchWaitsForTheClientToRead) {
  const std::string big = "Subject: big\r\n\r\n" + std::string(300 * 1024, 'x') + "\r\n";
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(store_->deliver("alice@example.test", big));
  StreamOptions o;
  o.hold_output = true;
  FakeStream c = connect(true, o);
  send(c, "l LOGIN alice@example.test secret\r\ns SELECT INBOX\r\n");
  c.flush_output();
  c.take_output();
  c.send("f FETCH 1:* BODY.PEEK[]\r\n");
  // Bounded: the session stops producing once about max_queued octets wait.
  EXPECT_LT(c.queued(), 2u * 1024 * 1024);
  EXPECT_GT(c.queued(), 0u);
  size_t rounds = 0;
  std::string all;
  while (c.queued() > 0 && rounds < 100) {
    c.flush_output();
    all += c.take_output();
    ++rounds;
  }
  EXPECT_GT(rounds, 1u);
  EXPECT_NE(all.find("f OK FETCH completed\r\n"), std::string::npos);
  EXPECT_EQ(std::count(all.begin(), all.end(), '*'), 8);
}

TEST_F(ImapSessionTest, HostileInputGetsTaggedErrors) {
  FakeStream c = selected();
  EXPECT_EQ(send(c, "a FETCH 1:4294967295,1:*,*:1 FLAGS\r\n"), "a BAD Invalid message sequence number\r\n");
  EXPECT_EQ(send(c, "b UID FETCH 1:4294967295 FLAGS\r\n"), "b OK UID FETCH completed\r\n");
  EXPECT_EQ(send(c, "c SEARCH " + std::string(100, '(') + "ALL" + std::string(100, ')') + "\r\n"),
            "c BAD Too deeply nested\r\n");
  EXPECT_EQ(send(c, "d SELECT \"&Jjo\"\r\n"), "d NO Mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)\r\n");
  EXPECT_EQ(send(c, "e NOOP " + std::string(70000, 'x') + "\r\n"), "e BAD Command line too long\r\n");
  EXPECT_EQ(send(c, "f APPEND INBOX {60000000}\r\n").substr(0, 15), "f NO [TOOBIG] M");
  EXPECT_EQ(send(c, "g NOOP\r\n"), "g OK NOOP completed\r\n");
}

TEST_F(ImapSessionTest, TooManyBadCommandsDisconnect) {
  FakeStream c = connect();
  c.take_output();
  std::string junk;
  for (int i = 0; i < 25; ++i) junk += "x FROB\r\n";
  const std::string out = send(c, junk);
  EXPECT_NE(out.find("* BYE Too many invalid commands\r\n"), std::string::npos);
  EXPECT_FALSE(c.send("y NOOP\r\n"));
}

}  // namespace
}  // namespace postern::imap
