#pragma once
// Builds the hook chain of a manifest: loads every enabled plugin in manifest
// order; a refused plugin is reported (one line, naming the file) and skipped.

#include "core/config/manifest.hpp"
#include "core/event/chain.hpp"
#include "core/plugin/host_services.hpp"

#include <memory>
#include <string>
#include <vector>

namespace postern::core::plugin {

struct BuiltChain {
  std::shared_ptr<event::Chain> chain;
  std::vector<std::string> refused;  // one line per refused plugin
};

BuiltChain build_chain(const std::shared_ptr<const config::Manifest>& manifest, const HostServices& services);

/** `posternctl plugins --order`: the effective chain per stage, from descriptors only. */
std::string describe_order(const config::Manifest& manifest);

}  // namespace postern::core::plugin
