#include "core/queue/state.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <fstream>
#include <system_error>
#include <unistd.h>

namespace postern::core::queue {

namespace {

constexpr std::string_view kMagic = "postern-state 1";

// A field without spaces: '%', space and controls as %XX; "" as "-".
std::string escape(std::string_view v) {
  if (v.empty()) return "-";
  if (v == "-") return "%2D";
  std::string out;
  out.reserve(v.size());
  for (unsigned char c : v) {
    if (c == '%' || c == ' ' || c < 0x20 || c == 0x7f) out += fmt::format("%{:02X}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

std::optional<std::string> unescape(std::string_view v) {
  if (v == "-") return std::string();
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    if (i + 2 >= v.size()) return std::nullopt;
    unsigned value = 0;
    auto [p, ec] = std::from_chars(v.data() + i + 1, v.data() + i + 3, value, 16);
    if (ec != std::errc() || p != v.data() + i + 3) return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

// One line of text: CR, LF and NUL become spaces.
std::string one_line(std::string_view v) {
  std::string out(v);
  for (char& c : out)
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  return out;
}

int64_t secs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

template <typename T>
bool parse_int(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view next_word(std::string_view& rest) {
  size_t sp = rest.find(' ');
  std::string_view w = rest.substr(0, sp);
  rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
  return w;
}

}  // namespace

std::string_view unit_status_name(UnitStatus s) {
  switch (s) {
    case UnitStatus::Pending: return "pending";
    case UnitStatus::Delivered: return "delivered";
    case UnitStatus::Relayed: return "relayed";
    case UnitStatus::Failed: return "failed";
    case UnitStatus::Dropped: return "dropped";
  }
  return "pending";
}

std::optional<UnitStatus> unit_status_from_name(std::string_view name) {
  for (UnitStatus s : {UnitStatus::Pending, UnitStatus::Delivered, UnitStatus::Relayed, UnitStatus::Failed,
                       UnitStatus::Dropped})
    if (unit_status_name(s) == name) return s;
  return std::nullopt;
}

std::string format_state(const MessageState& st) {
  std::string out;
  out += kMagic;
  out += '\n';
  out += fmt::format("attempts: {}\n", st.attempts);
  out += fmt::format("next-try: {}\n", secs(st.next_try));
  out += fmt::format("last-attempt: {}\n", secs(st.last_attempt));
  out += fmt::format("delay-warned: {}\n", st.delay_warned ? "yes" : "no");
  for (const Unit& u : st.units) {
    out += fmt::format("unit: {} {} {} {} {} {} {} {} {}\n", u.rcpt, unit_status_name(u.status), u.local ? 1 : 0,
                       u.reported ? 1 : 0, u.code, escape(u.enhanced), escape(u.remote), escape(u.target),
                       one_line(u.text));
  }
  // The end marker: a file cut short by a crash is recognised and ignored.
  out += "end\n";
  return out;
}

std::optional<MessageState> parse_state(std::string_view text) {
  MessageState st;
  size_t pos = 0;
  bool first = true, ended = false;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) return std::nullopt;
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (first) {
      if (line != kMagic) return std::nullopt;
      first = false;
      continue;
    }
    if (line == "end") {
      ended = true;
      break;
    }
    size_t colon = line.find(": ");
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view key = line.substr(0, colon), value = line.substr(colon + 2);
    int64_t n = 0;
    if (key == "attempts") {
      if (!parse_int(value, st.attempts)) return std::nullopt;
    } else if (key == "next-try") {
      if (!parse_int(value, n)) return std::nullopt;
      st.next_try = std::chrono::system_clock::time_point(std::chrono::seconds(n));
    } else if (key == "last-attempt") {
      if (!parse_int(value, n)) return std::nullopt;
      st.last_attempt = std::chrono::system_clock::time_point(std::chrono::seconds(n));
    } else if (key == "delay-warned") {
      st.delay_warned = value == "yes";
    } else if (key == "unit") {
      Unit u;
      std::string_view rest = value;
      if (!parse_int(next_word(rest), u.rcpt)) return std::nullopt;
      auto status = unit_status_from_name(next_word(rest));
      if (!status) return std::nullopt;
      u.status = *status;
      u.local = next_word(rest) == "1";
      u.reported = next_word(rest) == "1";
      if (!parse_int(next_word(rest), u.code)) return std::nullopt;
      auto enhanced = unescape(next_word(rest));
      auto remote = unescape(next_word(rest));
      auto target = unescape(next_word(rest));
      if (!enhanced || !remote || !target) return std::nullopt;
      u.enhanced = std::move(*enhanced);
      u.remote = std::move(*remote);
      u.target = std::move(*target);
      u.text = std::string(rest);
      st.units.push_back(std::move(u));
    }
    // Unknown keys: written by a newer version; ignored.
  }
  if (!ended) return std::nullopt;
  return st;
}

void write_state_file(const std::filesystem::path& file, const MessageState& state) {
  const std::string text = format_state(state);
  const std::filesystem::path tmp = file.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "queue: create " + tmp.string());
  std::string_view data = text;
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::system_error(err, std::generic_category(), "queue: write " + tmp.string());
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  // fsync before rename: after a power loss the file is the old state or the
  // new one, never empty (the old one only means duplicates, never a loss).
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::system_error(err, std::generic_category(), "queue: fsync " + tmp.string());
  }
  ::close(fd);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::system_error(err, std::generic_category(), "queue: rename " + file.string());
  }
}

std::optional<MessageState> read_state_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_state(content);
}

}  // namespace postern::core::queue
