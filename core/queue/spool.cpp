#include "core/queue/spool.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <system_error>
#include <unistd.h>

namespace postern::core::queue {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMagic = "postern-spool 1";
// Writers spend their time waiting in fsync(); more of them waiting together
// means fewer device flushes per message.
constexpr size_t kMinWriterThreads = 16;
// Committers: while one waits for its directory fsync, the next can already
// rename and fsync the messages that arrived meanwhile.
constexpr size_t kCommitters = 2;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void check_field(std::string_view name, std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      throw std::invalid_argument(fmt::format("spool: envelope field {} contains CR, LF or NUL", name));
    }
  }
}

void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("spool: write " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("spool: open dir " + dir.string());
  if (::fsync(fd) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    throw_errno("spool: fsync dir " + dir.string());
  }
  ::close(fd);
}

}  // namespace

std::string_view body_type_name(BodyType body) {
  switch (body) {
    case BodyType::SevenBit: return "7BIT";
    case BodyType::EightBitMime: return "8BITMIME";
    case BodyType::BinaryMime: return "BINARYMIME";
  }
  return "7BIT";
}

std::optional<BodyType> body_type_from_name(std::string_view name) {
  if (name == "7BIT") return BodyType::SevenBit;
  if (name == "8BITMIME") return BodyType::EightBitMime;
  if (name == "BINARYMIME") return BodyType::BinaryMime;
  return std::nullopt;
}

Spool::Spool(fs::path queue_dir, size_t worker_threads, bool clean_tmp)
    : dir_(std::move(queue_dir)), pool_(std::max(worker_threads, kMinWriterThreads)) {
  for (const char* sub : {"tmp", "incoming", "quarantine"}) fs::create_directories(dir_ / sub);
  // Leftovers in tmp/ were never acknowledged to a client (the rename is the commit point).
  std::error_code ec;
  if (clean_tmp)
    for (const auto& entry : fs::directory_iterator(dir_ / "tmp", ec)) fs::remove(entry.path(), ec);
  for (size_t i = 0; i < kCommitters; ++i) committers_.emplace_back([this] { committer_loop(); });
}

Spool::~Spool() {
  // Writers first (they enqueue), then the committer finishes what is pending.
  pool_.join();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : committers_) t.join();
}

std::string Spool::new_queue_id() {
  using namespace std::chrono;
  static thread_local std::mt19937 rng{std::random_device{}()};
  const auto now = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  const uint32_t seq = counter_.fetch_add(1, std::memory_order_relaxed);
  // time (µs, 13 hex digits) + sequence (4) + random (3): sorted by arrival, unique
  // within a process by the sequence and across restarts by the time.
  return fmt::format("{:013x}{:04x}{:03x}", static_cast<uint64_t>(now), seq & 0xffff, rng() & 0xfff);
}

