#pragma once
// The incoming spool: one file per accepted message, made durable (write to
// tmp/, fsync, rename into <subdir>/, fsync the directory) before the SMTP
// engine answers 250. Queue state is the files. Format: docs/spool.md.
// Messages that arrive together are committed together (group commit): writer
// threads write and fsync the tmp files concurrently (sharing device flushes),
// then a committer thread renames every pending file and fsyncs each
// directory once per batch, then completes all of them.

#include "core/queue/envelope.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace postern::core::queue {

/** A spool file read back (queue manager, tests, posternctl queue show). */
struct SpoolFile {
  Envelope envelope;
  std::string message;
};

class Spool {
 public:
  /**
   * Opens (creates when missing) the spool under `queue_dir`: tmp/, incoming/, quarantine/,
   * and starts the committer threads.
   * @param worker_threads threads of the pool that writes and fsyncs the tmp files for
   *   async_store(); at least 16 (they mostly wait in fsync, see docs/spool.md).
   * @param clean_tmp remove leftovers in tmp/ (posternd at start); false for a
   *   second writer next to a running daemon (posternctl queue resend).
   * @throws std::filesystem::filesystem_error when the directories cannot be created.
   */
  explicit Spool(std::filesystem::path queue_dir, size_t worker_threads = 2, bool clean_tmp = true);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  /** A new queue id: 20 lowercase hex digits, time-ordered, unique in this spool. Thread-safe. */
  std::string new_queue_id();

  /**
   * Writes one message durably: tmp file, fsync, rename into `subdir`, fsync of
   * the directory, all before it returns. The rename and the directory fsync run
   * on a committer thread, batched with the other messages being stored at
   * the same time. Blocking; thread-safe; must not be called on a committer thread.
   * @param subdir "incoming" (default) or "quarantine"; created when missing.
   * @throws std::system_error on an I/O error (nothing is left visible in `subdir`),
   *   std::invalid_argument when an envelope field contains CR, LF or NUL.
   */
  void store(const Envelope& envelope, std::string_view message, std::string_view subdir = "incoming");

  /**
   * store() without blocking: the tmp file is written and fsynced on the
   * spool's worker pool, committed by a committer thread, and the awaiting
   * coroutine resumes on its own executor once the message is durable (or
   * failed). `envelope` and `message` must stay valid until it completes.
   * @throws like store(); a failure of one message never fails the others of its batch.
   */
  boost::asio::awaitable<void> async_store(const Envelope& envelope, std::string_view message,
                                           std::string_view subdir = "incoming");

  /** Free octets available to unprivileged users on the spool's file system. */
  std::optional<uint64_t> free_bytes() const;

  /** Serializes the envelope header block (for tests and tools). */
  static std::string format_envelope(const Envelope& envelope, size_t message_size);

  /** Reads a spool file back; nullopt when it is missing or malformed. */
  static std::optional<SpoolFile> load(const std::filesystem::path& file);

  /**
   * Reads only the envelope of a spool file (the queue manager's index at
   * start, posternctl queue list); `message_size` gets the size line.
   * @return nullopt when the file is missing or its header is malformed.
   */
  static std::optional<Envelope> load_envelope(const std::filesystem::path& file, size_t* message_size = nullptr);

  /**
   * Called for every message committed into incoming/, after its directory
   * fsync and just before its writer is told (so `message` is still valid):
   * the queue manager learns of new mail without polling. Runs on a committer
   * thread: it must be quick and must not call store(). Set it before the
   * listeners start; null (the default) = nobody listens.
   */
  using CommitListener = std::function<void(const Envelope& envelope, std::string_view message)>;
  void set_commit_listener(CommitListener listener);

  /** Batches the committers have run so far (each: one fsync per directory). Thread-safe. */
  uint64_t commit_batches() const { return batches_.load(std::memory_order_relaxed); }

  /** One message between its tmp write and its completion (defined in spool.cpp). */
  struct Commit;

 private:
  /** Checks the arguments, writes and fsyncs the tmp file named in `c`. */
  void prepare(Commit& c, const Envelope& envelope, std::string_view message, std::string_view subdir);
  /** Hands a prepared (fsynced) message to the committers; one of them completes it later. */
  void enqueue(std::unique_ptr<Commit> c);
  void committer_loop();
  void commit_batch(std::vector<std::unique_ptr<Commit>>& batch);

  std::filesystem::path dir_;
  boost::asio::thread_pool pool_;
  std::atomic<uint32_t> counter_{0};
  std::atomic<uint64_t> batches_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Commit>> pending_;  // guarded by mu_
  bool stopping_ = false;                        // guarded by mu_
  std::vector<std::thread> committers_;
  std::shared_ptr<const CommitListener> listener_;  // atomic_load/atomic_store
};

}  // namespace postern::core::queue
