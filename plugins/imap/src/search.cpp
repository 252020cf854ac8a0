// SEARCH evaluation (RFC 3501 §6.4.4; see search.hpp for the design).
#include "search.hpp"

#include <postern/abi/v1/postern_abi.h>
#include <postern/mail/ascii.hpp>

#include <algorithm>
#include <optional>

namespace postern::imap {
namespace {

using mail::iequals;

int64_t day_of(int64_t epoch_seconds) {
  return epoch_seconds >= 0 ? epoch_seconds / 86400 : -((-epoch_seconds + 86399) / 86400);
}

// Evaluates one key tree against one message, loading, decoding and folding
// the message at most once whatever the number of string keys.
class Evaluator {
 public:
  explicit Evaluator(const SearchSubject& s) : s_(s) {}

  bool eval(const SearchKey& k) {
    using Op = SearchKey::Op;
    switch (k.op) {
      case Op::All: return true;
      case Op::Answered: return (s_.flags & POSTERN_FLAG_ANSWERED) != 0;
      case Op::Deleted: return (s_.flags & POSTERN_FLAG_DELETED) != 0;
      case Op::Draft: return (s_.flags & POSTERN_FLAG_DRAFT) != 0;
      case Op::Flagged: return (s_.flags & POSTERN_FLAG_FLAGGED) != 0;
      case Op::Seen: return (s_.flags & POSTERN_FLAG_SEEN) != 0;
      case Op::Unanswered: return (s_.flags & POSTERN_FLAG_ANSWERED) == 0;
      case Op::Undeleted: return (s_.flags & POSTERN_FLAG_DELETED) == 0;
      case Op::Undraft: return (s_.flags & POSTERN_FLAG_DRAFT) == 0;
      case Op::Unflagged: return (s_.flags & POSTERN_FLAG_FLAGGED) == 0;
      case Op::Unseen: return (s_.flags & POSTERN_FLAG_SEEN) == 0;
      case Op::Recent: return s_.recent;
      case Op::New: return s_.recent && (s_.flags & POSTERN_FLAG_SEEN) == 0;  // RECENT UNSEEN
      case Op::Old: return !s_.recent;
      case Op::Keyword: return has_keyword(k.text);
      case Op::Unkeyword: return !has_keyword(k.text);
      case Op::Bcc: return field_contains("bcc", k.text);
      case Op::Cc: return field_contains("cc", k.text);
      case Op::From: return field_contains("from", k.text);
      case Op::Subject: return field_contains("subject", k.text);
      case Op::To: return field_contains("to", k.text);
      case Op::Header: return field_contains(k.field, k.text);
      case Op::Body: return body_contains(k.text);
      case Op::Text: return header_contains(k.text) || body_contains(k.text);
      case Op::Before: return day_of(s_.internal_date) < day_of(k.date);
      case Op::On: return day_of(s_.internal_date) == day_of(k.date);
      case Op::Since: return day_of(s_.internal_date) >= day_of(k.date);
      case Op::SentBefore: return sent_day() < day_of(k.date);
      case Op::SentOn: return sent_day() == day_of(k.date);
      case Op::SentSince: return sent_day() >= day_of(k.date);
      case Op::Larger: return s_.size > k.number;
      case Op::Smaller: return s_.size < k.number;
      case Op::Uid: return k.set.contains(s_.uid, s_.max_uid);
      case Op::SequenceNumbers: return k.set.contains(s_.msn, s_.max_msn);
      case Op::ModSeq: return s_.modseq >= k.number;
      case Op::Not: return !k.children.empty() && !eval(k.children[0]);
      case Op::Or:
        return (!k.children.empty() && eval(k.children[0])) || (k.children.size() > 1 && eval(k.children[1]));
      case Op::And:
        for (const SearchKey& c : k.children) {
          if (!eval(c)) return false;
        }
        return true;
    }
    return false;
  }

 private:
  bool has_keyword(const std::string& kw) const {
    if (s_.keywords == nullptr) return false;
    return std::any_of(s_.keywords->begin(), s_.keywords->end(),
                       [&](const std::string& k) { return iequals(k, kw); });
  }

  const ParsedMessage* message() {
    if (!loaded_) {
      loaded_ = true;
      if (s_.load) message_ = s_.load();
    }
    return message_.get();
  }

  // RFC 3501: SENT* compare the Date: header's date, disregarding time and
  // timezone. Without a usable Date: the internal date stands in (as Cyrus does).
  int64_t sent_day() {
    if (!sent_day_) {
      std::optional<int64_t> d;
      if (const ParsedMessage* m = message()) {
        if (auto v = m->header("date")) d = parse_rfc5322_day(*v);
      }
      sent_day_ = day_of(d ? *d : s_.internal_date);
    }
    return *sent_day_;
  }

  bool field_contains(std::string_view name, const std::string& needle) {
    const ParsedMessage* m = message();
    if (m == nullptr) return false;
    std::string folded_needle = fold_case(needle);
    for (const mail::Header& f : m->headers(m->root())) {
      if (!iequals(f.name, name)) continue;
      if (folded_needle.empty()) return true;  // RFC 3501: HEADER name "" matches any message with the field
      if (fold_case(f.value).find(folded_needle) != std::string::npos) return true;
    }
    return false;
  }

