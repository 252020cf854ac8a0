#pragma once
// Admin commands owned by plugins (ABI 1.3, postern_abi.h "admin commands";
// docs/control-plane.md): the host functions, and the registry source that
// offers the commands of the current chain's plugins.

#include "core/control/command.hpp"
#include "core/event/chain.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <boost/asio/thread_pool.hpp>

#include <memory>
#include <vector>

namespace postern::core::plugin {

/** Areas that core serves; a plugin may not register commands in them. */
bool core_command_area(std::string_view area);

/**
 * The commands of `chain`'s plugins, first registration in manifest order
 * winning. Each handler keeps `chain` (so the plugin stays loaded while a
 * call runs), runs the plugin's callback on `workers` and answers through
 * the reply handle.
 */
std::vector<control::Command> plugin_commands(const std::shared_ptr<const event::Chain>& chain,
                                              boost::asio::thread_pool& workers);

namespace abi13 {
postern_status_t command_register(postern_host_t* host, const postern_command_spec_t* spec, postern_command_cb fn,
                                  void* user);
postern_status_t command_complete(postern_command_reply_t* reply, uint32_t exit_class, postern_str_t result_json,
                                  postern_str_t text);
}  // namespace abi13

}  // namespace postern::core::plugin
