#include "core/queue/dsn.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <random>

namespace postern::core::queue {

namespace {

bool has_word(std::string_view list, std::string_view word) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view w = list.substr(0, comma);
    if (w.size() == word.size() &&
        std::equal(w.begin(), w.end(), word.begin(), [](char a, char b) { return std::toupper(a) == b; }))
      return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// A header or status field value: one line, printable; non-ASCII octets become
// '?' unless the report may carry UTF-8 (RFC 6533). Long values are cut so
// that no line exceeds 998 octets (RFC 5322 §2.1.1).
std::string field(std::string_view v, bool utf8, size_t max = 900) {
  std::string out;
  out.reserve(std::min(v.size(), max));
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '\r' || u == '\n' || u == '\t') out += ' ';
    else if (u < 0x20 || u == 0x7f) continue;
    else if (u >= 0x80 && !utf8) out += '?';
    else out += c;
    if (out.size() >= max) break;
  }
  return out;
}

std::string_view headers_of(std::string_view message) {
  size_t end = message.find("\r\n\r\n");
  if (end != std::string_view::npos) return message.substr(0, end + 2);
  end = message.find("\n\n");
  if (end != std::string_view::npos) return message.substr(0, end + 1);
  return message;
}

std::string address_type(std::string_view address) { return is_ascii(address) ? "rfc822" : "utf-8"; }

}  // namespace

bool notify_wants(std::string_view notify, DsnKind kind) {
  if (notify.empty()) return kind == DsnKind::Failure || kind == DsnKind::Delay;
  if (has_word(notify, "NEVER")) return false;
  switch (kind) {
    case DsnKind::Failure: return has_word(notify, "FAILURE");
    case DsnKind::Delay: return has_word(notify, "DELAY");
    case DsnKind::Success: return has_word(notify, "SUCCESS");
  }
  return false;
}

std::string xtext_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+' && i + 2 < text.size()) {
      const int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} +0000", kDays[tm.tm_wday % 7], tm.tm_mday,
                     kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

