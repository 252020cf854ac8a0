// The greylist area of the control plane (docs/control-plane.md): the
// plugin's own admin commands, served by posternd and called with
// `posternctl greylist list | allow NETWORK | flush [--expired | --all]`.
// Each runs on a worker-pool thread (the host's rule for command
// callbacks), so the database is used directly; a change is in force in
// this daemon when the command answers (memory copy reloaded, cache dropped).

#include "greylist.hpp"

#include <postern/sdk/command.hpp>

#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace postern::plugins::greylist {
namespace {

std::string iso_time(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

__attribute__((format(printf, 2, 3))) void append(std::string& out, const char* format, ...) {
  va_list ap;
  va_start(ap, format);
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n > 0) {
    const size_t at = out.size();
    out.resize(at + static_cast<size_t>(n) + 1);
    std::vsnprintf(out.data() + at, static_cast<size_t>(n) + 1, format, ap);
    out.resize(at + static_cast<size_t>(n));
  }
  va_end(ap);
}

}  // namespace

void GreylistPlugin::list_command(sdk::CommandReply& reply) {
  std::string json = "{\"triplets\":[";
  std::string text;
  append(text, "%-24s %-32s %-32s %-20s %-20s %s\n", "NETWORK", "SENDER", "RECIPIENT", "FIRST SEEN", "PASSED",
         "ATTEMPTS");
  store_->db().with([&](sdk::storage::Database& db) {
    auto& t = db.prepared(
        "SELECT network, sender, recipient, first_seen, last_seen, passed_at, attempts FROM triplet "
        "ORDER BY last_seen DESC");
    bool first = true;
    while (t.step()) {
      const int64_t passed = t.column_int64(5);
      json += (first ? "{" : ",{") + std::string("\"network\":") + sdk::json_quote(t.column_string(0)) +
              ",\"sender\":" + sdk::json_quote(t.column_string(1)) + ",\"recipient\":" +
              sdk::json_quote(t.column_string(2)) + ",\"first_seen\":\"" + iso_time(t.column_int64(3)) +
              "\",\"last_seen\":\"" + iso_time(t.column_int64(4)) + "\",\"passed_at\":" +
              (passed != 0 ? "\"" + iso_time(passed) + "\"" : std::string("null")) +
              ",\"attempts\":" + std::to_string(t.column_int64(6)) + "}";
      append(text, "%-24s %-32s %-32s %-20s %-20s %lld\n", t.column_string(0).c_str(), t.column_string(1).c_str(),
             t.column_string(2).c_str(), iso_time(t.column_int64(3)).c_str(),
             passed != 0 ? iso_time(passed).c_str() : "greylisted", static_cast<long long>(t.column_int64(6)));
      first = false;
    }
    t.reset();
    auto& w = db.prepared("SELECT network, passes, expires, manual FROM whitelist ORDER BY network");
    json += "],\"whitelist\":[";
    append(text, "\n%-40s %-8s %-8s %s\n", "WHITELISTED NETWORK", "SOURCE", "PASSES", "EXPIRES");
    first = true;
    while (w.step()) {
      const bool manual = w.column_int64(3) != 0;
      json += (first ? "{" : ",{") + std::string("\"network\":") + sdk::json_quote(w.column_string(0)) +
              ",\"source\":\"" + (manual ? "manual" : "auto") + "\",\"passes\":" + std::to_string(w.column_int64(1)) +
              ",\"expires\":" + (manual ? std::string("null") : "\"" + iso_time(w.column_int64(2)) + "\"") + "}";
      append(text, "%-40s %-8s %-8lld %s\n", w.column_string(0).c_str(), manual ? "manual" : "auto",
             static_cast<long long>(w.column_int64(1)), manual ? "never" : iso_time(w.column_int64(2)).c_str());
      first = false;
    }
    w.reset();
  });
  reply.ok(json + "]}", text);
}

void GreylistPlugin::allow_command(const std::string& network, sdk::CommandReply& reply) {
  const auto net = Network::parse(network);
  if (!net) {
    reply.fail(sdk::CommandExit::Usage, "greylist allow: '" + network + "' is not an IP address or CIDR network");
    return;
  }
  const std::string text = net->to_string();
  store_->db().with([&](sdk::storage::Database& db) {
   db.transaction([&](sdk::storage::Database& t) {
    t.prepared(
         "INSERT INTO whitelist (network, lo, hi, passes, expires, manual, created) VALUES (?1, ?2, ?3, 0, 0, 1, ?4) "
         "ON CONFLICT (network) DO UPDATE SET manual = 1, expires = 0")
        .bind(1, text)
        .bind(2, net->lo.blob())
        .bind(3, net->hi.blob())
        .bind(4, now_ms())
        .run();
   });
  });
  reload_whitelist();  // in force in this daemon when the command answers
  reply.ok("{\"allowed\":" + sdk::json_quote(text) + "}", "allowed " + text + "\n");
}

