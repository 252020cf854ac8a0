#include "core/control/registry.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace postern::core::control {

namespace json = boost::json;

std::string_view exit_name(Exit e) {
  switch (e) {
    case Exit::Ok: return "ok";
    case Exit::Fail: return "fail";
    case Exit::Usage: return "usage";
    case Exit::NotFound: return "not_found";
    case Exit::Exists: return "exists";
  }
  return "fail";
}

Exit exit_from_int(int64_t v) { return v >= 0 && v <= 4 ? static_cast<Exit>(v) : Exit::Fail; }

std::string_view arg_type_name(ArgType t) {
  switch (t) {
    case ArgType::String: return "string";
    case ArgType::Integer: return "integer";
    case ArgType::Boolean: return "boolean";
    case ArgType::StringList: return "string-list";
  }
  return "string";
}

namespace {

std::string option_name(std::string_view name) {
  std::string out = "--";
  for (char c : name) out += c == '_' ? '-' : c;
  return out;
}

std::string placeholder(const ArgSpec& a) {
  std::string out;
  for (char c : a.name) out += c == '_' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool valid_name(std::string_view n) {
  return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

}  // namespace

std::string CommandSpec::synopsis() const {
  std::string out = area + " " + verb;
  if (raw) return out + " [ARGS...]";
  for (const ArgSpec& a : args) {
    std::string word;
    if (a.positional) {
      word = placeholder(a) + (a.type == ArgType::StringList ? "..." : "");
    } else if (a.type == ArgType::Boolean) {
      word = option_name(a.name);
    } else {
      word = option_name(a.name) + " " + placeholder(a) + (a.type == ArgType::StringList ? "..." : "");
    }
    out += " " + (a.required ? word : "[" + word + "]");
  }
  return out;
}

Reply Reply::success(json::value result, std::string text, Format format) {
  Reply r;
  r.output = format == Format::Json ? json::serialize(result) + "\n" : std::move(text);
  r.result = std::move(result);
  return r;
}

std::string check_spec(const CommandSpec& spec) {
  if (!valid_name(spec.area) || !valid_name(spec.verb)) return "area and verb must be 1-64 of [a-z0-9_-]";
  for (size_t i = 0; i < spec.args.size(); ++i) {
    const ArgSpec& a = spec.args[i];
    if (!valid_name(a.name)) return fmt::format("argument '{}': names are 1-64 of [a-z0-9_-]", a.name);
    for (size_t j = 0; j < i; ++j)
      if (spec.args[j].name == a.name) return fmt::format("argument '{}' declared twice", a.name);
    if (a.positional && a.type == ArgType::Boolean) return fmt::format("argument '{}': a flag cannot be positional", a.name);
    if (a.positional && a.type == ArgType::StringList) {
      for (size_t j = i + 1; j < spec.args.size(); ++j)
        if (spec.args[j].positional) return fmt::format("argument '{}': a positional list must come last", a.name);
    }
  }
  return {};
}

std::optional<json::object> parse_command_line(const CommandSpec& spec, const std::vector<std::string>& words,
                                               std::string* error) {
  json::object out;
  if (spec.raw) {
    json::array argv;
    for (const auto& w : words) argv.emplace_back(w);
    out["argv"] = std::move(argv);
    return out;
  }
  auto fail = [&](std::string why) -> std::optional<json::object> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  auto set = [&](const ArgSpec& a, std::string_view value) -> std::string {
    switch (a.type) {
      case ArgType::String: out[a.name] = value; return {};
      case ArgType::Integer: {
        int64_t v = 0;
        bool neg = !value.empty() && value[0] == '-';
        std::string_view digits = neg ? value.substr(1) : value;
        if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string_view::npos)
          return fmt::format("{} {}: expected a number", option_name(a.name), value);
        for (char c : digits) v = v * 10 + (c - '0');
        out[a.name] = neg ? -v : v;
        return {};
      }
      case ArgType::Boolean: out[a.name] = true; return {};
      case ArgType::StringList: {
        auto it = out.find(a.name);
        if (it == out.end()) it = out.emplace(a.name, json::array()).first;
        it->value().as_array().emplace_back(value);
        return {};
      }
    }
    return {};
  };
  size_t next_positional = 0;
  auto positional_at = [&](size_t& index) -> const ArgSpec* {
    for (size_t seen = 0, i = 0; i < spec.args.size(); ++i) {
      if (!spec.args[i].positional) continue;
      if (seen++ == index) return &spec.args[i];
    }
    return nullptr;
  };
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w.size() > 2 && w.starts_with("--")) {
      const size_t eq = w.find('=');
      const std::string key = w.substr(0, eq);
      const ArgSpec* a = nullptr;
      for (const ArgSpec& s : spec.args)
        if (!s.positional && option_name(s.name) == key) a = &s;
      if (a == nullptr) return fail(fmt::format("{}: unknown option {}", spec.name(), key));
      if (a->type == ArgType::Boolean) {
        if (eq != std::string::npos) return fail(fmt::format("{} takes no value", key));
        set(*a, "");
        continue;
      }
      std::string value;
      if (eq != std::string::npos) {
        value = w.substr(eq + 1);
      } else if (i + 1 < words.size()) {
        value = words[++i];
      } else {
        return fail(fmt::format("{} needs a value", key));
      }
      if (auto why = set(*a, value); !why.empty()) return fail(why);
      continue;
    }
    const ArgSpec* a = positional_at(next_positional);
    if (a == nullptr) return fail(fmt::format("{}: unexpected argument '{}'", spec.name(), w));
    if (auto why = set(*a, w); !why.empty()) return fail(why);
    if (a->type != ArgType::StringList) ++next_positional;
  }
  return out;
}