std::string Spool::format_envelope(const Envelope& env, size_t message_size) {
  check_field("queue-id", env.queue_id);
  check_field("mail-from", env.mail_from);
  check_field("envid", env.envid);
  check_field("ret", env.ret);
  check_field("peer", env.peer);
  check_field("helo", env.helo);
  check_field("auth-user", env.auth_user);
  std::string out;
  out.reserve(256 + env.recipients.size() * 64);
  out += kMagic;
  out += '\n';
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(env.received_at.time_since_epoch()).count();
  out += fmt::format("queue-id: {}\n", env.queue_id);
  out += fmt::format("received-at: {}\n", secs);
  out += fmt::format("peer: {}\n", env.peer);
  out += fmt::format("helo: {}\n", env.helo);
  out += fmt::format("auth-user: {}\n", env.auth_user);
  out += fmt::format("mail-from: <{}>\n", env.mail_from);
  out += fmt::format("body: {}\n", body_type_name(env.body));
  out += fmt::format("smtputf8: {}\n", env.smtputf8 ? "yes" : "no");
  out += fmt::format("ret: {}\n", env.ret);
  out += fmt::format("envid: {}\n", env.envid);
  if (!env.origin.empty()) {
    check_field("origin", env.origin);
    out += fmt::format("origin: {}\n", env.origin);
  }
  if (!env.injected_by.empty()) {
    check_field("injected-by", env.injected_by);
    out += fmt::format("injected-by: {}\n", env.injected_by);
  }
  if (!env.skip_filters.empty()) {
    for (const auto& f : env.skip_filters) {
      check_field("skip-filters", f);
      if (f.empty() || f.find_first_of(", ") != std::string::npos)
        throw std::invalid_argument("spool: a skip-filters name is empty or contains a comma or space");
    }
    out += fmt::format("skip-filters: {}\n", fmt::join(env.skip_filters, ","));
  }
  for (const auto& r : env.recipients) {
    check_field("rcpt", r.address);
    check_field("notify", r.notify);
    check_field("orcpt", r.orcpt);
    if (r.notify.find(' ') != std::string::npos || r.orcpt.find(' ') != std::string::npos) {
      throw std::invalid_argument("spool: notify/orcpt contain a space");
    }
    out += fmt::format("rcpt: <{}> notify={} orcpt={}\n", r.address, r.notify, r.orcpt);
  }
  out += fmt::format("size: {}\n", message_size);
  out += '\n';
  return out;
}

struct Spool::Commit {
  virtual ~Commit() {
    if (fd >= 0) ::close(fd);
  }
  /** Delivers `error` (null: durable) to whoever waits; called exactly once, on the committer thread. */
  virtual void complete() = 0;

  int fd = -1;  // the tmp file while prepare() writes it
  fs::path tmp;
  fs::path final_path;
  fs::path target_dir;
  std::exception_ptr error;
  bool renamed = false;
  // For the commit listener; valid until complete() (the writer waits).
  const Envelope* envelope = nullptr;
  std::string_view message;
  bool incoming = false;
};

namespace {

std::exception_ptr errno_error(int err, const std::string& what) {
  return std::make_exception_ptr(std::system_error(err, std::generic_category(), what));
}

/** store(): the blocking caller waits on a promise. */
struct PromiseCommit final : Spool::Commit {
  std::promise<void> done;
  void complete() override {
    if (error) done.set_exception(error);
    else done.set_value();
  }
};

/** async_store(): the completion handler runs on its own executor. */
template <typename Handler, typename Work>
struct HandlerCommit final : Spool::Commit {
  HandlerCommit(Handler h, Work w) : handler(std::move(h)), work(std::move(w)) {}
  void complete() override {
    auto ex = work.get_executor();
    boost::asio::dispatch(ex, [handler = std::move(handler), error = error]() mutable { std::move(handler)(error); });
    work.reset();
  }
  Handler handler;
  Work work;
};

}  // namespace

void Spool::prepare(Commit& c, const Envelope& env, std::string_view message, std::string_view subdir) {
  if (env.queue_id.empty() || env.queue_id.find('/') != std::string::npos || env.queue_id[0] == '.') {
    throw std::invalid_argument("spool: bad queue id");
  }
  if (subdir.empty() || subdir.find('/') != std::string_view::npos || subdir[0] == '.') {
    throw std::invalid_argument("spool: bad subdir");
  }
  const std::string header = format_envelope(env, message.size());
  c.target_dir = dir_ / std::string(subdir);
  if (!fs::is_directory(c.target_dir)) fs::create_directories(c.target_dir);
  c.tmp = dir_ / "tmp" / (env.queue_id + ".tmp");
  c.envelope = &env;
  c.message = message;
  c.incoming = subdir == "incoming";
  c.final_path = c.target_dir / env.queue_id;

  c.fd = ::open(c.tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (c.fd < 0) throw_errno("spool: create " + c.tmp.string());
  try {
    write_all(c.fd, header, c.tmp.string());
    write_all(c.fd, message, c.tmp.string());
    // Postfix discipline: a queue file is ready only after fsync. Many writers
    // fsync at once, so the device flushes they cause are shared (the block
    // layer merges flushes that are pending together).
    if (::fsync(c.fd) != 0) throw_errno("spool: fsync " + c.tmp.string());
    const int fd = c.fd;
    c.fd = -1;
    if (::close(fd) != 0) throw_errno("spool: close " + c.tmp.string());
  } catch (...) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    ::unlink(c.tmp.c_str());
    throw;
  }
}

