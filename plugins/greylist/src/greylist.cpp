#include "greylist.hpp"

#include <postern/sdk/storage.hpp>

#include <algorithm>
#include <cctype>

namespace postern::plugins::greylist {
namespace {

constexpr int64_t kCacheTtlMs = 60'000;
constexpr size_t kCacheMax = 100'000;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view domain_of(std::string_view address) {
  const auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

std::string where(const sdk::Config& c) { return "greylist (line " + std::to_string(c.line()) + "): "; }

}  // namespace

std::string Exceptions::match(const Address& client, std::string_view sender, std::string_view recipient) const {
  for (const Network& n : networks) {
    if (n.contains(client)) return "client " + n.to_string();
  }
  if (!sender.empty()) {
    if (std::find(senders.begin(), senders.end(), sender) != senders.end()) return "sender " + std::string(sender);
    const std::string_view dom = domain_of(sender);
    for (const std::string& d : sender_domains) {
      // "example.org" also covers its subdomains ("mx.example.org").
      if (dom == d || (dom.size() > d.size() && dom.ends_with(d) && dom[dom.size() - d.size() - 1] == '.'))
        return "sender domain " + d;
    }
  }
  for (const std::string& r : recipients) {
    if (r == recipient || (r.starts_with('@') && domain_of(recipient) == std::string_view(r).substr(1)))
      return "recipient " + r;
  }
  return {};
}

std::optional<Settings> parse_settings(const sdk::Config& config, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Settings> {
    if (error != nullptr) *error = std::move(why);
    return std::nullopt;
  };
  Settings s;
  auto duration = [&](const char* name, int64_t& out, int64_t min_ms) -> std::string {
    auto text = config.attr(name);
    if (!text) return {};
    auto d = config.duration(name);
    if (!d) return where(config) + name + "=\"" + std::string(*text) + "\": expected a duration such as 300s, 5m, 24h or 36d";
    if (d->count() < min_ms) return where(config) + name + "=\"" + std::string(*text) + "\" is too short";
    out = d->count();
    return {};
  };
  if (auto e = duration("delay", s.policy.delay_ms, 0); !e.empty()) return fail(e);
  if (auto e = duration("window", s.policy.window_ms, 1); !e.empty()) return fail(e);
  if (auto e = duration("auto-whitelist-for", s.policy.whitelist_for_ms, 1); !e.empty()) return fail(e);
  if (s.policy.window_ms <= s.policy.delay_ms) {
    return fail(where(config) + "window must be longer than delay (a retry could never pass)");
  }
  if (auto t = config.attr("auto-whitelist-after")) {
    auto n = config.integer("auto-whitelist-after");
    if (!n || *n < 0) return fail(where(config) + "auto-whitelist-after=\"" + std::string(*t) + "\": expected a count >= 0 (0 = never)");
    s.policy.whitelist_after = *n;
  }
  auto prefix = [&](const char* name, unsigned& out, unsigned max) -> std::string {
    auto t = config.attr(name);
    if (!t) return {};
    auto n = config.integer(name);
    if (!n || *n < 0 || *n > static_cast<int64_t>(max))
      return where(config) + name + "=\"" + std::string(*t) + "\": expected 0.." + std::to_string(max);
    out = static_cast<unsigned>(*n);
    return {};
  };
  if (auto e = prefix("ipv4-prefix", s.ipv4_prefix, 32); !e.empty()) return fail(e);
  if (auto e = prefix("ipv6-prefix", s.ipv6_prefix, 128); !e.empty()) return fail(e);
  if (auto p = config.attr("prune")) s.prune_cron = (*p == "off") ? std::string{} : std::string(*p);
  if (auto t = config.attr("whitelist-refresh")) {
    auto d = config.duration("whitelist-refresh");
    if (!d || d->count() < 1000)
      return fail(where(config) + "whitelist-refresh=\"" + std::string(*t) + "\": expected a duration of at least 1s, such as 30s");
    s.whitelist_refresh_ms = d->count();
  }
  if (auto t = config.attr("skip-authenticated")) {
    auto b = config.boolean("skip-authenticated");
    if (!b) return fail(where(config) + "skip-authenticated=\"" + std::string(*t) + "\": expected true or false");
    s.skip_authenticated = *b;
  }

  for (const sdk::Config& child : config.children()) {
    if (child.name() != "except") {
      return fail(where(child) + "unknown element <" + std::string(child.name()) +
                  ">; expected <except ip|cidr|sender-domain|sender|recipient=\"...\"/>");
    }
    int given = 0;
    if (auto v = child.attr("ip")) {
      ++given;
      auto a = Address::parse(*v);
      if (!a) return fail(where(child) + "<except ip=\"" + std::string(*v) + "\">: not an IP address");
      s.exceptions.networks.push_back(Network::of(*a, a->v4 ? 32 : 128));
    }
    if (auto v = child.attr("cidr")) {
      ++given;
      auto n = Network::parse(*v);
      if (!n) return fail(where(child) + "<except cidr=\"" + std::string(*v) + "\">: expected address/prefix, e.g. 192.0.2.0/24");
      s.exceptions.networks.push_back(*n);
    }
    if (auto v = child.attr("sender-domain")) {
      ++given;
      if (v->empty() || v->find('@') != std::string_view::npos)
        return fail(where(child) + "<except sender-domain=\"" + std::string(*v) + "\">: expected a domain such as example.org");
      s.exceptions.sender_domains.push_back(lower(*v));
    }
    if (auto v = child.attr("sender")) {
      ++given;
      if (v->find('@') == std::string_view::npos)
        return fail(where(child) + "<except sender=\"" + std::string(*v) + "\">: expected an address such as alice@example.org");
      s.exceptions.senders.push_back(lower(*v));
    }
    if (auto v = child.attr("recipient")) {
      ++given;
      if (v->find('@') == std::string_view::npos)
        return fail(where(child) + "<except recipient=\"" + std::string(*v) +
                    "\">: expected an address (bob@example.net) or a domain (@example.net)");
      s.exceptions.recipients.push_back(lower(*v));
    }
    if (given != 1) {
      return fail(where(child) + "<except> needs exactly one of ip, cidr, sender-domain, sender, recipient");
    }
  }
  return s;
}

sdk::Status GreylistPlugin::init(sdk::InitContext& ctx) {
  host_.emplace(ctx.host());
  std::string why;
  auto settings = parse_settings(ctx.config(), &why);
  if (!settings) return sdk::Status::error(why);
  settings_ = std::move(*settings);

  // Opening and migrating blocks; init runs on a host control thread.
  const auto file = ctx.state_dir() / "greylist.sqlite";
  store_ = TripletStore::open(file, &why);
  if (!store_) return sdk::Status::error("greylist: " + why);
  try {
    reload_whitelist();
  } catch (const std::exception& e) {
    return sdk::Status::error(std::string("greylist: reading the whitelist: ") + e.what());
  }

  if (!settings_.prune_cron.empty()) {
    const auto id = ctx.host().cron_add("prune", settings_.prune_cron, [this] {
      const int64_t n = prune();
      if (n > 0) host_->info("pruned " + std::to_string(n) + " expired entr" + (n == 1 ? "y" : "ies"));
    });
    if (id == 0) {
      return sdk::Status::error("greylist: prune=\"" + settings_.prune_cron +
                                "\" was refused (a bad cron expression, or <scheduler enabled=\"false\">; "
                                "prune=\"off\" disables pruning)");
    }
  }
  if (auto s = ctx.on_rcpt_to([this](sdk::Event& ev) { return on_rcpt(ev); }); !s) return s;
  if (auto s = add_commands(ctx); !s) return s;
  schedule_refresh();
  ctx.host().info("delay " + std::to_string(settings_.policy.delay_ms / 1000) + "s, window " +
                  std::to_string(settings_.policy.window_ms / 1000) + "s, database " + file.string() + ", " +
                  std::to_string(whitelist_size()) + " whitelisted network(s) in memory");
  return sdk::Status::ok();
}

int64_t GreylistPlugin::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(host_->now().time_since_epoch()).count();
}