std::string validate_args(const CommandSpec& spec, const json::object& args) {
  for (const auto& kv : args) {
    const ArgSpec* a = nullptr;
    for (const ArgSpec& s : spec.args)
      if (s.name == kv.key()) a = &s;
    if (a == nullptr) return fmt::format("{}: unknown argument '{}'", spec.name(), std::string_view(kv.key()));
    const json::value& v = kv.value();
    bool ok = false;
    switch (a->type) {
      case ArgType::String: ok = v.is_string(); break;
      case ArgType::Integer: ok = v.is_int64() || (v.is_uint64() && v.as_uint64() <= INT64_MAX); break;
      case ArgType::Boolean: ok = v.is_bool(); break;
      case ArgType::StringList:
        ok = v.is_array() && std::all_of(v.as_array().begin(), v.as_array().end(),
                                         [](const json::value& e) { return e.is_string(); });
        break;
    }
    if (!ok) return fmt::format("{}: argument '{}' must be a {}", spec.name(), a->name, arg_type_name(a->type));
  }
  for (const ArgSpec& a : spec.args) {
    if (!a.required) continue;
    auto it = args.find(a.name);
    const bool empty_list = it != args.end() && a.type == ArgType::StringList && it->value().as_array().empty();
    if (it == args.end() || empty_list) return fmt::format("{}: missing {}", spec.name(), placeholder(a));
  }
  return {};
}

void Registry::add(CommandSpec spec, Handler handler) {
  if (auto why = check_spec(spec); !why.empty()) throw std::logic_error(spec.name() + ": " + why);
  const std::string key = spec.name();
  if (!core_.emplace(key, Command{std::move(spec), std::move(handler)}).second)
    throw std::logic_error("command registered twice: " + key);
}

std::optional<Command> Registry::find(std::string_view area, std::string_view verb) const {
  const std::string key = std::string(area) + " " + std::string(verb);
  if (auto it = core_.find(key); it != core_.end()) return it->second;
  if (source_) {
    for (Command& c : source_())
      if (c.spec.area == area && c.spec.verb == verb) return std::move(c);
  }
  return std::nullopt;
}

std::vector<Command> Registry::all() const {
  std::vector<Command> out;
  for (const auto& [key, c] : core_) out.push_back(c);
  if (source_) {
    std::vector<Command> more = source_();
    std::sort(more.begin(), more.end(), [](const Command& a, const Command& b) { return a.spec.name() < b.spec.name(); });
    for (Command& c : more) out.push_back(std::move(c));
  }
  return out;
}

bool Registry::core_area(std::string_view area) const {
  return std::any_of(core_.begin(), core_.end(), [&](const auto& kv) { return kv.second.spec.area == area; });
}

namespace {

json::object spec_to_json(const CommandSpec& s) {
  json::array args;
  for (const ArgSpec& a : s.args) {
    args.push_back(json::object{{"name", a.name},
                                {"type", arg_type_name(a.type)},
                                {"required", a.required},
                                {"positional", a.positional},
                                {"description", a.description}});
  }
  return json::object{{"command", s.name()}, {"area", s.area},         {"verb", s.verb},
                      {"summary", s.summary}, {"owner", s.owner},       {"synopsis", s.synopsis()},
                      {"raw", s.raw},         {"args", std::move(args)}};
}

/** The built-in `help [AREA]`: every command (of an area) with its synopsis. */
Reply help(const Registry& r, std::string_view area, Format format) {
  json::array list;
  std::string text;
  for (const Command& c : r.all()) {
    if (!area.empty() && c.spec.area != area) continue;
    list.push_back(spec_to_json(c.spec));
    text += fmt::format("  {:<44} {}{}\n", c.spec.synopsis(), c.spec.summary,
                        c.spec.owner == "core" ? "" : " [" + c.spec.owner + "]");
  }
  if (!area.empty() && list.empty()) return Reply::failure(Exit::Usage, fmt::format("unknown area '{}'", area));
  return Reply::success(std::move(list), std::move(text), format);
}

}  // namespace

