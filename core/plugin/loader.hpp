#pragma once
// Loads one plugin: descriptor first (no plugin code runs before it passes),
// then the shared object with Boost.DLL (RTLD_LOCAL | RTLD_NOW), the entry
// symbol, the table checks, and on_init. Every refusal is one line naming the
// file and the reason; the caller logs it and goes on without the plugin.

#include "core/control/command.hpp"
#include "core/plugin/descriptor.hpp"
#include "core/plugin/host_services.hpp"
#include "core/scheduler/scheduler.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <boost/dll/shared_library.hpp>
#include <pugixml.hpp>

#include <atomic>
#include <bitset>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

namespace postern::core::plugin {
class LoadedPlugin;
}

/** The opaque postern_host_t: one per plugin instance. */
struct postern_host {
  postern::core::plugin::LoadedPlugin* plugin = nullptr;
};

namespace postern::core::plugin {

struct TimerState;
struct DnsCall;
struct ConnectCall;

/**
 * One stream_post call not yet run (ABI 1.2): it runs exactly once, on the
 * stream's strand, or, when the I/O context already stopped at unload, on
 * the unloading thread (core/service/stream.cpp).
 */
struct PostedCall {
  postern_task_cb fn = nullptr;
  void* user = nullptr;
  std::atomic<bool> done{false};
  /** Runs fn unless it already ran. @return whether this call ran it. */
  bool run() {
    if (done.exchange(true)) return false;
    try {
      fn(user);
    } catch (...) {
    }
    return true;
  }
};

/**
 * What a plugin has outstanding with the host: timers, DNS queries, cron jobs,
 * and calls into its code (queued work, running callbacks and jobs). At unload
 * the host closes it, completes every timer (fired = 0) and query (CANCELLED)
 * itself, removes its cron jobs, and waits for running calls, so no plugin
 * code runs after on_destroy or once unmapped.
 */
struct Outstanding {
  std::mutex mutex;
  std::condition_variable idle;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, std::shared_ptr<TimerState>> timers;
  std::unordered_map<uint64_t, std::shared_ptr<DnsCall>> dns;
  /** cron_add ids -> scheduler job ids (0 while being registered). */
  std::unordered_map<uint64_t, uint64_t> crons;
  scheduler::WeakScheduler scheduler;  // where `crons` live; remove() is a no-op once it is gone
  /** stream_post calls queued to a strand and not yet run (counted in in_flight). */
  std::unordered_map<uint64_t, std::shared_ptr<PostedCall>> posts;
  /**
   * Live service streams of the plugin (core/service): id -> a function that
   * ends the stream with on_close(SHUTDOWN). A stream removes itself after its
   * on_close returned; unload ends them all and waits for the map to empty.
   */
  std::unordered_map<uint64_t, std::function<void()>> streams;
  bool streams_closed = false;  // unloading: no new stream is admitted
  /**
   * stream_connect calls whose on_connected has not run (ABI 1.3). Whoever
   * erases an entry runs its callback (host_api_connect.cpp); unload takes
   * them all and completes them with CANCELLED before ending the streams.
   */
  std::unordered_map<uint64_t, std::shared_ptr<ConnectCall>> connects;
  size_t in_flight = 0;  // queued work items + callbacks running in plugin code
  bool closed = false;

  /** Counts a call into plugin code; false once unloading started. */
  bool enter() {
    std::lock_guard lock(mutex);
    if (closed) return false;
    ++in_flight;
    return true;
  }
  void leave() {
    std::lock_guard lock(mutex);
    if (--in_flight == 0) idle.notify_all();
  }
};

/** A protocol a service plugin serves (service_register, ABI 1.2). */
struct ServiceRegistration {
  std::string protocol;
  postern_service_v1_t table{};  // copied; members the plugin's table lacks stay null
  void* user = nullptr;
};

/** An admin command a plugin registered (command_register, ABI 1.3; core/plugin/commands.hpp). */
struct CommandRegistration {
  control::CommandSpec spec;
  postern_command_cb fn = nullptr;
  void* user = nullptr;
};

struct LoadRequest {
  std::filesystem::path library;      // <dir>/<name>.so
  std::filesystem::path descriptor;   // <dir>/<name>.plugin.xml
  std::string name;                   // the manifest's name
  pugi::xml_node config;              // the <plugin> element; must outlive the plugin
  std::function<uint32_t(const pugi::xml_node&)> line_of;  // manifest line numbers
  /** Checks a license feature; returns empty when granted, else why not. */
  std::function<std::string(const std::string& feature)> license_check;
};

class LoadedPlugin {
 public:
  /** @return the plugin, or a one-line reason it was refused. Never throws. */
  static std::variant<std::unique_ptr<LoadedPlugin>, std::string> load(const LoadRequest& request,
                                                                       const HostServices& services);
  /** Runs on_destroy (after quiesce()) and unmaps the library. */
  ~LoadedPlugin();

