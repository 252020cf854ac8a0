#pragma once
// Applies the header edits hooks requested (event::HeaderEdit) to a raw
// RFC 5322 message, with the semantics of the ABI (postern_abi.h,
// event_header_add/change/remove): add at the top (prepend) or at the bottom
// of the header block; change the index-th (0-based) field of that name, or
// add it at the bottom when there is no such field; remove the index-th field,
// or every field of that name when index < 0. Names compare case-insensitively.

#include "core/event/event.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace postern::core::smtp {

/** One header field as it appears in the message (folded lines included, CRLF at the end). */
struct RawHeaderField {
  std::string name;
  std::string raw;
};

/** Splits `message` into its header fields and the rest (the empty line and the body). */
struct SplitMessage {
  std::vector<RawHeaderField> fields;
  std::string_view rest;
};
SplitMessage split_header(std::string_view message);

/**
 * Formats "Name: value\r\n"; line breaks inside `value` become folds (CRLF + TAB
 * unless already followed by whitespace), so a value can never start a new field.
 * @return empty when `name` is not a valid field name (RFC 5322 ftext).
 */
std::string format_header_field(std::string_view name, std::string_view value);

/**
 * @return the message with `edits` applied in order; invalid edits (bad name)
 *   are skipped and counted in `*skipped` when given.
 */
std::string apply_header_edits(std::string_view message, const std::vector<event::HeaderEdit>& edits,
                               size_t* skipped = nullptr);

/**
 * @return `message` with everything after its header section replaced by
 *   `body` (milter's REPLBODY, ABI 1.3 event_body_replace): the header
 *   fields stay as they are, then the empty line, then `body` (CRLF, as the
 *   host API normalized it). A message without a separator line gets one.
 */
std::string replace_body(std::string_view message, std::string_view body);

/** Number of fields named `name` in the header block (hop counting). */
size_t count_header_fields(std::string_view message, std::string_view name);

}  // namespace postern::core::smtp
