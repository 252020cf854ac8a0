/* Returns verdict 42 from on_hook (no postern_verdict_t) at rcpt_to, after
 * asking for a recipient edit it may not make there: the host reads the
 * verdict as an integer (ABI 1.3 contract fix) and treats the hook as
 * failed (on-failure applies). It also logs at level 9, which is no
 * postern_log_level_t, and queries DNS type 0, which is no RR type. */
#include <postern/abi/v1/postern_abi.h>
#include <string.h>

static void never_called(void* user, const postern_dns_answer_t* answer) {
  (void)user;
  (void)answer;
}

static postern_status_t bad_verdict_init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst,
                                         char* err, size_t cap) {
  static const char kLine[] = "bad_verdict: a line at level 9";
  postern_str_t line = {kLine, sizeof kLine - 1};
  postern_str_t name = {"example.test", 12};
  *inst = (void*)0x1;
  api->log(host, 9u, line);
  if (api->dns_query(host, name, 0u, 0, never_called, NULL) != POSTERN_ERR_INVALID) {
    strncpy(err, "dns_query of record type 0 was accepted", cap - 1);
    err[cap - 1] = '\0';
    return POSTERN_ERR_FAILED;
  }
  return api->subscribe(host, POSTERN_STAGE_RCPT_TO);
}

static postern_verdict_t bad_verdict_hook(void* inst, postern_stage_t stage, postern_event_t* ev,
                                          postern_hook_result_t* out) {
  uint32_t raw = 42u;
  postern_verdict_t v;
  (void)inst;
  (void)stage;
  (void)ev;
  (void)out;
  /* What a plugin built by another compiler, or with a bug, may hand back:
   * 42 in the register that carries the enum. */
  memcpy(&v, &raw, sizeof v);
  return v;
}

static void bad_verdict_destroy(void* inst) { (void)inst; }

static const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR,
                                           POSTERN_ABI_VERSION_MINOR,    "bad_verdict",
                                           "1.0.0",                      bad_verdict_init,
                                           bad_verdict_hook,             bad_verdict_destroy};

POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
