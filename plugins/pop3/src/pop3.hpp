#pragma once
// pop3 (MISSION M3): the POP3 service — RFC 1939 with RFC 2449 CAPA and
// response codes, RFC 2595 STLS and RFC 5034 AUTH PLAIN, over the streams,
// directory and mailbox store of ABI 1.2. See ../README.md.

#include "session.hpp"

#include <postern/sdk/sdk.hpp>

#include <memory>

namespace postern::plugins::pop3 {

class Pop3Plugin {
 public:
  static constexpr const char* kName = "pop3";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx);

 private:
  std::shared_ptr<Service> service_;
};

}  // namespace postern::plugins::pop3
