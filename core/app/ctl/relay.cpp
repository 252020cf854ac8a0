// posternctl relay test: sends a small test message through the SMTP client
// (core/delivery) to the smarthost, a given host, or the MX of the
// recipient's domain, and prints the peer's answer and the TLS state.
// Runs its own io_context and resolver; does not need posternd.

#include "core/app/ctl/ctl.hpp"
#include "core/delivery/delivery_config.hpp"
#include "core/delivery/smtp_protocol.hpp"
#include "core/dns/resolver.hpp"
#include "core/log/log.hpp"
#include "core/smtp/address.hpp"

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <random>

namespace postern::core::ctl {

namespace {

int relay_usage() {
  eprint(
               "usage: posternctl --config FILE relay test --from ADDR --to ADDR [--to ADDR ...]\n"
               "         [--host HOST[:PORT] | --host [HOST]:PORT] [--tls starttls|implicit|none]\n"
               "         [--require-tls] [--verify] [--message FILE] [--verbose] [--json]\n"
               "  --message FILE sends that RFC 5322 message (BODY=8BITMIME when it has 8-bit octets).\n"
               "  Without --host: the route of the first recipient (routes, smarthost, else MX).\n"
               "  Exit 0 when every recipient was accepted, 1 otherwise.\n");
  return kUsage;
}

std::string rfc5322_date() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buf;
}

bool valid_address(std::string_view a) {
  auto r = smtp::parse_path("<" + std::string(a) + ">", false, false);
  return r.status == smtp::PathStatus::Ok;
}

}  // namespace

