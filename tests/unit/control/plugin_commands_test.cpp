// ABI 1.3 admin commands through the real loader and host table: the
// command_rules C plugin (tests/abi/) registers commands, posternd's
// registry source (core/plugin/commands.hpp) serves them, replies come back
// synchronously, later from a timer, or refused as invalid JSON.
#include "core/control/registry.hpp"
#include "core/event/chain.hpp"
#include "core/plugin/commands.hpp"
#include "core/plugin/loader.hpp"
#include "tests/unit/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <map>
#include <thread>

namespace postern::core {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::map<std::string, int> read_results(const std::filesystem::path& file) {
  std::map<std::string, int> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = std::stoi(line.substr(eq + 1));
  }
  return out;
}

class PluginCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    services_.io = &io_;
    services_.workers = &workers_;
    services_.state_root = tmp_.path / "state";
    io_thread_ = std::thread([this] { io_.run(); });
    doc_.load_string("<plugin/>");
    plugin::LoadRequest r;
    r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "command_rules.so";
    r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "command_rules.plugin.xml";
    r.name = "command_rules";
    r.config = doc_.document_element();
    auto loaded = plugin::LoadedPlugin::load(r, services_);
    if (auto* why = std::get_if<std::string>(&loaded)) FAIL() << *why;
    plugin_ = std::get<std::unique_ptr<plugin::LoadedPlugin>>(loaded).get();
    chain_ = std::make_shared<event::Chain>();
    chain_->add(std::move(std::get<std::unique_ptr<plugin::LoadedPlugin>>(loaded)), 5s, event::OnFailure::Continue);
    registry_.set_source([this] { return plugin::plugin_commands(chain_, workers_); });
  }
  void TearDown() override {
    chain_.reset();
    workers_.join();
    guard_.reset();
    io_.stop();
    io_thread_.join();
  }
  control::Reply call(std::string_view request) {
    std::promise<control::Reply> p;
    registry_.call(json::parse(request), [&p](control::Reply r) { p.set_value(std::move(r)); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return f.get();
  }

  testing::TempDir tmp_{"postern-plugin-commands"};
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{io_.get_executor()};
  boost::asio::thread_pool workers_{2};
  std::thread io_thread_;
  plugin::HostServices services_;
  pugi::xml_document doc_;
  plugin::LoadedPlugin* plugin_ = nullptr;
  std::shared_ptr<event::Chain> chain_;
  control::Registry registry_;
};

TEST_F(PluginCommandsTest, CommandRegisterRefusesBadRegistrations) {
  auto r = read_results(tmp_.path / "state" / "command_rules" / "results.txt");
  EXPECT_EQ(r["core_area"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["bad_name"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["empty_verb"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["positional_flag"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["bad_type"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["no_callback"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["echo"], POSTERN_OK);
  EXPECT_EQ(r["again"], POSTERN_ERR_INVALID);
  EXPECT_EQ(r["late"], POSTERN_OK);
  EXPECT_EQ(r["bad_json"], POSTERN_OK);
  ASSERT_EQ(plugin_->commands().size(), 3u);
  EXPECT_EQ(plugin_->commands()[0].spec.owner, "command_rules");
  // Only during on_init.
  postern_host_t host{plugin_};
  postern_command_spec_t spec{};
  spec.struct_size = sizeof spec;
  spec.area = {"rules", 5};
  spec.verb = {"later", 5};
  EXPECT_EQ(plugin::host_api()->command_register(&host, &spec, [](void*, const postern_command_value_t* const*, size_t,
                                                                  postern_command_reply_t*) {}, nullptr),
            POSTERN_ERR_UNAVAILABLE);
}

TEST_F(PluginCommandsTest, TypedArgumentsReachThePluginAndItsReplyComesBack) {
  control::Reply r = call(R"({"argv":["rules","echo","hi","--times","3","--loud","--items","a","--items","b"],)"
                          R"("format":"json"})");
  ASSERT_EQ(r.exit, control::Exit::Ok) << r.error;
  EXPECT_EQ(r.result, json::parse(R"({"text":"hi","times":3,"loud":true,"items":2,"first":"a"})"));
  EXPECT_EQ(r.output, json::serialize(r.result) + "\n");
  r = call(R"({"command":"rules echo","args":{"text":"x"}})");
  EXPECT_EQ(r.output, "echo x\n");  // text format: the plugin's rendering
  r = call(R"({"argv":["rules","echo","x","--times","-1"]})");
  EXPECT_EQ(r.exit, control::Exit::Usage);
  EXPECT_EQ(r.error, "times must be >= 0");
  EXPECT_EQ(call(R"({"argv":["rules","echo"]})").exit, control::Exit::Usage);  // TEXT missing: not called
}

TEST_F(PluginCommandsTest, AReplyMayComeLaterFromAnotherThread) {
  control::Reply r = call(R"({"argv":["rules","late"],"format":"json"})");
  ASSERT_EQ(r.exit, control::Exit::Ok) << r.error;
  EXPECT_EQ(r.result, json::parse(R"({"late":true})"));
}

TEST_F(PluginCommandsTest, InvalidJsonFromAPluginIsAFailureNamingIt) {
  control::Reply r = call(R"({"argv":["rules","bad-json"]})");
  EXPECT_EQ(r.exit, control::Exit::Fail);
  EXPECT_NE(r.error.find("plugin command_rules answered with invalid JSON"), std::string::npos) << r.error;
}

TEST_F(PluginCommandsTest, UnloadedPluginsCommandsAreGone) {
  EXPECT_EQ(call(R"({"argv":["help","rules"]})").exit, control::Exit::Ok);
  chain_.reset();  // a reload installed a chain without the plugin
  control::Reply r = call(R"({"argv":["rules","echo","x"]})");
  EXPECT_EQ(r.exit, control::Exit::Usage);
  EXPECT_EQ(r.error, "unknown command 'rules echo' (help lists the commands)");
}

}  // namespace
}  // namespace postern::core
