#pragma once
// What the host lends every plugin instance: I/O threads, the worker pool,
// the resolver, the clock and the state directory root.

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace postern::core::dns {
class Resolver;
}
namespace postern::core::scheduler {
class Scheduler;
}
namespace postern::core::directory {
class Directory;
}
namespace postern::core::mailstore {
class MailStore;
}
namespace postern::core::tls {
class TlsContext;
}
namespace postern::core::queue {
class Spool;
}
namespace boost::asio::ssl {
class context;
}

namespace postern::core::plugin {

class MailboxEventBus;

struct HostServices {
  boost::asio::io_context* io = nullptr;          // timers and DNS callbacks run here
  boost::asio::thread_pool* workers = nullptr;    // post_work
  dns::Resolver* resolver = nullptr;              // may be null: dns_query fails
  scheduler::Scheduler* scheduler = nullptr;      // may be null: cron registration fails
  std::filesystem::path state_root;               // <data-dir>/state; each plugin gets <root>/<name>
  // ABI 1.2 (service plugins); each may be null: the calls then answer UNAVAILABLE.
  std::shared_ptr<directory::Directory> directory;  // dir_authenticate, dir_account, quotas
  std::shared_ptr<mailstore::MailStore> store;      // mbox_*, view_*
  std::shared_ptr<tls::TlsContext> tls;           // STARTTLS and implicit TLS on service listeners
  // ABI 1.3: mailbox events (mbox_events_subscribe); null: subscribing answers 0.
  std::shared_ptr<MailboxEventBus> mailbox_events;
  std::string server_name;                        // POSTERN_STREAM_SERVER_NAME
  // ABI 1.3; each may be null: stream_connect with TLS fails (TLS_FAILED) /
  // inject answers UNAVAILABLE.
  std::shared_ptr<boost::asio::ssl::context> client_tls;  // tls::make_client_context()
  queue::Spool* spool = nullptr;                          // inject; outlives every plugin
  std::function<int64_t()> now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
};

}  // namespace postern::core::plugin
