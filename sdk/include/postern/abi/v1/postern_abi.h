/*
 * postern_abi.h — the only binary contract between posternd and a plugin.
 *
 * Pure C, fixed-width integers, opaque handles, {ptr,len} buffers and tables of
 * function pointers that begin with `struct_size`. See docs/abi-policy.md.
 *
 * Naming (after Envoy's dynamic-module ABI):
 *   - `on_*`        implemented by the plugin, called by the host;
 *   - host API      members of `postern_host_api_v1_t`, implemented by the host;
 *   - `_host_ptr`   memory owned by the host; the plugin only borrows it;
 *   - `_plugin_ptr` memory owned by the plugin; the host only borrows it.
 *
 * Every item states OWNERSHIP, LIFETIME and THREADING.
 *
 * Versioning: a minor version only appends (new enum values at the end, new
 * members at the end of a table, new functions). A reader checks `struct_size`
 * before touching a member that a later minor version added. A major version
 * gets a new header directory (abi/v2) and a new entry symbol.
 */
#ifndef POSTERN_ABI_V1_POSTERN_ABI_H
#define POSTERN_ABI_V1_POSTERN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define POSTERN_ABI_VERSION_MAJOR 1
#define POSTERN_ABI_VERSION_MINOR 3

/* The symbol every plugin exports (with default visibility; all else hidden). */
#define POSTERN_PLUGIN_ENTRY_SYMBOL "postern_plugin_entry_v1"

#if defined(__GNUC__)
#define POSTERN_ABI_EXPORT __attribute__((visibility("default")))
#else
#define POSTERN_ABI_EXPORT
#endif

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * A borrowed UTF-8 (or raw octet) string; not NUL-terminated.
 * OWNERSHIP: whoever produced it; the receiver never frees it.
 * LIFETIME: as stated by the function that yields or accepts it. A string
 *   passed *into* a host function is copied before that function returns.
 * THREADING: immutable while borrowed.
 */
typedef struct postern_str {
  const char* ptr;
  size_t len;
} postern_str_t;

/** A borrowed octet buffer; same rules as postern_str_t. */
typedef struct postern_bytes {
  const uint8_t* ptr;
  size_t len;
} postern_bytes_t;

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

/**
 * One loaded plugin instance as the host sees it.
 * OWNERSHIP: host. LIFETIME: from on_init until on_destroy returns.
 * THREADING: may be passed to any host API function from any thread unless
 *   that function says otherwise.
 */
typedef struct postern_host postern_host_t;

/**
 * The event a hook is called for: one SMTP session, its current transaction
 * and, from `headers` on, the message.
 * OWNERSHIP: host. LIFETIME: only during the on_hook call that received it.
 *   To keep working after on_hook returns, take a postern_pending_t.
 * THREADING: only on the thread that called on_hook.
 */
typedef struct postern_event postern_event_t;

/**
 * A deferred hook result (the hook returned POSTERN_VERDICT_PENDING).
 * OWNERSHIP: the plugin holds one reference from event_defer() and must drop
 *   it with pending_release(); pending_retain() adds references.
 * LIFETIME: until the last reference is released; the session it belongs to
 *   may be gone long before that: completion is then ignored and counted.
 * THREADING: every pending_* function is safe from any thread.
 */
typedef struct postern_pending postern_pending_t;

/**
 * An element of the plugin's configuration in the manifest.
 * OWNERSHIP: host. LIFETIME: from on_init until on_destroy returns.
 * THREADING: read-only; any thread.
 */
typedef struct postern_config_node postern_config_node_t;

/**
 * A parsed message (raw octets, headers, MIME tree).
 * OWNERSHIP: host. LIFETIME: that of the event it was taken from.
 * THREADING: only on the thread that called on_hook.
 */
typedef struct postern_message postern_message_t;

/**
 * One client connection of a service listener (ABI 1.2). The host owns the
 * socket and TLS; the plugin reads plaintext through on_data and writes with
 * stream_write.
 * OWNERSHIP: host. LIFETIME: borrowed from on_open until on_close returns;
 *   stream_retain() keeps the handle valid longer (until stream_release), and
 *   on a closed stream every call is refused with POSTERN_ERR_UNAVAILABLE.
 * THREADING: stated per function; the service callbacks of one stream never
 *   overlap (they run on the stream's strand).
 */
typedef struct postern_stream postern_stream_t;

/**
 * One account's mailbox store (ABI 1.2): folders and messages.
 * OWNERSHIP: the plugin, from mbox_open until mbox_release.
 * THREADING: any thread; every mbox_* call blocks (file and SQLite I/O), so
 *   call it from post_work, never from a stream callback or on_hook.
 */
typedef struct postern_mailbox postern_mailbox_t;

/**
 * One session's view of one folder (IMAP's selected mailbox, POP3's maildrop):
 * a snapshot with message sequence numbers that changes only on view_refresh.
 * OWNERSHIP: the plugin, from mbox_open_folder until view_release (which may
 *   come after mbox_release: the view keeps the account open).
 * THREADING: one thread at a time; blocking like mbox_*.
 */
typedef struct postern_folder_view postern_folder_view_t;

/* ------------------------------------------------------------------------ */
/* Enumerations (append-only)                                                */
/* ------------------------------------------------------------------------ */

/** Stages of a session and observer events. Values are stable. */
typedef enum postern_stage {
  POSTERN_STAGE_CONNECT = 0,
  POSTERN_STAGE_HELO = 1,
  POSTERN_STAGE_AUTH = 2,
  POSTERN_STAGE_MAIL_FROM = 3,
  POSTERN_STAGE_RCPT_TO = 4,
  POSTERN_STAGE_DATA_START = 5,
  POSTERN_STAGE_HEADERS = 6,
  POSTERN_STAGE_DATA_END = 7,
  POSTERN_STAGE_QUEUED = 8,
  POSTERN_STAGE_DELIVERY = 9,
  POSTERN_STAGE_DISCONNECT = 10,
  /* Observer events: the verdict is ignored; they never change a message. */
  POSTERN_EVENT_DELIVERED = 11,
  POSTERN_EVENT_DEFERRED = 12,
  POSTERN_EVENT_BOUNCED = 13,
  POSTERN_EVENT_STORED = 14,
  POSTERN_STAGE_COUNT_V1_0 = 15
} postern_stage_t;

/** What a hook decides. The first verdict other than CONTINUE ends the stage. */
typedef enum postern_verdict {
  POSTERN_VERDICT_CONTINUE = 0,   /* no opinion; next hook */
  POSTERN_VERDICT_ACCEPT = 1,     /* accept now; skip the rest of this stage */
  POSTERN_VERDICT_REJECT = 2,     /* permanent failure, 5xx */
  POSTERN_VERDICT_TEMPFAIL = 3,   /* temporary failure, 4xx */
  POSTERN_VERDICT_DISCARD = 4,    /* accept (250) and drop silently */
  POSTERN_VERDICT_QUARANTINE = 5, /* accept and put into quarantine (data_end) */
  POSTERN_VERDICT_PENDING = 6     /* the result comes later via pending_complete */
} postern_verdict_t;

/** Result codes of host API calls and of on_init. */
typedef enum postern_status {
  POSTERN_OK = 0,
  POSTERN_ERR_INVALID = 1,     /* bad argument */
  POSTERN_ERR_NOT_FOUND = 2,   /* no such item */
  POSTERN_ERR_UNAVAILABLE = 3, /* not at this stage / not supported by host */
  POSTERN_ERR_FAILED = 4,      /* anything else; see the log */
  /* ABI 1.2 (mailbox store) */
  POSTERN_ERR_EXISTS = 5,       /* a folder of that name exists */
  POSTERN_ERR_FORBIDDEN = 6,    /* not allowed (e.g. deleting INBOX) */
  POSTERN_ERR_OVER_QUOTA = 7,   /* the account's quota would be exceeded */
  POSTERN_ERR_STALE = 8,        /* the folder was deleted or re-created (UIDVALIDITY changed) */
  POSTERN_ERR_HAS_CHILDREN = 9, /* delete of a folder that has child folders */
  POSTERN_ERR_TEMPORARY = 10    /* disk or database error: retry later */
} postern_status_t;

typedef enum postern_log_level {
  POSTERN_LOG_TRACE = 0,
  POSTERN_LOG_DEBUG = 1,
  POSTERN_LOG_INFO = 2,
  POSTERN_LOG_WARN = 3,
  POSTERN_LOG_ERROR = 4
} postern_log_level_t;

/** Properties of an event readable with event_get(). Append-only. */
typedef enum postern_property {
  POSTERN_PROP_SESSION_ID = 0,   /* unique id of the SMTP session */
  POSTERN_PROP_QUEUE_ID = 1,     /* id of the current transaction's message */
  POSTERN_PROP_PEER_IP = 2,      /* "192.0.2.7" or "2001:db8::7" */
  POSTERN_PROP_PEER_PORT = 3,    /* decimal */
  POSTERN_PROP_LOCAL_IP = 4,
  POSTERN_PROP_LOCAL_PORT = 5,
  POSTERN_PROP_LISTENER = 6,     /* the manifest's listener name */
  POSTERN_PROP_HELO = 7,         /* argument of EHLO/HELO */
  POSTERN_PROP_AUTH_USER = 8,    /* authenticated login, empty if none */
  POSTERN_PROP_MAIL_FROM = 9,    /* reverse-path without <>, empty for null */
  POSTERN_PROP_RCPT = 10,        /* the recipient being checked (rcpt_to) */
  POSTERN_PROP_TLS_PROTOCOL = 11,/* "TLSv1.3", empty without TLS */
  POSTERN_PROP_TLS_CIPHER = 12,
  POSTERN_PROP_SERVER_NAME = 13, /* this host's name from the manifest */
  POSTERN_PROP_COMMAND = 14,     /* the raw command line of this stage */
  POSTERN_PROP_COUNT_V1_0 = 15
} postern_property_t;

