#pragma once
// The imap service plugin class: reads the configuration and serves "imap".

#include "session.hpp"

#include <postern/sdk/plugin.hpp>

#include <memory>

namespace postern::plugins::imap {

/** Registers the "imap" listener protocol; one postern::imap::Session per connection. */
class ImapPlugin {
 public:
  static constexpr const char* kName = "imap";
  static constexpr const char* kVersion = "1.0.0";

  /** Reads the limits and timeouts (README.md) and calls serve("imap"). */
  sdk::Status init(sdk::InitContext& ctx);

 private:
  std::shared_ptr<postern::imap::SessionConfig> config_;
};

}  // namespace postern::plugins::imap
