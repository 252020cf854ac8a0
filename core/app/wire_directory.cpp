// Wiring of the directory (D1-D3) into posternd (see runtime.hpp): opens the
// database named by <directory>, creates the default domain and postmaster
// at first start, gives the SMTP engine its RCPT checks and AUTH accounts
// (the directory first, then the manifest's static <account>s), and looks
// for changes posternctl made once per <directory refresh=> (default 1 s):
// the timer runs on the I/O context, the SQLite work on the worker pool.

#include "core/app/runtime.hpp"
#include "core/directory/directory.hpp"
#include "core/directory/directory_config.hpp"
#include "core/directory/smtp_adapters.hpp"
#include "core/directory/store.hpp"
#include "core/log/log.hpp"
#include "core/smtp/smtp_config.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>

namespace postern::core::app {

namespace {

/** Re-arms itself until the directory is gone; at most one refresh in flight. */
class Refresher : public std::enable_shared_from_this<Refresher> {
 public:
  Refresher(boost::asio::io_context& io, boost::asio::thread_pool& workers,
            std::weak_ptr<directory::Directory> dir, std::chrono::milliseconds interval)
      : timer_(io), workers_(workers), dir_(std::move(dir)), interval_(interval) {}

  void arm() {
    timer_.expires_after(interval_);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      auto dir = self->dir_.lock();
      if (!dir) return;
      if (!self->busy_.exchange(true)) {
        boost::asio::post(self->workers_, [self, dir] {
          try {
            dir->refresh();
          } catch (const std::exception& e) {
            // The old snapshot stays in use; the next tick tries again.
            log::warn("directory", "refresh failed: {}", e.what());
          }
          self->busy_ = false;
        });
      }
      self->arm();
    });
  }

 private:
  boost::asio::steady_timer timer_;
  boost::asio::thread_pool& workers_;
  std::weak_ptr<directory::Directory> dir_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> busy_{false};
};

}  // namespace

void check_directory(const config::Manifest& m, config::Diagnostics& diag) {
  (void)directory::parse_directory_config(m, &diag);
}

bool wire_directory(Runtime& rt) {
  const config::Manifest& m = *rt.manifest;
  const directory::DirectoryConfig cfg = directory::parse_directory_config(m, nullptr);
  if (!cfg.enabled) {
    log::info("directory", "no <directory> in the manifest: AUTH uses <smtp><account>s only and every local part "
                           "of a <local-domain> is accepted");
    return true;
  }
  std::shared_ptr<directory::Directory> dir;
  try {
    dir = std::make_shared<directory::Directory>(cfg.options);
    for (const std::string& line : dir->ensure_defaults(cfg.local_domains)) log::info("directory", "{}", line);
  } catch (const std::exception& e) {
    log::error("directory", "cannot open the directory {}: {}", cfg.options.file, e.what());
    return false;
  }
  rt.directory = dir;
  rt.smtp->recipients = std::make_shared<directory::DirectoryRecipientPolicy>(dir);
  std::vector<std::shared_ptr<const smtp::AuthBackend>> backends{
      std::make_shared<directory::DirectoryAuthBackend>(dir)};
  if (rt.smtp->auth) backends.push_back(rt.smtp->auth);
  rt.smtp->auth = std::make_shared<directory::ChainAuthBackend>(std::move(backends));
  std::make_shared<Refresher>(*rt.io, *rt.workers, dir, cfg.refresh)->arm();
  const auto data = dir->data();
  log::info("directory", "file={} default-domain={} domains={} accounts={} aliases={} lists={} router-rules={}",
            cfg.options.file, dir->default_domain(), data->domains.size(), data->accounts.size(),
            data->aliases.size(), data->lists.size(), data->router.size());
  return true;
}

}  // namespace postern::core::app
