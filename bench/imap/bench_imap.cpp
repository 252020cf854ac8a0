// IMAP load generator (bench/imap/README.md). One program, three jobs:
//
//   bench_imap seed --port P --users N --messages M
//       APPENDs the same M generated messages to the INBOX of every user.
//   bench_imap load --port P --users N --clients C --duration S
//       C concurrent clients (client i is user i % N) loop LOGIN, SELECT, then
//       --per-login rounds of FETCH 1:* (FLAGS), FETCH n (BODY.PEEK[]) (checked
//       byte for byte against the seeded message), SEARCH, APPEND (\Deleted),
//       STORE +/-FLAGS, and an EXPUNGE every 10 rounds, then LOGOUT; prints one
//       JSON object: commands/s, latency percentiles per command, errors, and the
//       generator's own CPU time (to show it is not the bottleneck).
//   bench_imap idle --port P --users N --connections K
//       opens K logged-in connections with INBOX selected, prints "READY K" and
//       holds them until stdin closes, then logs them out.
//
// The generator is Asio with C++20 coroutines on --threads io_contexts (one
// thread each); it speaks only what the bench needs (tagged commands,
// synchronizing literals) and counts every tagged reply that is not OK as an
// error with its text.
#include <boost/asio.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string user_format = "u%d@bench.test";
  std::string password = "bench-pw";
  int users = 1;
  int messages = 50;
  int clients = 10;
  double duration = 20.0;
  double warmup = 2.0;
  int per_login = 50;
  int connections = 500;
  int threads = 1;
  int login_concurrency = 20;
  std::string mix = "all";  // or one of fetch_flags, fetch_body, search, append, store
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "bench_imap: " << why << "\n"
            << "usage: bench_imap seed|load|idle --port P [--host H] [--users N] [--user-format u%d@bench.test]\n"
               "       [--password PW] [--messages M] [--clients C] [--duration S] [--warmup S]\n"
               "       [--per-login R] [--connections K] [--threads T] [--login-concurrency L]\n"
               "       [--mix all|fetch_flags|fetch_body|search|append|store]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  if (argc < 2) usage("missing mode");
  Options o;
  o.mode = argv[1];
  if (o.mode != "seed" && o.mode != "load" && o.mode != "idle") usage("unknown mode " + o.mode);
  for (int i = 2; i < argc; i += 2) {
    std::string k = argv[i];
    if (i + 1 >= argc) usage(k + " needs a value");
    std::string v = argv[i + 1];
    try {
      if (k == "--host") o.host = v;
      else if (k == "--port") o.port = static_cast<unsigned short>(std::stoi(v));
      else if (k == "--user-format") o.user_format = v;
      else if (k == "--password") o.password = v;
      else if (k == "--users") o.users = std::stoi(v);
      else if (k == "--messages") o.messages = std::stoi(v);
      else if (k == "--clients") o.clients = std::stoi(v);
      else if (k == "--duration") o.duration = std::stod(v);
      else if (k == "--warmup") o.warmup = std::stod(v);
      else if (k == "--per-login") o.per_login = std::stoi(v);
      else if (k == "--connections") o.connections = std::stoi(v);
      else if (k == "--threads") o.threads = std::stoi(v);
      else if (k == "--login-concurrency") o.login_concurrency = std::stoi(v);
      else if (k == "--mix") o.mix = v;
      else usage("unknown option " + k);
    } catch (const std::logic_error&) {
      usage("bad value for " + k + ": " + v);
    }
  }
  if (o.port == 0) usage("--port is required");
  if (o.mix != "all" && o.mix != "fetch_flags" && o.mix != "fetch_body" && o.mix != "search" && o.mix != "append" &&
      o.mix != "store")
    usage("--mix must be all, fetch_flags, fetch_body, search, append or store");
  if (o.users < 1 || o.clients < 1 || o.threads < 1 || o.messages < 1 || o.per_login < 1 ||
      o.connections < 1 || o.login_concurrency < 1)
    usage("counts must be positive");
  return o;
}

