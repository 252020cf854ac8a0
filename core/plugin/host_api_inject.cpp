// ABI 1.3 message injection (inject, docs/plugin-guide.md): a plugin's new
// message goes into the spool exactly like one received by SMTP (tmp file,
// fsync, rename, directory fsync: core/queue/spool.cpp), on the worker pool,
// and the queue manager delivers it on the normal path. The envelope records
// the local origin (`origin: plugin`, `injected-by: <plugin>`) and the skip
// list (`skip-filters:`), which the queue's hooks honour (queue/manager.cpp,
// event/chain.cpp); a Received: trace field names the plugin.
// Diagnostics (component "inject"): one line per injected message with its
// queue id, sender, recipient count and plugin, or the cause of a failure.
#include "core/plugin/host_api_v13.hpp"

#include "core/log/log.hpp"
#include "core/queue/dsn.hpp"
#include "core/queue/spool.hpp"
#include "core/smtp/address.hpp"

#include <boost/asio/post.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>

namespace postern::core::plugin {

namespace {

constexpr size_t kMaxRecipients = 1000;
constexpr size_t kMaxSkipFilters = 64;

std::string_view sv(postern_str_t s) { return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view{}; }
bool bad_str(postern_str_t s) { return s.ptr == nullptr && s.len != 0; }

/**
 * A plugin's address as an envelope address: RFC 5321 §4.1.2 through the SMTP
 * engine's parser (UTF-8 allowed, RFC 6531). @return nullopt when invalid.
 */
std::optional<std::string> envelope_address(std::string_view address, bool allow_null, bool& utf8) {
  if (address.empty()) {
    if (!allow_null) return std::nullopt;
    return std::string();
  }
  if (address.size() > 254) return std::nullopt;
  const std::string path = fmt::format("<{}>", address);
  std::string_view rest;
  smtp::PathResult r = smtp::parse_path(path, false, true, &rest);
  if (r.status != smtp::PathStatus::Ok || !rest.empty() || r.had_source_route) return std::nullopt;
  if (std::any_of(address.begin(), address.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
    utf8 = true;
  return r.mailbox.str();
}

/** CRLF line ends (a bare LF becomes CRLF; a bare CR too, RFC 5322 §2.3), ending with one. */
std::string normalize_lines(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 32 + 2);
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

bool valid_filter_name(std::string_view name) {
  return !name.empty() && name.size() <= 128 &&
         std::all_of(name.begin(), name.end(), [](char c) { return c > 32 && c < 127 && c != ','; });
}

struct InjectJob {
  queue::Spool* spool = nullptr;
  queue::Envelope envelope;
  std::string message;
  postern_inject_cb done = nullptr;
  void* user = nullptr;
  std::string plugin;
};

void run_job(InjectJob& job) {
  uint32_t status = POSTERN_OK;
  std::string text;
  try {
    job.spool->store(job.envelope, job.message);
    text = job.envelope.queue_id;
    log::info("inject", "qid={} plugin={} from=<{}> rcpts={} size={} skip={}", job.envelope.queue_id, job.plugin,
              job.envelope.mail_from, job.envelope.recipients.size(), job.message.size(),
              job.envelope.skip_filters.empty() ? std::string("-") : fmt::format("{}", fmt::join(job.envelope.skip_filters, ",")));
  } catch (const std::invalid_argument& e) {
    status = POSTERN_ERR_INVALID;
    text = e.what();
  } catch (const std::exception& e) {
    status = POSTERN_ERR_TEMPORARY;
    text = fmt::format("cannot write the spool file: {}", e.what());
  }
  if (status != POSTERN_OK) log::error("inject", "plugin={} message not queued: {}", job.plugin, text);
  try {
    job.done(job.user, status, postern_str_t{text.data(), text.size()});
  } catch (...) {
    log::error("inject", "plugin={} completion callback threw; ignored", job.plugin);
  }
}

}  // namespace

namespace abi13 {

postern_status_t inject(postern_host_t* host, const postern_inject_request_t* rq, postern_inject_cb done, void* user) {
  LoadedPlugin* p = host != nullptr ? host->plugin : nullptr;
  if (p == nullptr || rq == nullptr || done == nullptr) return POSTERN_ERR_INVALID;
  constexpr size_t kMinRequest = offsetof(postern_inject_request_t, skip_filter_count) + sizeof(size_t);
  if (rq->struct_size < kMinRequest || rq->flags != 0 || bad_str(rq->mail_from)) return POSTERN_ERR_INVALID;
  if (rq->recipient_count == 0 || rq->recipient_count > kMaxRecipients || rq->recipients == nullptr)
    return POSTERN_ERR_INVALID;
  if (rq->message.len == 0 || rq->message.ptr == nullptr) return POSTERN_ERR_INVALID;
  if (rq->skip_filter_count > kMaxSkipFilters || (rq->skip_filter_count != 0 && rq->skip_filters == nullptr))
    return POSTERN_ERR_INVALID;
  const HostServices& services = p->services();
  if (services.spool == nullptr || services.workers == nullptr) return POSTERN_ERR_UNAVAILABLE;

  auto job = std::make_shared<InjectJob>();
  queue::Envelope& env = job->envelope;
  bool utf8 = false;
  auto from = envelope_address(sv(rq->mail_from), true, utf8);
  if (!from) return POSTERN_ERR_INVALID;
  env.mail_from = std::move(*from);
  for (size_t i = 0; i < rq->recipient_count; ++i) {
    if (bad_str(rq->recipients[i])) return POSTERN_ERR_INVALID;
    auto to = envelope_address(sv(rq->recipients[i]), false, utf8);
    if (!to) return POSTERN_ERR_INVALID;
    queue::EnvelopeRecipient r;
    r.address = std::move(*to);
    env.recipients.push_back(std::move(r));
  }
  for (size_t i = 0; i < rq->skip_filter_count; ++i) {
    const std::string_view name = sv(rq->skip_filters[i]);
    if (bad_str(rq->skip_filters[i]) || !valid_filter_name(name)) return POSTERN_ERR_INVALID;
    if (std::find(env.skip_filters.begin(), env.skip_filters.end(), name) == env.skip_filters.end())
      env.skip_filters.emplace_back(name);
  }
  env.queue_id = services.spool->new_queue_id();
  env.received_at = std::chrono::system_clock::now();
  // A local origin, as the queue's own DSNs record it (queue/dsn.cpp).
  env.peer = "127.0.0.1";
  env.helo = services.server_name.empty() ? std::string("localhost") : services.server_name;
  env.origin = "plugin";
  env.injected_by = p->name();
  env.smtputf8 = utf8;
  const std::string_view raw(reinterpret_cast<const char*>(rq->message.ptr), rq->message.len);
  const bool eight_bit =
      std::any_of(raw.begin(), raw.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  env.body = eight_bit ? queue::BodyType::EightBitMime : queue::BodyType::SevenBit;
  // RFC 5321 §4.4: a trace field for every system that handles the message;
  // the counted Received: fields also stop a plugin that loops on its own mail.
  job->message = fmt::format("Received: by {} (Postern) id {}\r\n\t(injected by plugin {}); {}\r\n",
                             services.server_name.empty() ? std::string("localhost") : services.server_name,
                             env.queue_id, p->name(), queue::rfc5322_date(env.received_at));
  job->message += normalize_lines(raw);
  job->spool = services.spool;
  job->done = done;
  job->user = user;
  job->plugin = p->name();

  // Counted like post_work: unload waits for the spool write and the callback.
  std::shared_ptr<Outstanding> out = p->outstanding();
  if (!out->enter()) return POSTERN_ERR_UNAVAILABLE;
  boost::asio::post(*services.workers, [job, out] {
    run_job(*job);
    out->leave();
  });
  return POSTERN_OK;
}

}  // namespace abi13
}  // namespace postern::core::plugin
