/*
 * A filter built against an OLD postern_abi.h (tests/abi/compat/v1_0 or v1_2,
 * byte-identical to the header recorded in sdk/abi-lock.txt for that version),
 * loaded by today's host to prove that minor versions only append
 * (tests/unit/plugin/abi_compat_test.cpp). COMPAT_NAME names the build.
 *   rcpt_to:  "blocked@..." is refused with a text naming both ABI versions.
 *   data_end: adds "X-Compat: <name>", defers, and completes from a thread
 *             with a symbol (the pending path as a 1.0 plugin knows it).
 * Under ABI >= 1.1 headers it also sets a session tag at rcpt_to.
 */
#include <postern/abi/v1/postern_abi.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const postern_host_api_v1_t* g_api;
static char g_text[128];

static postern_str_t str(const char* s) {
  postern_str_t r = {s, strlen(s)};
  return r;
}

static postern_status_t compat_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst,
                                    char* err, size_t cap) {
  (void)err;
  (void)cap;
  g_api = api;
  *inst = host;
  snprintf(g_text, sizeof g_text, "compat %s built for ABI %d.%d, host %u.%u", COMPAT_NAME,
           POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR, (unsigned)api->abi_major,
           (unsigned)api->abi_minor);
  postern_status_t s = api->subscribe(host, POSTERN_STAGE_RCPT_TO);
  return s != POSTERN_OK ? s : api->subscribe(host, POSTERN_STAGE_DATA_END);
}

static void* complete_later(void* arg) {
  postern_pending_t* p = (postern_pending_t*)arg;
  struct timespec ts = {0, 10 * 1000 * 1000};
  nanosleep(&ts, NULL);
  g_api->pending_add_symbol(p, str("COMPAT_LATE"), 0.25, str(COMPAT_NAME));
  postern_hook_result_t r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  r.verdict = POSTERN_VERDICT_CONTINUE;
  g_api->pending_complete(p, &r);
  g_api->pending_release(p);
  return NULL;
}

static postern_verdict_t compat_hook(void* inst, postern_stage_t stage, postern_event_t* ev,
                                     postern_hook_result_t* out) {
  (void)inst;
  if (stage == POSTERN_STAGE_RCPT_TO) {
    postern_str_t rcpt;
    if (g_api->event_get(ev, POSTERN_PROP_RCPT, &rcpt) != POSTERN_OK) return POSTERN_VERDICT_TEMPFAIL;
#if POSTERN_ABI_VERSION_MINOR >= 1
    g_api->event_tag_set(ev, str("compat.seen"), str(COMPAT_NAME));
#endif
    if (rcpt.len >= 8 && memcmp(rcpt.ptr, "blocked@", 8) == 0) {
      out->smtp_code = 550;
      out->enhanced = str("5.7.1");
      out->text = str(g_text);
      return POSTERN_VERDICT_REJECT;
    }
    return POSTERN_VERDICT_CONTINUE;
  }
  if (g_api->event_header_add(ev, str("X-Compat"), str(COMPAT_NAME), 0) != POSTERN_OK) return POSTERN_VERDICT_TEMPFAIL;
  postern_pending_t* p = g_api->event_defer(ev);
  if (p == NULL) return POSTERN_VERDICT_TEMPFAIL;
  pthread_t t;
  if (pthread_create(&t, NULL, complete_later, p) != 0) {
    g_api->pending_release(p);
    return POSTERN_VERDICT_TEMPFAIL;
  }
  pthread_detach(t);
  return POSTERN_VERDICT_PENDING;
}

static void compat_destroy(void* inst) { (void)inst; }

static const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR,
                                           POSTERN_ABI_VERSION_MINOR, COMPAT_NAME, "1.0.0", compat_init,
                                           compat_hook, compat_destroy};

__attribute__((visibility("default"))) const postern_plugin_v1_t* postern_plugin_entry_v1(
    const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
