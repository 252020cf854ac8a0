/**
 * platform_probe — a filter built out of tree on the ABI 1.3 platform.
 *
 * data_end: defers, asks a TCP verdict service (one request line, one answer
 *           line) over a connection the host opens, and adds
 *           `X-Probe-Verdict: <answer>` through the pending handle; when the
 *           service is unreachable, slow or silent, `on-unavailable` decides
 *           (continue with `X-Probe-Verdict: unavailable (<why>)`, or 451).
 *           An answer "defang <reason>" also replaces the body with a notice
 *           and changes the envelope sender to `defang-sender` (default: the
 *           null sender), as a milter's REPLBODY / CHGFROM would, late.
 *           When a recipient is the `watch` address, it injects a notice for
 *           `notify-to` into the queue.
 * events:   counts the mailbox store's events (stored per folder, moves and
 *           copies per source/target folder).
 * admin:    `posternctl probe stats [--json]` shows every counter.
 * Configuration: attributes of its <plugin> element (see README.md).
 */
#include <postern/sdk/sdk.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace probe {

namespace sdk = postern::sdk;

constexpr const char* kVerdictHeader = "X-Probe-Verdict";
/** The longest answer line taken from the verdict service (octets, without CRLF). */
constexpr size_t kMaxAnswer = 200;

/** ASCII lower case (addresses compare case-insensitively; no locale involved). */
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/** One token of the request line: whitespace and control characters become '_'. */
std::string token(std::string_view s) {
  if (s.empty()) return "-";
  std::string out(s.substr(0, 256));
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) c = '_';
  }
  return out;
}

/** `t` as an RFC 5322 date in UTC, independent of the process locale. */
std::string rfc5322_date(std::chrono::system_clock::time_point t) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[static_cast<size_t>(tm.tm_wday)],
                tm.tm_mday, kMonths[static_cast<size_t>(tm.tm_mon)], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

/** What the plugin has seen since it was loaded; every member is thread-safe. */
class Stats {
 public:
  void verdict(bool answered) { (answered ? answered_ : unavailable_).fetch_add(1); }
  void notice(bool queued) { (queued ? notices_queued_ : notices_failed_).fetch_add(1); }

  void event(const sdk::MailboxEvent& e) {
    std::lock_guard lock(mu_);
    const auto kind = static_cast<size_t>(e.kind);
    if (kind < events_.size()) ++events_[kind];
    const uint64_t messages = e.uids.empty() ? 1 : e.uids.size();
    switch (e.kind) {
      case POSTERN_MBOX_EVENT_STORED: stored_[e.folder] += messages; break;
      case POSTERN_MBOX_EVENT_MOVED:
      case POSTERN_MBOX_EVENT_COPIED:
        transfers_[{e.kind == POSTERN_MBOX_EVENT_MOVED ? "moved" : "copied", e.folder, e.target_folder, e.actor}] +=
            messages;
        break;
      default: break;
    }
  }

  /** The counters as one JSON object. */
  std::string json() const {
    std::lock_guard lock(mu_);
    std::string out = "{\"verdicts\":{\"answered\":" + std::to_string(answered_.load()) +
                      ",\"unavailable\":" + std::to_string(unavailable_.load()) + "}";
    out += ",\"notices\":{\"queued\":" + std::to_string(notices_queued_.load()) +
           ",\"failed\":" + std::to_string(notices_failed_.load()) + "}";
    out += ",\"events\":{";
    for (size_t i = 0; i < events_.size(); ++i) {
      out += (i ? ",\"" : "\"") + std::string(kKindNames[i]) + "\":" + std::to_string(events_[i]);
    }
    out += "},\"stored\":[";
    bool first = true;
    for (const auto& [folder, n] : stored_) {
      out += std::string(first ? "" : ",") + "{\"folder\":" + sdk::json_quote(folder) +
             ",\"messages\":" + std::to_string(n) + "}";
      first = false;
    }
    for (const char* kind : {"moved", "copied"}) {
      out += std::string("],\"") + kind + "\":[";
      first = true;
      for (const auto& [key, n] : transfers_) {
        const auto& [k, from, to, actor] = key;
        if (k != kind) continue;
        out += std::string(first ? "" : ",") + "{\"from\":" + sdk::json_quote(from) +
               ",\"to\":" + sdk::json_quote(to) + ",\"actor\":" + sdk::json_quote(actor) +
               ",\"messages\":" + std::to_string(n) + "}";
        first = false;
      }
    }
    return out + "]}";
  }

