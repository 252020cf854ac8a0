#pragma once
// Test helper: one stage through a chain the way a session runs it
// (co_await Chain::run on a strand), on an io_context of its own.

#include "core/event/chain.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <gtest/gtest.h>

namespace postern::core::event::testing {

/** Runs `stage` for `ev` through `chain` to the end (pending hooks included). */
inline Outcome run_chain(ChainPtr chain, Stage stage, EventData& ev) {
  boost::asio::io_context io;
  Outcome out;
  bool finished = false;
  boost::asio::co_spawn(
      boost::asio::make_strand(io),
      [&]() -> boost::asio::awaitable<void> {
        out = co_await chain->run(stage, ev);
        finished = true;
      },
      boost::asio::detached);
  io.run();
  EXPECT_TRUE(finished);
  return out;
}

}  // namespace postern::core::event::testing