/** DNS record types for dns_query (IANA values). */
typedef enum postern_dns_type {
  POSTERN_DNS_A = 1,
  POSTERN_DNS_NS = 2,
  POSTERN_DNS_CNAME = 5,
  POSTERN_DNS_SOA = 6,
  POSTERN_DNS_PTR = 12,
  POSTERN_DNS_MX = 15,
  POSTERN_DNS_TXT = 16,
  POSTERN_DNS_AAAA = 28,
  POSTERN_DNS_SRV = 33,
  POSTERN_DNS_TLSA = 52
} postern_dns_type_t;

/** Outcome of a DNS query. */
typedef enum postern_dns_status {
  POSTERN_DNS_OK = 0,        /* at least one record of the type */
  POSTERN_DNS_NODATA = 1,    /* name exists, no record of the type */
  POSTERN_DNS_NXDOMAIN = 2,  /* name does not exist */
  POSTERN_DNS_TIMEOUT = 3,
  POSTERN_DNS_SERVFAIL = 4,  /* any other failure */
  POSTERN_DNS_CANCELLED = 5  /* host shutting down */
} postern_dns_status_t;

/** Properties of a stream readable with stream_get() (ABI 1.2). Append-only. */
typedef enum postern_stream_prop {
  POSTERN_STREAM_SESSION_ID = 0,   /* unique id of the connection (for logs) */
  POSTERN_STREAM_PEER_IP = 1,      /* "192.0.2.7" or "2001:db8::7" */
  POSTERN_STREAM_PEER_PORT = 2,    /* decimal */
  POSTERN_STREAM_LOCAL_IP = 3,
  POSTERN_STREAM_LOCAL_PORT = 4,
  POSTERN_STREAM_LISTENER = 5,     /* the manifest's listener name */
  POSTERN_STREAM_PROTOCOL = 6,     /* the listener's protocol ("imap", "pop3") */
  POSTERN_STREAM_TLS_MODE = 7,     /* listener: "none", "starttls" or "implicit" */
  POSTERN_STREAM_TLS_PROTOCOL = 8, /* "TLSv1.3" once TLS is up, else empty */
  POSTERN_STREAM_TLS_CIPHER = 9,
  POSTERN_STREAM_SERVER_NAME = 10, /* this host's name from the manifest */
  POSTERN_STREAM_CLEARTEXT_AUTH = 11 /* "1" when the listener allows passwords before TLS, else "0" */
} postern_stream_prop_t;

/** Why a stream ended (on_close). */
typedef enum postern_close_reason {
  POSTERN_CLOSE_PEER = 0,       /* the client closed the connection */
  POSTERN_CLOSE_ERROR = 1,      /* a read or write failed */
  POSTERN_CLOSE_TIMEOUT = 2,    /* no input within the idle timeout */
  POSTERN_CLOSE_PLUGIN = 3,     /* the plugin called stream_close */
  POSTERN_CLOSE_SHUTDOWN = 4,   /* posternd is stopping */
  POSTERN_CLOSE_TLS_FAILED = 5  /* the TLS handshake failed */
} postern_close_reason_t;

/** Services an account may be allowed (dir_authenticate). */
#define POSTERN_SERVICE_SMTP 0x1u
#define POSTERN_SERVICE_IMAP 0x2u
#define POSTERN_SERVICE_POP3 0x4u

/** System flags of a stored message (RFC 9051 §2.3.2); \Recent is per session, not stored. */
#define POSTERN_FLAG_SEEN 0x1u
#define POSTERN_FLAG_ANSWERED 0x2u
#define POSTERN_FLAG_FLAGGED 0x4u
#define POSTERN_FLAG_DELETED 0x8u
#define POSTERN_FLAG_DRAFT 0x10u

/** How mbox_store_flags combines flags (STORE FLAGS / +FLAGS / -FLAGS). */
typedef enum postern_flag_op {
  POSTERN_FLAGS_REPLACE = 0,
  POSTERN_FLAGS_ADD = 1,
  POSTERN_FLAGS_REMOVE = 2
} postern_flag_op_t;

/** Which messages mbox_expunge removes. */
typedef enum postern_expunge_mode {
  POSTERN_EXPUNGE_LISTED = 0,          /* exactly the listed UIDs (POP3 DELE at QUIT) */
  POSTERN_EXPUNGE_LISTED_DELETED = 1,  /* the listed UIDs that have \Deleted (UID EXPUNGE) */
  POSTERN_EXPUNGE_ALL_DELETED = 2      /* every message with \Deleted (EXPUNGE, CLOSE); uids ignored */
} postern_expunge_mode_t;

/** Bits of postern_mresult_t.flags. */
#define POSTERN_MRESULT_GONE 0x1u                /* view_refresh: the folder was deleted or re-created */
#define POSTERN_MRESULT_EXPUNGED_INCOMPLETE 0x2u /* changes_since: expunge records were pruned */

/** Flags of a hook result. */
#define POSTERN_RESULT_DISCONNECT 0x1u /* close the session after the reply */
#define POSTERN_RESULT_ERROR 0x2u      /* the hook failed; the host applies on-failure */

/**
 * Session tag (event_tag_set, ABI 1.1) that marks a trusted source: a
 * connection filter sets it to "1" for a whitelisted client, and filters
 * such as greylist skip the session.
 */
#define POSTERN_TAG_WHITELISTED "postern.whitelisted"

/* ------------------------------------------------------------------------ */
/* Structures                                                                */
/* ------------------------------------------------------------------------ */

/**
 * A hook's answer. The host zero-fills it and sets struct_size before on_hook;
 * the plugin fills what it needs. Unset code/enhanced/text means the host's
 * default reply for the verdict.
 * OWNERSHIP: the struct is the host's; the strings in it are the plugin's and
 *   are copied by the host right after on_hook returns (pending_complete:
 *   before it returns).
 * LIFETIME: the strings must stay valid until the host's next call into the
 *   plugin on the same thread (a thread-local buffer in the plugin is enough).
 * THREADING: the thread of on_hook, or any thread for pending_complete().
 */
typedef struct postern_hook_result {
  uint32_t struct_size;
  uint32_t flags;          /* POSTERN_RESULT_* */
  uint32_t verdict;        /* postern_verdict_t */
  uint32_t smtp_code;      /* 0 = default; else 2xx..5xx matching the verdict */
  postern_str_t enhanced;  /* RFC 3463 status, e.g. "5.7.1"; empty = default */
  postern_str_t text;      /* reply text without code; empty = default */
} postern_hook_result_t;

/** One DNS resource record rendered as text. OWNERSHIP: host; LIFETIME: the callback. */
typedef struct postern_dns_record {
  uint32_t type;           /* postern_dns_type_t */
  uint32_t ttl;            /* seconds */
  /* A/AAAA: address; MX: "pref exchange"; TXT: strings concatenated;
   * PTR/CNAME/NS: name; SRV: "prio weight port target"; SOA: master-file form;
   * TLSA: "usage selector mtype hex". Names have no trailing dot. */
  postern_str_t data;
} postern_dns_record_t;

/** A DNS answer. OWNERSHIP: host; LIFETIME: only during the callback. */
typedef struct postern_dns_answer {
  uint32_t struct_size;
  uint32_t status;         /* postern_dns_status_t */
  postern_str_t name;      /* the name queried */
  uint32_t type;           /* the type queried */
  uint32_t min_ttl;        /* smallest TTL of the records or of the SOA on a negative answer */
  const postern_dns_record_t* records;
  size_t record_count;
} postern_dns_answer_t;

/**
 * One MIME part in the flattened tree (depth-first, part 0 is the message).
 * OWNERSHIP: host. LIFETIME: that of the message.
 */
typedef struct postern_mime_part {
  uint32_t struct_size;
  int32_t parent;              /* index of the parent part, -1 for the root */
  uint32_t depth;              /* 0 for the root */
  postern_str_t content_type;  /* "text/plain", lower case */
  postern_str_t charset;       /* lower case, may be empty */
  postern_str_t filename;      /* decoded (RFC 2231 / 2047), may be empty */
  postern_str_t disposition;   /* "inline" / "attachment" / empty */
  postern_str_t transfer_encoding; /* lower case, may be empty */
  postern_str_t section;       /* IMAP section number "1.2", empty for the root */
  uint64_t raw_offset;         /* of the part's headers in the raw message */
  uint64_t raw_length;         /* octets of headers + body */
} postern_mime_part_t;

/**
 * The callbacks of a service (ABI 1.2), registered with service_register.
 * OWNERSHIP: the plugin's, static storage (or alive until on_destroy).
 * THREADING: the calls for one stream run on its strand, one at a time; calls
 *   for different streams may run on different threads at once.
 */
typedef struct postern_service_v1 {
  uint32_t struct_size;
  /**
   * A client connected (after the TLS handshake on an implicit-TLS listener).
   * @return the plugin's connection state, passed back to every later call;
   *   NULL refuses the connection (the host closes it; on_close is not called).
   */
  void* (*on_open)(void* service_user_plugin_ptr, postern_stream_t* stream);
  /**
   * Plaintext input. OWNERSHIP: host; LIFETIME: the call. Never called while
   * the stream is paused, after stream_starttls until on_tls, or after close.
   */
  void (*on_data)(void* conn, postern_bytes_t data);
  /**
   * The TLS handshake that stream_starttls began succeeded; input read
   * before it was discarded (RFC 3207 §4.2 / RFC 2595 §3.1: no command
   * injection). A failed handshake ends the stream instead (on_close with
   * POSTERN_CLOSE_TLS_FAILED).
   */
  void (*on_tls)(void* conn);
  /** Everything written so far went out (once per stream_want_drain). */
  void (*on_drain)(void* conn);
  /**
   * The stream ended; the last call for it. Output not yet sent is dropped
   * unless the plugin closed the stream itself (then it was flushed first).
   */
  void (*on_close)(void* conn, postern_close_reason_t reason);
} postern_service_v1_t;

