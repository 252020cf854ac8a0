#pragma once
// A plugin's descriptor, <name>.plugin.xml beside <name>.so. The loader reads
// it before any of the plugin's code runs and refuses an incompatible plugin.
//
//   <plugin-descriptor name="greylist" version="1.2.0" abi="1.0" kind="filter">
//     <description>...</description>
//     <hooks><hook stage="rcpt_to"/></hooks>
//     <license feature="cloud-antispam"/>      (optional)
//   </plugin-descriptor>

#include "core/event/event.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::plugin {

enum class Kind { Filter, Service };

struct Descriptor {
  std::filesystem::path file;
  std::string name;
  std::string version;
  uint32_t abi_major = 0;
  uint32_t abi_minor = 0;
  Kind kind = Kind::Filter;
  std::string description;
  std::vector<event::Stage> hooks;  // declared stages, in descriptor order
  std::string license_feature;      // empty: none needed

  bool declares(event::Stage stage) const;
};

struct DescriptorResult {
  std::optional<Descriptor> descriptor;
  std::string error;  // one line naming the file, when descriptor is empty
};

/** Reads and validates a descriptor. Never throws. */
DescriptorResult read_descriptor(const std::filesystem::path& file);

/**
 * Whether a plugin built for ABI `major.minor` can run in this host: same
 * major, minor not newer than the host's. @return empty if yes, else why not.
 */
std::string abi_incompatibility(uint32_t major, uint32_t minor);

}  // namespace postern::core::plugin