void Spool::enqueue(std::unique_ptr<Commit> c) {
  {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(c));
  }
  cv_.notify_one();
}

void Spool::committer_loop() {
  std::vector<std::unique_ptr<Commit>> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and nothing left to commit
      // No artificial delay: whatever arrived while the previous batch was
      // being fsynced is the next batch, so batches grow with the load.
      batch.swap(pending_);
    }
    commit_batch(batch);
    batch.clear();
  }
}

void Spool::commit_batch(std::vector<std::unique_ptr<Commit>>& batch) {
  batches_.fetch_add(1, std::memory_order_relaxed);
  // Each file was written and fsynced by its writer (prepare()).
  // 1. rename: the commit point of each message.
  for (auto& c : batch) {
    if (c->error) continue;
    if (::rename(c->tmp.c_str(), c->final_path.c_str()) != 0) {
      c->error = errno_error(errno, "spool: rename to " + c->final_path.string());
      ::unlink(c->tmp.c_str());
      continue;
    }
    c->renamed = true;
  }
  // 2. One fsync per directory makes all of its new entries durable at once.
  std::vector<const fs::path*> dirs;
  for (auto& c : batch) {
    if (!c->renamed) continue;
    if (std::none_of(dirs.begin(), dirs.end(), [&](const fs::path* d) { return *d == c->target_dir; }))
      dirs.push_back(&c->target_dir);
  }
  for (const fs::path* d : dirs) {
    std::exception_ptr error;
    try {
      fsync_dir(*d);
    } catch (...) {
      error = std::current_exception();
    }
    if (!error) continue;
    // Not durable: withdraw every message of this directory (none was acknowledged yet).
    for (auto& c : batch) {
      if (c->renamed && c->target_dir == *d) {
        ::unlink(c->final_path.c_str());
        c->renamed = false;
        c->error = error;
      }
    }
  }
  // 3. Only now does anyone hear about it: the queue manager first (the
  // message is still alive), then the writer.
  if (auto listener = std::atomic_load(&listener_)) {
    for (auto& c : batch) {
      if (c->renamed && !c->error && c->incoming) {
        try {
          (*listener)(*c->envelope, c->message);
        } catch (...) {
          // The message is durable; the queue manager finds it at its next scan.
        }
      }
    }
  }
  for (auto& c : batch) c->complete();
}

void Spool::store(const Envelope& env, std::string_view message, std::string_view subdir) {
  auto c = std::make_unique<PromiseCommit>();
  prepare(*c, env, message, subdir);
  auto done = c->done.get_future();
  enqueue(std::move(c));
  done.get();
}

boost::asio::awaitable<void> Spool::async_store(const Envelope& envelope, std::string_view message,
                                                std::string_view subdir) {
  // Completion-handler style: the tmp file is written on the pool, the committer
  // completes the handler on the awaiting coroutine's executor. The references
  // stay valid because the caller is suspended until then.
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::exception_ptr)>(
      [this, &envelope, message, subdir](auto handler) {
        auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(pool_, [this, &envelope, message, subdir, handler = std::move(handler),
                                  work = std::move(work)]() mutable {
          using Commit = HandlerCommit<decltype(handler), decltype(work)>;
          auto c = std::make_unique<Commit>(std::move(handler), std::move(work));
          try {
            prepare(*c, envelope, message, subdir);
          } catch (...) {
            c->error = std::current_exception();
            c->complete();
            return;
          }
          enqueue(std::move(c));
        });
      },
      boost::asio::use_awaitable);
}

std::optional<uint64_t> Spool::free_bytes() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

