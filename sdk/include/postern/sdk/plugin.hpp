#pragma once
/**
 * @file plugin.hpp
 * Writing a plugin: a class with `kName`, `kVersion` and
 * `sdk::Status init(sdk::InitContext&)`, registered with POSTERN_PLUGIN(Class).
 *
 *   class Hello {
 *    public:
 *     static constexpr const char* kName = "hello";
 *     static constexpr const char* kVersion = "1.0.0";
 *     sdk::Status init(sdk::InitContext& ctx) {
 *       ctx.on_data_end([](sdk::Event& ev) { ev.add_header("X-Hello", "world"); return sdk::HookResult{}; });
 *       return sdk::Status::ok();
 *     }
 *   };
 *   POSTERN_PLUGIN(Hello)
 *
 * Exceptions thrown by init or a hook are caught here: init fails with the
 * exception's text; a hook counts as failed (the manifest's on-failure applies).
 */

#include <postern/sdk/command.hpp>
#include <postern/sdk/event.hpp>
#include <postern/sdk/host.hpp>
#include <postern/sdk/service.hpp>
#include <postern/sdk/types.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace postern::sdk {

using Handler = std::function<HookResult(Event&)>;
using HandlerTable = std::array<Handler, kStageCount>;

/** What init() gets: configuration, host services, and hook registration. */
class InitContext {
 public:
  using ServiceList = std::vector<std::unique_ptr<detail::ServiceEntry>>;
  using CommandList = std::vector<std::unique_ptr<detail::CommandEntry>>;

  InitContext(postern_host_t* host, const postern_host_api_v1_t* api, HandlerTable& handlers,
              ServiceList* services = nullptr, CommandList* commands = nullptr)
      : host_(host), api_(api), handlers_(handlers), services_(services), commands_(commands) {}

  Host host() const { return Host(host_, api_); }
  /** The plugin's <plugin> element of the manifest. */
  Config config() const { return Config(api_, api_->config_root(host_)); }
  std::filesystem::path state_dir() const { return host().state_dir(); }

  /**
   * Subscribes `handler` to `stage`. Fails when the descriptor does not list
   * the stage (the host refuses undeclared hooks).
   */
  Status on(Stage stage, Handler handler) {
    if (api_->subscribe(host_, static_cast<uint32_t>(stage)) != POSTERN_OK) {
      // Remembered even if the caller ignores the Status: init then fails.
      refused_ = true;
      return Status::error("the host refused a subscription to a stage the descriptor does not list");
    }
    handlers_[static_cast<size_t>(stage)] = std::move(handler);
    return Status::ok();
  }
  Status on_connect(Handler h) { return on(Stage::Connect, std::move(h)); }
  Status on_helo(Handler h) { return on(Stage::Helo, std::move(h)); }
  Status on_auth(Handler h) { return on(Stage::Auth, std::move(h)); }
  Status on_mail_from(Handler h) { return on(Stage::MailFrom, std::move(h)); }
  Status on_rcpt_to(Handler h) { return on(Stage::RcptTo, std::move(h)); }
  Status on_data_start(Handler h) { return on(Stage::DataStart, std::move(h)); }
  Status on_headers(Handler h) { return on(Stage::Headers, std::move(h)); }
  Status on_data_end(Handler h) { return on(Stage::DataEnd, std::move(h)); }
  Status on_queued(Handler h) { return on(Stage::Queued, std::move(h)); }
  Status on_delivery(Handler h) { return on(Stage::Delivery, std::move(h)); }
  Status on_disconnect(Handler h) { return on(Stage::Disconnect, std::move(h)); }
  Status on_delivered(Handler h) { return on(Stage::Delivered, std::move(h)); }
  Status on_deferred(Handler h) { return on(Stage::Deferred, std::move(h)); }
  Status on_bounced(Handler h) { return on(Stage::Bounced, std::move(h)); }
  Status on_stored(Handler h) { return on(Stage::Stored, std::move(h)); }

  /**
   * Serves a listener protocol (ABI 1.2): every connection on a
   * `<listener protocol="...">` gets a Connection from `factory`. Fails on a
   * host older than ABI 1.2 or when the host refuses the protocol.
   */
  Status serve(std::string_view protocol, ConnectionFactory factory) {
    if (!POSTERN_SDK_API_HAS(api_, view_release) || services_ == nullptr) {
      return Status::error("the host does not offer services (ABI 1.2 needed)");
    }
    auto entry = std::make_unique<detail::ServiceEntry>();
    entry->api = api_;
    entry->factory = std::move(factory);
    if (api_->service_register(host_, to_abi(protocol), detail::service_table(), entry.get()) != POSTERN_OK) {
      return Status::error("the host refused to register service '" + std::string(protocol) + "'");
    }
    services_->push_back(std::move(entry));
    return Status::ok();
  }

