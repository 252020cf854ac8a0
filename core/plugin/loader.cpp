#include "core/plugin/loader.hpp"

#include "core/log/log.hpp"
#include "core/plugin/host_internal.hpp"

#include <boost/asio/post.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>

namespace postern::core::plugin {
namespace {

// The members a v1.0 table must have; later minors only append.
constexpr size_t kMinPluginTableSize = offsetof(postern_plugin_v1_t, on_destroy) + sizeof(void*);

}  // namespace

std::variant<std::unique_ptr<LoadedPlugin>, std::string> LoadedPlugin::load(const LoadRequest& request,
                                                                            const HostServices& services) {
  const std::string lib_name = request.library.string();
  auto refuse = [&](const std::string& why) -> std::variant<std::unique_ptr<LoadedPlugin>, std::string> {
    return fmt::format("{}: refused: {}", lib_name, why);
  };

  // 1. The descriptor, before any plugin code runs.
  DescriptorResult dr = read_descriptor(request.descriptor);
  if (!dr.descriptor) return fmt::format("{}: refused: {}", lib_name, dr.error);
  Descriptor& desc = *dr.descriptor;
  if (desc.name != request.name) {
    return refuse(fmt::format("descriptor name '{}' differs from the manifest's '{}'", desc.name, request.name));
  }
  if (std::string why = abi_incompatibility(desc.abi_major, desc.abi_minor); !why.empty()) {
    return refuse(fmt::format("descriptor declares {}", why));
  }
  if (!desc.license_feature.empty()) {
    const std::string why = request.license_check ? request.license_check(desc.license_feature)
                                                  : std::string("no license installed");
    if (!why.empty()) return refuse(fmt::format("license feature '{}' not granted: {}", desc.license_feature, why));
  }
  std::error_code fs_ec;
  if (!std::filesystem::is_regular_file(request.library, fs_ec)) return refuse("shared object missing");

  // 2. The shared object. RTLD_NOW: an unresolved symbol fails here, not in a session.
  auto plugin = std::unique_ptr<LoadedPlugin>(new LoadedPlugin());
  boost::system::error_code ec;
  plugin->library_.load(request.library,
                        boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now, ec);
  if (ec) return refuse(fmt::format("cannot load: {}", ec.message()));
  if (!plugin->library_.has(POSTERN_PLUGIN_ENTRY_SYMBOL)) {
    return refuse(fmt::format("entry symbol {} missing", POSTERN_PLUGIN_ENTRY_SYMBOL));
  }
  auto entry = plugin->library_.get<std::remove_pointer_t<postern_plugin_entry_v1_fn>>(POSTERN_PLUGIN_ENTRY_SYMBOL);

  const postern_plugin_v1_t* table = nullptr;
  try {
    table = entry(host_api());
  } catch (const std::exception& e) {
    return refuse(fmt::format("entry point threw: {}", e.what()));
  } catch (...) {
    return refuse("entry point threw an unknown exception");
  }
  if (table == nullptr) return refuse("entry point returned no plugin table");
  if (table->struct_size < kMinPluginTableSize) {
    return refuse(fmt::format("plugin table too small ({} octets)", table->struct_size));
  }
  if (std::string why = abi_incompatibility(table->abi_major, table->abi_minor); !why.empty()) {
    return refuse(fmt::format("built for {}", why));
  }
  if (table->abi_major != desc.abi_major) {
    return refuse(fmt::format("descriptor ABI {}.{} and built ABI {}.{} differ", desc.abi_major, desc.abi_minor,
                              table->abi_major, table->abi_minor));
  }
  const std::string table_name = table->name != nullptr ? table->name : "";
  if (table_name != desc.name) {
    return refuse(fmt::format("plugin calls itself '{}' but its descriptor says '{}'", table_name, desc.name));
  }
  if (table->on_init == nullptr || table->on_hook == nullptr || table->on_destroy == nullptr) {
    return refuse("plugin table lacks on_init, on_hook or on_destroy");
  }

  plugin->descriptor_ = std::move(desc);
  plugin->services_ = services;
  plugin->config_ = request.config;
  plugin->line_of_ = request.line_of;
  if (request.config && request.line_of) register_line_map(request.config, request.line_of);
  plugin->table_ = table;
  plugin->host_.plugin = plugin.get();

  // 3. State directory and init.
  if (!services.state_root.empty()) {
    const auto dir = services.state_root / plugin->descriptor_.name;
    std::filesystem::create_directories(dir, fs_ec);
    if (fs_ec) return refuse(fmt::format("cannot create state directory {}: {}", dir.string(), fs_ec.message()));
    plugin->state_dir_ = dir.string();
  }
  char err[512] = {0};
  postern_status_t st = POSTERN_ERR_FAILED;
  plugin->initializing_ = true;
  try {
    st = table->on_init(&plugin->host_, host_api(), &plugin->instance_, err, sizeof err);
  } catch (const std::exception& e) {
    plugin->instance_ = nullptr;
    return refuse(fmt::format("init threw: {}", e.what()));
  } catch (...) {
    plugin->instance_ = nullptr;
    return refuse("init threw an unknown exception");
  }
  plugin->initializing_ = false;
  if (st != POSTERN_OK) {
    plugin->instance_ = nullptr;  // on_destroy is not called after a failed init
    err[sizeof err - 1] = '\0';
    return refuse(fmt::format("init failed: {}", err[0] != '\0' ? err : "no reason given"));
  }
  return plugin;
}

bool LoadedPlugin::quiesce() {
  if (quiesced_) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // Service streams first (ABI 1.2): each ends with on_close(SHUTDOWN) on its
  // strand, and their callbacks are plugin code that must finish before the
  // rest of the plugin is taken down.
  std::vector<std::function<void()>> end_streams;
  std::unordered_map<uint64_t, std::shared_ptr<ConnectCall>> connects;
  {
    std::lock_guard lock(outstanding_->mutex);
    outstanding_->streams_closed = true;
    for (auto& [id, end] : outstanding_->streams) end_streams.push_back(end);
    connects.swap(outstanding_->connects);
  }
  // Outbound connects still in progress (ABI 1.3): on_connected(CANCELLED)
  // here, once; a connect that completes later finds no entry and is dropped.
  for (auto& [id, call] : connects) cancel_connect_call(*call);
  connects.clear();
  for (auto& end : end_streams) end();
  end_streams.clear();
  {
    std::unique_lock lock(outstanding_->mutex);
    if (!outstanding_->idle.wait_until(lock, deadline, [this] { return outstanding_->streams.empty(); })) {
      log::error("plugin", "name={} still has {} stream(s) open after 30 s; not unloading it", descriptor_.name,
                 outstanding_->streams.size());
      return false;
    }
  }
  // postern_abi.h: unfired timers run once with fired = 0, open DNS queries
  // complete with CANCELLED and cron jobs are removed, before on_destroy;
  // then wait for calls
  // still running in the plugin's code (queued work included).
  std::unordered_map<uint64_t, std::shared_ptr<TimerState>> timers;
  std::unordered_map<uint64_t, std::shared_ptr<DnsCall>> dns;
  std::unordered_map<uint64_t, uint64_t> crons;
  std::unordered_map<uint64_t, std::shared_ptr<PostedCall>> posts;
  scheduler::WeakScheduler sched;
  {
    std::lock_guard lock(outstanding_->mutex);
    outstanding_->closed = true;
    timers.swap(outstanding_->timers);
    dns.swap(outstanding_->dns);
    crons.swap(outstanding_->crons);
    posts.swap(outstanding_->posts);
    sched = outstanding_->scheduler;
  }
  // stream_post promises fn runs exactly once. Once the I/O context stopped
  // (posternd's shutdown) the strand never runs again: run the rest here; no
  // stream callback can overlap, nothing runs on the strands any more.
  if (services_.io != nullptr && services_.io->stopped()) {
    for (auto& [id, call] : posts) {
      if (call->run()) outstanding_->leave();
    }
  }
  posts.clear();
  // A job that starts after this sees `closed` and returns without calling
  // the plugin; one already running is counted in in_flight and waited for.
  for (auto& [id, job] : crons) {
    if (job != 0) sched.remove(job);
  }
  for (auto& [id, state] : timers) {
    state->finish(0);
    boost::asio::post(state->timer.get_executor(), [s = state] { s->timer.cancel(); });
  }
  for (auto& [id, call] : dns) cancel_dns_call(*call);
  std::unique_lock lock(outstanding_->mutex);
  if (!outstanding_->idle.wait_until(lock, deadline, [this] { return outstanding_->in_flight == 0; })) {
    log::error("plugin", "name={} still has {} call(s) running after 30 s; not unloading it", descriptor_.name,
               outstanding_->in_flight);
    return false;
  }
  quiesced_ = true;
  return true;
}

LoadedPlugin::~LoadedPlugin() {
  if (!quiesce()) {
    // Unmapping code that may still run would crash the daemon. (Chain
    // leaks the whole object in this case, so the plugin's host handle stays
    // valid too; here we can at least keep the code mapped.)
    new boost::dll::shared_library(std::move(library_));
    return;
  }
  if (instance_ != nullptr && table_ != nullptr) {
    try {
      table_->on_destroy(instance_);
    } catch (...) {
      log::error("plugin", "name={} on_destroy threw; ignored", descriptor_.name);
    }
  }
}

postern_status_t LoadedPlugin::subscribe(uint32_t stage) {
  if (!initializing_) return POSTERN_ERR_UNAVAILABLE;
  if (stage >= event::kStageCount) {
    log::error("plugin", "name={} subscribes to stage {}, which is not a postern_stage_t", descriptor_.name, stage);
    return POSTERN_ERR_INVALID;
  }
  if (!descriptor_.declares(static_cast<event::Stage>(stage))) {
    log::error("plugin", "name={} subscribes to {} which its descriptor does not declare", descriptor_.name,
               event::stage_name(static_cast<event::Stage>(stage)));
    return POSTERN_ERR_INVALID;
  }
  subscribed_.set(static_cast<size_t>(stage));
  return POSTERN_OK;
}

postern_status_t LoadedPlugin::register_service(std::string_view protocol, const postern_service_v1_t* svc,
                                                void* user) {
  if (!initializing_) return POSTERN_ERR_UNAVAILABLE;
  if (descriptor_.kind != Kind::Service) {
    log::error("plugin", "name={} registers service '{}' but its descriptor is not kind=\"service\"", descriptor_.name,
               protocol);
    return POSTERN_ERR_INVALID;
  }
  if (protocol.empty() || protocol == "smtp" || protocol == "submission") {
    log::error("plugin", "name={} may not serve protocol '{}'", descriptor_.name, protocol);
    return POSTERN_ERR_INVALID;
  }
  // The three calls every stream needs; on_tls and on_drain may be null.
  constexpr size_t kMinTable = offsetof(postern_service_v1_t, on_close) + sizeof(void*);
  if (svc == nullptr || svc->struct_size < kMinTable || svc->on_open == nullptr || svc->on_data == nullptr ||
      svc->on_close == nullptr) {
    log::error("plugin", "name={} service '{}': table missing or too small", descriptor_.name, protocol);
    return POSTERN_ERR_INVALID;
  }
  if (registered_.count(protocol) != 0) {
    log::error("plugin", "name={} registers service '{}' twice", descriptor_.name, protocol);
    return POSTERN_ERR_INVALID;
  }
  ServiceRegistration reg;
  reg.protocol = std::string(protocol);
  std::memcpy(&reg.table, svc, std::min<size_t>(svc->struct_size, sizeof reg.table));
  reg.table.struct_size = sizeof reg.table;
  reg.user = user;
  registered_.emplace(reg.protocol, std::move(reg));
  log::debug("plugin", "name={} serves protocol {}", descriptor_.name, protocol);
  return POSTERN_OK;
}

const ServiceRegistration* LoadedPlugin::service(std::string_view protocol) const {
  auto it = registered_.find(protocol);
  return it != registered_.end() ? &it->second : nullptr;
}

uint32_t LoadedPlugin::call(uint32_t stage, postern_event_t* ev, postern_hook_result_t* result) const {
  // on_hook's integer mirror: the same function with its enum parameter and
  // return value as the 32-bit integers they are on every ABI we build for
  // (postern_abi.h: enums are passed as fixed-width integers), so a value
  // outside postern_verdict_t is never loaded into the enum type.
  using OnHookAsInteger = uint32_t (*)(void*, uint32_t, postern_event_t*, postern_hook_result_t*);
  static_assert(sizeof(postern_verdict_t) == sizeof(uint32_t) && sizeof(postern_stage_t) == sizeof(uint32_t));
  const auto on_hook = reinterpret_cast<OnHookAsInteger>(reinterpret_cast<void (*)()>(table_->on_hook));
  try {
    return on_hook(instance_, stage, ev, result);
  } catch (...) {
    // A plugin not built with our SDK wrapper may still throw; it must not
    // take the session (or the daemon) down.
    *result = postern_hook_result_t{};
    result->struct_size = sizeof *result;
    result->flags = POSTERN_RESULT_ERROR;
    return POSTERN_VERDICT_CONTINUE;
  }
}

}  // namespace postern::core::plugin
