#include "core/config/diagnostics.hpp"

#include <algorithm>

namespace postern::core::config {

Diagnostics::Diagnostics(std::string file, std::string_view text) : file_(std::move(file)) {
  line_starts_.push_back(0);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') line_starts_.push_back(i + 1);
  }
}

uint32_t Diagnostics::line_of_offset(ptrdiff_t offset) const {
  if (offset < 0) return 0;
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), static_cast<size_t>(offset));
  return static_cast<uint32_t>(it - line_starts_.begin());
}

uint32_t Diagnostics::line_of(const pugi::xml_node& node) const {
  return node ? line_of_offset(node.offset_debug()) : 0;
}

void Diagnostics::error(const pugi::xml_node& node, std::string message) {
  error_at_line(line_of(node), std::move(message));
}

void Diagnostics::error_at_line(uint32_t line, std::string message) {
  errors_.push_back(Diagnostic{file_, line, std::move(message)});
}

}  // namespace postern::core::config
