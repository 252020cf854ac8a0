// posternd — the Postern mail daemon.
//
//   posternd --config FILE [--foreground]    run
//   posternd --check-config --config FILE    validate and exit (0 = valid)
//
// Start-up: read and validate the manifest (refuse to start on any error),
// open logs, load plugins in manifest order (a refused plugin is logged with
// its reason and skipped), bind the listeners, serve.
// Control: every admin command (core's areas and each plugin's) is served
// on the control socket (docs/control-plane.md), <data-dir>/posternd.sock by
// default, mode 0600.
// Signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads the manifest — a new
// hook chain is built and new sessions use it while old sessions drain on the
// old one; an invalid new manifest is reported and the old one stays.
// Diagnostics: one line per event on stderr (foreground) and in <log file=>.

#include "core/app/ctl/ctl.hpp"
#include "core/app/runtime.hpp"
#include "core/config/manifest.hpp"
#include "core/control/registry.hpp"
#include "core/control/server.hpp"
#include "core/dns/resolver.hpp"
#include "core/event/chain.hpp"
#include "core/log/log.hpp"
#include "core/plugin/chain_builder.hpp"
#include "core/plugin/commands.hpp"
#include "core/mailstore/mailstore.hpp"
#include "core/plugin/mailbox_events.hpp"
#include "core/queue/spool.hpp"
#include "core/service/listener.hpp"
#include "core/smtp/server.hpp"
#include "core/smtp/smtp_config.hpp"
#include "core/tls/tls_context.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fmt/format.h>

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

namespace {

using namespace postern::core;

struct Options {
  std::string config;
  bool check_only = false;
  bool foreground = false;
};

void usage() {
  std::fprintf(stderr,
               "usage: posternd --config FILE [--foreground]\n"
               "       posternd --check-config --config FILE\n");
}

std::optional<Options> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      o.config = argv[++i];
    } else if (a.starts_with("--config=")) {
      o.config = std::string(a.substr(9));
    } else if (a == "--check-config") {
      o.check_only = true;
    } else if (a == "--foreground" || a == "-f") {
      o.foreground = true;
    } else if (a == "--version") {
      std::printf("posternd 0.1.0 (plugin ABI %d.%d)\n", POSTERN_ABI_VERSION_MAJOR, POSTERN_ABI_VERSION_MINOR);
      std::exit(0);
    } else {
      std::fprintf(stderr, "posternd: unknown argument '%s'\n", argv[i]);
      return std::nullopt;
    }
  }
  if (o.config.empty()) {
    std::fprintf(stderr, "posternd: --config FILE is required\n");
    return std::nullopt;
  }
  return o;
}

/** The manifest and everything derived from it that a reload replaces. */
struct Generation {
  std::shared_ptr<const config::Manifest> manifest;
  std::shared_ptr<const smtp::SmtpConfig> smtp;
};

/** Validates the manifest fully (core + engine sections). */
struct Checked {
  std::optional<Generation> gen;
  std::vector<config::Diagnostic> errors;
  std::vector<config::Diagnostic> plugin_problems;
};

Checked check(const std::string& file) {
  Checked out;
  config::LoadResult lr = config::load_manifest(file);
  out.errors = lr.errors;
  out.plugin_problems = lr.plugin_problems;
  if (!lr.manifest) return out;
  // The engine's own section reports into the same line table.
  config::Diagnostics diag(*lr.manifest->lines);
  auto smtp_cfg = std::make_shared<smtp::SmtpConfig>(smtp::parse_smtp_config(lr.manifest->smtp, diag));
  smtp_cfg->scoring = lr.manifest->scoring;
  app::check_scheduler(*lr.manifest, diag);
  app::check_directory(*lr.manifest, diag);
  app::check_mailstore(*lr.manifest, diag);
  app::check_queue(*lr.manifest, diag);
  for (size_t i = lr.manifest->lines->errors().size(); i < diag.errors().size(); ++i) out.errors.push_back(diag.errors()[i]);
  if (out.errors.empty()) out.gen = Generation{lr.manifest, smtp_cfg};
  return out;
}

int check_config(const std::string& file) {
  Checked c = check(file);
  for (const auto& e : c.errors) std::printf("%s\n", e.str().c_str());
  for (const auto& e : c.plugin_problems) std::printf("%s:%u: warning: %s\n", e.file.c_str(), e.line, e.message.c_str());
  if (!c.errors.empty() || !c.plugin_problems.empty()) {
    std::printf("%s: %zu error(s), %zu plugin problem(s)\n", file.c_str(), c.errors.size(), c.plugin_problems.size());
    return 1;
  }
  std::printf("%s: OK\n", file.c_str());
  return 0;
}

