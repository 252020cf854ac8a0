// The manifest's <delivery> section and the routing decision (docs/delivery.md).

#include "core/delivery/delivery_config.hpp"

#include "core/config/manifest.hpp"
#include "core/smtp/address.hpp"

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <charconv>

namespace postern::core::delivery {

namespace {

bool parse_port(std::string_view v, uint16_t& out) {
  unsigned n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n == 0 || n > 65535) return false;
  out = static_cast<uint16_t>(n);
  return true;
}

bool is_ip_literal(std::string_view host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

bool valid_host(std::string_view host) {
  return !host.empty() && (is_ip_literal(host) || smtp::is_valid_domain(host, false));
}

}  // namespace

bool mask_matches(std::string_view mask, std::string_view address) {
  // Iterative glob with backtracking to the last '*': linear in practice, no recursion.
  size_t m = 0, a = 0, star = std::string_view::npos, mark = 0;
  auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  while (a < address.size()) {
    if (m < mask.size() && (mask[m] == '?' || lower(mask[m]) == lower(address[a]))) {
      ++m;
      ++a;
    } else if (m < mask.size() && mask[m] == '*') {
      star = m++;
      mark = a;
    } else if (star != std::string_view::npos) {
      m = star + 1;
      a = ++mark;
    } else {
      return false;
    }
  }
  while (m < mask.size() && mask[m] == '*') ++m;
  return m == mask.size();
}

std::optional<std::vector<std::string>> split_command_line(std::string_view text, std::string* error) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quote == '\'') {
      if (c == '\'') quote = 0;
      else cur += c;
      continue;
    }
    if (c == '\\' && quote != '\'') {
      if (i + 1 >= text.size()) {
        if (error) *error = "a trailing backslash escapes nothing";
        return std::nullopt;
      }
      cur += text[++i];
      in_word = true;
      continue;
    }
    if (quote == '"') {
      if (c == '"') quote = 0;
      else cur += c;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) out.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (quote) {
    if (error) *error = fmt::format("unterminated {} quote", quote == '"' ? "double" : "single");
    return std::nullopt;
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

std::optional<std::pair<std::string, uint16_t>> parse_bracket_host(std::string_view text) {
  // "[host]", "[host:port]" (Kaspersky ForwardRoute), "[host]:port", "[ipv6]", "[ipv6]:port".
  if (text.size() < 3 || text.front() != '[') return std::nullopt;
  size_t close = text.find(']');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view inside = text.substr(1, close - 1);
  std::string_view after = text.substr(close + 1);
  uint16_t port = 25;
  std::string host;
  if (!after.empty()) {
    if (after.front() != ':' || !parse_port(after.substr(1), port)) return std::nullopt;
    host = std::string(inside);
  } else if (size_t colon = inside.find(':'); colon != std::string_view::npos && inside.find(':', colon + 1) == std::string_view::npos) {
    if (!parse_port(inside.substr(colon + 1), port)) return std::nullopt;
    host = std::string(inside.substr(0, colon));
  } else {
    host = std::string(inside);
  }
  if (!valid_host(host)) return std::nullopt;
  return std::make_pair(smtp::ascii_lower(host), port);
}

DeliveryConfig parse_delivery_config(const pugi::xml_node& node, config::Diagnostics& diag) {
  DeliveryConfig cfg;
  if (!node) return cfg;

  auto check_known = [&](const pugi::xml_node& n, std::initializer_list<std::string_view> known) {
    for (auto a : n.attributes()) {
      bool ok = false;
      for (auto k : known) ok = ok || std::string_view(a.name()) == k;
      if (!ok) diag.error(n, fmt::format("<{}>: unknown attribute {}", n.name(), a.name()));
    }
  };
  auto duration_attr = [&](const pugi::xml_node& n, const char* name, std::chrono::milliseconds& out) {
    if (auto a = n.attribute(name)) {
      auto v = config::parse_duration(a.value());
      if (!v || v->count() <= 0)
        diag.error(n, fmt::format("<{} {}=\"{}\">: not a positive duration (e.g. 5m, 30s, 250ms)", n.name(), name,
                                  a.value()));
      else out = *v;
    }
  };
  auto count_attr = [&](const pugi::xml_node& n, const char* name, size_t& out, size_t min) {
    if (auto a = n.attribute(name)) {
      std::string_view v = a.value();
      size_t x = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
      if (ec != std::errc{} || p != v.data() + v.size() || x < min)
        diag.error(n, fmt::format("<{} {}=\"{}\">: expected a whole number >= {}", n.name(), name, v, min));
      else out = x;
    }
  };
  auto bool_attr = [&](const pugi::xml_node& n, const char* name, bool& out) {
    if (auto a = n.attribute(name)) {
      auto v = config::parse_bool(a.value());
      if (!v) diag.error(n, fmt::format("<{} {}=\"{}\">: expected true or false", n.name(), name, a.value()));
      else out = *v;
    }
  };
  auto port_attr = [&](const pugi::xml_node& n, const char* name, uint16_t& out) {
    if (auto a = n.attribute(name)) {
      if (!parse_port(a.value(), out))
        diag.error(n, fmt::format("<{} {}=\"{}\">: expected a port number 1-65535", n.name(), name, a.value()));
    }
  };
  // tls, require-tls, verify, user, password: shared by <smarthost> and <route>.
  auto hop_security = [&](const pugi::xml_node& n, NextHop& hop) {
    if (auto a = n.attribute("tls")) {
      std::string_view v = a.value();
      if (v == "none") hop.tls = config::TlsMode::None;
      else if (v == "starttls") hop.tls = config::TlsMode::StartTls;
      else if (v == "implicit") hop.tls = config::TlsMode::Implicit;
      else diag.error(n, fmt::format("<{} tls=\"{}\">: expected starttls, implicit or none", n.name(), v));
    }
    bool_attr(n, "require-tls", hop.require_tls);
    bool_attr(n, "verify", hop.verify_peer);
    bool_attr(n, "allow-cleartext-auth", hop.allow_cleartext_auth);
    hop.auth_user = n.attribute("user").value();
    hop.auth_password = n.attribute("password").value();
    if (hop.auth_user.empty() != hop.auth_password.empty())
      diag.error(n, fmt::format("<{}>: user and password go together", n.name()));
    if (hop.tls == config::TlsMode::None && hop.require_tls)
      diag.error(n, fmt::format("<{}>: require-tls=\"true\" contradicts tls=\"none\"", n.name()));
    if (hop.tls == config::TlsMode::None && !hop.auth_user.empty() && !hop.allow_cleartext_auth)
      diag.error(n, fmt::format("<{}>: AUTH needs TLS; set tls=\"starttls\" or \"implicit\", or "
                                "allow-cleartext-auth=\"true\"", n.name()));
    if (hop.verify_peer && hop.tls == config::TlsMode::None)
      diag.error(n, fmt::format("<{}>: verify=\"true\" needs TLS", n.name()));
  };

  check_known(node, {"helo", "connect-timeout", "greeting-timeout", "command-timeout", "data-block-timeout",
                     "data-end-timeout", "max-messages-per-connection", "idle-connection-time", "ipv6",
                     "pipe-timeout", "mx-port", "max-addresses", "allow-loopback-mx"});
  if (auto a = node.attribute("helo")) {
    if (!smtp::is_valid_domain(a.value(), false))
      diag.error(node, fmt::format("<delivery helo=\"{}\">: not a valid host name", a.value()));
    else cfg.client.helo_name = a.value();
  }
  duration_attr(node, "connect-timeout", cfg.client.connect_timeout);
  duration_attr(node, "greeting-timeout", cfg.client.greeting_timeout);
  duration_attr(node, "command-timeout", cfg.client.command_timeout);
  duration_attr(node, "data-block-timeout", cfg.client.data_block_timeout);
  duration_attr(node, "data-end-timeout", cfg.client.data_end_timeout);
  duration_attr(node, "idle-connection-time", cfg.client.idle_connection_time);
  duration_attr(node, "pipe-timeout", cfg.pipe_timeout);
  count_attr(node, "max-messages-per-connection", cfg.client.max_messages_per_connection, 1);
  count_attr(node, "max-addresses", cfg.client.max_addresses, 1);
  bool_attr(node, "ipv6", cfg.client.ipv6);
  bool_attr(node, "allow-loopback-mx", cfg.client.allow_loopback_mx);
  port_attr(node, "mx-port", cfg.mx_port);

  for (auto child : node.children()) {
    if (child.type() != pugi::node_element) continue;
    std::string_view tag = child.name();
    if (tag == "smarthost") {
      check_known(child, {"host", "port", "tls", "require-tls", "verify", "user", "password", "allow-cleartext-auth"});
      if (cfg.smarthost) {
        diag.error(child, "<smarthost>: only one smarthost may be configured");
        continue;
      }
      NextHop hop;
      hop.kind = NextHop::Kind::Direct;
      std::string host = child.attribute("host").value();
      if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      if (!valid_host(host))
        diag.error(child, fmt::format("<smarthost host=\"{}\">: expected a host name or an IP address", host));
      hop.host = smtp::ascii_lower(host);
      hop_security(child, hop);
      hop.port = hop.tls == config::TlsMode::Implicit ? 465 : 25;
      port_attr(child, "port", hop.port);
      cfg.smarthost = hop;
    } else if (tag == "route") {
      check_known(child, {"match", "to", "pipe", "port", "tls", "require-tls", "verify", "user", "password",
                          "allow-cleartext-auth"});
      Route r;
      r.line = diag.line_of(child);
      r.match = child.attribute("match").value();
      if (r.match.empty()) {
        diag.error(child, "<route>: match=\"*@example.com\" is required");
      } else if (r.match.find('@') == std::string::npos && r.match.find('*') == std::string::npos) {
        diag.error(child, fmt::format("<route match=\"{}\">: a mask matches a whole address; did you mean \"*@{}\"?",
                                      r.match, r.match));
      }
      auto to = child.attribute("to");
      auto pipe = child.attribute("pipe");
      if (bool(to) == bool(pipe)) {
        diag.error(child, "<route>: exactly one of to=\"[host:port]\", to=\"domain\" or pipe=\"/path args\" is required");
        continue;
      }
      if (pipe) {
        r.kind = Route::Kind::Pipe;
        std::string err;
        auto argv = split_command_line(pipe.value(), &err);
        if (!argv) {
          diag.error(child, fmt::format("<route pipe=\"{}\">: {}", pipe.value(), err));
        } else if (argv->empty()) {
          diag.error(child, "<route pipe=\"\">: a program is required");
        } else if (argv->front().empty() || argv->front().front() != '/') {
          diag.error(child, fmt::format("<route pipe=\"{}\">: the program needs an absolute path (no shell, no PATH)",
                                        pipe.value()));
        } else {
          r.argv = std::move(*argv);
        }
        for (const char* a : {"port", "tls", "require-tls", "verify", "user", "password"})
          if (child.attribute(a)) diag.error(child, fmt::format("<route pipe=...>: {} applies to SMTP routes only", a));
      } else {
        std::string_view v = to.value();
        if (!v.empty() && v.front() == '[') {
          r.kind = Route::Kind::Direct;
          auto hp = parse_bracket_host(v);
          if (!hp) {
            diag.error(child, fmt::format("<route to=\"{}\">: expected [host], [host:port] or [ipv6]:port", v));
          } else {
            r.hop.kind = NextHop::Kind::Direct;
            r.hop.host = hp->first;
            r.hop.port = hp->second;
          }
          hop_security(child, r.hop);
          if (child.attribute("port")) diag.error(child, "<route to=\"[host:port]\">: give the port inside the brackets");
        } else {
          r.kind = Route::Kind::Domain;
          if (!smtp::is_valid_domain(v, false) || is_ip_literal(v)) {
            diag.error(child, fmt::format("<route to=\"{}\">: expected a domain (its MX is used) or [host:port]", v));
          }
          r.hop.kind = NextHop::Kind::Mx;
          r.hop.domain = smtp::ascii_lower(v);
          hop_security(child, r.hop);
          r.hop.port = cfg.mx_port;
          port_attr(child, "port", r.hop.port);
        }
      }
      cfg.routes.push_back(std::move(r));
    } else {
      diag.error(child, fmt::format("<delivery>: unknown element <{}>", tag));
    }
  }
  return cfg;
}

Decision route(const DeliveryConfig& cfg, std::string_view address) {
  Decision d;
  for (const auto& r : cfg.routes) {
    if (!mask_matches(r.match, address)) continue;
    if (r.kind == Route::Kind::Pipe) {
      d.via = Decision::Via::Pipe;
      d.argv = r.argv;
    } else {
      d.hop = r.hop;
    }
    return d;
  }
  if (cfg.smarthost) {
    d.hop = *cfg.smarthost;
    return d;
  }
  size_t at = address.rfind('@');
  d.hop.kind = NextHop::Kind::Mx;
  d.hop.domain = smtp::ascii_lower(at == std::string_view::npos ? std::string_view{} : address.substr(at + 1));
  d.hop.port = cfg.mx_port;
  return d;
}

}  // namespace postern::core::delivery