std::string user_name(const Options& o, int i) {
  std::string out;
  const std::string n = std::to_string(i + 1);
  for (size_t p = 0; p < o.user_format.size(); ++p) {
    if (o.user_format[p] == '%' && p + 1 < o.user_format.size() && o.user_format[p + 1] == 'd') {
      out += n;
      ++p;
    } else {
      out += o.user_format[p];
    }
  }
  return out;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Message i of the seed set: plain text, 1 KiB to ~24 KiB, CRLF line ends,
// a subject word the SEARCH step looks for on every seventh message.
std::string seed_message(int i) {
  std::string m;
  m += "From: Sender " + std::to_string(i) + " <sender" + std::to_string(i) + "@example.org>\r\n";
  m += "To: Bench User <user@bench.test>\r\n";
  m += "Subject: bench message " + std::to_string(i) + (i % 7 == 0 ? " quarterly report" : " hello") + "\r\n";
  m += "Date: Mon, 3 Nov 2025 10:00:" + std::to_string(10 + i % 50) + " +0000\r\n";
  m += "Message-ID: <bench-" + std::to_string(i) + "@example.org>\r\n";
  m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
  std::mt19937 rng(static_cast<unsigned>(i) * 7919u + 1u);
  const int lines = 14 + static_cast<int>(rng() % 320);
  static const char* words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                                "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"};
  for (int l = 0; l < lines; ++l) {
    std::string line;
    while (line.size() < 60) {
      line += words[rng() % 16];
      line += ' ';
    }
    m += line + "\r\n";
  }
  return m;
}

std::string appended_message(int client, long n) {
  return "From: Loader <loader@example.org>\r\nTo: user@bench.test\r\nSubject: appended " + std::to_string(client) +
         "/" + std::to_string(n) + "\r\nMessage-ID: <app-" + std::to_string(client) + "-" + std::to_string(n) +
         "@example.org>\r\n\r\nA short message appended by the load generator.\r\n";
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Statistics of one thread; merged at the end.
struct Stats {
  std::map<std::string, std::vector<uint32_t>> latency_us;  // per command
  std::map<std::string, long> errors;                       // "COMMAND: reply" -> count
  long body_mismatches = 0;
  long bytes_fetched = 0;
  long connections = 0;
  long all_commands = 0;  // including those outside the measured window

  void merge(const Stats& o) {
    for (auto& [k, v] : o.latency_us) latency_us[k].insert(latency_us[k].end(), v.begin(), v.end());
    for (auto& [k, v] : o.errors) errors[k] += v;
    body_mismatches += o.body_mismatches;
    bytes_fetched += o.bytes_fetched;
    connections += o.connections;
    all_commands += o.all_commands;
  }
};

struct Reply {
  std::string status;           // OK, NO, BAD, or BYE / EOF
  std::string text;             // the tagged line
  std::vector<std::string> literals;
  std::vector<std::string> untagged;  // untagged lines (without literals)
};

class ImapConnection {
 public:
  explicit ImapConnection(asio::any_io_executor ex) : sock_(ex) {}

  awaitable<void> connect(const tcp::endpoint& ep) {
    co_await sock_.async_connect(ep, asio::use_awaitable);
    sock_.set_option(tcp::no_delay(true));
    std::string greeting = co_await read_line();
    if (greeting.rfind("* OK", 0) != 0 && greeting.rfind("* PREAUTH", 0) != 0)
      throw std::runtime_error("greeting: " + greeting);
  }

  // Sends `cmd` (without tag and CRLF) and, when given, `literal` after the
  // server's continuation; reads to the tagged reply.
  awaitable<Reply> command(std::string_view cmd, const std::string* literal = nullptr) {
    std::string tag = "a" + std::to_string(++tag_counter_);
    std::string line = tag + " " + std::string(cmd);
    if (literal) line += " {" + std::to_string(literal->size()) + "}";
    line += "\r\n";
    co_await asio::async_write(sock_, asio::buffer(line), asio::use_awaitable);
    Reply r;
    if (literal) {
      for (;;) {
        std::string l = co_await read_line();
        if (l.rfind("+", 0) == 0) break;
        if (l.rfind(tag + " ", 0) == 0) {
          r.text = l;
          r.status = word_after_tag(l, tag);
          co_return r;
        }
        // untagged data before the continuation (EXISTS etc.)
      }
      std::string data = *literal + "\r\n";
      co_await asio::async_write(sock_, asio::buffer(data), asio::use_awaitable);
    }
    for (;;) {
      std::string l = co_await read_response_line(r.literals);
      if (l.rfind(tag + " ", 0) == 0) {
        r.text = l;
        r.status = word_after_tag(l, tag);
        co_return r;
      }
      if (l.rfind("* BYE", 0) == 0 && cmd != "LOGOUT") {
        r.status = "BYE";
        r.text = l;
        co_return r;
      }
      r.untagged.push_back(std::move(l));
    }
  }

  void close() {
    boost::system::error_code ec;
    sock_.close(ec);
  }

 private:
  static std::string word_after_tag(const std::string& l, const std::string& tag) {
    size_t s = tag.size() + 1;
    size_t e = l.find(' ', s);
    return l.substr(s, e == std::string::npos ? std::string::npos : e - s);
  }

  awaitable<void> fill() {
    if (start_ > 0 && start_ == buf_.size()) {
      buf_.clear();
      start_ = 0;
    } else if (start_ > 65536) {
      buf_.erase(0, start_);
      start_ = 0;
    }
    char tmp[65536];
    size_t n = co_await sock_.async_read_some(asio::buffer(tmp), asio::use_awaitable);
    buf_.append(tmp, n);
  }

  awaitable<std::string> read_line() {
    for (;;) {
      size_t p = buf_.find("\r\n", start_);
      if (p != std::string::npos) {
        std::string l = buf_.substr(start_, p - start_);
        start_ = p + 2;
        co_return l;
      }
      co_await fill();
    }
  }

  awaitable<std::string> read_bytes(size_t n) {
    while (buf_.size() - start_ < n) co_await fill();
    std::string out = buf_.substr(start_, n);
    start_ += n;
    co_return out;
  }

  // One response line; a line ending in a literal {n} / {n+} continues after
  // its n octets. Literal contents go to `literals`, the line keeps "{n}".
  awaitable<std::string> read_response_line(std::vector<std::string>& literals) {
    std::string line;
    for (;;) {
      std::string part = co_await read_line();
      line += part;
      if (part.empty() || part.back() != '}') co_return line;
      size_t open = part.rfind('{');
      if (open == std::string::npos) co_return line;
      std::string digits = part.substr(open + 1, part.size() - open - 2);
      if (!digits.empty() && digits.back() == '+') digits.pop_back();
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) co_return line;
      literals.push_back(co_await read_bytes(std::stoul(digits)));
    }
  }

  tcp::socket sock_;
  std::string buf_;
  size_t start_ = 0;
  unsigned long tag_counter_ = 0;
};

