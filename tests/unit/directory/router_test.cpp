#include "core/directory/router.hpp"

#include <gtest/gtest.h>

namespace postern::core::directory {
namespace {

RouterRule rule(std::string_view text) {
  std::string err;
  auto r = parse_router_rule(text, &err);
  EXPECT_TRUE(r.has_value()) << err;
  return r.value_or(RouterRule{});
}

TEST(RouterRuleTest, ParsesPatternReplacementAndComment) {
  RouterRule r = rule("  *@Old.Example =  *@example.test ; moved in 2024");
  EXPECT_EQ(r.pattern, "*@old.example");
  EXPECT_EQ(r.replacement, "*@example.test");
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.source, "*@old.example = *@example.test");
}

TEST(RouterRuleTest, ParsesErrorWithText) {
  RouterRule r = rule("spam@* = error: No such user here");
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.error_text, "No such user here");
  EXPECT_EQ(r.format(), "spam@* = error: No such user here");
  EXPECT_TRUE(rule("x@y.test = ERROR").error);
}

TEST(RouterRuleTest, RejectsBadSyntax) {
  for (const char* bad : {"no equals sign", "= a@b.test", "a@b.test =", "a = b@c.test", "a@b.test = c",
                          "a@b.test = *@c.test", "**@b.test = x@c.test", "*a*b*c*d*e@x.test = x@y.test",
                          "a b@c.test = d@e.test"}) {
    std::string err;
    EXPECT_FALSE(parse_router_rule(bad, &err).has_value()) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(RouterRuleTest, StarsCaptureInOrder) {
  EXPECT_EQ(apply_router_rule(rule("*.*@example.test = *_*@example.test"), "john.smith@example.test"),
            "john_smith@example.test");
  EXPECT_EQ(apply_router_rule(rule("*@old.example = *@example.test"), "alice@old.example"), "alice@example.test");
  EXPECT_EQ(apply_router_rule(rule("sales@* = bob@example.test"), "sales@anything.test"), "bob@example.test");
  EXPECT_FALSE(apply_router_rule(rule("*@old.example = *@example.test"), "alice@new.example").has_value());
  // '*' may match nothing.
  EXPECT_EQ(apply_router_rule(rule("a*@x.test = b*@x.test"), "a@x.test"), "b@x.test");
  EXPECT_EQ(apply_router_rule(rule("spam@* = error"), "spam@x.test"), "");
}

TEST(RouterTableTest, FirstMatchWinsAndResultReentersFromTheTop) {
  std::vector<RouterRule> t{rule("*@b.test = *@c.test"), rule("*@a.test = *@b.test"), rule("*@a.test = never@x.test")};
  RouteResult r = route_address(t, "u@a.test", 10);
  EXPECT_EQ(r.status, RouteResult::Status::Ok);
  EXPECT_EQ(r.address, "u@c.test");
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0], "rule #2: u@a.test -> u@b.test");
  EXPECT_EQ(r.steps[1], "rule #1: u@b.test -> u@c.test");
}

TEST(RouterTableTest, LoopLimitStopsACycle) {
  std::vector<RouterRule> t{rule("*@a.test = *@b.test"), rule("*@b.test = *@a.test")};
  RouteResult r = route_address(t, "u@a.test", 10);
  EXPECT_EQ(r.status, RouteResult::Status::Loop);
  EXPECT_EQ(r.steps.size(), 10u);
  EXPECT_NE(r.reason.find("more than 10"), std::string::npos);
}

TEST(RouterTableTest, SelfMappingEndsRouting) {
  std::vector<RouterRule> t{rule("*@a.test = *@a.test")};
  RouteResult r = route_address(t, "u@a.test", 3);
  EXPECT_EQ(r.status, RouteResult::Status::Ok);
  EXPECT_EQ(r.address, "u@a.test");
}

TEST(RouterTableTest, ErrorRuleRefusesWithItsText) {
  std::vector<RouterRule> t{rule("*@old.test = *@a.test"), rule("bad@a.test = error: gone")};
  RouteResult r = route_address(t, "bad@old.test", 10);
  EXPECT_EQ(r.status, RouteResult::Status::Refused);
  EXPECT_EQ(r.reason, "gone");
}

TEST(RouterTableTest, NoRulesLeavesTheAddress) {
  RouteResult r = route_address({}, "u@a.test", 10);
  EXPECT_EQ(r.status, RouteResult::Status::Ok);
  EXPECT_EQ(r.address, "u@a.test");
  EXPECT_TRUE(r.steps.empty());
}

}  // namespace
}  // namespace postern::core::directory
