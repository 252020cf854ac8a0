#include "resolved.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <memory>

namespace postern::plugins::dnsbl {

/** Collects the answers of the address queries of one resolution. */
struct ResolvedDomains::Gather {
  std::mutex mu;
  size_t remaining = 0;
  size_t answered = 0;  // OK, NODATA or NXDOMAIN
  bool cancelled = false;
  uint32_t ttl = std::numeric_limits<uint32_t>::max();
  std::vector<IpAddress> addresses;
};

namespace {

// The MX exchanges of an answer ("10 mx1.example"), without the null MX ".".
std::vector<std::string> exchanges(const sdk::DnsAnswer& a, size_t limit) {
  std::vector<std::string> out;
  for (const sdk::DnsRecord& r : a.records) {
    const auto space = r.data.find(' ');
    if (space == std::string::npos) continue;
    std::string host = r.data.substr(space + 1);
    if (host.empty() || host == ".") continue;
    if (std::find(out.begin(), out.end(), host) == out.end()) out.push_back(std::move(host));
    if (out.size() >= limit) break;
  }
  return out;
}

}  // namespace

void ResolvedDomains::start(sdk::Host host, const std::vector<std::string>& domains, std::chrono::milliseconds timeout,
                            std::chrono::milliseconds refresh_min, std::chrono::milliseconds refresh_max) {
  host_ = host;
  timeout_ = timeout;
  refresh_min_ = refresh_min;
  refresh_max_ = refresh_max;
  {
    std::lock_guard lock(mu_);
    for (const std::string& d : domains) entries_.push_back(Entry{d, {}, false});
  }
  for (size_t i = 0; i < domains.size(); ++i) resolve(i);
}

bool ResolvedDomains::contains(const IpAddress& ip) const {
  std::lock_guard lock(mu_);
  for (const Entry& e : entries_) {
    if (std::find(e.addresses.begin(), e.addresses.end(), ip) != e.addresses.end()) return true;
  }
  return false;
}

std::string ResolvedDomains::domain_of(const IpAddress& ip) const {
  std::lock_guard lock(mu_);
  for (const Entry& e : entries_) {
    if (std::find(e.addresses.begin(), e.addresses.end(), ip) != e.addresses.end()) return e.domain;
  }
  return {};
}

size_t ResolvedDomains::resolved_count() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.resolved; }));
}

void ResolvedDomains::resolve(size_t index) {
  std::string domain;
  {
    std::lock_guard lock(mu_);
    domain = entries_[index].domain;
  }
  if (mode_ == Mode::Address) {
    resolve_hosts(index, {domain}, std::numeric_limits<uint32_t>::max());
    return;
  }
  host_.dns_query(domain, POSTERN_DNS_MX, timeout_, [this, index, domain](const sdk::DnsAnswer& a) {
    switch (a.status) {
      case POSTERN_DNS_CANCELLED: return;  // shutting down
      case POSTERN_DNS_OK:
        if (auto hosts = exchanges(a, 10); !hosts.empty()) {
          resolve_hosts(index, std::move(hosts), a.min_ttl);
        } else {
          // Only a null MX (RFC 7505): the domain receives no mail; no hosts.
          Gather g;
          g.answered = 1;
          g.ttl = a.min_ttl;
          finish(index, g);
        }
        return;
      case POSTERN_DNS_NODATA:
      case POSTERN_DNS_NXDOMAIN:
        // RFC 5321 §5.1: without MX records the domain itself is the implicit MX.
        resolve_hosts(index, {domain}, a.min_ttl);
        return;
      default: {
        Gather g;  // timeout or failure: keep what we had, retry soon
        finish(index, g);
        return;
      }
    }
  });
}

void ResolvedDomains::resolve_hosts(size_t index, std::vector<std::string> hosts, uint32_t ttl) {
  auto g = std::make_shared<Gather>();
  g->remaining = hosts.size() * 2;
  g->ttl = ttl;
  for (const std::string& h : hosts) {
    for (postern_dns_type_t type : {POSTERN_DNS_A, POSTERN_DNS_AAAA}) {
      host_.dns_query(h, type, timeout_, [this, index, g](const sdk::DnsAnswer& a) {
        bool last = false;
        {
          std::lock_guard lock(g->mu);
          if (a.status == POSTERN_DNS_CANCELLED) g->cancelled = true;
          if (a.status == POSTERN_DNS_OK || a.status == POSTERN_DNS_NODATA || a.status == POSTERN_DNS_NXDOMAIN) {
            ++g->answered;
            // A negative answer without an SOA reports 0 (unknown): it does not shorten the refresh.
            if (a.status == POSTERN_DNS_OK || a.min_ttl > 0) g->ttl = std::min(g->ttl, a.min_ttl);
            for (const sdk::DnsRecord& r : a.records) {
              if (r.type != POSTERN_DNS_A && r.type != POSTERN_DNS_AAAA) continue;
              if (auto ip = IpAddress::parse(r.data)) g->addresses.push_back(*ip);
            }
          }
          last = --g->remaining == 0;
        }
        if (last && !g->cancelled) finish(index, *g);
      });
    }
  }
}

void ResolvedDomains::finish(size_t index, Gather& g) {
  std::string domain;
  size_t count = 0;
  const bool failed = g.answered == 0;
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[index];
    domain = e.domain;
    if (!failed) {
      std::sort(g.addresses.begin(), g.addresses.end());
      g.addresses.erase(std::unique(g.addresses.begin(), g.addresses.end()), g.addresses.end());
      e.addresses = std::move(g.addresses);
      e.resolved = true;
    }
    count = e.addresses.size();
  }
  if (failed) {
    host_.warn(what_ + " domain " + domain + ": lookup failed; keeping " + std::to_string(count) +
               " known addresses, retrying in " + std::to_string(refresh_min_.count() / 1000) + "s");
  } else {
    host_.debug(what_ + " domain " + domain + ": " + std::to_string(count) + " addresses");
  }
  schedule(index, g.ttl, failed);
}

void ResolvedDomains::schedule(size_t index, uint32_t ttl_seconds, bool failed) {
  std::chrono::milliseconds delay = refresh_min_;
  if (!failed) {
    const auto ttl = std::chrono::milliseconds(uint64_t{ttl_seconds} * 1000);
    delay = std::clamp(ttl, refresh_min_, refresh_max_);
  }
  // The timer does not fire once the plugin is being unloaded (then nothing is rescheduled).
  host_.after(delay, [this, index] { resolve(index); });
}

}  // namespace postern::plugins::dnsbl