int64_t GreylistPlugin::prune() {
  {
    std::lock_guard lock(cache_mutex_);
    cache_.clear();
  }
  const int64_t n = store_->prune(now_ms(), settings_.policy);
  reload_whitelist();
  return n;
}

void GreylistPlugin::schedule_refresh() {
  // The timer fires on an I/O thread; the reload reads SQLite on the worker
  // pool and then starts the next timer. Unloading cancels the timer and
  // waits for queued work, which ends the chain.
  host_->after(std::chrono::milliseconds(settings_.whitelist_refresh_ms), [this] {
    host_->post_work([this] {
      try {
        reload_whitelist();
      } catch (const std::exception& e) {
        host_->warn(std::string("reloading the whitelist failed (the previous copy stays): ") + e.what());
      }
      schedule_refresh();
    });
  });
}

void GreylistPlugin::reload_whitelist() {
  std::lock_guard serial(reload_mutex_);
  {
    std::unique_lock lock(whitelist_mutex_);
    reloading_ = true;
    learned_.clear();
  }
  WhitelistSet fresh;
  try {
    for (const WhitelistEntry& e : store_->load_whitelist(now_ms(), settings_.policy)) fresh.add(e);
  } catch (...) {
    std::unique_lock lock(whitelist_mutex_);
    reloading_ = false;
    learned_.clear();
    throw;
  }
  std::unique_lock lock(whitelist_mutex_);
  // Entries learned by decide() while the query ran may be missing from its
  // result; they are in the database, so keeping them is exact.
  for (const WhitelistEntry& e : learned_) fresh.add(e);
  whitelist_ = std::move(fresh);
  reloading_ = false;
  learned_.clear();
}

