// posternctl greylist list | allow IP|CIDR | flush [--expired|--all]
//
// Works on the greylist plugin's database, <data-dir>/state/greylist/
// greylist.sqlite (schema: plugins/greylist/README.md), while posternd runs:
// WAL mode and a busy timeout make the daemon and this tool take turns.
// The plugin creates the database; this tool never does.

#include "core/app/ctl/ctl.hpp"

#include <postern/sdk/storage.hpp>

#include <arpa/inet.h>
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

namespace postern::core::ctl {
namespace {

constexpr int64_t kSchemaVersion = 1;

int greylist_usage() {
  std::fprintf(stderr,
               "usage: posternctl --config FILE greylist list [--json]\n"
               "       posternctl --config FILE greylist allow IP|CIDR\n"
               "       posternctl --config FILE greylist flush [--expired | --all]\n"
               "  list     triplets and whitelisted networks\n"
               "  allow    whitelists an address or network (never expires)\n"
               "  flush    deletes every triplet and automatic whitelist entry (--all: manual ones too);\n"
               "           --expired deletes only what the plugin's window and auto-whitelist-for expired\n");
  return kUsage;
}

std::string iso_time(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/** A network as the plugin stores it: canonical text and a 16-octet [lo, hi] range. */
struct Range {
  std::string text;
  std::string lo;
  std::string hi;
};

std::optional<Range> parse_range(std::string_view arg) {
  const auto slash = arg.find('/');
  const std::string addr(arg.substr(0, slash));
  std::array<uint8_t, 16> o{};
  bool v4 = false;
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
    v4 = true;
    o[10] = o[11] = 0xff;
    std::memcpy(&o[12], &a4, 4);
  } else if (inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
    std::memcpy(o.data(), &a6, 16);
  } else {
    return std::nullopt;
  }
  const unsigned max = v4 ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view p = arg.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
    prefix = static_cast<unsigned>(std::stoul(std::string(p)));
    if (prefix > max) return std::nullopt;
  }
  std::array<uint8_t, 16> lo = o, hi = o;
  const unsigned bits = v4 ? 96 + prefix : prefix;
  for (unsigned i = bits; i < 128; ++i) {
    const auto mask = static_cast<uint8_t>(0x80u >> (i % 8));
    lo[i / 8] &= static_cast<uint8_t>(~mask);
    hi[i / 8] |= mask;
  }
  char buf[INET6_ADDRSTRLEN] = {0};
  if (v4) {
    inet_ntop(AF_INET, &lo[12], buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, lo.data(), buf, sizeof buf);
  }
  return Range{fmt::format("{}/{}", buf, prefix), std::string(reinterpret_cast<const char*>(lo.data()), 16),
               std::string(reinterpret_cast<const char*>(hi.data()), 16)};
}

/** "5m", "24h", "36d", "300s", "300" (seconds) as in the plugin's config. */
std::optional<int64_t> duration_ms(std::string_view v) {
  size_t digits = 0;
  int64_t n = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') n = n * 10 + (v[digits++] - '0');
  if (digits == 0) return std::nullopt;
  const std::string_view unit = v.substr(digits);
  if (unit == "ms") return n;
  if (unit.empty() || unit == "s") return n * 1000;
  if (unit == "m") return n * 60'000;
  if (unit == "h") return n * 3'600'000;
  if (unit == "d") return n * 86'400'000;
  return std::nullopt;
}

struct Db {
  std::shared_ptr<sdk::storage::Database> db;
  std::string path;
};

std::optional<Db> open_db(const Command& c, int& rc) {
  const auto path = c.manifest.data_dir / "state" / "greylist" / "greylist.sqlite";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    rc = fail(kNotFound, fmt::format("no greylist database at {} (posternd creates it when the greylist plugin "
                                     "is loaded)",
                                     path.string()));
    return std::nullopt;
  }
  std::string why;
  // The plugin owns the schema and its migrations; this tool only checks the version.
  sdk::storage::OpenOptions options;
  options.busy_timeout = std::chrono::seconds(10);
  options.migrate = false;
  auto db = sdk::storage::Database::open(path, {}, &why, options);
  if (!db) {
    rc = fail(kFail, why);
    return std::nullopt;
  }
  if (const int64_t v = db->schema_version(); v != kSchemaVersion) {
    rc = fail(kFail, fmt::format("{}: schema version {} (this posternctl knows {})", path.string(), v, kSchemaVersion));
    return std::nullopt;
  }
  return Db{db, path.string()};
}