  /** The counters as posternctl prints them without --json. */
  std::string text() const {
    std::lock_guard lock(mu_);
    std::string out = "verdicts: " + std::to_string(answered_.load()) + " answered, " +
                      std::to_string(unavailable_.load()) + " unavailable\n";
    out += "notices:  " + std::to_string(notices_queued_.load()) + " queued, " +
           std::to_string(notices_failed_.load()) + " failed\n";
    out += "events:  ";
    for (size_t i = 0; i < events_.size(); ++i) {
      out += " " + std::string(kKindNames[i]) + "=" + std::to_string(events_[i]);
    }
    out += "\n";
    for (const auto& [folder, n] : stored_) out += "stored   " + folder + ": " + std::to_string(n) + "\n";
    for (const auto& [key, n] : transfers_) {
      const auto& [k, from, to, actor] = key;
      out += k + "    " + from + " -> " + to + " by " + actor + ": " + std::to_string(n) + "\n";
    }
    return out;
  }

 private:
  static constexpr std::array<const char*, 5> kKindNames = {"stored", "copied", "moved", "expunged", "flags"};

  std::atomic<uint64_t> answered_{0}, unavailable_{0}, notices_queued_{0}, notices_failed_{0};
  mutable std::mutex mu_;
  std::array<uint64_t, 5> events_{};
  std::map<std::string, uint64_t> stored_;
  // (moved|copied, source folder, target folder, actor) -> messages
  std::map<std::tuple<std::string, std::string, std::string, std::string>, uint64_t> transfers_;
};

/** How a message fares when the verdict service gives no answer. */
enum class Unavailable { Continue, TempFail };

/**
 * One verdict request for one deferred data_end hook. The connect-failure
 * callback (an I/O thread) and the connection (its strand) may both try to
 * finish it: the first one wins, the other does nothing.
 */
class Query {
 public:
  Query(sdk::Host host, sdk::Pending pending, std::shared_ptr<Stats> stats, Unavailable policy, std::string qid,
        std::string request, std::string defang_sender)
      : host_(host),
        pending_(std::move(pending)),
        stats_(std::move(stats)),
        policy_(policy),
        qid_(std::move(qid)),
        request_(std::move(request)),
        defang_sender_(std::move(defang_sender)) {}

  const std::string& request() const { return request_; }

  /** The service answered `line` (without its line end). */
  void answer(std::string_view line) {
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty()) return unavailable("empty answer");
    std::string verdict(line.substr(0, kMaxAnswer));
    for (char& c : verdict) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && u != '\t') || u == 0x7f) c = '?';  // a header value carries no control characters
    }
    if (done_.exchange(true)) return;
    stats_->verdict(true);
    if (!pending_.add_header(kVerdictHeader, verdict)) {
      host_.warn("qid=" + qid_ + " the host refused the header " + kVerdictHeader + ": " + verdict);
    }
    if (verdict.rfind("defang ", 0) == 0) defang(verdict.substr(7));
    pending_.complete(sdk::HookResult::continue_());
  }

  /**
   * The service wants the content gone: the body becomes a plain notice and
   * bounces go to `defang-sender`, through the pending handle (ABI 1.3).
   */
  void defang(std::string_view reason) {
    const std::string notice = "This message's content was removed by platform_probe (" + std::string(reason) +
                               ").\r\n";
    const bool body = pending_.replace_body(notice) &&
                      pending_.change_header("Content-Type", 0, "text/plain; charset=us-ascii") &&
                      pending_.remove_header("Content-Transfer-Encoding");
    const bool sender = pending_.set_mail_from(defang_sender_);
    if (!body || !sender) {
      host_.warn("qid=" + qid_ + " the host refused to defang the message (body " + (body ? "ok" : "refused") +
                 ", sender " + (sender ? "ok" : "refused") + ")");
      return;
    }
    host_.info("qid=" + qid_ + " defanged: body replaced, sender <" + defang_sender_ + ">");
  }

  /** No answer: `why` is a short reason for the header and the log. */
  void unavailable(std::string_view why) {
    if (done_.exchange(true)) return;
    stats_->verdict(false);
    host_.warn("qid=" + qid_ + " verdict service unavailable: " + std::string(why));
    if (policy_ == Unavailable::TempFail) {
      pending_.complete(sdk::HookResult::tempfail("4.7.0", "Verdict service unavailable, try again later", 451));
      return;
    }
    pending_.add_header(kVerdictHeader, "unavailable (" + std::string(why) + ")");
    pending_.complete(sdk::HookResult::continue_());
  }

 private:
  sdk::Host host_;
  sdk::Pending pending_;
  std::shared_ptr<Stats> stats_;
  Unavailable policy_;
  std::string qid_;
  std::string request_;
  std::string defang_sender_;
  std::atomic<bool> done_{false};
};