/** An account as dir_authenticate / dir_account report it. OWNERSHIP: host. */
typedef struct postern_account_info {
  uint32_t struct_size;
  postern_str_t address;    /* canonical local@domain */
  postern_str_t real_name;
  uint64_t quota_bytes;     /* 0 = unlimited */
  uint32_t services;        /* POSTERN_SERVICE_* the account may use */
  uint32_t enabled;         /* 0 when the account is disabled */
} postern_account_info_t;

/** One folder (LIST, STATUS). OWNERSHIP: host; LIFETIME: that of the result holding it. */
typedef struct postern_folder_info {
  postern_str_t name;         /* UTF-8, '/' between levels; "INBOX" */
  postern_str_t special_use;  /* "\\Sent", ... or empty (RFC 6154) */
  uint32_t subscribed;
  uint32_t has_children;
  uint32_t uidvalidity;
  uint32_t uidnext;
  uint64_t highest_modseq;
  uint32_t messages;
  uint32_t unseen;            /* messages without \Seen */
  uint32_t deleted;           /* messages with \Deleted */
  uint64_t size;              /* octets of all messages */
} postern_folder_info_t;

/** One message as the index knows it. OWNERSHIP: host; LIFETIME: that of the result. */
typedef struct postern_message_info {
  uint32_t uid;
  uint32_t flags;               /* POSTERN_FLAG_* */
  uint64_t modseq;              /* RFC 7162 */
  int64_t internal_date;        /* seconds since the epoch, UTC */
  int64_t saved_date;           /* when it entered the folder */
  uint64_t size;                /* octets as stored (CRLF) */
  const postern_str_t* keywords;
  size_t keyword_count;
} postern_message_info_t;

/**
 * The answer of a mailbox call; which members are filled is stated by each
 * call (the others are empty/zero).
 * OWNERSHIP: host; the plugin frees it with mresult_free.
 * LIFETIME: until mresult_free. THREADING: any thread (immutable).
 */
typedef struct postern_mresult {
  uint32_t struct_size;
  uint32_t flags;                          /* POSTERN_MRESULT_* */
  const postern_folder_info_t* folders;
  size_t folder_count;
  const postern_message_info_t* messages;  /* new/changed/stored messages, ascending UID */
  size_t message_count;
  const postern_message_info_t* changed;   /* view_refresh: changed messages */
  size_t changed_count;
  const uint32_t* uids;                    /* expunged / removed / MODIFIED UIDs, ascending */
  size_t uid_count;
  const uint32_t* uid_pairs;               /* (source UID, new UID) interleaved: COPYUID */
  size_t uid_pair_count;                   /* number of pairs */
  postern_bytes_t bytes;                   /* message octets (mbox_read_message) */
  uint32_t uidvalidity;
  uint32_t uidnext;
  uint64_t highest_modseq;
  uint32_t uid;                            /* APPENDUID */
} postern_mresult_t;

/* --- added in ABI 1.3: pending edits and mailbox events (types) --------- */

/** What happened in a mailbox store (postern_mbox_event_t.kind). Append-only. */
typedef enum postern_mbox_event_kind {
  POSTERN_MBOX_EVENT_STORED = 0,   /* a new message in a folder (delivery, APPEND) */
  POSTERN_MBOX_EVENT_COPIED = 1,   /* messages copied from `folder` into `target_folder` */
  POSTERN_MBOX_EVENT_MOVED = 2,    /* messages moved from `folder` into `target_folder` */
  POSTERN_MBOX_EVENT_EXPUNGED = 3, /* messages removed from `folder` */
  POSTERN_MBOX_EVENT_FLAGS = 4     /* flags or keywords of messages in `folder` changed */
} postern_mbox_event_kind_t;

/** Mask bits for mbox_events_subscribe: 1u << kind. */
#define POSTERN_MBOX_MASK_STORED (1u << POSTERN_MBOX_EVENT_STORED)
#define POSTERN_MBOX_MASK_COPIED (1u << POSTERN_MBOX_EVENT_COPIED)
#define POSTERN_MBOX_MASK_MOVED (1u << POSTERN_MBOX_EVENT_MOVED)
#define POSTERN_MBOX_MASK_EXPUNGED (1u << POSTERN_MBOX_EVENT_EXPUNGED)
#define POSTERN_MBOX_MASK_FLAGS (1u << POSTERN_MBOX_EVENT_FLAGS)
#define POSTERN_MBOX_MASK_ALL 0x1Fu

/**
 * One change in a mailbox store, raised after it is committed (ABI 1.3).
 * OWNERSHIP: host. LIFETIME: only during the callback; copy what you keep.
 * THREADING: immutable; read it on the callback's thread.
 */
typedef struct postern_mbox_event {
  uint32_t struct_size;
  uint32_t kind;                /* postern_mbox_event_kind_t */
  postern_str_t account;        /* canonical local@domain */
  postern_str_t folder;         /* the folder (copied/moved: the source), UTF-8, '/' between levels */
  postern_str_t target_folder;  /* copied/moved: the target; else empty */
  /**
   * Who acted: "delivery" (the queue's local delivery: mail received by
   * SMTP/LMTP or injected), "imap", "pop3" (the acting service plugin's
   * name; any other plugin is named likewise), "admin" (a control command),
   * "system" (retention).
   */
  postern_str_t actor;
  uint32_t uidvalidity;         /* of `folder` */
  uint32_t target_uidvalidity;  /* copied/moved: of `target_folder`; else 0 */
  /**
   * stored: the new UID; copied/moved: the source UIDs; expunged: the UIDs
   * removed; flags: the UIDs whose flags or keywords changed. Ascending.
   */
  const uint32_t* uids;
  size_t uid_count;
  /** copied/moved: the new UID of each of `uids` (same order); else NULL. */
  const uint32_t* target_uids;
  uint64_t size;                /* stored: octets of the message; copied/moved: of all; else 0 */
} postern_mbox_event_t;

/** Callback of mbox_events_subscribe. THREADING: a worker thread (see there). */
typedef void (*postern_mbox_event_cb)(void* user_plugin_ptr, const postern_mbox_event_t* event);

/** Callback types. THREADING: stated at the host function that takes them. */
typedef void (*postern_dns_cb)(void* user_plugin_ptr, const postern_dns_answer_t* answer);
typedef void (*postern_task_cb)(void* user_plugin_ptr);
/** `fired` is 1 when the delay passed, 0 when cancelled or unloaded first. */
typedef void (*postern_timer_cb)(void* user_plugin_ptr, uint32_t fired);

/* --- added in ABI 1.3: admin commands (types) ------------------------------ */

/**
 * Exit classes of an admin command (command_complete). The values are
 * posternctl's exit codes. Passed as uint32_t, never as an enum.
 */
#define POSTERN_COMMAND_OK 0u
#define POSTERN_COMMAND_FAIL 1u      /* the operation failed; `text` says why */
#define POSTERN_COMMAND_USAGE 2u     /* bad arguments */
#define POSTERN_COMMAND_NOT_FOUND 3u /* no such item */
#define POSTERN_COMMAND_EXISTS 4u    /* the item exists already */

/** Argument types (postern_command_arg_t.type). */
#define POSTERN_ARG_STRING 0u
#define POSTERN_ARG_INTEGER 1u     /* int64 */
#define POSTERN_ARG_BOOLEAN 2u     /* a flag on the command line */
#define POSTERN_ARG_STRING_LIST 3u

/** Argument flags (postern_command_arg_t.flags). */
#define POSTERN_ARG_REQUIRED 0x1u
/** Given on the command line without --name, in declaration order; a positional STRING_LIST takes the rest (last). */
#define POSTERN_ARG_POSITIONAL 0x2u

/**
 * One running admin command's answer channel (ABI 1.3).
 * OWNERSHIP: the plugin holds it from the command callback until it calls
 *   command_complete, which consumes it (exactly once; the handle is invalid
 *   afterwards, whatever command_complete returned).
 * LIFETIME: independent of the client: when the client went away or the
 *   host's command timeout passed, command_complete still consumes the handle
 *   (the answer is dropped). A plugin completes every handle it
 *   holds before its on_destroy returns (the SDK's CommandReply does it).
 * THREADING: command_complete may be called from any thread.
 */
typedef struct postern_command_reply postern_command_reply_t;

/**
 * One declared argument. `struct_size` is sizeof(postern_command_arg_t) of
 * the plugin's header, the same for every element: the host steps through
 * `args` by args[0].struct_size and reads only the members it covers, so
 * the struct can grow in a later minor version.
 * OWNERSHIP: the plugin's; the host copies it in command_register.
 * THREADING: n/a.
 */
typedef struct postern_command_arg {
  uint32_t struct_size;
  uint32_t type;              /* POSTERN_ARG_* type */
  uint32_t flags;             /* POSTERN_ARG_REQUIRED | POSTERN_ARG_POSITIONAL */
  postern_str_t name;         /* 1-64 of [a-z0-9_-]; on the command line --name */
  postern_str_t description;  /* one line, for help and the web admin */
} postern_command_arg_t;

/**
 * A command `<area> <verb>` as a plugin registers it. OWNERSHIP: the
 * plugin's; copied by command_register. THREADING: n/a.
 */
typedef struct postern_command_spec {
  uint32_t struct_size;
  postern_str_t area;         /* 1-64 of [a-z0-9_-], e.g. "greylist"; a core area is refused */
  postern_str_t verb;         /* same rules, e.g. "allow" */
  postern_str_t summary;      /* one line */
  const postern_command_arg_t* args;
  size_t arg_count;
} postern_command_spec_t;

/**
 * One argument value of a call, validated by the host against the spec:
 * the callback gets one value per declared argument, in declaration order,
 * as an array of pointers, so the struct can grow in a later minor version:
 * read a member only when `struct_size` covers it (the SDK does it).
 * OWNERSHIP: host. LIFETIME: only during the command callback; copy what
 *   you keep. THREADING: the callback's thread.
 */
