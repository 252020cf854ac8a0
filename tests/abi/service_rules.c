/* ABI 1.2 service_register rules, seen from a kind="service" plugin: each
 * attempt's status goes to <state>/results.txt as "name=status" lines. */
#include <postern/abi/v1/postern_abi.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static void* svc_open(void* user, postern_stream_t* s) {
  (void)user;
  (void)s;
  return NULL;
}
static void svc_data(void* conn, postern_bytes_t data) {
  (void)conn;
  (void)data;
}
static void svc_close(void* conn, postern_close_reason_t reason) {
  (void)conn;
  (void)reason;
}

static const postern_service_v1_t kService = {sizeof(postern_service_v1_t), svc_open, svc_data, NULL, NULL,
                                              svc_close};

static postern_str_t str(const char* s) {
  postern_str_t out = {s, strlen(s)};
  return out;
}

static postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char* err,
                             size_t cap) {
  (void)err;
  (void)cap;
  *inst = NULL;
  postern_str_t dir = api->state_dir(host);
  char path[4096];
  snprintf(path, sizeof path, "%.*s/results.txt", (int)dir.len, dir.ptr);
  FILE* f = fopen(path, "w");
  if (f == NULL) return POSTERN_ERR_FAILED;
  postern_service_v1_t small = kService;
  small.struct_size = (uint32_t)offsetof(postern_service_v1_t, on_close);
  postern_service_v1_t no_data = kService;
  no_data.on_data = NULL;
  fprintf(f, "empty=%d\n", (int)api->service_register(host, str(""), &kService, NULL));
  fprintf(f, "smtp=%d\n", (int)api->service_register(host, str("smtp"), &kService, NULL));
  fprintf(f, "submission=%d\n", (int)api->service_register(host, str("submission"), &kService, NULL));
  fprintf(f, "small=%d\n", (int)api->service_register(host, str("rules"), &small, NULL));
  fprintf(f, "null=%d\n", (int)api->service_register(host, str("rules"), NULL, NULL));
  fprintf(f, "no_data=%d\n", (int)api->service_register(host, str("rules"), &no_data, NULL));
  fprintf(f, "first=%d\n", (int)api->service_register(host, str("rules"), &kService, NULL));
  fprintf(f, "again=%d\n", (int)api->service_register(host, str("rules"), &kService, NULL));
  fprintf(f, "second=%d\n", (int)api->service_register(host, str("rules2"), &kService, NULL));
  fclose(f);
  return POSTERN_OK;
}
static postern_verdict_t hook(void* inst, postern_stage_t stage, postern_event_t* ev, postern_hook_result_t* r) {
  (void)inst;
  (void)stage;
  (void)ev;
  (void)r;
  return POSTERN_VERDICT_CONTINUE;
}
static void destroy(void* inst) { (void)inst; }

static const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR,
                                           POSTERN_ABI_VERSION_MINOR, "service_rules", "1.0.0", init, hook, destroy};

POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
