#include "pop3.hpp"

#include "settings.hpp"
#include "size_cache.hpp"

#include <string>

namespace postern::plugins::pop3 {

sdk::Status Pop3Plugin::init(sdk::InitContext& ctx) {
  std::string error;
  auto settings = parse_settings(ctx.config(), &error);
  if (!settings) return sdk::Status::error(error);
  sdk::Host host = ctx.host();
  if (!sdk::has_mailbox_api(host)) return sdk::Status::error("pop3 needs a host with ABI 1.2 (directory and mailbox store)");

  std::shared_ptr<SizeCache> sizes;
  if (settings->size_cache) {
    sizes = SizeCache::open(ctx.state_dir() / "sizes.sqlite", &error);
    // Not fatal: sizes are then computed at every login.
    if (!sizes) host.warn("pop3: size cache unavailable, sizes are recomputed at each login: " + error);
  }
  service_ = std::make_shared<Service>(host, *settings, std::move(sizes));
  return ctx.serve("pop3", [service = service_](sdk::Stream stream) -> std::unique_ptr<sdk::Connection> {
    auto session = std::make_shared<Session>(service, std::move(stream));
    session->start();
    return std::make_unique<Pop3Connection>(std::move(session));
  });
}

}  // namespace postern::plugins::pop3

POSTERN_PLUGIN(postern::plugins::pop3::Pop3Plugin)
