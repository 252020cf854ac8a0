#include "engine.hpp"

#include "codec.hpp"

#include <string>
#include <utility>

namespace postern::plugins::pop3 {
namespace {

bool auth_allowed(const Environment& env) { return env.tls_active || env.cleartext_auth; }

constexpr std::string_view kCleartextRefused =
    "[AUTH] Plaintext authentication disallowed on non-secure connections: use STLS or the TLS port";

bool is_transaction_command(const std::string& kw) {
  return kw == "STAT" || kw == "LIST" || kw == "RETR" || kw == "DELE" || kw == "NOOP" || kw == "RSET" ||
         kw == "TOP" || kw == "UIDL";
}

}  // namespace

Engine::Engine(Environment env, Writer writer) : env_(std::move(env)), writer_(std::move(writer)) {}

void Engine::start() {
  const std::string host = env_.server_name.empty() ? std::string("Postern") : env_.server_name;
  ok(host + " POP3 server ready");
}

void Engine::feed(std::string_view data) {
  if (state_ == State::Done) return;
  buffer_.append(data);
  process();
}

void Engine::process() {
  std::string line;
  while (!busy() && state_ != State::Done && take_line(line)) handle_line(line);
}

void Engine::reply(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.append(text);
  out.append("\r\n");
  writer_(out);
}

void Engine::ok(std::string_view text) {
  reply(text.empty() ? std::string("+OK") : "+OK " + std::string(text));
}

void Engine::err(std::string_view text) { reply("-ERR " + std::string(text)); }

void Engine::finish(std::string_view text) {
  reply(text);
  state_ = State::Done;
  buffer_.clear();
  request_ = CloseRequest{};
}

void Engine::bad_command(std::string_view text) {
  // Hostile or broken clients: answer each mistake, then give up on the connection.
  if (++bad_commands_ >= env_.max_bad_commands) {
    finish("-ERR Too many bad commands, closing the connection");
    return;
  }
  err(text);
}

bool Engine::take_line(std::string& line) {
  for (;;) {
    const size_t limit = sasl_ ? kMaxSaslLine : kMaxCommandLine;
    const size_t nl = buffer_.find('\n');
    if (discarding_) {
      if (nl == std::string::npos) {
        buffer_.clear();
        return false;
      }
      buffer_.erase(0, nl + 1);
      discarding_ = false;
      continue;
    }
    const bool overlong = nl == std::string::npos ? buffer_.size() >= limit : nl + 1 > limit;
    if (overlong) {
      // RFC 2449 §4: answer -ERR and skip the rest of the line; never buffer it.
      if (nl == std::string::npos) {
        buffer_.clear();
        discarding_ = true;
      } else {
        buffer_.erase(0, nl + 1);
      }
      sasl_.reset();
      bad_command("Line too long (the limit is " + std::to_string(limit) + " octets with CRLF)");
      if (busy() || state_ == State::Done) return false;
      continue;
    }
    if (nl == std::string::npos) return false;
    line.assign(buffer_, 0, nl);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    buffer_.erase(0, nl + 1);
    return true;
  }
}

void Engine::handle_line(std::string_view line) {
  if (line.find('\0') != std::string_view::npos) {
    sasl_.reset();
    bad_command("NUL octets are not allowed");
    return;
  }
  if (sasl_) {
    sasl_step(sasl_->feed(line));
    return;
  }
  const Command c = parse_command(line);
  if (c.keyword.empty()) {
    bad_command("Empty command");
    return;
  }
  if (state_ == State::Authorization) {
    authorization(c.keyword, c.args);
  } else {
    transaction(c.keyword, c.args);
  }
}

void Engine::capa() {
  std::string out = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n";
  if (state_ == State::Authorization) {
    if (auth_allowed(env_)) out += "USER\r\nSASL PLAIN\r\n";
    if (env_.can_starttls && !env_.tls_active) out += "STLS\r\n";
  }
  out += "IMPLEMENTATION Postern\r\n.\r\n";
  writer_(out);
}

void Engine::authorization(const std::string& kw, const std::string& args) {
  if (kw == "CAPA") {
    capa();
  } else if (kw == "USER") {
    if (!auth_allowed(env_)) return err(kCleartextRefused);
    if (args.empty() || args.find(' ') != std::string::npos) return bad_command("Syntax: USER name");
    user_ = args;
    ok("Send PASS");
  } else if (kw == "PASS") {
    if (!auth_allowed(env_)) return err(kCleartextRefused);
    if (!user_) return bad_command("Send USER first");
    // RFC 1939 §7: the password is the rest of the line, spaces included.
    if (args.empty()) return bad_command("Syntax: PASS password");
    std::string login = std::move(*user_);
    user_.reset();
    begin_login(std::move(login), args);
  } else if (kw == "AUTH") {
    if (args.empty()) {
      // The pre-RFC 5034 mechanism list some clients probe with.
      writer_(auth_allowed(env_) ? "+OK\r\nPLAIN\r\n.\r\n" : "+OK\r\n.\r\n");
      return;
    }
    const size_t sp = args.find(' ');
    // PLAIN only, as CAPA and the bare AUTH list say.
    if (mail::parse_sasl_mechanism(std::string_view(args).substr(0, sp)) != mail::SaslMechanism::Plain) {
      return err("Unsupported authentication mechanism");
    }
    if (!auth_allowed(env_)) return err(kCleartextRefused);
    user_.reset();
    // RFC 5034 §4: an initial response follows the mechanism, "=" when it is empty.
    std::optional<std::string_view> initial;
    if (sp != std::string::npos) initial = std::string_view(args).substr(sp + 1);
    sasl_.emplace(mail::SaslMechanism::Plain, initial);
    sasl_step(sasl_->start());
  } else if (kw == "APOP") {
    err("APOP is not available: use USER/PASS or AUTH PLAIN");
  } else if (kw == "STLS") {
    if (env_.tls_active) return err("Already using TLS");
    if (!env_.can_starttls) return err("STLS is not available on this port");
    if (!args.empty()) return bad_command("Syntax: STLS");
    ok("Begin TLS negotiation");
    // RFC 2595 §4: nothing the client pipelined after STLS may be acted on.
    buffer_.clear();
    discarding_ = false;
    user_.reset();
    request_ = StartTlsRequest{};
  } else if (kw == "QUIT") {
    finish("+OK Bye");
  } else if (is_transaction_command(kw)) {
    bad_command("Log in first (USER/PASS or AUTH)");
  } else {
    bad_command("Unknown command");
  }
}

void Engine::sasl_step(mail::SaslStep step) {
  using Kind = mail::SaslStep::Kind;
  if (step.kind == Kind::Challenge) {
    // RFC 5034 §4: a challenge is "+ " and its base64, an empty one "+ " alone.
    writer_("+ " + step.challenge + "\r\n");
    return;
  }
  sasl_.reset();
  if (step.kind == Kind::Credentials) {
    // USER names are bounded by the command line (255 octets); a PLAIN authcid may be longer.
    if (step.credentials.authcid.size() > mail::kMaxLoginName) return err("[AUTH] Login name too long");
    return begin_login(std::move(step.credentials.authcid), std::move(step.credentials.password));
  }
  switch (step.error) {
    case mail::SaslError::Cancelled:
      return err("Authentication cancelled");
    case mail::SaslError::BadBase64:
      return bad_command("Invalid base64 data");
    case mail::SaslError::TooLong:
      return bad_command("Authentication response too long");
    case mail::SaslError::Malformed:
    case mail::SaslError::AuthzidNotAllowed:
    case mail::SaslError::Finished:
      break;
  }
  // An unusable response, or an authzid other than the login (no proxy authorization):
  // a failed login like bad credentials, so that nothing tells them apart.
  begin_login({}, {}, true);
}

void Engine::begin_login(std::string login, std::string password, bool malformed) {
  request_ = LoginRequest{std::move(login), std::move(password), malformed};
}

void Engine::login_succeeded(Maildrop drop) {
  request_ = std::monostate{};
  drop_ = std::move(drop);
  state_ = State::Transaction;
  const auto [count, octets] = totals();
  ok("Logged in, " + std::to_string(count) + " messages (" + std::to_string(octets) + " octets)");
}

void Engine::login_failed(LoginFailure why, std::string_view detail) {
  request_ = std::monostate{};
  std::string text;
  switch (why) {
    case LoginFailure::Credentials:
      ++failures_;
      text = std::string(kLoginFailure);
      break;
    case LoginFailure::InUse:
      text = "-ERR [IN-USE] The maildrop is in use by another POP3 session";
      break;
    case LoginFailure::Temporary:
      text = "-ERR [SYS/TEMP] Temporary server failure, try again later";
      if (!detail.empty()) text += " (" + std::string(detail) + ")";
      break;
    case LoginFailure::Locked:
      text = "-ERR [SYS/TEMP] Too many failed logins from your address, try again later";
      break;
  }
  if (failures_ >= env_.max_failures) {
    finish(text);
    return;
  }
  reply(text);
}

std::pair<uint32_t, uint64_t> Engine::totals() const {
  uint32_t count = 0;
  uint64_t octets = 0;
  for (const auto& m : drop_.messages) {
    if (m.deleted) continue;
    ++count;
    octets += m.size;
  }
  return {count, octets};
}

std::string Engine::uid_string(const DropMessage& m) const {
  // RFC 1939 §7: 1-70 characters 0x21-0x7E, unique and stable across sessions.
  return std::to_string(drop_.uidvalidity) + "." + std::to_string(m.uid);
}

std::optional<size_t> Engine::message_index(std::string_view arg) {
  const auto n = parse_number(arg);
  if (!n) {
    bad_command("Syntax: a message number is expected");
    return std::nullopt;
  }
  if (*n == 0 || *n > drop_.messages.size()) {
    err("No such message");
    return std::nullopt;
  }
  const size_t index = *n - 1;
  if (drop_.messages[index].deleted) {
    err("Message " + std::to_string(*n) + " is deleted");
    return std::nullopt;
  }
  return index;
}

void Engine::listing(std::string_view args, bool uidl) {
  auto line_for = [&](size_t i) {
    const auto& m = drop_.messages[i];
    return std::to_string(i + 1) + " " + (uidl ? uid_string(m) : std::to_string(m.size));
  };
  if (!args.empty()) {
    const auto index = message_index(args);
    if (!index) return;
    ok(line_for(*index));
    return;
  }
  const auto [count, octets] = totals();
  std::string out = uidl ? std::string("+OK Unique-ID listing follows\r\n")
                         : "+OK " + std::to_string(count) + " messages (" + std::to_string(octets) + " octets)\r\n";
  for (size_t i = 0; i < drop_.messages.size(); ++i) {
    if (drop_.messages[i].deleted) continue;
    out += line_for(i);
    out += "\r\n";
  }
  out += ".\r\n";
  writer_(out);
}

void Engine::transaction(const std::string& kw, const std::string& args) {
  if (kw == "STAT") {
    if (!args.empty()) return bad_command("Syntax: STAT");
    const auto [count, octets] = totals();
    ok(std::to_string(count) + " " + std::to_string(octets));
  } else if (kw == "LIST" || kw == "UIDL") {
    listing(args, kw == "UIDL");
  } else if (kw == "RETR") {
    const auto index = message_index(args);
    if (!index) return;
    fetching_ = *index;
    fetching_top_ = false;
    request_ = FetchRequest{static_cast<uint32_t>(*index + 1), drop_.messages[*index].uid, std::nullopt};
  } else if (kw == "TOP") {
    const auto parts = split_two(args);
    if (!parts) return bad_command("Syntax: TOP msg lines");
    const auto lines = parse_number(parts->second);
    if (!lines) return bad_command("Syntax: TOP msg lines");
    const auto index = message_index(parts->first);
    if (!index) return;
    fetching_ = *index;
    fetching_top_ = true;
    request_ = FetchRequest{static_cast<uint32_t>(*index + 1), drop_.messages[*index].uid, uint64_t{*lines}};
  } else if (kw == "DELE") {
    const auto index = message_index(args);
    if (!index) return;
    drop_.messages[*index].deleted = true;
    ok("Message " + std::to_string(*index + 1) + " deleted");
  } else if (kw == "NOOP") {
    if (!args.empty()) return bad_command("Syntax: NOOP");
    ok("");
  } else if (kw == "RSET") {
    if (!args.empty()) return bad_command("Syntax: RSET");
    for (auto& m : drop_.messages) m.deleted = false;
    const auto [count, octets] = totals();
    ok(std::to_string(count) + " messages (" + std::to_string(octets) + " octets)");
  } else if (kw == "QUIT") {
    CommitRequest commit;
    for (const auto& m : drop_.messages) {
      if (m.deleted) {
        commit.expunge.push_back(m.uid);
      } else if (m.retrieved) {
        commit.seen.push_back(m.uid);
      }
    }
    if (commit.expunge.empty() && commit.seen.empty()) {
      finish("+OK Bye");
      return;
    }
    // RFC 1939 §6: the UPDATE state; the reply waits for the removal.
    request_ = std::move(commit);
  } else if (kw == "CAPA") {
    capa();
  } else if (kw == "USER" || kw == "PASS" || kw == "AUTH" || kw == "APOP") {
    err("Already logged in");
  } else if (kw == "STLS") {
    err("STLS is only allowed before login");
  } else {
    bad_command("Unknown command");
  }
}

void Engine::fetch_succeeded(std::string_view encoded) {
  request_ = std::monostate{};
  if (!fetching_) return;
  auto& m = drop_.messages[*fetching_];
  fetching_.reset();
  if (fetching_top_) {
    ok("Top of message follows");
  } else {
    m.retrieved = true;
    ok(std::to_string(m.size) + " octets");
  }
  writer_(encoded);
}

void Engine::fetch_failed(bool gone, std::string_view detail) {
  request_ = std::monostate{};
  const size_t number = fetching_.value_or(0) + 1;
  fetching_.reset();
  if (gone) {
    err("Message " + std::to_string(number) + " was removed by another session");
  } else {
    err("[SYS/TEMP] Cannot read message " + std::to_string(number) + ": " + std::string(detail));
  }
}

void Engine::commit_done(bool committed, std::string_view detail) {
  request_ = std::monostate{};
  size_t removed = 0;
  for (const auto& m : drop_.messages) removed += m.deleted ? 1 : 0;
  if (committed) {
    finish("+OK Bye, " + std::to_string(removed) + " messages deleted");
  } else {
    // RFC 1939 §6: "-ERR some deleted messages not removed".
    finish("-ERR [SYS/TEMP] Some deleted messages were not removed: " + std::string(detail));
  }
}

void Engine::tls_started() {
  request_ = std::monostate{};
  env_.tls_active = true;
  env_.can_starttls = false;
  buffer_.clear();
  discarding_ = false;
  sasl_.reset();
  user_.reset();
}

}  // namespace postern::plugins::pop3