class Daemon {
 public:
  Daemon(Generation gen, bool foreground) : gen_(std::move(gen)), foreground_(foreground) {}

  int run() {
    const config::Manifest& m = *gen_.manifest;
    if (!log::configure(m.log_level, m.log_file, foreground_)) {
      std::fprintf(stderr, "posternd: cannot open log file %s\n", m.log_file.c_str());
      return 1;
    }
    std::error_code ec;
    for (const char* sub : {"", "queue", "state"}) {
      std::filesystem::create_directories(m.data_dir / sub, ec);
      if (ec) {
        log::error("main", "cannot create {}: {}", (m.data_dir / sub).string(), ec.message());
        return 1;
      }
    }
    // Sessions, spool files and open mailbox indexes each hold descriptors:
    // use what the hard limit allows.
    if (struct rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) log::warn("main", "cannot raise the open-file limit");
    }
    const size_t io_threads = m.io_threads != 0 ? m.io_threads : std::max(1u, std::thread::hardware_concurrency());
    // Blocking work mostly waits on the disk (fsync), so more threads than
    // cores: with 2, one APPEND's fsyncs stall every IMAP FETCH (bench/README.md).
    const size_t worker_threads =
        m.worker_threads != 0 ? m.worker_threads : std::max<size_t>(8, 2 * std::max(1u, std::thread::hardware_concurrency()));
    workers_ = std::make_unique<boost::asio::thread_pool>(worker_threads);

    dns::ResolverOptions ro;
    ro.servers = m.dns.servers;
    ro.timeout = m.dns.timeout;
    resolver_ = std::make_unique<dns::Resolver>(io_, ro);

    services_.io = &io_;
    services_.workers = workers_.get();
    services_.resolver = resolver_.get();
    services_.state_root = m.data_dir / "state";

    try {
      if (!m.certificates.empty()) tls_ = std::make_shared<tls::TlsContext>(m.certificates, m.server_name);
      spool_ = std::make_unique<queue::Spool>(m.data_dir / "queue", worker_threads);
    } catch (const std::exception& e) {
      log::error("main", "start-up failed: {}", e.what());
      return 1;
    }

    // Subsystems (runtime.hpp), in dependency order; the engine settings are
    // completed by them (directory: AUTH accounts and recipient checks).
    auto smtp_cfg = std::make_shared<smtp::SmtpConfig>(*gen_.smtp);
    smtp_cfg->workers = workers_->get_executor();  // sessions' blocking work (RCPT lookups, MIME parsing)
    rt_.manifest = gen_.manifest.get();
    rt_.io = &io_;
    rt_.workers = workers_.get();
    rt_.resolver = resolver_.get();
    rt_.spool = spool_.get();
    rt_.tls = tls_;
    rt_.smtp = smtp_cfg.get();
    rt_.chains = [this] { return current_chain(); };  // null until install_chain below
    if (!app::wire_scheduler(rt_) || !app::wire_directory(rt_) || !app::wire_mailstore(rt_) || !app::wire_queue(rt_)) {
      log::error("main", "start-up failed (see above)");
      app::unwire_all(rt_);
      return 1;
    }
    rt_.smtp = nullptr;
    gen_.smtp = smtp_cfg;
    services_.scheduler = rt_.scheduler.get();
    services_.directory = rt_.directory;
    services_.store = rt_.store;
    if (rt_.store) {
      // Mailbox events (ABI 1.3): the store announces each committed change;
      // the bus hands it to subscribed plugins on the worker pool.
      services_.mailbox_events = std::make_shared<plugin::MailboxEventBus>(*workers_);
      rt_.store->set_event_sink(services_.mailbox_events->sink());
    }
    services_.tls = tls_;
    services_.server_name = m.server_name;
    // ABI 1.3: plugins' outbound TLS and message injection.
    services_.spool = spool_.get();
    try {
      services_.client_tls = tls::make_client_context();
    } catch (const std::exception& e) {
      log::warn("main", "no client TLS for plugins' outbound connections: {}", e.what());
    }

    install_chain(gen_.manifest);
    std::atomic_store(&manifest_, gen_.manifest);
    start_control(m);

