// Leaves a long timer, a DNS query and a slow work item outstanding; each
// callback appends a line to <state>/callbacks.log, as does on_destroy, so a
// test can check that unloading completes them first, exactly once.
#include <postern/abi/v1/postern_abi.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

namespace {

struct Instance {
  std::string log_path;
};

void append(const Instance* inst, const std::string& line) {
  if (std::FILE* f = std::fopen(inst->log_path.c_str(), "a")) {
    std::fprintf(f, "%s\n", line.c_str());
    std::fclose(f);
  }
}

void on_timer(void* user, uint32_t fired) { append(static_cast<Instance*>(user), "timer fired=" + std::to_string(fired)); }
void on_dns(void* user, const postern_dns_answer_t* a) {
  append(static_cast<Instance*>(user), "dns status=" + std::to_string(a->status));
}
void on_work(void* user) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  append(static_cast<Instance*>(user), "work done");
}

postern_status_t init(postern_host_t* host, const postern_host_api_v1_t* api, void** inst_out, char*, size_t) {
  auto* inst = new Instance();
  postern_str_t dir = api->state_dir(host);
  inst->log_path = std::string(dir.ptr, dir.len) + "/callbacks.log";
  *inst_out = inst;
  api->subscribe(host, POSTERN_STAGE_CONNECT);
  if (api->timer_start(host, 60'000, on_timer, inst) == 0) append(inst, "timer refused");
  const char* name = "slow.example.test";
  if (api->dns_query(host, postern_str_t{name, 17}, POSTERN_DNS_A, 60'000, on_dns, inst) != POSTERN_OK)
    append(inst, "dns refused");
  if (api->post_work(host, on_work, inst) != POSTERN_OK) append(inst, "work refused");
  return POSTERN_OK;
}
postern_verdict_t hook(void*, postern_stage_t, postern_event_t*, postern_hook_result_t*) {
  return POSTERN_VERDICT_CONTINUE;
}
void destroy(void* p) {
  auto* inst = static_cast<Instance*>(p);
  append(inst, "destroyed");
  delete inst;
}
const postern_plugin_v1_t kTable = {sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR,
                                    "callbacks", "1.0.0", init, hook, destroy};

}  // namespace

extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(const postern_host_api_v1_t*) {
  return &kTable;
}
