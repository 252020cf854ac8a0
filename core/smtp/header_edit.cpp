#include "core/smtp/header_edit.hpp"

#include "core/smtp/address.hpp"

namespace postern::core::smtp {

namespace {

bool is_ftext(unsigned char c) { return c >= 33 && c <= 126 && c != ':'; }

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (!is_ftext(c)) return false;
  return true;
}

// Returns the end of the line starting at `pos` (after its LF), or npos-safe size.
size_t line_end(std::string_view s, size_t pos) {
  size_t lf = s.find('\n', pos);
  return lf == std::string_view::npos ? s.size() : lf + 1;
}

}  // namespace

SplitMessage split_header(std::string_view message) {
  SplitMessage out;
  size_t pos = 0;
  while (pos < message.size()) {
    const size_t end = line_end(message, pos);
    std::string_view line = message.substr(pos, end - pos);
    const char first = line[0];
    if (first == '\r' || first == '\n') break;  // the empty line ends the header
    if ((first == ' ' || first == '\t') && !out.fields.empty()) {
      out.fields.back().raw += line;  // continuation of a folded field
      pos = end;
      continue;
    }
    size_t colon = line.find(':');
    std::string_view name = colon == std::string_view::npos ? std::string_view{} : line.substr(0, colon);
    // RFC 5322 allows WSP before the colon in obsolete syntax; trim it.
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (!valid_name(name)) break;  // not a header field: the body starts here (no separator line)
    out.fields.push_back({std::string(name), std::string(line)});
    pos = end;
  }
  out.rest = message.substr(pos);
  return out;
}

std::string format_header_field(std::string_view name, std::string_view value) {
  if (!valid_name(name)) return {};
  std::string out(name);
  out += ": ";
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') ++i;
      // Drop trailing breaks; fold inner ones.
      if (i + 1 >= value.size()) break;
      out += "\r\n";
      if (value[i + 1] != ' ' && value[i + 1] != '\t') out += '\t';
      continue;
    }
    if (c == '\0') continue;
    out += c;
  }
  out += "\r\n";
  return out;
}

std::string replace_body(std::string_view message, std::string_view body) {
  const SplitMessage split = split_header(message);
  const size_t header_size = message.size() - split.rest.size();
  std::string out(message.substr(0, header_size));
  // The header section ends with its last field's CRLF; one that did not
  // (a message of headers only, cut short) gets its line end first.
  if (!out.empty() && !out.ends_with("\n")) out += "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string apply_header_edits(std::string_view message, const std::vector<event::HeaderEdit>& edits,
                               size_t* skipped) {
  SplitMessage split = split_header(message);
  auto& fields = split.fields;
  size_t bad = 0;
  for (const auto& e : edits) {
    if (!valid_name(e.name)) {
      ++bad;
      continue;
    }
    switch (e.kind) {
      case event::HeaderEdit::Kind::Add: {
        RawHeaderField f{e.name, format_header_field(e.name, e.value)};
        if (e.prepend) fields.insert(fields.begin(), std::move(f));
        else fields.push_back(std::move(f));
        break;
      }
      case event::HeaderEdit::Kind::Change: {
        int32_t seen = 0;
        bool done = false;
        for (auto& f : fields) {
          if (!iequals(f.name, e.name)) continue;
          if (seen++ == e.index) {
            f.raw = format_header_field(f.name, e.value);
            done = true;
            break;
          }
        }
        if (!done) fields.push_back({e.name, format_header_field(e.name, e.value)});
        break;
      }
      case event::HeaderEdit::Kind::Remove: {
        int32_t seen = 0;
        for (auto it = fields.begin(); it != fields.end();) {
          if (iequals(it->name, e.name)) {
            if (e.index < 0) {
              it = fields.erase(it);
              continue;
            }
            if (seen++ == e.index) {
              fields.erase(it);
              break;
            }
          }
          ++it;
        }
        break;
      }
    }
  }
  if (skipped) *skipped = bad;
  std::string out;
  out.reserve(message.size() + 256);
  for (const auto& f : fields) {
    out += f.raw;
    // A last field without line ending (message that is only a header) still needs one.
    if (!out.empty() && out.back() != '\n') out += "\r\n";
  }
  out += split.rest;
  return out;
}

size_t count_header_fields(std::string_view message, std::string_view name) {
  size_t n = 0;
  for (const auto& f : split_header(message).fields)
    if (iequals(f.name, name)) ++n;
  return n;
}

}  // namespace postern::core::smtp
