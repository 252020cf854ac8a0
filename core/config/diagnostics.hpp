#pragma once
// Collects configuration errors as "FILE:LINE: message" (posternd --check-config).

#include <pugixml.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::config {

struct Diagnostic {
  std::string file;
  uint32_t line = 0;
  std::string message;
  std::string str() const { return file + ":" + std::to_string(line) + ": " + message; }
};

/** Maps pugixml node offsets to line numbers and collects errors. */
class Diagnostics {
 public:
  Diagnostics(std::string file, std::string_view text);

  /** Line of a node (1-based) in the source text. */
  uint32_t line_of(const pugi::xml_node& node) const;
  uint32_t line_of_offset(ptrdiff_t offset) const;

  void error(const pugi::xml_node& node, std::string message);
  void error_at_line(uint32_t line, std::string message);

  const std::vector<Diagnostic>& errors() const { return errors_; }
  bool ok() const { return errors_.empty(); }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
  std::vector<size_t> line_starts_;  // offset of the first octet of each line
  std::vector<Diagnostic> errors_;
};

}  // namespace postern::core::config
