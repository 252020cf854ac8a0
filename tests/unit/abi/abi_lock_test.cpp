// Guards the ABI: the header may only change together with a version bump
// (sdk/abi-lock.txt records the SHA-256 of postern_abi.h per version), and
// v1.0's layout may never change (minor versions only append).
#include "tests/unit/abi/abi_lock.hpp"

#include <postern/abi/v1/postern_abi.h>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using postern::testing::abi_lock::sha256_hex;
using postern::testing::abi_lock::slurp;

TEST(AbiLockTest, HeaderChangesOnlyWithAVersionBump) {
  const std::string header = slurp(std::string(POSTERN_SOURCE_DIR) + "/sdk/include/postern/abi/v1/postern_abi.h");
  ASSERT_FALSE(header.empty());
  const std::string version =
      std::to_string(POSTERN_ABI_VERSION_MAJOR) + "." + std::to_string(POSTERN_ABI_VERSION_MINOR);
  const std::string hash = sha256_hex(header);
  std::istringstream lock(slurp(std::string(POSTERN_SOURCE_DIR) + "/sdk/abi-lock.txt"));
  std::string line;
  bool found = false;
  while (std::getline(lock, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string v, h;
    fields >> v >> h;
    if (v == version) {
      found = true;
      EXPECT_EQ(h, hash) << "postern_abi.h changed but POSTERN_ABI_VERSION is still " << version
                         << ". Append-only changes: bump the minor version; anything else: a new major "
                            "(abi/v2). Then add '"
                         << "<version> " << hash << "' to sdk/abi-lock.txt (docs/abi-policy.md).";
    }
  }
  EXPECT_TRUE(found) << "sdk/abi-lock.txt has no entry for ABI " << version << "; add: " << version << " " << hash;
}

// The v1.0 layout, frozen. A minor version may append members after these.
TEST(AbiLockTest, Version10LayoutIsFrozen) {
  EXPECT_EQ(sizeof(postern_str_t), 16u);
  EXPECT_EQ(offsetof(postern_hook_result_t, verdict), 8u);
  EXPECT_EQ(offsetof(postern_hook_result_t, text), 32u);
  EXPECT_EQ(offsetof(postern_plugin_v1_t, name), 16u);
  EXPECT_EQ(offsetof(postern_plugin_v1_t, on_init), 32u);
  EXPECT_EQ(offsetof(postern_plugin_v1_t, on_destroy), 48u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, subscribe), 16u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, dns_query), 16u + 14 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_defer), 16u + 26 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, message_part_body), 16u + 37 * 8u);
  EXPECT_EQ(offsetof(postern_mime_part_t, raw_length), 120u);
  EXPECT_EQ(offsetof(postern_dns_answer_t, record_count), 40u);
  EXPECT_EQ(POSTERN_STAGE_COUNT_V1_0, 15);
  EXPECT_EQ(POSTERN_PROP_COUNT_V1_0, 15);
  EXPECT_EQ(POSTERN_VERDICT_PENDING, 6);
}

// v1.1 appended four host functions after message_part_body; nothing before moved.
TEST(AbiLockTest, Version11MembersAreAppended) {
  EXPECT_EQ(offsetof(postern_host_api_v1_t, message_part_body), 16u + 37 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, cron_add), 16u + 38 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, cron_cancel), 16u + 39 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_tag_set), 16u + 40 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_tag_get), 16u + 41 * 8u);
  EXPECT_STREQ(POSTERN_TAG_WHITELISTED, "postern.whitelisted");
  EXPECT_GE(POSTERN_ABI_VERSION_MINOR, 1);
}

// v1.2 appended the service, directory and mailbox functions after
// event_tag_get, new status codes after POSTERN_ERR_FAILED, and new types.
TEST(AbiLockTest, Version13MembersAreAppended) {
  // Four 1.3 blocks, in this order, after view_release (the last 1.2 member).
  EXPECT_EQ(offsetof(postern_host_api_v1_t, command_register), 16u + 78 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, command_complete), 16u + 79 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, pending_header_add), 16u + 80 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, pending_rcpt_remove), 16u + 84 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, mbox_events_subscribe), 16u + 85 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, mbox_events_unsubscribe), 16u + 86 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, stream_connect), 16u + 87 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, stream_connect_cancel), 16u + 88 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, inject), 16u + 89 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_mail_from_set), 16u + 90 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_body_replace), 16u + 91 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, pending_mail_from_set), 16u + 92 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, pending_body_replace), 16u + 93 * 8u);
  EXPECT_EQ(sizeof(postern_host_api_v1_t), 16u + 94 * 8u);
}

// The 1.3 contract fix: the enum parameters a plugin passes became uint32_t
// without moving anything, and each enum is still the size of that integer,
// so a plugin built with the enum-typed 1.0-1.2 headers passes the same bits.
TEST(AbiLockTest, EnumParametersAreFixedWidthIntegersOfTheSameSize) {
  EXPECT_EQ(sizeof(postern_stage_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_verdict_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_log_level_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_dns_type_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_property_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_stream_prop_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_flag_op_t), sizeof(uint32_t));
  EXPECT_EQ(sizeof(postern_expunge_mode_t), sizeof(uint32_t));
  postern_host_api_v1_t api{};
  // The members take integers now: these assignments only compile with those types.
  postern_status_t (*subscribe)(postern_host_t*, uint32_t) = api.subscribe;
  void (*log)(postern_host_t*, uint32_t, postern_str_t) = api.log;
  postern_status_t (*event_get)(postern_event_t*, uint32_t, postern_str_t*) = api.event_get;
  postern_status_t (*stream_get)(postern_stream_t*, uint32_t, postern_str_t*) = api.stream_get;
  EXPECT_EQ(subscribe, nullptr);
  EXPECT_EQ(log, nullptr);
  EXPECT_EQ(event_get, nullptr);
  EXPECT_EQ(stream_get, nullptr);
}

TEST(AbiLockTest, Version12MembersAreAppended) {
  EXPECT_EQ(offsetof(postern_host_api_v1_t, event_tag_get), 16u + 41 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, service_register), 16u + 42 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, stream_get), 16u + 53 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, last_error), 16u + 54 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, mbox_open), 16u + 57 * 8u);
  EXPECT_EQ(offsetof(postern_host_api_v1_t, view_release), 16u + 77 * 8u);
  EXPECT_GE(sizeof(postern_host_api_v1_t), 16u + 78 * 8u);  // 1.3 appends after view_release
  EXPECT_EQ(POSTERN_ERR_FAILED, 4);
  EXPECT_EQ(POSTERN_ERR_TEMPORARY, 10);
  EXPECT_EQ(offsetof(postern_service_v1_t, on_close), 40u);
  EXPECT_EQ(sizeof(postern_service_v1_t), 48u);
  EXPECT_EQ(offsetof(postern_mresult_t, uid), 120u);
  EXPECT_GE(POSTERN_ABI_VERSION_MINOR, 2);
}

}  // namespace
