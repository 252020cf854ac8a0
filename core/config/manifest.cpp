#include "core/config/manifest.hpp"

#include "core/plugin/descriptor.hpp"
#include "postern/mail/ip.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <set>
#include <sstream>

namespace postern::core::config {
namespace {

using namespace std::string_view_literals;

std::filesystem::path resolve(const std::filesystem::path& base, std::string_view p) {
  std::filesystem::path path{std::string(p)};
  return path.is_absolute() ? path.lexically_normal() : (base / path).lexically_normal();
}

// Every attribute not in `known` is a typo the operator wants to hear about.
void check_attributes(const pugi::xml_node& node, std::initializer_list<std::string_view> known, Diagnostics& d) {
  for (pugi::xml_attribute a : node.attributes()) {
    if (std::find(known.begin(), known.end(), std::string_view(a.name())) == known.end()) {
      d.error(node, fmt::format("<{}>: unknown attribute '{}'", node.name(), a.name()));
    }
  }
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

bool bool_attr(const pugi::xml_node& node, const char* name, bool fallback, Diagnostics& d) {
  pugi::xml_attribute a = node.attribute(name);
  if (!a) return fallback;
  auto v = parse_bool(a.value());
  if (!v) {
    d.error(node, fmt::format("<{}>: {}=\"{}\" is not a boolean (true/false)", node.name(), name, a.value()));
    return fallback;
  }
  return *v;
}

bool parse_ip(std::string_view text, std::array<uint8_t, 16>& out) {
  const auto address = mail::IpAddress::parse(text);
  if (!address) return false;
  out = address->octets;
  return true;
}

void parse_access(const pugi::xml_node& listener, AccessList& acl, Diagnostics& d) {
  for (pugi::xml_node n : listener.children()) {
    if (n.type() != pugi::node_element) continue;
    const std::string_view name = n.name();
    if (name != "allow" && name != "deny") {
      d.error(n, fmt::format("<listener>: unknown element <{}> (allow, deny)", name));
      continue;
    }
    std::string text = n.child_value();
    text.erase(0, text.find_first_not_of(" \t\r\n"));
    text.erase(text.find_last_not_of(" \t\r\n") + 1);
    auto range = NetRange::parse(text);
    if (!range) {
      d.error(n, fmt::format("<{}>: '{}' is not an address, CIDR or range", name, text));
      continue;
    }
    (name == "allow" ? acl.allow : acl.deny).push_back(*range);
  }
}

}  // namespace

std::string_view tls_mode_name(TlsMode mode) {
  switch (mode) {
    case TlsMode::None: return "none";
    case TlsMode::StartTls: return "starttls";
    case TlsMode::Implicit: return "implicit";
  }
  return "none";
}

std::optional<NetRange> NetRange::parse(std::string_view text) {
  const auto range = mail::IpRange::parse(text);
  if (!range) return std::nullopt;
  NetRange r;
  r.first = range->first.octets;
  r.last = range->last.octets;
  return r;
}

bool NetRange::contains(const std::array<uint8_t, 16>& a) const { return !(a < first) && !(last < a); }

bool AccessList::permits(std::string_view ip) const {
  std::array<uint8_t, 16> a{};
  std::string_view text = ip;
  if (text.starts_with("::ffff:") && text.find('.') != std::string_view::npos) text.remove_prefix(7);
  if (!parse_ip(text, a)) return false;
  for (const NetRange& r : deny) {
    if (r.contains(a)) return false;
  }
  if (allow.empty()) return true;
  return std::any_of(allow.begin(), allow.end(), [&](const NetRange& r) { return r.contains(a); });
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t n = 0;
  if (digits == 0 || !parse_u64(text.substr(0, digits), n) || n > (1ull << 40)) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  using std::chrono::milliseconds;
  if (unit == "ms") return milliseconds(n);
  if (unit.empty() || unit == "s") return milliseconds(n * 1000);
  if (unit == "m") return milliseconds(n * 60'000);
  if (unit == "h") return milliseconds(n * 3'600'000);
  if (unit == "d") return milliseconds(n * 86'400'000);
  return std::nullopt;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  uint64_t n = 0;
  if (digits == 0 || !parse_u64(text.substr(0, digits), n) || n > (1ull << 50)) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  if (unit.empty()) return n;
  if (unit == "k" || unit == "K") return n << 10;
  if (unit == "M") return n << 20;
  if (unit == "G") return n << 30;
  return std::nullopt;
}

std::optional<bool> parse_bool(std::string_view t) {
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  return std::nullopt;
}

LoadResult load_manifest(const std::filesystem::path& file) {
  LoadResult result;
  const std::string file_name = file.string();
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    result.errors.push_back({file_name, 0, "cannot open the manifest"});
    return result;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  auto m = std::make_shared<Manifest>();
  m->path = std::filesystem::absolute(file).lexically_normal();
  m->doc = std::make_shared<pugi::xml_document>();
  m->lines = std::make_shared<Diagnostics>(file_name, text);
  Diagnostics& d = *m->lines;
  const pugi::xml_parse_result parsed =
      m->doc->load_buffer(text.data(), text.size(), pugi::parse_default | pugi::parse_ws_pcdata_single);
  if (!parsed) {
    d.error_at_line(d.line_of_offset(parsed.offset), fmt::format("XML error: {}", parsed.description()));
    result.errors = d.errors();
    return result;
  }
  const std::filesystem::path base = m->path.parent_path();
  const pugi::xml_node root = m->doc->document_element();
  if (std::string_view(root.name()) != "postern") {
    d.error(root, fmt::format("root element must be <postern>, not <{}>", root.name()));
    result.errors = d.errors();
    return result;
  }

  std::set<std::string> seen_singletons;
  for (pugi::xml_node n : root.children()) {
    if (n.type() != pugi::node_element) continue;
    const std::string_view name = n.name();
    static constexpr std::string_view kSingletons[] = {"server",    "log",       "plugin-dirs", "dns",
                                                       "listeners", "smtp",      "queue",       "delivery",
                                                       "directory", "mailstore", "scheduler",   "scoring",
                                                       "plugins"};
    const bool singleton = std::find(std::begin(kSingletons), std::end(kSingletons), name) != std::end(kSingletons);
    if (!singleton && name != "certificate") {
      d.error(n, fmt::format("unknown element <{}>", name));
      continue;
    }
    if (singleton && !seen_singletons.insert(std::string(name)).second) {
      d.error(n, fmt::format("<{}> may appear only once", name));
    }
  }

  // <server>
  const pugi::xml_node server = root.child("server");
  if (!server) {
    d.error(root, "missing <server name=... data-dir=...>");
  } else {
    check_attributes(server, {"name", "data-dir", "io-threads", "worker-threads", "control-socket"}, d);
    m->server_name = server.attribute("name").as_string();
    if (m->server_name.empty()) d.error(server, "<server>: name is required (this host's FQDN)");
    const std::string data = server.attribute("data-dir").as_string();
    if (data.empty()) {
      d.error(server, "<server>: data-dir is required");
    } else {
      m->data_dir = resolve(base, data);
      const std::string sock = server.attribute("control-socket").as_string();
      m->control_socket = sock.empty() ? m->data_dir / "posternd.sock" : resolve(base, sock);
    }
    for (const char* attr : {"io-threads", "worker-threads"}) {
      if (pugi::xml_attribute a = server.attribute(attr)) {
        uint64_t v = 0;
        if (!parse_u64(a.value(), v) || v > 256) {
          d.error(server, fmt::format("<server>: {}=\"{}\" must be a number 0-256", attr, a.value()));
        } else if (std::string_view(attr) == "io-threads") {
          m->io_threads = v;
        } else {
          m->worker_threads = v;  // 0 = automatic (posternd)
        }
      }
    }
  }

  // <log>
  if (pugi::xml_node lg = root.child("log")) {
    check_attributes(lg, {"level", "file"}, d);
    if (pugi::xml_attribute a = lg.attribute("level")) {
      auto lvl = log::level_from_name(a.value());
      if (!lvl) {
        d.error(lg, fmt::format("<log>: unknown level '{}' (trace, debug, info, warn, error)", a.value()));
      } else {
        m->log_level = *lvl;
      }
    }
    if (pugi::xml_attribute a = lg.attribute("file"); a && *a.value() != '\0') m->log_file = resolve(base, a.value());
  }

  // <plugin-dirs>
  for (pugi::xml_node dir : root.child("plugin-dirs").children()) {
    if (dir.type() != pugi::node_element) continue;
    if (std::string_view(dir.name()) != "dir") {
      d.error(dir, fmt::format("<plugin-dirs>: unknown element <{}> (dir)", dir.name()));
      continue;
    }
    m->plugin_dirs.push_back(resolve(base, dir.child_value()));
  }

  // <dns>
  if (pugi::xml_node dns = root.child("dns")) {
    check_attributes(dns, {"timeout"}, d);
    if (pugi::xml_attribute a = dns.attribute("timeout")) {
      auto t = parse_duration(a.value());
      if (!t || t->count() == 0) {
        d.error(dns, fmt::format("<dns>: timeout=\"{}\" is not a duration", a.value()));
      } else {
        m->dns.timeout = *t;
      }
    }
    for (pugi::xml_node s : dns.children()) {
      if (s.type() != pugi::node_element) continue;
      if (std::string_view(s.name()) != "server") {
        d.error(s, fmt::format("<dns>: unknown element <{}> (server)", s.name()));
        continue;
      }
      m->dns.servers.emplace_back(s.child_value());
    }
  }

  // <certificate>
  for (pugi::xml_node c : root.children("certificate")) {
    check_attributes(c, {"cert", "key", "names", "generate"}, d);
    Certificate cert;
    const std::string cf = c.attribute("cert").as_string();
    const std::string kf = c.attribute("key").as_string();
    if (cf.empty() || kf.empty()) {
      d.error(c, "<certificate>: cert and key are required");
      continue;
    }
    cert.cert_file = resolve(base, cf);
    cert.key_file = resolve(base, kf);
    std::istringstream names(c.attribute("names").as_string());
    for (std::string n; names >> n;) cert.names.push_back(n);
    cert.generate_if_missing = bool_attr(c, "generate", false, d);
    std::error_code ec;
    if (!cert.generate_if_missing && (!std::filesystem::exists(cert.cert_file, ec) || !std::filesystem::exists(cert.key_file, ec))) {
      d.error(c, fmt::format("<certificate>: {} or {} does not exist (set generate=\"true\" for a self-signed one)",
                             cert.cert_file.string(), cert.key_file.string()));
    }
    m->certificates.push_back(std::move(cert));
  }

  // <listeners>
  std::set<std::pair<std::string, uint16_t>> endpoints;
  std::set<std::string> listener_names;
  for (pugi::xml_node n : root.child("listeners").children()) {
    if (n.type() != pugi::node_element) continue;
    if (std::string_view(n.name()) != "listener") {
      d.error(n, fmt::format("<listeners>: unknown element <{}> (listener)", n.name()));
      continue;
    }
    check_attributes(n, {"name", "protocol", "address", "port", "tls", "require-auth", "cleartext-auth", "enabled",
                         "idle-timeout", "max-connections", "tls-handshake-timeout"}, d);
    Listener l;
    l.node = n;
    l.line = d.line_of(n);
    l.name = n.attribute("name").as_string();
    l.protocol = n.attribute("protocol").as_string();
    l.address = n.attribute("address").as_string("127.0.0.1");
    l.enabled = bool_attr(n, "enabled", true, d);
    l.require_auth = bool_attr(n, "require-auth", l.protocol == "submission", d);
    l.cleartext_auth = bool_attr(n, "cleartext-auth", false, d);
    if (l.name.empty()) d.error(n, "<listener>: name is required");
    if (!l.name.empty() && !listener_names.insert(l.name).second) {
      d.error(n, fmt::format("<listener>: duplicate name '{}'", l.name));
    }
    if (l.protocol.empty()) d.error(n, "<listener>: protocol is required (smtp, submission, imap, pop3, http, ...)");
    std::array<uint8_t, 16> ip{};
    if (!parse_ip(l.address, ip)) d.error(n, fmt::format("<listener>: address '{}' is not an IP address", l.address));
    uint64_t port = 0;
    if (!parse_u64(n.attribute("port").as_string(), port) || port == 0 || port > 65535) {
      d.error(n, fmt::format("<listener>: port '{}' must be 1-65535", n.attribute("port").as_string()));
    } else {
      l.port = static_cast<uint16_t>(port);
      if (l.enabled && !endpoints.insert({l.address, l.port}).second) {
        d.error(n, fmt::format("<listener>: {}:{} is already used by another listener", l.address, l.port));
      }
    }
    const std::string tls = n.attribute("tls").as_string("none");
    if (tls == "none") {
      l.tls = TlsMode::None;
    } else if (tls == "starttls") {
      l.tls = TlsMode::StartTls;
    } else if (tls == "implicit") {
      l.tls = TlsMode::Implicit;
    } else {
      d.error(n, fmt::format("<listener>: tls=\"{}\" must be none, starttls or implicit", tls));
    }
    if (l.tls != TlsMode::None && m->certificates.empty()) {
      d.error(n, fmt::format("<listener>: tls=\"{}\" needs a <certificate>", tls));
    }
    parse_access(n, l.access, d);
    m->listeners.push_back(std::move(l));
  }

  m->smtp = root.child("smtp");
  m->queue = root.child("queue");
  m->delivery = root.child("delivery");
  m->directory = root.child("directory");
  m->mailstore = root.child("mailstore");
  m->scheduler = root.child("scheduler");

  // <scoring>
  if (pugi::xml_node sc = root.child("scoring")) {
    check_attributes(sc, {"add-header", "mark-subject", "quarantine", "reject", "subject-tag"}, d);
    auto num = [&](const char* attr, double& out) {
      if (pugi::xml_attribute a = sc.attribute(attr)) {
        char* end = nullptr;
        const double v = std::strtod(a.value(), &end);
        if (end == a.value() || *end != '\0' || v < 0) {
          d.error(sc, fmt::format("<scoring>: {}=\"{}\" must be a number >= 0", attr, a.value()));
        } else {
          out = v;
        }
      }
    };
    num("add-header", m->scoring.add_header);
    num("mark-subject", m->scoring.mark_subject);
    num("quarantine", m->scoring.quarantine);
    num("reject", m->scoring.reject);
    m->scoring.subject_tag = sc.attribute("subject-tag").as_string("[SPAM]");
  }

  // <plugins>: order matters (it is the hook order).
  std::set<std::string> plugin_names;
  for (pugi::xml_node n : root.child("plugins").children()) {
    if (n.type() != pugi::node_element) continue;
    if (std::string_view(n.name()) != "plugin") {
      d.error(n, fmt::format("<plugins>: unknown element <{}> (plugin)", n.name()));
      continue;
    }
    PluginEntry e;
    e.node = n;
    e.line = d.line_of(n);
    e.name = n.attribute("name").as_string();
    if (e.name.empty()) {
      d.error(n, "<plugin>: name is required");
      continue;
    }
    if (!plugin_names.insert(e.name).second) d.error(n, fmt::format("<plugin>: '{}' is listed twice", e.name));
    e.enabled = bool_attr(n, "enabled", true, d);
    if (pugi::xml_attribute a = n.attribute("timeout")) {
      auto t = parse_duration(a.value());
      if (!t || t->count() == 0) {
        d.error(n, fmt::format("<plugin name=\"{}\">: timeout=\"{}\" is not a duration (e.g. 5s, 500ms)", e.name, a.value()));
      } else {
        e.timeout = *t;
      }
    }
    const std::string of = n.attribute("on-failure").as_string("continue");
    if (of == "continue") {
      e.on_failure = event::OnFailure::Continue;
    } else if (of == "tempfail") {
      e.on_failure = event::OnFailure::TempFail;
    } else {
      d.error(n, fmt::format("<plugin name=\"{}\">: on-failure=\"{}\" must be continue or tempfail", e.name, of));
    }
    if (e.enabled) {
      // Find <name>.so and its descriptor; problems here refuse the plugin, not the daemon.
      bool found = false;
      for (const auto& dir : m->plugin_dirs) {
        std::error_code ec;
        if (std::filesystem::exists(dir / (e.name + ".so"), ec) || std::filesystem::exists(dir / (e.name + ".plugin.xml"), ec)) {
          e.library = dir / (e.name + ".so");
          e.descriptor = dir / (e.name + ".plugin.xml");
          found = true;
          break;
        }
      }
      if (!found) {
        std::string dirs;
        for (const auto& dir : m->plugin_dirs) dirs += (dirs.empty() ? "" : ", ") + dir.string();
        result.plugin_problems.push_back({file_name, e.line,
            fmt::format("plugin '{}': no {}.so in the plugin directories ({})", e.name, e.name,
                        dirs.empty() ? "none configured" : dirs)});
      } else {
        auto dr = plugin::read_descriptor(e.descriptor);
        if (!dr.descriptor) {
          result.plugin_problems.push_back({file_name, e.line, fmt::format("plugin '{}': {}", e.name, dr.error)});
        } else if (dr.descriptor->name != e.name) {
          result.plugin_problems.push_back({file_name, e.line,
              fmt::format("plugin '{}': descriptor {} names '{}'", e.name, e.descriptor.string(), dr.descriptor->name)});
        } else if (auto why = plugin::abi_incompatibility(dr.descriptor->abi_major, dr.descriptor->abi_minor);
                   !why.empty()) {
          result.plugin_problems.push_back({file_name, e.line, fmt::format("plugin '{}': {}", e.name, why)});
        }
      }
    }
    m->plugins.push_back(std::move(e));
  }

  result.errors = d.errors();
  result.manifest = std::move(m);
  return result;
}

}  // namespace postern::core::config
