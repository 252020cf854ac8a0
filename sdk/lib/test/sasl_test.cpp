// Tests for postern/mail/sasl.hpp: the PLAIN and LOGIN exchanges, line by line.
#include "postern/mail/sasl.hpp"

#include "postern/mail/codec.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

namespace postern::mail {
namespace {

using Kind = SaslStep::Kind;

std::string b64(std::string_view s) { return encode_base64(s); }

/** What one exchange should do: the responses the client sends and the end it reaches. */
struct Case {
  std::string name;
  SaslMechanism mechanism;
  std::optional<std::string> initial;
  std::vector<std::string> lines;       // client responses after start()
  std::vector<std::string> challenges;  // every challenge the server sends, in order
  std::optional<SaslError> error;       // nullopt: ends in credentials
  SaslCredentials credentials{};
  SaslLimits limits{};
};

/** Runs a case: start(), then each line; checks challenges, the end and that all lines were used. */
void run(const Case& c) {
  SCOPED_TRACE(c.name);
  SaslExchange sasl(c.mechanism, c.initial ? std::optional<std::string_view>(*c.initial) : std::nullopt, c.limits);
  EXPECT_FALSE(sasl.finished());
  std::vector<std::string> challenges;
  size_t used = 0;
  SaslStep step = sasl.start();
  while (step.kind == Kind::Challenge) {
    challenges.push_back(step.challenge);
    ASSERT_LT(used, c.lines.size()) << "the server wants another response";
    step = sasl.feed(c.lines[used++]);
  }
  EXPECT_EQ(used, c.lines.size()) << "the exchange ended before every line was sent";
  EXPECT_EQ(challenges, c.challenges);
  EXPECT_TRUE(sasl.finished());
  if (c.error) {
    ASSERT_EQ(step.kind, Kind::Error);
    EXPECT_EQ(step.error, *c.error) << sasl_error_text(step.error);
  } else {
    ASSERT_EQ(step.kind, Kind::Credentials) << sasl_error_text(step.error);
    EXPECT_EQ(step.credentials.authzid, c.credentials.authzid);
    EXPECT_EQ(step.credentials.authcid, c.credentials.authcid);
    EXPECT_EQ(step.credentials.password, c.credentials.password);
  }
  // Finished is final: nothing more is taken.
  const SaslStep after = sasl.feed(b64(std::string("\0a\0b", 4)));
  EXPECT_EQ(after.kind, Kind::Error);
  EXPECT_EQ(after.error, SaslError::Finished);
}

const std::string kAliceSecret = b64(std::string("\0alice\0secret", 13));

TEST(MailSaslTest, PlainExchanges) {
  SaslLimits proxy;
  proxy.allow_authzid = true;
  SaslLimits small;
  small.max_field = 5;
  const Case cases[] = {
      {"initial response", SaslMechanism::Plain, kAliceSecret, {}, {}, std::nullopt, {"", "alice", "secret"}},
      {"empty challenge then the response", SaslMechanism::Plain, std::nullopt, {kAliceSecret}, {""},
       std::nullopt, {"", "alice", "secret"}},
      {"authzid equal to authcid is no authzid", SaslMechanism::Plain, b64(std::string("alice\0alice\0pw", 14)),
       {}, {}, std::nullopt, {"", "alice", "pw"}},
      {"another authzid is refused", SaslMechanism::Plain, b64(std::string("bob\0alice\0pw", 12)), {}, {},
       SaslError::AuthzidNotAllowed},
      {"another authzid when proxying is allowed", SaslMechanism::Plain, b64(std::string("bob\0alice\0pw", 12)),
       {}, {}, std::nullopt, {"bob", "alice", "pw"}, proxy},
      {"authzid is case-sensitive", SaslMechanism::Plain, b64(std::string("Alice\0alice\0pw", 14)), {}, {},
       SaslError::AuthzidNotAllowed},
      {"password with spaces and 8-bit octets", SaslMechanism::Plain,
       b64(std::string("\0alice\0 p w \xc3\xa9 ", 15)), {}, {}, std::nullopt, {"", "alice", " p w \xc3\xa9 "}},
      // RFC 4954 §4: "=" is an empty initial response, which PLAIN cannot use.
      {"= is an empty initial response", SaslMechanism::Plain, "=", {}, {}, SaslError::Malformed},
      {"empty line as the response", SaslMechanism::Plain, std::nullopt, {""}, {""}, SaslError::Malformed},
      {"= in a continuation is not base64", SaslMechanism::Plain, std::nullopt, {"="}, {""}, SaslError::BadBase64},
      {"* cancels", SaslMechanism::Plain, std::nullopt, {"*"}, {""}, SaslError::Cancelled},
      {"* as the initial response cancels", SaslMechanism::Plain, "*", {}, {}, SaslError::Cancelled},
      {"bad base64 initial", SaslMechanism::Plain, "!!!!", {}, {}, SaslError::BadBase64},
      {"unpadded base64", SaslMechanism::Plain, "AGEAYg", {}, {}, SaslError::BadBase64},
      {"base64 with a trailing space", SaslMechanism::Plain, std::nullopt, {kAliceSecret + " "}, {""},
       SaslError::BadBase64},
      {"one NUL", SaslMechanism::Plain, b64(std::string("alice\0secret", 12)), {}, {}, SaslError::Malformed},
      {"no NUL", SaslMechanism::Plain, b64("alicesecret"), {}, {}, SaslError::Malformed},
      {"three NULs", SaslMechanism::Plain, b64(std::string("\0alice\0sec\0ret", 14)), {}, {},
       SaslError::Malformed},
      {"empty authcid", SaslMechanism::Plain, b64(std::string("\0\0secret", 8)), {}, {}, SaslError::Malformed},
      {"empty password", SaslMechanism::Plain, b64(std::string("\0alice\0", 7)), {}, {}, SaslError::Malformed},
      {"field at the limit", SaslMechanism::Plain, b64(std::string("\0alice\0abcde", 12)), {}, {}, std::nullopt,
       {"", "alice", "abcde"}, small},
      {"password over the field limit", SaslMechanism::Plain, b64(std::string("\0alice\0abcdef", 13)), {}, {},
       SaslError::TooLong, {}, small},
      {"authzid over the field limit", SaslMechanism::Plain, b64(std::string("abcdef\0alice\0abc", 16)), {}, {},
       SaslError::TooLong, {}, small},
      // RFC 4616 §2: UTF-8 fields (RFC 3629); SASLprep is not applied, the octets pass as they are.
      {"UTF-8 name and password", SaslMechanism::Plain, b64(std::string("\0j\xc3\xb6rg\0p\xc3\xa4ss", 12)), {}, {},
       std::nullopt, {"", "j\xc3\xb6rg", "p\xc3\xa4ss"}},
      {"Latin-1 password", SaslMechanism::Plain, b64(std::string("\0alice\0p\xe4ss", 11)), {}, {},
       SaslError::Malformed},
      {"overlong UTF-8 in the name", SaslMechanism::Plain, b64(std::string("\0a\xc0\xaf" "b\0secret", 12)), {}, {},
       SaslError::Malformed},
      {"surrogate in the authzid", SaslMechanism::Plain, b64(std::string("\xed\xa0\x80\0alice\0secret", 16)), {},
       {}, SaslError::Malformed},
  };
  for (const Case& c : cases) run(c);
}

TEST(MailSaslTest, LoginExchanges) {
  const std::string user = "VXNlcm5hbWU6";  // "Username:"
  const std::string pass = "UGFzc3dvcmQ6";  // "Password:"
  const Case cases[] = {
      {"two steps", SaslMechanism::Login, std::nullopt, {b64("alice"), b64("secret")}, {user, pass}, std::nullopt,
       {"", "alice", "secret"}},
      {"the initial response is the name", SaslMechanism::Login, b64("alice"), {b64("secret")}, {pass},
       std::nullopt, {"", "alice", "secret"}},
      {"= is an empty name", SaslMechanism::Login, "=", {}, {}, SaslError::Malformed},
      {"cancel at the name", SaslMechanism::Login, std::nullopt, {"*"}, {user}, SaslError::Cancelled},
      {"cancel at the password", SaslMechanism::Login, std::nullopt, {b64("alice"), "*"}, {user, pass},
       SaslError::Cancelled},
      {"bad base64 name", SaslMechanism::Login, std::nullopt, {"alice"}, {user}, SaslError::BadBase64},
      {"bad base64 password", SaslMechanism::Login, std::nullopt, {b64("alice"), "c2VjcmV0="}, {user, pass},
       SaslError::BadBase64},
      {"NUL in the name", SaslMechanism::Login, std::nullopt, {b64(std::string("al\0ice", 6))}, {user},
       SaslError::Malformed},
      {"NUL in the password", SaslMechanism::Login, std::nullopt, {b64("alice"), b64(std::string("se\0cret", 7))},
       {user, pass}, SaslError::Malformed},
      {"empty password", SaslMechanism::Login, std::nullopt, {b64("alice"), ""}, {user, pass}, SaslError::Malformed},
      {"Latin-1 name", SaslMechanism::Login, std::nullopt, {b64("j\xf6rg")}, {user}, SaslError::Malformed},
      {"truncated UTF-8 in the password", SaslMechanism::Login, std::nullopt, {b64("alice"), b64("pass\xc3")},
       {user, pass}, SaslError::Malformed},
  };
  for (const Case& c : cases) run(c);
}

TEST(MailSaslTest, LineLimitCountsTheEncodedResponse) {
  SaslLimits limits;
  limits.max_line = 20;
  const std::string fits = b64(std::string("\0alice\0secret", 13));  // 20 octets
  ASSERT_EQ(fits.size(), 20u);
  const Case cases[] = {
      {"at the limit", SaslMechanism::Plain, fits, {}, {}, std::nullopt, {"", "alice", "secret"}, limits},
      {"over the limit, initial", SaslMechanism::Plain, b64(std::string("\0alice\0secret123", 16)), {}, {},
       SaslError::TooLong, {}, limits},
      {"over the limit, continuation", SaslMechanism::Plain, std::nullopt, {b64(std::string("\0alice\0secret123", 16))},
       {""}, SaslError::TooLong, {}, limits},
      {"LOGIN password over the limit", SaslMechanism::Login, std::nullopt, {b64("alice"), std::string(21, 'A')},
       {"VXNlcm5hbWU6", "UGFzc3dvcmQ6"}, SaslError::TooLong, {}, limits},
  };
  for (const Case& c : cases) run(c);
  // The default is RFC 4954's 12288.
  EXPECT_EQ(SaslExchange(SaslMechanism::Plain, std::nullopt).max_line(), 12288u);
  EXPECT_EQ(SaslLimits{}.max_line, 12288u);
}

TEST(MailSaslTest, RandomResponsesNeverYieldBrokenCredentials) {
  // Octets drawn mostly from NUL and two letters, so that many responses are valid PLAIN
  // messages and many are one NUL short or over; the rest of the cases is noise.
  std::mt19937 rng(12345);
  const std::string alphabet = std::string("\0\0ab=*", 7);
  SaslLimits limits;
  limits.max_field = 6;
  size_t credentials = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string raw(rng() % 16, '\0');
    for (char& ch : raw) ch = alphabet[rng() % alphabet.size()];
    const SaslMechanism mech = rng() % 2 ? SaslMechanism::Plain : SaslMechanism::Login;
    // Mostly base64 of the octets, sometimes the octets themselves (rarely valid base64).
    const auto line = [&]() { return rng() % 8 ? b64(raw) : raw; };
    SaslExchange sasl(mech, rng() % 2 ? std::optional<std::string>(line()) : std::nullopt, limits);
    SaslStep step = sasl.start();
    int rounds = 0;
    while (step.kind == Kind::Challenge) {
      ASSERT_LT(++rounds, 3) << "PLAIN and LOGIN take at most two responses";
      step = sasl.feed(line());
    }
    ASSERT_TRUE(sasl.finished());
    if (step.kind != Kind::Credentials) {
      EXPECT_NE(step.error, SaslError::Finished);
      continue;
    }
    ++credentials;
    const SaslCredentials& c = step.credentials;
    EXPECT_FALSE(c.authcid.empty());
    EXPECT_FALSE(c.password.empty());
    EXPECT_TRUE(c.authzid.empty());  // allow_authzid is off
    for (const std::string* f : {&c.authcid, &c.password}) {
      EXPECT_EQ(f->find('\0'), std::string::npos);
      EXPECT_LE(f->size(), limits.max_field);
    }
  }
  EXPECT_GT(credentials, 100u);  // the generator reaches the success path often enough to mean something
}

TEST(MailSaslTest, StartTwiceIsAnError) {
  SaslExchange sasl(SaslMechanism::Plain, std::nullopt);
  EXPECT_EQ(sasl.start().kind, Kind::Challenge);
  const SaslStep again = sasl.start();
  EXPECT_EQ(again.kind, Kind::Error);
  EXPECT_EQ(again.error, SaslError::Finished);
}

TEST(MailSaslTest, FeedBeforeStartIsAnError) {
  SaslExchange sasl(SaslMechanism::Login, std::nullopt);
  const SaslStep step = sasl.feed(b64("alice"));
  EXPECT_EQ(step.kind, Kind::Error);
  EXPECT_EQ(step.error, SaslError::Finished);
}

TEST(MailSaslTest, MechanismNames) {
  struct NameCase {
    std::string in;
    std::optional<SaslMechanism> out;
  };
  const NameCase cases[] = {
      {"PLAIN", SaslMechanism::Plain}, {"plain", SaslMechanism::Plain}, {"Login", SaslMechanism::Login},
      {"CRAM-MD5", std::nullopt},      {"", std::nullopt},              {"PLAIN ", std::nullopt},
      {"XOAUTH2", std::nullopt},
  };
  for (const NameCase& c : cases) EXPECT_EQ(parse_sasl_mechanism(c.in), c.out) << c.in;
  EXPECT_EQ(sasl_mechanism_name(SaslMechanism::Plain), "PLAIN");
  EXPECT_EQ(sasl_mechanism_name(SaslMechanism::Login), "LOGIN");
  for (SaslError e : {SaslError::Cancelled, SaslError::BadBase64, SaslError::Malformed, SaslError::TooLong,
                      SaslError::AuthzidNotAllowed, SaslError::Finished}) {
    EXPECT_FALSE(sasl_error_text(e).empty());
  }
}

}  // namespace
}  // namespace postern::mail