int relay(Command& c) {
  if (c.args.empty() || c.args[0] != "test") return relay_usage();
  std::string from, host, tls_arg, message_file;
  std::vector<std::string> to;
  bool require_tls = false, verify = false, verbose = false;
  for (size_t i = 1; i < c.args.size(); ++i) {
    const std::string& a = c.args[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= c.args.size()) return false;
      out = c.args[++i];
      return true;
    };
    std::string v;
    if (a == "--from" && value(from)) continue;
    if (a == "--to" && value(v)) {
      to.push_back(v);
      continue;
    }
    if (a == "--host" && value(host)) continue;
    if (a == "--tls" && value(tls_arg)) continue;
    if (a == "--message" && value(message_file)) continue;
    if (a == "--require-tls") require_tls = true;
    else if (a == "--verify") verify = true;
    else if (a == "--verbose") verbose = true;
    else {
      eprint("posternctl: relay test: unexpected argument '%s'\n", a.c_str());
      return relay_usage();
    }
  }
  if (to.empty()) return relay_usage();
  if (!from.empty() && !valid_address(from)) return fail(kUsage, fmt::format("relay test: bad --from address '{}'", from));
  for (const auto& t : to)
    if (!valid_address(t)) return fail(kUsage, fmt::format("relay test: bad --to address '{}'", t));

  config::Diagnostics diag = c.manifest.lines ? *c.manifest.lines : config::Diagnostics(c.manifest.path.string(), "");
  delivery::DeliveryConfig cfg = delivery::parse_delivery_config(c.manifest.delivery, diag);
  if (!diag.ok()) {
    for (const auto& e : diag.errors()) eprint("%s\n", e.str().c_str());
    return fail(kFail, "relay test: the manifest's <delivery> section is invalid");
  }

  delivery::NextHop hop;
  if (!host.empty()) {
    hop.kind = delivery::NextHop::Kind::Direct;
    std::optional<std::pair<std::string, uint16_t>> hp;
    if (host.front() == '[') hp = delivery::parse_bracket_host(host);
    else hp = delivery::parse_bracket_host("[" + host + "]");
    if (!hp) return fail(kUsage, fmt::format("relay test: bad --host '{}' (HOST, HOST:PORT or [HOST]:PORT)", host));
    hop.host = hp->first;
    hop.port = hp->second;
    // The smarthost's credentials go along only to the smarthost itself.
    if (cfg.smarthost && cfg.smarthost->host == hop.host && cfg.smarthost->port == hop.port) hop = *cfg.smarthost;
  } else {
    auto d = delivery::route(cfg, to.front());
    if (d.via == delivery::Decision::Via::Pipe)
      return fail(kFail, fmt::format("relay test: {} is delivered by a pipe route, not over SMTP", to.front()));
    hop = d.hop;
    for (size_t i = 1; i < to.size(); ++i) {
      auto other = delivery::route(cfg, to[i]);
      if (other.via != delivery::Decision::Via::Smtp || other.hop.key() != hop.key())
        return fail(kUsage, fmt::format("relay test: {} and {} take different routes; test them one by one",
                                        to.front(), to[i]));
    }
  }
  if (!tls_arg.empty()) {
    if (tls_arg == "starttls") hop.tls = config::TlsMode::StartTls;
    else if (tls_arg == "implicit") hop.tls = config::TlsMode::Implicit;
    else if (tls_arg == "none") hop.tls = config::TlsMode::None;
    else return fail(kUsage, fmt::format("relay test: --tls '{}': expected starttls, implicit or none", tls_arg));
  }
  if (require_tls) hop.require_tls = true;
  if (verify) hop.verify_peer = true;

  // In posternd the daemon's log stays as it is; --verbose is posternctl's.
  if (!capturing()) log::configure(verbose ? log::Level::Debug : log::Level::Warn, {}, true);

  std::mt19937_64 rng(std::random_device{}());
  const std::string helo = cfg.client.helo_name.empty() ? c.manifest.server_name : cfg.client.helo_name;
  const std::string id = fmt::format("{:016x}", rng());
  std::string message = fmt::format(
      "From: <{}>\r\nTo: {}\r\nSubject: Postern relay test\r\nDate: {}\r\nMessage-ID: <relaytest.{}@{}>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
      "This is a test message sent by \"posternctl relay test\" on {}.\r\n",
      from.empty() ? "postmaster@" + helo : from, fmt::format("<{}>", fmt::join(to, ">, <")), rfc5322_date(), id,
      helo, helo);

  delivery::Attempt attempt;
  if (!message_file.empty()) {
    std::ifstream in(message_file, std::ios::binary);
    if (!in) return fail(kFail, fmt::format("relay test: cannot read {}", message_file));
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    message.clear();
    for (size_t i = 0; i < raw.size(); ++i) {  // stored messages are CRLF
      if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r')) message += '\r';
      message += raw[i];
    }
    if (delivery::has_8bit(message)) attempt.body = queue::BodyType::EightBitMime;
  }
  attempt.queue_id = "relaytest-" + id;
  attempt.mail_from = from;
  for (const auto& t : to) attempt.recipients.push_back({t, "", ""});
  attempt.message = std::make_shared<const std::string>(std::move(message));

  boost::asio::io_context io;
  dns::ResolverOptions ropt;
  ropt.servers = c.manifest.dns.servers;
  ropt.timeout = c.manifest.dns.timeout;
  std::optional<dns::Resolver> resolver;
  try {
    resolver.emplace(io, ropt);
  } catch (const std::exception& e) {
    return fail(kFail, fmt::format("relay test: DNS resolver: {}", e.what()));
  }
  std::optional<delivery::AttemptResult> result;
  {
    auto transport = delivery::make_smtp_transport(io, *resolver, cfg, c.manifest.server_name);
    transport->deliver(hop, attempt, [&](delivery::AttemptResult r) { result = std::move(r); });
    while (!result && io.run_one() > 0) {
    }
  }
  resolver->shutdown();
  io.run();  // let the closing QUIT and cancelled callbacks finish
  if (!result) return fail(kFail, "relay test: the attempt did not complete");

  bool all = true;
  for (const auto& r : result->recipients) all = all && r.delivered();
  const std::string hop_text = hop.kind == delivery::NextHop::Kind::Mx
                                   ? fmt::format("MX of {} (port {})", hop.domain, hop.port)
                                   : fmt::format("[{}]:{}", hop.host, hop.port);
  if (c.json) {
    std::string rcpts;
    for (const auto& r : result->recipients) {
      if (!rcpts.empty()) rcpts += ",";
      rcpts += fmt::format(
          "{{\"address\":\"{}\",\"code\":{},\"enhanced\":\"{}\",\"text\":\"{}\",\"remote\":\"{}\",\"status\":\"{}\"}}",
          json_escape(r.address), r.code, json_escape(r.enhanced), json_escape(r.text), json_escape(r.remote),
          r.delivered() ? "delivered" : r.permanent() ? "bounced" : "deferred");
    }
    print("{\"delivered\":%s,\"hop\":\"%s\",\"tls\":\"%s\",\"recipients\":[%s]}\n", all ? "true" : "false",
                json_escape(hop_text).c_str(), json_escape(result->tls).c_str(), rcpts.c_str());
  } else {
    print("hop: %s\n", hop_text.c_str());
    print("tls: %s\n", result->tls.empty() ? "none" : result->tls.c_str());
    for (const auto& r : result->recipients) {
      print("%s: %s %d %s %s%s%s\n", r.address.c_str(),
                  r.delivered() ? "delivered" : r.permanent() ? "bounced" : "deferred", r.code, r.enhanced.c_str(),
                  r.text.c_str(), r.remote.empty() ? "" : " via ", r.remote.c_str());
    }
  }
  return all ? kOk : kFail;
}

}  // namespace postern::core::ctl
