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
#define POSTERN_ABI_VERSION_MINOR 0

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
  POSTERN_ERR_FAILED = 4       /* anything else; see the log */
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

/** Flags of a hook result. */
#define POSTERN_RESULT_DISCONNECT 0x1u /* close the session after the reply */
#define POSTERN_RESULT_ERROR 0x2u      /* the hook failed; the host applies on-failure */

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

/** Callback types. THREADING: stated at the host function that takes them. */
typedef void (*postern_dns_cb)(void* user_plugin_ptr, const postern_dns_answer_t* answer);
typedef void (*postern_task_cb)(void* user_plugin_ptr);
/** `fired` is 1 when the delay passed, 0 when cancelled or unloaded first. */
typedef void (*postern_timer_cb)(void* user_plugin_ptr, uint32_t fired);

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
   * THREADING: only inside on_init.
   * @return POSTERN_OK, POSTERN_ERR_INVALID for an unknown stage or one the
   *   descriptor does not list.
   */
  postern_status_t (*subscribe)(postern_host_t* host, postern_stage_t stage);

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
  /** Writes one log line tagged with the plugin's name. THREADING: any thread. */
  void (*log)(postern_host_t* host, postern_log_level_t level, postern_str_t message);

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
   * (POSTERN_DNS_TIMEOUT after `timeout_ms`, 0 = host default).
   * THREADING: any thread. Never blocks.
   */
  postern_status_t (*dns_query)(postern_host_t* host, postern_str_t name, postern_dns_type_t type,
                                uint32_t timeout_ms, postern_dns_cb cb, void* user_plugin_ptr);

  /* --- the event (only during on_hook, on its thread) ----------------------- */

  /**
   * Reads a property of the event. OWNERSHIP: host.
   * LIFETIME: until on_hook returns. @return POSTERN_ERR_NOT_FOUND when unset.
   */
  postern_status_t (*event_get)(postern_event_t* ev, postern_property_t prop,
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
   * @return the verdict; POSTERN_VERDICT_PENDING after event_defer().
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
