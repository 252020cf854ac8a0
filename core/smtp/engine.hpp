#pragma once
// smtp: one session's protocol state machine (RFC 5321 with PIPELINING,
// 8BITMIME, SMTPUTF8, SIZE, DSN, CHUNKING, STARTTLS and AUTH; docs/smtp.md,
// docs/smtp-engine.md). Pure: input octets in, reply octets out through a
// writer, and at most one Request at a time for what takes time or needs the
// outside world (a hook stage, a directory lookup, a password check, a delay,
// MIME parsing, the spool, the TLS handshake). The driver (session.cpp) runs
// the Request and reports its result; until then the engine reads no further
// input, so pipelined commands are answered in order. No socket, no Asio.

#include "core/event/event.hpp"
#include "core/queue/envelope.hpp"
#include "core/smtp/body.hpp"
#include "core/smtp/command.hpp"
#include "core/smtp/envelope.hpp"
#include "core/smtp/recipient_policy.hpp"
#include "core/smtp/reply.hpp"
#include "core/smtp/smtp_config.hpp"

#include "postern/mail/sasl.hpp"
#include "postern/mail/throttle.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace postern::core::smtp {

/** RFC 4954 §4: an AUTH response line may be 12288 octets. */
inline constexpr size_t kAuthLineMax = 12288;
/** Octets of one over-long line dropped before the session is closed (421). */
inline constexpr size_t kLineFloodMax = 64 * 1024;

/** The listener's and the connection's facts the engine needs. */
struct EngineEnvironment {
  std::string server_name;      // banner, EHLO, Received:, 421 texts
  bool starttls_offered = false;  // a certificate and a StartTls listener (the engine stops offering once TLS is on)
  bool cleartext_auth = false;    // the listener allows AUTH before TLS
  bool require_auth = false;      // the listener is submission-only: MAIL needs AUTH
  bool trusted = false;           // the peer is in trusted_networks (relay, no tarpit)
  bool parse_for_hooks = false;   // some plugin runs hooks: the message is MIME-parsed for them
};

/**
 * What the engine asks of the server around it. Every call is quick and
 * non-blocking; the functions may be called from the session's strand.
 */
struct EngineServices {
  std::function<std::string()> new_queue_id;
  /** Octets free on the spool's file system; nullopt when unknown. */
  std::function<std::optional<uint64_t>()> free_bytes;
  /** Wall clock (Received:, envelope). */
  std::function<std::chrono::system_clock::time_point()> wall_clock;
  /** Monotonic clock (the login throttle). */
  std::function<std::chrono::steady_clock::time_point()> monotonic_clock;
  /** Shared by the listener's sessions; null: no delays, no lockout. */
  mail::LoginThrottle* login_throttle = nullptr;
};

/** Run a hook stage on the session's chain and report with stage_done(). */
struct StageRequest {
  event::Stage stage = event::Stage::Connect;
  event::EventData event;  // points at the engine's SessionInfo and Transaction
};
/** Ask the directory (SmtpConfig::recipients) about a recipient; report with recipient_checked(). */
struct RecipientRequest {
  std::string address;
  std::string sender;
};
/** Check a password (slow on purpose: off the strand); report with password_checked(). */
struct PasswordRequest {
  std::string user;
  std::string password;
};
/** Send what is queued, wait, then report with delay_done() (tarpit, failed AUTH). */
struct DelayRequest {
  std::chrono::milliseconds delay{0};
};
/** MIME-parse the message for the hooks (CPU work: the worker pool); report with message_parsed(). */
struct ParseRequest {
  const std::string* message = nullptr;  // the engine's; stable until message_parsed()
};
/** Make the message durable in the spool; report with spooled(). */
struct SpoolRequest {
  queue::Envelope envelope;
  const std::string* message = nullptr;  // the engine's; stable until spooled()
  std::string subdir;                    // "incoming" or "quarantine"
};
/** Send what is queued, then run the TLS handshake; report with tls_started() (a failure just closes). */
struct StartTlsRequest {};

