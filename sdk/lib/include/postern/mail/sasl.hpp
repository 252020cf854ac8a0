#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

/**
 * The SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) exchanges of the mail
 * library (Postern::mail), as one state machine without I/O for SMTP AUTH (RFC 4954), IMAP
 * AUTHENTICATE (RFC 3501 §6.2.2, RFC 4959 SASL-IR) and POP3 AUTH (RFC 5034).
 *
 * The caller frames it: it sends each challenge after "334 " (SMTP) or "+ " (IMAP, POP3),
 * feeds each client response line (CRLF removed), checks the credentials the exchange
 * yields, and turns an error into its protocol's reply. All base64 goes through the
 * library's strict decoder (decode_base64_strict). Nothing here throws on client input
 * (only std::bad_alloc); an exchange object is used by one thread at a time.
 */
namespace postern::mail {

/** The mechanisms the exchange implements. */
enum class SaslMechanism : uint8_t {
  Plain,  // RFC 4616
  Login,  // draft-murchison-sasl-login: "Username:", "Password:"
};

/**
 * Reads a mechanism name as a client sends it (case-insensitive, RFC 4422 §3.1).
 * @param name "PLAIN", "login"...
 * @return the mechanism, or nullopt for any other name (the caller's "unsupported
 *         mechanism" reply: SMTP 504 5.5.4, IMAP NO, POP3 -ERR).
 */
std::optional<SaslMechanism> parse_sasl_mechanism(std::string_view name);

/** @return the mechanism's registered name in upper case ("PLAIN", "LOGIN"). */
std::string_view sasl_mechanism_name(SaslMechanism mechanism);

/** What a finished exchange yields: the identities and the password to check. */
struct SaslCredentials {
  /** Authorization identity; empty when the client gave none or gave the authcid again. */
  std::string authzid;
  /** Authentication identity: the login name. Never empty. */
  std::string authcid;
  /** The password. Never empty. */
  std::string password;
};

/** Why an exchange failed. The framing protocol picks the reply for each. */
enum class SaslError : uint8_t {
  /** The client sent "*" (RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4). SMTP 501 5.0.0. */
  Cancelled,
  /** A response is not strict base64 (RFC 4648 §4). SMTP 501 5.5.2. */
  BadBase64,
  /**
   * The decoded response breaks the mechanism's grammar: PLAIN without exactly two NULs,
   * an empty authcid or password, a NUL in a LOGIN name or password, a field that is not
   * well-formed UTF-8 (RFC 4616 §2, RFC 3629). SASLprep (RFC 4013) is not applied: names
   * and passwords are passed on as the client's octets. SMTP 501 5.5.2.
   */
  Malformed,
  /** A response line or a decoded field exceeds SaslLimits. SMTP 500 5.5.6. */
  TooLong,
  /**
   * PLAIN named an authzid other than the authcid and SaslLimits::allow_authzid is off
   * (no proxy authorization). A failed login to the caller: SMTP 535 5.7.8 and a throttle
   * failure; IMAP NO [AUTHORIZATIONFAILED].
   */
  AuthzidNotAllowed,
  /** feed() was called after the exchange had finished (a caller bug, never the client's). */
  Finished,
};

/** @return a short English description of `error` for logs ("invalid base64"). */
std::string_view sasl_error_text(SaslError error);

/**
 * The longest login name the services take (IMAP LOGIN, POP3 USER); longer ones are
 * refused before any lookup. Accounts are mail addresses, at most 254 octets (RFC 5321
 * §4.5.3.1.3 with the path's angle brackets removed); 1 KiB leaves room to spare.
 */
inline constexpr size_t kMaxLoginName = 1024;

/** Bounds and policy for one exchange. */
struct SaslLimits {
  /**
   * The longest response line, in octets without CRLF. RFC 4954 §4: 12288 octets for an
   * SMTP AUTH command line; the initial response counts against it too.
   */
  size_t max_line = 12288;
  /**
   * The longest decoded authzid, authcid or password. RFC 4616 §2 asks servers to take at
   * least 255 octets; long bearer tokens sent as passwords need more.
   */
  size_t max_field = 4096;
  /**
   * Whether PLAIN may name an authzid other than the authcid (proxy authorization, which
   * the caller then has to check). Off: such a response ends in AuthzidNotAllowed.
   */
  bool allow_authzid = false;
};

/** One step of an exchange: what the caller does next. */
struct SaslStep {
  enum class Kind : uint8_t {
    /** Send `challenge` ("334 " + challenge in SMTP, "+ " + challenge in IMAP and POP3). */
    Challenge,
    /** The exchange is complete: check `credentials`. */
    Credentials,
    /** The exchange failed with `error`; nothing was authenticated. */
    Error,
  };
  Kind kind = Kind::Error;
  /** Challenge: base64 text, possibly empty (PLAIN's empty challenge). */
  std::string challenge;
  /** Credentials: the identities and password. */
  SaslCredentials credentials;
  /** Error: why. */
  SaslError error = SaslError::Finished;
};

/**
 * One SASL exchange, driven by the client's lines. Typical use (SMTP):
 * @code
 *   SaslExchange sasl(*mech, initial_response);   // initial_response: nullopt when absent
 *   for (SaslStep step = sasl.start();; step = sasl.feed(read_line())) {
 *     if (step.kind == SaslStep::Kind::Challenge) { send("334 " + step.challenge); continue; }
 *     if (step.kind == SaslStep::Kind::Credentials) check(step.credentials);
 *     else reply_for(step.error);
 *     break;
 *   }
 * @endcode
 * Each exchange serves one AUTH / AUTHENTICATE command; make a new one for the next.
 */
class SaslExchange {
 public:
  /**
   * @param mechanism the mechanism the client named.
   * @param initial_response the text after the mechanism name, as sent (still base64), or
   *        nullopt when the command had none. "=" is a present but empty response
   *        (RFC 4954 §4, RFC 4959 §3). For LOGIN an initial response is the user name.
   * @param limits bounds and policy.
   */
  SaslExchange(SaslMechanism mechanism, std::optional<std::string_view> initial_response,
               SaslLimits limits = {});

