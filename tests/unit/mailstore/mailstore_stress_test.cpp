// Concurrency and crash tests of the mailbox store: deliveries while readers
// list, refresh and expunge; a delivering child killed with SIGKILL at random
// moments, then recovery and a consistency check.

#include "core/mailstore/mailstore.hpp"
#include "tests/unit/temp_dir.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

namespace fs = std::filesystem;
using namespace postern::core::mailstore;

namespace {

using postern::testing::TempDir;

std::string message_with_id(std::string_view id) {
  return fmt::format("From: a@example.org\r\nSubject: {}\r\nX-Id: {}\r\n\r\nbody of {}\r\n", id, id, id);
}

// The X-Id of a stored message.
std::string id_of(const std::string& data) {
  auto p = data.find("X-Id: ");
  if (p == std::string::npos) return {};
  auto e = data.find("\r\n", p);
  return data.substr(p + 6, e - p - 6);
}

// Every message of INBOX by id, checking that index and files agree.
std::multiset<std::string> inbox_ids(AccountStore& acc) {
  std::multiset<std::string> out;
  auto v = acc.open_folder("INBOX");
  EXPECT_TRUE(v.ok());
  if (!v.ok()) return out;
  uint32_t last = 0;
  for (const auto& m : (*v)->messages()) {
    EXPECT_GT(m.uid, last);
    last = m.uid;
    auto data = acc.read_message("INBOX", m.uid);
    EXPECT_TRUE(data.ok()) << "uid " << m.uid << ": " << (data.ok() ? "" : data.error().detail);
    if (!data.ok()) continue;
    EXPECT_EQ(data->size(), m.size);
    out.insert(id_of(*data));
  }
  return out;
}

}  // namespace

TEST(MailStoreConcurrencyTest, DeliveriesWhileReadersListRefreshAndExpungeLoseNothing) {
  TempDir t;
  MailStore store({.root = t.path.string()});
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 60;
  std::atomic<int> writers_left{kWriters};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        auto r = store.deliver("bob@example.net", message_with_id(fmt::format("w{}-{}", w, i)), 0);
        if (r.status != DeliverResult::Status::Ok) ++failures;
      }
      --writers_left;
    });
  }
  // The expunger: reads every other message it sees, then expunges it.
  std::set<std::string> expunged_ids;
  std::atomic<int> reader_errors{0};
  std::thread expunger([&] {
    auto acc = store.open_account("bob@example.net");
    if (!acc) {
      ++reader_errors;
      return;
    }
    for (int round = 0;; ++round) {
      bool last = writers_left.load() == 0;
      auto v = (*acc)->open_folder("INBOX");
      if (!v) {
        ++reader_errors;
        return;
      }
      std::map<uint32_t, std::string> picked;
      for (size_t i = round % 2; i < (*v)->messages().size(); i += 2) {
        uint32_t uid = (*v)->messages()[i].uid;
        auto data = (*acc)->read_message("INBOX", uid);
        if (!data) {
          ++reader_errors;
          continue;
        }
        picked[uid] = id_of(*data);
      }
      std::vector<uint32_t> uids;
      for (const auto& [uid, id] : picked) uids.push_back(uid);
      auto removed = (*acc)->expunge("INBOX", uids, false);
      if (!removed) ++reader_errors;
      else
        for (uint32_t uid : *removed) expunged_ids.insert(picked[uid]);
      if (last) return;
    }
  });
  // A session holding the folder open (POP3/IMAP style): its view must stay
  // duplicate-free and ascending while everything else happens.
  std::atomic<int> view_errors{0};
  std::atomic<bool> done{false};
  std::thread holder([&] {
    auto acc = store.open_account("bob@example.net");
    auto v = (*acc)->open_folder("INBOX");
    if (!v) {
      ++view_errors;
      return;
    }
    std::set<uint32_t> ever_seen;  // a UID, once gone from the view, never comes back
    while (!done.load()) {
      auto up = (*v)->refresh();
      if (!up || up->gone) ++view_errors;
      uint32_t last = 0;
      for (const auto& m : (*v)->messages()) {
        if (m.uid <= last) ++view_errors;
        last = m.uid;
      }
      if (up)
        for (const auto& m : up->added)
          if (!ever_seen.insert(m.uid).second) ++view_errors;
      if (!(*acc)->list_folders()) ++view_errors;
    }
    // Once everything stopped, the refreshed view equals a fresh snapshot.
    (*v)->refresh();
    auto fresh = (*acc)->open_folder("INBOX");
    std::vector<uint32_t> a, b;
    for (const auto& m : (*v)->messages()) a.push_back(m.uid);
    for (const auto& m : (*fresh)->messages()) b.push_back(m.uid);
    if (a != b) ++view_errors;
  });
  for (auto& th : threads) th.join();
  expunger.join();
  done = true;
  holder.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(reader_errors.load(), 0);
  EXPECT_EQ(view_errors.load(), 0);

  auto acc = *store.open_account("bob@example.net");
  auto present = inbox_ids(*acc);
  for (const auto& id : present) EXPECT_EQ(present.count(id), 1u) << "duplicate " << id;
  for (const auto& id : expunged_ids) EXPECT_EQ(present.count(id), 0u) << "expunged yet present " << id;
  for (int w = 0; w < kWriters; ++w)
    for (int i = 0; i < kPerWriter; ++i) {
      auto id = fmt::format("w{}-{}", w, i);
      EXPECT_TRUE(present.count(id) + expunged_ids.count(id) == 1) << "lost " << id << " present=" << present.count(id) << " expunged=" << expunged_ids.count(id);
    }
  EXPECT_GT(expunged_ids.size(), 0u);
  uint64_t sum = 0;
  auto v = acc->open_folder("INBOX");
  for (const auto& m : (*v)->messages()) sum += m.size;
  EXPECT_EQ(acc->usage_bytes(), sum);
  EXPECT_EQ(store.usage_bytes("bob@example.net"), sum);
}

