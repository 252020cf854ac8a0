// posternctl — Postern's administration tool.
//
//   posternctl --config FILE plugins --order     the effective hook chain per stage
//   posternctl --config FILE plugins list [--json]
//
// Works from the manifest and the plugin descriptors alone; no plugin code is
// loaded and the daemon need not run. Exit codes: 0 ok, 1 failure, 2 usage.

#include "core/config/manifest.hpp"
#include "core/plugin/chain_builder.hpp"
#include "core/plugin/descriptor.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace postern::core;

int usage() {
  std::fprintf(stderr,
               "usage: posternctl --config FILE plugins --order\n"
               "       posternctl --config FILE plugins list [--json]\n");
  return 2;
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

int plugins_list(const config::Manifest& m, bool json) {
  std::string out = json ? "[" : "";
  bool first = true;
  for (const config::PluginEntry& e : m.plugins) {
    std::string version, status = e.enabled ? "enabled" : "disabled";
    if (e.enabled) {
      auto dr = e.descriptor.empty() ? plugin::DescriptorResult{std::nullopt, "not found"}
                                     : plugin::read_descriptor(e.descriptor);
      if (dr.descriptor) {
        version = dr.descriptor->version;
      } else {
        status = "refused: " + dr.error;
      }
    }
    if (json) {
      out += fmt::format("{}{{\"name\":\"{}\",\"enabled\":{},\"version\":\"{}\",\"status\":\"{}\",\"line\":{}}}",
                         first ? "" : ",", json_escape(e.name), e.enabled ? "true" : "false", json_escape(version),
                         json_escape(status), e.line);
    } else {
      out += fmt::format("{:<20} {:<10} {}\n", e.name, version.empty() ? "-" : version, status);
    }
    first = false;
  }
  if (json) out += "]\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (a.starts_with("--config=")) {
      config_file = std::string(a.substr(9));
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      args.emplace_back(a);
    }
  }
  if (config_file.empty() || args.empty()) return usage();

  config::LoadResult lr = config::load_manifest(config_file);
  if (!lr.manifest || !lr.errors.empty()) {
    for (const auto& e : lr.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "posternctl: %s is invalid\n", config_file.c_str());
    return 1;
  }
  const config::Manifest& m = *lr.manifest;
  const bool json = std::find(args.begin(), args.end(), "--json") != args.end();
  if (args[0] == "plugins") {
    if (args.size() >= 2 && args[1] == "--order") {
      std::fputs(plugin::describe_order(m).c_str(), stdout);
      return 0;
    }
    if (args.size() >= 2 && args[1] == "list") return plugins_list(m, json);
    return usage();
  }
  std::fprintf(stderr, "posternctl: unknown area '%s'\n", args[0].c_str());
  return usage();
}
