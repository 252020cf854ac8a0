#include "core/smtp/data_decoder.hpp"

namespace postern::core::smtp {

void DataDecoder::emit(char c) {
  ++size_;
  if (size_ > max_size_) too_big_ = true;
  if (!failed()) out_ += c;
}

void DataDecoder::emit_crlf() {
  emit('\r');
  emit('\n');
}

// One octet in the middle of a line (state Text, CR already handled by the caller).
void DataDecoder::text_octet(char c) {
  switch (c) {
    case '\r':
      state_ = State::CR;
      return;
    case '\n':
      // Bare LF: never a line start for the end marker, in either mode, so that
      // "\n.\r\n" or "\n.\n" can never end the data (smuggling).
      bare_lf_ = true;
      if (mode_ == BareLineEnding::Normalize) emit_crlf();
      else emit('\n');
      state_ = State::Text;
      return;
    case '\0':
      nul_ = true;
      emit(c);
      state_ = State::Text;
      return;
    default:
      emit(c);
      state_ = State::Text;
  }
}

size_t DataDecoder::feed(std::string_view in) {
  size_t i = 0;
  for (; i < in.size() && state_ != State::Done; ++i) {
    const char c = in[i];
    switch (state_) {
      case State::LineStart:
        if (c == '.') state_ = State::Dot;
        else text_octet(c);
        break;
      case State::Dot:
        // RFC 5321 §4.5.2: the first octet of a line is a dot: delete it.
        if (c == '\r') state_ = State::DotCR;
        else text_octet(c);
        break;
      case State::DotCR:
        if (c == '\n') {
          state_ = State::Done;
        } else {
          // ".\r" followed by something else: the dot was stuffing, the CR is bare.
          bare_cr_ = true;
          if (mode_ == BareLineEnding::Normalize) emit_crlf();
          else emit('\r');
          state_ = State::Text;
          text_octet(c);
        }
        break;
      case State::CR:
        if (c == '\n') {
          emit_crlf();
          state_ = State::LineStart;
        } else {
          bare_cr_ = true;
          if (mode_ == BareLineEnding::Normalize) emit_crlf();
          else emit('\r');
          state_ = State::Text;
          text_octet(c);
        }
        break;
      case State::Text:
        text_octet(c);
        break;
      case State::Done:
        break;
    }
  }
  return i;
}

LineCheck check_line_endings(std::string& message, BareLineEnding mode) {
  LineCheck r;
  std::string fixed;
  const bool normalize = mode == BareLineEnding::Normalize;
  for (size_t i = 0; i < message.size(); ++i) {
    char c = message[i];
    if (c == '\0') r.nul = true;
    if (c == '\r') {
      if (i + 1 < message.size() && message[i + 1] == '\n') {
        if (normalize) fixed += "\r\n";
        ++i;
        continue;
      }
      r.bare_cr = true;
      if (normalize) fixed += "\r\n";
      continue;
    }
    if (c == '\n') {
      r.bare_lf = true;
      if (normalize) fixed += "\r\n";
      continue;
    }
    if (normalize) fixed += c;
  }
  if (normalize && (r.bare_cr || r.bare_lf)) message = std::move(fixed);
  return r;
}

}  // namespace postern::core::smtp
