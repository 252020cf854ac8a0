#pragma once
/**
 * @file command.hpp
 * Admin commands owned by a plugin (ABI 1.3; docs/plugin-guide.md "Admin
 * commands", docs/control-plane.md). In init():
 *
 *   ctx.command(sdk::CommandSpec("greylist", "allow", "whitelists an address or network")
 *                   .arg("network", sdk::ArgType::String, "IP or CIDR", sdk::kRequired | sdk::kPositional),
 *               [this](sdk::CommandArgs args, sdk::CommandReply reply) {
 *                 reply.ok("{\"allowed\":" + sdk::json_quote(*args.string("network")) + "}", "allowed ...\n");
 *               });
 *
 * The callback runs on a worker-pool thread (blocking work is fine there);
 * the reply may be completed later, from any thread. A CommandReply that is
 * destroyed unanswered answers "failed" itself, so every handle is completed.
 */

#include <postern/sdk/types.hpp>

#include <cstddef>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::sdk {

/** posternctl's exit classes (POSTERN_COMMAND_*). */
enum class CommandExit : uint32_t {
  Ok = POSTERN_COMMAND_OK,
  Fail = POSTERN_COMMAND_FAIL,
  Usage = POSTERN_COMMAND_USAGE,
  NotFound = POSTERN_COMMAND_NOT_FOUND,
  Exists = POSTERN_COMMAND_EXISTS,
};

enum class ArgType : uint32_t {
  String = POSTERN_ARG_STRING,
  Integer = POSTERN_ARG_INTEGER,
  Boolean = POSTERN_ARG_BOOLEAN,
  StringList = POSTERN_ARG_STRING_LIST,
};
inline constexpr uint32_t kRequired = POSTERN_ARG_REQUIRED;
inline constexpr uint32_t kPositional = POSTERN_ARG_POSITIONAL;

/** `s` as a JSON string literal (quotes included; ", \ and control characters escaped). */
inline std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

/** A command's declaration: `<area> <verb>`, a summary and its arguments. */
class CommandSpec {
 public:
  CommandSpec(std::string area, std::string verb, std::string summary)
      : area_(std::move(area)), verb_(std::move(verb)), summary_(std::move(summary)) {}
  /** Declares an argument; `flags` is kRequired and/or kPositional. */
  CommandSpec& arg(std::string name, ArgType type, std::string description, uint32_t flags = 0) {
    args_.push_back(Arg{std::move(name), type, flags, std::move(description)});
    return *this;
  }
  const std::string& area() const { return area_; }
  const std::string& verb() const { return verb_; }

  /** The ABI form; borrows from *this (and `storage`). */
  postern_command_spec_t to_abi(std::vector<postern_command_arg_t>& storage) const {
    storage.clear();
    for (const Arg& a : args_) {
      postern_command_arg_t c{};
      c.struct_size = sizeof c;
      c.type = static_cast<uint32_t>(a.type);
      c.flags = a.flags;
      c.name = sdk::to_abi(a.name);
      c.description = sdk::to_abi(a.description);
      storage.push_back(c);
    }
    postern_command_spec_t s{};
    s.struct_size = sizeof s;
    s.area = sdk::to_abi(area_);
    s.verb = sdk::to_abi(verb_);
    s.summary = sdk::to_abi(summary_);
    s.args = storage.data();
    s.arg_count = storage.size();
    return s;
  }

 private:
  struct Arg {
    std::string name;
    ArgType type;
    uint32_t flags;
    std::string description;
  };
  std::string area_, verb_, summary_;
  std::vector<Arg> args_;
};

