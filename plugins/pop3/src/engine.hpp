#pragma once
// pop3: one session's protocol state machine (RFC 1939, 2449, 2595, 5034).
// Pure: input bytes in, reply bytes out through a writer, and at most one
// Request at a time for the work that blocks (directory, mailbox store, TLS).
// The driver (session.cpp) runs a Request and feeds its result back; until
// then the engine parses nothing, so commands stay in order.

#include <postern/mail/sasl.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace postern::plugins::pop3 {

/** RFC 2449 §4: a command line is at most 255 octets including CRLF. */
inline constexpr size_t kMaxCommandLine = 255;
/** RFC 5034 §4: a SASL response line may be longer than a command. */
inline constexpr size_t kMaxSaslLine = 8192;

/** The reply to every failed login, whatever the cause (no account probing). */
inline constexpr std::string_view kLoginFailure = "-ERR [AUTH] Login failure or POP3 disabled";

/** The listener-dependent facts the engine needs. */
struct Environment {
  std::string server_name;  // in the greeting
  bool tls_active = false;
  bool can_starttls = false;
  bool cleartext_auth = false;  // the listener allows passwords before TLS
  uint32_t max_failures = 3;
  uint32_t max_bad_commands = 20;
};

/** One message of the maildrop (a snapshot of INBOX taken at login). */
struct DropMessage {
  uint32_t uid = 0;
  uint64_t size = 0;  // octets as sent (wire_size)
  bool deleted = false;
  bool retrieved = false;  // RETR sent it: \Seen at QUIT
};

/** What login produced. */
struct Maildrop {
  std::string account;  // canonical address
  uint32_t uidvalidity = 0;
  std::vector<DropMessage> messages;
};

/** Check login and password, lock and open the maildrop. */
struct LoginRequest {
  std::string login;
  std::string password;
  bool malformed = false;  // an unusable SASL PLAIN response: fails like bad credentials
};
/** Read a message and encode it (RETR, or TOP with body_lines). */
struct FetchRequest {
  uint32_t number = 0;  // 1-based
  uint32_t uid = 0;
  std::optional<uint64_t> body_lines;
};
/** UPDATE state (RFC 1939 §6): remove the deleted messages, mark the retrieved ones \Seen. */
struct CommitRequest {
  std::vector<uint32_t> expunge;
  std::vector<uint32_t> seen;
};
/** Start TLS after the queued "+OK" (RFC 2595 §4). */
struct StartTlsRequest {};
/** Flush and close the connection. */
struct CloseRequest {};

using Request = std::variant<std::monostate, LoginRequest, FetchRequest, CommitRequest, StartTlsRequest, CloseRequest>;

/** Why a login failed. */
enum class LoginFailure {
  Credentials,  // bad login/password, disabled account or POP3 not allowed
  InUse,        // another POP3 session holds the maildrop
  Temporary,    // the directory or the store failed
  Locked,       // the peer's address is locked out after too many failures (not counted)
};

class Engine {
 public:
  using Writer = std::function<void(std::string_view)>;

  Engine(Environment env, Writer writer);

  /** Sends the greeting (RFC 1939 §4: no APOP timestamp: passwords are stored hashed). */
  void start();
  /** Takes input and processes it as far as possible. */
  void feed(std::string_view data);
  /** Continues with buffered input after a Request completed. */
  void process();

  /** The work the driver must do now (monostate: none). */
  const Request& request() const { return request_; }
  bool busy() const { return !std::holds_alternative<std::monostate>(request_); }

  /** LoginRequest results. */
  void login_succeeded(Maildrop drop);
  void login_failed(LoginFailure why, std::string_view detail = {});
  /** FetchRequest results: `encoded` is encode_message()'s output for the message. */
  void fetch_succeeded(std::string_view encoded);
  void fetch_failed(bool gone, std::string_view detail);
  /** CommitRequest result. */
  void commit_done(bool committed, std::string_view detail);
  /** StartTlsRequest: the handshake succeeded (a failure closes the stream). */
  void tls_started();

  /** Failed logins on this connection. */
  uint32_t failures() const { return failures_; }
  bool authenticated() const { return state_ == State::Transaction; }
  const Maildrop& maildrop() const { return drop_; }
  /** Octets of input held back (bounded by the line limits). */
  size_t buffered() const { return buffer_.size(); }

 private:
  enum class State { Authorization, Transaction, Done };

  void reply(std::string_view text);
  void ok(std::string_view text);
  void err(std::string_view text);
  void bad_command(std::string_view text);
  bool take_line(std::string& line);
  void handle_line(std::string_view line);
  void handle_sasl_response(std::string_view line);
  void authorization(const std::string& kw, const std::string& args);
  void transaction(const std::string& kw, const std::string& args);
  void capa();
  void begin_login(std::string login, std::string password, bool malformed = false);
  /** Acts on a step of the AUTH exchange: "+ " challenge, a LoginRequest or a reply. */
  void sasl_step(mail::SaslStep step);
  void finish(std::string_view text);
  /** Resolves a message number argument; replies -ERR and returns nullopt when unusable. */
  std::optional<size_t> message_index(std::string_view arg);
  void listing(std::string_view args, bool uidl);
  std::pair<uint32_t, uint64_t> totals() const;
  std::string uid_string(const DropMessage& m) const;

  Environment env_;
  Writer writer_;
  State state_ = State::Authorization;
  Request request_;
  std::string buffer_;
  bool discarding_ = false;  // an overlong line is being skipped up to its LF
  std::optional<mail::SaslExchange> sasl_;  // "+ " sent, waiting for the client's response
  std::optional<std::string> user_;  // USER given, PASS expected
  uint32_t failures_ = 0;
  uint32_t bad_commands_ = 0;
  Maildrop drop_;
  std::optional<size_t> fetching_;  // index of the message a FetchRequest reads
  bool fetching_top_ = false;
};

}  // namespace postern::plugins::pop3
