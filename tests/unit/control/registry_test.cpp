// The control plane's registry (core/control/registry.hpp): request forms,
// argument parsing and validation against a command's spec, unknown
// commands, the built-in help, the reply's JSON form.
#include "core/control/registry.hpp"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace postern::core::control {
namespace {

namespace json = boost::json;

CommandSpec allow_spec() {
  CommandSpec s;
  s.area = "greylist";
  s.verb = "allow";
  s.summary = "whitelists a network";
  s.owner = "greylist";
  s.args = {ArgSpec{"network", ArgType::String, true, true, "IP or CIDR"},
            ArgSpec{"note", ArgType::String, false, false, "why"},
            ArgSpec{"days", ArgType::Integer, false, false, "for how long"},
            ArgSpec{"force", ArgType::Boolean, false, false, "even if present"},
            ArgSpec{"tag", ArgType::StringList, false, false, "repeatable"}};
  return s;
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.add(allow_spec(), [this](Request r, Done done) {
      last_ = r;
      ++calls_;
      done(Reply::success(json::object{{"allowed", r.args.at("network")}}, "allowed\n", r.format));
    });
    CommandSpec raw;
    raw.area = "alias";
    raw.verb = "add";
    raw.raw = true;
    raw.args = {ArgSpec{"argv", ArgType::StringList, false, true, "words"}};
    registry_.add(raw, [this](Request r, Done done) {
      last_ = r;
      ++calls_;
      done(Reply::success(nullptr, "ok\n", r.format));
    });
  }
  Reply call(std::string_view request) {
    Reply out;
    bool called = false;
    registry_.call(json::parse(request), [&](Reply r) {
      out = std::move(r);
      called = true;
    });
    EXPECT_TRUE(called);
    return out;
  }
  Registry registry_;
  std::optional<Request> last_;
  int calls_ = 0;
};

TEST_F(RegistryTest, ArgvIsParsedIntoTypedArguments) {
  Reply r = call(R"({"argv":["greylist","allow","192.0.2.0/24","--note","spam trap","--days=3","--force",)"
                 R"("--tag","a","--tag","b"],"format":"json"})");
  ASSERT_EQ(r.exit, Exit::Ok) << r.error;
  ASSERT_TRUE(last_);
  EXPECT_EQ(last_->args.at("network"), "192.0.2.0/24");
  EXPECT_EQ(last_->args.at("note"), "spam trap");
  EXPECT_EQ(last_->args.at("days"), 3);
  EXPECT_EQ(last_->args.at("force"), true);
  EXPECT_EQ(last_->args.at("tag"), (json::array{"a", "b"}));
  EXPECT_EQ(r.output, "{\"allowed\":\"192.0.2.0/24\"}\n");  // JSON format: the result
}

TEST_F(RegistryTest, CommandFormTakesArgumentsAsJson) {
  Reply r = call(R"({"id":7,"command":"greylist allow","args":{"network":"10.0.0.0/8","days":2}})");
  ASSERT_EQ(r.exit, Exit::Ok) << r.error;
  EXPECT_EQ(r.output, "allowed\n");  // text format: the command's rendering
  EXPECT_EQ(last_->args.at("days"), 2);
}

TEST_F(RegistryTest, RawCommandsGetTheWordsUnparsed) {
  Reply r = call(R"({"argv":["alias","add","a@example.test","--weird","b@example.test"]})");
  ASSERT_EQ(r.exit, Exit::Ok) << r.error;
  EXPECT_EQ(last_->args.at("argv"), (json::array{"a@example.test", "--weird", "b@example.test"}));
}

TEST_F(RegistryTest, BadArgumentsAreUsageErrorsAndRunNothing) {
  struct Case {
    const char* request;
    const char* error_part;
  } cases[] = {
      {R"({"argv":["greylist","allow"]})", "missing NETWORK"},
      {R"({"argv":["greylist","allow","x","y"]})", "unexpected argument 'y'"},
      {R"({"argv":["greylist","allow","x","--bogus"]})", "unknown option --bogus"},
      {R"({"argv":["greylist","allow","x","--days","soon"]})", "expected a number"},
      {R"({"argv":["greylist","allow","x","--note"]})", "--note needs a value"},
      {R"({"argv":["greylist","allow","x","--force=yes"]})", "takes no value"},
      {R"({"command":"greylist allow","args":{"network":5}})", "must be a string"},
      {R"({"command":"greylist allow","args":{"network":"x","extra":1}})", "unknown argument 'extra'"},
      {R"({"command":"greylist allow","args":{"network":"x","tag":[1]}})", "must be a string-list"},
      {R"({"command":"greylist allow","args":[]})", "\"args\" must be an object"},
  };
  for (const Case& c : cases) {
    Reply r = call(c.request);
    EXPECT_EQ(r.exit, Exit::Usage) << c.request;
    EXPECT_NE(r.error.find(c.error_part), std::string::npos) << c.request << " -> " << r.error;
  }
  EXPECT_EQ(calls_, 0);
}

