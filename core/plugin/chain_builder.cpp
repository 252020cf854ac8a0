#include "core/plugin/chain_builder.hpp"

#include "core/log/log.hpp"
#include "core/plugin/loader.hpp"

#include <fmt/format.h>

namespace postern::core::plugin {

BuiltChain build_chain(const std::shared_ptr<const config::Manifest>& manifest, const HostServices& services) {
  BuiltChain out;
  out.chain = std::make_shared<event::Chain>();
  for (const config::PluginEntry& e : manifest->plugins) {
    if (!e.enabled) continue;
    if (e.library.empty()) {
      out.refused.push_back(fmt::format("{}:{}: plugin '{}' refused: not found in the plugin directories",
                                        manifest->path.string(), e.line, e.name));
      continue;
    }
    LoadRequest req;
    req.library = e.library;
    req.descriptor = e.descriptor;
    req.name = e.name;
    req.config = e.node;
    // The lambda keeps the manifest (and so its XML document) alive as long as the plugin.
    req.line_of = [manifest](const pugi::xml_node& n) { return manifest->line_of(n); };
    auto loaded = LoadedPlugin::load(req, services);
    if (auto* why = std::get_if<std::string>(&loaded)) {
      out.refused.push_back(*why);
      continue;
    }
    auto& plugin = std::get<std::unique_ptr<LoadedPlugin>>(loaded);
    log::info("plugin", "name={} version={} abi={}.{} loaded from {}", plugin->name(), plugin->descriptor().version,
              plugin->descriptor().abi_major, plugin->descriptor().abi_minor, e.library.string());
    out.chain->add(std::move(plugin), e.timeout, e.on_failure);
  }
  return out;
}

std::string describe_order(const config::Manifest& manifest) {
  std::vector<std::pair<std::string, Descriptor>> loaded;
  std::string problems;
  for (const config::PluginEntry& e : manifest.plugins) {
    if (!e.enabled) continue;
    auto dr = e.descriptor.empty() ? DescriptorResult{std::nullopt, "not found in the plugin directories"}
                                   : read_descriptor(e.descriptor);
    if (!dr.descriptor) {
      problems += fmt::format("  {} (refused: {})\n", e.name, dr.error);
      continue;
    }
    if (auto why = abi_incompatibility(dr.descriptor->abi_major, dr.descriptor->abi_minor); !why.empty()) {
      problems += fmt::format("  {} (refused: {})\n", e.name, why);
      continue;
    }
    loaded.emplace_back(e.name, std::move(*dr.descriptor));
  }
  std::string out;
  for (size_t s = 0; s < event::kStageCount; ++s) {
    const auto stage = static_cast<event::Stage>(s);
    std::string line;
    for (const auto& [name, desc] : loaded) {
      if (desc.declares(stage)) line += (line.empty() ? "" : " -> ") + name;
    }
    out += fmt::format("{:<11} {}\n", event::stage_name(stage), line.empty() ? "(none)" : line);
  }
  if (!problems.empty()) out += "refused:\n" + problems;
  return out;
}

}  // namespace postern::core::plugin
