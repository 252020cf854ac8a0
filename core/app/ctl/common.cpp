#include "core/app/ctl/ctl.hpp"

#include <fmt/format.h>

#include <cstdio>

namespace postern::core::ctl {

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

int fail(int code, std::string_view message) {
  std::fprintf(stderr, "posternctl: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

}  // namespace postern::core::ctl
