#pragma once
// Running blocking work (disk, SQLite, parsing a large message) off an
// event-loop strand: the coroutine suspends, `work()` runs on a pool, and the
// coroutine resumes on its own executor (its strand) with the result. The
// strand serves other sessions meanwhile; the awaiting coroutine does not
// read its next command until the result is back, so replies keep their order.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace postern::core::util {

/**
 * Runs `work()` on `pool` and returns its result in the awaiting coroutine,
 * resumed on the coroutine's executor. An exception from `work()` is rethrown
 * there. If the pool is stopped before `work()` runs, the coroutine is
 * destroyed without resuming (as with any abandoned asynchronous operation).
 * OWNERSHIP: `work` is moved onto the pool; it may refer to the awaiting
 * coroutine's locals (the coroutine stays suspended until the result is back).
 * LIFETIME: `pool` must accept work until the result is delivered.
 * THREADING: `work()` runs on one of the pool's threads; call from a coroutine.
 * @return the result of `work()` (a non-void, movable type).
 */
template <class Work, class Result = std::invoke_result_t<Work&>>
boost::asio::awaitable<Result> offload(boost::asio::any_io_executor pool, Work work) {
  static_assert(!std::is_void_v<Result>, "offload: work() must return a value");
  std::optional<Result> out = co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                                                   void(std::exception_ptr, std::optional<Result>)>(
      [pool](auto handler, Work w) {
        auto guard = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(pool, [handler = std::move(handler), guard = std::move(guard), w = std::move(w)]() mutable {
          std::exception_ptr error;
          std::optional<Result> result;
          try {
            result.emplace(w());
          } catch (...) {
            error = std::current_exception();
          }
          auto ex = guard.get_executor();
          boost::asio::dispatch(ex, [handler = std::move(handler), error, result = std::move(result)]() mutable {
            std::move(handler)(error, std::move(result));
          });
        });
      },
      boost::asio::use_awaitable, std::move(work));
  co_return std::move(*out);
}

}  // namespace postern::core::util