size_t GreylistPlugin::whitelist_size() const {
  std::shared_lock lock(whitelist_mutex_);
  return whitelist_.size();
}

bool GreylistPlugin::whitelisted(const Address& client, int64_t now) const {
  std::shared_lock lock(whitelist_mutex_);
  return whitelist_.contains(client, now);
}

void GreylistPlugin::learn_whitelisted(const WhitelistEntry& e) {
  std::unique_lock lock(whitelist_mutex_);
  whitelist_.add(e);
  if (reloading_) learned_.push_back(e);
}

bool GreylistPlugin::cached(const std::string& key, int64_t now) {
  std::lock_guard lock(cache_mutex_);
  auto it = cache_.find(key);
  if (it == cache_.end()) return false;
  if (it->second > now) return true;
  cache_.erase(it);
  return false;
}

void GreylistPlugin::remember(const std::string& key, int64_t now) {
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kCacheMax) cache_.clear();
  cache_[key] = now + kCacheTtlMs;
}

sdk::HookResult GreylistPlugin::on_rcpt(sdk::Event& ev) {
  // A connection filter vouched for the client (postern.whitelisted = "1").
  if (ev.whitelisted()) return sdk::HookResult::continue_();
  if (settings_.skip_authenticated && !ev.auth_user().empty()) return sdk::HookResult::continue_();
  const auto client = Address::parse(ev.peer_ip());
  if (!client) return sdk::HookResult::continue_();  // not an IP peer (a local test socket)
  const std::string sender = ev.mail_from().empty() ? std::string("<>") : lower(ev.mail_from());
  const std::string rcpt = lower(ev.rcpt());
  if (std::string why = settings_.exceptions.match(*client, sender == "<>" ? std::string{} : sender, rcpt);
      !why.empty()) {
    return sdk::HookResult::continue_();
  }
  const int64_t now = now_ms();
  // A whitelisted network (manual or automatic) is answered from memory.
  if (whitelisted(*client, now)) return sdk::HookResult::continue_();
  const Network net = Network::of(*client, client->v4 ? settings_.ipv4_prefix : settings_.ipv6_prefix);
  const std::string key = net.to_string() + '\n' + sender + '\n' + rcpt;
  if (cached(key, now)) return sdk::HookResult::continue_();
  // The database is touched on the worker pool only; the session waits.
  return sdk::storage::complete_on_worker(
      ev.host(), ev.defer(),
      [this, host = ev.host(), net, client = *client, sender, rcpt, queue_id = std::string(ev.queue_id())] {
        return decide(host, net, client, sender, rcpt, queue_id);
      });
}

sdk::HookResult GreylistPlugin::decide(const sdk::Host& host, const Network& net, const Address& client,
                                       const std::string& sender, const std::string& rcpt,
                                       const std::string& queue_id) {
  const int64_t now = now_ms();
  const Verdict v = store_->check(net, client, sender, rcpt, now, settings_.policy);
  const std::string what = "queue=" + queue_id + " client=" + client.to_string() + " network=" + net.to_string() +
                           " from=<" + (sender == "<>" ? std::string{} : sender) + "> to=<" + rcpt + ">";
  switch (v.kind) {
    case Verdict::Kind::Whitelisted:
      // An entry the memory copy lacks (posternctl allow since the last
      // reload): learn it now rather than at the next reload.
      if (v.whitelist_entry) learn_whitelisted(*v.whitelist_entry);
      return sdk::HookResult::continue_();
    case Verdict::Kind::Pass:
      if (v.first_pass) host.info("passed after " + std::to_string(v.waited_ms / 1000) + "s " + what);
      if (v.whitelist_entry) learn_whitelisted(*v.whitelist_entry);  // the network is auto-whitelisted now
      remember(net.to_string() + '\n' + sender + '\n' + rcpt, now);
      return sdk::HookResult::continue_();
    case Verdict::Kind::TempFail:
      break;
  }
  const int64_t secs = std::max<int64_t>(1, (v.retry_in_ms + 999) / 1000);
  host.info("greylisted " + what + " retry-in=" + std::to_string(secs) + "s");
  return sdk::HookResult::tempfail("4.7.1", "Greylisted, try again in " + std::to_string(secs) + " seconds", 451);
}

}  // namespace postern::plugins::greylist

POSTERN_PLUGIN(postern::plugins::greylist::GreylistPlugin)