/** The client side of the verdict protocol: writes the request, reads one line. */
class VerdictClient : public sdk::Connection {
 public:
  VerdictClient(sdk::Stream stream, std::shared_ptr<Query> query, std::chrono::milliseconds timeout)
      : stream_(std::move(stream)), query_(std::move(query)) {
    stream_.set_idle_timeout(timeout);
    stream_.write(query_->request());
  }

  void on_data(std::string_view data) override {
    buf_.append(data);
    const size_t eol = buf_.find('\n');
    if (eol == std::string::npos) {
      if (buf_.size() > 4 * kMaxAnswer) {
        query_->unavailable("answer too long");
        stream_.close();
      }
      return;
    }
    std::string_view line(buf_.data(), eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    query_->answer(line);
    stream_.close();
  }

  void on_close(sdk::CloseReason reason) override {
    // A no-op after an answer; otherwise the service went away before answering.
    query_->unavailable(reason == sdk::CloseReason::Timeout ? "timeout" : "closed without an answer");
  }

 private:
  sdk::Stream stream_;
  std::shared_ptr<Query> query_;
  std::string buf_;
};

class PlatformProbe {
 public:
  static constexpr const char* kName = "platform_probe";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx) {
    host_ = std::make_unique<sdk::Host>(ctx.host());
    const sdk::Config config = ctx.config();
    if (auto s = read_config(config); !s) return s;
    if (!sdk::has_outbound(*host_) || !host_->has_mailbox_events() ||
        !POSTERN_SDK_API_HAS(host_->api(), pending_body_replace)) {
      return sdk::Status::error("needs a host with ABI 1.3 (outbound connections, injection, mailbox events)");
    }
    if (auto s = ctx.on_data_end([this](sdk::Event& ev) { return data_end(ev); }); !s) return s;
    events_ = host_->on_mailbox_events(POSTERN_MBOX_MASK_ALL,
                                       [stats = stats_](const sdk::MailboxEvent& e) { stats->event(e); });
    if (events_ == 0) host_->warn("the host has no mailbox store: no mailbox events will be counted");
    auto s = ctx.command(sdk::CommandSpec("probe", "stats", "verdicts, notices and mailbox events seen since start"),
                         [stats = stats_](sdk::CommandArgs, sdk::CommandReply reply) {
                           reply.ok(stats->json(), stats->text());
                         });
    if (!s) return s;
    host_->info("verdict service " +
                (verdict_.port == 0 ? std::string("off")
                                    : verdict_.host + ":" + std::to_string(verdict_.port) + " (timeout " +
                                          std::to_string(verdict_.timeout.count()) + " ms, on-unavailable " +
                                          (policy_ == Unavailable::TempFail ? "tempfail" : "continue") + ")") +
                (watch_.empty() ? std::string(", no watched address")
                                : ", notices for mail to " + watch_ + " go to " + notify_to_));
    return sdk::Status::ok();
  }

 private:
  sdk::Status read_config(const sdk::Config& c) {
    const auto bad = [&](std::string_view attr, std::string_view why) {
      return sdk::Status::error(std::string(attr) + "=\"" + std::string(c.attr(attr).value_or("")) + "\" " +
                                std::string(why) + " (line " + std::to_string(c.line()) + ")");
    };
    verdict_.host = c.attr_or("verdict-host", "127.0.0.1");
    if (c.attr("verdict-port")) {
      const auto port = c.integer("verdict-port");
      if (!port || *port < 1 || *port > 65535) return bad("verdict-port", "is not a port number");
      verdict_.port = static_cast<uint16_t>(*port);
    }
    if (c.attr("verdict-timeout")) {
      const auto t = c.duration("verdict-timeout");
      if (!t || t->count() == 0) return bad("verdict-timeout", "is not a duration (250ms, 3s, ...)");
      verdict_.timeout = *t;
    }
    const std::string policy = c.attr_or("on-unavailable", "continue");
    if (policy == "tempfail") {
      policy_ = Unavailable::TempFail;
    } else if (policy != "continue") {
      return bad("on-unavailable", "is neither continue nor tempfail");
    }
    watch_ = lower(c.attr_or("watch", ""));
    notify_to_ = c.attr_or("notify-to", "");
    notify_from_ = c.attr_or("notify-from", "");
    defang_sender_ = c.attr_or("defang-sender", "");
    if (!watch_.empty() && notify_to_.empty()) return bad("notify-to", "is needed with watch");
    return sdk::Status::ok();
  }

