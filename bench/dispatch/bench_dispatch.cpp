// Dispatch cost of one stage through 10 no-op plugins loaded from .so files
// through the real loader and C ABI. Goal (issue 2): under 1 µs per hook.
// Reports ns per stage; per hook = per stage / 10 (see bench/README.md).

#include "core/event/chain.hpp"
#include "core/log/log.hpp"
#include "core/plugin/loader.hpp"

#include <benchmark/benchmark.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <pugixml.hpp>

#include <cstdlib>

namespace {

using namespace postern::core;

constexpr int kPlugins = 10;

struct Fixture {
  Fixture() {
    log::configure(log::Level::Warn, {}, true);
    doc.load_string("<plugin name=\"noop\"/>");
    auto c = std::make_shared<event::Chain>();
    for (int i = 0; i < kPlugins; ++i) {
      plugin::LoadRequest req;
      req.library = std::string(POSTERN_ABI_PLUGIN_DIR) + "/noop.so";
      req.descriptor = std::string(POSTERN_ABI_PLUGIN_DIR) + "/noop.plugin.xml";
      req.name = "noop";
      req.config = doc.document_element();
      auto loaded = plugin::LoadedPlugin::load(req, services);
      if (auto* why = std::get_if<std::string>(&loaded)) {
        std::fprintf(stderr, "bench: %s\n", why->c_str());
        std::abort();
      }
      c->add(std::move(std::get<0>(loaded)), std::chrono::seconds(5), event::OnFailure::Continue);
    }
    chain = c;
    session.peer_ip = "192.0.2.7";
    txn.mail_from = "alice@example.org";
    ev.session = &session;
    ev.transaction = &txn;
    ev.current_rcpt = "bob@example.net";
  }
  pugi::xml_document doc;
  plugin::HostServices services;
  std::shared_ptr<const event::Chain> chain;
  event::SessionInfo session;
  event::Transaction txn;
  event::EventData ev;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_DispatchSync10Plugins(benchmark::State& state) {
  Fixture& f = fixture();
  for (auto _ : state) {
    event::Outcome o = f.chain->run_sync(event::Stage::RcptTo, f.ev);
    benchmark::DoNotOptimize(o);
  }
  state.SetItemsProcessed(state.iterations() * kPlugins);  // items = hook calls
}
BENCHMARK(BM_DispatchSync10Plugins);

// The path a session takes: co_await chain->run() on a strand.
void BM_DispatchAwaitable10Plugins(benchmark::State& state) {
  Fixture& f = fixture();
  boost::asio::io_context io;
  auto strand = boost::asio::make_strand(io);
  const int64_t batch = 1000;
  for (auto _ : state) {
    boost::asio::co_spawn(
        strand,
        [&]() -> boost::asio::awaitable<void> {
          for (int64_t i = 0; i < batch; ++i) {
            event::Outcome o = co_await f.chain->run(event::Stage::RcptTo, f.ev);
            benchmark::DoNotOptimize(o);
          }
        },
        boost::asio::detached);
    io.run();
    io.restart();
  }
  state.SetItemsProcessed(state.iterations() * batch * kPlugins);
}
BENCHMARK(BM_DispatchAwaitable10Plugins);

}  // namespace

BENCHMARK_MAIN();
