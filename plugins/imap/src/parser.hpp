#pragma once
// The IMAP command side of the wire (RFC 3501 §9, RFC 7888 LITERAL+): framing
// of command lines with literals (CommandReader) and parsing one complete
// command into a Command (parse_command). Pure code: no I/O, no SDK.

#include "message.hpp"
#include "search.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace postern::imap {

/** Bounds on what one client may make the server hold or do (hostile input). */
struct Limits {
  size_t max_line = 65536;              // octets of command text (without literals) per command
  size_t max_literal = 65536;           // one literal outside APPEND
  size_t max_command_literals = 1 << 20;  // all literals of one command outside APPEND
  size_t append_limit = 50u << 20;      // one APPEND message
  size_t max_depth = 32;                // nesting of parentheses (SEARCH, lists)
  size_t max_ranges = 10000;            // ranges in one sequence set
  size_t max_search_keys = 1000;        // keys in one SEARCH
};

/**
 * Splits the input into complete commands (the line and every literal it
 * announces). Synchronizing literals need a "+" continuation, which the
 * caller sends when next() says so; over-long lines and literals become
 * errors with the input skipped, so memory stays bounded by the limits.
 */
class CommandReader {
 public:
  struct Output {
    enum class Kind {
      NeedMore,      // nothing complete yet: feed more input
      Command,       // `data` is a complete command (literals inline, "{n}\r\n" kept)
      Continuation,  // send "+ ..." now (a synchronizing literal is announced)
      Error,         // send `data` (a complete response line); the command was dropped
      Line,          // line mode: `data` is one line without CRLF
    };
    Kind kind = Kind::NeedMore;
    std::string data;
  };

  explicit CommandReader(Limits limits = {}) : limits_(limits) {}

  void feed(std::string_view data) { in_.append(data); }
  /** The next thing the caller must act on. */
  Output next();
  /** Line mode: the next line is returned raw (AUTHENTICATE responses, IDLE's DONE). */
  void set_line_mode(bool on) { line_mode_ = on; }
  /** Drops every octet received so far (STARTTLS: no command injection). */
  void clear();
  /** Octets buffered and not yet consumed. */
  size_t buffered() const { return in_.size() - pos_; }
  const Limits& limits() const { return limits_; }

 private:
  enum class State { Line, Literal, DiscardLiteral, SkipLine };
  void compact();
  std::string tag_of_current() const;
  bool is_append() const;

  Limits limits_;
  std::string in_;
  size_t pos_ = 0;
  std::string cmd_;
  size_t text_size_ = 0;      // command text octets so far
  size_t literal_total_ = 0;  // literal octets so far
  size_t remaining_ = 0;      // literal octets still to come
  State state_ = State::Line;
  bool line_mode_ = false;
};

/** One FETCH data item (RFC 3501 §6.4.5, RFC 7162 MODSEQ). */
struct FetchItem {
  enum class Kind {
    Flags, Uid, Rfc822Size, InternalDate, Envelope, Body, BodyStructure,
    BodySection, Rfc822, Rfc822Header, Rfc822Text, ModSeq,
  };
  Kind kind = Kind::Flags;
  bool peek = false;
  Section section;
  std::string section_spec;  // the text between [ ] as echoed in the response
  std::optional<std::pair<uint32_t, uint32_t>> partial;  // <origin.count>
};

/** A parsed command. Which members are set depends on `name`. */
struct Command {
  std::string tag;
  std::string name;  // upper case ("FETCH"); UID commands have uid = true
  bool uid = false;

  std::string mailbox;   // decoded UTF-8 store name (SELECT, CREATE, COPY target, ...)
  std::string mailbox2;  // RENAME target
  std::string arg1, arg2;  // LOGIN user/password; LIST/LSUB reference/pattern; AUTHENTICATE mechanism
  std::optional<std::string> initial_response;  // AUTHENTICATE (RFC 4959 SASL-IR)

  SequenceSet set;
  std::vector<FetchItem> fetch;
  std::optional<uint64_t> changed_since;  // FETCH (CHANGEDSINCE n)
  bool condstore = false;                 // SELECT/EXAMINE (CONDSTORE), or a CONDSTORE item used

  int store_op = 0;  // postern_flag_op_t
  bool silent = false;
  uint32_t flags = 0;  // POSTERN_FLAG_*
  std::vector<std::string> keywords;
  bool has_flag_list = false;              // APPEND
  std::optional<uint64_t> unchanged_since; // STORE (UNCHANGEDSINCE n)

  std::optional<std::string> date_time;  // APPEND date-time (unparsed)
  size_t message_offset = 0;             // APPEND literal within `buffer`
  size_t message_size = 0;

  SearchKey search;
  bool search_modseq = false;  // a MODSEQ key is used (reply carries "(MODSEQ n)")

  std::vector<std::string> items;  // STATUS items, ENABLE capabilities (upper case)
  std::string special_use;         // CREATE (USE (\Sent))
  std::vector<std::pair<std::string, std::optional<std::string>>> id_params;  // ID

  std::string buffer;  // the raw command (APPEND keeps its message here)
  std::string_view message() const { return std::string_view(buffer).substr(message_offset, message_size); }
};

/** Why a command could not be parsed: BAD (syntax) or NO (a well-formed but unacceptable argument). */
struct ParseError {
  std::string tag;  // "*" when the tag itself is unreadable
  bool bad = true;
  std::string text;
};

/** Parses one complete command from CommandReader (the buffer is moved into Command::buffer). */
std::variant<Command, ParseError> parse_command(std::string buffer, const Limits& limits = {});

/**
 * Checks and converts a client's mailbox name (modified UTF-7) to the
 * store's UTF-8 form. "INBOX" in any case becomes "INBOX".
 * @return the name, or the reason it is refused.
 */
std::variant<std::string, std::string> decode_mailbox_name(std::string_view wire);

/** Days-since-epoch date parse of "d-Mon-yyyy" (SEARCH dates) to 00:00 UTC. */
std::optional<int64_t> parse_date_text(std::string_view text);

}  // namespace postern::imap
