#include "core/plugin/descriptor.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <fmt/format.h>
#include <pugixml.hpp>

#include <algorithm>
#include <charconv>

namespace postern::core::plugin {
namespace {

bool valid_plugin_name(std::string_view name) {
  // The name becomes a file name and a state directory: keep it boring.
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

bool parse_abi(std::string_view text, uint32_t& major, uint32_t& minor) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos) return false;
  auto a = std::from_chars(text.data(), text.data() + dot, major);
  auto b = std::from_chars(text.data() + dot + 1, text.data() + text.size(), minor);
  return a.ec == std::errc{} && a.ptr == text.data() + dot && b.ec == std::errc{} &&
         b.ptr == text.data() + text.size() && dot > 0 && dot + 1 < text.size();
}

}  // namespace

bool Descriptor::declares(event::Stage stage) const {
  return std::find(hooks.begin(), hooks.end(), stage) != hooks.end();
}

std::string abi_incompatibility(uint32_t major, uint32_t minor) {
  if (major != POSTERN_ABI_VERSION_MAJOR) {
    return fmt::format("ABI {}.{} is incompatible with this host's ABI {}.{} (major version differs)", major,
                       minor, POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR);
  }
  if (minor > POSTERN_ABI_VERSION_MINOR) {
    return fmt::format("ABI {}.{} is newer than this host's ABI {}.{}; upgrade posternd", major, minor,
                       POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR);
  }
  return {};
}

DescriptorResult read_descriptor(const std::filesystem::path& file) {
  DescriptorResult out;
  auto fail = [&](const std::string& why) {
    out.error = fmt::format("{}: {}", file.string(), why);
    return out;
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return fail("descriptor missing");
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_file(file.c_str());
  if (!parsed) return fail(fmt::format("invalid XML: {}", parsed.description()));
  const pugi::xml_node root = doc.child("plugin-descriptor");
  if (!root) return fail("root element must be <plugin-descriptor>");

  Descriptor d;
  d.file = file;
  d.name = root.attribute("name").as_string();
  if (!valid_plugin_name(d.name)) return fail(fmt::format("invalid plugin name '{}' (use a-z 0-9 _ -)", d.name));
  d.version = root.attribute("version").as_string();
  if (d.version.empty()) return fail("missing version attribute");
  const std::string abi = root.attribute("abi").as_string();
  if (!parse_abi(abi, d.abi_major, d.abi_minor)) return fail(fmt::format("invalid abi '{}' (expected MAJOR.MINOR)", abi));
  const std::string kind = root.attribute("kind").as_string("filter");
  if (kind == "filter") {
    d.kind = Kind::Filter;
  } else if (kind == "service") {
    d.kind = Kind::Service;
  } else {
    return fail(fmt::format("invalid kind '{}' (filter or service)", kind));
  }
  d.description = root.child_value("description");
  for (pugi::xml_node hook : root.child("hooks").children("hook")) {
    const std::string stage_text = hook.attribute("stage").as_string();
    auto stage = event::stage_from_name(stage_text);
    if (!stage) return fail(fmt::format("unknown hook stage '{}'", stage_text));
    if (!d.declares(*stage)) d.hooks.push_back(*stage);
  }
  if (pugi::xml_node lic = root.child("license")) {
    d.license_feature = lic.attribute("feature").as_string();
    if (d.license_feature.empty()) return fail("<license> needs a feature attribute");
  }
  out.descriptor = std::move(d);
  return out;
}

}  // namespace postern::core::plugin
