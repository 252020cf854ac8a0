#include "lookup.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

namespace postern::plugins::dnsbl {
namespace {

// A list that keeps failing is reported at most once per this interval.
constexpr int64_t kFailureReportMs = 60'000;
// A TXT lookup with less time left than this is not worth starting.
constexpr int64_t kMinTxtMs = 50;

std::string weight_text(double w) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", w);
  return buf;
}

std::string_view status_name(postern_dns_status_t s) {
  switch (s) {
    case POSTERN_DNS_OK: return "ok";
    case POSTERN_DNS_NODATA: return "nodata";
    case POSTERN_DNS_NXDOMAIN: return "nxdomain";
    case POSTERN_DNS_TIMEOUT: return "timeout";
    case POSTERN_DNS_SERVFAIL: return "servfail";
    case POSTERN_DNS_CANCELLED: return "cancelled";
  }
  return "?";
}

}  // namespace

int64_t now_ms(const sdk::Host& host) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(host.now().time_since_epoch()).count();
}

std::optional<CachedAnswer> AnswerCache::get(const std::string& key, int64_t now_ms) const {
  std::lock_guard lock(mu_);
  auto it = map_.find(key);
  if (it == map_.end() || it->second.second <= now_ms) return std::nullopt;
  return it->second.first;
}