    try {
      for (const config::Listener& l : m.listeners) {
        if (!l.enabled) continue;
        if (l.protocol != "smtp" && l.protocol != "submission") {
          start_service_listener(l);
          continue;
        }
        auto server = std::make_unique<smtp::SmtpServer>(
            io_, l, gen_.smtp, [this] { return current_chain(); }, *spool_, tls_, m.server_name);
        server->start();
        log::info("main", "listener={} protocol={} address={} port={} tls={}", l.name, l.protocol, l.address, l.port,
                  config::tls_mode_name(l.tls));
        servers_.push_back(std::move(server));
      }
    } catch (const std::exception& e) {
      log::error("main", "start-up failed: {}", e.what());
      return 1;
    }

    boost::asio::signal_set signals(io_, SIGTERM, SIGINT, SIGHUP);
    wait_signal(signals);
    // posternctl signals the daemon through this file (SIGUSR1: flush the queue).
    const std::filesystem::path pid_file = m.data_dir / "posternd.pid";
    if (FILE* f = std::fopen(pid_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(::getpid()));
      std::fclose(f);
    }
    log::info("main", "posternd started server={} plugins={} io-threads={} worker-threads={} pid={}", m.server_name,
              current_chain()->plugins().size(), io_threads, worker_threads, ::getpid());

