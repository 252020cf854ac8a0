#pragma once
// What the host lends every plugin instance: I/O threads, the worker pool,
// the resolver, the clock and the state directory root.

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

namespace postern::core::dns {
class Resolver;
}
namespace postern::core::scheduler {
class Scheduler;
}

namespace postern::core::plugin {

struct HostServices {
  boost::asio::io_context* io = nullptr;          // timers and DNS callbacks run here
  boost::asio::thread_pool* workers = nullptr;    // post_work
  dns::Resolver* resolver = nullptr;              // may be null: dns_query fails
  scheduler::Scheduler* scheduler = nullptr;      // may be null: cron registration fails
  std::filesystem::path state_root;               // <data-dir>/state; each plugin gets <root>/<name>
  std::function<int64_t()> now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
};

}  // namespace postern::core::plugin
