// Minor versions only append (docs/abi-policy.md): a filter compiled against
// the ABI 1.0 header and one compiled against the 1.2 header, both exactly as
// released (tests/abi/compat/v1_*, their SHA-256 checked against
// sdk/abi-lock.txt here), load in today's host and work: a reply from a
// synchronous hook, a header edit, a deferred completion from a thread, and
// (1.2) a session tag.
#include "core/event/chain.hpp"
#include "tests/unit/event/run_chain.hpp"
#include "core/plugin/loader.hpp"
#include "tests/unit/abi/abi_lock.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <postern/abi/v1/postern_abi.h>
#include <pugixml.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace postern::core::plugin {
namespace {

using namespace std::chrono_literals;

std::string slurp(const std::filesystem::path& p) { return ::postern::testing::abi_lock::slurp(p.string()); }
using ::postern::testing::abi_lock::sha256_hex;

class AbiCompatTest : public ::testing::TestWithParam<int> {
 protected:
  std::string name() const { return "compat1" + std::to_string(GetParam()); }

  void SetUp() override {
    ASSERT_TRUE(doc_.load_string("<plugin/>"));
    LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name() + ".so");
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name() + ".plugin.xml");
    r.name = name();
    r.config = doc_.document_element();
    auto loaded = LoadedPlugin::load(r, HostServices{});
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) << std::get<std::string>(loaded);
    chain_->add(std::move(std::get<0>(loaded)), 2s, event::OnFailure::TempFail);
    session_.peer_ip = "192.0.2.7";
    txn_.mail_from = "alice@example.org";
    txn_.queue_id = "Q1";
    ev_.session = &session_;
    ev_.transaction = &txn_;
  }

  event::Outcome run(event::Stage stage) { return event::testing::run_chain(chain_, stage, ev_); }

  pugi::xml_document doc_;
  std::shared_ptr<event::Chain> chain_ = std::make_shared<event::Chain>();
  event::SessionInfo session_;
  event::Transaction txn_;
  event::EventData ev_;
};

TEST_P(AbiCompatTest, OldHeaderIsTheOneRecordedInTheLock) {
  const std::string version = "1." + std::to_string(GetParam());
  const std::string hash = sha256_hex(slurp(std::filesystem::path(POSTERN_SOURCE_DIR) / "tests/abi/compat" /
                                            ("v1_" + std::to_string(GetParam())) / "postern/abi/v1/postern_abi.h"));
  std::istringstream lock(slurp(std::filesystem::path(POSTERN_SOURCE_DIR) / "sdk/abi-lock.txt"));
  bool found = false;
  for (std::string line; std::getline(lock, line);) {
    if (line.rfind(version + " ", 0) == 0) {
      found = true;
      EXPECT_EQ(line.substr(version.size() + 1), hash) << "tests/abi/compat/v1_" << GetParam()
                                                       << " is not the released ABI " << version << " header";
    }
  }
  EXPECT_TRUE(found) << version;
  EXPECT_GT(POSTERN_ABI_VERSION_MINOR, GetParam());  // today's host is newer than the plugin
}

TEST_P(AbiCompatTest, SynchronousReplyFromAnOldPlugin) {
  ev_.current_rcpt = "blocked@example.net";
  const event::Outcome o = run(event::Stage::RcptTo);
  EXPECT_EQ(o.verdict, event::Verdict::Reject);
  EXPECT_EQ(o.code, 550);
  EXPECT_EQ(o.text, "compat " + name() + " built for ABI 1." + std::to_string(GetParam()) + ", host 1." +
                        std::to_string(POSTERN_ABI_VERSION_MINOR));
  ev_.current_rcpt = "bob@example.net";
  EXPECT_EQ(run(event::Stage::RcptTo).verdict, event::Verdict::Continue);
  // Session tags exist from 1.1: the 1.2 build sets one, the 1.0 build cannot.
  if (GetParam() >= 1) EXPECT_EQ(session_.tags.at("compat.seen"), name());
  else EXPECT_FALSE(session_.tags.contains("compat.seen"));
}

TEST_P(AbiCompatTest, HeaderEditAndDeferredCompletionFromAnOldPlugin) {
  EXPECT_EQ(run(event::Stage::DataEnd).verdict, event::Verdict::Continue);
  ASSERT_EQ(txn_.header_edits.size(), 1u);
  EXPECT_EQ(txn_.header_edits[0].name, "X-Compat");
  EXPECT_EQ(txn_.header_edits[0].value, name());
  ASSERT_EQ(txn_.symbols.size(), 1u);
  EXPECT_EQ(txn_.symbols[0].name, "COMPAT_LATE");
  EXPECT_DOUBLE_EQ(txn_.score, 0.25);
}

INSTANTIATE_TEST_SUITE_P(Abi, AbiCompatTest, ::testing::Values(0, 2),
                         [](const ::testing::TestParamInfo<int>& i) { return "Built1_" + std::to_string(i.param); });

}  // namespace
}  // namespace postern::core::plugin
