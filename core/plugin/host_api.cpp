// The host side of postern_abi.h: every function of postern_host_api_v1_t.
// Each function validates its handles and never throws into the plugin.

#include "core/plugin/host_internal.hpp"
#include "core/plugin/host_api_v12.hpp"
#include "core/plugin/commands.hpp"
#include "core/plugin/host_api_v13.hpp"

#include "core/dns/resolver.hpp"
#include "core/event/chain.hpp"
#include "core/log/log.hpp"
#include "core/mime/mime.hpp"
#include "core/scheduler/scheduler.hpp"
#include "core/smtp/address.hpp"
#include "postern/mail/ascii.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

/** The opaque postern_message_t. */
struct postern_message {
  std::shared_ptr<const postern::core::mime::Message> msg;
  std::vector<std::optional<std::string>> bodies;  // decoded part bodies, on demand
  std::vector<std::string> content_types;          // "type/subtype" per part
};

namespace postern::core::plugin {
namespace {

using event::Stage;

std::string_view sv(postern_str_t s) { return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view{}; }
postern_str_t abi(std::string_view s) { return postern_str_t{s.data(), s.size()}; }

using mail::iequals;

// A header name per RFC 5322 §2.2: printable US-ASCII except colon.
bool valid_header_name(std::string_view name) {
  return !name.empty() && name.size() <= 998 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c > 32 && c < 127 && c != ':'; });
}

// A header value from a plugin must not smuggle in new lines (header injection).
bool valid_header_value(std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\0') return false;
    if (c == '\r' || c == '\n') {
      // Only folding (CRLF followed by WSP) is allowed.
      if (c != '\r' || i + 2 >= value.size() || value[i + 1] != '\n' || (value[i + 2] != ' ' && value[i + 2] != '\t'))
        return false;
      ++i;
    }
  }
  return value.size() <= 64 * 1024;
}

LoadedPlugin* plugin_of(postern_host_t* host) { return host != nullptr ? host->plugin : nullptr; }

void deliver_dns(const DnsCall& call, const dns::Answer& a) {
  std::vector<postern_dns_record_t> records;
  records.reserve(a.records.size());
  for (const dns::Record& r : a.records) records.push_back({r.type, r.ttl, abi(r.data)});
  postern_dns_answer_t out{};
  out.struct_size = sizeof out;
  out.status = static_cast<uint32_t>(a.status);
  out.name = abi(a.name);
  out.type = a.type;
  out.min_ttl = a.min_ttl;
  out.records = records.data();
  out.record_count = records.size();
  try {
    call.cb(call.user, &out);
  } catch (...) {
    log::error("plugin", "a DNS callback threw; ignored");
  }
}

// --- registration, config, environment ---------------------------------------

postern_status_t subscribe(postern_host_t* host, uint32_t stage) {
  LoadedPlugin* p = plugin_of(host);
  return p != nullptr ? p->subscribe(stage) : POSTERN_ERR_INVALID;
}

const postern_config_node_t* to_handle(pugi::xml_node n) {
  return reinterpret_cast<const postern_config_node_t*>(n.internal_object());
}
pugi::xml_node from_handle(const postern_config_node_t* h) {
  return pugi::xml_node(reinterpret_cast<pugi::xml_node_struct*>(const_cast<postern_config_node_t*>(h)));
}

const postern_config_node_t* config_root(postern_host_t* host) {
  LoadedPlugin* p = plugin_of(host);
  return p != nullptr && p->config() ? to_handle(p->config()) : nullptr;
}
postern_str_t config_name(const postern_config_node_t* node) {
  return node != nullptr ? abi(from_handle(node).name()) : postern_str_t{};
}
postern_status_t config_attr(const postern_config_node_t* node, postern_str_t name, postern_str_t* out) {
  if (node == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
  const std::string key(sv(name));
  pugi::xml_attribute a = from_handle(node).attribute(key.c_str());
  if (!a) return POSTERN_ERR_NOT_FOUND;
  *out = abi(a.value());
  return POSTERN_OK;
}
postern_str_t config_text(const postern_config_node_t* node) {
  return node != nullptr ? abi(from_handle(node).child_value()) : postern_str_t{};
}
const postern_config_node_t* config_child(const postern_config_node_t* node, postern_str_t name) {
  if (node == nullptr) return nullptr;
  pugi::xml_node n = from_handle(node);
  const std::string key(sv(name));
  pugi::xml_node c = key.empty() ? n.find_child([](pugi::xml_node x) { return x.type() == pugi::node_element; })
                                 : n.child(key.c_str());
  return c ? to_handle(c) : nullptr;
}
const postern_config_node_t* config_next(const postern_config_node_t* node, postern_str_t name) {
  if (node == nullptr) return nullptr;
  pugi::xml_node n = from_handle(node);
  const std::string key(sv(name));
  for (pugi::xml_node s = n.next_sibling(); s; s = s.next_sibling()) {
    if (s.type() == pugi::node_element && (key.empty() || key == s.name())) return to_handle(s);
  }
  return nullptr;
}
postern_str_t state_dir(postern_host_t* host) {
  LoadedPlugin* p = plugin_of(host);
  return p != nullptr ? abi(p->state_dir()) : postern_str_t{};
}
int64_t now_ms(postern_host_t* host) {
  LoadedPlugin* p = plugin_of(host);
  return p != nullptr && p->services().now_ms ? p->services().now_ms() : 0;
}
void log_line(postern_host_t* host, uint32_t level, postern_str_t message) {
  LoadedPlugin* p = plugin_of(host);
  const std::string_view who = p != nullptr ? p->name() : std::string_view{"plugin"};
  // The level arrives as an integer (ABI 1.3 contract fix): an unknown one is
  // the plugin's fault, and the line is kept, loudly, rather than lost.
  if (level > POSTERN_LOG_ERROR) {
    log::write(log::Level::Error, who, fmt::format("invalid log level {}: {}", level, sv(message)));
    return;
  }
  const auto lvl = static_cast<log::Level>(level);
  if (!log::enabled(lvl)) return;
  log::write(lvl, who, sv(message));
}

// --- asynchronous services ---------------------------------------------------

postern_status_t post_work(postern_host_t* host, postern_task_cb fn, void* user) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || fn == nullptr || p->services().workers == nullptr) return POSTERN_ERR_UNAVAILABLE;
  // Counted while queued: unloading waits for it, so fn runs exactly once.
  std::shared_ptr<Outstanding> out = p->outstanding();
  if (!out->enter()) return POSTERN_ERR_UNAVAILABLE;
  boost::asio::post(*p->services().workers, [fn, user, out] {
    try {
      fn(user);
    } catch (...) {
      log::error("plugin", "a work item threw; ignored");
    }
    out->leave();
  });
  return POSTERN_OK;
}

