// posternctl plugins --order | list [--json]: from the manifest and the
// plugin descriptors alone; no plugin code is loaded.

#include "core/app/ctl/ctl.hpp"
#include "core/plugin/chain_builder.hpp"
#include "core/plugin/descriptor.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace postern::core::ctl {

namespace {

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
  print_str(out.c_str());
  return kOk;
}

}  // namespace

int plugins(Command& c) {
  if (!c.args.empty() && c.args[0] == "--order") {
    print_str(plugin::describe_order(c.manifest).c_str());
    return kOk;
  }
  if (!c.args.empty() && c.args[0] == "list") return plugins_list(c.manifest, c.json);
  eprint("usage: posternctl --config FILE plugins --order | list [--json]\n");
  return kUsage;
}

}  // namespace postern::core::ctl
