// posternctl queue: the mail queue as files (docs/queue.md), mailq style.
//   queue list [--json]             every message in incoming/ and hold/
//   queue show ID [--json]          envelope, per-recipient state, headers
//   queue flush [ID]                ask posternd (SIGUSR1) to retry now
//   queue hold ID | release ID      move between incoming/ and hold/
//   queue delete ID                 remove the message and its state
//   queue resend ID                 requeue for all recipients under a new id
// The daemon is told through <queue>/requests/ and SIGUSR1 to the pid in
// <data-dir>/posternd.pid; without a running daemon the file operations
// still happen and the command says so.

#include "core/app/ctl/ctl.hpp"
#include "core/queue/dsn.hpp"
#include "core/queue/manager.hpp"
#include "core/queue/spool.hpp"
#include "core/queue/state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sys/types.h>
#include <unistd.h>

namespace postern::core::ctl {

namespace {

namespace fs = std::filesystem;
using queue::Envelope;
using queue::MessageState;

struct Entry {
  std::string id;
  std::string where;  // "incoming" or "hold"
  Envelope env;
  size_t size = 0;
  std::optional<MessageState> state;
  fs::path file;
};

std::string jstr(std::string_view s) { return "\"" + json_escape(s) + "\""; }

std::optional<Entry> load(const fs::path& qdir, const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') return std::nullopt;
  for (const char* where : {"incoming", "hold"}) {
    fs::path file = where == std::string_view("hold") ? queue::QueueManager::hold_dir(qdir) / id : qdir / where / id;
    size_t size = 0;
    auto env = queue::Spool::load_envelope(file, &size);
    if (!env) continue;
    Entry e{id, where, std::move(*env), size, queue::read_state_file(queue::QueueManager::state_dir(qdir) / id), file};
    return e;
  }
  return std::nullopt;
}

std::vector<Entry> load_all(const fs::path& qdir) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const fs::path& d : {qdir / "incoming", queue::QueueManager::hold_dir(qdir)})
    for (const auto& e : fs::directory_iterator(d, ec)) ids.push_back(e.path().filename().string());
  std::sort(ids.begin(), ids.end());
  std::vector<Entry> out;
  for (const auto& id : ids)
    if (auto e = load(qdir, id)) out.push_back(std::move(*e));
  return out;
}

std::string age(std::chrono::system_clock::time_point t) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - t).count();
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{}s", s);
  if (s < 7200) return fmt::format("{}m", s / 60);
  if (s < 2 * 86400) return fmt::format("{}h", s / 3600);
  return fmt::format("{}d", s / 86400);
}

int64_t epoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

/** Per envelope recipient: its targets' statuses (pending without a state file). */
struct RcptView {
  std::string address;
  std::string status;  // pending | delivered | relayed | failed | dropped | mixed
  std::string last;    // last result of a pending target
};

