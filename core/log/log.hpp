#pragma once
// Logging: one line per event, "TIME LEVEL component: key=value ...".
// To stderr in the foreground and to a log file; the level is set by the
// manifest (<log level=...>) and may change on reload. Thread-safe.

#include <filesystem>
#include <fmt/format.h>
#include <optional>
#include <string>
#include <string_view>

namespace postern::core::log {

enum class Level { Trace = 0, Debug = 1, Info = 2, Warn = 3, Error = 4 };

std::optional<Level> level_from_name(std::string_view name);
std::string_view level_name(Level level);

/**
 * Configures the sinks. May be called again (reload); an empty `file` means no
 * file sink. @return false (and keeps the old file) when the file cannot be opened.
 */
bool configure(Level level, const std::filesystem::path& file, bool to_stderr);
void set_level(Level level);
bool enabled(Level level);

/** Writes one line; newlines and control characters in `line` are escaped. */
void write(Level level, std::string_view component, std::string_view line);

/** Number of lines written at Warn or above (for tests and stats). */
uint64_t warnings_written();

template <class... Args>
void trace(std::string_view component, fmt::format_string<Args...> fmt, Args&&... args) {
  if (enabled(Level::Trace)) write(Level::Trace, component, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void debug(std::string_view component, fmt::format_string<Args...> fmt, Args&&... args) {
  if (enabled(Level::Debug)) write(Level::Debug, component, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void info(std::string_view component, fmt::format_string<Args...> fmt, Args&&... args) {
  if (enabled(Level::Info)) write(Level::Info, component, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void warn(std::string_view component, fmt::format_string<Args...> fmt, Args&&... args) {
  if (enabled(Level::Warn)) write(Level::Warn, component, fmt::format(fmt, std::forward<Args>(args)...));
}
template <class... Args>
void error(std::string_view component, fmt::format_string<Args...> fmt, Args&&... args) {
  if (enabled(Level::Error)) write(Level::Error, component, fmt::format(fmt, std::forward<Args>(args)...));
}

}  // namespace postern::core::log