using EngineRequest = std::variant<std::monostate, StageRequest, RecipientRequest, PasswordRequest, DelayRequest,
                                   ParseRequest, SpoolRequest, StartTlsRequest>;

/** Why the input ended. */
enum class InputEnd {
  Closed,    // the client went away (or a read failed)
  Timeout,   // command_timeout / data_timeout expired
  Shutdown,  // the server is stopping
};

/** The negotiated TLS parameters. */
struct TlsFacts {
  std::string protocol;
  std::string cipher;
  int bits = 0;
};

class SmtpEngine {
 public:
  using Writer = std::function<void(std::string_view)>;

  /**
   * @param cfg the settings; held for the session's life.
   * @param info the session's facts (ids, addresses); `helo`, `auth_user` and the TLS fields are the engine's.
   * @param writer receives the reply octets, in order.
   */
  SmtpEngine(std::shared_ptr<const SmtpConfig> cfg, EngineEnvironment env, EngineServices services,
             event::SessionInfo info, Writer writer);

  /** Implicit TLS: the handshake finished before start(). */
  void set_tls(const TlsFacts& tls);
  /** Runs the connect stage, then greets (220). */
  void start();
  /** Answers with a final reply and closes (access list, too many sessions, early talker). */
  void refuse(const Reply& reply);

  /** Takes input octets and processes them as far as possible. */
  void feed(std::string_view data);
  /** Continues with buffered input (after a Request completed). */
  void process();
  /** No more input: logs the lost transaction, answers 421 where the old state machine did, closes. */
  void input_ended(InputEnd why);
  /** The server is stopping: the next command is answered 421 4.3.2 and the session closes. */
  void request_shutdown();

  /** The work the driver must do now (monostate: none). */
  const EngineRequest& request() const { return request_; }
  /** The driver's access: a StageRequest's event is handed to the chain by reference. */
  EngineRequest& request() { return request_; }
  bool busy() const { return !std::holds_alternative<std::monostate>(request_); }
  /** The session is over once the queued replies are sent. */
  bool closed() const { return closing_; }
  /** Reading a message body (DATA or BDAT chunk): the data timeout applies. */
  bool in_body() const { return phase_ == Phase::Data || phase_ == Phase::Bdat; }
  /**
   * Part of a command or AUTH line is held (or an over-long one is being
   * dropped): the line's timeout started with it and is not renewed per read.
   */
  bool mid_line() const {
    return (phase_ == Phase::Command || phase_ == Phase::AuthResponse) && (pos_ < buffer_.size() || discarding_);
  }
  /** The connect stage ran: the disconnect stage is due at the end. */
  bool started() const { return started_; }
  /** Octets of input held back. */
  size_t buffered() const { return buffer_.size() - pos_; }
  /** Messages accepted (queued or discarded) in this session. */
  size_t messages() const { return messages_; }
  const event::SessionInfo& info() const { return info_; }
  /** An event for the disconnect stage (no transaction). */
  event::EventData disconnect_event();

  /** Request results; each resumes the engine (and processes buffered input). */
  void stage_done(const event::Outcome& outcome);
  void recipient_checked(RcptCheck check);
  void password_checked(std::optional<std::string> user);
  void delay_done();
  void message_parsed(std::shared_ptr<const mail::Message> message);
  /** @param error empty on success, else what failed (logged). */
  void spooled(std::string_view error);
  void tls_started(const TlsFacts& tls);

 private:
  enum class Phase { Command, AuthResponse, Data, Bdat };
  enum class LineResult { Ok, NeedMore, TooLong, Flood };
  /** What a DelayRequest is for. */
  enum class DelayFor { None, Tarpit, AuthFailure, AuthPenalty };