std::vector<RcptView> recipients(const Entry& e) {
  std::vector<RcptView> out;
  for (uint32_t i = 0; i < e.env.recipients.size(); ++i) {
    RcptView v{e.env.recipients[i].address, "pending", ""};
    if (e.state) {
      std::string status;
      for (const auto& u : e.state->units) {
        if (u.rcpt != i) continue;
        std::string s(queue::unit_status_name(u.status));
        status = status.empty() || status == s ? s : "mixed";
        if (!u.final() && u.code != 0) v.last = fmt::format("{} {} {}", u.code, u.enhanced, u.text);
        if (u.status == queue::UnitStatus::Failed) v.last = fmt::format("{} {} {}", u.code, u.enhanced, u.text);
      }
      if (!status.empty()) v.status = status;
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string last_error(const Entry& e) {
  if (!e.state) return {};
  for (const auto& u : e.state->units)
    if (!u.final() && u.code != 0) return fmt::format("{} {} {}", u.code, u.enhanced, u.text);
  return {};
}

std::string entry_json(const Entry& e, bool detail) {
  std::string j = fmt::format(
      "{{\"id\":{},\"queue\":{},\"size\":{},\"arrival\":{},\"age\":{},\"sender\":{},\"origin\":{},\"attempts\":{},"
      "\"next_try\":{},\"last_error\":{},\"recipients\":[",
      jstr(e.id), jstr(e.where), e.size, epoch(e.env.received_at),
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - e.env.received_at).count(),
      jstr(e.env.mail_from), jstr(e.env.origin), e.state ? e.state->attempts : 0,
      e.state ? epoch(e.state->next_try) : 0, jstr(last_error(e)));
  bool first = true;
  for (const auto& r : recipients(e)) {
    j += fmt::format("{}{{\"address\":{},\"status\":{},\"last_result\":{}}}", first ? "" : ",", jstr(r.address),
                     jstr(r.status), jstr(r.last));
    first = false;
  }
  j += "]";
  if (detail) {
    j += fmt::format(",\"envid\":{},\"ret\":{},\"body\":{},\"smtputf8\":{},\"peer\":{},\"helo\":{},\"auth_user\":{}",
                     jstr(e.env.envid), jstr(e.env.ret), jstr(queue::body_type_name(e.env.body)),
                     e.env.smtputf8 ? "true" : "false", jstr(e.env.peer), jstr(e.env.helo), jstr(e.env.auth_user));
    j += ",\"targets\":[";
    first = true;
    if (e.state) {
      for (const auto& u : e.state->units) {
        j += fmt::format("{}{{\"recipient\":{},\"target\":{},\"local\":{},\"status\":{},\"code\":{},\"enhanced\":{},"
                         "\"text\":{},\"remote\":{}}}",
                         first ? "" : ",", jstr(e.env.recipients[u.rcpt].address), jstr(u.target),
                         u.local ? "true" : "false", jstr(queue::unit_status_name(u.status)), u.code, jstr(u.enhanced),
                         jstr(u.text), jstr(u.remote));
        first = false;
      }
    }
    j += "]";
  }
  j += "}";
  return j;
}

/** Signals posternd; @return a one-line description of what happened. */
std::pair<bool, std::string> signal_daemon(const config::Manifest& m) {
  const fs::path pid_file = m.data_dir / "posternd.pid";
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) return {false, "posternd is not running (no pid file)"};
  if (::kill(static_cast<pid_t>(pid), SIGUSR1) != 0)
    return {false, fmt::format("posternd (pid {}) not reachable: {}", pid, std::strerror(errno))};
  return {true, fmt::format("posternd (pid {}) signalled", pid)};
}

void request(const fs::path& qdir, const std::string& name) {
  std::error_code ec;
  fs::create_directories(queue::QueueManager::requests_dir(qdir), ec);
  std::ofstream(queue::QueueManager::requests_dir(qdir) / name).flush();
}

int usage() {
  eprint(
               "usage: posternctl queue list [--json]\n"
               "       posternctl queue show ID [--json]\n"
               "       posternctl queue flush [ID]\n"
               "       posternctl queue hold ID | release ID | delete ID | resend ID\n");
  return kUsage;
}

int done(const Command& c, bool ok, const std::string& message, const std::string& extra_json = {}) {
  if (c.json) print("{\"ok\":%s,\"message\":%s%s}\n", ok ? "true" : "false", jstr(message).c_str(),
                          extra_json.c_str());
  else print("%s\n", message.c_str());
  return ok ? kOk : kFail;
}

}  // namespace