  /**
   * The first step: a challenge to send, or (PLAIN with an initial response) the
   * credentials or an error at once. Call it once, before feed().
   */
  SaslStep start();

  /**
   * Takes the client's response to the last challenge.
   * @param line the response line without its CRLF: base64, "*" to cancel, or empty for an
   *        empty response.
   * @return the next step; after Credentials or Error the exchange is finished and further
   *         calls return Error with SaslError::Finished.
   */
  SaslStep feed(std::string_view line);

  /** @return true once the exchange yielded Credentials or an Error. */
  bool finished() const { return stage_ == Stage::Finished; }

  /** @return the mechanism of this exchange. */
  SaslMechanism mechanism() const { return mechanism_; }

  /**
   * @return the line limit for the caller's reader while a challenge is outstanding
   *         (SaslLimits::max_line).
   */
  size_t max_line() const { return limits_.max_line; }

 private:
  enum class Stage : uint8_t { Start, PlainResponse, LoginUser, LoginPassword, Finished };

  SaslStep plain(std::string_view line, bool initial);
  SaslStep login_user(std::string_view line, bool initial);
  SaslStep login_password(std::string_view line);
  SaslStep fail(SaslError error);
  /** Decodes one response: nullopt with `error` set when it is "*", too long or not base64. */
  std::optional<std::string> decode(std::string_view line, bool initial, SaslError& error) const;

  SaslMechanism mechanism_;
  std::optional<std::string> initial_;
  SaslLimits limits_;
  Stage stage_ = Stage::Start;
  std::string user_;  // LOGIN: the name, while the password is outstanding
};

}  // namespace postern::mail
