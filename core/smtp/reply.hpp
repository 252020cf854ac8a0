#pragma once
// One SMTP reply (RFC 5321 §4.2, RFC 2034 enhanced codes) and the mapping of a
// hook outcome to the reply it asks for. Pure: no I/O.

#include "core/event/event.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::core::smtp {

/** A single-line reply; `enhanced` empty for replies without an enhanced code (220, 354, 334). */
struct Reply {
  int code = 0;
  std::string enhanced;
  std::string text;
};

/** "250 2.0.0 Ok\r\n" (or "354 text\r\n" without an enhanced code). */
std::string format_reply(const Reply& reply);
/** A multi-line reply (EHLO): "250-first\r\n" ... "250 last\r\n". */
std::string format_reply_lines(int code, const std::vector<std::string>& lines);

/** Plugin-supplied (or client-supplied) text made safe for the wire: controls become spaces. */
std::string clean_text(std::string_view text);

/**
 * The reply a Reject or TempFail outcome asks for: the hook's code and text when
 * they fit the verdict's class, the engine's defaults otherwise (550 5.7.1 /
 * 451 4.7.1; 421 when the hook also asks for a disconnect).
 * @param reject_text the default text of a rejection.
 * @return nullopt for every other verdict (the caller goes on).
 */
std::optional<Reply> outcome_reply(const event::Outcome& outcome, std::string_view reject_text = "Rejected by policy");

}  // namespace postern::core::smtp
