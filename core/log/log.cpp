#include "core/log/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace postern::core::log {
namespace {

struct Sinks {
  std::mutex mutex;
  std::FILE* file = nullptr;
  bool to_stderr = true;
};

Sinks& sinks() {
  static Sinks s;
  return s;
}

std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<uint64_t> g_warnings{0};

constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn", "error"};

void append_escaped(std::string& out, std::string_view text) {
  // One event, one line: a CR or LF from a peer must not forge a second line.
  for (unsigned char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
}

}  // namespace

std::optional<Level> level_from_name(std::string_view name) {
  for (size_t i = 0; i < std::size(kNames); ++i) {
    if (kNames[i] == name) return static_cast<Level>(i);
  }
  if (name == "warning") return Level::Warn;
  return std::nullopt;
}

std::string_view level_name(Level level) { return kNames[static_cast<int>(level)]; }

bool configure(Level level, const std::filesystem::path& file, bool to_stderr) {
  std::FILE* opened = nullptr;
  if (!file.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    opened = std::fopen(file.c_str(), "ae");
    if (opened == nullptr) return false;
  }
  Sinks& s = sinks();
  std::lock_guard lock(s.mutex);
  if (s.file != nullptr) std::fclose(s.file);
  s.file = opened;
  s.to_stderr = to_stderr;
  g_level = static_cast<int>(level);
  return true;
}

void set_level(Level level) { g_level = static_cast<int>(level); }

bool enabled(Level level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view component, std::string_view line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  std::string out;
  out.reserve(64 + line.size());
  out += fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis,
                     level_name(level), component);
  append_escaped(out, line);
  out += '\n';
  if (level >= Level::Warn) ++g_warnings;
  Sinks& s = sinks();
  std::lock_guard lock(s.mutex);
  if (s.to_stderr) std::fwrite(out.data(), 1, out.size(), stderr);
  if (s.file != nullptr) {
    std::fwrite(out.data(), 1, out.size(), s.file);
    std::fflush(s.file);
  }
}

uint64_t warnings_written() { return g_warnings.load(); }

}  // namespace postern::core::log
