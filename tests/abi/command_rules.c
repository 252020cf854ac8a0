/* ABI 1.3 admin commands, seen from a C plugin: command_register's refusals
 * (each attempt's status goes to <state>/results.txt as "name=status"), and
 * three commands: `rules echo` answers at once, `rules late` answers from a
 * timer (another thread, after the callback returned), `rules bad-json`
 * answers with something that is not JSON. */
#include <postern/abi/v1/postern_abi.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const postern_host_api_v1_t* g_api;

static postern_str_t str(const char* s) {
  postern_str_t out = {s, strlen(s)};
  return out;
}

static void echo(void* user, const postern_command_value_t* const* args, size_t n, postern_command_reply_t* reply) {
  (void)user;
  /* Declared: text (string, required, positional), times (integer), loud (boolean), items (list). */
  char json[1024];
  char text[512];
  if (n != 4) {
    g_api->command_complete(reply, POSTERN_COMMAND_FAIL, str(""), str("wrong argument count"));
    return;
  }
  if (args[1]->present && args[1]->integer < 0) {
    g_api->command_complete(reply, POSTERN_COMMAND_USAGE, str(""), str("times must be >= 0"));
    return;
  }
  snprintf(json, sizeof json, "{\"text\":\"%.*s\",\"times\":%lld,\"loud\":%s,\"items\":%zu,\"first\":\"%.*s\"}",
           (int)args[0]->text.len, args[0]->text.ptr, (long long)(args[1]->present ? args[1]->integer : 1),
           args[2]->integer ? "true" : "false", args[3]->item_count,
           args[3]->item_count ? (int)args[3]->items[0].len : 0, args[3]->item_count ? args[3]->items[0].ptr : "");
  snprintf(text, sizeof text, "echo %.*s\n", (int)args[0]->text.len, args[0]->text.ptr);
  g_api->command_complete(reply, POSTERN_COMMAND_OK, str(json), str(text));
}

static void later(void* user, uint32_t fired) {
  postern_command_reply_t* reply = (postern_command_reply_t*)user;
  g_api->command_complete(reply, fired ? POSTERN_COMMAND_OK : POSTERN_COMMAND_FAIL, str("{\"late\":true}"),
                          str(fired ? "" : "unloaded"));
}

static void late(void* user, const postern_command_value_t* const* args, size_t n, postern_command_reply_t* reply) {
  (void)args;
  (void)n;
  postern_host_t* host = (postern_host_t*)user;
  if (g_api->timer_start(host, 20, later, reply) == 0) {
    g_api->command_complete(reply, POSTERN_COMMAND_FAIL, str(""), str("no timer"));
  }
}

static void bad_json(void* user, const postern_command_value_t* const* args, size_t n, postern_command_reply_t* reply) {
  (void)user;
  (void)args;
  (void)n;
  g_api->command_complete(reply, POSTERN_COMMAND_OK, str("{not json"), str(""));
}

static postern_status_t reg(postern_host_t* host, const char* area, const char* verb, const postern_command_arg_t* a,
                            size_t count, postern_command_cb fn) {
  postern_command_spec_t spec;
  memset(&spec, 0, sizeof spec);
  spec.struct_size = sizeof spec;
  spec.area = str(area);
  spec.verb = str(verb);
  spec.summary = str("a test command");
  spec.args = a;
  spec.arg_count = count;
  return g_api->command_register(host, &spec, fn, host);
}

static postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst, char* err,
                             size_t cap) {
  (void)err;
  (void)cap;
  *inst = NULL;
  g_api = api;
  postern_str_t dir = api->state_dir(host);
  char path[4096];
  snprintf(path, sizeof path, "%.*s/results.txt", (int)dir.len, dir.ptr);
  FILE* f = fopen(path, "w");
  if (f == NULL) return POSTERN_ERR_FAILED;
  static const postern_command_arg_t kEcho[] = {
      {sizeof(postern_command_arg_t), POSTERN_ARG_STRING, POSTERN_ARG_REQUIRED | POSTERN_ARG_POSITIONAL,
       {"text", 4}, {"what to echo", 12}},
      {sizeof(postern_command_arg_t), POSTERN_ARG_INTEGER, 0, {"times", 5}, {"how often", 9}},
      {sizeof(postern_command_arg_t), POSTERN_ARG_BOOLEAN, 0, {"loud", 4}, {"louder", 6}},
      {sizeof(postern_command_arg_t), POSTERN_ARG_STRING_LIST, 0, {"items", 5}, {"repeatable", 10}},
  };
  static const postern_command_arg_t kPositionalFlag[] = {
      {sizeof(postern_command_arg_t), POSTERN_ARG_BOOLEAN, POSTERN_ARG_POSITIONAL, {"flag", 4}, {"", 0}}};
  static const postern_command_arg_t kBadType[] = {
      {sizeof(postern_command_arg_t), 99, 0, {"x", 1}, {"", 0}}};
  fprintf(f, "core_area=%d\n", (int)reg(host, "user", "add", NULL, 0, echo));
  fprintf(f, "bad_name=%d\n", (int)reg(host, "Rules", "echo", NULL, 0, echo));
  fprintf(f, "empty_verb=%d\n", (int)reg(host, "rules", "", NULL, 0, echo));
  fprintf(f, "positional_flag=%d\n", (int)reg(host, "rules", "flag", kPositionalFlag, 1, echo));
  fprintf(f, "bad_type=%d\n", (int)reg(host, "rules", "typed", kBadType, 1, echo));
  fprintf(f, "no_callback=%d\n", (int)reg(host, "rules", "none", NULL, 0, NULL));
  fprintf(f, "echo=%d\n", (int)reg(host, "rules", "echo", kEcho, 4, echo));
  fprintf(f, "again=%d\n", (int)reg(host, "rules", "echo", kEcho, 4, echo));
  fprintf(f, "late=%d\n", (int)reg(host, "rules", "late", NULL, 0, late));
  fprintf(f, "bad_json=%d\n", (int)reg(host, "rules", "bad-json", NULL, 0, bad_json));
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
                                           POSTERN_ABI_VERSION_MINOR, "command_rules", "1.0.0", init, hook, destroy};

POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t* api) {
  (void)api;
  return &kTable;
}