void GreylistPlugin::flush_command(bool expired, bool all, sdk::CommandReply& reply) {
  if (expired && all) {
    reply.fail(sdk::CommandExit::Usage, "greylist flush: --expired and --all exclude each other");
    return;
  }
  int64_t triplets = 0, networks = 0;
  if (expired) {
    // This instance's own settings decide what expired (README.md defaults).
    const int64_t now = now_ms();
    store_->db().with([&](sdk::storage::Database& db) {
     db.transaction([&](sdk::storage::Database& t) {
      triplets = t.prepared(
                      "DELETE FROM triplet WHERE (passed_at = 0 AND first_seen < ?1) OR "
                      "(passed_at <> 0 AND last_seen < ?2)")
                     .bind(1, now - settings_.policy.window_ms)
                     .bind(2, now - settings_.policy.whitelist_for_ms)
                     .run();
      networks = t.prepared("DELETE FROM whitelist WHERE manual = 0 AND expires < ?1").bind(1, now).run();
     });
    });
  } else {
    store_->db().with([&](sdk::storage::Database& db) {
      db.transaction([&](sdk::storage::Database& t) {
        triplets = t.prepared("DELETE FROM triplet").run();
        networks = all ? t.prepared("DELETE FROM whitelist").run()
                       : t.prepared("DELETE FROM whitelist WHERE manual = 0").run();
      });
    });
  }
  {
    std::lock_guard lock(cache_mutex_);
    cache_.clear();  // a flushed triplet must be greylisted again at once
  }
  reload_whitelist();
  std::string text;
  append(text, "deleted %lld triplet(s) and %lld whitelist entr%s\n", static_cast<long long>(triplets),
         static_cast<long long>(networks), networks == 1 ? "y" : "ies");
  reply.ok("{\"triplets\":" + std::to_string(triplets) + ",\"whitelist\":" + std::to_string(networks) + "}", text);
}

sdk::Status GreylistPlugin::add_commands(sdk::InitContext& ctx) {
  if (!POSTERN_SDK_API_HAS(ctx.host().api(), command_complete)) {
    ctx.host().info("this host has no admin commands (ABI < 1.3): `posternctl greylist` is unavailable");
    return sdk::Status::ok();
  }
  // Each body may throw (SQLite busy beyond the timeout, disk errors): the
  // client then gets the reason instead of a silent "dropped" answer.
  auto guarded = [](auto body) {
    return [body](sdk::CommandArgs args, sdk::CommandReply reply) {
      try {
        body(args, reply);
      } catch (const std::exception& e) {
        reply.fail(sdk::CommandExit::Fail, std::string("greylist: ") + e.what());
      }
    };
  };
  if (auto s = ctx.command(sdk::CommandSpec("greylist", "list", "triplets and whitelisted networks"),
                           guarded([this](const sdk::CommandArgs&, sdk::CommandReply& r) { list_command(r); }));
      !s)
    return s;
  if (auto s = ctx.command(
          sdk::CommandSpec("greylist", "allow", "whitelists an address or network (never expires)")
              .arg("network", sdk::ArgType::String, "an IP address or CIDR network", sdk::kRequired | sdk::kPositional),
          guarded([this](const sdk::CommandArgs& a, sdk::CommandReply& r) {
            allow_command(*a.string("network"), r);
          }));
      !s)
    return s;
  return ctx.command(
      sdk::CommandSpec("greylist", "flush",
                       "deletes every triplet and automatic whitelist entry (--all: manual ones too; "
                       "--expired: only what expired)")
          .arg("expired", sdk::ArgType::Boolean, "only what the window and auto-whitelist-for expired")
          .arg("all", sdk::ArgType::Boolean, "manual whitelist entries too"),
      guarded([this](const sdk::CommandArgs& a, sdk::CommandReply& r) {
        flush_command(a.flag("expired"), a.flag("all"), r);
      }));
}

}  // namespace postern::plugins::greylist