  sdk::HookResult data_end(sdk::Event& ev) {
    if (!watch_.empty()) {
      for (std::string_view rcpt : ev.recipients()) {
        if (lower(rcpt) == watch_) {
          send_notice(ev);
          break;
        }
      }
    }
    if (verdict_.port == 0) return sdk::HookResult::continue_();

    std::string msgid = "-";
    if (auto m = ev.message()) msgid = std::string(m->header("Message-ID").value_or("-"));
    std::string request = "CHECK peer=" + token(ev.peer_ip()) + " from=" +
                          (ev.mail_from().empty() ? std::string("<>") : token(ev.mail_from())) +
                          " rcpts=" + std::to_string(ev.recipients().size()) + " msgid=" + token(msgid) + "\r\n";
    sdk::Pending pending = ev.defer();
    if (!pending.valid()) return sdk::HookResult::continue_();
    const sdk::HookResult deferred = pending.result();
    auto query = std::make_shared<Query>(*host_, std::move(pending), stats_, policy_, std::string(ev.queue_id()),
                                         std::move(request), defang_sender_);
    sdk::ConnectOptions to = sdk::ConnectOptions::tcp(verdict_.host, verdict_.port);
    to.timeout = verdict_.timeout;
    const auto timeout = verdict_.timeout;
    const sdk::ConnectId id = sdk::connect(
        *host_, to,
        [query, timeout](sdk::Stream s) { return std::make_unique<VerdictClient>(std::move(s), query, timeout); },
        [query](sdk::ConnectStatus st, std::string_view) { query->unavailable(sdk::connect_status_name(st)); });
    if (id == 0) query->unavailable("connect refused by the host");
    return deferred;
  }

  /** Queues a notice about the current message for `notify-to`; the outcome is counted and logged. */
  void send_notice(const sdk::Event& ev) {
    std::string subject = "(none)", from_header = "(none)", msgid = "(none)";
    if (auto m = ev.message()) {
      subject = std::string(m->header("Subject").value_or("(none)"));
      from_header = std::string(m->header("From").value_or("(none)"));
      msgid = std::string(m->header("Message-ID").value_or("(none)"));
    }
    const std::string domain = notify_to_.substr(notify_to_.rfind('@') + 1);
    const auto now = host_->now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    sdk::InjectMessage m;
    m.mail_from = notify_from_;
    m.recipients = {notify_to_};
    m.skip_filters = {kName};  // never filter our own notices
    m.message = "From: platform_probe <" + (notify_from_.empty() ? "postmaster@" + domain : notify_from_) +
                ">\r\nTo: <" + notify_to_ + ">\r\nSubject: Mail for " + watch_ + "\r\nDate: " + rfc5322_date(now) +
                "\r\nMessage-ID: <probe." + std::to_string(ms) + "." + std::to_string(++notices_) + "@" + domain +
                ">\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                "A message for " + watch_ + " was received.\r\n\r\n  Queue ID:   " + std::string(ev.queue_id()) +
                "\r\n  Peer:       " + std::string(ev.peer_ip()) + "\r\n  Sender:     <" +
                std::string(ev.mail_from()) + ">\r\n  From:       " + from_header + "\r\n  Subject:    " + subject +
                "\r\n  Message-ID: " + msgid + "\r\n";
    const sdk::Host host = *host_;
    const std::string qid(ev.queue_id());
    const bool accepted = sdk::inject(*host_, m, [host, stats = stats_, qid](const sdk::InjectResult& r) {
      stats->notice(r.ok());
      if (r.ok()) {
        host.info("qid=" + qid + " notice queued as " + r.queue_id);
      } else {
        host.warn("qid=" + qid + " notice failed: " + r.error);
      }
    });
    if (!accepted) {
      stats_->notice(false);
      host_->warn("qid=" + qid + " the host refused the notice for " + notify_to_);
    }
  }

  struct Verdict {
    std::string host;
    uint16_t port = 0;  // 0: no verdict service
    std::chrono::milliseconds timeout{3000};
  };

  std::unique_ptr<sdk::Host> host_;
  std::shared_ptr<Stats> stats_ = std::make_shared<Stats>();
  Verdict verdict_;
  Unavailable policy_ = Unavailable::Continue;
  std::string watch_;
  std::string notify_to_;
  std::string notify_from_;
  std::string defang_sender_;
  std::atomic<uint64_t> notices_{0};
  sdk::Host::SubscriptionId events_ = 0;
};

}  // namespace probe

POSTERN_PLUGIN(probe::PlatformProbe)