// Runs a timer's or query's callback unless the plugin is unloading (then its
// destructor completes it). @return whether the entry was still outstanding.
template <class Map>
bool take_outstanding(Outstanding& out, Map& map, uint64_t id) {
  std::lock_guard lock(out.mutex);
  if (map.erase(id) == 0 || out.closed) return false;
  ++out.in_flight;
  return true;
}

uint64_t timer_start(postern_host_t* host, uint64_t delay_ms, postern_timer_cb fn, void* user) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || fn == nullptr || p->services().io == nullptr) return 0;
  auto state = std::make_shared<TimerState>(p->services().io->get_executor());
  state->fn = fn;
  state->user = user;
  std::shared_ptr<Outstanding> out = p->outstanding();
  uint64_t id = 0;
  {
    std::lock_guard lock(out->mutex);
    if (out->closed) return 0;
    id = out->next_id++;
    out->timers.emplace(id, state);
  }
  // A huge delay ("never") must not wrap into a negative one that fires at once.
  constexpr uint64_t kMaxDelayMs = uint64_t{1} << 52;
  state->timer.expires_after(std::chrono::milliseconds(std::min(delay_ms, kMaxDelayMs)));
  state->timer.async_wait([state, out, id](boost::system::error_code ec) {
    if (!take_outstanding(*out, out->timers, id)) return;
    state->finish(ec ? 0 : 1);
    out->leave();
  });
  return id;
}

void timer_cancel(postern_host_t* host, uint64_t id) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || id == 0) return;
  std::shared_ptr<TimerState> state;
  {
    std::lock_guard lock(p->outstanding()->mutex);
    auto it = p->outstanding()->timers.find(id);
    if (it == p->outstanding()->timers.end()) return;
    state = it->second;
  }
  // Asio timers are not thread-safe: cancel on the timer's own executor; the
  // handler then runs fn(user, 0).
  boost::asio::post(state->timer.get_executor(), [state] { state->timer.cancel(); });
}

postern_status_t dns_query(postern_host_t* host, postern_str_t name, uint32_t type, uint32_t timeout_ms,
                           postern_dns_cb cb, void* user) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || cb == nullptr) return POSTERN_ERR_INVALID;
  // An RR type is 16 bits (RFC 1035 §3.2.2); 0 is reserved.
  if (type == 0 || type > 0xFFFF) {
    log::error("plugin", "name={} dns_query with invalid record type {}", p->name(), type);
    return POSTERN_ERR_INVALID;
  }
  if (p->services().resolver == nullptr) return POSTERN_ERR_UNAVAILABLE;
  auto call = std::make_shared<DnsCall>();
  call->cb = cb;
  call->user = user;
  call->name = std::string(sv(name));
  call->type = static_cast<uint16_t>(type);
  std::shared_ptr<Outstanding> out = p->outstanding();
  uint64_t id = 0;
  {
    std::lock_guard lock(out->mutex);
    if (out->closed) return POSTERN_ERR_UNAVAILABLE;
    id = out->next_id++;
    out->dns.emplace(id, call);
  }
  p->services().resolver->query(
      call->name, call->type, std::chrono::milliseconds(timeout_ms), [call, out, id](const dns::Answer& a) {
        if (!take_outstanding(*out, out->dns, id)) return;
        deliver_dns(*call, a);
        out->leave();
      });
  return POSTERN_OK;
}

// --- cron jobs (ABI 1.1) ----------------------------------------------------------

uint64_t cron_add(postern_host_t* host, postern_str_t name, postern_str_t cron_expr, postern_task_cb fn, void* user) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || fn == nullptr || p->services().scheduler == nullptr) return 0;
  scheduler::Scheduler& sched = *p->services().scheduler;
  std::shared_ptr<Outstanding> out = p->outstanding();
  uint64_t id = 0;
  {
    std::lock_guard lock(out->mutex);
    if (out->closed) return 0;
    id = out->next_id++;
    out->crons.emplace(id, 0);
    out->scheduler = sched.weak();
  }
  const std::string job_name = fmt::format("{}/{}", p->name(), sv(name).empty() ? "job" : sv(name));
  uint64_t job = 0;
  try {
    job = sched.add(job_name, sv(cron_expr), [out, id, fn, user, job_name] {
      // Counted while in plugin code: unloading waits for the run to end.
      {
        std::lock_guard lock(out->mutex);
        if (out->closed || !out->crons.contains(id)) return;
        ++out->in_flight;
      }
      try {
        fn(user);
      } catch (...) {
        log::error("plugin", "cron job {} threw; ignored", job_name);
      }
      out->leave();
    });
  } catch (const std::exception& e) {
    log::error("plugin", "name={} cron_add refused: {}", p->name(), e.what());
    std::lock_guard lock(out->mutex);
    out->crons.erase(id);
    return 0;
  }
  bool unloading = false;
  {
    std::lock_guard lock(out->mutex);
    auto it = out->crons.find(id);
    if (it != out->crons.end()) {
      it->second = job;
    } else {
      unloading = true;  // quiesce() took the entry before the job existed
    }
  }
  if (unloading) {
    sched.remove(job);
    return 0;
  }
  return id;
}

