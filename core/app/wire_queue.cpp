// Wiring of the queue subsystem into posternd (see runtime.hpp and
// docs/queue.md): <queue> (queue manager, retry schedule) and <delivery>
// (SMTP client, smarthost, routes, pipes; core/delivery) are validated
// together; wire_queue() connects the queue manager to the spool, the
// directory, the mailbox store and the transports, and starts it.
//
// Recipient decisions (QueueHooks::expand):
//   directory present: resolve() -> Local targets to the store, Remote targets
//     and NotOurs through delivery::route(); UnknownUser 5.1.1, Disabled 5.2.1,
//     Refused 5.7.1, Loop 5.4.6 are permanent failures.
//   no directory: an address in a <local-domain> goes through an explicit
//     <route> when one matches, else it stays deferred (4.3.0, logged): there
//     is no mailbox to put it in, and the MX would be ourselves.

#include "core/app/runtime.hpp"
#include "core/delivery/delivery_config.hpp"
#include "core/delivery/transport.hpp"
#include "core/directory/directory.hpp"
#include "core/log/log.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/queue/manager.hpp"
#include "core/queue/queue_config.hpp"
#include "core/smtp/smtp_config.hpp"

#include <fmt/format.h>

#include <map>
#include <mutex>

namespace postern::core::app {

namespace {

using queue::RecipientRoute;

std::string domain_of(std::string_view address) {
  size_t at = address.rfind('@');
  std::string d(at == std::string_view::npos ? std::string_view{} : address.substr(at + 1));
  for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

RecipientRoute from_decision(const delivery::Decision& d, std::string_view address) {
  RecipientRoute r;
  r.address = std::string(address);
  if (d.via == delivery::Decision::Via::Pipe) {
    r.kind = RecipientRoute::Kind::Pipe;
    r.argv = d.argv;
  } else {
    r.kind = RecipientRoute::Kind::Smtp;
    r.hop = d.hop;
  }
  return r;
}

RecipientRoute fail(std::string_view address, int code, std::string enhanced, std::string text) {
  RecipientRoute r;
  r.kind = RecipientRoute::Kind::Fail;
  r.address = std::string(address);
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.text = std::move(text);
  return r;
}

RecipientRoute defer(std::string_view address, std::string text) {
  RecipientRoute r;
  r.kind = RecipientRoute::Kind::Defer;
  r.address = std::string(address);
  r.code = 451;
  r.enhanced = "4.3.0";
  r.text = std::move(text);
  return r;
}

/** Everything the hooks share; lives as long as the queue manager's hooks. */
struct Wiring {
  delivery::DeliveryConfig delivery;
  std::vector<std::string> local_domains;
  std::shared_ptr<directory::Directory> directory;
  std::shared_ptr<mailstore::MailStore> store;
  std::shared_ptr<delivery::Transport> smtp;
  boost::asio::io_context* io = nullptr;
  std::mutex pipes_mu;
  std::map<std::vector<std::string>, std::shared_ptr<delivery::Transport>> pipes;

  bool is_local(std::string_view address) const {
    const std::string d = domain_of(address);
    if (directory && directory->is_local_domain(d)) return true;
    return std::find(local_domains.begin(), local_domains.end(), d) != local_domains.end();
  }

  RecipientRoute route_remote(std::string_view address) const {
    return from_decision(delivery::route(delivery, address), address);
  }

  std::vector<RecipientRoute> expand(std::string_view rcpt, std::string_view sender) const {
    if (directory) {
      directory::Resolution res = directory->resolve(rcpt, sender);
      using S = directory::Resolution::Status;
      switch (res.status) {
        case S::Ok: {
          std::vector<RecipientRoute> out;
          for (const auto& t : res.targets) {
            if (t.kind == directory::Target::Kind::Local) {
              RecipientRoute r;
              r.kind = RecipientRoute::Kind::Local;
              r.address = t.address;
              out.push_back(std::move(r));
            } else {
              out.push_back(route_remote(t.address));
            }
          }
          if (out.empty()) out.push_back(defer(rcpt, "the directory resolved this recipient to nothing"));
          return out;
        }
        case S::NotOurs: break;
        case S::UnknownUser: return {fail(rcpt, 550, "5.1.1", "unknown user: " + std::string(rcpt))};
        case S::Disabled: return {fail(rcpt, 550, "5.2.1", "mailbox disabled: " + std::string(rcpt))};
        case S::Refused:
          return {fail(rcpt, 550, "5.7.1", res.reason.empty() ? "delivery refused" : res.reason)};
        case S::Loop: return {fail(rcpt, 554, "5.4.6", "routing loop detected for " + std::string(rcpt))};
      }
    }
    if (is_local(rcpt)) {
      // No directory: only an explicit route can take mail for a local domain.
      for (const auto& r : delivery.routes) {
        if (delivery::mask_matches(r.match, rcpt)) return {route_remote(rcpt)};
      }
      return {defer(rcpt, directory ? "local domain without this account in the directory"
                                    : "local domain but no directory configured for local delivery")};
    }
    return {route_remote(rcpt)};
  }

  RecipientRoute route_target(std::string_view target, bool local) const {
    if (!local) return route_remote(target);
    if (!directory) return defer(target, "no directory configured for local delivery");
    if (!directory->account(target)) {
      // The directory changed since the recipient was accepted.
      return fail(target, 550, "5.1.1", "unknown user at delivery time: " + std::string(target));
    }
    RecipientRoute r;
    r.kind = RecipientRoute::Kind::Local;
    r.address = std::string(target);
    return r;
  }

  delivery::RecipientResult deliver_local(std::string_view account, std::string_view message) const {
    delivery::RecipientResult r;
    r.address = std::string(account);
    r.remote = "local";
    uint64_t quota = 0;
    if (directory) {
      auto info = directory->account(account);
      if (!info) {
        r.code = 550;
        r.enhanced = "5.1.1";
        r.text = "unknown user at delivery time";
        return r;
      }
      quota = info->quota_bytes;
    }
    mailstore::DeliverResult d = store->deliver(account, message, quota, "INBOX");
    switch (d.status) {
      case mailstore::DeliverResult::Status::Ok:
        r.code = 250;
        r.enhanced = "2.0.0";
        r.text = fmt::format("delivered to mailbox (uid {})", d.uid);
        break;
      case mailstore::DeliverResult::Status::OverQuota:
        // RFC 3463 X.2.2 is persistent-transient: retried until the lifetime ends.
        r.code = 452;
        r.enhanced = "4.2.2";
        r.text = d.detail.empty() ? "mailbox full" : d.detail;
        break;
      case mailstore::DeliverResult::Status::TempError:
        r.code = 451;
        r.enhanced = "4.3.0";
        r.text = d.detail.empty() ? "mailbox store temporarily unavailable" : d.detail;
        break;
      case mailstore::DeliverResult::Status::PermError:
        r.code = 554;
        r.enhanced = "5.3.0";
        r.text = d.detail.empty() ? "mailbox store refused the message" : d.detail;
        break;
    }
    return r;
  }

  std::shared_ptr<delivery::Transport> transport(const RecipientRoute& route) {
    if (route.kind == RecipientRoute::Kind::Smtp) return smtp;
    if (route.kind != RecipientRoute::Kind::Pipe) return nullptr;
    std::lock_guard lock(pipes_mu);
    auto& t = pipes[route.argv];
    if (!t) t = delivery::make_pipe_transport(*io, route.argv, delivery.pipe_timeout);
    return t;
  }
};

}  // namespace

void check_queue(const config::Manifest& m, config::Diagnostics& diag) {
  queue::parse_queue_config(m.queue, diag);
  delivery::parse_delivery_config(m.delivery, diag);
}

bool wire_queue(Runtime& rt) {
  const config::Manifest& m = *rt.manifest;
  config::Diagnostics diag(*m.lines);
  const size_t errors_before = diag.errors().size();
  queue::QueueConfig qcfg = queue::parse_queue_config(m.queue, diag);
  auto w = std::make_shared<Wiring>();
  w->delivery = delivery::parse_delivery_config(m.delivery, diag);
  if (diag.errors().size() != errors_before) {
    for (size_t i = errors_before; i < diag.errors().size(); ++i) log::error("queue", "{}", diag.errors()[i].str());
    return false;
  }
  if (rt.smtp) {
    w->local_domains = rt.smtp->local_domains;
  }
  w->directory = rt.directory;
  w->store = rt.store;
  w->io = rt.io;
  try {
    w->smtp = delivery::make_smtp_transport(*rt.io, *rt.resolver, w->delivery, m.server_name);
  } catch (const std::exception& e) {
    log::error("queue", "cannot start the SMTP client: {}", e.what());
    return false;
  }

  queue::QueueHooks hooks;
  hooks.expand = [w](std::string_view rcpt, std::string_view sender) { return w->expand(rcpt, sender); };
  hooks.route = [w](std::string_view target, bool local) { return w->route_target(target, local); };
  if (w->store) {
    hooks.deliver_local = [w](std::string_view account, std::string_view message) {
      return w->deliver_local(account, message);
    };
  }
  hooks.transport = [w](const RecipientRoute& route) { return w->transport(route); };
  if (rt.chains) hooks.chains = rt.chains;

  std::string local_domain = w->local_domains.empty() ? std::string() : w->local_domains.front();
  try {
    auto qm = std::make_shared<queue::QueueManager>(qcfg, *rt.spool, *rt.io, *rt.workers, m.server_name,
                                                    local_domain, std::move(hooks));
    qm->start(true);
    rt.queue = std::move(qm);
  } catch (const std::exception& e) {
    log::error("queue", "cannot start the queue manager: {}", e.what());
    return false;
  }
  if ((!w->directory || !w->store) && !local_domain.empty())
    log::warn("queue", "local delivery {}: mail for local domains without a matching <route> stays deferred",
              !w->directory ? "has no directory" : "has no mailbox store");
  log::info("queue", "queue manager started: max-connections={} max-per-destination={} lifetime={}s routes={}",
            qcfg.max_connections, qcfg.max_per_destination, qcfg.lifetime.count(), w->delivery.routes.size());
  return true;
}

}  // namespace postern::core::app