TEST_F(RegistryTest, MalformedRequestsAreRefusedWithAClearError) {
  EXPECT_NE(call("[1,2]").error.find("JSON object"), std::string::npos);
  EXPECT_NE(call("{}").error.find("either \"command\""), std::string::npos);
  EXPECT_NE(call(R"({"argv":"greylist list"})").error.find("array of strings"), std::string::npos);
  EXPECT_NE(call(R"({"argv":[]})").error.find("empty"), std::string::npos);
  EXPECT_NE(call(R"({"argv":["help"],"format":"yaml"})").error.find("\"format\""), std::string::npos);
  EXPECT_EQ(calls_, 0);
}

TEST_F(RegistryTest, UnknownCommandsNameWhatWasAsked) {
  Reply r = call(R"({"argv":["bayes","train"]})");
  EXPECT_EQ(r.exit, Exit::Usage);
  EXPECT_EQ(r.error, "unknown command 'bayes train' (help lists the commands)");
  r = call(R"({"argv":["greylist","purge"]})");
  EXPECT_EQ(r.exit, Exit::Usage);
  EXPECT_EQ(r.error, "greylist: unknown verb 'purge'");
  EXPECT_NE(r.diagnostics.find("greylist allow NETWORK [--note NOTE] [--days DAYS] [--force] [--tag TAG...]"),
            std::string::npos)
      << r.diagnostics;
}

TEST_F(RegistryTest, PluginSourceIsAskedOnEveryCallAndCoreComesFirst) {
  int asked = 0;
  registry_.set_source([&] {
    ++asked;
    CommandSpec s;
    s.area = "bayes";
    s.verb = "stats";
    s.owner = "bayes";
    return std::vector<Command>{Command{s, [](Request r, Done d) {
                                          d(Reply::success(json::object{{"tokens", 42}}, "42 tokens\n", r.format));
                                        }}};
  });
  Reply r = call(R"({"argv":["bayes","stats"],"format":"json"})");
  EXPECT_EQ(r.exit, Exit::Ok);
  EXPECT_EQ(r.output, "{\"tokens\":42}\n");
  registry_.set_source([] { return std::vector<Command>{}; });  // the plugin was unloaded
  EXPECT_EQ(call(R"({"argv":["bayes","stats"]})").exit, Exit::Usage);
  EXPECT_GE(asked, 1);
}

TEST_F(RegistryTest, HelpListsEveryCommandWithItsArguments) {
  Reply r = call(R"({"argv":["help"],"format":"json"})");
  ASSERT_EQ(r.exit, Exit::Ok);
  const json::array& list = r.result.as_array();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1].at("command"), "greylist allow");
  EXPECT_EQ(list[1].at("owner"), "greylist");
  EXPECT_EQ(list[1].at("args").as_array()[0].at("type"), "string");
  EXPECT_EQ(call(R"({"argv":["help","nosuch"]})").exit, Exit::Usage);
}

TEST_F(RegistryTest, DuplicateAndInvalidSpecsAreProgrammingErrors) {
  EXPECT_THROW(registry_.add(allow_spec(), [](Request, Done) {}), std::logic_error);
  CommandSpec bad = allow_spec();
  bad.verb = "Allow Now";
  EXPECT_THROW(registry_.add(bad, [](Request, Done) {}), std::logic_error);
  CommandSpec list_not_last;
  list_not_last.area = "x";
  list_not_last.verb = "y";
  list_not_last.args = {ArgSpec{"a", ArgType::StringList, false, true, ""}, ArgSpec{"b", ArgType::String, false, true, ""}};
  EXPECT_NE(check_spec(list_not_last), "");
}

TEST_F(RegistryTest, RepliesRoundTripThroughJson) {
  Reply r = Reply::failure(Exit::NotFound, "account x does not exist");
  r.diagnostics = "posternctl: account x does not exist\n";
  json::object o = reply_to_json(r, 12);
  EXPECT_EQ(o.at("status"), "not_found");
  EXPECT_EQ(o.at("exit"), 3);
  EXPECT_EQ(o.at("id"), 12);
  Reply back = reply_from_json(o);
  EXPECT_EQ(back.exit, Exit::NotFound);
  EXPECT_EQ(back.error, r.error);
  EXPECT_EQ(back.diagnostics, r.diagnostics);
}

}  // namespace
}  // namespace postern::core::control
