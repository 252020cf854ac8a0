// ABI 1.3 admin commands: command_register stores the plugin's spec on its
// LoadedPlugin (only during on_init); plugin_commands() turns the current
// chain's registrations into registry commands; command_complete answers.
#include "core/plugin/commands.hpp"

#include "core/control/registry.hpp"
#include "core/log/log.hpp"
#include "core/plugin/loader.hpp"

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>

/** The opaque postern_command_reply_t: one call's answer channel. */
struct postern_command_reply {
  std::string plugin;
  postern::core::control::Format format = postern::core::control::Format::Text;
  postern::core::control::Done done;
};

namespace postern::core::plugin {

namespace {

std::string_view sv(postern_str_t s) { return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view{}; }
postern_str_t abi(std::string_view s) { return postern_str_t{s.data(), s.size()}; }

constexpr std::string_view kCoreAreas[] = {"domain", "user",    "alias",   "list",     "router", "queue",
                                           "relay",  "plugins", "help",    "commands", "reload", "log"};

}  // namespace

bool core_command_area(std::string_view area) {
  return std::find(std::begin(kCoreAreas), std::end(kCoreAreas), area) != std::end(kCoreAreas);
}

namespace abi13 {

postern_status_t command_register(postern_host_t* host, const postern_command_spec_t* spec, postern_command_cb fn,
                                  void* user) {
  if (host == nullptr || host->plugin == nullptr) return POSTERN_ERR_INVALID;
  LoadedPlugin& p = *host->plugin;
  if (!p.initializing()) return POSTERN_ERR_UNAVAILABLE;
  constexpr size_t kMinSpec = offsetof(postern_command_spec_t, arg_count) + sizeof(size_t);
  if (spec == nullptr || spec->struct_size < kMinSpec || fn == nullptr ||
      (spec->args == nullptr && spec->arg_count != 0) || spec->arg_count > 64) {
    log::error("plugin", "name={} command_register: spec missing, too small or without a callback", p.name());
    return POSTERN_ERR_INVALID;
  }
  control::CommandSpec c;
  c.area = std::string(sv(spec->area));
  c.verb = std::string(sv(spec->verb));
  c.summary = std::string(sv(spec->summary));
  c.owner = p.name();
  // The elements are as large as the plugin's header made them: step by the
  // first one's struct_size and read only the 1.3 members (postern_abi.h).
  constexpr size_t kMinArg = offsetof(postern_command_arg_t, description) + sizeof(postern_str_t);
  const size_t stride = spec->arg_count == 0 ? sizeof(postern_command_arg_t) : spec->args[0].struct_size;
  for (size_t i = 0; i < spec->arg_count; ++i) {
    const postern_command_arg_t& a =
        *reinterpret_cast<const postern_command_arg_t*>(reinterpret_cast<const char*>(spec->args) + i * stride);
    if (stride < kMinArg || a.struct_size != stride || a.type > POSTERN_ARG_STRING_LIST) {
      log::error("plugin", "name={} command {} {}: argument {} is malformed", p.name(), c.area, c.verb, i);
      return POSTERN_ERR_INVALID;
    }
    control::ArgSpec s;
    s.name = std::string(sv(a.name));
    s.type = static_cast<control::ArgType>(a.type);
    s.required = (a.flags & POSTERN_ARG_REQUIRED) != 0;
    s.positional = (a.flags & POSTERN_ARG_POSITIONAL) != 0;
    s.description = std::string(sv(a.description));
    c.args.push_back(std::move(s));
  }
  if (std::string why = control::check_spec(c); !why.empty()) {
    log::error("plugin", "name={} command {} {}: {}", p.name(), c.area, c.verb, why);
    return POSTERN_ERR_INVALID;
  }
  if (core_command_area(c.area)) {
    log::error("plugin", "name={} may not register commands in core's area '{}'", p.name(), c.area);
    return POSTERN_ERR_INVALID;
  }
  for (const CommandRegistration& r : p.commands()) {
    if (r.spec.area == c.area && r.spec.verb == c.verb) {
      log::error("plugin", "name={} registers command '{} {}' twice", p.name(), c.area, c.verb);
      return POSTERN_ERR_INVALID;
    }
  }
  log::debug("plugin", "name={} serves command '{} {}'", p.name(), c.area, c.verb);
  p.commands().push_back(CommandRegistration{std::move(c), fn, user});
  return POSTERN_OK;
}

postern_status_t command_complete(postern_command_reply_t* reply, uint32_t exit_class, postern_str_t result_json,
                                  postern_str_t text) {
  if (reply == nullptr) return POSTERN_ERR_INVALID;
  std::unique_ptr<postern_command_reply> owned(reply);  // consumed whatever happens
  control::Reply r;
  postern_status_t status = POSTERN_OK;
  if (exit_class > POSTERN_COMMAND_EXISTS) {
    r = control::Reply::failure(control::Exit::Fail,
                                fmt::format("plugin {} answered with an unknown exit class {}", owned->plugin, exit_class));
    status = POSTERN_ERR_INVALID;
  } else if (exit_class != POSTERN_COMMAND_OK) {
    std::string why(sv(text));
    if (why.empty()) why = fmt::format("{} failed", owned->plugin);
    r = control::Reply::failure(static_cast<control::Exit>(exit_class), std::move(why));
  } else {
    boost::json::value result;
    boost::system::error_code ec;
    if (!sv(result_json).empty()) result = boost::json::parse(sv(result_json), ec);
    if (ec) {
      r = control::Reply::failure(control::Exit::Fail,
                                  fmt::format("plugin {} answered with invalid JSON: {}", owned->plugin, ec.message()));
      status = POSTERN_ERR_INVALID;
    } else {
      std::string out(sv(text));
      if (out.empty()) out = boost::json::serialize(result);
      if (!out.empty() && out.back() != '\n') out += '\n';
      r = control::Reply::success(std::move(result), std::move(out), owned->format);
    }
  }
  if (!owned->done) return POSTERN_ERR_UNAVAILABLE;
  owned->done(std::move(r));
  return status;
}

}  // namespace abi13

namespace {

/** Runs one call of a plugin command on a worker thread. */
void run_command(const LoadedPlugin& p, const CommandRegistration& reg, const control::Request& req,
                 control::Done done) {
  const auto& out = p.outstanding();
  if (!out->enter()) return done(control::Reply::failure(control::Exit::Fail, fmt::format("plugin {} is unloading", p.name())));
  std::vector<postern_command_value_t> values;
  std::vector<std::vector<postern_str_t>> lists(reg.spec.args.size());
  values.reserve(reg.spec.args.size());
  for (size_t i = 0; i < reg.spec.args.size(); ++i) {
    const control::ArgSpec& a = reg.spec.args[i];
    postern_command_value_t v{};
    v.struct_size = sizeof(postern_command_value_t);
    v.name = abi(a.name);
    v.type = static_cast<uint32_t>(a.type);
    if (const boost::json::value* j = req.args.if_contains(a.name)) {
      v.present = 1;
      switch (a.type) {
        case control::ArgType::String: v.text = abi(j->as_string()); break;
        case control::ArgType::Integer: v.integer = j->is_int64() ? j->as_int64() : static_cast<int64_t>(j->as_uint64()); break;
        case control::ArgType::Boolean: v.integer = j->as_bool() ? 1 : 0; break;
        case control::ArgType::StringList:
          for (const boost::json::value& e : j->as_array()) lists[i].push_back(abi(e.as_string()));
          v.items = lists[i].data();
          v.item_count = lists[i].size();
          break;
      }
    }
    values.push_back(v);
  }
  auto* reply = new postern_command_reply{p.name(), req.format, done};
  try {
    std::vector<const postern_command_value_t*> pointers;
    for (const postern_command_value_t& v : values) pointers.push_back(&v);
    reg.fn(reg.user, pointers.data(), pointers.size(), reply);
  } catch (...) {
    // A C++ plugin without the SDK's wrapper threw: the handle's fate is
    // unknown (it may have been completed), so it is not touched; the
    // control server's timeout answers the client if nobody did.
    log::error("plugin", "name={} command '{}' threw", p.name(), reg.spec.name());
  }
  out->leave();
}

}  // namespace

std::vector<control::Command> plugin_commands(const std::shared_ptr<const event::Chain>& chain,
                                              boost::asio::thread_pool& workers) {
  std::vector<control::Command> out;
  if (!chain) return out;
  std::set<std::string> seen;
  for (const auto& up : chain->plugins()) {
    const LoadedPlugin* p = up.get();
    for (const CommandRegistration& reg : p->commands()) {
      if (!seen.insert(reg.spec.name()).second) continue;  // an earlier plugin serves it
      const CommandRegistration* r = &reg;
      out.push_back(control::Command{
          reg.spec, [chain, p, r, &workers](control::Request req, control::Done done) {
            boost::asio::post(workers, [chain, p, r, req = std::move(req), done = std::move(done)]() mutable {
              run_command(*p, *r, req, std::move(done));
            });
          }});
    }
  }
  return out;
}

}  // namespace postern::core::plugin
