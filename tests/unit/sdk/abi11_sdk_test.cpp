// ABI 1.1 in the C++ SDK and FakeHost: cron jobs and session tags, and the
// wrapper's behaviour on a 1.0 host (a table that ends before the new members).
#include <postern/sdk/sdk.hpp>
#include <postern/sdk/testing/fake_host.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>

namespace postern::sdk {
namespace {

using testing::FakeHost;

class CronAndTags {
 public:
  static constexpr const char* kName = "cron_and_tags";
  static constexpr const char* kVersion = "1.0.0";
  static inline std::atomic<int> runs{0};

  Status init(InitContext& ctx) {
    host_.emplace(ctx.host());
    if (auto expr = ctx.config().attr("cron")) {
      id_ = ctx.host().cron_add("count", *expr, [] { ++runs; });
      if (id_ == 0) return Status::error("cron refused");
    }
    ctx.on_connect([](Event& ev) {
      if (ev.peer_ip().starts_with("10.")) ev.set_tag(kTagWhitelisted, "1");
      return HookResult{};
    });
    ctx.on_rcpt_to([this](Event& ev) {
      if (ev.rcpt() == "cancel@example.net") host_->cron_cancel(id_);
      return ev.whitelisted() ? HookResult::accept() : HookResult::tempfail("4.7.1", "not whitelisted");
    });
    return Status::ok();
  }

 private:
  std::optional<Host> host_;
  Host::CronId id_ = 0;
};

TEST(Abi11SdkTest, CronJobsAreListedRunOnDemandAndRemovedAtUnload) {
  FakeHost host;
  CronAndTags::runs = 0;
  auto p = host.load<CronAndTags>(R"(<plugin cron="*/5 * * * *"/>)");
  ASSERT_TRUE(p.ok()) << p.error();
  auto jobs = host.cron_jobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].plugin, "cron_and_tags");
  EXPECT_EQ(jobs[0].name, "count");
  EXPECT_EQ(jobs[0].expr, "*/5 * * * *");
  EXPECT_EQ(host.run_cron(), 1u);
  EXPECT_EQ(host.run_cron("other"), 0u);
  EXPECT_EQ(CronAndTags::runs, 1);
  EXPECT_EQ(host.cron_jobs()[0].runs, 1u);
  // cron_cancel from a hook removes it.
  host.run(*p, host.make_rcpt("192.0.2.1", "a@example.org", "cancel@example.net"));
  EXPECT_TRUE(host.cron_jobs().empty());
  EXPECT_EQ(host.run_cron(), 0u);

  auto q = host.load<CronAndTags>(R"(<plugin cron="0 3 * * *"/>)");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(host.cron_jobs().size(), 1u);
  q.unload();
  EXPECT_TRUE(host.cron_jobs().empty());
}

TEST(Abi11SdkTest, RefusedCronFailsInit) {
  FakeHost host;
  EXPECT_EQ(host.load<CronAndTags>(R"(<plugin cron="* * *"/>)").error(), "cron refused");
  EXPECT_TRUE(host.logged("bad cron expression '* * *'"));
  host.set_cron_available(false);
  EXPECT_EQ(host.load<CronAndTags>(R"(<plugin cron="* * * * *"/>)").error(), "cron refused");
}

TEST(Abi11SdkTest, TagsSetByOneHookAreSeenByALaterOne) {
  FakeHost host;
  auto p = host.load<CronAndTags>("<plugin/>");
  ASSERT_TRUE(p.ok());
  auto connect = host.make_connect("10.1.2.3");
  const auto c = host.run(*p, connect);
  EXPECT_EQ(c.tag("postern.whitelisted"), "1");
  auto rcpt = host.make_rcpt("10.1.2.3", "a@example.org", "b@example.net");
  rcpt.tags() = c.tags();
  EXPECT_EQ(host.run(*p, rcpt).verdict(), Verdict::Accept);
  // Another session does not inherit them.
  EXPECT_EQ(host.run(*p, host.make_rcpt("192.0.2.1", "a@example.org", "b@example.net")).verdict(),
            Verdict::TempFail);
}

TEST(Abi11SdkTest, WrapperSaysNoOnAVersion10Host) {
  // A 1.0 host's table ends after message_part_body.
  postern_host_api_v1_t old = *FakeHost::api();
  old.struct_size = static_cast<uint32_t>(offsetof(postern_host_api_v1_t, cron_add));
  old.abi_minor = 0;
  old.cron_add = nullptr;
  old.cron_cancel = nullptr;
  old.event_tag_get = nullptr;
  old.event_tag_set = nullptr;
  Host h(nullptr, &old);
  EXPECT_FALSE(h.has_cron());
  EXPECT_EQ(h.cron_add("x", "* * * * *", [] {}), 0u);
  h.cron_cancel(7);  // must not call through the missing pointer
  Event ev(nullptr, &old, nullptr, Stage::RcptTo);
  EXPECT_FALSE(ev.tag("postern.whitelisted").has_value());
  EXPECT_FALSE(ev.set_tag("k", "v"));
  EXPECT_FALSE(ev.whitelisted());
  // And the 1.1 table has them.
  EXPECT_TRUE(Host(nullptr, FakeHost::api()).has_cron());
}

}  // namespace
}  // namespace postern::sdk
