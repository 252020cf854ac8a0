/**
 * dnsbl — DNS blocklists (RFC 5782) and a local white/blacklist for Postern.
 *
 * connect:   whitelist / blacklist / exceptions, then the ip lists on the
 *            client's address (IPv4 reversed octets, IPv6 reversed nibbles);
 * mail_from: the rhs lists on the MAIL FROM domain and the HELO name;
 * data_end:  the uri lists on the registered domains of URL hosts in the
 *            text parts of the message.
 * See README.md for the configuration and the log lines.
 */
#include "dnsbl.hpp"

#include "lookup.hpp"
#include "uri.hpp"

#include <algorithm>

namespace postern::plugins::dnsbl {
namespace {

std::string context_of(const sdk::Event& ev) {
  std::string out = "session=" + std::string(ev.session_id());
  if (auto qid = ev.queue_id(); !qid.empty()) out += " qid=" + std::string(qid);
  return out;
}

}  // namespace

sdk::Status DnsblPlugin::init(sdk::InitContext& ctx) {
  const sdk::Config config = ctx.config();
  std::string error;
  auto parsed = parse_settings(config, error);
  if (!parsed) return sdk::Status::error(error);
  settings_ = std::make_shared<const Settings>(std::move(*parsed));
  cache_ = std::make_shared<AnswerCache>(settings_->cache_entries);
  host_ = ctx.host();
  const Settings& s = *settings_;

  if (auto st = ctx.on_connect([this](sdk::Event& ev) { return check_client(ev); }); !st) return st;
  if (s.has(ListType::Rhs)) {
    if (auto st = ctx.on_mail_from([this](sdk::Event& ev) { return check_sender(ev); }); !st) return st;
  }
  if (s.has(ListType::Uri)) {
    if (auto st = ctx.on_data_end([this](sdk::Event& ev) { return check_body(ev); }); !st) return st;
  }

  // Domains of the white/blacklist and MX exceptions: resolved now and kept fresh.
  const auto resolve_timeout = std::chrono::milliseconds(2000);
  white_domains_ = std::make_unique<ResolvedDomains>("whitelist", ResolvedDomains::Mode::Address);
  black_domains_ = std::make_unique<ResolvedDomains>("blacklist", ResolvedDomains::Mode::Address);
  mx_exceptions_ = std::make_unique<ResolvedDomains>("exceptions mx", ResolvedDomains::Mode::Mx);
  white_domains_->start(host_, s.whitelist.domains, resolve_timeout, s.refresh_min, s.refresh_max);
  black_domains_->start(host_, s.blacklist.domains, resolve_timeout, s.refresh_min, s.refresh_max);
  mx_exceptions_->start(host_, s.exceptions.mx_domains, resolve_timeout, s.refresh_min, s.refresh_max);

  size_t counts[3] = {0, 0, 0};
  for (const List& l : s.lists) ++counts[static_cast<int>(l.type)];
  host_.info("started: " + std::to_string(counts[0]) + " ip, " + std::to_string(counts[1]) + " rhs, " +
             std::to_string(counts[2]) + " uri lists; whitelist " + std::to_string(s.whitelist.addresses.size()) +
             " ranges + " + std::to_string(s.whitelist.domains.size()) + " domains; blacklist " +
             std::to_string(s.blacklist.addresses.size()) + " ranges + " +
             std::to_string(s.blacklist.domains.size()) + " domains");
  return sdk::Status::ok();
}

Standing DnsblPlugin::standing(const IpAddress& ip, std::string* entry) const {
  const Settings& s = *settings_;
  // The whitelist wins: it is where a single address is let out of a blacklisted range.
  if (s.whitelist.addresses.contains(ip)) {
    if (entry) *entry = "address";
    return Standing::Whitelisted;
  }
  if (white_domains_->contains(ip)) {
    if (entry) *entry = "domain:" + white_domains_->domain_of(ip);
    return Standing::Whitelisted;
  }
  if (s.blacklist.addresses.contains(ip)) {
    if (entry) *entry = "address";
    return Standing::Blacklisted;
  }
  if (black_domains_->contains(ip)) {
    if (entry) *entry = "domain:" + black_domains_->domain_of(ip);
    return Standing::Blacklisted;
  }
  if (s.exceptions.addresses.contains(ip)) {
    if (entry) *entry = "address";
    return Standing::Excepted;
  }
  if (mx_exceptions_->contains(ip)) {
    if (entry) *entry = "mx:" + mx_exceptions_->domain_of(ip);
    return Standing::Excepted;
  }
  return Standing::Normal;
}

std::optional<IpAddress> DnsblPlugin::peer(const sdk::Event& ev) const { return IpAddress::parse(ev.peer_ip()); }

bool DnsblPlugin::name_excepted(std::string_view name) const {
  const auto& domains = settings_->exceptions.domains;
  return std::any_of(domains.begin(), domains.end(), [&](const std::string& d) { return in_domain(name, d); });
}

void DnsblPlugin::mark_whitelisted(sdk::Event& ev) const {
  // Later filters of the session (greylist) skip a trusted source (postern_abi.h, POSTERN_TAG_WHITELISTED).
  if (!ev.set_tag(sdk::kTagWhitelisted, "1")) {
    host_.warn("could not tag the session whitelisted (host without ABI 1.1 tags?) " + context_of(ev));
  }
}

sdk::HookResult DnsblPlugin::check_client(sdk::Event& ev) {
  auto ip = peer(ev);
  if (!ip) return sdk::HookResult::continue_();
  if (ev.whitelisted()) {
    host_.debug("whitelisted ip=" + ip->to_string() + " entry=session-tag " + context_of(ev));
    return sdk::HookResult::continue_();
  }
  std::string entry;
  switch (standing(*ip, &entry)) {
    case Standing::Whitelisted:
      mark_whitelisted(ev);
      host_.debug("whitelisted ip=" + ip->to_string() + " entry=" + entry + " " + context_of(ev));
      return sdk::HookResult::continue_();
    case Standing::Excepted:
      host_.debug("excepted ip=" + ip->to_string() + " entry=" + entry + " " + context_of(ev));
      return sdk::HookResult::continue_();
    case Standing::Blacklisted: {
      host_.info("hit list=blacklist type=local ip=" + ip->to_string() + " answer=local entry=" + entry +
                 " action=reject source=client stage=connect " + context_of(ev));
      const std::string ipt = ip->to_string();
      return sdk::HookResult::reject("5.7.1", expand_message(settings_->blacklist_message, ipt, ipt, "blacklist",
                                                             "", ""),
                                     554);
    }
    case Standing::Normal: break;
  }

  auto run = std::make_shared<StageRun>(host_, settings_, cache_, "connect", ip->to_string(), context_of(ev), 554);
  const std::string labels = reversed_labels(*ip);
  for (const List& l : settings_->lists) {
    if (l.type != ListType::Ip || (ip->v6 ? !l.ipv6 : !l.ipv4)) continue;
    Lookup q;
    q.list = &l;
    q.item = ip->to_string();
    q.source = "client";
    q.qname = labels + "." + l.zone;
    q.is_address = true;
    run->add(std::move(q));
  }
  if (run->empty()) return sdk::HookResult::continue_();
  return run->run(ev);
}

sdk::HookResult DnsblPlugin::check_sender(sdk::Event& ev) {
  auto ip = peer(ev);
  if (ev.whitelisted() || (ip && standing(*ip) != Standing::Normal)) return sdk::HookResult::continue_();
  const std::string client = ip ? ip->to_string() : std::string(ev.peer_ip());

  std::optional<std::string> sender;
  const std::string_view from = ev.mail_from();
  if (const auto at = from.rfind('@'); at != std::string_view::npos) {
    const std::string_view domain = from.substr(at + 1);
    // An address literal (user@[192.0.2.1]) has no domain to look up.
    if (!domain.starts_with('[')) sender = normalize_domain(domain);
  }
  std::optional<std::string> helo;
  if (const std::string_view h = ev.helo(); !h.empty() && !h.starts_with('[')) helo = normalize_domain(h);
  if (sender && name_excepted(*sender)) sender.reset();
  if (helo && name_excepted(*helo)) helo.reset();

  auto run = std::make_shared<StageRun>(host_, settings_, cache_, "mail_from", client, context_of(ev), 550);
  for (const List& l : settings_->lists) {
    if (l.type != ListType::Rhs) continue;
    auto add = [&](const std::string& name, const char* source) {
      const std::string qname = name + "." + l.zone;
      if (qname.size() > 253) return;  // no such DNS name
      Lookup q;
      q.list = &l;
      q.item = name;
      q.source = source;
      q.qname = qname;
      run->add(std::move(q));
    };
    if (l.sender && sender) add(*sender, "sender");
    if (l.helo && helo && !(l.sender && sender && *helo == *sender)) add(*helo, "helo");
  }
  if (run->empty()) return sdk::HookResult::continue_();
  return run->run(ev);
}

sdk::HookResult DnsblPlugin::check_body(sdk::Event& ev) {
  auto ip = peer(ev);
  if (ev.whitelisted() || (ip && standing(*ip) != Standing::Normal)) return sdk::HookResult::continue_();
  auto msg = ev.message();
  if (!msg) return sdk::HookResult::continue_();
  const Settings& s = *settings_;

  // Distinct hosts first (several hosts often share one registered domain), then their domains.
  std::vector<std::string> hosts;
  const size_t host_limit = s.max_uri_names * 8;
  size_t budget = s.max_scan_bytes;
  const size_t parts = msg->part_count();
  for (size_t i = 0; i < parts && budget > 0 && hosts.size() < host_limit; ++i) {
    const sdk::MimePart part = msg->part(i);
    if (part.content_type != "text/plain" && part.content_type != "text/html") continue;
    if (part.disposition == "attachment") continue;
    std::string_view body = msg->part_body(i);
    if (body.size() > budget) body = body.substr(0, budget);
    budget -= body.size();
    extract_url_hosts(body, host_limit, hosts);
  }

  std::vector<std::pair<std::string, bool>> items;  // (name or address, is_address)
  for (const std::string& h : hosts) {
    if (items.size() >= s.max_uri_names) break;
    const bool is_address = is_ipv4_literal(h);
    std::string item = is_address ? h : registered_domain(h);
    if (!is_address && (name_excepted(h) || name_excepted(item))) continue;
    if (std::find_if(items.begin(), items.end(), [&](const auto& p) { return p.first == item; }) != items.end())
      continue;
    items.emplace_back(std::move(item), is_address);
  }
  if (hosts.size() >= host_limit || items.size() >= s.max_uri_names) {
    host_.debug("url limit reached: " + std::to_string(items.size()) + " names looked up " + context_of(ev));
  }

  const std::string client = ip ? ip->to_string() : std::string(ev.peer_ip());
  auto run = std::make_shared<StageRun>(host_, settings_, cache_, "data_end", client, context_of(ev), 550);
  for (const List& l : s.lists) {
    if (l.type != ListType::Uri) continue;
    for (const auto& [item, is_address] : items) {
      std::string qname;
      if (is_address) {
        auto addr = IpAddress::parse(item);
        if (!addr) continue;
        qname = reversed_labels(*addr) + "." + l.zone;
      } else {
        qname = item + "." + l.zone;
      }
      if (qname.size() > 253) continue;
      Lookup q;
      q.list = &l;
      q.item = item;
      q.source = "url";
      q.qname = std::move(qname);
      q.is_address = is_address;
      run->add(std::move(q));
    }
  }
  if (run->empty()) return sdk::HookResult::continue_();
  return run->run(ev);
}

}  // namespace postern::plugins::dnsbl

POSTERN_PLUGIN(postern::plugins::dnsbl::DnsblPlugin)
