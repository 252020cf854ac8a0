#include "core/queue/spool.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <cerrno>
#include <fcntl.h>
#include <fstream>
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

Spool::Spool(fs::path queue_dir, size_t worker_threads)
    : dir_(std::move(queue_dir)), pool_(worker_threads == 0 ? 1 : worker_threads) {
  for (const char* sub : {"tmp", "incoming", "quarantine"}) fs::create_directories(dir_ / sub);
  // Leftovers in tmp/ were never acknowledged to a client (the rename is the commit point).
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "tmp", ec)) fs::remove(entry.path(), ec);
}

Spool::~Spool() {
  pool_.join();
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

void Spool::store(const Envelope& env, std::string_view message, std::string_view subdir) {
  if (env.queue_id.empty() || env.queue_id.find('/') != std::string::npos || env.queue_id[0] == '.') {
    throw std::invalid_argument("spool: bad queue id");
  }
  if (subdir.empty() || subdir.find('/') != std::string_view::npos || subdir[0] == '.') {
    throw std::invalid_argument("spool: bad subdir");
  }
  const std::string header = format_envelope(env, message.size());
  const fs::path target_dir = dir_ / std::string(subdir);
  if (!fs::is_directory(target_dir)) fs::create_directories(target_dir);
  const fs::path tmp = dir_ / "tmp" / (env.queue_id + ".tmp");
  const fs::path final_path = target_dir / env.queue_id;

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno("spool: create " + tmp.string());
  try {
    write_all(fd, header, tmp.string());
    write_all(fd, message, tmp.string());
    if (::fsync(fd) != 0) throw_errno("spool: fsync " + tmp.string());
    if (::close(fd) != 0) {
      fd = -1;
      throw_errno("spool: close " + tmp.string());
    }
    fd = -1;
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) throw_errno("spool: rename to " + final_path.string());
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  // The rename is durable only once the directory entry is on disk (Postfix discipline).
  try {
    fsync_dir(target_dir);
  } catch (...) {
    ::unlink(final_path.c_str());
    throw;
  }
}

boost::asio::awaitable<void> Spool::async_store(const Envelope& envelope, std::string_view message,
                                                std::string_view subdir) {
  // Completion-handler style: store() runs on the pool, the result is dispatched
  // back to the awaiting coroutine's executor. The references stay valid
  // because the caller is suspended until then.
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::exception_ptr)>(
      [this, &envelope, message, subdir](auto handler) {
        auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(pool_, [this, &envelope, message, subdir, handler = std::move(handler),
                                  work = std::move(work)]() mutable {
          std::exception_ptr error;
          try {
            store(envelope, message, subdir);
          } catch (...) {
            error = std::current_exception();
          }
          auto ex = work.get_executor();
          boost::asio::dispatch(ex, [handler = std::move(handler), error]() mutable { std::move(handler)(error); });
        });
      },
      boost::asio::use_awaitable);
}

std::optional<uint64_t> Spool::free_bytes() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

std::optional<SpoolFile> Spool::load(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = content.find('\n');
  if (pos == std::string::npos || std::string_view(content).substr(0, pos) != kMagic) return std::nullopt;
  ++pos;
  SpoolFile out;
  Envelope& env = out.envelope;
  std::optional<size_t> size;
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
  out.message = content.substr(pos);
  if (size && *size != out.message.size()) return std::nullopt;
  return out;
}

}  // namespace postern::core::queue
