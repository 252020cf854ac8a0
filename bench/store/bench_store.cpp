// bench_store: measures the mailbox store (core/mailstore) as posternd uses it,
// with fsync as in production. Usage and numbers: bench/store/README.md.
//
//   bench_store one    DIR [messages] [threads]   deliveries into one mailbox
//   bench_store many   DIR [mailboxes] [rounds] [threads]
//                                                   deliveries spread over many mailboxes
//   bench_store build  DIR [messages]             a folder of N messages (once; files then recovery)
//   bench_store open   DIR                        cold open + snapshot of that folder
//
// Each prints one line "name=value ..." per measurement and the peak RSS.

#include "core/log/log.hpp"
#include "core/mailstore/mailstore.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using postern::core::mailstore::DeliverResult;
using postern::core::mailstore::MailStore;
using Clock = std::chrono::steady_clock;

namespace {

// A 4 KB message, typical of plain mail.
std::string sample_message(size_t n) {
  std::string m = fmt::format(
      "Return-Path: <sender@example.org>\r\nReceived: from client.example.org ([192.0.2.7]) by mx.example.net "
      "with ESMTPS id {}\r\nFrom: Sender <sender@example.org>\r\nTo: rcpt@example.net\r\nSubject: benchmark "
      "message {}\r\nMessage-ID: <{}@example.org>\r\nDate: Sun, 22 Nov 2026 14:00:00 +0000\r\n\r\n",
      n, n, n);
  while (m.size() < 4096) m += "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
  return m;
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t arg(int argc, char** argv, int i, size_t fallback) {
  return argc > i ? static_cast<size_t>(std::stoull(argv[i])) : fallback;
}

// Delivers `total` messages with `threads` workers; account(i) names the mailbox of message i.
template <class AccountFn>
double deliver_all(MailStore& store, size_t total, size_t threads, AccountFn account) {
  std::atomic<size_t> next{0};
  std::atomic<size_t> failed{0};
  auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (size_t w = 0; w < threads; ++w)
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < total;) {
        auto r = store.deliver(account(i), sample_message(i), 0);
        if (r.status != DeliverResult::Status::Ok) {
          if (failed.fetch_add(1) == 0) std::fprintf(stderr, "delivery failed: %s\n", r.detail.c_str());
        }
      }
    });
  for (auto& t : pool) t.join();
  double s = seconds_since(t0);
  if (failed) std::fprintf(stderr, "%zu deliveries failed\n", failed.load());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_store one|many|build|open DIR [args] (see bench/store/README.md)\n");
    return 2;
  }
  postern::core::log::configure(postern::core::log::Level::Warn, {}, true);
  const std::string mode = argv[1];
  const fs::path dir = argv[2];
  fs::create_directories(dir);

  if (mode == "one") {
    size_t n = arg(argc, argv, 3, 2000), threads = arg(argc, argv, 4, 4);
    MailStore store({.root = (dir / "one").string()});
    store.deliver("warmup@example.net", sample_message(0), 0);  // account created outside the timing
    double s = deliver_all(store, n, threads, [](size_t) { return std::string("warmup@example.net"); });
    fmt::print("one_mailbox messages={} threads={} seconds={:.2f} deliveries_per_s={:.0f} peak_rss_kb={}\n", n,
               threads, s, n / s, peak_rss_kb());
    return 0;
  }
  if (mode == "many") {
    size_t boxes = arg(argc, argv, 3, 1000), rounds = arg(argc, argv, 4, 2), threads = arg(argc, argv, 5, 4);
    MailStore store({.root = (dir / "many").string()});
    auto name = [boxes](size_t i) { return fmt::format("user{:04}@example.net", i % boxes); };
    double first = deliver_all(store, boxes, threads, name);  // creates every mailbox
    fmt::print("many_first mailboxes={} threads={} seconds={:.2f} deliveries_per_s={:.0f} (includes creating each "
               "mailbox)\n",
               boxes, threads, first, boxes / first);
    double s = deliver_all(store, boxes * rounds, threads, name);
    fmt::print("many_mailboxes mailboxes={} messages={} threads={} seconds={:.2f} deliveries_per_s={:.0f} "
               "peak_rss_kb={}\n",
               boxes, boxes * rounds, threads, s, boxes * rounds / s, peak_rss_kb());
    return 0;
  }
  if (mode == "build") {
    // 100,000 deliveries with three fsyncs each would take an hour; instead
    // write the files into INBOX/cur and let recovery index them — the same
    // rows and files the deliveries would have made (flags aside).
    size_t n = arg(argc, argv, 3, 100000);
    const fs::path root = dir / "big";
    fs::remove_all(root);
    {
      MailStore store({.root = root.string()});
      auto acc = store.open_account("big@example.net");
      if (!acc) return 1;
      auto inbox = (*acc)->folder_status("INBOX");
      (void)inbox;
    }
    fs::path cur;
    for (const auto& e : fs::directory_iterator(root / "example.net" / "big" / "folders")) {
      // INBOX is the first folder made: the lowest id.
      if (cur.empty() || std::stoll(e.path().filename().string()) < std::stoll(cur.parent_path().filename().string()))
        cur = e.path() / "cur";
    }
    auto t0 = Clock::now();
    for (size_t i = 0; i < n; ++i) {
      std::ofstream out(cur / fmt::format("{}.M{}P1Q{}.bench", 1700000000 + i, i % 1000000, i), std::ios::binary);
      out << sample_message(i);
    }
    double write_s = seconds_since(t0);
    t0 = Clock::now();
    MailStore store({.root = root.string()});
    postern::core::log::set_level(postern::core::log::Level::Warn);
    auto acc = store.open_account("big@example.net", false);
    if (!acc) return 1;
    double index_s = seconds_since(t0);
    auto st = (*acc)->folder_status("INBOX");
    fmt::print("build messages={} files_seconds={:.1f} recovery_index_seconds={:.1f} usage_bytes={}\n", st->messages,
               write_s, index_s, (*acc)->usage_bytes());
    return 0;
  }
  if (mode == "open") {
    const fs::path root = dir / "big";
    auto t0 = Clock::now();
    MailStore store({.root = root.string()});
    auto acc = store.open_account("big@example.net", false);
    if (!acc) return 1;
    double open_s = seconds_since(t0);  // includes the recovery scan (first open in a process)
    t0 = Clock::now();
    auto view = (*acc)->open_folder("INBOX");
    double snap_s = seconds_since(t0);
    t0 = Clock::now();
    auto again = (*acc)->open_folder("INBOX");
    double snap2_s = seconds_since(t0);
    t0 = Clock::now();
    auto up = (*view)->refresh();
    double refresh_s = seconds_since(t0);
    t0 = Clock::now();
    auto st = (*acc)->folder_status("INBOX");
    double status_s = seconds_since(t0);
    t0 = Clock::now();
    (*acc)->store_flags("INBOX", {(*view)->messages().back().uid}, postern::core::mailstore::FlagOp::Add,
                        postern::core::mailstore::kSeen, {});
    (*view)->refresh();
    double flag_refresh_s = seconds_since(t0);
    fmt::print(
        "open messages={} account_open_with_recovery_ms={:.0f} snapshot_ms={:.0f} snapshot_warm_ms={:.0f} "
        "refresh_nochange_ms={:.2f} status_ms={:.1f} store_flag_and_refresh_ms={:.1f} peak_rss_kb={}\n",
        (*view)->messages().size(), open_s * 1000, snap_s * 1000, snap2_s * 1000, refresh_s * 1000,
        status_s * 1000, flag_refresh_s * 1000, peak_rss_kb());
    (void)st;
    (void)up;
    return 0;
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
