#pragma once
// The contract between the queue manager (core/queue) and the outbound
// transports (core/delivery): the queue manager groups recipients by next
// hop, hands one attempt to a transport, and gets one result per recipient.
// A transport never touches the spool; the queue manager never speaks SMTP.

#include "core/config/manifest.hpp"  // TlsMode
#include "core/queue/spool.hpp"      // EnvelopeRecipient, BodyType

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace postern::core::delivery {

/** How to reach the next hop for one attempt. */
struct NextHop {
  enum class Kind {
    Mx,      // look up MX of `domain` (RFC 5321 §5.1: preference order, A/AAAA fallback, null MX)
    Direct,  // connect to `host`:`port` (a name or an IP literal; no MX lookup)
  };
  Kind kind = Kind::Mx;
  std::string domain;  // Mx: the domain whose MX is used
  std::string host;    // Direct
  uint16_t port = 25;
  config::TlsMode tls = config::TlsMode::StartTls;  // StartTls = opportunistic unless require_tls
  bool require_tls = false;                          // fail (4xx) instead of sending in clear
  bool verify_peer = false;                          // check the certificate against `host`
  std::string auth_user;                             // smarthost AUTH (PLAIN/LOGIN over TLS)
  std::string auth_password;
  bool allow_cleartext_auth = false;                 // AUTH without TLS (explicit opt-in)
  /** A key grouping attempts for concurrency limits and connection reuse. */
  std::string key() const {
    if (kind == Kind::Mx) return "mx:" + domain;
    return "direct:" + host + ":" + std::to_string(port) + (auth_user.empty() ? "" : "/" + auth_user);
  }
};

/** One delivery attempt of one message to some of its recipients. */
struct Attempt {
  std::string queue_id;
  std::string mail_from;                                // "" = null sender
  std::vector<queue::EnvelopeRecipient> recipients;     // all for the same next hop
  std::string envid;
  std::string ret;
  queue::BodyType body = queue::BodyType::SevenBit;
  bool smtputf8 = false;
  std::shared_ptr<const std::string> message;           // CRLF, not dot-stuffed
};

/** The outcome for one recipient. */
struct RecipientResult {
  std::string address;
  int code = 0;                 // SMTP reply code (2xx delivered, 4xx defer, 5xx bounce); 0 = not tried
  std::string enhanced;         // "2.0.0", "5.1.1", ...
  std::string text;             // the peer's reply text or our own diagnostic, one line
  std::string remote;           // "mx.example.com[192.0.2.1]:25" or "pipe:/usr/bin/x"
  /** The peer offered DSN and got NOTIFY/ORCPT: success notices are its job now
   *  (RFC 3461 §4.1), so no "relayed" DSN is sent for this recipient. */
  bool dsn_passed = false;
  bool delivered() const { return code >= 200 && code < 300; }
  bool permanent() const { return code >= 500; }
};

struct AttemptResult {
  std::vector<RecipientResult> recipients;  // one per Attempt::recipients, same order
  std::string tls;  // "TLSv1.3 TLS_AES_256_GCM_SHA384 (verified)" when sent over TLS, "" otherwise
};

using AttemptDone = std::function<void(AttemptResult)>;

/** Something that can carry an attempt (SMTP client, pipe, local store). */
class Transport {
 public:
  virtual ~Transport() = default;
  /**
   * Starts the attempt; `done` runs exactly once, on an I/O thread or a pool thread,
   * also when the transport is shutting down (then with 4xx results).
   * THREADING: any thread. Never blocks.
   */
  virtual void deliver(const NextHop& hop, Attempt attempt, AttemptDone done) = 0;
};

struct DeliveryConfig;

}  // namespace postern::core::delivery

namespace postern::core::dns {
class Resolver;
}
namespace postern::core::tls {
class TlsContext;
}

namespace postern::core::delivery {

/**
 * The SMTP client (smtp_client.cpp): MX/Direct next hops, STARTTLS/implicit
 * TLS, AUTH, PIPELINING, SIZE, 8BITMIME downgrade, SMTPUTF8, DSN, connection
 * reuse. `helo_name` defaults to cfg.client.helo_name.
 */
std::shared_ptr<Transport> make_smtp_transport(boost::asio::io_context& io, dns::Resolver& resolver,
                                               const DeliveryConfig& cfg, std::string server_name);
/**
 * Pipe delivery (pipe.cpp): the hop is ignored; `argv` runs without a shell,
 * message on stdin; exit 0 delivered, 75 (EX_TEMPFAIL) deferred, others bounced.
 */
std::shared_ptr<Transport> make_pipe_transport(boost::asio::io_context& io, std::vector<std::string> argv,
                                               std::chrono::milliseconds timeout);

}  // namespace postern::core::delivery