  /**
   * Ends the plugin's service streams (on_close SHUTDOWN) and waits for their
   * last callbacks, then closes the plugin to new callbacks, completes its
   * timers (fired = 0) and DNS queries (CANCELLED), removes its cron jobs,
   * runs stream_post calls the stopped I/O context will never run, and waits
   * up to 30 s for calls still running in its code. @return false if they did
   * not finish: the caller must leak the object (its code and host handle may
   * still be in use).
   */
  bool quiesce();
  LoadedPlugin(const LoadedPlugin&) = delete;
  LoadedPlugin& operator=(const LoadedPlugin&) = delete;

  const std::string& name() const { return descriptor_.name; }
  const Descriptor& descriptor() const { return descriptor_; }
  bool subscribed(event::Stage stage) const { return subscribed_.test(static_cast<size_t>(stage)); }

  /**
   * Calls on_hook; an exception escaping the plugin is caught and reported as
   * a failed hook (POSTERN_RESULT_ERROR). The verdict is read as the integer
   * the plugin returned, never as the enum (an out-of-range value is the
   * caller's to refuse: chain.cpp's apply_answer).
   */
  uint32_t call(uint32_t stage, postern_event_t* ev, postern_hook_result_t* result) const;

  // For host_api.cpp.
  const HostServices& services() const { return services_; }
  const pugi::xml_node& config() const { return config_; }
  uint32_t line_of(const pugi::xml_node& node) const { return line_of_ ? line_of_(node) : 0; }
  const std::string& state_dir() const { return state_dir_; }
  bool initializing() const { return initializing_; }
  /** subscribe() of the host API: `stage` as the plugin passed it, range-checked. */
  postern_status_t subscribe(uint32_t stage);
  const std::shared_ptr<Outstanding>& outstanding() const { return outstanding_; }

  /**
   * service_register (ABI 1.2): only during on_init, only for a descriptor of
   * kind "service"; refuses an empty protocol, "smtp", "submission", a table
   * smaller than ABI 1.2's or without on_open/on_data/on_close, and a protocol
   * this plugin registered already.
   */
  postern_status_t register_service(std::string_view protocol, const postern_service_v1_t* svc, void* user);
  /** The registration for `protocol`, or null. Immutable after load. */
  const ServiceRegistration* service(std::string_view protocol) const;
  const std::map<std::string, ServiceRegistration, std::less<>>& services_registered() const { return registered_; }

  /** Admin commands (ABI 1.3): added only during on_init (host_api_command.cpp), immutable after load. */
  std::vector<CommandRegistration>& commands() { return commands_; }
  const std::vector<CommandRegistration>& commands() const { return commands_; }

 private:
  LoadedPlugin() = default;

  // Declared first so that it is destroyed last: on_destroy runs before the
  // library is unmapped.
  boost::dll::shared_library library_;
  Descriptor descriptor_;
  HostServices services_;
  pugi::xml_node config_;
  std::function<uint32_t(const pugi::xml_node&)> line_of_;
  std::string state_dir_;
  const postern_plugin_v1_t* table_ = nullptr;
  void* instance_ = nullptr;
  postern_host host_{};
  std::bitset<64> subscribed_;
  std::map<std::string, ServiceRegistration, std::less<>> registered_;
  std::vector<CommandRegistration> commands_;
  std::shared_ptr<Outstanding> outstanding_ = std::make_shared<Outstanding>();
  bool initializing_ = false;
  bool quiesced_ = false;
};

/** The host API table handed to every plugin (host_api.cpp). */
const postern_host_api_v1_t* host_api();

/** Lets config_line() map nodes of `any_node`'s document to manifest lines. */
void register_line_map(const pugi::xml_node& any_node, std::function<uint32_t(const pugi::xml_node&)> fn);

}  // namespace postern::core::plugin
