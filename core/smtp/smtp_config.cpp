#include "core/smtp/smtp_config.hpp"

#include "core/smtp/address.hpp"
#include "postern/mail/throttle.hpp"

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <charconv>
#include <sstream>

namespace postern::core::smtp {

std::optional<std::array<uint8_t, 16>> ip_bytes(std::string_view ip) {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(std::string(ip), ec);
  if (ec) return std::nullopt;
  if (addr.is_v4()) return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, addr.to_v4()).to_bytes();
  auto v6 = addr.to_v6();
  return v6.to_bytes();
}

bool SmtpConfig::accepts_domain(std::string_view domain) const {
  for (const auto& d : local_domains)
    if (iequals(d, domain)) return true;
  for (const auto& d : relay_domains)
    if (iequals(d, domain)) return true;
  return false;
}

bool SmtpConfig::is_trusted(std::string_view ip) const {
  if (trusted_networks.empty()) return false;
  auto bytes = ip_bytes(ip);
  if (!bytes) return false;
  for (const auto& n : trusted_networks)
    if (n.contains(*bytes)) return true;
  return false;
}

namespace {

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream in{std::string(s)};
  std::string w;
  while (in >> w) {
    if (!w.empty() && w.back() == ',') w.pop_back();
    if (!w.empty()) out.push_back(w);
  }
  return out;
}

}  // namespace

SmtpConfig parse_smtp_config(const pugi::xml_node& smtp, config::Diagnostics& diag) {
  SmtpConfig cfg;
  if (!smtp) return cfg;

  auto size_attr = [&](const char* name, uint64_t& out) {
    if (auto a = smtp.attribute(name)) {
      auto v = config::parse_size(a.value());
      if (!v) diag.error(smtp, fmt::format("<smtp {}=\"{}\">: not a size (e.g. 25M, 512k, 1000)", name, a.value()));
      else out = *v;
    }
  };
  auto count_attr = [&](const char* name, size_t& out, size_t min) {
    if (auto a = smtp.attribute(name)) {
      std::string_view v = a.value();
      size_t n = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc{} || p != v.data() + v.size() || n < min) {
        diag.error(smtp, fmt::format("<smtp {}=\"{}\">: expected a whole number >= {}", name, v, min));
      } else {
        out = n;
      }
    }
  };
  auto duration_attr = [&](const char* name, std::chrono::milliseconds& out) {
    if (auto a = smtp.attribute(name)) {
      auto v = config::parse_duration(a.value());
      if (!v) diag.error(smtp, fmt::format("<smtp {}=\"{}\">: not a duration (e.g. 5m, 30s, 250ms)", name, a.value()));
      // Beyond a year a duration means "forever"; clamping keeps sums of durations finite.
      else out = mail::LoginThrottle::clamp_duration(*v);
    }
  };

  size_attr("max-message-size", cfg.max_message_size);
  size_attr("min-free-disk", cfg.min_free_disk);
  count_attr("max-recipients", cfg.max_recipients, 1);
  count_attr("max-messages-per-session", cfg.max_messages_per_session, 1);
  count_attr("max-hops", cfg.max_hops, 1);
  count_attr("max-line-length", cfg.max_line_length, 512);
  count_attr("max-sessions", cfg.max_sessions, 1);
  count_attr("max-sessions-per-ip", cfg.max_sessions_per_ip, 1);
  count_attr("max-errors", cfg.max_errors, 1);
  count_attr("tarpit-after", cfg.tarpit_after, 0);
  count_attr("auth-lockout-failures", cfg.auth_lockout_failures, 0);
  duration_attr("command-timeout", cfg.command_timeout);
  duration_attr("data-timeout", cfg.data_timeout);
  duration_attr("tls-handshake-timeout", cfg.tls_handshake_timeout);
  duration_attr("greet-pause", cfg.greet_pause);
  duration_attr("tarpit-delay", cfg.tarpit_delay);
  duration_attr("auth-failure-delay", cfg.auth_failure_delay);
  duration_attr("auth-failure-delay-max", cfg.auth_failure_delay_max);
  duration_attr("auth-lockout-time", cfg.auth_lockout_time);
  if (auto a = smtp.attribute("bare-lf")) {
    std::string_view v = a.value();
    if (v == "reject") cfg.bare_line_ending = BareLineEnding::Reject;
    else if (v == "normalize") cfg.bare_line_ending = BareLineEnding::Normalize;
    else diag.error(smtp, fmt::format("<smtp bare-lf=\"{}\">: expected reject or normalize", v));
  }
  if (auto a = smtp.attribute("vrfy")) {
    auto v = config::parse_bool(a.value());
    if (!v) diag.error(smtp, fmt::format("<smtp vrfy=\"{}\">: expected true or false", a.value()));
    else cfg.vrfy = *v;
  }
  static const char* known[] = {"max-message-size", "min-free-disk", "max-recipients", "max-messages-per-session",
                                "max-hops", "max-line-length", "max-sessions", "max-sessions-per-ip", "max-errors",
                                "tarpit-after", "auth-lockout-failures", "command-timeout", "data-timeout",
                                "tls-handshake-timeout", "greet-pause", "tarpit-delay", "auth-failure-delay",
                                "auth-failure-delay-max", "auth-lockout-time", "bare-lf", "vrfy"};
  for (auto a : smtp.attributes()) {
    bool ok = false;
    for (const char* k : known) ok = ok || std::string_view(a.name()) == k;
    if (!ok) diag.error(smtp, fmt::format("<smtp>: unknown attribute {}", a.name()));
  }

  std::vector<StaticAccount> accounts;
  for (auto child : smtp.children()) {
    if (child.type() != pugi::node_element) continue;
    std::string_view tag = child.name();
    std::string text = child.text().get();
    if (tag == "local-domain" || tag == "relay-domain") {
      auto names = split_ws(text);
      if (names.empty()) diag.error(child, fmt::format("<{}>: a domain name is required", tag));
      for (auto& n : names) {
        if (!is_valid_domain(n, true)) {
          diag.error(child, fmt::format("<{}>{}</{}>: not a valid domain", tag, n, tag));
          continue;
        }
        (tag == "local-domain" ? cfg.local_domains : cfg.relay_domains).push_back(ascii_lower(n));
      }
    } else if (tag == "trusted-network") {
      auto nets = split_ws(text);
      for (auto& n : nets) {
        auto r = config::NetRange::parse(n);
        if (!r) diag.error(child, fmt::format("<trusted-network>{}</trusted-network>: not an address, CIDR or range", n));
        else cfg.trusted_networks.push_back(*r);
      }
    } else if (tag == "account") {
      StaticAccount acc;
      acc.user = child.attribute("user").value();
      acc.password_hash = child.attribute("password-hash").value();
      acc.addresses = split_ws(child.attribute("addresses").value());
      if (acc.user.empty()) diag.error(child, "<account>: user= is required");
      if (!is_valid_password_hash(acc.password_hash)) {
        diag.error(child, "<account>: password-hash= must be $pbkdf2-sha512$ITERATIONS$SALT_HEX$HASH_HEX "
                          "(see docs/smtp.md)");
        continue;
      }
      accounts.push_back(std::move(acc));
    } else {
      diag.error(child, fmt::format("<smtp>: unknown element <{}>", tag));
    }
  }
  if (!accounts.empty()) cfg.auth = std::make_shared<StaticAuthBackend>(std::move(accounts));
  return cfg;
}

}  // namespace postern::core::smtp