int list_entries(const Command& c, sdk::storage::Database& db) {
  auto& t = db.prepared(
      "SELECT network, sender, recipient, first_seen, last_seen, passed_at, attempts FROM triplet "
      "ORDER BY last_seen DESC");
  std::string json = "{\"triplets\":[";
  bool first = true;
  if (!c.json) std::printf("%-24s %-32s %-32s %-20s %-20s %s\n", "NETWORK", "SENDER", "RECIPIENT", "FIRST SEEN",
                           "PASSED", "ATTEMPTS");
  while (t.step()) {
    const int64_t passed = t.column_int64(5);
    if (c.json) {
      json += fmt::format(
          "{}{{\"network\":\"{}\",\"sender\":\"{}\",\"recipient\":\"{}\",\"first_seen\":\"{}\",\"last_seen\":\"{}\","
          "\"passed_at\":{},\"attempts\":{}}}",
          first ? "" : ",", json_escape(t.column_text(0)), json_escape(t.column_text(1)), json_escape(t.column_text(2)),
          iso_time(t.column_int64(3)), iso_time(t.column_int64(4)),
          passed != 0 ? "\"" + iso_time(passed) + "\"" : std::string("null"), t.column_int64(6));
    } else {
      std::printf("%-24s %-32s %-32s %-20s %-20s %lld\n", t.column_string(0).c_str(), t.column_string(1).c_str(),
                  t.column_string(2).c_str(), iso_time(t.column_int64(3)).c_str(),
                  passed != 0 ? iso_time(passed).c_str() : "greylisted", static_cast<long long>(t.column_int64(6)));
    }
    first = false;
  }
  t.reset();
  auto& w = db.prepared("SELECT network, passes, expires, manual FROM whitelist ORDER BY network");
  json += "],\"whitelist\":[";
  first = true;
  if (!c.json) std::printf("\n%-40s %-8s %-8s %s\n", "WHITELISTED NETWORK", "SOURCE", "PASSES", "EXPIRES");
  while (w.step()) {
    const bool manual = w.column_int64(3) != 0;
    if (c.json) {
      json += fmt::format("{}{{\"network\":\"{}\",\"source\":\"{}\",\"passes\":{},\"expires\":{}}}", first ? "" : ",",
                          json_escape(w.column_text(0)), manual ? "manual" : "auto", w.column_int64(1),
                          manual ? std::string("null") : "\"" + iso_time(w.column_int64(2)) + "\"");
    } else {
      std::printf("%-40s %-8s %-8lld %s\n", w.column_string(0).c_str(), manual ? "manual" : "auto",
                  static_cast<long long>(w.column_int64(1)), manual ? "never" : iso_time(w.column_int64(2)).c_str());
    }
    first = false;
  }
  w.reset();
  if (c.json) std::printf("%s]}\n", json.c_str());
  return kOk;
}

int allow_network(const Command& c, sdk::storage::Database& db) {
  if (c.args.size() != 2) return greylist_usage();
  const auto r = parse_range(c.args[1]);
  if (!r) return fail(kUsage, fmt::format("greylist allow: '{}' is not an IP address or CIDR network", c.args[1]));
  db.transaction([&](sdk::storage::Database& t) {
    t.prepared(
         "INSERT INTO whitelist (network, lo, hi, passes, expires, manual, created) VALUES (?1, ?2, ?3, 0, 0, 1, ?4) "
         "ON CONFLICT (network) DO UPDATE SET manual = 1, expires = 0")
        .bind(1, r->text)
        .bind(2, r->lo)
        .bind(3, r->hi)
        .bind(4, now_ms())
        .run();
  });
  if (c.json) {
    std::printf("{\"allowed\":\"%s\"}\n", json_escape(r->text).c_str());
  } else {
    std::printf("allowed %s\n", r->text.c_str());
  }
  return kOk;
}

int flush_entries(const Command& c, sdk::storage::Database& db) {
  bool expired = false, all = false;
  for (size_t i = 1; i < c.args.size(); ++i) {
    if (c.args[i] == "--expired") {
      expired = true;
    } else if (c.args[i] == "--all") {
      all = true;
    } else {
      return greylist_usage();
    }
  }
  if (expired && all) return fail(kUsage, "greylist flush: --expired and --all exclude each other");
  int64_t triplets = 0, networks = 0;
  if (expired) {
    // The plugin's own settings decide what expired (README.md defaults).
    int64_t window = 24 * 3'600'000LL, keep = 36 * 86'400'000LL;
    for (const config::PluginEntry& p : c.manifest.plugins) {
      if (p.name != "greylist") continue;
      if (auto a = p.node.attribute("window"); a) {
        auto d = duration_ms(a.value());
        if (!d) return fail(kFail, fmt::format("greylist window=\"{}\" is not a duration", a.value()));
        window = *d;
      }
      if (auto a = p.node.attribute("auto-whitelist-for"); a) {
        auto d = duration_ms(a.value());
        if (!d) return fail(kFail, fmt::format("greylist auto-whitelist-for=\"{}\" is not a duration", a.value()));
        keep = *d;
      }
    }
    const int64_t now = now_ms();
    db.transaction([&](sdk::storage::Database& t) {
      triplets = t.prepared(
                      "DELETE FROM triplet WHERE (passed_at = 0 AND first_seen < ?1) OR "
                      "(passed_at <> 0 AND last_seen < ?2)")
                     .bind(1, now - window)
                     .bind(2, now - keep)
                     .run();
      networks = t.prepared("DELETE FROM whitelist WHERE manual = 0 AND expires < ?1").bind(1, now).run();
    });
  } else {
    db.transaction([&](sdk::storage::Database& t) {
      triplets = t.prepared("DELETE FROM triplet").run();
      networks = all ? t.prepared("DELETE FROM whitelist").run()
                     : t.prepared("DELETE FROM whitelist WHERE manual = 0").run();
    });
  }
  if (c.json) {
    std::printf("{\"triplets\":%lld,\"whitelist\":%lld}\n", static_cast<long long>(triplets),
                static_cast<long long>(networks));
  } else {
    std::printf("deleted %lld triplet(s) and %lld whitelist entr%s\n", static_cast<long long>(triplets),
                static_cast<long long>(networks), networks == 1 ? "y" : "ies");
  }
  return kOk;
}

}  // namespace

int greylist(Command& c) {
  if (c.args.empty()) return greylist_usage();
  const std::string& verb = c.args[0];
  if (verb != "list" && verb != "allow" && verb != "flush") return greylist_usage();
  if (verb == "list" && c.args.size() != 1) return greylist_usage();
  int rc = kOk;
  auto db = open_db(c, rc);
  if (!db) return rc;
  try {
    return db->db->with([&](sdk::storage::Database& d) {
      if (verb == "list") return list_entries(c, d);
      if (verb == "allow") return allow_network(c, d);
      return flush_entries(c, d);
    });
  } catch (const std::exception& e) {
    return fail(kFail, fmt::format("{}: {}", db->path, e.what()));
  }
}

}  // namespace postern::core::ctl
