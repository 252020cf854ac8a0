#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "postern/mail/mime.hpp"

/**
 * Text extraction for content filters (Postern::mail): the readable UTF-8 text of a
 * message, the way spam, Bayes, rules and antivirus-by-content filters want to see it.
 * All functions are reentrant and never throw except std::bad_alloc.
 */
namespace postern::mail {

/** Bounds and choices for extract_text(). */
struct TextExtractOptions {
  /** Octets of UTF-8 text at most; the text is cut at a character boundary. */
  size_t max_bytes = 1 << 20;
  /** Whether text/html parts are read (reduced by html_to_text()). */
  bool include_html = true;
  /** Whether parts with Content-Disposition: attachment are read too. */
  bool include_attachments = false;
};

/** What extract_text() found. */
struct ExtractedText {
  /** The text of every part read, in message order, parts separated by a blank line. */
  std::string text;
  /** Text parts read. */
  size_t parts = 0;
  /** True when max_bytes cut the text. */
  bool truncated = false;
};

/**
 * The decoded UTF-8 text of the text/plain and text/html parts of a message: transfer
 * encoding undone, charset converted (to_utf8()), HTML reduced to text (html_to_text()).
 * Inside a multipart/alternative only one alternative is read: text/plain when there is
 * one, else text/html. Message/rfc822 parts are descended into; other media types, and
 * attachments unless asked for, are skipped.
 * @param message a parsed message.
 * @param options size cap and choices.
 * @return the text; never fails.
 */
ExtractedText extract_text(const Message& message, const TextExtractOptions& options = {});

/**
 * Reduces HTML to plain text: tags stripped, comments, script, style and head-only
 * elements (script, style, template) dropped with their content, character references
 * decoded (named, decimal, hex; C1 numbers read as windows-1252 as in HTML §13.2.5.80),
 * block elements (p, div, br, li, tr, h1-h6, ...) as line breaks, table cells apart by a
 * tab, other whitespace runs collapsed to one space (kept inside pre), at most one
 * blank line in a row.
 * @param html UTF-8 HTML (convert the charset first).
 * @param max_bytes octets of output at most, cut at a character boundary.
 * @return the text, without leading or trailing whitespace.
 */
std::string html_to_text(std::string_view html, size_t max_bytes = static_cast<size_t>(-1));

}  // namespace postern::mail