void Registry::call(const json::value& request, Done done) const {
  const json::object* req = request.if_object();
  if (req == nullptr) return done(Reply::failure(Exit::Usage, "a request is a JSON object"));
  Format format = Format::Text;
  if (auto it = req->find("format"); it != req->end()) {
    const json::string* f = it->value().if_string();
    if (f != nullptr && *f == "json") format = Format::Json;
    else if (f == nullptr || *f != "text") return done(Reply::failure(Exit::Usage, "\"format\" is \"text\" or \"json\""));
  }
  std::string area, verb;
  std::optional<json::object> args;
  const json::value* argv = req->if_contains("argv");
  const json::value* command = req->if_contains("command");
  if ((argv == nullptr) == (command == nullptr))
    return done(Reply::failure(Exit::Usage, "a request has either \"command\" (with \"args\") or \"argv\""));
  std::vector<std::string> words;
  if (argv != nullptr) {
    if (!argv->is_array()) return done(Reply::failure(Exit::Usage, "\"argv\" must be an array of strings"));
    for (const json::value& w : argv->as_array()) {
      if (!w.is_string()) return done(Reply::failure(Exit::Usage, "\"argv\" must be an array of strings"));
      words.emplace_back(w.as_string());
    }
    if (words.empty()) return done(Reply::failure(Exit::Usage, "\"argv\" is empty"));
    area = words[0];
    verb = words.size() > 1 ? words[1] : "";
  } else {
    if (!command->is_string()) return done(Reply::failure(Exit::Usage, "\"command\" must be a string \"area verb\""));
    std::string_view c = command->as_string();
    const size_t sp = c.find(' ');
    area = std::string(c.substr(0, sp));
    verb = sp == std::string_view::npos ? "" : std::string(c.substr(sp + 1));
    if (const json::value* a = req->if_contains("args")) {
      if (!a->is_object()) return done(Reply::failure(Exit::Usage, "\"args\" must be an object"));
      args = a->as_object();
    } else {
      args = json::object();
    }
  }
  if (area == "help") {
    std::string which = argv != nullptr ? verb : "";
    if (args) {
      if (const json::value* a = args->if_contains("area"); a != nullptr && a->is_string()) which = a->as_string();
    }
    return done(help(*this, which, format));
  }
  std::optional<Command> cmd = find(area, verb);
  if (!cmd) {
    const bool known_area = core_area(area) || [&] {
      if (!source_) return false;
      for (const Command& c : source_())
        if (c.spec.area == area) return true;
      return false;
    }();
    if (!known_area) {
      return done(Reply::failure(Exit::Usage, fmt::format("unknown command '{}{}{}' (help lists the commands)", area,
                                                          verb.empty() ? "" : " ", verb)));
    }
    Reply r = Reply::failure(Exit::Usage, verb.empty() ? fmt::format("{}: which verb?", area)
                                                       : fmt::format("{}: unknown verb '{}'", area, verb));
    r.diagnostics = fmt::format("posternctl: {}\nusage:\n", r.error);
    for (const Command& c : all()) {
      if (c.spec.area == area) r.diagnostics += fmt::format("  posternctl --config FILE {:<40} {}\n", c.spec.synopsis(), c.spec.summary);
    }
    return done(std::move(r));
  }
  std::string why;
  if (argv != nullptr) {
    args = parse_command_line(cmd->spec, std::vector<std::string>(words.begin() + 2, words.end()), &why);
    if (!args) {
      Reply r = Reply::failure(Exit::Usage, why);
      r.diagnostics = "posternctl: " + why + "\nusage: posternctl --config FILE " + cmd->spec.synopsis() + "\n";
      return done(std::move(r));
    }
  }
  if (why = validate_args(cmd->spec, *args); !why.empty()) {
    Reply r = Reply::failure(Exit::Usage, why);
    r.diagnostics = "posternctl: " + why + "\nusage: posternctl --config FILE " + cmd->spec.synopsis() + "\n";
    return done(std::move(r));
  }
  Request r{std::move(area), std::move(verb), std::move(*args), format};
  try {
    cmd->handler(std::move(r), std::move(done));
  } catch (const std::exception& e) {
    // A handler throws only before it took `done` over (it posts the rest).
    done(Reply::failure(Exit::Fail, e.what()));
  }
}

json::object reply_to_json(const Reply& r, const json::value& id) {
  json::object o;
  if (!id.is_null()) o["id"] = id;
  o["status"] = exit_name(r.exit);
  o["exit"] = static_cast<int>(r.exit);
  o["result"] = r.result;
  o["output"] = r.output;
  if (!r.error.empty()) o["error"] = r.error;
  if (!r.diagnostics.empty()) o["diagnostics"] = r.diagnostics;
  return o;
}

Reply reply_from_json(const json::object& o) {
  Reply r;
  if (const json::value* v = o.if_contains("exit"); v != nullptr && v->is_int64()) r.exit = exit_from_int(v->as_int64());
  else r.exit = Exit::Fail;
  if (const json::value* v = o.if_contains("result")) r.result = *v;
  if (const json::value* v = o.if_contains("output"); v != nullptr && v->is_string()) r.output = v->as_string();
  if (const json::value* v = o.if_contains("error"); v != nullptr && v->is_string()) r.error = v->as_string();
  if (const json::value* v = o.if_contains("diagnostics"); v != nullptr && v->is_string())
    r.diagnostics = v->as_string();
  return r;
}

}  // namespace postern::core::control
