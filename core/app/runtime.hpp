#pragma once
// posternd's subsystems and how they are wired at start-up. Each subsystem
// has its own wire_<name>.cpp (owned by its module) with two functions:
//   check_<name>(manifest, diag)  validates its manifest section (for
//                                 --check-config and before start), and
//   wire_<name>(runtime)          opens and starts it; false = fatal, logged.
// posternd calls them in this order: scheduler, directory, mailstore, queue
// (the queue manager delivers into the store and resolves through the
// directory), then starts the listeners. unwire_all() stops them in reverse.

#include "core/config/diagnostics.hpp"
#include "core/config/manifest.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <functional>
#include <memory>

namespace postern::core {
namespace dns {
class Resolver;
}
namespace queue {
class Spool;
class QueueManager;
}  // namespace queue
namespace scheduler {
class Scheduler;
}
namespace event {
class Chain;
}
namespace directory {
class Directory;
}
namespace mailstore {
class MailStore;
}
namespace smtp {
struct SmtpConfig;
}
namespace tls {
class TlsContext;
}
}  // namespace postern::core

namespace postern::core::app {

struct Runtime {
  const config::Manifest* manifest = nullptr;
  boost::asio::io_context* io = nullptr;
  boost::asio::thread_pool* workers = nullptr;
  dns::Resolver* resolver = nullptr;
  queue::Spool* spool = nullptr;
  std::shared_ptr<tls::TlsContext> tls;  // may be null
  /** Mutable until the listeners start: wire_directory sets auth and recipients. */
  smtp::SmtpConfig* smtp = nullptr;

  std::shared_ptr<scheduler::Scheduler> scheduler;
  std::shared_ptr<directory::Directory> directory;
  std::shared_ptr<mailstore::MailStore> store;
  std::shared_ptr<queue::QueueManager> queue;
  /** The current hook chain (posternd's ChainProvider): the queue manager raises the
   *  delivery stage and the delivered/deferred/bounced events through it. May be empty. */
  std::function<std::shared_ptr<const event::Chain>()> chains;
};

void check_scheduler(const config::Manifest& m, config::Diagnostics& diag);
void check_directory(const config::Manifest& m, config::Diagnostics& diag);
void check_mailstore(const config::Manifest& m, config::Diagnostics& diag);
void check_queue(const config::Manifest& m, config::Diagnostics& diag);  // <queue> and <delivery>

bool wire_scheduler(Runtime& rt);
bool wire_directory(Runtime& rt);
bool wire_mailstore(Runtime& rt);
bool wire_queue(Runtime& rt);

/** Stops the queue manager, then the store, directory and scheduler (reverse order). */
void unwire_all(Runtime& rt);

}  // namespace postern::core::app
