#include "core/app/ctl/ctl.hpp"

#include <fmt/format.h>

#include <cstdarg>
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

namespace {

thread_local Capture* t_capture = nullptr;

void vwrite(bool to_err, const char* format, va_list ap) {
  if (t_capture == nullptr) {
    std::vfprintf(to_err ? stderr : stdout, format, ap);
    return;
  }
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return;
  std::string& buf = to_err ? t_capture->err : t_capture->out;
  const size_t at = buf.size();
  buf.resize(at + static_cast<size_t>(n) + 1);
  std::vsnprintf(buf.data() + at, static_cast<size_t>(n) + 1, format, ap);
  buf.resize(at + static_cast<size_t>(n));
}

}  // namespace

Capture::Capture() : previous_(t_capture) { t_capture = this; }
Capture::~Capture() { t_capture = previous_; }
bool capturing() { return t_capture != nullptr; }

void print(const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  vwrite(false, format, ap);
  va_end(ap);
}

void eprint(const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  vwrite(true, format, ap);
  va_end(ap);
}

void print_str(std::string_view text) {
  if (t_capture != nullptr) t_capture->out += text;
  else std::fwrite(text.data(), 1, text.size(), stdout);
}

void eprint_str(std::string_view text) {
  if (t_capture != nullptr) t_capture->err += text;
  else std::fwrite(text.data(), 1, text.size(), stderr);
}

int fail(int code, std::string_view message) {
  eprint("posternctl: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

}  // namespace postern::core::ctl