    std::vector<std::thread> threads;
    for (size_t i = 1; i < io_threads; ++i) threads.emplace_back([this] { io_.run(); });
    io_.run();
    for (auto& t : threads) t.join();
    // Teardown while every service plugins may use still exists: service
    // listeners (their streams end with on_close SHUTDOWN here if the drain
    // left any) and SMTP servers, then the chain (destroyed on the control
    // thread), then the pools.
    if (control_server_) control_server_->stop();
    service_listeners_.clear();
    servers_.clear();
    std::atomic_store(&chain_, event::ChainPtr());
    app::unwire_all(rt_);
    std::filesystem::remove(pid_file, ec);
    std::filesystem::remove(pid_file, ec);
    workers_->join();
    control_.join();
    log::info("main", "posternd stopped");
    return 0;
  }

 private:
  event::ChainPtr current_chain() const { return std::atomic_load(&chain_); }

  /**
   * The control plane: core's areas run on the worker pool against the
   * manifest in force and this daemon's directory (a change is in force when
   * the command answers); plugins' commands come from the current chain. A
   * socket that cannot be bound is logged; the daemon runs on without it.
   */
  void start_control(const config::Manifest& m) {
    ctl::add_core_commands(
        registry_,
        // The directory by value: a command still queued at shutdown must not
        // read rt_.directory while unwire_all resets it.
        [this, dir = rt_.directory] { return ctl::CoreContext{std::atomic_load(&manifest_), dir}; },
        [this](std::function<void()> fn) { boost::asio::post(*workers_, std::move(fn)); });
    registry_.set_source([this] { return plugin::plugin_commands(current_chain(), *workers_); });
    control_server_ = std::make_unique<control::ControlServer>(io_, registry_, m.control_socket);
    try {
      control_server_->start();
      log::info("control", "socket={}", m.control_socket.string());
    } catch (const std::exception& e) {
      log::error("control", "{}; posternctl works only offline (core areas)", e.what());
      control_server_.reset();
    }
  }

  /**
   * A listener of a service protocol (ABI 1.2, docs/services.md): opened only
   * when a plugin of the current chain serves the protocol. Each connection
   * takes the chain current when it is accepted, and the plugin serving the
   * protocol there. @throws std::runtime_error on a bad listener attribute or
   * when the port cannot be bound.
   */
  void start_service_listener(const config::Listener& l) {
    const service::Provider provider = service::find_provider(current_chain(), l.protocol);
    if (!provider) {
      log::warn("main", "listener={} protocol={}: no loaded plugin serves this protocol; port {} not opened", l.name,
                l.protocol, l.port);
      return;
    }
    auto listener = std::make_unique<service::ServiceListener>(
        io_, l, service::make_listener_info(l, tls_, gen_.manifest->server_name),
        [this](std::string_view protocol) { return service::find_provider(current_chain(), protocol); });
    listener->start();
    log::info("main", "listener={} protocol={} address={} port={} tls={} plugin={}", l.name, l.protocol, l.address,
              l.port, config::tls_mode_name(l.tls), provider.name);
    service_listeners_.push_back(std::move(listener));
  }

  /**
   * Builds a chain; runs on the main thread at start and on the control
   * thread at reload. The last session to drop a chain may be on an I/O
   * thread: its deleter hands the chain to the control thread, where plugins
   * are quiesced and destroyed without stalling any session.
   */
  void install_chain(const std::shared_ptr<const config::Manifest>& manifest) {
    plugin::BuiltChain built = plugin::build_chain(manifest, services_);
    for (const std::string& why : built.refused) log::error("plugin", "{}", why);
    event::Chain* raw = built.chain.get();
    event::ChainPtr chain(raw, [this, owner = std::move(built.chain)](const event::Chain*) mutable {
      boost::asio::post(control_, [doomed = std::move(owner)]() mutable { doomed.reset(); });
    });
    std::atomic_store(&chain_, std::move(chain));
  }

  void wait_signal(boost::asio::signal_set& signals) {
    signals.async_wait([this, &signals](boost::system::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        // Plugin init runs on the control thread, never on an I/O thread.
        boost::asio::post(control_, [this] { reload(); });
        wait_signal(signals);
        return;
      }
      log::info("main", "signal={} stopping", sig);
      for (auto& s : servers_) s->stop();
      for (auto& s : service_listeners_) s->stop();
      if (control_server_) control_server_->stop();
      drain(std::chrono::steady_clock::now() + kDrainTime);
    });
  }

  // Lets sessions answer 421 and run their disconnect hooks; then stops I/O.
  void drain(std::chrono::steady_clock::time_point deadline) {
    size_t active = 0;
    for (auto& s : servers_) active += s->active_sessions();
    for (auto& s : service_listeners_) active += s->active();
    if (active == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (active != 0) log::warn("main", "{} session(s) still open after the drain time; closing", active);
      resolver_->shutdown();
      io_.stop();
      return;
    }
    drain_timer_.expires_after(std::chrono::milliseconds(50));
    drain_timer_.async_wait([this, deadline](boost::system::error_code ec) {
      if (!ec) drain(deadline);
    });
  }

  static constexpr std::chrono::seconds kDrainTime{10};

  void reload() {
    const std::string file = gen_.manifest->path.string();
    Checked c = check(file);
    if (!c.gen) {
      for (const auto& e : c.errors) log::error("reload", "{}", e.str());
      log::error("reload", "manifest {} invalid; keeping the running configuration", file);
      return;
    }
    for (const auto& e : c.plugin_problems) log::warn("reload", "{}", e.str());
    log::set_level(c.gen->manifest->log_level);
    // Sessions already running keep their chain; it is unloaded with the last one.
    install_chain(c.gen->manifest);
    gen_.manifest = c.gen->manifest;
    std::atomic_store(&manifest_, gen_.manifest);
    log::info("reload", "manifest {} reloaded; plugins={} (listener and engine settings need a restart)", file,
              current_chain()->plugins().size());
  }

  Generation gen_;
  bool foreground_;
  // Loading (reload) and unloading plugins; declared before io_ so that it
  // outlives anything the io_context's destruction may still release.
  boost::asio::thread_pool control_{1};
  boost::asio::io_context io_;
  boost::asio::steady_timer drain_timer_{io_};
  std::unique_ptr<boost::asio::thread_pool> workers_;
  std::unique_ptr<dns::Resolver> resolver_;
  plugin::HostServices services_;
  app::Runtime rt_;
  event::ChainPtr chain_;
  std::shared_ptr<tls::TlsContext> tls_;
  std::unique_ptr<queue::Spool> spool_;
  std::vector<std::unique_ptr<smtp::SmtpServer>> servers_;
  std::vector<std::unique_ptr<service::ServiceListener>> service_listeners_;
  // The manifest in force, read by control commands on worker threads (atomic_load/atomic_store).
  std::shared_ptr<const config::Manifest> manifest_;
  control::Registry registry_;
  std::unique_ptr<control::ControlServer> control_server_;
};

}  // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (!opts) {
    usage();
    return 2;
  }
  if (opts->check_only) return check_config(opts->config);

  Checked c = check(opts->config);
  if (!c.gen) {
    for (const auto& e : c.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::fprintf(stderr, "posternd: %s is invalid; not starting\n", opts->config.c_str());
    return 1;
  }
  for (const auto& e : c.plugin_problems) std::fprintf(stderr, "%s:%u: warning: %s\n", e.file.c_str(), e.line, e.message.c_str());
  if (!opts->foreground) {
    // Detach: the classic double fork is unnecessary under systemd; one
    // daemon(3) keeps the working directory (paths are already absolute).
    if (::daemon(1, 0) != 0) {
      std::perror("posternd: daemon");
      return 1;
    }
  }
  Daemon d(std::move(*c.gen), opts->foreground);
  return d.run();
}