DsnMessage compose_dsn(const DsnRequest& rq) {
  const Envelope& orig = *rq.original;
  const std::string_view msg = rq.original_message;
  // RFC 6533: a report about an internationalized message uses the global types.
  const bool global = orig.smtputf8;

  // What goes back (RFC 3461 §4.3): RET only applies to failures; delays and
  // successes return the headers. A binary body cannot travel in message/rfc822.
  bool full = false;
  if (rq.kind == DsnKind::Failure && orig.body != BodyType::BinaryMime) {
    if (orig.ret == "HDRS") full = false;
    else if (orig.ret == "FULL") full = msg.size() <= rq.full_return_limit;
    else full = msg.size() <= rq.bounce_size_limit;
  }
  const std::string_view returned = full ? msg : headers_of(msg);

  std::string boundary = fmt::format("{}/{}", rq.queue_id, rq.reporting_mta);
  while (returned.find(boundary) != std::string_view::npos) boundary += fmt::format("/{:x}", std::random_device{}());

  std::string subject, intro;
  switch (rq.kind) {
    case DsnKind::Failure:
      subject = "Undelivered Mail Returned to Sender";
      intro =
          "I'm sorry to have to inform you that your message could not\r\n"
          "be delivered to one or more recipients. It's attached below.\r\n";
      break;
    case DsnKind::Delay:
      subject = "Delayed Mail (still being retried)";
      intro =
          "Your message could not be delivered yet to one or more recipients.\r\n"
          "It will be retried until the time shown below; you do not need to\r\n"
          "resend it. Its headers are attached below.\r\n";
      break;
    case DsnKind::Success:
      subject = "Successful Mail Delivery Report";
      intro =
          "Your message was successfully delivered to the destination(s)\r\n"
          "listed below. If the message was delivered to a mailbox you will\r\n"
          "receive no further notifications; otherwise you may still receive\r\n"
          "notifications of mail delivery errors from other systems.\r\n";
      break;
  }

  std::string out;
  out.reserve(2048 + returned.size());
  out += fmt::format("From: Mail Delivery System <MAILER-DAEMON@{}>\r\n", rq.reporting_mta);
  out += fmt::format("To: <{}>\r\n", field(rq.to, global));
  out += fmt::format("Subject: {}\r\n", subject);
  out += fmt::format("Date: {}\r\n", rfc5322_date(rq.now));
  out += fmt::format("Message-ID: <{}@{}>\r\n", rq.queue_id, rq.reporting_mta);
  // RFC 3834 §5: a notification is auto-replied, and auto-responders leave it alone.
  out += "Auto-Submitted: auto-replied\r\n";
  out += "MIME-Version: 1.0\r\n";
  out += fmt::format("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{}\"\r\n",
                     boundary);
  out += "Content-Transfer-Encoding: 8bit\r\n";
  out += "\r\n";
  out += "This is a MIME-encapsulated message.\r\n\r\n";

  // 1. The human-readable part (RFC 3462 §2: the first part of the report).
  out += fmt::format("--{}\r\n", boundary);
  out += fmt::format("Content-Description: Notification\r\nContent-Type: text/plain; charset={}\r\n\r\n",
                     global ? "utf-8" : "us-ascii");
  out += fmt::format("This is the mail system at host {}.\r\n\r\n", rq.reporting_mta);
  out += intro;
  out += "\r\n";
  for (const DsnRecipient& r : rq.recipients) {
    std::string line = fmt::format("<{}>: {}", field(r.final_recipient, global),
                                   r.diagnostic.empty() ? r.action : field(r.diagnostic, global, 700));
    out += line;
    out += "\r\n";
  }
  if (rq.kind == DsnKind::Failure && !full && orig.ret != "HDRS")
    out += "\r\nThe message was too large to return in full; its headers are attached.\r\n";
  out += "\r\n";

  // 2. message/delivery-status (RFC 3464 §2).
  out += fmt::format("--{}\r\n", boundary);
  out += fmt::format("Content-Description: Delivery report\r\nContent-Type: message/{}\r\n\r\n",
                     global ? "global-delivery-status" : "delivery-status");
  out += fmt::format("Reporting-MTA: dns; {}\r\n", rq.reporting_mta);
  out += fmt::format("X-Postern-Queue-ID: {}\r\n", orig.queue_id);
  if (!orig.envid.empty()) out += fmt::format("Original-Envelope-Id: {}\r\n", field(xtext_decode(orig.envid), false));
  if (!orig.mail_from.empty())
    out += fmt::format("X-Postern-Sender: {}; {}\r\n", address_type(orig.mail_from), field(orig.mail_from, global));
  out += fmt::format("Arrival-Date: {}\r\n", rfc5322_date(orig.received_at));
  for (const DsnRecipient& r : rq.recipients) {
    out += "\r\n";
    out += fmt::format("Final-Recipient: {}; {}\r\n", address_type(r.final_recipient), field(r.final_recipient, global));
    if (!r.orcpt.empty()) {
      // RFC 3464 §2.3.1: the ORCPT's address type and address, xtext decoded.
      const size_t semi = r.orcpt.find(';');
      if (semi != std::string::npos)
        out += fmt::format("Original-Recipient: {};{}\r\n", field(r.orcpt.substr(0, semi), false),
                           field(xtext_decode(r.orcpt.substr(semi + 1)), global));
    }
    out += fmt::format("Action: {}\r\n", r.action);
    out += fmt::format("Status: {}\r\n", r.status.empty() ? (rq.kind == DsnKind::Failure ? "5.0.0" : rq.kind == DsnKind::Delay ? "4.0.0" : "2.0.0") : r.status);
    if (!r.remote_mta.empty()) out += fmt::format("Remote-MTA: dns; {}\r\n", field(r.remote_mta, false, 255));
    if (!r.diagnostic.empty())
      out += fmt::format("Diagnostic-Code: {}; {}\r\n", r.smtp_diagnostic ? "smtp" : "x-postern",
                         field(r.diagnostic, global, 800));
    if (r.last_attempt.time_since_epoch().count() != 0)
      out += fmt::format("Last-Attempt-Date: {}\r\n", rfc5322_date(r.last_attempt));
    if (rq.kind == DsnKind::Delay && r.will_retry_until.time_since_epoch().count() != 0)
      out += fmt::format("Will-Retry-Until: {}\r\n", rfc5322_date(r.will_retry_until));
  }
  out += "\r\n";

  // 3. The returned message or its headers (RFC 3462 §2, RFC 3464 §2).
  out += fmt::format("--{}\r\n", boundary);
  if (full) {
    out += fmt::format("Content-Description: {}\r\nContent-Type: message/{}\r\n\r\n",
                       rq.kind == DsnKind::Failure ? "Undelivered Message" : "Message", global ? "global" : "rfc822");
  } else {
    out += fmt::format("Content-Description: {}\r\nContent-Type: {}\r\n\r\n",
                       rq.kind == DsnKind::Failure ? "Undelivered Message Headers" : "Message Headers",
                       global ? "message/global-headers" : "text/rfc822-headers");
  }
  out.append(returned);
  if (!returned.empty() && returned.back() != '\n') out += "\r\n";
  out += fmt::format("\r\n--{}--\r\n", boundary);

  DsnMessage dsn;
  Envelope& env = dsn.envelope;
  env.queue_id = rq.queue_id;
  env.mail_from = "";  // RFC 3461 §6.2 / RFC 5321 §4.5.5: notifications use the null reverse-path
  env.recipients.push_back(EnvelopeRecipient{rq.to, "", ""});
  env.received_at = rq.now;
  env.peer = "127.0.0.1";
  env.helo = rq.reporting_mta;
  env.origin = rq.origin;
  env.smtputf8 = global && !is_ascii(out);
  env.body = is_ascii(out) ? BodyType::SevenBit : BodyType::EightBitMime;
  dsn.message = std::move(out);
  return dsn;
}

}  // namespace postern::core::queue