struct Shared {
  Options opt;
  tcp::endpoint ep;
  std::vector<std::string> seed;  // the seeded messages, index = sequence number - 1
  Clock::time_point measure_from;
  Clock::time_point stop_at;
  std::atomic<bool> stopping{false};
};

class Worker {
 public:
  Worker(Shared& sh, Stats& st) : sh_(sh), st_(st) {}

  // Runs one command and records its latency when inside the measured window.
  awaitable<Reply> run(ImapConnection& c, const std::string& name, std::string_view cmd,
                       const std::string* literal = nullptr) {
    auto t0 = Clock::now();
    Reply r = co_await c.command(cmd, literal);
    auto t1 = Clock::now();
    ++st_.all_commands;
    if (t0 >= sh_.measure_from && t1 <= sh_.stop_at) {
      st_.latency_us[name].push_back(
          static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
      if (r.status != "OK") st_.errors[name + ": " + r.text]++;
    } else if (r.status != "OK" && name != "LOGOUT") {
      st_.errors[name + " (outside window): " + r.text]++;
    }
    co_return r;
  }

  awaitable<void> load_client(int idx) {
    const Options& o = sh_.opt;
    std::mt19937 rng(static_cast<unsigned>(idx) * 104729u + 17u);
    const std::string user = user_name(o, idx % o.users);
    long appended = 0;
    while (Clock::now() < sh_.stop_at) {
      ImapConnection c(co_await asio::this_coro::executor);
      bool failed = false;
      try {
        co_await c.connect(sh_.ep);
        ++st_.connections;
        Reply r = co_await run(c, "LOGIN", "LOGIN " + quoted(user) + " " + quoted(o.password));
        if (r.status != "OK") throw std::runtime_error("LOGIN " + user + ": " + r.text);
        r = co_await run(c, "SELECT", "SELECT INBOX");
        if (r.status != "OK") throw std::runtime_error("SELECT: " + r.text);
        const int m = static_cast<int>(sh_.seed.size());
        // A single-command mix has one command per round instead of ~5.
        const int rounds = o.mix == "all" ? o.per_login : o.per_login * 5;
        for (int round = 0; round < rounds && Clock::now() < sh_.stop_at; ++round) {
          const std::string& mix = o.mix;
          if (mix == "all" || mix == "fetch_flags") co_await run(c, "FETCH_FLAGS", "FETCH 1:* (FLAGS)");
          if (mix == "all" || mix == "fetch_body") {
            const int seq = 1 + static_cast<int>(rng() % static_cast<unsigned>(m));
            r = co_await run(c, "FETCH_BODY", "FETCH " + std::to_string(seq) + " (BODY.PEEK[])");
            if (r.status == "OK") {
              if (r.literals.size() != 1 || r.literals[0] != sh_.seed[static_cast<size_t>(seq - 1)]) {
                if (Clock::now() <= sh_.stop_at) ++st_.body_mismatches;
              } else {
                st_.bytes_fetched += static_cast<long>(r.literals[0].size());
              }
            }
          }
          if (mix == "all" || mix == "search") {
            if (round % 2 == 0)
              co_await run(c, "SEARCH_UNSEEN", "SEARCH UNSEEN");
            else
              co_await run(c, "SEARCH_SUBJECT", "SEARCH SUBJECT \"quarterly report\"");
          }
          if (mix == "all" || mix == "append") {
            std::string msg = appended_message(idx, appended++);
            co_await run(c, "APPEND", "APPEND INBOX (\\Deleted)", &msg);
          }
          if (mix == "all" || mix == "store") {
            const int sseq = 1 + static_cast<int>(rng() % static_cast<unsigned>(m));
            co_await run(c, "STORE",
                         "STORE " + std::to_string(sseq) + (round % 2 == 0 ? " +FLAGS" : " -FLAGS") + " (\\Seen)");
          }
          if (round % 10 == 9 && (mix == "all" || mix == "append")) co_await run(c, "EXPUNGE", "EXPUNGE");
        }
        co_await run(c, "EXPUNGE", "EXPUNGE");
        co_await run(c, "LOGOUT", "LOGOUT");
      } catch (const std::exception& e) {
        st_.errors[std::string("connection: ") + e.what()]++;
        failed = true;
      }
      c.close();
      if (failed) {
        // Do not spin on a refusing server.
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
        co_await t.async_wait(asio::use_awaitable);
      }
    }
  }

 private:
  Shared& sh_;
  Stats& st_;
};

std::vector<std::string> make_seed(int m) {
  std::vector<std::string> v;
  for (int i = 0; i < m; ++i) v.push_back(seed_message(i));
  return v;
}

tcp::endpoint endpoint(const Options& o) {
  return tcp::endpoint(asio::ip::make_address(o.host), o.port);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += c;
    }
  }
  return out;
}

