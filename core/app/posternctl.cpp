// posternctl — Postern's administration tool.
//
//   posternctl --config FILE <area> <verb> [args] [--json]
//
// Areas (DESIGN.md §7): plugins, domain, user, alias, list, router, queue,
// relay, greylist; `posternctl --config FILE <area>` prints the area's usage.
// Most areas work on the data directory's files directly, so the daemon need
// not run; each area's file under core/app/ctl/ says what it touches.
// Exit codes (ctl.hpp): 0 ok, 1 failure, 2 usage, 3 not found, 4 exists.

#include "core/app/ctl/ctl.hpp"
#include "core/config/manifest.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace postern::core;

struct Area {
  const char* name;
  int (*run)(ctl::Command&);
  const char* summary;
};

constexpr Area kAreas[] = {
    {"plugins", ctl::plugins, "plugins --order | list"},
    {"domain", ctl::domain, "domain add|del|list"},
    {"user", ctl::user, "user add|del|list|show|passwd|quota|enable|disable"},
    {"alias", ctl::alias, "alias add|del|list"},
    {"list", ctl::list, "list add|del|members"},
    {"router", ctl::router, "router show|test ADDRESS"},
    {"queue", ctl::queue, "queue list|show|flush|hold|release|delete|resend"},
    {"relay", ctl::relay, "relay test"},
    {"greylist", ctl::greylist, "greylist list|allow|flush"},
};

int usage(FILE* out) {
  std::fprintf(out, "usage: posternctl --config FILE <area> <verb> [args] [--json]\nareas:\n");
  for (const Area& a : kAreas) std::fprintf(out, "  %s\n", a.summary);
  return ctl::kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_file;
  std::vector<std::string> args;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_file = argv[++i];
    } else if (a.starts_with("--config=")) {
      config_file = std::string(a.substr(9));
    } else if (a == "--json") {
      json = true;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      args.emplace_back(a);
    }
  }
  if (config_file.empty() || args.empty()) return usage(stderr);

  const Area* area = nullptr;
  for (const Area& a : kAreas) {
    if (args[0] == a.name) area = &a;
  }
  if (area == nullptr) {
    std::fprintf(stderr, "posternctl: unknown area '%s'\n", args[0].c_str());
    return usage(stderr);
  }

  config::LoadResult lr = config::load_manifest(config_file);
  if (!lr.manifest || !lr.errors.empty()) {
    for (const auto& e : lr.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "posternctl: %s is invalid\n", config_file.c_str());
    return ctl::kFail;
  }
  ctl::Command cmd{*lr.manifest, args[0], std::vector<std::string>(args.begin() + 1, args.end()), json};
  return area->run(cmd);
}
