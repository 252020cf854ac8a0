#include "core/smtp/reply.hpp"

#include <fmt/format.h>

namespace postern::core::smtp {

std::string format_reply(const Reply& reply) {
  if (reply.enhanced.empty()) return fmt::format("{} {}\r\n", reply.code, reply.text);
  return fmt::format("{} {} {}\r\n", reply.code, reply.enhanced, reply.text);
}

std::string format_reply_lines(int code, const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i)
    out += fmt::format("{}{}{}\r\n", code, i + 1 == lines.size() ? ' ' : '-', lines[i]);
  return out;
}

std::string clean_text(std::string_view text) {
  std::string out;
  for (unsigned char c : text) out += (c < 32 || c == 127) ? ' ' : static_cast<char>(c);
  return out;
}

std::optional<Reply> outcome_reply(const event::Outcome& o, std::string_view reject_text) {
  if (o.verdict == event::Verdict::Reject) {
    const int code = (o.code >= 500 && o.code < 600) ? o.code : 550;
    std::string enh = (!o.enhanced.empty() && o.enhanced[0] == '5') ? o.enhanced : "5.7.1";
    return Reply{code, std::move(enh), o.text.empty() ? std::string(reject_text) : clean_text(o.text)};
  }
  if (o.verdict == event::Verdict::TempFail) {
    int code = (o.code >= 400 && o.code < 500) ? o.code : 451;
    if (o.disconnect) code = 421;
    std::string enh = (!o.enhanced.empty() && o.enhanced[0] == '4') ? o.enhanced : "4.7.1";
    return Reply{code, std::move(enh), o.text.empty() ? std::string("Try again later") : clean_text(o.text)};
  }
  return std::nullopt;
}

}  // namespace postern::core::smtp
