#include "core/queue/spool.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace postern::core::queue {
namespace {

namespace fs = std::filesystem;

using postern::testing::TempDir;

Envelope sample(Spool& spool) {
  Envelope e;
  e.queue_id = spool.new_queue_id();
  e.mail_from = "alice@example.org";
  e.recipients = {{"bob@example.net", "SUCCESS,FAILURE", "rfc822;bob@example.net"}, {"carol@example.net", "", ""}};
  e.envid = "QQ+2B1";
  e.ret = "HDRS";
  e.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  e.peer = "192.0.2.7";
  e.helo = "client.example.org";
  e.auth_user = "alice";
  e.body = BodyType::EightBitMime;
  e.smtputf8 = true;
  return e;
}

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(SpoolTest, StoresAndLoadsBackExactly) {
  TempDir tmp;
  Spool spool(tmp.path);
  Envelope e = sample(spool);
  const std::string message = "Subject: x\r\n\r\nbody\r\n.leading dot\r\n";
  spool.store(e, message);
  const fs::path file = tmp.path / "incoming" / e.queue_id;
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(fs::status(file).permissions() & fs::perms::others_read, fs::perms::none);
  EXPECT_EQ(count_files(tmp.path / "tmp"), 0u) << "the tmp file is renamed, never left behind";
  auto loaded = Spool::load(file);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->message, message);
  const Envelope& l = loaded->envelope;
  EXPECT_EQ(l.queue_id, e.queue_id);
  EXPECT_EQ(l.mail_from, e.mail_from);
  ASSERT_EQ(l.recipients.size(), 2u);
  EXPECT_EQ(l.recipients[0].address, "bob@example.net");
  EXPECT_EQ(l.recipients[0].notify, "SUCCESS,FAILURE");
  EXPECT_EQ(l.recipients[0].orcpt, "rfc822;bob@example.net");
  EXPECT_EQ(l.recipients[1].notify, "");
  EXPECT_EQ(l.envid, "QQ+2B1");
  EXPECT_EQ(l.ret, "HDRS");
  EXPECT_EQ(l.received_at, e.received_at);
  EXPECT_EQ(l.peer, "192.0.2.7");
  EXPECT_EQ(l.helo, "client.example.org");
  EXPECT_EQ(l.auth_user, "alice");
  EXPECT_EQ(l.body, BodyType::EightBitMime);
  EXPECT_TRUE(l.smtputf8);
}

TEST(SpoolTest, NullSenderAndQuarantine) {
  TempDir tmp;
  Spool spool(tmp.path);
  Envelope e = sample(spool);
  e.mail_from = "";
  spool.store(e, "x", "quarantine");
  auto loaded = Spool::load(tmp.path / "quarantine" / e.queue_id);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->envelope.mail_from, "");
  EXPECT_FALSE(fs::exists(tmp.path / "incoming" / e.queue_id));
}

TEST(SpoolTest, RefusesFieldsThatWouldBreakTheFormat) {
  TempDir tmp;
  Spool spool(tmp.path);
  const struct {
    const char* name;
    void (*mutate)(Envelope&);
  } cases[] = {
      {"CR in sender", [](Envelope& e) { e.mail_from = "a\r@b"; }},
      {"LF in helo", [](Envelope& e) { e.helo = "a\nrcpt: <evil@x>"; }},
      {"NUL in rcpt", [](Envelope& e) { e.recipients[0].address = std::string("a\0b", 3); }},
      {"slash in queue id", [](Envelope& e) { e.queue_id = "../x"; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Envelope e = sample(spool);
    c.mutate(e);
    EXPECT_THROW(spool.store(e, "x"), std::invalid_argument);
  }
  EXPECT_EQ(count_files(tmp.path / "incoming"), 0u);
  EXPECT_EQ(count_files(tmp.path / "tmp"), 0u);
}

TEST(SpoolTest, DuplicateQueueIdFailsWithoutClobbering) {
  TempDir tmp;
  Spool spool(tmp.path);
  Envelope e = sample(spool);
  // A leftover tmp file with the same id (a concurrent writer) makes store() fail cleanly.
  std::ofstream(tmp.path / "tmp" / (e.queue_id + ".tmp")) << "partial";
  EXPECT_THROW(spool.store(e, "x"), std::system_error);
  EXPECT_FALSE(fs::exists(tmp.path / "incoming" / e.queue_id));
}

TEST(SpoolTest, StartupRemovesUnacknowledgedTmpFiles) {
  TempDir tmp;
  fs::create_directories(tmp.path / "tmp");
  std::ofstream(tmp.path / "tmp" / "abc.tmp") << "partial";
  Spool spool(tmp.path);
  EXPECT_EQ(count_files(tmp.path / "tmp"), 0u);
}

TEST(SpoolTest, QueueIdsAreUniqueAcrossThreads) {
  TempDir tmp;
  Spool spool(tmp.path);
  std::mutex mu;
  std::set<std::string> ids;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto id = spool.new_queue_id();
        std::lock_guard lock(mu);
        ids.insert(id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ids.size(), 8000u);
}

TEST(SpoolTest, AsyncStoreRunsOffTheCallerThread) {
  TempDir tmp;
  Spool spool(tmp.path, 2);
  boost::asio::io_context io;
  Envelope e = sample(spool);
  std::thread::id caller_before, caller_after;
  auto fut = boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        caller_before = std::this_thread::get_id();
        co_await spool.async_store(e, "Subject: async\r\n\r\n");
        caller_after = std::this_thread::get_id();
      },
      boost::asio::use_future);
  io.run();
  fut.get();
  EXPECT_EQ(caller_before, caller_after) << "resumes on the caller's executor";
  EXPECT_TRUE(fs::exists(tmp.path / "incoming" / e.queue_id));
}