int do_seed(const Options& o) {
  asio::io_context io;
  std::vector<std::string> seed = make_seed(o.messages);
  std::string failure;
  // A few users at a time; each user's messages go in order (sequence n = message n-1).
  auto next = std::make_shared<std::atomic<int>>(0);
  for (int w = 0; w < std::min(o.users, 8); ++w) {
    asio::co_spawn(
        io,
        [&, next]() -> awaitable<void> {
          for (int u = (*next)++; u < o.users; u = (*next)++) {
            ImapConnection c(co_await asio::this_coro::executor);
            co_await c.connect(endpoint(o));
            std::string user = user_name(o, u);
            Reply r = co_await c.command("LOGIN " + quoted(user) + " " + quoted(o.password));
            if (r.status != "OK") throw std::runtime_error("LOGIN " + user + ": " + r.text);
            r = co_await c.command("SELECT INBOX");
            if (r.status != "OK") throw std::runtime_error("SELECT " + user + ": " + r.text);
            for (const auto& l : r.untagged)
              if (l.size() > 2 && l.find(" EXISTS") != std::string::npos && l != "* 0 EXISTS")
                throw std::runtime_error(user + "'s INBOX is not empty: " + l);
            for (const auto& m : seed) {
              r = co_await c.command("APPEND INBOX ()", &m);
              if (r.status != "OK") throw std::runtime_error("APPEND " + user + ": " + r.text);
            }
            co_await c.command("LOGOUT");
            c.close();
          }
        },
        [&](std::exception_ptr e) {
          if (!e) return;
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            if (failure.empty()) failure = x.what();
          }
          io.stop();
        });
  }
  io.run();
  if (!failure.empty()) {
    std::cerr << "bench_imap seed: " << failure << "\n";
    return 1;
  }
  std::cout << "{\"seeded_users\": " << o.users << ", \"messages_per_user\": " << o.messages << "}\n";
  return 0;
}

