#include "core/directory/directory_config.hpp"

#include "core/directory/address.hpp"
#include "core/smtp/address.hpp"

#include <fmt/format.h>

#include <charconv>
#include <sstream>

namespace postern::core::directory {

namespace {

std::optional<uint32_t> parse_count(std::string_view v, uint32_t min, uint32_t max) {
  uint32_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < min || n > max) return std::nullopt;
  return n;
}

}  // namespace

DirectoryConfig parse_directory_config(const config::Manifest& m, config::Diagnostics* diag) {
  DirectoryConfig c;
  const pugi::xml_node d = m.directory;
  auto error = [&](std::string msg) {
    if (diag) diag->error(d, std::move(msg));
  };
  // <smtp><local-domain> lists (validated by the engine's parser; invalid names are skipped here).
  for (auto child : m.smtp.children("local-domain")) {
    std::istringstream in{std::string(child.text().get())};
    std::string w;
    while (in >> w) {
      if (!w.empty() && w.back() == ',') w.pop_back();
      if (smtp::is_valid_domain(w, true) && w.front() != '[') c.local_domains.push_back(smtp::ascii_lower(w));
    }
  }
  c.enabled = static_cast<bool>(d);
  c.options.file = (m.data_dir / "directory.sqlite").string();
  if (!c.local_domains.empty()) c.options.default_domain = c.local_domains.front();
  else c.options.default_domain = smtp::ascii_lower(m.server_name);
  if (!d) return c;

  static constexpr const char* kKnown[] = {"file", "default-domain", "router-loop-limit", "refresh",
                                           "hash-time", "hash-memory", "hash-parallelism"};
  for (auto a : d.attributes()) {
    bool ok = false;
    for (const char* k : kKnown) ok = ok || std::string_view(a.name()) == k;
    if (!ok) error(fmt::format("<directory>: unknown attribute {}", a.name()));
  }
  for (auto child : d.children()) {
    if (child.type() == pugi::node_element) {
      if (diag) diag->error(child, fmt::format("<directory>: unknown element <{}>", child.name()));
    }
  }
  if (auto a = d.attribute("file")) {
    std::filesystem::path p = a.value();
    if (p.empty()) error("<directory file=\"\">: a file name is required");
    else c.options.file = (p.is_absolute() ? p : m.path.parent_path() / p).lexically_normal().string();
  }
  if (auto a = d.attribute("default-domain")) {
    std::string why;
    if (auto dom = parse_domain(a.value(), &why)) c.options.default_domain = *dom;
    else error(fmt::format("<directory default-domain=\"{}\">: {}", a.value(), why));
  }
  if (c.options.default_domain.empty()) error("<directory>: no default domain (set default-domain= or <server name=>)");
  if (auto a = d.attribute("router-loop-limit")) {
    if (auto n = parse_count(a.value(), 1, 1000)) c.options.router_loop_limit = *n;
    else error(fmt::format("<directory router-loop-limit=\"{}\">: expected a whole number 1..1000", a.value()));
  }
  if (auto a = d.attribute("refresh")) {
    auto v = config::parse_duration(a.value());
    if (!v || *v < std::chrono::milliseconds(100) || *v > std::chrono::hours(1)) {
      error(fmt::format("<directory refresh=\"{}\">: expected a duration from 100ms to 1h", a.value()));
    } else {
      c.refresh = *v;
    }
  }
  if (auto a = d.attribute("hash-time")) {
    if (auto n = parse_count(a.value(), 1, 100)) c.options.hash.time_cost = *n;
    else error(fmt::format("<directory hash-time=\"{}\">: expected argon2 passes 1..100", a.value()));
  }
  if (auto a = d.attribute("hash-parallelism")) {
    if (auto n = parse_count(a.value(), 1, 64)) c.options.hash.parallelism = *n;
    else error(fmt::format("<directory hash-parallelism=\"{}\">: expected argon2 lanes 1..64", a.value()));
  }
  if (auto a = d.attribute("hash-memory")) {
    auto v = config::parse_size(a.value());
    // argon2 needs 8 KiB per lane at least; 4 GiB is past any sane login cost.
    if (!v || *v < 8 * 1024 * uint64_t{c.options.hash.parallelism} || *v > (uint64_t{4} << 30)) {
      error(fmt::format("<directory hash-memory=\"{}\">: expected a size from 8k per lane to 4G (e.g. 64M)", a.value()));
    } else {
      c.options.hash.memory_kib = static_cast<uint32_t>(*v / 1024);
    }
  }
  return c;
}

}  // namespace postern::core::directory