typedef struct postern_command_value {
  uint32_t struct_size;
  postern_str_t name;
  uint32_t type;              /* POSTERN_ARG_* as declared */
  uint32_t present;           /* 0: not given (an optional argument) */
  int64_t integer;            /* INTEGER; BOOLEAN as 0/1 */
  postern_str_t text;         /* STRING */
  const postern_str_t* items; /* STRING_LIST */
  size_t item_count;
} postern_command_value_t;

/**
 * An admin command's implementation. Answers with command_complete on
 * `reply`, now or later, from any thread.
 * THREADING: called on a host worker-pool thread (it may block on SQLite or
 *   files); calls for different requests may run at once.
 */
typedef void (*postern_command_cb)(void* user_plugin_ptr, const postern_command_value_t* const* args,
                                   size_t arg_count, postern_command_reply_t* reply);
/* --- added in ABI 1.3: outbound connections and message injection (types) */

/**
 * How stream_connect ended (ABI 1.3), passed to postern_connect_cb as a
 * uint32_t. Append-only.
 */
typedef enum postern_connect_status {
  POSTERN_CONNECT_OK = 0,          /* connected (and TLS up when asked for) */
  POSTERN_CONNECT_REFUSED = 1,     /* the peer refused: nothing listens on the port or the Unix socket */
  POSTERN_CONNECT_TIMEOUT = 2,     /* resolution, connect and TLS handshake took longer than timeout_ms */
  POSTERN_CONNECT_DNS_FAILED = 3,  /* the host name has no address (NXDOMAIN, NODATA, DNS error) */
  POSTERN_CONNECT_TLS_FAILED = 4,  /* the TLS handshake or the certificate check failed */
  POSTERN_CONNECT_UNREACHABLE = 5, /* any other network error (unreachable, reset, no such socket file) */
  POSTERN_CONNECT_CANCELLED = 6    /* stream_connect_cancel, the plugin unloading or posternd stopping */
} postern_connect_status_t;

/** Bits of postern_connect_options_t.flags. */
#define POSTERN_CONNECT_TLS 0x1u           /* TLS handshake right after the connect (implicit TLS) */
#define POSTERN_CONNECT_TLS_NO_VERIFY 0x2u /* TLS without checking the peer's certificate and name */

/**
 * Where stream_connect connects (ABI 1.3). The plugin zero-fills it, sets
 * struct_size and fills what it needs (zero members take the defaults).
 * OWNERSHIP: the plugin's; the host copies it before stream_connect returns.
 * LIFETIME: only during the stream_connect call. THREADING: the caller's.
 */
typedef struct postern_connect_options {
  uint32_t struct_size;
  uint32_t flags;           /* POSTERN_CONNECT_* */
  postern_str_t host;       /* a host name (resolved by the host's resolver; "localhost"
                             * is the loopback), an IPv4 or an IPv6 literal ("::1" or "[::1]") */
  uint32_t port;            /* 1..65535 with `host` */
  uint32_t timeout_ms;      /* the whole connect: resolution, TCP, TLS handshake; 0 = 30 s */
  postern_str_t unix_path;  /* instead of host:port: a Unix-domain stream socket */
  postern_str_t tls_name;   /* TLS: the SNI and the name the certificate must match;
                             * empty = `host` (no SNI for an IP literal) */
} postern_connect_options_t;

/**
 * The outcome of stream_connect (ABI 1.3); called exactly once.
 * With POSTERN_CONNECT_OK, `stream` is the new connection, borrowed as in
 * on_open (stream_retain keeps it), and the return value is the plugin's
 * connection state passed to every later on_data / on_tls / on_drain /
 * on_close of the callback table given to stream_connect; NULL closes the
 * stream at once (on_close is then not called). Otherwise `stream` is NULL,
 * `detail` says why in one line, and the return value is ignored.
 * OWNERSHIP: `detail` is the host's. LIFETIME: `detail` only during the call.
 * THREADING: OK on the new stream's strand (its callbacks follow there);
 *   a failure on an I/O thread, or on the unloading thread when the plugin
 *   goes (CANCELLED) before on_destroy.
 */
typedef void* (*postern_connect_cb)(void* user_plugin_ptr, uint32_t status, postern_stream_t* stream,
                                    postern_str_t detail);

/**
 * A message to inject into the queue (ABI 1.3). OWNERSHIP: the plugin's;
 * the host copies everything before inject returns.
 * LIFETIME: only during the inject call. THREADING: the caller's.
 */
typedef struct postern_inject_request {
  uint32_t struct_size;
  uint32_t flags;                    /* reserved: 0 */
  postern_str_t mail_from;           /* reverse-path without <>; empty = the null sender <> */
  const postern_str_t* recipients;   /* 1..1000 addresses without <> */
  size_t recipient_count;
  postern_bytes_t message;           /* RFC 5322 octets, CRLF or LF line ends, no dot-stuffing */
  const postern_str_t* skip_filters; /* manifest names of plugins whose hooks this message
                                      * skips in the queue ("*": every plugin); may be NULL */
  size_t skip_filter_count;
} postern_inject_request_t;

/**
 * The outcome of inject (ABI 1.3); called exactly once. `status` is a
 * postern_status_t: POSTERN_OK with `text` = the queue id once the message is
 * durable in the spool; else the error and a one-line reason in `text`.
 * OWNERSHIP: host. LIFETIME: `text` only during the call.
 * THREADING: a worker-pool thread; unload waits for it (it runs before
 *   on_destroy).
 */
typedef void (*postern_inject_cb)(void* user_plugin_ptr, uint32_t status, postern_str_t text);

/**
 * Session tag (event_tag_get, ABI 1.3) on the queue's events (delivery
 * stage, delivered/deferred/bounced) of a message a plugin injected: the
 * value is the injecting plugin's name. An autoreply plugin skips such mail
 * (RFC 3834 §2: never answer automatic mail).
 */
#define POSTERN_TAG_INJECTED "postern.injected"

/* ------------------------------------------------------------------------ */
/* The host API (implemented by posternd, append-only)                       */
/* ------------------------------------------------------------------------ */