  /**
   * Registers an admin command `<area> <verb>` (ABI 1.3): posternd serves it
   * on its control socket (posternctl, the web admin). `handler` runs on a
   * worker-pool thread with the validated arguments and answers through its
   * CommandReply, now or later. Fails on a host older than ABI 1.3 or when
   * the host refuses the spec (a core area, a bad name, a duplicate).
   */
  Status command(const CommandSpec& spec, CommandHandler handler) {
    if (!POSTERN_SDK_API_HAS(api_, command_complete) || commands_ == nullptr) {
      return Status::error("the host does not offer admin commands (ABI 1.3 needed)");
    }
    auto entry = std::make_unique<detail::CommandEntry>();
    entry->api = api_;
    entry->fn = std::move(handler);
    std::vector<postern_command_arg_t> storage;
    const postern_command_spec_t abi_spec = spec.to_abi(storage);
    if (api_->command_register(host_, &abi_spec, &detail::CommandEntry::trampoline, entry.get()) != POSTERN_OK) {
      return Status::error("the host refused command '" + spec.area() + " " + spec.verb() + "'");
    }
    commands_->push_back(std::move(entry));
    return Status::ok();
  }

  /** Whether a subscription was refused (init fails then, whatever it returns). */
  bool refused() const { return refused_; }

 private:
  postern_host_t* host_;
  const postern_host_api_v1_t* api_;
  HandlerTable& handlers_;
  ServiceList* services_ = nullptr;
  CommandList* commands_ = nullptr;
  bool refused_ = false;
};

namespace detail {

template <class P>
struct Instance {
  // Destroyed after `plugin`: the host closed every stream before on_destroy
  // and waited for running command callbacks.
  InitContext::ServiceList services;
  InitContext::CommandList commands;
  P plugin;
  HandlerTable handlers;
  postern_host_t* host = nullptr;
  const postern_host_api_v1_t* api = nullptr;
};

inline void copy_error(char* buf, size_t cap, const std::string& text) {
  if (buf == nullptr || cap == 0) return;
  const size_t n = std::min(cap - 1, text.size());
  std::memcpy(buf, text.data(), n);
  buf[n] = '\0';
}

template <class P>
postern_status_t on_init(postern_host_t* host, const postern_host_api_v1_t* api, void** instance,
                         char* err, size_t cap) {
  try {
    auto inst = std::make_unique<Instance<P>>();
    inst->host = host;
    inst->api = api;
    InitContext ctx(host, api, inst->handlers, &inst->services, &inst->commands);
    Status s = inst->plugin.init(ctx);
    if (s && ctx.refused()) {
      s = Status::error("a hook subscription was refused: its stage is not declared in the descriptor");
    }
    if (!s) {
      copy_error(err, cap, s.message().empty() ? std::string("init failed") : s.message());
      return POSTERN_ERR_FAILED;
    }
    *instance = inst.release();
    return POSTERN_OK;
  } catch (const std::exception& e) {
    copy_error(err, cap, std::string("init threw: ") + e.what());
  } catch (...) {
    copy_error(err, cap, "init threw an unknown exception");
  }
  return POSTERN_ERR_FAILED;
}

template <class P>
postern_verdict_t on_hook(void* instance, postern_stage_t stage, postern_event_t* ev,
                          postern_hook_result_t* out) {
  // The result's strings must outlive this call until the host copies them.
  thread_local HookResult last;
  auto* inst = static_cast<Instance<P>*>(instance);
  const auto index = static_cast<size_t>(stage);
  if (index >= kStageCount || !inst->handlers[index]) return POSTERN_VERDICT_CONTINUE;
  try {
    Event event(inst->host, inst->api, ev, static_cast<Stage>(stage));
    last = inst->handlers[index](event);
  } catch (const std::exception& e) {
    last = HookResult::failed(std::string("hook threw: ") + e.what());
  } catch (...) {
    last = HookResult::failed("hook threw an unknown exception");
  }
  last.to_abi(*out);
  return static_cast<postern_verdict_t>(last.verdict());
}

template <class P>
void on_destroy(void* instance) {
  auto* inst = static_cast<Instance<P>*>(instance);
  postern_host_t* host = inst->host;
  delete inst;
  // The host removed the instance's cron jobs and waited for their runs.
  cron_store().release(host);
  // Likewise its mailbox-event subscriptions (ABI 1.3).
  mailbox_event_store().release(host);
}

/** The plugin's static ABI table. */
template <class P>
const postern_plugin_v1_t* plugin_table() {
  static const postern_plugin_v1_t table = {
      sizeof(postern_plugin_v1_t), POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR,
      P::kName, P::kVersion, &on_init<P>, &on_hook<P>, &on_destroy<P>,
  };
  return &table;
}

}  // namespace detail
}  // namespace postern::sdk

/**
 * Emits the plugin's entry point, postern_plugin_entry_v1, for `Class`.
 * Use once per shared object. Define POSTERN_SDK_NO_ENTRY to compile the
 * plugin's sources into a unit test without the entry symbol.
 */
#ifndef POSTERN_SDK_NO_ENTRY
#define POSTERN_PLUGIN(Class)                                                                 \
  extern "C" POSTERN_ABI_EXPORT const postern_plugin_v1_t* postern_plugin_entry_v1(         \
      const postern_host_api_v1_t* /*api*/) {                                                \
    return ::postern::sdk::detail::plugin_table<Class>();                                    \
  }
#else
#define POSTERN_PLUGIN(Class)
#endif