/** The arguments of one call, copied (they may be used after the callback returns). */
class CommandArgs {
 public:
  CommandArgs() = default;
  CommandArgs(const postern_command_value_t* const* values, size_t count) {
    constexpr size_t kV13 = offsetof(postern_command_value_t, item_count) + sizeof(size_t);
    for (size_t i = 0; i < count; ++i) {
      if (values[i] == nullptr || values[i]->struct_size < kV13) continue;  // members this SDK knows
      const postern_command_value_t& v = *values[i];
      if (v.present == 0) continue;
      Value out;
      out.integer = v.integer;
      out.text = std::string(to_string_view(v.text));
      for (size_t k = 0; k < v.item_count; ++k) out.items.emplace_back(to_string_view(v.items[k]));
      values_.emplace(std::string(to_string_view(v.name)), std::move(out));
    }
  }
  /** Whether the argument was given. */
  bool has(std::string_view name) const { return values_.find(std::string(name)) != values_.end(); }
  std::optional<std::string> string(std::string_view name) const {
    auto it = values_.find(std::string(name));
    return it == values_.end() ? std::nullopt : std::optional<std::string>(it->second.text);
  }
  std::optional<int64_t> integer(std::string_view name) const {
    auto it = values_.find(std::string(name));
    return it == values_.end() ? std::nullopt : std::optional<int64_t>(it->second.integer);
  }
  /** A Boolean argument (a flag): false when not given. */
  bool flag(std::string_view name) const {
    auto it = values_.find(std::string(name));
    return it != values_.end() && it->second.integer != 0;
  }
  std::vector<std::string> list(std::string_view name) const {
    auto it = values_.find(std::string(name));
    return it == values_.end() ? std::vector<std::string>{} : it->second.items;
  }

 private:
  struct Value {
    int64_t integer = 0;
    std::string text;
    std::vector<std::string> items;
  };
  std::map<std::string, Value> values_;
};

/**
 * The answer channel of one call: move-only; complete it once with ok() or
 * fail(), from any thread. Destroyed unanswered, it answers Fail.
 */
class CommandReply {
 public:
  CommandReply(const postern_host_api_v1_t* api, postern_command_reply_t* reply) : api_(api), reply_(reply) {}
  CommandReply(CommandReply&& o) noexcept : api_(o.api_), reply_(std::exchange(o.reply_, nullptr)) {}
  CommandReply& operator=(CommandReply&& o) noexcept {
    if (this != &o) {
      drop();
      api_ = o.api_;
      reply_ = std::exchange(o.reply_, nullptr);
    }
    return *this;
  }
  CommandReply(const CommandReply&) = delete;
  CommandReply& operator=(const CommandReply&) = delete;
  ~CommandReply() { drop(); }

  /**
   * Success: `result_json` is the JSON result, `text` what posternctl prints
   * without --json (empty: the JSON). @return false when nobody waits any
   * more or the JSON was refused.
   */
  bool ok(std::string_view result_json, std::string_view text = {}) {
    return complete(CommandExit::Ok, result_json, text);
  }
  /** Failure with a one-line reason. */
  bool fail(CommandExit exit, std::string_view message) { return complete(exit, {}, message); }
  bool answered() const { return reply_ == nullptr; }

 private:
  bool complete(CommandExit exit, std::string_view json, std::string_view text) {
    if (reply_ == nullptr) return false;
    return api_->command_complete(std::exchange(reply_, nullptr), static_cast<uint32_t>(exit), sdk::to_abi(json),
                                  sdk::to_abi(text)) == POSTERN_OK;
  }
  void drop() {
    if (reply_ != nullptr) fail(CommandExit::Fail, "the plugin dropped the command without an answer");
  }
  const postern_host_api_v1_t* api_;
  postern_command_reply_t* reply_;
};

using CommandHandler = std::function<void(CommandArgs, CommandReply)>;

namespace detail {

/** A registered command's callback; owned by the plugin instance. */
struct CommandEntry {
  const postern_host_api_v1_t* api = nullptr;
  CommandHandler fn;

  static void trampoline(void* user, const postern_command_value_t* const* values, size_t count,
                         postern_command_reply_t* reply) {
    auto* self = static_cast<CommandEntry*>(user);
    CommandReply r(self->api, reply);
    try {
      self->fn(CommandArgs(values, count), std::move(r));
    } catch (const std::exception& e) {
      // The handler owned the reply: it answered, or its destructor did.
      (void)e;
    } catch (...) {
    }
  }
};

}  // namespace detail
}  // namespace postern::sdk
