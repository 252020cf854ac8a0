#include "postern/mail/sasl.hpp"

#include "postern/mail/ascii.hpp"
#include "postern/mail/charset.hpp"
#include "postern/mail/codec.hpp"

#include <utility>

namespace postern::mail {
namespace {

// draft-murchison-sasl-login §2: the challenges are these prompts, base64-encoded.
constexpr std::string_view kUsernamePrompt = "VXNlcm5hbWU6";  // "Username:"
constexpr std::string_view kPasswordPrompt = "UGFzc3dvcmQ6";  // "Password:"

SaslStep challenge(std::string_view text) {
  SaslStep s;
  s.kind = SaslStep::Kind::Challenge;
  s.challenge = std::string(text);
  return s;
}

}  // namespace

std::optional<SaslMechanism> parse_sasl_mechanism(std::string_view name) {
  if (iequals(name, "PLAIN")) return SaslMechanism::Plain;
  if (iequals(name, "LOGIN")) return SaslMechanism::Login;
  return std::nullopt;
}

std::string_view sasl_mechanism_name(SaslMechanism mechanism) {
  switch (mechanism) {
    case SaslMechanism::Plain:
      return "PLAIN";
    case SaslMechanism::Login:
      return "LOGIN";
  }
  return "";
}

std::string_view sasl_error_text(SaslError error) {
  switch (error) {
    case SaslError::Cancelled:
      return "authentication cancelled";
    case SaslError::BadBase64:
      return "invalid base64";
    case SaslError::Malformed:
      return "malformed response";
    case SaslError::TooLong:
      return "response too long";
    case SaslError::AuthzidNotAllowed:
      return "authorization identity not allowed";
    case SaslError::Finished:
      return "exchange already finished";
  }
  return "";
}

SaslExchange::SaslExchange(SaslMechanism mechanism, std::optional<std::string_view> initial_response,
                           SaslLimits limits)
    : mechanism_(mechanism), limits_(limits) {
  if (initial_response) initial_ = std::string(*initial_response);
}

SaslStep SaslExchange::start() {
  if (stage_ != Stage::Start) return fail(SaslError::Finished);
  if (mechanism_ == SaslMechanism::Plain) {
    if (initial_) return plain(*initial_, true);
    // RFC 4616 §2: the server's first challenge is empty.
    stage_ = Stage::PlainResponse;
    return challenge("");
  }
  if (initial_) return login_user(*initial_, true);
  stage_ = Stage::LoginUser;
  return challenge(kUsernamePrompt);
}

SaslStep SaslExchange::feed(std::string_view line) {
  switch (stage_) {
    case Stage::PlainResponse:
      return plain(line, false);
    case Stage::LoginUser:
      return login_user(line, false);
    case Stage::LoginPassword:
      return login_password(line);
    case Stage::Start:
    case Stage::Finished:
      break;
  }
  return fail(SaslError::Finished);
}

SaslStep SaslExchange::fail(SaslError error) {
  stage_ = Stage::Finished;
  user_.clear();
  SaslStep s;
  s.kind = SaslStep::Kind::Error;
  s.error = error;
  return s;
}

std::optional<std::string> SaslExchange::decode(std::string_view line, bool initial, SaslError& error) const {
  if (line.size() > limits_.max_line) {
    error = SaslError::TooLong;
    return std::nullopt;
  }
  // RFC 4954 §4 / RFC 3501 §6.2.2 / RFC 5034 §4: "*" cancels. An initial response of "*"
  // is not base64 either; taking it as a cancel is what the client meant.
  if (line == "*") {
    error = SaslError::Cancelled;
    return std::nullopt;
  }
  // RFC 4954 §4, RFC 4959 §3: "=" is an initial response present but empty. In a
  // continuation an empty response is an empty line.
  if (initial && line == "=") return std::string();
  auto decoded = decode_base64_strict(line);
  if (!decoded) error = SaslError::BadBase64;
  return decoded;
}

SaslStep SaslExchange::plain(std::string_view line, bool initial) {
  SaslError error{};
  const std::optional<std::string> decoded = decode(line, initial, error);
  if (!decoded) return fail(error);
  // RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd; authcid and passwd
  // are 1*SAFE, and SAFE excludes NUL: exactly two NULs, neither field empty.
  const std::string_view d = *decoded;
  const size_t a = d.find('\0');
  const size_t b = a == std::string_view::npos ? std::string_view::npos : d.find('\0', a + 1);
  if (b == std::string_view::npos || d.find('\0', b + 1) != std::string_view::npos) {
    return fail(SaslError::Malformed);
  }
  const std::string_view authzid = d.substr(0, a);
  const std::string_view authcid = d.substr(a + 1, b - a - 1);
  const std::string_view password = d.substr(b + 1);
  if (authcid.empty() || password.empty()) return fail(SaslError::Malformed);
  if (authzid.size() > limits_.max_field || authcid.size() > limits_.max_field ||
      password.size() > limits_.max_field) {
    return fail(SaslError::TooLong);
  }
  // RFC 4616 §2: every field is UTF8SAFE / UTF8-2..4 (RFC 3629), so ill-formed UTF-8 (an
  // old client's Latin-1 password) is malformed. SASLprep (RFC 4013) is not applied: the
  // octets are compared as they come.
  if (!is_valid_utf8(d)) return fail(SaslError::Malformed);
  const bool proxy = !authzid.empty() && authzid != authcid;
  if (proxy && !limits_.allow_authzid) return fail(SaslError::AuthzidNotAllowed);
  stage_ = Stage::Finished;
  SaslStep s;
  s.kind = SaslStep::Kind::Credentials;
  if (proxy) s.credentials.authzid = std::string(authzid);
  s.credentials.authcid = std::string(authcid);
  s.credentials.password = std::string(password);
  return s;
}

SaslStep SaslExchange::login_user(std::string_view line, bool initial) {
  SaslError error{};
  std::optional<std::string> decoded = decode(line, initial, error);
  if (!decoded) return fail(error);
  // LOGIN has no grammar of its own; the name and password are PLAIN's authcid and passwd
  // in all but encoding, so the same rules hold: not empty, no NUL, well-formed UTF-8.
  if (decoded->empty() || decoded->find('\0') != std::string::npos) return fail(SaslError::Malformed);
  if (decoded->size() > limits_.max_field) return fail(SaslError::TooLong);
  if (!is_valid_utf8(*decoded)) return fail(SaslError::Malformed);
  user_ = std::move(*decoded);
  stage_ = Stage::LoginPassword;
  return challenge(kPasswordPrompt);
}

SaslStep SaslExchange::login_password(std::string_view line) {
  SaslError error{};
  std::optional<std::string> decoded = decode(line, false, error);
  if (!decoded) return fail(error);
  if (decoded->empty() || decoded->find('\0') != std::string::npos) return fail(SaslError::Malformed);
  if (decoded->size() > limits_.max_field) return fail(SaslError::TooLong);
  if (!is_valid_utf8(*decoded)) return fail(SaslError::Malformed);
  stage_ = Stage::Finished;
  SaslStep s;
  s.kind = SaslStep::Kind::Credentials;
  s.credentials.authcid = std::move(user_);
  s.credentials.password = std::move(*decoded);
  user_.clear();
  return s;
}

}  // namespace postern::mail