typedef struct postern_host_api_v1 {
  uint32_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;

  /* --- registration (only during on_init) --------------------------------- */

  /**
   * Subscribes the plugin to a stage; on_hook is called only for subscribed
   * stages, in manifest order. The stage must be listed in the descriptor.
   * `stage` is a postern_stage_t value taken as uint32_t: like every enum
   * value a plugin passes to the host, it is never loaded as an enum and is
   * range-checked (ABI 1.3 contract fix; the binary layout is unchanged and
   * the enum constants still convert implicitly).
   * THREADING: only inside on_init.
   * @return POSTERN_OK, POSTERN_ERR_INVALID (and an error in the log naming
   *   the plugin and the value) for an unknown stage or one the descriptor
   *   does not list.
   */
  postern_status_t (*subscribe)(postern_host_t* host, uint32_t stage);

  /* --- configuration and environment -------------------------------------- */

  /** The plugin's element in the manifest (`<plugin>`). LIFETIME: until on_destroy. */
  const postern_config_node_t* (*config_root)(postern_host_t* host);
  /** The element's name. OWNERSHIP: host; LIFETIME: until on_destroy. */
  postern_str_t (*config_name)(const postern_config_node_t* node);
  /** An attribute's value. @return POSTERN_ERR_NOT_FOUND when absent. */
  postern_status_t (*config_attr)(const postern_config_node_t* node, postern_str_t name,
                                  postern_str_t* out_value_host_ptr);
  /** Text content of the element (concatenated PCDATA/CDATA), may be empty. */
  postern_str_t (*config_text)(const postern_config_node_t* node);
  /** First child element, optionally by name (empty name = any); NULL if none. */
  const postern_config_node_t* (*config_child)(const postern_config_node_t* node,
                                                postern_str_t name);
  /** Next sibling element with the same name filter; NULL if none. */
  const postern_config_node_t* (*config_next)(const postern_config_node_t* node,
                                               postern_str_t name);
  /** Source line of the element in the manifest (for error messages). */
  uint32_t (*config_line)(const postern_config_node_t* node);

  /** The plugin's private state directory (created). LIFETIME: until on_destroy. */
  postern_str_t (*state_dir)(postern_host_t* host);
  /** Milliseconds since the Unix epoch, from the host's clock (a test clock in FakeHost). */
  int64_t (*now_ms)(postern_host_t* host);
  /**
   * Writes one log line tagged with the plugin's name. `level` is a
   * postern_log_level_t value taken as uint32_t; an unknown level writes the
   * line at ERROR, prefixed with "invalid log level N: ".
   * OWNERSHIP: `message` is copied. THREADING: any thread.
   */
  void (*log)(postern_host_t* host, uint32_t level, postern_str_t message);

  /* --- asynchronous services ---------------------------------------------- */

  /**
   * Runs `fn(user)` on the host's worker pool (for blocking work: SQLite,
   * scanning, file I/O). OWNERSHIP: `user` stays the plugin's.
   * THREADING: callable from any thread; fn runs on a pool thread.
   * LIFETIME: fn runs exactly once, also during shutdown.
   */
  postern_status_t (*post_work)(postern_host_t* host, postern_task_cb fn, void* user_plugin_ptr);

  /**
   * Calls `fn(user, 1)` once after `delay_ms` on an I/O thread. If the timer
   * is cancelled, or the plugin is unloaded, first, `fn(user, 0)` runs
   * instead: exactly one call either way, so `user` can always be freed there.
   * @return an id for timer_cancel (never 0); 0 when no timer could be
   *   started, and then fn is not called.
   * THREADING: any thread.
   */
  uint64_t (*timer_start)(postern_host_t* host, uint64_t delay_ms, postern_timer_cb fn, void* user_plugin_ptr);
  /**
   * Cancels a timer: fn(user, 0) runs unless fn already ran. An unknown or
   * stale id is ignored. THREADING: any thread.
   */
  void (*timer_cancel)(postern_host_t* host, uint64_t timer_id);

  /**
   * Asynchronous DNS query through the host's resolver (cache honours TTL).
   * `cb` runs exactly once, on an I/O thread, with the answer, also on timeout
   * (POSTERN_DNS_TIMEOUT after `timeout_ms`, 0 = host default). `type` is
   * a DNS RR type taken as uint32_t (postern_dns_type_t values, or any other
   * IANA type 1..65535, rendered as in postern_dns_record_t).
   * THREADING: any thread. Never blocks.
   * @return POSTERN_OK (cb will run); POSTERN_ERR_INVALID for a null cb or a
   *   type 0 or above 65535 (cb is then not called); POSTERN_ERR_UNAVAILABLE
   *   without a resolver or while unloading.
   */
  postern_status_t (*dns_query)(postern_host_t* host, postern_str_t name, uint32_t type,
                                uint32_t timeout_ms, postern_dns_cb cb, void* user_plugin_ptr);

  /* --- the event (only during on_hook, on its thread) ----------------------- */

  /**
   * Reads a property of the event (`prop`: a postern_property_t value taken
   * as uint32_t). OWNERSHIP: host.
   * LIFETIME: until on_hook returns. @return POSTERN_ERR_NOT_FOUND when unset,
   *   POSTERN_ERR_INVALID for an unknown property.
   */
  postern_status_t (*event_get)(postern_event_t* ev, uint32_t prop,
                                postern_str_t* out_host_ptr);
  /** Number of accepted recipients of the transaction so far. */
  size_t (*event_rcpt_count)(postern_event_t* ev);
  /** The i-th accepted recipient (no <>). LIFETIME: until on_hook returns. */
  postern_status_t (*event_rcpt_at)(postern_event_t* ev, size_t index, postern_str_t* out_host_ptr);
  /** The message, from the `headers` stage on; NULL before. */
  const postern_message_t* (*event_message)(postern_event_t* ev);

  /** Adds a scored symbol (Rspamd style). Name and detail are copied. */
  postern_status_t (*event_add_symbol)(postern_event_t* ev, postern_str_t name, double weight,
                                       postern_str_t detail);
  /** Current score total of the transaction. */
  double (*event_score)(postern_event_t* ev);

  /**
   * Requests a header edit applied when the message is stored; allowed from
   * mail_from to data_end (POSTERN_ERR_UNAVAILABLE elsewhere). add: appended at the top (prepend=1) or bottom; change: the
   * `index`-th (0-based) header of that name gets `value`, added if absent;
   * remove: the index-th instance, or all when index < 0.
   */
  postern_status_t (*event_header_add)(postern_event_t* ev, postern_str_t name, postern_str_t value,
                                       int32_t prepend);
  postern_status_t (*event_header_change)(postern_event_t* ev, postern_str_t name, int32_t index,
                                          postern_str_t value);
  postern_status_t (*event_header_remove)(postern_event_t* ev, postern_str_t name, int32_t index);

  /** Adds or removes an envelope recipient of the transaction (data_end). */
  postern_status_t (*event_rcpt_add)(postern_event_t* ev, postern_str_t address);
  postern_status_t (*event_rcpt_remove)(postern_event_t* ev, postern_str_t address);

  /**
   * Defers the hook: call, then return POSTERN_VERDICT_PENDING from on_hook.
   * @return a pending handle with one reference (see postern_pending_t), or
   *   NULL at a stage that cannot be deferred (observer events) and on a
   *   second call within the same on_hook.
   */
  postern_pending_t* (*event_defer)(postern_event_t* ev);

  /* --- pending results (any thread) ----------------------------------------- */

  postern_pending_t* (*pending_retain)(postern_pending_t* p);
  /**
   * Drops a reference. When the last reference goes and no completion was
   * made, the hook completes as CONTINUE.
   */
  void (*pending_release)(postern_pending_t* p);
  /** Adds a symbol to the pending transaction; ignored if already completed. */
  postern_status_t (*pending_add_symbol)(postern_pending_t* p, postern_str_t name, double weight,
                                         postern_str_t detail);
  /**
   * Completes the hook. Strings are copied. The first completion wins; a
   * second one, or one after the hook's timeout, returns POSTERN_ERR_UNAVAILABLE
   * and is counted by the host. A result whose verdict is PENDING is refused
   * with POSTERN_ERR_INVALID (and does not complete).
   */
  postern_status_t (*pending_complete)(postern_pending_t* p, const postern_hook_result_t* result);

  /* --- the message (only during on_hook, on its thread) --------------------- */

  /** The message as received, CRLF line ends, without dot-stuffing. */
  postern_bytes_t (*message_raw)(const postern_message_t* msg);
  /** Number of top-level header fields. */
  size_t (*message_header_count)(const postern_message_t* msg);
  /**
   * The i-th header field: its name as written and its value unfolded and
   * with RFC 2047 encoded words decoded to UTF-8.
   */
  postern_status_t (*message_header_at)(const postern_message_t* msg, size_t index,
                                        postern_str_t* name_host_ptr,
                                        postern_str_t* value_host_ptr);
  /** The `nth` (0-based) header named `name` (case-insensitive), decoded. */
  postern_status_t (*message_header_find)(const postern_message_t* msg, postern_str_t name,
                                          size_t nth, postern_str_t* value_host_ptr);
  /** Number of MIME parts (>= 1). */
  size_t (*message_part_count)(const postern_message_t* msg);
  /** Description of the i-th part. */
  postern_status_t (*message_part_at)(const postern_message_t* msg, size_t index,
                                      postern_mime_part_t* out);
  /** The i-th part's body with its transfer encoding undone (not charset-converted). */
  postern_status_t (*message_part_body)(const postern_message_t* msg, size_t index,
                                        postern_bytes_t* out_host_ptr);

  /* --- added in ABI 1.1 ---------------------------------------------------- */
  /* A plugin reads these only when api->struct_size covers them (the SDK's
   * POSTERN_SDK_API_HAS does it); a 1.0 host's table ends before them. */

  /**
   * Registers a recurring job: `fn(user)` runs on a worker-pool thread each
   * time the cron expression matches ("minute hour day-of-month month
   * day-of-week", docs/scheduler.md). A run still going when the next time
   * comes is skipped, never started twice. `name` is for logs and posternctl.
   * OWNERSHIP: `user` stays the plugin's; name and expression are copied.
   * LIFETIME: fn may run until cron_cancel returns, and a run that already
   *   started may finish after that; at unload the host removes every job of
   *   the plugin and waits for a running one before on_destroy, so `user` can
   *   always be freed in on_destroy.
   * THREADING: any thread; fn runs on a worker thread.
   * @return an id for cron_cancel (never 0); 0 for an invalid expression, when
   *   the host has no scheduler, or while the plugin is unloading.
   */
  uint64_t (*cron_add)(postern_host_t* host, postern_str_t name, postern_str_t cron_expr, postern_task_cb fn,
                       void* user_plugin_ptr);
  /**
   * Removes a job: no run starts after this returns (one in progress
   * finishes). An unknown or stale id is ignored. THREADING: any thread,
   * also from inside the job's own fn.
   */
  void (*cron_cancel)(postern_host_t* host, uint64_t cron_id);

  /**
   * Sets a tag on the SMTP session: a key/value pair every plugin of the
   * session can read with event_tag_get at this and every later stage until
   * the connection ends (RSET keeps it). Setting a key again replaces the
   * value. Keys are namespaced by convention ("<plugin>.<name>"); the
   * documented shared key is "postern.whitelisted" = "1", set by a
   * connection filter for a trusted source (greylist skips such sessions).
   * Keys are 1..128 octets of printable ASCII without spaces; values at most
   * 1024 octets; at most 64 tags per session. Strings are copied.
   * THREADING: only during on_hook, on its thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for a bad key or value or a full
   *   session; POSTERN_ERR_UNAVAILABLE for an event without a session
   *   (observer events from the queue).
   */
  postern_status_t (*event_tag_set)(postern_event_t* ev, postern_str_t key, postern_str_t value);
  /**
   * Reads a session tag. OWNERSHIP: host. LIFETIME: until on_hook returns or
   * the next event_tag_set, whichever is first.
   * @return POSTERN_OK, POSTERN_ERR_NOT_FOUND when unset,
   *   POSTERN_ERR_UNAVAILABLE for an event without a session.
   */
  postern_status_t (*event_tag_get)(postern_event_t* ev, postern_str_t key, postern_str_t* out_host_ptr);

  /* --- added in ABI 1.2: services, the directory, the mailbox store -------- */

  /**
   * Serves a listener protocol: connections accepted on every enabled
   * `<listener protocol="...">` of the manifest with this protocol are handed
   * to `svc`. A listener whose protocol no plugin serves is not opened.
   * One plugin may serve several protocols; a protocol has one server (the
   * first plugin in manifest order). OWNERSHIP: svc and `user` stay the plugin's.
   * THREADING: only inside on_init.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for an empty protocol, "smtp" or
   *   "submission", a table too small, or a second registration of a protocol
   *   by this plugin.
   */
  postern_status_t (*service_register)(postern_host_t* host, postern_str_t protocol, const postern_service_v1_t* svc,
                                       void* service_user_plugin_ptr);

  /** Keeps a stream handle valid past on_close. THREADING: any thread. */
  postern_stream_t* (*stream_retain)(postern_stream_t* stream);
  /** Drops a reference taken with stream_retain. THREADING: any thread. */
  void (*stream_release)(postern_stream_t* stream);
  /**
   * Queues output; the octets are copied. THREADING: any thread (written in
   * call order per thread). @return POSTERN_ERR_UNAVAILABLE once closed.
   */
  postern_status_t (*stream_write)(postern_stream_t* stream, postern_bytes_t data);
  /** Octets queued and not yet written. THREADING: any thread. */
  size_t (*stream_queued)(postern_stream_t* stream);
  /**
   * Requests one on_drain call when the queued output has been written (at
   * once if nothing is queued). THREADING: the stream's strand.
   */
  postern_status_t (*stream_want_drain)(postern_stream_t* stream);
  /**
   * Stops (paused = 1) or resumes (0) on_data calls, e.g. while a command runs
   * on the worker pool; input stays in the kernel meanwhile. The idle timeout
   * does not run while paused. THREADING: the stream's strand.
   */
  postern_status_t (*stream_pause)(postern_stream_t* stream, int32_t paused);
  /**
   * Starts TLS on a cleartext stream (STARTTLS, STLS): queued output (the
   * "go ahead" reply) is written first, input not yet delivered is dropped,
   * then the handshake runs; on_tls or on_close(TLS_FAILED) follows.
   * THREADING: the stream's strand.
   * @return POSTERN_ERR_UNAVAILABLE when TLS is active, no certificate is
   *   configured, or the stream is closed.
   */
  postern_status_t (*stream_starttls)(postern_stream_t* stream);
  /**
   * Closes the stream after the queued output is written; on_close(PLUGIN)
   * follows. Idempotent. THREADING: any thread.
   */
  void (*stream_close)(postern_stream_t* stream);
  /**
   * Closes the stream when no input arrives for `timeout_ms` (0: never;
   * the listener default is 30 minutes). Each input and each completed
   * write resets it (a long download is not idle); it does not run while
   * the stream is paused with nothing left to write.
   * THREADING: the stream's strand.
   */
  postern_status_t (*stream_set_idle_timeout)(postern_stream_t* stream, uint64_t timeout_ms);
  /**
   * Runs fn(user) on the stream's strand, serialized with its callbacks
   * (e.g. to answer when work on the pool finished). fn runs exactly once,
   * also when the stream closed meanwhile (check your own state).
   * THREADING: any thread. @return POSTERN_ERR_UNAVAILABLE while unloading
   *   (fn is then not called).
   */
  postern_status_t (*stream_post)(postern_stream_t* stream, postern_task_cb fn, void* user_plugin_ptr);
  /**
   * Reads a property (`prop`: a postern_stream_prop_t value taken as
   * uint32_t). OWNERSHIP: host. LIFETIME: until the handle is released
   * (the TLS properties are set before on_tls). @return POSTERN_ERR_NOT_FOUND
   * when unset, POSTERN_ERR_INVALID for an unknown property.
   */
  postern_status_t (*stream_get)(postern_stream_t* stream, uint32_t prop, postern_str_t* out_host_ptr);

  /**
   * The detail of the last failed dir_* / mbox_* / view_* call on this
   * thread (one line for logs and client replies).
   * OWNERSHIP: host. LIFETIME: until the next such call on this thread.
   * THREADING: any thread; answers for the calling thread only; no I/O.
   */
  postern_str_t (*last_error)(postern_host_t* host);

  /*
   * The directory and the mailbox store (ABI 1.2). Shared rules, restated
   * on each entry below:
   * - strings and arrays passed in are copied (or only read) before the call
   *   returns; a `postern_mresult_t*` written to `*out` is the plugin's, freed
   *   with mresult_free (one block, any thread); strings a dir_* call writes
   *   into a `postern_account_info_t` are the host's and live until the next
   *   dir_* call on the same thread;
   * - every entry is thread-safe, and all but last_error, mresult_free,
   *   mbox_release, view_release and mbox_usage block on SQLite, file I/O or
   *   password hashing: call them from post_work, never from on_hook, a stream
   *   callback or any other strand;
   * - a failure leaves its one-line reason for last_error on the calling
   *   thread; a null handle or out pointer answers POSTERN_ERR_INVALID.
   */

  /**
   * Checks a login (address, `%` for `@`, or a local part of the default
   * domain) and password for `service` (POSTERN_SERVICE_*).
   * OWNERSHIP: login and password are only read; the strings in `out` are
   *   the host's.
   * LIFETIME: `out`'s strings until the next dir_* call on this thread.
   * THREADING: any thread; blocks (password hashing): call from post_work.
   * @return POSTERN_OK; POSTERN_ERR_NOT_FOUND for bad credentials or an
   *   account that is disabled or not allowed the service (indistinguishable
   *   on purpose); POSTERN_ERR_UNAVAILABLE without a directory.
   */
  postern_status_t (*dir_authenticate)(postern_host_t* host, postern_str_t login, postern_str_t password,
                                       uint32_t service, postern_account_info_t* out);
  /**
   * Looks an account up (no password check).
   * OWNERSHIP: the strings in `out` are the host's.
   * LIFETIME: `out`'s strings until the next dir_* call on this thread.
   * THREADING: any thread; blocks (SQLite): call from post_work.
   * @return POSTERN_OK; POSTERN_ERR_NOT_FOUND if none; POSTERN_ERR_UNAVAILABLE
   *   without a directory.
   */
  postern_status_t (*dir_account)(postern_host_t* host, postern_str_t address, postern_account_info_t* out);

  /**
   * Opens an account's mailbox (canonical address, as dir_authenticate
   * returned it), creating its store on first use.
   * OWNERSHIP: `*out` is the plugin's until mbox_release.
   * LIFETIME: the handle stays valid until mbox_release (views opened from
   *   it keep the account open longer).
   * THREADING: any thread; blocks: call from post_work. The handle is
   *   immutable and may be shared by threads.
   * @return POSTERN_OK with *out set; POSTERN_ERR_NOT_FOUND for an address
   *   the directory does not know; POSTERN_ERR_UNAVAILABLE without a store.
   */
  postern_status_t (*mbox_open)(postern_host_t* host, postern_str_t account, postern_mailbox_t** out);
  /**
   * Drops the handle from mbox_open. NULL is ignored.
   * OWNERSHIP: consumes the plugin's handle. LIFETIME: `mb` is invalid afterwards.
   * THREADING: any thread; does not block (no call on `mb` may still run).
   */
  void (*mbox_release)(postern_mailbox_t* mb);
  /**
   * Frees a result. NULL is ignored.
   * OWNERSHIP: consumes the plugin's result. LIFETIME: every pointer into it
   *   is invalid afterwards. THREADING: any thread; does not block.
   */
  void (*mresult_free)(postern_mresult_t* result);

  /**
   * Every folder, INBOX first, then by name: `folders`.
   * OWNERSHIP: `*out` is the plugin's (mresult_free). LIFETIME: until mresult_free.
   * THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_list_folders)(postern_mailbox_t* mb, postern_mresult_t** out);
  /**
   * One folder's counters: `folders[0]`.
   * OWNERSHIP: `name` is only read; `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_folder_status)(postern_mailbox_t* mb, postern_str_t name, postern_mresult_t** out);
  /**
   * Creates a folder and missing parents; `special_use` "\\Sent"... or empty.
   * OWNERSHIP: the strings are only read. LIFETIME: n/a (no result).
   * THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_create_folder)(postern_mailbox_t* mb, postern_str_t name, postern_str_t special_use);
  /**
   * Deletes a folder and its messages (INBOX: FORBIDDEN; children: HAS_CHILDREN).
   * OWNERSHIP: `name` is only read. LIFETIME: n/a (no result); open views of
   *   the folder see POSTERN_MRESULT_GONE at their next view_refresh.
   * THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_delete_folder)(postern_mailbox_t* mb, postern_str_t name);
  /**
   * Renames a folder with its children; INBOX's messages move (RFC 9051 §6.3.6).
   * OWNERSHIP: the strings are only read. LIFETIME: n/a (no result).
   * THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_rename_folder)(postern_mailbox_t* mb, postern_str_t from, postern_str_t to);
  /**
   * Sets (subscribed != 0) or clears a folder's subscription (LSUB).
   * OWNERSHIP: `name` is only read. LIFETIME: n/a (no result).
   * THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_subscribe)(postern_mailbox_t* mb, postern_str_t name, int32_t subscribed);
  /**
   * Claims the folder's \Recent messages for the caller (RFC 3501 §2.3.2):
   * *first_recent_uid is the first UID recent to this session.
   * OWNERSHIP: `name` is only read; `*first_recent_uid` is written.
   * LIFETIME: n/a (no result). THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_claim_recent)(postern_mailbox_t* mb, postern_str_t name, uint32_t* first_recent_uid);
  /**
   * Changes since `since` (same UIDVALIDITY, else STALE): `messages` changed
   * or new, `uids` expunged, uidvalidity/uidnext/highest_modseq, flags.
   * OWNERSHIP: `name` is only read; `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_changes_since)(postern_mailbox_t* mb, postern_str_t name, uint32_t uidvalidity,
                                         uint64_t since, postern_mresult_t** out);
  /**
   * The message as stored (CRLF): `bytes`. NOT_FOUND when expunged meanwhile.
   * OWNERSHIP: `folder` is only read; `*out` (with the octets) is the
   *   plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks (file I/O):
   *   call from post_work.
   */
  postern_status_t (*mbox_read_message)(postern_mailbox_t* mb, postern_str_t folder, uint32_t uid,
                                        postern_mresult_t** out);
  /**
   * STORE: `messages` the listed messages that exist and were not refused
   * by UNCHANGEDSINCE, in their state after the change; `uids`
   * the RFC 7162 MODIFIED ones (when has_unchanged_since), highest_modseq.
   * `op` is a postern_flag_op_t value taken as uint32_t (ABI 1.3 contract
   * fix; the binary layout is unchanged): any other value is INVALID.
   * INVALID for a keyword that is not an IMAP atom.
   * OWNERSHIP: `folder`, `uids` and `keywords` are only read; `*out` is the
   *   plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_store_flags)(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids,
                                       size_t uid_count, uint32_t op, uint32_t flags,
                                       const postern_str_t* keywords, size_t keyword_count,
                                       int32_t has_unchanged_since, uint64_t unchanged_since,
                                       postern_mresult_t** out);
  /**
   * Removes messages: `uids` removed, ascending. `mode` is a
   * postern_expunge_mode_t value taken as uint32_t (ABI 1.3 contract fix):
   * any other value is INVALID.
   * OWNERSHIP: `folder` and `uids` are only read; `*out` is the plugin's
   *   (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_expunge)(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids,
                                   size_t uid_count, uint32_t mode, postern_mresult_t** out);
  /**
   * APPEND (the account's quota applies: OVER_QUOTA). internal_date < 0 means
   * now. `uidvalidity` and `uid` (APPENDUID).
   * OWNERSHIP: `folder`, `message` and `keywords` are copied into the store;
   *   `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks (file I/O,
   *   fsync): call from post_work.
   */
  postern_status_t (*mbox_append)(postern_mailbox_t* mb, postern_str_t folder, postern_bytes_t message,
                                  uint32_t flags, const postern_str_t* keywords, size_t keyword_count,
                                  int64_t internal_date, postern_mresult_t** out);
  /**
   * COPY (quota applies): `uidvalidity` of the target and `uid_pairs`. Missing UIDs are skipped.
   * OWNERSHIP: the strings and `uids` are only read; `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_copy)(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                                postern_str_t to, postern_mresult_t** out);
  /**
   * MOVE, atomic (RFC 6851): like mbox_copy, and the originals vanish in the same commit.
   * OWNERSHIP: the strings and `uids` are only read; `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: any thread; blocks: call from post_work.
   */
  postern_status_t (*mbox_move)(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                                postern_str_t to, postern_mresult_t** out);
  /**
   * Octets used by the account (cached) and its quota (0 = none).
   * OWNERSHIP: both out values are written (neither may be NULL).
   * LIFETIME: n/a (values). THREADING: any thread; no I/O, cheap enough for
   *   a stream callback or a reply path.
   */
  postern_status_t (*mbox_usage)(postern_mailbox_t* mb, uint64_t* used_bytes, uint64_t* quota_bytes);

  /**
   * Opens a view of a folder (SELECT, EXAMINE, the POP3 maildrop): `messages`
   * the whole snapshot (message sequence number = index + 1), uidvalidity,
   * uidnext, highest_modseq, and `folders[0]` the folder's counters.
   * OWNERSHIP: `*view` is the plugin's until view_release; `*out` is the
   *   plugin's (mresult_free).
   * LIFETIME: the view until view_release (it may outlive mbox_release of
   *   `mb`: it keeps the account open); the result until mresult_free.
   * THREADING: any thread; blocks: call from post_work. The view is then
   *   used by one thread at a time (a misuse is serialised by a mutex).
   */
  postern_status_t (*mbox_open_folder)(postern_mailbox_t* mb, postern_str_t name, postern_folder_view_t** view,
                                       postern_mresult_t** out);
  /**
   * Brings the view up to date: `uids` expunged from it (ascending, as they
   * were in it), `messages` added at its end, `changed` with new flags,
   * uidvalidity/uidnext/highest_modseq; flags GONE when the folder is no more.
   * OWNERSHIP: `*out` is the plugin's (mresult_free).
   * LIFETIME: until mresult_free. THREADING: one thread at a time per view;
   *   blocks: call from post_work.
   */
  postern_status_t (*view_refresh)(postern_folder_view_t* view, postern_mresult_t** out);
  /**
   * Closes a view. NULL is ignored.
   * OWNERSHIP: consumes the plugin's view. LIFETIME: `view` is invalid
   *   afterwards (the account closes with its last handle).
   * THREADING: any thread, not while another call on the view runs; does not block.
   */
  void (*view_release)(postern_folder_view_t* view);

  /* --- added in ABI 1.3: admin commands ------------------------------------ */

  /**
   * Registers an admin command `<area> <verb>` (DESIGN.md §3a,
   * docs/control-plane.md): posternd serves it on its control socket,
   * posternctl and the web admin call it. The host validates every call's
   * arguments against the spec (names, types, required ones) before `fn`
   * runs. Commands are removed when the plugin unloads (a reload registers
   * them again from the new instance's on_init).
   * OWNERSHIP: the spec is copied; `user` stays the plugin's.
   * LIFETIME: `fn` may be called from on_init's return until the plugin's
   *   unload begins; the host waits for running callbacks before on_destroy.
   * THREADING: only inside on_init; `fn` runs on a worker-pool thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for a bad name or spec, a core
   *   area (domain, user, alias, list, router, queue, relay, plugins, help;
   *   commands, reload and log are reserved for core),
   *   or a command this plugin registered already; POSTERN_ERR_UNAVAILABLE
   *   outside on_init. When two plugins register the same command, the first
   *   in manifest order serves it (the other's is logged and ignored).
   */
  postern_status_t (*command_register)(postern_host_t* host, const postern_command_spec_t* spec,
                                       postern_command_cb fn, void* user_plugin_ptr);
  /**
   * Answers a command and consumes `reply`. `exit_class` is a
   * POSTERN_COMMAND_* value. For POSTERN_COMMAND_OK, `result_json` is the
   * result (one JSON value; empty = null) and `text` what a text client
   * prints (empty = the JSON); otherwise `text` is the one-line error and
   * `result_json` is ignored. Strings are copied.
   * THREADING: any thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID when result_json is not valid
   *   JSON or exit_class is unknown (the client then gets a failure naming
   *   the plugin). An answer for a client that went away, or after the
   *   host's command timeout, is taken and dropped (POSTERN_OK).
   */
  postern_status_t (*command_complete)(postern_command_reply_t* reply, uint32_t exit_class, postern_str_t result_json,
                                       postern_str_t text);

  /* --- added in ABI 1.3: pending edits and mailbox events ------------------- */

  /**
   * The edits of a pending hook: the same edits, with the same rules, as
   * event_header_add / _change / _remove and event_rcpt_add / _remove, made
   * through the pending handle after the hook returned PENDING (a milter or
   * a scanner answers late). They are recorded at once and applied on the
   * session's strand, in call order, when the completion arrives there
   * (pending_complete, or pending_release of the last reference) and before
   * the completion's verdict is acted on. They are dropped with a completion
   * that is late (after the hook's timeout) or refused, and with one that
   * flags POSTERN_RESULT_ERROR.
   * Which edits a stage allows is fixed at event_defer: headers from
   * mail_from to data_end, recipients at data_end only. event_rcpt_remove's
   * NOT_FOUND is checked against the recipients at event_defer.
   * OWNERSHIP: strings are copied before the call returns.
   * LIFETIME: the handle must be held (a reference not yet released).
   * THREADING: any thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for a bad name, value (CR/LF
   *   other than folding, NUL) or address, or a negative change index;
   *   POSTERN_ERR_NOT_FOUND (rcpt_remove) for an address not among the
   *   recipients; POSTERN_ERR_UNAVAILABLE at a stage that does not allow the
   *   edit, or once the hook completed or timed out.
   */
  postern_status_t (*pending_header_add)(postern_pending_t* p, postern_str_t name, postern_str_t value,
                                         int32_t prepend);
  postern_status_t (*pending_header_change)(postern_pending_t* p, postern_str_t name, int32_t index,
                                            postern_str_t value);
  postern_status_t (*pending_header_remove)(postern_pending_t* p, postern_str_t name, int32_t index);
  postern_status_t (*pending_rcpt_add)(postern_pending_t* p, postern_str_t address);
  postern_status_t (*pending_rcpt_remove)(postern_pending_t* p, postern_str_t address);

  /**
   * Subscribes to mailbox events (postern_mbox_event_t) of every account:
   * `fn(user, event)` runs for each event whose kind is in `mask`
   * (POSTERN_MBOX_MASK_*), after the store committed the change and released
   * its locks, never inside the call that made it.
   * Events are delivered one at a time, in the order the store raised them,
   * to every subscriber in turn: keep fn short (post slow work with
   * post_work or stream_post) and never block in it.
   * OWNERSHIP: `user` stays the plugin's.
   * LIFETIME: until mbox_events_unsubscribe or unload; at unload the host
   *   stops delivering and waits for a running fn before on_destroy.
   * THREADING: callable from any thread (usually on_init); fn runs on a
   *   worker thread, never on the caller's strand nor inside a store call.
   * @return an id for mbox_events_unsubscribe (never 0); 0 for a null fn,
   *   an empty mask, a host without a mailbox store, or while unloading.
   */
  uint64_t (*mbox_events_subscribe)(postern_host_t* host, uint32_t mask, postern_mbox_event_cb fn,
                                    void* user_plugin_ptr);
  /**
   * Ends a subscription: no call starts after this returns (one running on
   * another thread may finish). Unknown ids are ignored.
   * THREADING: any thread, also from inside fn.
   */
  void (*mbox_events_unsubscribe)(postern_host_t* host, uint64_t subscription_id);
  /* --- added in ABI 1.3: outbound connections and message injection -------- */

  /**
   * Opens a connection the host owns (TCP to host:port, or a Unix-domain
   * socket), optionally with TLS, and hands it to the plugin as a stream
   * driven exactly like a served one: stream_write / stream_close /
   * stream_pause / stream_post / stream_starttls (a client handshake with the
   * options' TLS name and verification) and the callbacks of `callbacks`
   * (on_data and on_close required, on_tls and on_drain optional; on_open
   * is not used and may be NULL). There is no idle timeout unless the plugin
   * sets one (stream_set_idle_timeout). Stream properties: PEER_*, LOCAL_*
   * (empty for a Unix socket), SESSION_ID, LISTENER "outbound", PROTOCOL
   * "tcp" or "unix", TLS_MODE "implicit" or "none", TLS_*.
   * `on_connected` runs exactly once (postern_connect_cb), never inside
   * this call. At unload, pending connects complete with CANCELLED and open
   * streams end with on_close(SHUTDOWN), all before on_destroy.
   * OWNERSHIP: `options` and `callbacks` are copied; `user` stays the plugin's.
   * THREADING: any thread. Never blocks (DNS through the async resolver).
   * @param connect_id may be NULL; else receives an id for stream_connect_cancel.
   * @return POSTERN_OK (on_connected will run); POSTERN_ERR_INVALID for bad
   *   options (no host and no path, both, port 0 or above 65535, a table
   *   without on_data/on_close); POSTERN_ERR_UNAVAILABLE while unloading or
   *   in a host without I/O (on_connected is then not called).
   */
  postern_status_t (*stream_connect)(postern_host_t* host, const postern_connect_options_t* options,
                                     const postern_service_v1_t* callbacks, postern_connect_cb on_connected,
                                     void* user_plugin_ptr, uint64_t* connect_id);
  /**
   * Abandons a connect still in progress: on_connected runs with CANCELLED
   * (unless it ran already). Unknown or settled ids are ignored; an
   * established stream is closed with stream_close instead.
   * THREADING: any thread.
   */
  void (*stream_connect_cancel)(postern_host_t* host, uint64_t connect_id);

  /**
   * Submits a new message into the queue, durably (written, fsynced and
   * renamed into the spool like a message received by SMTP), as a local
   * origin: no SMTP-stage hook (connect .. data_end) runs for it, the
   * queue's hooks (delivery stage, delivered/deferred/bounced) skip the
   * plugins named in `skip_filters`, and they see the session tag
   * POSTERN_TAG_INJECTED. Delivery then takes the normal path (local mailbox,
   * relay, DSNs to mail_from). The host prepends a Received: trace field
   * naming the plugin and normalizes bare LF to CRLF.
   * OWNERSHIP: `request` is copied; `user` stays the plugin's.
   * THREADING: any thread; never blocks (the spool writes on the worker pool).
   * @return POSTERN_OK (done will run exactly once); POSTERN_ERR_INVALID for
   *   no or too many recipients, an address with spaces, CR, LF, NUL or <>,
   *   a recipient without '@', an empty message; POSTERN_ERR_UNAVAILABLE
   *   without a spool or while unloading (done is then not called).
   */
  postern_status_t (*inject)(postern_host_t* host, const postern_inject_request_t* request, postern_inject_cb done,
                             void* user_plugin_ptr);

  /* --- added in ABI 1.3: envelope sender and body edits -------------------- */

  /**
   * Changes the envelope sender (MAIL FROM) of the transaction, as milter's
   * SMFIR_CHGFROM does. `address` is the new reverse-path without <> (empty:
   * the null sender <>); it must parse as a reverse-path (RFC 5321 §4.1.2;
   * UTF-8 only when the transaction or `esmtp_args` has SMTPUTF8).
   * `esmtp_args` are MAIL parameters separated by spaces, each replacing the
   * transaction's value of that parameter (the others are kept; empty: keep
   * them all): "RET=FULL|HDRS", "ENVID=<xtext>", "BODY=7BIT|8BITMIME",
   * "SMTPUTF8"; "SIZE=n" and "AUTH=..." are accepted and ignored; anything
   * else is INVALID. The last change of a transaction wins.
   * Effect: the spool file's envelope carries the new sender and parameters,
   * so delivery uses it (the local Return-Path: field, the remote MAIL FROM)
   * and so do DSNs (sent to the new sender). The Received: field posternd
   * added keeps naming the client; the message itself is not changed.
   * Hooks later in the chain see the new sender in POSTERN_PROP_MAIL_FROM
   * (a synchronous change at once, a pending one once its completion applied).
   * Allowed at data_end only (like milter's end-of-message actions): the
   * message is final, nothing is spooled yet. The queue's delivery stage
   * cannot change the spooled envelope (POSTERN_ERR_UNAVAILABLE).
   * OWNERSHIP: the strings are copied before the call returns.
   * LIFETIME: the change lives with the transaction (RSET drops it).
   * THREADING: only during on_hook, on its thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for an address that is not a
   *   reverse-path or a bad, unknown or repeated parameter;
   *   POSTERN_ERR_UNAVAILABLE at any other stage or without a transaction.
   */
  postern_status_t (*event_mail_from_set)(postern_event_t* ev, postern_str_t address, postern_str_t esmtp_args);
  /**
   * Replaces the message body (everything after the header section's empty
   * line), as milter's SMFIR_REPLBODY does: the header section stays, and
   * header edits still apply to it. `body` is the new body as octets in its
   * final transfer encoding (no dot-stuffing); CRLF or bare LF line ends
   * (bare LF becomes CRLF, a missing final line end is added); a NUL or a
   * bare CR is INVALID; the body (with its line ends normalized) may not
   * exceed the listener's max-message-size. An empty body is allowed. The last
   * replacement of a transaction wins. The plugin keeps the headers
   * consistent with the new body (Content-Type, Content-Transfer-Encoding:
   * change them with event_header_change; 8-bit octets need BODY=8BITMIME,
   * set with event_mail_from_set).
   * Effect: the spool file holds the new body; delivery and every queue
   * hook (delivery stage, message_* calls there) see it. Hooks later in the
   * same data_end chain still read the message as received through
   * event_message (it is not parsed again on the session's strand).
   * DKIM: a signature made before (by the sender) no longer verifies once
   * the body changed: verify in a hook that runs before the edit (earlier
   * in manifest order), and sign after every edit (at the delivery stage,
   * or last at data_end).
   * Allowed at data_end only; POSTERN_ERR_UNAVAILABLE elsewhere.
   * OWNERSHIP: `body` is copied before the call returns.
   * LIFETIME: the replacement lives with the transaction (RSET drops it).
   * THREADING: only during on_hook, on its thread.
   * @return POSTERN_OK; POSTERN_ERR_INVALID for NUL, a bare CR, a
   *   {NULL, n>0} buffer or a body too large; POSTERN_ERR_UNAVAILABLE at any
   *   other stage or without a transaction.
   */
  postern_status_t (*event_body_replace)(postern_event_t* ev, postern_bytes_t body);
  /**
   * The same two edits through a pending handle, after the hook returned
   * PENDING (a milter or a scanner answers late): same checks, same stage
   * rule (fixed at event_defer: data_end only), same effect. Like the other
   * pending edits they are recorded at once and applied on the session's
   * strand when the completion arrives there, before its verdict is acted on
   * (a QUARANTINE verdict then spools the edited message into quarantine);
   * they are dropped with a completion that is late, refused or flags
   * POSTERN_RESULT_ERROR. The body is copied and validated in the call
   * (against the size limit known at event_defer).
   * OWNERSHIP: strings and body are copied before the call returns.
   * LIFETIME: the handle must be held (a reference not yet released).
   * THREADING: any thread.
   * @return as event_mail_from_set / event_body_replace, and
   *   POSTERN_ERR_UNAVAILABLE once the hook completed or timed out.
   */
  postern_status_t (*pending_mail_from_set)(postern_pending_t* p, postern_str_t address, postern_str_t esmtp_args);
  postern_status_t (*pending_body_replace)(postern_pending_t* p, postern_bytes_t body);
} postern_host_api_v1_t;