TEST(MailStoreCrashTest, KilledDeliveriesRecoverWithoutLossOrDuplicate) {
  TempDir t;
  std::mt19937 rng(std::random_device{}());
  std::set<std::string> reported;
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      // Two delivering threads; each reports an id only after deliver() returned Ok.
      MailStore store({.root = t.path.string()});
      std::vector<std::thread> th;
      for (int w = 0; w < 2; ++w)
        th.emplace_back([&, w] {
          for (int i = 0;; ++i) {
            auto id = fmt::format("r{}-w{}-{:06}", round, w, i);
            auto r = store.deliver("crash@example.net", message_with_id(id), 0);
            if (r.status != DeliverResult::Status::Ok) continue;
            auto line = id + "\n";
            if (::write(fds[1], line.data(), line.size()) < 0) ::_exit(3);
          }
        });
      for (auto& x : th) x.join();
      ::_exit(0);
    }
    ::close(fds[1]);
    // Wait for the first reported delivery (the machine may be slow), then kill at a random moment.
    std::string all;
    char buf[4096];
    while (all.find('\n') == std::string::npos) {
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      all.append(buf, static_cast<size_t>(n));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) all.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    size_t round_reported = 0;
    for (size_t p = 0, e; (e = all.find('\n', p)) != std::string::npos; p = e + 1) {
      reported.insert(all.substr(p, e - p));
      ++round_reported;
    }

    // Reopen (recovery) and check.
    MailStore store({.root = t.path.string()});
    auto acc = store.open_account("crash@example.net");
    ASSERT_TRUE(acc.ok()) << acc.error().detail;
    auto present = inbox_ids(**acc);
    for (const auto& id : present) EXPECT_EQ(present.count(id), 1u) << "duplicate " << id;
    for (const auto& id : reported) EXPECT_EQ(present.count(id), 1u) << "reported delivered but missing " << id;
    // At most one unreported delivery per thread (committed, killed before it reported).
    EXPECT_LE(present.size(), reported.size() + 2 * (round + 1));
    // Index and files agree: every file in cur/ has a row (checked through a
    // second recovery that must find nothing to index), usage equals the rows.
    size_t rows = present.size();
    uint64_t sum = 0;
    auto v = (*acc)->open_folder("INBOX");
    for (const auto& m : (*v)->messages()) sum += m.size;
    EXPECT_EQ((*acc)->usage_bytes(), sum);
    size_t files = 0;
    for (const auto& e : fs::recursive_directory_iterator((*acc)->directory() / "folders"))
      if (e.is_regular_file() && e.path().parent_path().filename() == "cur") ++files;
    EXPECT_EQ(files, rows);
    EXPECT_GT(round_reported, 0u) << "the child delivered nothing before it was killed";
  }
}