void Spool::set_commit_listener(CommitListener listener) {
  std::shared_ptr<const CommitListener> p;
  if (listener) p = std::make_shared<const CommitListener>(std::move(listener));
  std::atomic_store(&listener_, std::move(p));
}

namespace {

/** Parses the envelope block of `content`; `pos` ends after the blank line. */
std::optional<Envelope> parse_header(const std::string& content, size_t& pos, std::optional<size_t>& size) {
  pos = content.find('\n');
  if (pos == std::string::npos || std::string_view(content).substr(0, pos) != kMagic) return std::nullopt;
  ++pos;
  Envelope env;
  for (;;) {
    size_t eol = content.find('\n', pos);
    if (eol == std::string::npos) return std::nullopt;
    std::string_view line(content.data() + pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) break;
    size_t colon = line.find(": ");
    std::string_view key = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 2);
    auto unbracket = [](std::string_view v) {
      if (v.size() >= 2 && v.front() == '<') {
        size_t close = v.rfind('>');
        return std::string(v.substr(1, close - 1));
      }
      return std::string(v);
    };
    if (key == "queue-id") env.queue_id = value;
    else if (key == "received-at") env.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(std::stoll(std::string(value.empty() ? "0" : value))));
    else if (key == "peer") env.peer = value;
    else if (key == "helo") env.helo = value;
    else if (key == "auth-user") env.auth_user = value;
    else if (key == "mail-from") env.mail_from = unbracket(value);
    else if (key == "body") env.body = body_type_from_name(value).value_or(BodyType::SevenBit);
    else if (key == "smtputf8") env.smtputf8 = value == "yes";
    else if (key == "ret") env.ret = value;
    else if (key == "envid") env.envid = value;
    else if (key == "origin") env.origin = value;
    else if (key == "injected-by") env.injected_by = value;
    else if (key == "skip-filters") {
      for (size_t b = 0; b < value.size();) {
        size_t e = std::min(value.find(',', b), value.size());
        if (e > b) env.skip_filters.emplace_back(value.substr(b, e - b));
        b = e + 1;
      }
    }
    else if (key == "size") size = std::stoull(std::string(value));
    else if (key == "rcpt") {
      // "<addr> notify=X orcpt=Y"; the address cannot contain "> " unquoted but
      // a quoted local part may contain spaces, so split from the right.
      size_t o = value.rfind(" orcpt=");
      size_t n = value.rfind(" notify=", o);
      if (o == std::string_view::npos || n == std::string_view::npos) return std::nullopt;
      EnvelopeRecipient r;
      r.address = unbracket(value.substr(0, n));
      r.notify = value.substr(n + 8, o - n - 8);
      r.orcpt = value.substr(o + 7);
      env.recipients.push_back(std::move(r));
    }
  }
  return env;
}

}  // namespace

std::optional<SpoolFile> Spool::load(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  std::optional<size_t> size;
  std::optional<Envelope> env;
  try {
    env = parse_header(content, pos, size);
  } catch (const std::exception&) {
    return std::nullopt;  // a number that does not parse
  }
  if (!env) return std::nullopt;
  SpoolFile out;
  out.envelope = std::move(*env);
  out.message = content.substr(pos);
  if (size && *size != out.message.size()) return std::nullopt;
  return out;
}

std::optional<Envelope> Spool::load_envelope(const fs::path& file, size_t* message_size) {
  // The header is small; read in chunks until the blank line.
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string content;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const size_t old = content.size();
    content.append(buf, static_cast<size_t>(n));
    if (content.find("\n\n", old == 0 ? 0 : old - 1) != std::string::npos) break;
    if (content.size() > (1u << 24)) break;  // no sane envelope is this large
  }
  ::close(fd);
  size_t pos = 0;
  std::optional<size_t> size;
  std::optional<Envelope> env;
  try {
    env = parse_header(content, pos, size);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (!env || !size) return std::nullopt;
  if (message_size) *message_size = *size;
  return env;
}

}  // namespace postern::core::queue
