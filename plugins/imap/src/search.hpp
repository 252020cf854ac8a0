#pragma once
// SEARCH keys (RFC 3501 §6.4.4, RFC 7162 MODSEQ, RFC 4731-free): the tree the
// command parser builds and its evaluation against one message.
//
// CONTRACT between the protocol side (parser.cpp builds SearchKey; session.cpp
// calls matches()) and the message side (search.cpp evaluates). The message
// side owns this file; extend, do not change.
//
// DESIGN
// - matches() loads the message (SearchSubject::load) at most once per call
//   and only for keys that need it (see needs_message()); the decoded and
//   case-folded header and body texts are built once per call too.
// - String keys: substring match after decoding and simple case folding
//   (fold_case: ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic, Armenian,
//   full-width Latin; 1:1 mappings only, so "ß" does not match "ss").
//   Header fields: RFC 2047 words decoded. BODY: every text/* part with its
//   transfer encoding undone and charset converted, plus the header and body
//   of encapsulated messages; non-text parts are not searched. TEXT: the
//   top-level header, the MIME headers of all parts, then BODY. FROM/TO/CC/BCC/SUBJECT/HEADER: every field
//   of that name in the top-level header; HEADER name "" matches any message
//   that has the field.
// - Dates: BEFORE/ON/SINCE compare the UTC day of the internal date;
//   SENTBEFORE/SENTON/SENTSINCE the day written in the Date: field (its own
//   zone); a message without a parsable Date: uses its internal date.
// - '*' in a set is the caller's max_msn / max_uid; "5:*" with '*' = 3
//   means 3:5.

#include "message.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace postern::imap {

/** A sequence set ("1:3,7,9:*"); `*` is stored as UINT32_MAX and resolved by the caller. */
struct SequenceSet {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, lo <= hi after normalisation
  bool contains(uint32_t n, uint32_t star_value) const;
};

struct SearchKey {
  enum class Op {
    All, Answered, Deleted, Draft, Flagged, New, Old, Recent, Seen,
    Unanswered, Undeleted, Undraft, Unflagged, Unseen,
    Keyword, Unkeyword,           // text = keyword
    Bcc, Body, Cc, From, Subject, Text, To,  // text = string
    Header,                       // field + text
    Before, On, Since,            // date (internal date, day granularity)
    SentBefore, SentOn, SentSince,// date (Date: header)
    Larger, Smaller,              // number
    Uid,                          // set (UIDs)
    SequenceNumbers,              // set (message sequence numbers)
    ModSeq,                       // number (RFC 7162: modseq >= number)
    Not,                          // children[0]
    Or,                           // children[0], children[1]
    And,                          // children (a parenthesised list or the top level)
  };
  Op op = Op::All;
  std::string text;
  std::string field;
  int64_t date = 0;   // epoch seconds of 00:00 UTC of the day
  uint64_t number = 0;
  SequenceSet set;
  std::vector<SearchKey> children;
};

/** What a key is evaluated against. */
struct SearchSubject {
  uint32_t msn = 0;
  uint32_t uid = 0;
  uint32_t flags = 0;  // POSTERN_FLAG_* bits
  bool recent = false;
  const std::vector<std::string>* keywords = nullptr;
  int64_t internal_date = 0;
  uint64_t size = 0;
  uint64_t modseq = 0;
  uint32_t max_msn = 0;  // value of '*' for sequence numbers
  uint32_t max_uid = 0;  // value of '*' for UIDs
  /** Parsed on demand; only keys that need headers or text call it. */
  std::function<std::shared_ptr<const ParsedMessage>()> load;
};

/** Whether any key in the tree needs the message's octets (so the caller can skip loading). */
bool needs_message(const SearchKey& key);
/**
 * Evaluates `key`. String keys match case-insensitively as substrings after
 * decoding (RFC 2047 words in headers, quoted-printable/base64 bodies,
 * charsets converted to UTF-8 where known).
 */
bool matches(const SearchKey& key, const SearchSubject& s);

/** `s` (UTF-8; other octets kept) with simple case folding applied (see DESIGN). */
std::string fold_case(std::string_view s);

}  // namespace postern::imap
