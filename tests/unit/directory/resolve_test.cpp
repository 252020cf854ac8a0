// Resolution rules (D1-D3) through a real Directory over SQLite.

#include "core/directory/router.hpp"
#include "tests/unit/directory/directory_fixture.hpp"

namespace postern::core::directory {
namespace {

using testing::DirectoryFixture;

std::vector<std::string> locals(const Resolution& r) {
  std::vector<std::string> out;
  for (const Target& t : r.targets)
    if (t.kind == Target::Kind::Local) out.push_back(t.address);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> remotes(const Resolution& r) {
  std::vector<std::string> out;
  for (const Target& t : r.targets)
    if (t.kind == Target::Kind::Remote) out.push_back(t.address);
  std::sort(out.begin(), out.end());
  return out;
}

using Strings = std::vector<std::string>;

class ResolveTest : public DirectoryFixture {
 protected:
  void SetUp() override {
    DirectoryFixture::SetUp();
    ok(dir_->add_account("alice@example.test", "Alice", std::nullopt, 0));
    ok(dir_->add_account("bob@example.test", "Bob", std::nullopt, 0));
  }
};

TEST_F(ResolveTest, AccountResolvesToItsMailboxCaseInsensitively) {
  Resolution r = dir_->resolve("Alice@EXAMPLE.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), Strings{"alice@example.test"});
  EXPECT_EQ(dir_->resolve("<bob@example.test>", "").status, Resolution::Status::Ok);
}

TEST_F(ResolveTest, UnknownUserInLocalDomain) {
  Resolution r = dir_->resolve("carol@example.test", "");
  EXPECT_EQ(r.status, Resolution::Status::UnknownUser);
}

TEST_F(ResolveTest, EveryServedDomainHasAPostmaster) {
  // RFC 5321 §4.5.1: a domain added later, with no postmaster of its own,
  // delivers postmaster@ to the default domain's postmaster, in any case.
  ok(dir_->add_domain("second.test", DomainKind::Local));
  Resolution r = dir_->resolve("PostMaster@second.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok) << r.reason;
  EXPECT_EQ(locals(r), Strings{"postmaster@example.test"});
  // An operator's own postmaster for the domain wins.
  ok(dir_->add_alias("postmaster@second.test", {"bob@example.test"}));
  EXPECT_EQ(locals(dir_->resolve("postmaster@second.test", "")), Strings{"bob@example.test"});
  // Only the exact local part: "postmasters" is an ordinary unknown user.
  EXPECT_EQ(dir_->resolve("postmasters@second.test", "").status, Resolution::Status::UnknownUser);
}

TEST_F(ResolveTest, ForeignDomainIsNotOurs) {
  EXPECT_EQ(dir_->resolve("x@elsewhere.example", "").status, Resolution::Status::NotOurs);
  EXPECT_FALSE(dir_->is_local_domain("elsewhere.example"));
  EXPECT_TRUE(dir_->is_local_domain("EXAMPLE.TEST"));
}

TEST_F(ResolveTest, PostmasterExistsFromTheStartWithoutPassword) {
  auto pm = dir_->account("postmaster@example.test");
  ASSERT_TRUE(pm.has_value());
  EXPECT_EQ(dir_->resolve("postmaster@example.test", "").status, Resolution::Status::Ok);
  EXPECT_FALSE(dir_->authenticate("postmaster@example.test", "", kSmtpAuth).has_value());
  EXPECT_FALSE(dir_->authenticate("postmaster@example.test", "!", kSmtpAuth).has_value());
  // A second call creates nothing.
  EXPECT_TRUE(dir_->ensure_defaults({}).empty());
}

TEST_F(ResolveTest, DisabledAccountIsDisabled) {
  ok(dir_->set_enabled("bob@example.test", false, 0));
  EXPECT_EQ(dir_->resolve("bob@example.test", "").status, Resolution::Status::Disabled);
  ok(dir_->set_enabled("bob@example.test", true, 0));
  EXPECT_EQ(dir_->resolve("bob@example.test", "").status, Resolution::Status::Ok);
}

TEST_F(ResolveTest, AliasExpandsToSeveralIncludingRemote) {
  ok(dir_->add_alias("team@example.test", {"alice@example.test", "bob@example.test", "ext@partner.example"}));
  Resolution r = dir_->resolve("team@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), (Strings{"alice@example.test", "bob@example.test"}));
  EXPECT_EQ(remotes(r), Strings{"ext@partner.example"});
}

TEST_F(ResolveTest, AliasesExpandRecursivelyAndDeduplicate) {
  ok(dir_->add_alias("a@example.test", {"b@example.test", "alice@example.test"}));
  ok(dir_->add_alias("b@example.test", {"alice@example.test", "bob@example.test"}));
  Resolution r = dir_->resolve("a@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), (Strings{"alice@example.test", "bob@example.test"}));
  EXPECT_EQ(r.targets.size(), 2u);
}

TEST_F(ResolveTest, AliasLoopIsDetected) {
  ok(dir_->add_alias("x@example.test", {"y@example.test"}));
  ok(dir_->add_alias("y@example.test", {"x@example.test"}));
  Resolution r = dir_->resolve("x@example.test", "");
  EXPECT_EQ(r.status, Resolution::Status::Loop);
  EXPECT_NE(r.reason.find("loop"), std::string::npos);
}

TEST_F(ResolveTest, AliasWithOnlyDisabledOrUnknownTargets) {
  ok(dir_->set_enabled("bob@example.test", false, 0));
  ok(dir_->add_alias("b@example.test", {"bob@example.test"}));
  EXPECT_EQ(dir_->resolve("b@example.test", "").status, Resolution::Status::Disabled);
  ok(dir_->add_alias("ghost@example.test", {"nobody@example.test"}));
  EXPECT_EQ(dir_->resolve("ghost@example.test", "").status, Resolution::Status::UnknownUser);
  // One disabled member does not stop the others.
  ok(dir_->add_alias("both@example.test", {"bob@example.test", "alice@example.test"}));
  Resolution r = dir_->resolve("both@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), Strings{"alice@example.test"});
}

TEST_F(ResolveTest, CatchAllAppliesOnlyWhenNothingElseMatches) {
  ok(dir_->add_alias("*@example.test", {"alice@example.test"}));
  Resolution r = dir_->resolve("anything@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), Strings{"alice@example.test"});
  // An existing account is not caught.
  EXPECT_EQ(locals(dir_->resolve("bob@example.test", "")), Strings{"bob@example.test"});
  // A disabled account stays disabled; the catch-all does not take its mail.
  ok(dir_->set_enabled("bob@example.test", false, 0));
  EXPECT_EQ(dir_->resolve("bob@example.test", "").status, Resolution::Status::Disabled);
}

TEST_F(ResolveTest, ForwardWithoutLocalCopy) {
  ok(dir_->set_forward("alice@example.test", {"alice@home.example"}, false));
  Resolution r = dir_->resolve("alice@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_TRUE(locals(r).empty());
  EXPECT_EQ(remotes(r), Strings{"alice@home.example"});
}

TEST_F(ResolveTest, ForwardWithLocalCopy) {
  ok(dir_->set_forward("alice@example.test", {"alice@home.example", "bob@example.test"}, true));
  Resolution r = dir_->resolve("alice@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), (Strings{"alice@example.test", "bob@example.test"}));
  EXPECT_EQ(remotes(r), Strings{"alice@home.example"});
  ok(dir_->set_forward("alice@example.test", {}, false));
  EXPECT_EQ(dir_->resolve("alice@example.test", "").targets.size(), 1u);
}

TEST_F(ResolveTest, ForwardToItselfIsRefusedAndForwardLoopDetected) {
  EXPECT_EQ(dir_->set_forward("alice@example.test", {"alice@example.test"}, true).code, Status::Code::Invalid);
  ok(dir_->set_forward("alice@example.test", {"bob@example.test"}, false));
  ok(dir_->set_forward("bob@example.test", {"alice@example.test"}, false));
  EXPECT_EQ(dir_->resolve("alice@example.test", "").status, Resolution::Status::Loop);
}

TEST_F(ResolveTest, DomainAliasMapsLocalParts) {
  ok(dir_->add_domain("alias.test", DomainKind::Alias, "example.test"));
  EXPECT_TRUE(dir_->is_local_domain("alias.test"));
  Resolution r = dir_->resolve("Alice@Alias.Test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), Strings{"alice@example.test"});
  EXPECT_EQ(dir_->resolve("nobody@alias.test", "").status, Resolution::Status::UnknownUser);
  // A domain alias must point to a local domain.
  EXPECT_EQ(dir_->add_domain("a2.test", DomainKind::Alias, "alias.test").code, Status::Code::Invalid);
  EXPECT_EQ(dir_->add_domain("a3.test", DomainKind::Alias, "missing.test").code, Status::Code::NotFound);
}

TEST_F(ResolveTest, GatewayDomainResolvesRemote) {
  ok(dir_->add_domain("relay.test", DomainKind::Gateway));
  EXPECT_TRUE(dir_->is_gateway_domain("RELAY.test"));
  EXPECT_FALSE(dir_->is_local_domain("relay.test"));
  Resolution r = dir_->resolve("anyone@relay.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(remotes(r), Strings{"anyone@relay.test"});
  // Accounts live in local domains only.
  EXPECT_EQ(dir_->add_account("x@relay.test", "", std::nullopt, 0).code, Status::Code::Invalid);
}

TEST_F(ResolveTest, ListPostingPolicies) {
  ok(dir_->add_list("staff@example.test", PostPolicy::Anyone));
  ok(dir_->add_list_entries("staff@example.test", {"alice@example.test", "bob@example.test", "x@remote.example"},
                            false));
  Resolution r = dir_->resolve("staff@example.test", "stranger@outside.example");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(r.targets.size(), 3u);

  ok(dir_->set_list_policy("staff@example.test", PostPolicy::Members));
  r = dir_->resolve("staff@example.test", "stranger@outside.example");
  EXPECT_EQ(r.status, Resolution::Status::Refused);
  EXPECT_NE(r.reason.find("only members"), std::string::npos);
  EXPECT_EQ(dir_->resolve("staff@example.test", "").status, Resolution::Status::Refused);
  EXPECT_EQ(dir_->resolve("staff@example.test", "Alice@Example.Test").status, Resolution::Status::Ok);

  ok(dir_->set_list_policy("staff@example.test", PostPolicy::Senders));
  EXPECT_EQ(dir_->resolve("staff@example.test", "alice@example.test").status, Resolution::Status::Refused);
  ok(dir_->add_list_entries("staff@example.test", {"boss@outside.example"}, true));
  EXPECT_EQ(dir_->resolve("staff@example.test", "boss@outside.example").status, Resolution::Status::Ok);
}

TEST_F(ResolveTest, ListPolicyHoldsThroughAnAlias) {
  ok(dir_->add_list("closed@example.test", PostPolicy::Members));
  ok(dir_->add_list_entries("closed@example.test", {"alice@example.test"}, false));
  ok(dir_->add_alias("open@example.test", {"closed@example.test"}));
  EXPECT_EQ(dir_->resolve("open@example.test", "x@outside.example").status, Resolution::Status::Refused);
  EXPECT_EQ(dir_->resolve("open@example.test", "alice@example.test").status, Resolution::Status::Ok);
}

TEST_F(ResolveTest, EmptyListIsRefused) {
  ok(dir_->add_list("empty@example.test", PostPolicy::Anyone));
  EXPECT_EQ(dir_->resolve("empty@example.test", "a@b.example").status, Resolution::Status::Refused);
}

TEST_F(ResolveTest, RouterRewritesBeforeLookupAndReenters) {
  ok(dir_->add_router_rule("*@old.example = *@mid.example", 0));
  ok(dir_->add_router_rule("*@mid.example = *@example.test", 0));
  ok(dir_->add_router_rule("info@example.test = alice@example.test", 0));
  Resolution r = dir_->resolve("info@old.example", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(locals(r), Strings{"alice@example.test"});
  RouteResult rr = dir_->route("INFO@old.example");
  EXPECT_EQ(rr.address, "alice@example.test");
  EXPECT_EQ(rr.steps.size(), 3u);
}

TEST_F(ResolveTest, RouterAppliesToAliasTargetsToo) {
  ok(dir_->add_router_rule("*@legacy.example = *@example.test", 0));
  ok(dir_->add_alias("team@example.test", {"bob@legacy.example"}));
  EXPECT_EQ(locals(dir_->resolve("team@example.test", "")), Strings{"bob@example.test"});
}

TEST_F(ResolveTest, RouterLoopAndError) {
  ok(dir_->add_router_rule("*@p.example = *@q.example", 0));
  ok(dir_->add_router_rule("*@q.example = *@p.example", 0));
  EXPECT_EQ(dir_->resolve("u@p.example", "").status, Resolution::Status::Loop);
  ok(dir_->add_router_rule("spam@example.test = error: not here", 1));
  Resolution r = dir_->resolve("spam@example.test", "");
  EXPECT_EQ(r.status, Resolution::Status::Refused);
  EXPECT_EQ(r.reason, "not here");
  EXPECT_EQ(dir_->add_router_rule("bad rule", 0).code, Status::Code::Invalid);
  ok(dir_->del_router_rule(1));
  EXPECT_EQ(dir_->data()->router.size(), 2u);
  EXPECT_EQ(dir_->del_router_rule(7).code, Status::Code::NotFound);
}

TEST_F(ResolveTest, RouterFromOurDomainOutwardIsAForwardButForeignStaysForeign) {
  ok(dir_->add_router_rule("*@example.test = *@partner.example", 0));
  Resolution r = dir_->resolve("zed@example.test", "");
  ASSERT_EQ(r.status, Resolution::Status::Ok);
  EXPECT_EQ(remotes(r), Strings{"zed@partner.example"});
  ok(dir_->add_router_rule("*@foreign.example = *@other.example", 0));
  EXPECT_EQ(dir_->resolve("x@foreign.example", "").status, Resolution::Status::NotOurs);
}

TEST_F(ResolveTest, RouterPositionsInsertAndAppend) {
  ok(dir_->add_router_rule("a@x.test = b@x.test", 0));
  ok(dir_->add_router_rule("c@x.test = d@x.test", 0));
  ok(dir_->add_router_rule("e@x.test = f@x.test", 1));
  auto d = dir_->data();
  ASSERT_EQ(d->router.size(), 3u);
  EXPECT_EQ(d->router[0], "e@x.test = f@x.test");
  EXPECT_EQ(d->router[1], "a@x.test = b@x.test");
  EXPECT_EQ(d->router[2], "c@x.test = d@x.test");
  ok(dir_->del_router_rule(2));
  d = dir_->data();
  ASSERT_EQ(d->router.size(), 2u);
  EXPECT_EQ(d->router[1], "c@x.test = d@x.test");
}

TEST_F(ResolveTest, BareLocalPartUsesTheDefaultDomain) {
  EXPECT_EQ(locals(dir_->resolve("alice", "")), Strings{"alice@example.test"});
}

}  // namespace
}  // namespace postern::core::directory