int queue(Command& c) {
  if (c.args.empty()) return usage();
  const std::string verb = c.args[0];
  const fs::path qdir = c.manifest.data_dir / "queue";
  std::error_code ec;

  if (verb == "list") {
    if (c.args.size() != 1) return usage();
    auto entries = load_all(qdir);
    if (c.json) {
      std::string j = "[";
      for (size_t i = 0; i < entries.size(); ++i) j += (i ? "," : "") + entry_json(entries[i], false);
      print("%s]\n", j.c_str());
      return kOk;
    }
    if (entries.empty()) {
      print("Mail queue is empty\n");
      return kOk;
    }
    print("%-21s %9s %5s  %s\n", "-Queue ID-", "-Size-", "-Age-", "-Sender/Recipient-------");
    uint64_t total = 0;
    for (const auto& e : entries) {
      total += e.size;
      print("%-20s%c %9zu %5s  %s\n", e.id.c_str(), e.where == "hold" ? '!' : ' ', e.size,
                  age(e.env.received_at).c_str(), e.env.mail_from.empty() ? "MAILER-DAEMON" : e.env.mail_from.c_str());
      const std::string err = last_error(e);
      if (!err.empty()) print("%38s(%s)\n", "", err.c_str());
      for (const auto& r : recipients(e))
        print("%38s%s%s\n", "", r.address.c_str(), r.status == "pending" ? "" : (" [" + r.status + "]").c_str());
    }
    print("-- %llu Kbytes in %zu Request%s. ('!' = held)\n",
                static_cast<unsigned long long>((total + 1023) / 1024), entries.size(), entries.size() == 1 ? "" : "s");
    return kOk;
  }

  if (verb == "show") {
    if (c.args.size() != 2) return usage();
    auto e = load(qdir, c.args[1]);
    if (!e) return fail(kNotFound, "queue: no message " + c.args[1]);
    auto file = queue::Spool::load(e->file);
    std::string headers;
    if (file) {
      size_t end = file->message.find("\r\n\r\n");
      headers = file->message.substr(0, end == std::string::npos ? file->message.size() : end + 2);
    }
    if (c.json) {
      std::string j = entry_json(*e, true);
      j.pop_back();
      j += ",\"headers\":" + jstr(headers) + "}";
      print("%s\n", j.c_str());
      return kOk;
    }
    print("queue-id:   %s (%s%s)\n", e->id.c_str(), e->where.c_str(), e->where == "hold" ? ", held" : "");
    print("size:       %zu\narrival:    %s (%s ago)\n", e->size, queue::rfc5322_date(e->env.received_at).c_str(),
                age(e->env.received_at).c_str());
    print("sender:     <%s>%s\n", e->env.mail_from.c_str(),
                e->env.origin.empty() ? "" : (" (" + e->env.origin + ")").c_str());
    print("client:     %s helo=%s auth=%s\n", e->env.peer.c_str(), e->env.helo.c_str(),
                e->env.auth_user.empty() ? "-" : e->env.auth_user.c_str());
    print("dsn:        envid=%s ret=%s body=%s smtputf8=%s\n", e->env.envid.c_str(), e->env.ret.c_str(),
                std::string(queue::body_type_name(e->env.body)).c_str(), e->env.smtputf8 ? "yes" : "no");
    if (e->state)
      print("attempts:   %u, next try %s\n", e->state->attempts, queue::rfc5322_date(e->state->next_try).c_str());
    else
      print("attempts:   0\n");
    for (uint32_t i = 0; i < e->env.recipients.size(); ++i) {
      const auto& r = e->env.recipients[i];
      print("recipient:  <%s> notify=%s orcpt=%s\n", r.address.c_str(), r.notify.c_str(), r.orcpt.c_str());
      if (!e->state) continue;
      for (const auto& u : e->state->units) {
        if (u.rcpt != i) continue;
        print("            -> %s%s [%s] %s\n", u.target.empty() ? "(unresolved)" : u.target.c_str(),
                    u.local ? " (local)" : "", std::string(queue::unit_status_name(u.status)).c_str(),
                    u.code ? fmt::format("{} {} {} ({})", u.code, u.enhanced, u.text, u.remote).c_str() : "");
      }
    }
    print("\n%s", headers.c_str());
    return kOk;
  }

  if (verb == "flush") {
    if (c.args.size() > 2) return usage();
    if (c.args.size() == 2) {
      if (!load(qdir, c.args[1])) return fail(kNotFound, "queue: no message " + c.args[1]);
      request(qdir, "flush-" + c.args[1]);
    } else {
      request(qdir, "flush-all");
    }
    auto [ok, how] = signal_daemon(c.manifest);
    return done(c, ok, ok ? "flush requested: " + how : "flush not run: " + how);
  }

  if (verb == "hold" || verb == "release" || verb == "delete" || verb == "resend") {
    if (c.args.size() != 2) return usage();
    const std::string id = c.args[1];
    auto e = load(qdir, id);
    if (!e) return fail(kNotFound, "queue: no message " + id);
    std::string message;
    std::string extra;
    if (verb == "hold") {
      if (e->where == "hold") return done(c, true, "queue: " + id + " is already held");
      fs::create_directories(queue::QueueManager::hold_dir(qdir), ec);
      fs::rename(e->file, queue::QueueManager::hold_dir(qdir) / id, ec);
      if (ec) return fail(kFail, "queue: hold " + id + ": " + ec.message());
      message = "held " + id;
    } else if (verb == "release") {
      if (e->where != "hold") return done(c, true, "queue: " + id + " is not held");
      fs::rename(e->file, qdir / "incoming" / id, ec);
      if (ec) return fail(kFail, "queue: release " + id + ": " + ec.message());
      message = "released " + id;
    } else if (verb == "delete") {
      fs::remove(e->file, ec);
      if (ec) return fail(kFail, "queue: delete " + id + ": " + ec.message());
      fs::remove(queue::QueueManager::state_dir(qdir) / id, ec);
      message = fmt::format("deleted {} from=<{}> recipients={} size={}", id, e->env.mail_from,
                            e->env.recipients.size(), e->size);
    } else {  // resend
      auto file = queue::Spool::load(e->file);
      if (!file) return fail(kFail, "queue: cannot read " + id);
      std::string new_id;
      try {
        queue::Spool spool(qdir, 1, /*clean_tmp=*/false);
        Envelope env = file->envelope;
        env.queue_id = new_id = spool.new_queue_id();
        env.origin = "resend";
        spool.store(env, file->message, "incoming");
      } catch (const std::exception& ex) {
        return fail(kFail, "queue: resend " + id + ": " + ex.what());
      }
      fs::remove(e->file, ec);
      fs::remove(queue::QueueManager::state_dir(qdir) / id, ec);
      message = fmt::format("resent {} as {}", id, new_id);
      extra = ",\"new_id\":" + jstr(new_id);
    }
    request(qdir, "rescan");
    auto [ok, how] = signal_daemon(c.manifest);
    // The operation is done either way; the daemon picks it up at its next start if not running.
    eprint("posternctl: queue %s %s (%s)\n", verb.c_str(), id.c_str(), how.c_str());
    return done(c, true, message, extra);
  }
  return usage();
}

}  // namespace postern::core::ctl