void cron_cancel(postern_host_t* host, uint64_t id) {
  LoadedPlugin* p = plugin_of(host);
  if (p == nullptr || id == 0) return;
  std::shared_ptr<Outstanding> out = p->outstanding();
  uint64_t job = 0;
  scheduler::WeakScheduler sched;
  {
    std::lock_guard lock(out->mutex);
    auto it = out->crons.find(id);
    if (it == out->crons.end()) return;
    job = it->second;
    out->crons.erase(it);
    sched = out->scheduler;
  }
  if (job != 0) sched.remove(job);
}

// --- the event -----------------------------------------------------------------

postern_status_t event_get(postern_event_t* ev, uint32_t prop, postern_str_t* out) {
  if (ev == nullptr || ev->data == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
  const event::EventData& d = *ev->data;
  const event::SessionInfo* s = d.session;
  const event::Transaction* t = d.transaction;
  auto give = [&](std::string_view v) {
    if (v.empty()) return POSTERN_ERR_NOT_FOUND;
    *out = abi(v);
    return POSTERN_OK;
  };
  switch (prop) {
    case POSTERN_PROP_SESSION_ID: return s ? give(s->session_id) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_QUEUE_ID: return t ? give(t->queue_id) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_PEER_IP: return s ? give(s->peer_ip) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_PEER_PORT:
      if (s == nullptr) return POSTERN_ERR_NOT_FOUND;
      ev->peer_port = std::to_string(s->peer_port);
      return give(ev->peer_port);
    case POSTERN_PROP_LOCAL_IP: return s ? give(s->local_ip) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_LOCAL_PORT:
      if (s == nullptr) return POSTERN_ERR_NOT_FOUND;
      ev->local_port = std::to_string(s->local_port);
      return give(ev->local_port);
    case POSTERN_PROP_LISTENER: return s ? give(s->listener) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_HELO: return s ? give(s->helo) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_AUTH_USER: return s ? give(s->auth_user) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_MAIL_FROM:
      // The null reverse-path is a value: OK with an empty string.
      if (t == nullptr || !t->mail_from) return POSTERN_ERR_NOT_FOUND;
      *out = abi(*t->mail_from);
      return POSTERN_OK;
    case POSTERN_PROP_RCPT: return give(d.current_rcpt);
    case POSTERN_PROP_TLS_PROTOCOL: return s ? give(s->tls_protocol) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_TLS_CIPHER: return s ? give(s->tls_cipher) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_SERVER_NAME: return s ? give(s->server_name) : POSTERN_ERR_NOT_FOUND;
    case POSTERN_PROP_COMMAND: return give(d.command);
    default: return POSTERN_ERR_INVALID;
  }
}

size_t event_rcpt_count(postern_event_t* ev) {
  return ev != nullptr && ev->data != nullptr && ev->data->transaction != nullptr
             ? ev->data->transaction->recipients.size()
             : 0;
}
postern_status_t event_rcpt_at(postern_event_t* ev, size_t index, postern_str_t* out) {
  if (out == nullptr || index >= event_rcpt_count(ev)) return POSTERN_ERR_NOT_FOUND;
  *out = abi(ev->data->transaction->recipients[index]);
  return POSTERN_OK;
}

const postern_message_t* event_message(postern_event_t* ev) {
  if (ev == nullptr || ev->data == nullptr || ev->data->transaction == nullptr) return nullptr;
  const auto& msg = ev->data->transaction->message;
  if (!msg) return nullptr;
  if (!ev->message) {
    ev->message = std::make_shared<postern_message>();
    ev->message->msg = msg;
    ev->message->bodies.resize(msg->parts().size());
    ev->message->content_types.reserve(msg->parts().size());
    for (const mime::Part& part : msg->parts()) {
      ev->message->content_types.push_back(part.content_type.type + "/" + part.content_type.subtype);
    }
  }
  return ev->message.get();
}

postern_status_t event_add_symbol(postern_event_t* ev, postern_str_t name, double weight, postern_str_t detail) {
  if (ev == nullptr || ev->data == nullptr || sv(name).empty()) return POSTERN_ERR_INVALID;
  add_symbol(*ev->data, event::Symbol{std::string(sv(name)), weight, std::string(sv(detail)),
                                      ev->plugin != nullptr ? ev->plugin->name() : std::string{}});
  return POSTERN_OK;
}

double event_score(postern_event_t* ev) {
  if (ev == nullptr || ev->data == nullptr) return 0;
  double total = ev->data->session != nullptr ? ev->data->session->score : 0;
  if (ev->data->transaction != nullptr) total += ev->data->transaction->score;
  return total;
}

// Edits take effect when the message is stored, so only stages before that may make them.
bool header_edit_stage(Stage stage) {
  return stage == Stage::Headers || stage == Stage::DataEnd || stage == Stage::DataStart || stage == Stage::RcptTo ||
         stage == Stage::MailFrom;
}
// Recipients are final at the end of data: only then may a hook change them.
bool rcpt_edit_stage(Stage stage) { return stage == Stage::DataEnd; }

event::Transaction* editable_transaction(postern_event_t* ev) {
  if (ev == nullptr || ev->data == nullptr || ev->data->transaction == nullptr) return nullptr;
  return header_edit_stage(ev->stage) ? ev->data->transaction : nullptr;
}

// One header edit, checked as both the synchronous and the pending path need
// it (RFC 5322 §2.2 name, no header injection in the value).
postern_status_t make_header_edit(event::HeaderEdit::Kind kind, postern_str_t name, postern_str_t value, int32_t index,
                                  int32_t prepend, event::HeaderEdit& out) {
  using Kind = event::HeaderEdit::Kind;
  if (!valid_header_name(sv(name))) return POSTERN_ERR_INVALID;
  if (kind != Kind::Remove && !valid_header_value(sv(value))) return POSTERN_ERR_INVALID;
  if (kind == Kind::Change && index < 0) return POSTERN_ERR_INVALID;
  out = {kind, std::string(sv(name)), kind == Kind::Remove ? std::string{} : std::string(sv(value)),
         kind == Kind::Add ? 0 : index, kind == Kind::Add && prepend != 0};
  return POSTERN_OK;
}

postern_status_t event_header_edit(postern_event_t* ev, event::HeaderEdit::Kind kind, postern_str_t name,
                                   postern_str_t value, int32_t index, int32_t prepend) {
  event::Transaction* t = editable_transaction(ev);
  if (t == nullptr) return POSTERN_ERR_UNAVAILABLE;
  event::HeaderEdit edit;
  if (const postern_status_t st = make_header_edit(kind, name, value, index, prepend, edit); st != POSTERN_OK)
    return st;
  t->header_edits.push_back(std::move(edit));
  return POSTERN_OK;
}

postern_status_t event_header_add(postern_event_t* ev, postern_str_t name, postern_str_t value, int32_t prepend) {
  return event_header_edit(ev, event::HeaderEdit::Kind::Add, name, value, 0, prepend);
}
postern_status_t event_header_change(postern_event_t* ev, postern_str_t name, int32_t index, postern_str_t value) {
  return event_header_edit(ev, event::HeaderEdit::Kind::Change, name, value, index, 0);
}
postern_status_t event_header_remove(postern_event_t* ev, postern_str_t name, int32_t index) {
  return event_header_edit(ev, event::HeaderEdit::Kind::Remove, name, {}, index, 0);
}

bool plausible_address(std::string_view a) {
  const auto at = a.rfind('@');
  return at != std::string_view::npos && at > 0 && at + 1 < a.size() && a.size() <= 254 &&
         std::none_of(a.begin(), a.end(), [](char c) { return c <= 32 || c == 127 || c == '<' || c == '>'; });
}

bool has_recipient(const std::vector<std::string>& rcpts, std::string_view address) {
  return std::any_of(rcpts.begin(), rcpts.end(), [&](const std::string& r) { return iequals(r, address); });
}

postern_status_t event_rcpt_add(postern_event_t* ev, postern_str_t address) {
  if (ev == nullptr || ev->data == nullptr || ev->data->transaction == nullptr) return POSTERN_ERR_UNAVAILABLE;
  if (!rcpt_edit_stage(ev->stage)) return POSTERN_ERR_UNAVAILABLE;
  if (!plausible_address(sv(address))) return POSTERN_ERR_INVALID;
  ev->data->transaction->recipients_added.emplace_back(sv(address));
  return POSTERN_OK;
}
postern_status_t event_rcpt_remove(postern_event_t* ev, postern_str_t address) {
  if (ev == nullptr || ev->data == nullptr || ev->data->transaction == nullptr) return POSTERN_ERR_UNAVAILABLE;
  if (!rcpt_edit_stage(ev->stage)) return POSTERN_ERR_UNAVAILABLE;
  if (!has_recipient(ev->data->transaction->recipients, sv(address))) return POSTERN_ERR_NOT_FOUND;
  ev->data->transaction->recipients_removed.emplace_back(sv(address));
  return POSTERN_OK;
}

// --- sender and body edits (ABI 1.3) ----------------------------------------------
// Milter's end-of-message actions (CHGFROM, REPLBODY): data_end only, where the
// message is final and nothing is spooled yet. The checks are shared by the
// synchronous and the pending path; the SMTP engine applies the result when
// it spools the message (server.cpp).

bool sender_body_edit_stage(Stage stage) { return stage == Stage::DataEnd; }

// The new sender checked as MAIL FROM is (RFC 5321 §4.1.2 path, RFC 3461 /
// RFC 6152 / RFC 6531 parameters); `utf8` when SMTPUTF8 is in effect already.
postern_status_t make_sender_change(std::string_view address, std::string_view args, bool utf8,
                                    std::string_view plugin, event::SenderChange& out) {
  out = event::SenderChange{};
  out.plugin = std::string(plugin);
  const auto params = smtp::parse_params(args, true);
  if (!params) return POSTERN_ERR_INVALID;
  std::vector<std::string> seen;
  for (const smtp::EsmtpParam& p : *params) {
    if (std::find(seen.begin(), seen.end(), p.key) != seen.end()) return POSTERN_ERR_INVALID;
    seen.push_back(p.key);
    std::string v = p.value.value_or("");
    for (char& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (p.key == "RET") {
      if (v != "FULL" && v != "HDRS") return POSTERN_ERR_INVALID;
      out.ret = v;
    } else if (p.key == "BODY") {
      if (v != "7BIT" && v != "8BITMIME") return POSTERN_ERR_INVALID;
      out.body = v;
    } else if (p.key == "ENVID") {
      // RFC 3461 §4.4: xtext, at most 100 characters (kept as given, not upper-cased).
      if (!p.value || p.value->size() > 100 || !smtp::is_valid_xtext(*p.value)) return POSTERN_ERR_INVALID;
      out.envid = *p.value;
    } else if (p.key == "SMTPUTF8") {
      if (p.value) return POSTERN_ERR_INVALID;
      out.smtputf8 = true;
    } else if (p.key != "SIZE" && p.key != "AUTH") {
      return POSTERN_ERR_INVALID;
    }
  }
  if (address.empty()) return POSTERN_OK;  // the null reverse-path
  if (address.size() > 254 || address.find_first_of("<> \t\r\n") != std::string_view::npos) return POSTERN_ERR_INVALID;
  const std::string path = "<" + std::string(address) + ">";
  std::string_view rest;
  const smtp::PathResult r = smtp::parse_path(path, false, utf8 || out.smtputf8, &rest);
  if (r.status != smtp::PathStatus::Ok || r.had_source_route || !rest.empty()) return POSTERN_ERR_INVALID;
  out.address = r.mailbox.str();
  return POSTERN_OK;
}

// A replacement body: CRLF line ends (a bare LF becomes CRLF), ending with
// CRLF unless empty; NUL and bare CR are refused, and so is a body above the
// listener's size limit (0: none).
postern_status_t make_body(postern_bytes_t body, uint64_t limit, std::string& out) {
  if (body.ptr == nullptr && body.len != 0) return POSTERN_ERR_INVALID;
  if (limit != 0 && body.len > limit) return POSTERN_ERR_INVALID;
  const std::string_view in(reinterpret_cast<const char*>(body.ptr), body.len);
  out.clear();
  out.reserve(in.size() + in.size() / 32 + 2);
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '\0') return POSTERN_ERR_INVALID;
    if (c == '\r') {
      if (i + 1 >= in.size() || in[i + 1] != '\n') return POSTERN_ERR_INVALID;  // a bare CR
      out += "\r\n";
      ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  if (limit != 0 && out.size() > limit) return POSTERN_ERR_INVALID;
  return POSTERN_OK;
}

event::Transaction* sender_body_transaction(postern_event_t* ev) {
  if (ev == nullptr || ev->data == nullptr || ev->data->transaction == nullptr) return nullptr;
  return sender_body_edit_stage(ev->stage) ? ev->data->transaction : nullptr;
}

postern_status_t event_mail_from_set(postern_event_t* ev, postern_str_t address, postern_str_t esmtp_args) {
  event::Transaction* t = sender_body_transaction(ev);
  if (t == nullptr) return POSTERN_ERR_UNAVAILABLE;
  event::SenderChange change;
  const bool utf8 = t->smtputf8 || (t->sender_change && t->sender_change->smtputf8);
  if (const postern_status_t st = make_sender_change(sv(address), sv(esmtp_args), utf8,
                                                     ev->plugin != nullptr ? ev->plugin->name() : "", change);
      st != POSTERN_OK)
    return st;
  t->mail_from = change.address;  // later hooks read the new sender (POSTERN_PROP_MAIL_FROM)
  t->sender_change = std::move(change);
  return POSTERN_OK;
}

postern_status_t event_body_replace(postern_event_t* ev, postern_bytes_t body) {
  event::Transaction* t = sender_body_transaction(ev);
  if (t == nullptr) return POSTERN_ERR_UNAVAILABLE;
  std::string normalized;
  if (const postern_status_t st = make_body(body, t->max_message_size, normalized); st != POSTERN_OK) return st;
  t->body_replacement = std::move(normalized);
  t->body_replaced_by = ev->plugin != nullptr ? ev->plugin->name() : "";
  return POSTERN_OK;
}

postern_pending_t* event_defer(postern_event_t* ev) {
  if (ev == nullptr || event::is_observer(ev->stage)) return nullptr;
  if (ev->pending) return nullptr;  // one deferral per hook call
  auto* handle = new postern_pending();
  handle->core = std::make_shared<PendingCore>();
  handle->core->plugin = ev->plugin != nullptr ? ev->plugin->name() : std::string{};
  handle->core->stage = ev->stage;
  if (ev->data != nullptr && ev->data->transaction != nullptr) {
    handle->core->has_transaction = true;
    if (rcpt_edit_stage(ev->stage)) handle->core->recipients = ev->data->transaction->recipients;
    const event::Transaction& t = *ev->data->transaction;
    handle->core->smtputf8 = t.smtputf8 || (t.sender_change && t.sender_change->smtputf8);
    handle->core->max_message_size = t.max_message_size;
  }
  ev->pending = handle->core;
  return handle;
}

// --- session tags (ABI 1.1) --------------------------------------------------------

constexpr size_t kMaxTagKey = 128;
constexpr size_t kMaxTagValue = 1024;
constexpr size_t kMaxTags = 64;

bool valid_tag_key(std::string_view k) {
  return !k.empty() && k.size() <= kMaxTagKey &&
         std::all_of(k.begin(), k.end(), [](char c) { return c > 32 && c < 127; });
}

postern_status_t event_tag_set(postern_event_t* ev, postern_str_t key, postern_str_t value) {
  if (ev == nullptr || ev->data == nullptr) return POSTERN_ERR_INVALID;
  event::SessionInfo* s = ev->data->session;
  if (s == nullptr) return POSTERN_ERR_UNAVAILABLE;
  const std::string_view k = sv(key);
  const std::string_view v = sv(value);
  if (!valid_tag_key(k) || v.size() > kMaxTagValue) return POSTERN_ERR_INVALID;
  if (auto it = s->tags.find(k); it != s->tags.end()) {
    it->second.assign(v);
    return POSTERN_OK;
  }
  if (s->tags.size() >= kMaxTags) {
    log::warn("plugin", "name={} session={} has {} tags; '{}' refused", ev->plugin != nullptr ? ev->plugin->name() : "",
              s->session_id, kMaxTags, k);
    return POSTERN_ERR_INVALID;
  }
  s->tags.emplace(std::string(k), std::string(v));
  return POSTERN_OK;
}

postern_status_t event_tag_get(postern_event_t* ev, postern_str_t key, postern_str_t* out) {
  if (ev == nullptr || ev->data == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
  const event::SessionInfo* s = ev->data->session;
  if (s == nullptr) return POSTERN_ERR_UNAVAILABLE;
  auto it = s->tags.find(sv(key));
  if (it == s->tags.end()) return POSTERN_ERR_NOT_FOUND;
  *out = abi(it->second);
  return POSTERN_OK;
}

// --- pending ---------------------------------------------------------------------

postern_pending_t* pending_retain(postern_pending_t* p) {
  if (p != nullptr) p->refs.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void pending_release(postern_pending_t* p) {
  if (p == nullptr) return;
  if (p->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // The last reference without a completion: the hook has nothing to say.
    p->core->complete(HookAnswer{}, false);
    delete p;
  }
}
postern_status_t pending_add_symbol(postern_pending_t* p, postern_str_t name, double weight, postern_str_t detail) {
  if (p == nullptr || sv(name).empty()) return POSTERN_ERR_INVALID;
  std::lock_guard lock(p->core->mutex);
  if (p->core->state != PendingCore::State::Open) return POSTERN_ERR_UNAVAILABLE;
  p->core->symbols.push_back({std::string(sv(name)), weight, std::string(sv(detail)), p->core->plugin});
  return POSTERN_OK;
}
// --- pending edits (ABI 1.3) ---------------------------------------------------------
// Recorded under the pending's mutex with the same checks as the synchronous
// edits; PendingCore::complete moves them into the answer, which the chain
// runner applies on the session's strand (chain.cpp).

postern_status_t pending_header_edit(postern_pending_t* p, event::HeaderEdit::Kind kind, postern_str_t name,
                                     postern_str_t value, int32_t index, int32_t prepend) {
  if (p == nullptr) return POSTERN_ERR_INVALID;
  PendingCore& core = *p->core;
  std::lock_guard lock(core.mutex);
  if (core.state != PendingCore::State::Open || !core.has_transaction || !header_edit_stage(core.stage))
    return POSTERN_ERR_UNAVAILABLE;
  event::HeaderEdit edit;
  if (const postern_status_t st = make_header_edit(kind, name, value, index, prepend, edit); st != POSTERN_OK)
    return st;
  core.header_edits.push_back(std::move(edit));
  return POSTERN_OK;
}
postern_status_t pending_header_add(postern_pending_t* p, postern_str_t name, postern_str_t value, int32_t prepend) {
  return pending_header_edit(p, event::HeaderEdit::Kind::Add, name, value, 0, prepend);
}
postern_status_t pending_header_change(postern_pending_t* p, postern_str_t name, int32_t index, postern_str_t value) {
  return pending_header_edit(p, event::HeaderEdit::Kind::Change, name, value, index, 0);
}
postern_status_t pending_header_remove(postern_pending_t* p, postern_str_t name, int32_t index) {
  return pending_header_edit(p, event::HeaderEdit::Kind::Remove, name, {}, index, 0);
}
postern_status_t pending_rcpt_add(postern_pending_t* p, postern_str_t address) {
  if (p == nullptr) return POSTERN_ERR_INVALID;
  PendingCore& core = *p->core;
  std::lock_guard lock(core.mutex);
  if (core.state != PendingCore::State::Open || !core.has_transaction || !rcpt_edit_stage(core.stage))
    return POSTERN_ERR_UNAVAILABLE;
  if (!plausible_address(sv(address))) return POSTERN_ERR_INVALID;
  core.recipients_added.emplace_back(sv(address));
  return POSTERN_OK;
}
postern_status_t pending_rcpt_remove(postern_pending_t* p, postern_str_t address) {
  if (p == nullptr) return POSTERN_ERR_INVALID;
  PendingCore& core = *p->core;
  std::lock_guard lock(core.mutex);
  if (core.state != PendingCore::State::Open || !core.has_transaction || !rcpt_edit_stage(core.stage))
    return POSTERN_ERR_UNAVAILABLE;
  if (!has_recipient(core.recipients, sv(address))) return POSTERN_ERR_NOT_FOUND;
  core.recipients_removed.emplace_back(sv(address));
  return POSTERN_OK;
}

postern_status_t pending_mail_from_set(postern_pending_t* p, postern_str_t address, postern_str_t esmtp_args) {
  if (p == nullptr) return POSTERN_ERR_INVALID;
  PendingCore& core = *p->core;
  std::lock_guard lock(core.mutex);
  if (core.state != PendingCore::State::Open || !core.has_transaction || !sender_body_edit_stage(core.stage))
    return POSTERN_ERR_UNAVAILABLE;
  event::SenderChange change;
  const bool utf8 = core.smtputf8 || (core.sender_change && core.sender_change->smtputf8);
  if (const postern_status_t st = make_sender_change(sv(address), sv(esmtp_args), utf8, core.plugin, change);
      st != POSTERN_OK)
    return st;
  core.sender_change = std::move(change);
  return POSTERN_OK;
}
postern_status_t pending_body_replace(postern_pending_t* p, postern_bytes_t body) {
  if (p == nullptr) return POSTERN_ERR_INVALID;
  PendingCore& core = *p->core;
  uint64_t limit = 0;
  {
    std::lock_guard lock(core.mutex);
    if (core.state != PendingCore::State::Open || !core.has_transaction || !sender_body_edit_stage(core.stage))
      return POSTERN_ERR_UNAVAILABLE;
    limit = core.max_message_size;
  }
  // The copy of a large body is made without holding the handle's mutex.
  std::string normalized;
  if (const postern_status_t st = make_body(body, limit, normalized); st != POSTERN_OK) return st;
  std::lock_guard lock(core.mutex);
  if (core.state != PendingCore::State::Open) return POSTERN_ERR_UNAVAILABLE;
  core.body_replacement = std::move(normalized);
  return POSTERN_OK;
}

postern_status_t pending_complete(postern_pending_t* p, const postern_hook_result_t* result) {
  if (p == nullptr || result == nullptr) return POSTERN_ERR_INVALID;
  if (result->verdict == POSTERN_VERDICT_PENDING) return POSTERN_ERR_INVALID;
  return p->core->complete(HookAnswer::copy(*result), true) ? POSTERN_OK : POSTERN_ERR_UNAVAILABLE;
}

// --- the message -------------------------------------------------------------------

postern_bytes_t message_raw(const postern_message_t* m) {
  if (m == nullptr) return {};
  const std::string_view raw = m->msg->raw();
  return postern_bytes_t{reinterpret_cast<const uint8_t*>(raw.data()), raw.size()};
}
size_t message_header_count(const postern_message_t* m) { return m != nullptr ? m->msg->headers().size() : 0; }
postern_status_t message_header_at(const postern_message_t* m, size_t i, postern_str_t* name, postern_str_t* value) {
  if (m == nullptr || i >= m->msg->headers().size()) return POSTERN_ERR_NOT_FOUND;
  const mime::Header& h = m->msg->headers()[i];
  if (name != nullptr) *name = abi(h.name);
  if (value != nullptr) *value = abi(h.value);
  return POSTERN_OK;
}
postern_status_t message_header_find(const postern_message_t* m, postern_str_t name, size_t nth,
                                     postern_str_t* value) {
  if (m == nullptr || value == nullptr) return POSTERN_ERR_INVALID;
  for (const mime::Header& h : m->msg->headers()) {
    if (iequals(h.name, sv(name)) && nth-- == 0) {
      *value = abi(h.value);
      return POSTERN_OK;
    }
  }
  return POSTERN_ERR_NOT_FOUND;
}
size_t message_part_count(const postern_message_t* m) { return m != nullptr ? m->msg->parts().size() : 0; }
postern_status_t message_part_at(const postern_message_t* m, size_t i, postern_mime_part_t* out) {
  if (m == nullptr || out == nullptr || out->struct_size < sizeof(postern_mime_part_t)) return POSTERN_ERR_INVALID;
  if (i >= m->msg->parts().size()) return POSTERN_ERR_NOT_FOUND;
  const mime::Part& p = m->msg->parts()[i];
  out->parent = p.parent;
  out->depth = p.depth;
  out->content_type = abi(m->content_types[i]);
  out->charset = abi(p.charset);
  out->filename = abi(p.filename);
  out->disposition = abi(p.disposition);
  out->transfer_encoding = abi(p.transfer_encoding);
  out->section = abi(p.section);
  out->raw_offset = p.raw_offset;
  out->raw_length = p.raw_length;
  return POSTERN_OK;
}
postern_status_t message_part_body(const postern_message_t* m, size_t i, postern_bytes_t* out) {
  if (m == nullptr || out == nullptr) return POSTERN_ERR_INVALID;
  if (i >= m->msg->parts().size()) return POSTERN_ERR_NOT_FOUND;
  auto* mut = const_cast<postern_message*>(m);  // the cache is ours; the handle is const for the plugin
  if (!mut->bodies[i]) mut->bodies[i] = m->msg->decoded_body(i);
  *out = postern_bytes_t{reinterpret_cast<const uint8_t*>(mut->bodies[i]->data()), mut->bodies[i]->size()};
  return POSTERN_OK;
}

uint32_t config_line_impl(const postern_config_node_t* node);

const postern_host_api_v1_t kHostApi = {
    sizeof(postern_host_api_v1_t),
    POSTERN_ABI_VERSION_MAJOR,
    POSTERN_ABI_VERSION_MINOR,
    &subscribe,
    &config_root,
    &config_name,
    &config_attr,
    &config_text,
    &config_child,
    &config_next,
    &config_line_impl,
    &state_dir,
    &now_ms,
    &log_line,
    &post_work,
    &timer_start,
    &timer_cancel,
    &dns_query,
    &event_get,
    &event_rcpt_count,
    &event_rcpt_at,
    &event_message,
    &event_add_symbol,
    &event_score,
    &event_header_add,
    &event_header_change,
    &event_header_remove,
    &event_rcpt_add,
    &event_rcpt_remove,
    &event_defer,
    &pending_retain,
    &pending_release,
    &pending_add_symbol,
    &pending_complete,
    &message_raw,
    &message_header_count,
    &message_header_at,
    &message_header_find,
    &message_part_count,
    &message_part_at,
    &message_part_body,
    // ABI 1.1
    &cron_add,
    &cron_cancel,
    &event_tag_set,
    &event_tag_get,
    // ABI 1.2
    &abi12::service_register,
    &abi12::stream_retain,
    &abi12::stream_release,
    &abi12::stream_write,
    &abi12::stream_queued,
    &abi12::stream_want_drain,
    &abi12::stream_pause,
    &abi12::stream_starttls,
    &abi12::stream_close,
    &abi12::stream_set_idle_timeout,
    &abi12::stream_post,
    &abi12::stream_get,
    &abi12::last_error,
    &abi12::dir_authenticate,
    &abi12::dir_account,
    &abi12::mbox_open,
    &abi12::mbox_release,
    &abi12::mresult_free,
    &abi12::mbox_list_folders,
    &abi12::mbox_folder_status,
    &abi12::mbox_create_folder,
    &abi12::mbox_delete_folder,
    &abi12::mbox_rename_folder,
    &abi12::mbox_subscribe,
    &abi12::mbox_claim_recent,
    &abi12::mbox_changes_since,
    &abi12::mbox_read_message,
    &abi12::mbox_store_flags,
    &abi12::mbox_expunge,
    &abi12::mbox_append,
    &abi12::mbox_copy,
    &abi12::mbox_move,
    &abi12::mbox_usage,
    &abi12::mbox_open_folder,
    &abi12::view_refresh,
    &abi12::view_release,
    // ABI 1.3: admin commands
    &abi13::command_register,
    &abi13::command_complete,
    // ABI 1.3: pending edits and mailbox events
    &pending_header_add,
    &pending_header_change,
    &pending_header_remove,
    &pending_rcpt_add,
    &pending_rcpt_remove,
    &abi13::mbox_events_subscribe,
    &abi13::mbox_events_unsubscribe,
    // ABI 1.3: outbound connections and message injection
    &abi13::stream_connect,
    &abi13::stream_connect_cancel,
    &abi13::inject,
    // ABI 1.3: envelope sender and body edits
    &event_mail_from_set,
    &event_body_replace,
    &pending_mail_from_set,
    &pending_body_replace,
};

// Line numbers: pugixml gives offsets; the manifest's Diagnostics maps them.
// The node does not know its document's line table, so the loader registers
// one per document.
std::mutex g_line_mutex;
std::vector<std::pair<const pugi::xml_node_struct*, std::function<uint32_t(const pugi::xml_node&)>>> g_line_maps;

uint32_t config_line_impl(const postern_config_node_t* node) {
  if (node == nullptr) return 0;
  pugi::xml_node n = from_handle(node);
  pugi::xml_node root = n.root();
  std::lock_guard lock(g_line_mutex);
  for (const auto& [doc_root, fn] : g_line_maps) {
    if (doc_root == root.internal_object()) return fn(n);
  }
  return 0;
}

}  // namespace

void register_line_map(const pugi::xml_node& any_node, std::function<uint32_t(const pugi::xml_node&)> fn) {
  std::lock_guard lock(g_line_mutex);
  const pugi::xml_node_struct* root = any_node.root().internal_object();
  for (auto& entry : g_line_maps) {
    if (entry.first == root) {
      entry.second = std::move(fn);
      return;
    }
  }
  g_line_maps.emplace_back(root, std::move(fn));
}

void unregister_line_map(const pugi::xml_node& any_node) {
  std::lock_guard lock(g_line_mutex);
  const pugi::xml_node_struct* root = any_node.root().internal_object();
  std::erase_if(g_line_maps, [&](const auto& e) { return e.first == root; });
}

const postern_host_api_v1_t* host_api() { return &kHostApi; }

void cancel_dns_call(const DnsCall& call) {
  dns::Answer a;
  a.status = dns::Status::Cancelled;
  a.name = call.name;
  a.type = call.type;
  deliver_dns(call, a);
}

void add_symbol(event::EventData& ev, event::Symbol symbol) {
  if (ev.transaction != nullptr) {
    ev.transaction->add_symbol(std::move(symbol));
  } else if (ev.session != nullptr) {
    ev.session->score += symbol.weight;
    ev.session->symbols.push_back(std::move(symbol));
  }
}

bool PendingCore::complete(HookAnswer answer, bool counts_as_late_if_refused) {
  std::lock_guard lock(mutex);
  if (state != State::Open) {
    if (counts_as_late_if_refused) ++event::bus_stats().late_completions;
    return false;
  }
  state = State::Completed;
  answer.symbols = std::move(symbols);
  answer.header_edits = std::move(header_edits);
  answer.recipients_added = std::move(recipients_added);
  answer.recipients_removed = std::move(recipients_removed);
  answer.sender_change = std::move(sender_change);
  if (body_replacement) {
    answer.body_replacement = std::move(body_replacement);
    answer.body_replaced_by = plugin;
  }
  if (!waiting) {
    early = std::move(answer);
    return true;
  }
  // Posted under the mutex: the runner cannot stop waiting (and its io_context
  // cannot go away) before the handler is queued. The handler takes the strong
  // reference on an I/O thread and moves onto the session's strand.
  boost::asio::post(io->get_executor(), [w = waiter, a = std::move(answer)]() mutable {
    std::shared_ptr<PendingWait> wait = w.lock();
    if (!wait) {
      ++event::bus_stats().late_completions;
      return;
    }
    boost::asio::dispatch(wait->executor, [wait, a = std::move(a)]() mutable {
      if (wait->done) {
        ++event::bus_stats().late_completions;
        return;
      }
      wait->done = true;
      wait->answer = std::move(a);
      if (wait->timer != nullptr) wait->timer->cancel();
    });
  });
  return true;
}

void PendingCore::attach(const std::shared_ptr<PendingWait>& wait, boost::asio::io_context& ctx) {
  std::optional<HookAnswer> ready;
  {
    std::lock_guard lock(mutex);
    if (early) {
      ready = std::move(early);
      early.reset();
    } else {
      io = &ctx;
      waiter = wait;
      waiting = true;
    }
  }
  if (ready) {
    // Completed inside on_hook or before the runner got here: no waiting.
    wait->done = true;
    wait->answer = std::move(ready);
  }
}

void PendingCore::stop_waiting(bool abandon_it) {
  std::lock_guard lock(mutex);
  waiting = false;
  if (abandon_it && state == State::Open) state = State::Abandoned;
}

void PendingCore::abandon() { stop_waiting(true); }

}  // namespace postern::core::plugin