/* ------------------------------------------------------------------------ */
/* The plugin table (implemented by the plugin)                              */
/* ------------------------------------------------------------------------ */

typedef struct postern_plugin_v1 {
  uint32_t struct_size;
  uint32_t abi_major;      /* POSTERN_ABI_VERSION_MAJOR the plugin was built with */
  uint32_t abi_minor;      /* POSTERN_ABI_VERSION_MINOR the plugin was built with */
  const char* name;        /* must equal the descriptor's name; static storage */
  const char* version;     /* static storage */

  /**
   * Creates one plugin instance. Reads configuration, subscribes to stages.
   * On failure writes a one-line reason (NUL-terminated, truncated to
   * `err_cap`) into `err_plugin_buf` and returns an error; on_destroy is then
   * not called.
   * OWNERSHIP: *instance_plugin_ptr is the plugin's; the host passes it back.
   * THREADING: a host control thread that runs no session (the main thread
   *   at start, posternd's control thread at reload). No call into this
   *   instance runs concurrently; after a reload, an older instance of the
   *   same plugin may still run hooks on other threads until it drains, so
   *   process-wide state in the plugin must be thread-safe.
   */
  postern_status_t (*on_init)(postern_host_t* host, const postern_host_api_v1_t* api,
                              void** instance_plugin_ptr, char* err_plugin_buf, size_t err_cap);

  /**
   * Called for each subscribed stage, in manifest order.
   * THREADING: on the session's strand; calls for one session never overlap,
   *   calls for different sessions may run on different threads at once.
   * @return the verdict; POSTERN_VERDICT_PENDING after event_defer(). The
   *   host reads the returned value as a uint32_t, never as the enum (ABI
   *   1.3 contract fix; plugins keep this signature): a value that is not a
   *   postern_verdict_t is a plugin fault, logged with the plugin, the stage
   *   and the value, and handled like a hook that failed (the manifest's
   *   on-failure applies). `result->verdict` of pending_complete is checked
   *   the same way.
   */
  postern_verdict_t (*on_hook)(void* instance, postern_stage_t stage, postern_event_t* ev,
                               postern_hook_result_t* result);

  /**
   * Destroys the instance. No on_hook is running or will run; unfired timers
   * and open DNS queries were completed and queued work has run. Pending
   * handles still held by the plugin must be released before returning.
   * THREADING: a host control thread that runs no session.
   */
  void (*on_destroy)(void* instance);
} postern_plugin_v1_t;

/**
 * The entry point. Returns the plugin's static table, or NULL when the plugin
 * cannot run with this host (it should then log nothing and have no effects).
 * OWNERSHIP: the table is the plugin's, static. THREADING: main thread.
 */
typedef const postern_plugin_v1_t* (*postern_plugin_entry_v1_fn)(const postern_host_api_v1_t* api);

#ifdef __cplusplus
}
#endif

#endif /* POSTERN_ABI_V1_POSTERN_ABI_H */