TEST(SpoolTest, AsyncStorePropagatesErrors) {
  TempDir tmp;
  Spool spool(tmp.path, 1);
  boost::asio::io_context io;
  Envelope e = sample(spool);
  e.mail_from = "bad\r\n";
  auto fut = boost::asio::co_spawn(
      io, [&]() -> boost::asio::awaitable<void> { co_await spool.async_store(e, "x"); }, boost::asio::use_future);
  io.run();
  EXPECT_THROW(fut.get(), std::invalid_argument);
}

TEST(SpoolTest, GroupCommitCompletesManyConcurrentStoresDurably) {
  TempDir tmp;
  Spool spool(tmp.path, 2);
  boost::asio::io_context io;
  constexpr int kMessages = 200;
  std::vector<Envelope> envs;
  for (int i = 0; i < kMessages; ++i) envs.push_back(sample(spool));
  std::vector<std::string> bodies;
  for (int i = 0; i < kMessages; ++i) bodies.push_back("Subject: " + std::to_string(i) + "\r\n\r\nbody\r\n");
  // Completion handlers run on both threads below: count atomically.
  std::atomic<int> completed{0};
  std::atomic<int> failed{0};
  for (int i = 0; i < kMessages; ++i) {
    boost::asio::co_spawn(
        io, [&, i]() -> boost::asio::awaitable<void> { co_await spool.async_store(envs[i], bodies[i]); },
        [&](std::exception_ptr e) { ++(e ? failed : completed); });
  }
  // Two threads drive the completions, like posternd's I/O threads.
  std::thread second([&] { io.run(); });
  io.run();
  second.join();
  EXPECT_EQ(completed.load(), kMessages);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(count_files(tmp.path / "incoming"), static_cast<size_t>(kMessages));
  EXPECT_EQ(count_files(tmp.path / "tmp"), 0u);
  for (int i = 0; i < kMessages; ++i) {
    auto loaded = Spool::load(tmp.path / "incoming" / envs[i].queue_id);
    ASSERT_TRUE(loaded) << i;
    EXPECT_EQ(loaded->message, bodies[i]);
  }
  // Concurrent stores share fsyncs: never more batches than messages.
  EXPECT_GE(spool.commit_batches(), 1u);
  EXPECT_LE(spool.commit_batches(), static_cast<uint64_t>(kMessages));
}

TEST(SpoolTest, GroupCommitFailureOfOneFileFailsOnlyThatOne) {
  TempDir tmp;
  Spool spool(tmp.path, 2);
  boost::asio::io_context io;
  constexpr int kMessages = 30;
  constexpr int kBad = 17;
  std::vector<Envelope> envs;
  for (int i = 0; i < kMessages; ++i) envs.push_back(sample(spool));
  // A non-empty directory where message kBad's file should go: its rename fails
  // inside the committer, in the same batch as its neighbours.
  fs::create_directories(tmp.path / "incoming" / envs[kBad].queue_id / "occupied");
  std::vector<std::exception_ptr> results(kMessages);
  std::vector<bool> done(kMessages, false);
  for (int i = 0; i < kMessages; ++i) {
    boost::asio::co_spawn(
        io, [&, i]() -> boost::asio::awaitable<void> { co_await spool.async_store(envs[i], "Subject: x\r\n\r\n"); },
        [&, i](std::exception_ptr e) {
          results[i] = e;
          done[i] = true;
        });
  }
  io.run();
  for (int i = 0; i < kMessages; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(done[i]);
    if (i == kBad) {
      ASSERT_TRUE(results[i]);
      EXPECT_THROW(std::rethrow_exception(results[i]), std::system_error);
      EXPECT_TRUE(fs::is_directory(tmp.path / "incoming" / envs[i].queue_id / "occupied")) << "not clobbered";
    } else {
      EXPECT_FALSE(results[i]);
      EXPECT_TRUE(Spool::load(tmp.path / "incoming" / envs[i].queue_id));
    }
  }
  EXPECT_EQ(count_files(tmp.path / "tmp"), 0u) << "the failed tmp file is removed";
}

TEST(SpoolTest, BlockingStoresFromManyThreadsAreAllDurable) {
  TempDir tmp;
  Spool spool(tmp.path, 2);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        Envelope e = sample(spool);
        spool.store(e, "x");
        if (fs::exists(tmp.path / "incoming" / e.queue_id)) ++ok;  // visible as soon as store() returns
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 80);
  EXPECT_EQ(count_files(tmp.path / "incoming"), 80u);
}

}  // namespace
}  // namespace postern::core::queue
