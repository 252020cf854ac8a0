// Core's areas in the control-plane registry: typed arguments (what the web
// admin's forms and posternctl's parser are made from) and their way back to
// the area's own command-line words (core/app/ctl/registry.cpp).

#include "core/app/ctl/ctl.hpp"
#include "core/control/registry.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace postern::core {
namespace {

namespace json = boost::json;
using control::ArgType;

class CoreCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctl::add_core_commands(
        registry_, [] { return ctl::CoreContext{}; }, [](std::function<void()>) {});
  }
  /** posternctl's words for `area verb ...` → typed arguments → the area's words. */
  std::vector<std::string> round_trip(const std::vector<std::string>& words, std::string* error = nullptr) {
    auto cmd = registry_.find(words.at(0), words.at(1));
    EXPECT_TRUE(cmd) << words[0] << " " << words[1];
    if (!cmd) return {};
    std::string why;
    auto args = control::parse_command_line(cmd->spec, {words.begin() + 2, words.end()}, &why);
    if (args && why.empty()) why = control::validate_args(cmd->spec, *args);
    if (!args || !why.empty()) {
      if (error != nullptr) *error = why;
      return {};
    }
    return ctl::area_argv(cmd->spec.verb, cmd->spec.args, *args);
  }
  control::Registry registry_;
};

TEST_F(CoreCommandsTest, EveryCoreVerbIsTypedNotRaw) {
  size_t count = 0;
  for (const control::Command& c : registry_.all()) {
    EXPECT_FALSE(c.spec.raw) << c.spec.name();
    EXPECT_EQ(c.spec.owner, "core");
    EXPECT_TRUE(control::check_spec(c.spec).empty()) << c.spec.name();
    for (const control::ArgSpec& a : c.spec.args) {
      EXPECT_NE(a.name, "argv") << c.spec.name();
      EXPECT_FALSE(a.description.empty()) << c.spec.name() << " " << a.name;
    }
    ++count;
  }
  EXPECT_EQ(count, 36u);  // plugins 2, domain 3, user 10, alias 3, list 6, router 4, queue 7, relay 1
  auto add = registry_.find("user", "add");
  ASSERT_TRUE(add);
  EXPECT_EQ(add->spec.synopsis(), "user add ADDRESS [--password PASSWORD] [--name NAME] [--quota QUOTA]");
}

TEST_F(CoreCommandsTest, CommandLinesReachTheAreaAsBefore) {
  struct Case {
    std::vector<std::string> words;
    std::vector<std::string> area;
  } cases[] = {
      {{"domain", "add", "example.org", "--alias-of", "example.com"}, {"add", "example.org", "--alias-of", "example.com"}},
      {{"domain", "add", "--gateway", "gw.example"}, {"add", "gw.example", "--gateway"}},
      {{"domain", "del", "example.org", "--force"}, {"del", "example.org", "--force"}},
      {{"domain", "list"}, {"list"}},
      {{"user", "add", "a@example.org", "--password=s3cret word", "--quota", "1G", "--name", "Ann Example"},
       {"add", "a@example.org", "--password", "s3cret word", "--name", "Ann Example", "--quota", "1G"}},
      {{"user", "list"}, {"list"}},
      {{"user", "list", "example.org"}, {"list", "example.org"}},
      {{"user", "quota", "a@example.org", "unlimited"}, {"quota", "a@example.org", "unlimited"}},
      {{"user", "disable", "a@example.org", "--service", "imap", "--service", "pop3"},
       {"disable", "a@example.org", "--service", "imap", "--service", "pop3"}},
      {{"user", "forward", "a@example.org", "b@example.net", "c@example.net", "--keep-copy"},
       {"forward", "a@example.org", "b@example.net", "c@example.net", "--keep-copy"}},
      {{"user", "forward", "a@example.org", "--off"}, {"forward", "a@example.org", "--off"}},
      {{"alias", "add", "*@example.org", "a@example.org"}, {"add", "*@example.org", "a@example.org"}},
      {{"alias", "del", "sales@example.org"}, {"del", "sales@example.org"}},
      {{"list", "members", "team@example.org", "add", "a@x.test", "b@x.test"},
       {"members", "team@example.org", "add", "a@x.test", "b@x.test"}},
      {{"list", "members", "team@example.org"}, {"members", "team@example.org"}},
      {{"router", "add", "*@old.example = *@new.example", "--position", "2"},
       {"add", "*@old.example = *@new.example", "--position", "2"}},
      {{"router", "del", "3"}, {"del", "3"}},
      {{"queue", "flush"}, {"flush"}},
      {{"queue", "show", "0123ABCD"}, {"show", "0123ABCD"}},
      {{"relay", "test", "--from", "a@x.test", "--to", "b@y.test", "--to=c@y.test", "--require-tls", "--host",
        "mx.y.test:2525"},
       {"test", "--from", "a@x.test", "--to", "b@y.test", "--to", "c@y.test", "--host", "mx.y.test:2525",
        "--require-tls"}},
      {{"plugins", "order"}, {"order"}},
  };
  for (const Case& c : cases) {
    std::string error;
    EXPECT_EQ(round_trip(c.words, &error), c.area) << c.words[0] << " " << c.words[1] << ": " << error;
  }
}

TEST_F(CoreCommandsTest, BadCommandLinesAreUsageErrorsBeforeTheArea) {
  struct Case {
    std::vector<std::string> words;
    const char* error_part;
  } cases[] = {
      {{"user", "add"}, "missing ADDRESS"},
      {{"user", "add", "a@x.test", "--bogus"}, "unknown option --bogus"},
      {{"alias", "add", "a@x.test"}, "missing TARGETS"},
      {{"router", "del", "first"}, "expected a number"},
      {{"router", "add", "a = b", "--position"}, "--position needs a value"},
      {{"queue", "show", "A", "B"}, "unexpected argument 'B'"},
      {{"domain", "add", "x.test", "--gateway=yes"}, "takes no value"},
  };
  for (const Case& c : cases) {
    std::string error;
    EXPECT_TRUE(round_trip(c.words, &error).empty()) << c.words[0] << " " << c.words[1];
    EXPECT_NE(error.find(c.error_part), std::string::npos) << c.words[0] << " " << c.words[1] << " -> " << error;
  }
}

TEST_F(CoreCommandsTest, JsonArgumentsFromAnApiClientTakeTheSamePath) {
  auto cmd = registry_.find("user", "enable");
  ASSERT_TRUE(cmd);
  const json::object args{{"address", "a@x.test"}, {"service", json::array{"smtp"}}};
  EXPECT_TRUE(control::validate_args(cmd->spec, args).empty());
  EXPECT_EQ(ctl::area_argv("enable", cmd->spec.args, args),
            (std::vector<std::string>{"enable", "a@x.test", "--service", "smtp"}));
  // A wrongly typed value never reaches the area.
  EXPECT_NE(control::validate_args(cmd->spec, json::object{{"address", 5}}).find("must be a string"),
            std::string::npos);
  auto del = registry_.find("router", "del");
  ASSERT_TRUE(del);
  EXPECT_EQ(ctl::area_argv("del", del->spec.args, json::object{{"index", 4}}),
            (std::vector<std::string>{"del", "4"}));
}

}  // namespace
}  // namespace postern::core
