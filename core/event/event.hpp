#pragma once
// The event bus's data model: stages, verdicts, outcomes, and the per-session /
// per-transaction state that hooks read and edit (docs/event-bus.md).

#include <postern/abi/v1/postern_abi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::mail {
class Message;
}
namespace postern::core {
namespace mime = ::postern::mail;  // as core/mime/mime.hpp declares it
}

namespace postern::core::event {

/** Stages and observer events; values equal postern_stage_t. */
enum class Stage : uint32_t {
  Connect = POSTERN_STAGE_CONNECT,
  Helo = POSTERN_STAGE_HELO,
  Auth = POSTERN_STAGE_AUTH,
  MailFrom = POSTERN_STAGE_MAIL_FROM,
  RcptTo = POSTERN_STAGE_RCPT_TO,
  DataStart = POSTERN_STAGE_DATA_START,
  Headers = POSTERN_STAGE_HEADERS,
  DataEnd = POSTERN_STAGE_DATA_END,
  Queued = POSTERN_STAGE_QUEUED,
  Delivery = POSTERN_STAGE_DELIVERY,
  Disconnect = POSTERN_STAGE_DISCONNECT,
  Delivered = POSTERN_EVENT_DELIVERED,
  Deferred = POSTERN_EVENT_DEFERRED,
  Bounced = POSTERN_EVENT_BOUNCED,
  Stored = POSTERN_EVENT_STORED,
};
inline constexpr size_t kStageCount = POSTERN_STAGE_COUNT_V1_0;

/** "rcpt_to" etc.; the names used in descriptors and `posternctl plugins --order`. */
std::string_view stage_name(Stage stage);
std::optional<Stage> stage_from_name(std::string_view name);
/** Observer events: verdicts are ignored and they cannot be deferred. */
bool is_observer(Stage stage);

/** Values equal postern_verdict_t. */
enum class Verdict : uint32_t {
  Continue = POSTERN_VERDICT_CONTINUE,
  Accept = POSTERN_VERDICT_ACCEPT,
  Reject = POSTERN_VERDICT_REJECT,
  TempFail = POSTERN_VERDICT_TEMPFAIL,
  Discard = POSTERN_VERDICT_DISCARD,
  Quarantine = POSTERN_VERDICT_QUARANTINE,
  Pending = POSTERN_VERDICT_PENDING,
};
std::string_view verdict_name(Verdict verdict);

/** What to do when a hook fails, throws or times out (manifest `on-failure`). */
enum class OnFailure { Continue, TempFail };

/**
 * The result of running one stage. An empty reply means "the engine's default
 * reply for this verdict"; `decided_by` names the plugin, empty for Continue.
 */
struct Outcome {
  Verdict verdict = Verdict::Continue;
  uint16_t code = 0;
  std::string enhanced;
  std::string text;
  bool disconnect = false;
  std::string decided_by;
};

struct Symbol {
  std::string name;
  double weight = 0;
  std::string detail;
  std::string plugin;
};

struct HeaderEdit {
  enum class Kind { Add, Change, Remove };
  Kind kind = Kind::Add;
  std::string name;
  std::string value;
  int32_t index = 0;   // Change/Remove: which instance; Remove with -1: all
  bool prepend = true; // Add: at the top (like trace headers) or at the bottom
};

/**
 * A hook's change of the envelope sender (ABI 1.3 event_mail_from_set,
 * milter's CHGFROM): the new reverse-path and the MAIL parameters it named
 * (unset ones keep the transaction's). Validated by the host API.
 */
struct SenderChange {
  std::string address;                // without <>; "" is the null sender
  std::optional<std::string> envid;   // RFC 3461 ENVID, xtext as given
  std::optional<std::string> ret;     // "FULL" or "HDRS"
  std::optional<std::string> body;    // "7BIT" or "8BITMIME"
  bool smtputf8 = false;              // SMTPUTF8 named (it can only be turned on)
  std::string plugin;                 // who changed it, for the log
};

/** Facts about the connection, filled by the engine that owns it. */
struct SessionInfo {
  std::string session_id;
  std::string server_name;
  std::string listener;
  std::string peer_ip;
  uint16_t peer_port = 0;
  std::string local_ip;
  uint16_t local_port = 0;
  std::string helo;
  std::string auth_user;
  std::string tls_protocol;
  std::string tls_cipher;
  /** Symbols added where there is no transaction (connect, helo, auth); the
   *  score policy at data_end adds them to the transaction's. */
  std::vector<Symbol> symbols;
  double score = 0;
  /** Session tags (event_tag_set, ABI 1.1): shared by the plugins of the
   *  session from connect to disconnect; RSET keeps them. Touched only on the
   *  session's strand. */
  std::map<std::string, std::string, std::less<>> tags;
};

/** One mail transaction (MAIL ... end of data), reset by RSET. */
struct Transaction {
  std::string queue_id;
  std::optional<std::string> mail_from;          // without <>; "" is the null sender
  std::vector<std::string> recipients;           // accepted so far
  std::shared_ptr<const mime::Message> message;  // from the headers stage on
  std::vector<Symbol> symbols;
  double score = 0;
  std::vector<HeaderEdit> header_edits;
  std::vector<std::string> recipients_added;
  std::vector<std::string> recipients_removed;
  /** ABI 1.3 edits at data_end (last one wins), applied when the message is spooled. */
  std::optional<SenderChange> sender_change;
  std::optional<std::string> body_replacement;  // CRLF line ends, ends with CRLF (or empty)
  std::string body_replaced_by;                 // the plugin, for the log
  /** Set by the engine: SMTPUTF8 in effect (a new sender may be UTF-8) and the
   *  listener's max-message-size (0: none), which a replaced body must keep. */
  bool smtputf8 = false;
  uint64_t max_message_size = 0;

  void add_symbol(Symbol symbol) {
    score += symbol.weight;
    symbols.push_back(std::move(symbol));
  }
};

/**
 * What a hook sees: the session, the transaction, and the stage's own
 * arguments. Owned by the engine; lives at least until the stage completes.
 */
struct EventData {
  SessionInfo* session = nullptr;
  Transaction* transaction = nullptr;  // may be null (connect, helo, disconnect)
  std::string command;                 // the raw command line of this stage
  std::string current_rcpt;            // rcpt_to: the address being checked
  /** Plugins whose hooks this event skips: the skip list of an injected
   *  message (ABI 1.3 inject); "*" skips every plugin. */
  std::vector<std::string> skip_plugins;

  bool skips(std::string_view plugin) const {
    for (const std::string& s : skip_plugins) {
      if (s == "*" || s == plugin) return true;
    }
    return false;
  }
};

}  // namespace postern::core::event
