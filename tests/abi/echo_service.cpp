// A line-based echo service over ABI 1.2 streams, written with the C++ SDK.
// It serves the protocol named by <plugin protocol="..."> (default "echo";
// several, space-separated, are allowed) and answers, one line each:
//   (greeting)       "HELLO <session id>"
//   STARTTLS         "OK go", then TLS; the rest of that input is dropped
//   PAUSE <ms>       "OK paused"; input stops for <ms>, then "OK resumed"
//   WORK             a job on the worker pool answers "OK worked" through post()
//   DRAIN            "OK drained" from on_drain
//   BIG <n>          n octets of 'x' and CRLF, then "OK big queued=<octets queued>"
//   IDLE <ms>        sets the idle timeout: "OK idle"
//   PROPS            "PROP <name>=<value>" per stream property, then "OK props"
//   HISTORY          "HISTORY <every line received so far, '|'-separated>"
//   CLOSE            "BYE", then the stream is closed
//   anything else    "ECHO <line>"
// Every on_close appends "<session> <reason>" to <state dir>/closes.log.
#include <postern/sdk/plugin.hpp>

#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

namespace {

using namespace postern;

struct Shared {
  std::mutex mu;
  std::string closes_log;
};

class EchoConnection : public sdk::Connection {
 public:
  EchoConnection(sdk::Stream stream, sdk::Host host, std::shared_ptr<Shared> shared)
      : stream_(std::move(stream)), host_(host), shared_(std::move(shared)), alive_(std::make_shared<bool>(true)) {
    stream_.write("HELLO " + stream_.session_id() + "\r\n");
  }

  void on_data(std::string_view data) override {
    buffer_.append(data);
    size_t pos = 0;
    while (true) {
      const size_t eol = buffer_.find('\n', pos);
      if (eol == std::string::npos) break;
      std::string line = buffer_.substr(pos, eol - pos);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      pos = eol + 1;
      if (!command(line)) {
        // RFC 3207 §4.2: nothing sent after STARTTLS counts; drop it.
        buffer_.clear();
        return;
      }
    }
    buffer_.erase(0, pos);
  }

  void on_tls() override { stream_.write("OK tls " + stream_.get(POSTERN_STREAM_TLS_PROTOCOL) + "\r\n"); }

  void on_drain() override { stream_.write("OK drained\r\n"); }

  void on_close(sdk::CloseReason reason) override {
    *alive_ = false;
    static const char* names[] = {"peer", "error", "timeout", "plugin", "shutdown", "tls-failed"};
    std::lock_guard lock(shared_->mu);
    if (std::FILE* f = std::fopen(shared_->closes_log.c_str(), "a")) {
      std::fprintf(f, "%s %s\n", stream_.session_id().c_str(), names[static_cast<int>(reason)]);
      std::fclose(f);
    }
  }

 private:
  /** @return false when the rest of the input must be dropped (STARTTLS). */
  bool command(const std::string& line) {
    history_ += (history_.empty() ? "" : "|") + line;
    std::istringstream in(line);
    std::string verb;
    in >> verb;
    if (verb == "STARTTLS") {
      stream_.write("OK go\r\n");
      if (!stream_.starttls()) stream_.write("NO tls unavailable\r\n");
      return false;
    }
    if (verb == "PAUSE") {
      long ms = 0;
      in >> ms;
      stream_.pause(true);
      stream_.write("OK paused\r\n");
      host_.after(std::chrono::milliseconds(ms), [s = stream_, alive = alive_] {
        // Timers run on an I/O thread: back to the stream's strand.
        s.post([s, alive] {
          if (!*alive) return;
          s.pause(false);
          s.write("OK resumed\r\n");
        });
      });
      return true;
    }
    if (verb == "WORK") {
      host_.post_work([s = stream_, alive = alive_] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        s.post([s, alive] {
          if (*alive) s.write("OK worked\r\n");
        });
      });
      return true;
    }
    if (verb == "DRAIN") {
      if (!stream_.want_drain()) stream_.write("NO drain\r\n");
      return true;
    }
    if (verb == "BIG") {
      size_t n = 0;
      in >> n;
      stream_.write(std::string(n, 'x') + "\r\n");
      stream_.write("OK big queued=" + std::to_string(stream_.queued()) + "\r\n");
      return true;
    }
    if (verb == "IDLE") {
      long ms = 0;
      in >> ms;
      stream_.write(stream_.set_idle_timeout(std::chrono::milliseconds(ms)) ? "OK idle\r\n" : "NO idle\r\n");
      return true;
    }
    if (verb == "PROPS") {
      static const std::pair<postern_stream_prop_t, const char*> props[] = {
          {POSTERN_STREAM_SESSION_ID, "session"},     {POSTERN_STREAM_PEER_IP, "peer-ip"},
          {POSTERN_STREAM_PEER_PORT, "peer-port"},    {POSTERN_STREAM_LOCAL_IP, "local-ip"},
          {POSTERN_STREAM_LOCAL_PORT, "local-port"},  {POSTERN_STREAM_LISTENER, "listener"},
          {POSTERN_STREAM_PROTOCOL, "protocol"},      {POSTERN_STREAM_TLS_MODE, "tls-mode"},
          {POSTERN_STREAM_TLS_PROTOCOL, "tls-protocol"}, {POSTERN_STREAM_TLS_CIPHER, "tls-cipher"},
          {POSTERN_STREAM_SERVER_NAME, "server-name"}, {POSTERN_STREAM_CLEARTEXT_AUTH, "cleartext-auth"},
      };
      for (const auto& [prop, name] : props) stream_.write(std::string("PROP ") + name + "=" + stream_.get(prop) + "\r\n");
      stream_.write("OK props\r\n");
      return true;
    }
    if (verb == "HISTORY") {
      stream_.write("HISTORY " + history_ + "\r\n");
      return true;
    }
    if (verb == "CLOSE") {
      stream_.write("BYE\r\n");
      stream_.close();
      return false;
    }
    stream_.write("ECHO " + line + "\r\n");
    return true;
  }

  sdk::Stream stream_;
  sdk::Host host_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<bool> alive_;  // read and written on the strand only
  std::string buffer_;
  std::string history_;
};

class EchoService {
 public:
  static constexpr const char* kName = "echo_service";
  static constexpr const char* kVersion = "1.0.0";

  sdk::Status init(sdk::InitContext& ctx) {
    shared_->closes_log = (ctx.state_dir() / "closes.log").string();
    std::istringstream protocols(ctx.config().attr_or("protocol", "echo"));
    std::string protocol;
    const sdk::Host host = ctx.host();
    while (protocols >> protocol) {
      auto shared = shared_;
      sdk::Status s = ctx.serve(protocol, [host, shared](sdk::Stream stream) -> std::unique_ptr<sdk::Connection> {
        return std::make_unique<EchoConnection>(std::move(stream), host, shared);
      });
      if (!s) return s;
    }
    return sdk::Status::ok();
  }

 private:
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace

POSTERN_PLUGIN(EchoService)
