#include "core/smtp/envelope.hpp"

#include "core/log/log.hpp"
#include "core/smtp/address.hpp"

#include <fmt/format.h>

#include <ctime>

namespace postern::core::smtp {

std::string rfc5322_date(std::chrono::system_clock::time_point tp) {
  static const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} +0000", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string protocol_name(bool smtputf8, bool esmtp, bool tls, bool authenticated) {
  std::string p = smtputf8 ? "UTF8SMTP" : (esmtp ? "ESMTP" : "SMTP");
  if (p == "SMTP") return p;
  if (tls) p += 'S';
  if (authenticated) p += 'A';
  return p;
}

std::string received_header(const event::SessionInfo& session, const MailTransaction& txn, std::string_view queue_id,
                            const Transport& transport) {
  // RFC 5321 §4.4 time stamp line.
  std::string h = fmt::format("Received: from {} ([{}])\r\n", session.helo, session.peer_ip);
  if (transport.tls) {
    h += fmt::format("\t(using {} with cipher {} ({} bits))\r\n", session.tls_protocol, session.tls_cipher,
                     transport.tls_bits);
  }
  h += fmt::format("\tby {} (Postern) with {} id {}", session.server_name,
                   protocol_name(txn.smtputf8, transport.esmtp, transport.tls, !session.auth_user.empty()), queue_id);
  if (txn.rcpts.size() == 1) h += fmt::format("\r\n\tfor <{}>", txn.rcpts.front().address);
  h += fmt::format("; {}\r\n", rfc5322_date(txn.received_at));
  return h;
}

queue::Envelope build_envelope(const MailTransaction& txn, const event::Transaction& hooks,
                               const event::SessionInfo& session) {
  queue::Envelope env;
  env.queue_id = hooks.queue_id;
  env.mail_from = txn.mail_from;
  env.recipients = txn.rcpts;
  for (const auto& removed : hooks.recipients_removed) {
    std::erase_if(env.recipients, [&](const auto& r) { return iequals(r.address, removed); });
  }
  for (const auto& added : hooks.recipients_added) {
    queue::EnvelopeRecipient r;
    r.address = added;
    env.recipients.push_back(std::move(r));
  }
  env.envid = txn.envid;
  env.ret = txn.ret;
  env.received_at = txn.received_at;
  env.peer = session.peer_ip;
  env.helo = session.helo;
  env.auth_user = session.auth_user;
  env.body = txn.body;
  env.smtputf8 = txn.smtputf8;
  // A hook's sender change (ABI 1.3, milter CHGFROM): the named ESMTP values
  // replace the transaction's, the others stay.
  if (const auto& c = hooks.sender_change) {
    log::info("smtp", "qid={} sender <{}> changed to <{}> by {}", env.queue_id, env.mail_from, c->address, c->plugin);
    env.mail_from = c->address;
    if (c->envid) env.envid = *c->envid;
    if (c->ret) env.ret = *c->ret;
    if (c->body) env.body = *c->body == "8BITMIME" ? queue::BodyType::EightBitMime : queue::BodyType::SevenBit;
    if (c->smtputf8) env.smtputf8 = true;
  }
  return env;
}

}  // namespace postern::core::smtp