int do_load(const Options& o) {
  Shared sh;
  sh.opt = o;
  sh.ep = endpoint(o);
  sh.seed = make_seed(o.messages);
  const auto start = Clock::now();
  sh.measure_from = start + std::chrono::milliseconds(static_cast<long>(o.warmup * 1000));
  sh.stop_at = sh.measure_from + std::chrono::milliseconds(static_cast<long>(o.duration * 1000));
  const double cpu0 = cpu_seconds();

  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<Stats> stats(static_cast<size_t>(o.threads));
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < o.threads; ++t) {
    ios.push_back(std::make_unique<asio::io_context>(1));
    workers.push_back(std::make_unique<Worker>(sh, stats[static_cast<size_t>(t)]));
  }
  for (int i = 0; i < o.clients; ++i) {
    const size_t t = static_cast<size_t>(i % o.threads);
    asio::co_spawn(*ios[t], workers[t]->load_client(i), [&, t](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        stats[t].errors[std::string("client: ") + x.what()]++;
      }
    });
  }
  std::vector<std::thread> threads;
  for (auto& io : ios) threads.emplace_back([&io] { io->run(); });
  for (auto& th : threads) th.join();
  const double cpu = cpu_seconds() - cpu0;
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();

  Stats all;
  for (auto& s : stats) all.merge(s);
  long ops = 0, errors = 0;
  for (auto& [k, v] : all.latency_us) ops += static_cast<long>(v.size());
  for (auto& [k, v] : all.errors) errors += v;
  std::cout << "{\"clients\": " << o.clients << ", \"users\": " << o.users << ", \"threads\": " << o.threads
            << ", \"mix\": \"" << o.mix << "\", \"duration_s\": " << o.duration << ", \"commands\": " << ops
            << ", \"all_commands\": " << all.all_commands
            << ", \"commands_per_s\": " << static_cast<double>(ops) / o.duration << ", \"errors\": " << errors
            << ", \"body_mismatches\": " << all.body_mismatches
            << ", \"fetched_mib_per_s\": " << static_cast<double>(all.bytes_fetched) / o.duration / 1048576.0
            << ", \"connections\": " << all.connections << ", \"generator_cpu_s\": " << cpu
            << ", \"generator_wall_s\": " << wall << ", \"per_command\": {";
  bool first = true;
  for (auto& [k, v] : all.latency_us) {
    std::sort(v.begin(), v.end());
    auto pct = [&v](double p) { return v.empty() ? 0u : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
    std::cout << (first ? "" : ", ") << "\"" << k << "\": {\"count\": " << v.size() << ", \"p50_us\": " << pct(0.5)
              << ", \"p99_us\": " << pct(0.99) << "}";
    first = false;
  }
  std::cout << "}, \"error_samples\": {";
  first = true;
  for (auto& [k, v] : all.errors) {
    std::cout << (first ? "" : ", ") << "\"" << json_escape(k.substr(0, 300)) << "\": " << v;
    first = false;
  }
  std::cout << "}}\n";
  return errors == 0 && all.body_mismatches == 0 ? 0 : 1;
}

int do_idle(const Options& o) {
  asio::io_context io;
  std::vector<std::unique_ptr<ImapConnection>> conns;
  std::string failure;
  int ready = 0;
  auto next = std::make_shared<std::atomic<int>>(0);
  for (int w = 0; w < std::min(o.connections, o.login_concurrency); ++w) {
    asio::co_spawn(
        io,
        [&, next]() -> awaitable<void> {
          for (int i = (*next)++; i < o.connections; i = (*next)++) {
            auto c = std::make_unique<ImapConnection>(co_await asio::this_coro::executor);
            co_await c->connect(endpoint(o));
            std::string user = user_name(o, i % o.users);
            Reply r = co_await c->command("LOGIN " + quoted(user) + " " + quoted(o.password));
            if (r.status != "OK") throw std::runtime_error("LOGIN " + user + " (#" + std::to_string(i) + "): " + r.text);
            r = co_await c->command("SELECT INBOX");
            if (r.status != "OK") throw std::runtime_error("SELECT: " + r.text);
            conns.push_back(std::move(c));
            ++ready;
          }
        },
        [&](std::exception_ptr e) {
          if (!e) return;
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            if (failure.empty()) failure = x.what();
          }
          io.stop();
        });
  }
  io.run();
  if (!failure.empty()) {
    std::cout << "FAILED " << ready << " " << failure << std::endl;
    return 1;
  }
  std::cout << "READY " << ready << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  io.restart();
  for (auto& c : conns)
    asio::co_spawn(io, [&c]() -> awaitable<void> { co_await c->command("LOGOUT"); c->close(); }, asio::detached);
  io.run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  try {
    if (o.mode == "seed") return do_seed(o);
    if (o.mode == "load") return do_load(o);
    return do_idle(o);
  } catch (const std::exception& e) {
    std::cerr << "bench_imap: " << e.what() << "\n";
    return 1;
  }
}