  // Output
  void reply(const Reply& r);
  void reply(int code, std::string_view enhanced, std::string_view text);
  /** Replies and counts a protocol error; the error limit adds 421 and closes. */
  void error_reply(int code, std::string_view enhanced, std::string_view text);
  void error_reply(const Reply& r);
  void close() { closing_ = true; }
  /** Queues the reply a Reject/TempFail outcome asks for (and notes a disconnect); true when it decided. */
  bool outcome(const event::Outcome& o, std::string_view reject_text = "Rejected by policy");
  void start_stage(event::Stage stage, std::string_view command, bool with_txn, std::string current_rcpt = {});

  // Input
  LineResult take_line(std::string& out, size_t max);
  void command(std::string_view line);
  void reset_transaction();

  // Commands
  void cmd_helo(std::string_view line, bool ehlo, std::string_view arg);
  void helo_stage_done(const event::Outcome& o);
  void cmd_mail(std::string_view line, std::string_view arg);
  void mail_stage_done(const event::Outcome& o);
  void cmd_rcpt(std::string_view line, std::string_view arg);
  void rcpt_continue();
  void rcpt_decide(const RcptCheck* check);
  void rcpt_stage_done(const event::Outcome& o);
  bool data_precheck();
  void cmd_data(std::string_view line, std::string_view arg);
  void cmd_bdat(std::string_view line, std::string_view arg);
  void data_start_done(const event::Outcome& o);
  void begin_bdat_chunk(bool keep);
  bool feed_data();
  bool feed_bdat();
  void starttls(std::string_view arg);
  bool offer_starttls() const { return env_.starttls_offered && !tls_; }
  bool offer_auth() const { return cfg_->auth && (tls_ || env_.cleartext_auth); }

  // AUTH
  void cmd_auth(std::string_view arg);
  void auth_step(mail::SaslStep step);
  void auth_failed();
  void auth_stage_done(const event::Outcome& o);

  // End of data
  void finish_message(std::string body);
  void headers_stage_done(const event::Outcome& o);
  void data_end_stage_done(event::Outcome o);
  void spool_message();
  void accepted(std::string_view outcome);
  void end_transaction();
  void log_outcome(uint64_t size, std::string_view what) const;
  std::chrono::steady_clock::time_point monotonic_now() const;

  std::shared_ptr<const SmtpConfig> cfg_;
  EngineEnvironment env_;
  EngineServices services_;
  Writer writer_;
  event::SessionInfo info_;
  event::Transaction ev_txn_;
  MailTransaction txn_;

  Phase phase_ = Phase::Command;
  EngineRequest request_;
  std::string buffer_;
  size_t pos_ = 0;
  bool discarding_ = false;  // an over-long line is being dropped up to its LF
  size_t discarded_ = 0;

  bool started_ = false;
  bool closing_ = false;
  bool shutdown_requested_ = false;
  bool esmtp_ = false;
  bool tls_ = false;
  int tls_bits_ = 0;
  size_t errors_ = 0;
  size_t messages_ = 0;
  uint32_t auth_failures_ = 0;
  int last_code_ = 0;

  // State held while a Request runs.
  std::string pending_command_;        // the command line a stage sees
  std::string pending_arg_;            // RCPT: what follows "TO:"
  bool pending_bdat_ = false;          // the data_start stage runs for BDAT, not DATA
  std::string previous_helo_;          // HELO/EHLO: restored when the helo stage refuses
  bool pending_ehlo_ = false;
  MailFrom pending_mail_;
  RcptTo pending_rcpt_;
  DelayFor delay_for_ = DelayFor::None;
  std::optional<mail::SaslExchange> sasl_;
  std::string sasl_mechanism_;
  std::string sasl_login_;             // the login name of the exchange (throttle, log)
  std::optional<PasswordRequest> penalized_;  // checked once the address's penalty is paid
  std::optional<DataDecoder> decoder_;
  BdatAssembler bdat_;
  BdatCommand bdat_command_;
  bool bdat_keep_ = false;
  std::string message_;                // Received: + body, from the end of data to the spool
  uint64_t message_size_ = 0;          // the body as received (log lines)
  std::string subdir_ = "incoming";
  bool discard_ = false;
};

}  // namespace postern::core::smtp