void AnswerCache::put(const std::string& key, CachedAnswer a, uint32_t ttl_seconds, int64_t now_ms) {
  if (capacity_ == 0 || ttl_seconds == 0) return;
  const int64_t expires = now_ms + int64_t{std::min<uint32_t>(ttl_seconds, 86'400)} * 1000;
  std::lock_guard lock(mu_);
  if (map_.size() >= capacity_ && !map_.contains(key)) {
    std::erase_if(map_, [now_ms](const auto& kv) { return kv.second.second <= now_ms; });
    if (map_.size() >= capacity_) map_.clear();  // crude but bounded; refilled from the resolver's cache
  }
  map_[key] = {std::move(a), expires};
}

size_t AnswerCache::size() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

StageRun::StageRun(sdk::Host host, std::shared_ptr<const Settings> settings, std::shared_ptr<AnswerCache> cache,
                   std::string stage_name, std::string client_ip, std::string context, uint16_t reject_code)
    : host_(host),
      settings_(std::move(settings)),
      cache_(std::move(cache)),
      stage_(std::move(stage_name)),
      client_ip_(std::move(client_ip)),
      context_(std::move(context)),
      reject_code_(reject_code) {}

std::string StageRun::cache_key(const Lookup& l) const {
  // Two lists may share a zone (an ip and a uri list) but not their answer filter.
  return std::string(to_string(l.list->type)) + ":" + l.qname;
}

sdk::HookResult StageRun::run(sdk::Event& ev) {
  started_ms_ = now_ms(host_);
  size_t missing = 0;
  for (Lookup& l : lookups_) {
    if (auto c = cache_->get(cache_key(l), started_ms_)) {
      l.done = true;
      l.hit = c->hit;
      l.answer = std::move(c->answer);
      l.txt = std::move(c->txt);
    } else {
      ++missing;
    }
  }
  if (missing == 0) {
    Decision d;
    {
      std::lock_guard lock(mu_);
      d = decide();
    }
    for (const std::string& line : d.log_lines) host_.info(line + " cached=yes");
    for (const auto& s : d.symbols) ev.add_symbol(s.name, s.weight, s.detail);
    return d.result;
  }

  sdk::Pending pending = ev.defer();
  if (!pending.valid()) return sdk::HookResult::failed("the host refused to defer the " + stage_ + " hook");
  sdk::HookResult result = pending.result();
  {
    std::lock_guard lock(mu_);
    pending_ = std::move(pending);
    // Set before the first query: answers may arrive on other threads at once.
    remaining_ = missing;
  }
  auto self = shared_from_this();
  for (size_t i = 0; i < lookups_.size(); ++i) {
    if (lookups_[i].done) continue;  // only read here: set before any query started
    host_.dns_query(lookups_[i].qname, POSTERN_DNS_A, lookups_[i].list->timeout,
                    [self, i](const sdk::DnsAnswer& a) { self->on_answer(i, a); });
  }
  return result;
}

void StageRun::on_answer(size_t index, const sdk::DnsAnswer& answer) {
  bool want_txt = false;
  std::string qname;
  std::chrono::milliseconds txt_timeout{0};
  {
    std::lock_guard lock(mu_);
    Lookup& l = lookups_[index];
    if (answer.status == POSTERN_DNS_OK) {
      for (const sdk::DnsRecord& r : answer.records) {
        if (r.type == POSTERN_DNS_A && l.list->filter.matches(r.data)) {
          l.hit = true;
          l.answer = r.data;
          break;
        }
      }
    }
    // Only real answers are worth keeping; a timeout or SERVFAIL is asked again next time.
    if (answer.status == POSTERN_DNS_OK || answer.status == POSTERN_DNS_NODATA ||
        answer.status == POSTERN_DNS_NXDOMAIN) {
      l.ttl = answer.min_ttl;
    }
    if (l.hit && l.list->action != Action::Score && l.list->txt) {
      // The TXT lookup gets what is left of the list's timeout, so a hit costs no more than a miss.
      const int64_t left = started_ms_ + l.list->timeout.count() - now_ms(host_);
      if (left >= kMinTxtMs) {
        want_txt = true;
        qname = l.qname;
        txt_timeout = std::chrono::milliseconds(left);
      }
    }
  }
  if (answer.status == POSTERN_DNS_TIMEOUT || answer.status == POSTERN_DNS_SERVFAIL) {
    note_failure(lookups_[index], answer);
  }
  if (want_txt) {
    auto self = shared_from_this();
    host_.dns_query(qname, POSTERN_DNS_TXT, txt_timeout, [self, index](const sdk::DnsAnswer& a) { self->on_txt(index, a); });
    return;
  }
  one_done(index);
}

void StageRun::on_txt(size_t index, const sdk::DnsAnswer& answer) {
  {
    std::lock_guard lock(mu_);
    Lookup& l = lookups_[index];
    for (const sdk::DnsRecord& r : answer.records) {
      if (r.type == POSTERN_DNS_TXT && !r.data.empty()) {
        l.txt = sanitize_reply_text(r.data, 200);
        break;
      }
    }
  }
  one_done(index);
}

void StageRun::note_failure(const Lookup& l, const sdk::DnsAnswer& answer) {
  host_.debug("lookup failed list=" + l.list->zone + " name=" + l.qname + " status=" +
              std::string(status_name(answer.status)) + " " + context_);
  ListHealth& h = *l.list->health;
  const uint64_t failures = h.failures_since_report.fetch_add(1) + 1;
  const int64_t now = now_ms(host_);
  int64_t last = h.last_report_ms.load();
  if (now - last < kFailureReportMs) return;
  if (!h.last_report_ms.compare_exchange_strong(last, now)) return;  // another thread reports
  h.failures_since_report.fetch_sub(failures);
  host_.warn("list " + l.list->zone + " is not answering: " + std::to_string(failures) +
             " lookups failed since the last report (last: " + std::string(status_name(answer.status)) +
             " after at most " + std::to_string(l.list->timeout.count()) + "ms); treated as not listed");
}

void StageRun::one_done(size_t index) {
  bool last = false;
  std::string key;
  CachedAnswer c;
  uint32_t ttl = 0;
  {
    std::lock_guard lock(mu_);
    Lookup& l = lookups_[index];
    l.done = true;
    ttl = l.ttl;
    if (ttl > 0) {
      key = cache_key(l);
      c = CachedAnswer{l.hit, l.answer, l.txt};
    }
    last = --remaining_ == 0;
  }
  if (ttl > 0) cache_->put(key, std::move(c), ttl, now_ms(host_));
  if (last) finish();
}

std::string StageRun::reply_text(const Lookup& l) const {
  std::string tmpl = l.list->message;
  if (tmpl.empty()) {
    if (l.source == "client") tmpl = "Service unavailable; client [%s] blocked using %z";
    else if (l.source == "sender") tmpl = "Service unavailable; sender domain %s blocked using %z";
    else if (l.source == "helo") tmpl = "Service unavailable; HELO name %s blocked using %z";
    else tmpl = "Message refused; it contains a URL of %s, blocked using %z";
    if (!l.txt.empty()) tmpl += "; %t";
  }
  return expand_message(tmpl, l.item, client_ip_, l.list->zone, l.answer, l.txt);
}

StageRun::Decision StageRun::decide() const {
  Decision d;
  const Lookup* reject = nullptr;
  const Lookup* tempfail = nullptr;
  std::set<const List*> scored;
  for (const Lookup& l : lookups_) {
    if (!l.hit) continue;
    std::string line = "hit list=" + l.list->zone + " type=" + std::string(to_string(l.list->type)) +
                       (l.is_address ? " ip=" : " name=") + l.item + " answer=" + l.answer +
                       " action=" + std::string(to_string(l.list->action));
    if (l.list->action == Action::Score) {
      line += " symbol=" + l.list->symbol + " weight=" + weight_text(l.list->weight);
      // One symbol per list and stage, however many of its names are listed.
      if (scored.insert(l.list).second) d.symbols.push_back({l.list->symbol, l.list->weight, l.item + " " + l.answer});
    } else if (l.list->action == Action::Reject && reject == nullptr) {
      reject = &l;
    } else if (l.list->action == Action::TempFail && tempfail == nullptr) {
      tempfail = &l;
    }
    if (!l.is_address || l.source != "client") line += " client=" + client_ip_;
    line += " source=" + l.source + " stage=" + stage_ + " " + context_;
    d.log_lines.push_back(std::move(line));
  }
  if (reject != nullptr) {
    d.result = sdk::HookResult::reject("5.7.1", reply_text(*reject), reject_code_);
  } else if (tempfail != nullptr) {
    d.result = sdk::HookResult::tempfail("4.7.1", reply_text(*tempfail), 451);
  }
  return d;
}

void StageRun::finish() {
  Decision d;
  sdk::Pending pending;
  {
    std::lock_guard lock(mu_);
    d = decide();
    pending = std::move(pending_);
    pending_ = sdk::Pending{};
  }
  for (const std::string& line : d.log_lines) host_.info(line);
  for (const auto& s : d.symbols) pending.add_symbol(s.name, s.weight, s.detail);
  if (d.result.verdict() != sdk::Verdict::Continue) pending.complete(d.result);
  // Otherwise releasing the last reference (here) completes the hook as Continue.
}

}  // namespace postern::plugins::dnsbl