  bool header_contains(const std::string& needle) {
    const ParsedMessage* m = message();
    if (m == nullptr) return false;
    if (!header_text_) {
      std::string text;
      append_header_text(text, m->headers(m->root()));
      append_mime_headers(text, *m, m->root());
      header_text_ = fold_case(text);
    }
    return header_text_->find(fold_case(needle)) != std::string::npos;
  }

  bool body_contains(const std::string& needle) {
    const ParsedMessage* m = message();
    if (m == nullptr) return false;
    if (!body_text_) {
      std::string text;
      append_body_text(text, *m, m->root());
      body_text_ = fold_case(text);
    }
    return body_text_->find(fold_case(needle)) != std::string::npos;
  }

  static void append_header_text(std::string& out, const std::vector<mail::Header>& headers) {
    for (const mail::Header& f : headers) {
      out.append(f.name);
      out += ": ";
      out += f.value;
      out += '\n';
    }
  }

  // The MIME headers of the parts below `p` (TEXT covers the whole message's text, RFC 3501 §6.4.4).
  static void append_mime_headers(std::string& out, const ParsedMessage& m, const MimePart& p) {
    for (const MimePart& c : p.children) {
      if (!p.is_message()) append_header_text(out, m.headers(c));  // a message's header is in BODY text
      append_mime_headers(out, m, c);
    }
  }

  // The searchable body: text parts decoded, and encapsulated messages'
  // headers and bodies (they are the body of the outer message).
  static void append_body_text(std::string& out, const ParsedMessage& m, const MimePart& p) {
    if (p.is_multipart()) {
      for (const MimePart& c : p.children) append_body_text(out, m, c);
    } else if (p.is_message() && !p.children.empty()) {
      append_header_text(out, m.headers(p.children[0]));
      append_body_text(out, m, p.children[0]);
    } else if (p.type == "text" || p.type == "message") {
      out += decoded_text(m, p);
      out += '\n';
    }
  }

  const SearchSubject& s_;
  bool loaded_ = false;
  std::shared_ptr<const ParsedMessage> message_;
  std::optional<int64_t> sent_day_;
  std::optional<std::string> header_text_, body_text_;
};

bool needs(const SearchKey& k) {
  using Op = SearchKey::Op;
  switch (k.op) {
    case Op::Bcc: case Op::Body: case Op::Cc: case Op::From: case Op::Subject: case Op::Text: case Op::To:
    case Op::Header: case Op::SentBefore: case Op::SentOn: case Op::SentSince:
      return true;
    default:
      return std::any_of(k.children.begin(), k.children.end(), needs);
  }
}

// Simple (1:1) case folding: ASCII, Latin-1, Latin Extended-A, Greek,
// Cyrillic, Armenian and full-width Latin, mapped to lower case.
uint32_t fold_code_point(uint32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if (c == 0x17F) return 's';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x131 || c == 0x138 || c == 0x149) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c == 0x3C2) return 0x3C3;  // final sigma
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF)) return (c % 2 == 0) ? c + 1 : c;
  if (c >= 0x531 && c <= 0x556) return c + 48;
  if (c >= 0x1E00 && c <= 0x1E95) return (c % 2 == 0) ? c + 1 : c;  // Latin Extended Additional
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  return c;
}


}  // namespace

std::string fold_case(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    // ASCII runs, the common case, in a tight loop.
    size_t run = i;
    while (run < s.size() && static_cast<unsigned char>(s[run]) < 0x80) ++run;
    if (run > i) {
      size_t at = out.size();
      out.append(s.substr(i, run - i));
      for (size_t k = at; k < out.size(); ++k) {
        if (out[k] >= 'A' && out[k] <= 'Z') out[k] = static_cast<char>(out[k] + 32);
      }
      i = run;
      continue;
    }
    auto b = static_cast<unsigned char>(s[i]);
    // A well-formed UTF-8 sequence is folded; any other octet is kept as is.
    size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    uint32_t cp = len == 2 ? (b & 0x1Fu) : len == 3 ? (b & 0x0Fu) : (b & 0x07u);
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3Fu);
    }
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))) {
      ok = false;  // overlong or out of range
    }
    if (!ok) {
      out.push_back(s[i]);
      ++i;
      continue;
    }
    append_utf8(out, fold_code_point(cp));
    i += len;
  }
  return out;
}

bool SequenceSet::contains(uint32_t n, uint32_t star_value) const {
  for (const auto& [lo_raw, hi_raw] : ranges) {
    uint32_t lo = lo_raw == UINT32_MAX ? star_value : lo_raw;
    uint32_t hi = hi_raw == UINT32_MAX ? star_value : hi_raw;
    if (lo > hi) std::swap(lo, hi);  // "5:*" with '*' = 3 is 3:5 (RFC 3501 §9 seq-range)
    if (n >= lo && n <= hi) return true;
  }
  return false;
}

bool needs_message(const SearchKey& key) { return needs(key); }

bool matches(const SearchKey& key, const SearchSubject& s) {
  Evaluator e(s);
  return e.eval(key);
}

}  // namespace postern::imap
