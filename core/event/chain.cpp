#include "core/event/chain.hpp"

#include "core/log/log.hpp"
#include "core/plugin/host_internal.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <iterator>

namespace postern::core::event {
namespace {

using plugin::HookAnswer;

// Reply text from a plugin goes to the client verbatim: keep it one printable line.
std::string sanitize_text(std::string_view text) {
  std::string out;
  out.reserve(std::min<size_t>(text.size(), 400));
  for (unsigned char c : text.substr(0, 400)) out += (c < 32 || c == 127) ? ' ' : static_cast<char>(c);
  return out;
}

// RFC 3463: class.subject.detail, the class matching the reply code's first digit.
bool valid_enhanced(std::string_view e, char cls) {
  if (e.size() < 5 || e[0] != cls || e[1] != '.') return false;
  int dots = 0;
  size_t digits = 0;
  for (size_t i = 2; i < e.size(); ++i) {
    if (e[i] == '.') {
      if (digits == 0 || digits > 3) return false;
      ++dots;
      digits = 0;
    } else if (e[i] >= '0' && e[i] <= '9') {
      ++digits;
    } else {
      return false;
    }
  }
  return dots == 1 && digits > 0 && digits <= 3;
}

Outcome failure_outcome(const HookSlot& slot, Stage stage, std::string_view why, bool& decided) {
  log::warn("bus", "plugin={} stage={} failed: {} on-failure={}", slot.plugin->name(), stage_name(stage), why,
            slot.on_failure == OnFailure::TempFail ? "tempfail" : "continue");
  if (slot.on_failure == OnFailure::Continue || is_observer(stage)) {
    decided = false;
    return {};
  }
  decided = true;
  Outcome o;
  o.verdict = Verdict::TempFail;
  o.code = 451;
  o.enhanced = "4.3.0";
  o.text = "Temporary local problem, try again later";
  o.decided_by = slot.plugin->name();
  return o;
}

// Edits a pending hook made through its handle (ABI 1.3), in call order, now
// that its completion is on the session's strand; a failed hook's are dropped.
void apply_pending_edits(HookAnswer& a, EventData& ev) {
  if (ev.transaction == nullptr || (a.flags & POSTERN_RESULT_ERROR) != 0) return;
  Transaction& t = *ev.transaction;
  std::move(a.header_edits.begin(), a.header_edits.end(), std::back_inserter(t.header_edits));
  std::move(a.recipients_added.begin(), a.recipients_added.end(), std::back_inserter(t.recipients_added));
  std::move(a.recipients_removed.begin(), a.recipients_removed.end(), std::back_inserter(t.recipients_removed));
  if (a.sender_change) {
    t.mail_from = a.sender_change->address;  // later hooks read the new sender
    t.sender_change = std::move(a.sender_change);
  }
  if (a.body_replacement) {
    t.body_replacement = std::move(a.body_replacement);
    t.body_replaced_by = std::move(a.body_replaced_by);
  }
}

// Turns a hook's answer into the stage's outcome; `decided` false means next hook.
Outcome apply_answer(const HookSlot& slot, Stage stage, HookAnswer& a, EventData& ev, bool& decided) {
  for (Symbol& s : a.symbols) plugin::add_symbol(ev, std::move(s));
  // The verdict came from the plugin as an integer (on_hook's return value or
  // pending_complete's result): a value outside postern_verdict_t is a plugin
  // fault, handled like a failed hook, and its edits are dropped.
  if (a.verdict > POSTERN_VERDICT_QUARANTINE && (a.flags & POSTERN_RESULT_ERROR) == 0) {
    log::error("bus", "plugin={} stage={} returned verdict {}, which is not a postern_verdict_t", slot.plugin->name(),
               stage_name(stage), a.verdict);
    a.flags |= POSTERN_RESULT_ERROR;
    a.text = "invalid verdict " + std::to_string(a.verdict);
  }
  apply_pending_edits(a, ev);
  decided = false;
  if ((a.flags & POSTERN_RESULT_ERROR) != 0) {
    ++bus_stats().hook_failures;
    return failure_outcome(slot, stage, a.text.empty() ? "hook reported an error" : a.text, decided);
  }
  if (a.verdict == POSTERN_VERDICT_CONTINUE || is_observer(stage)) return {};
  Outcome o;
  o.verdict = static_cast<Verdict>(a.verdict);
  o.disconnect = (a.flags & POSTERN_RESULT_DISCONNECT) != 0;
  o.decided_by = slot.plugin->name();
  o.text = sanitize_text(a.text);
  char cls = '2';
  if (o.verdict == Verdict::Reject) cls = '5';
  if (o.verdict == Verdict::TempFail) cls = '4';
  if (a.code >= 200 && a.code <= 599 && static_cast<char>('0' + a.code / 100) == cls) o.code = static_cast<uint16_t>(a.code);
  if (valid_enhanced(a.enhanced, cls)) o.enhanced = a.enhanced;
  decided = true;
  return o;
}

uint32_t call_hook(const HookSlot& slot, Stage stage, EventData& ev, postern_event& pev,
                            postern_hook_result_t& res) {
  pev.data = &ev;
  pev.stage = stage;
  pev.plugin = slot.plugin;
  res.struct_size = sizeof res;
  ++bus_stats().hooks_called;
  return slot.plugin->call(static_cast<uint32_t>(stage), &pev, &res);
}

}  // namespace

BusStats& bus_stats() {
  static BusStats stats;
  return stats;
}

Chain::~Chain() {
  // Destroy in reverse manifest order, as plugins were initialised in order.
  while (!plugins_.empty()) {
    if (!plugins_.back()->quiesce()) {
      // Its code still runs: leak the whole plugin (code, instance, host
      // handle) rather than free memory a running call may use.
      (void)plugins_.back().release();
    }
    plugins_.pop_back();
  }
}

void Chain::add(std::unique_ptr<plugin::LoadedPlugin> p, std::chrono::milliseconds timeout, OnFailure on_failure) {
  for (size_t s = 0; s < kStageCount; ++s) {
    if (p->subscribed(static_cast<Stage>(s))) by_stage_[s].push_back(HookSlot{p.get(), timeout, on_failure});
  }
  plugins_.push_back(std::move(p));
}

Outcome Chain::run_sync(Stage stage, EventData& ev) const {
  for (const HookSlot& slot : subscribers(stage)) {
    if (ev.skips(slot.plugin->name())) continue;
    postern_event pev;
    postern_hook_result_t res{};
    const uint32_t v = call_hook(slot, stage, ev, pev, res);
    if (v == POSTERN_VERDICT_PENDING) {
      // No strand to wait on here: treat like a hook that cannot answer.
      if (pev.pending) pev.pending->abandon();
      bool decided = false;
      Outcome o = failure_outcome(slot, stage, "pending in a synchronous dispatch", decided);
      if (decided) return o;
      continue;
    }
    if (pev.pending) pev.pending->abandon();
    HookAnswer a = HookAnswer::copy(res);
    a.verdict = v;
    bool decided = false;
    Outcome o = apply_answer(slot, stage, a, ev, decided);
    if (decided) return o;
  }
  return {};
}

void Chain::notify(Stage stage, EventData& ev) const { (void)run_sync(stage, ev); }

boost::asio::awaitable<Outcome> Chain::run(Stage stage, EventData& ev) const {
  // The caller holds a ChainPtr for the session's life (chain.hpp), which
  // keeps every plugin's code loaded until the stage is over.
  const auto& slots = subscribers(stage);
  for (const HookSlot& slot : slots) {
    if (ev.skips(slot.plugin->name())) continue;
    postern_event pev;
    postern_hook_result_t res{};
    const uint32_t v = call_hook(slot, stage, ev, pev, res);

    HookAnswer answer;
    if (v == POSTERN_VERDICT_PENDING) {
      if (!pev.pending) {
        ++bus_stats().hook_failures;
        bool decided = false;
        Outcome o = failure_outcome(slot, stage, "returned Pending without deferring", decided);
        if (decided) co_return o;
        continue;
      }
      ++bus_stats().hooks_pending;
      const auto executor = co_await boost::asio::this_coro::executor;
      boost::asio::steady_timer timer(executor, slot.timeout);
      auto wait = std::make_shared<plugin::PendingWait>(executor);
      wait->timer = &timer;
      // Sessions run on an io_context (posternd, tests); the completion is
      // posted to it and then dispatched onto this strand.
      auto& io = static_cast<boost::asio::io_context&>(
          boost::asio::query(executor, boost::asio::execution::context));
      pev.pending->attach(wait, io);
      // If this frame is destroyed while suspended (the io_context going away
      // at shutdown), a later completion must not post into it.
      struct StopWaiting {
        plugin::PendingCore* core;
        ~StopWaiting() {
          if (core != nullptr) core->stop_waiting(true);
        }
      } guard{pev.pending.get()};
      if (!wait->done) {
        co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
      }
      if (!wait->done) {
        // Timed out: a later completion is ignored and counted.
        wait->done = true;
        pev.pending->stop_waiting(true);
        ++bus_stats().hook_timeouts;
        bool decided = false;
        Outcome o = failure_outcome(slot, stage, "timed out", decided);
        if (decided) co_return o;
        continue;
      }
      wait->timer = nullptr;
      pev.pending->stop_waiting(false);
      guard.core = nullptr;
      answer = std::move(*wait->answer);
    } else {
      if (pev.pending) pev.pending->abandon();
      answer = HookAnswer::copy(res);
      answer.verdict = v;
    }
    bool decided = false;
    Outcome o = apply_answer(slot, stage, answer, ev, decided);
    if (decided) co_return o;
  }
  co_return Outcome{};
}

}  // namespace postern::core::event
