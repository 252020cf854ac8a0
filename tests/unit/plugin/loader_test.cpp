// The loader's refusal paths, one tiny plugin each (tests/abi/), and a good load.
#include "core/plugin/loader.hpp"

#include "core/dns/resolver.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fstream>

#include <gtest/gtest.h>
#include <pugixml.hpp>

#include <filesystem>

namespace postern::core::plugin {
namespace {

struct LoaderCase {
  const char* plugin;
  const char* expected;  // substring of the one-line reason
};

class LoaderRefusalTest : public ::testing::TestWithParam<LoaderCase> {};

LoadRequest request_for(const std::string& name, const pugi::xml_document& doc) {
  LoadRequest r;
  r.library = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".so");
  r.descriptor = std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / (name + ".plugin.xml");
  r.name = name;
  r.config = doc.document_element();
  return r;
}

TEST_P(LoaderRefusalTest, RefusesWithOneLineReasonNamingTheFile) {
  pugi::xml_document doc;
  doc.load_string("<plugin/>");
  HostServices services;
  const LoaderCase& c = GetParam();
  auto result = LoadedPlugin::load(request_for(c.plugin, doc), services);
  ASSERT_TRUE(std::holds_alternative<std::string>(result)) << c.plugin << " was loaded";
  const std::string& why = std::get<std::string>(result);
  EXPECT_NE(why.find(std::string(c.plugin) + ".so"), std::string::npos) << why;
  EXPECT_NE(why.find(c.expected), std::string::npos) << why;
  EXPECT_EQ(why.find('\n'), std::string::npos) << "reason must be one line: " << why;
}

INSTANTIATE_TEST_SUITE_P(
    FailurePaths, LoaderRefusalTest,
    ::testing::Values(LoaderCase{"no_descriptor", "descriptor missing"},
                      LoaderCase{"bad_descriptor", "invalid XML"},
                      LoaderCase{"abi_major", "major version differs"},
                      LoaderCase{"abi_minor_newer", "newer than this host"},
                      LoaderCase{"no_entry", "entry symbol postern_plugin_entry_v1 missing"},
                      LoaderCase{"name_mismatch", "calls itself 'someone_else'"},
                      LoaderCase{"init_fails", "init failed: missing required attribute 'zone'"},
                      LoaderCase{"init_throws", "init threw: database file is corrupt"},
                      LoaderCase{"entry_throws", "entry point threw: entry exploded"},
                      LoaderCase{"undeclared_stage", "subscription to data_end refused"},
                      // ABI 1.3: a stage outside postern_stage_t, taken as an integer and refused.
                      LoaderCase{"bad_stage", "subscription to stage 99 refused"},
                      LoaderCase{"licensed", "license feature 'cloud-antispam' not granted"},
                      LoaderCase{"does_not_exist", "descriptor missing"}),
    [](const ::testing::TestParamInfo<LoaderCase>& info) { return std::string(info.param.plugin); });

TEST(LoaderTest, RefusesWhenManifestNameDiffersFromDescriptor) {
  pugi::xml_document doc;
  doc.load_string("<plugin/>");
  LoadRequest r = request_for("good", doc);
  r.name = "other";
  auto result = LoadedPlugin::load(r, HostServices{});
  ASSERT_TRUE(std::holds_alternative<std::string>(result));
  EXPECT_NE(std::get<std::string>(result).find("differs from the manifest's 'other'"), std::string::npos);
}

TEST(LoaderTest, LoadsGoodPluginAndRecordsSubscriptions) {
  pugi::xml_document doc;
  doc.load_string("<plugin reject-local=\"x\"/>");
  auto result = LoadedPlugin::load(request_for("good", doc), HostServices{});
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(result)) << std::get<std::string>(result);
  const auto& p = std::get<std::unique_ptr<LoadedPlugin>>(result);
  EXPECT_EQ(p->name(), "good");
  EXPECT_TRUE(p->subscribed(event::Stage::RcptTo));
  EXPECT_TRUE(p->subscribed(event::Stage::DataEnd));
  EXPECT_FALSE(p->subscribed(event::Stage::Connect));  // declared but not subscribed
}

TEST(LoaderTest, LicensedPluginLoadsWhenFeatureGranted) {
  pugi::xml_document doc;
  doc.load_string("<plugin/>");
  LoadRequest r = request_for("licensed", doc);
  r.license_check = [](const std::string& feature) { return feature == "cloud-antispam" ? "" : "no"; };
  auto result = LoadedPlugin::load(r, HostServices{});
  EXPECT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(result));
}

TEST(LoaderTest, SamePluginLoadsTwiceAsIndependentInstances) {
  pugi::xml_document doc;
  doc.load_string("<plugin/>");
  auto a = LoadedPlugin::load(request_for("good", doc), HostServices{});
  auto b = LoadedPlugin::load(request_for("good", doc), HostServices{});
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(a));
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(b));
}

TEST(DescriptorTest, ReadsHooksKindAndLicense) {
  auto r = read_descriptor(std::filesystem::path(POSTERN_ABI_PLUGIN_DIR) / "licensed.plugin.xml");
  ASSERT_TRUE(r.descriptor) << r.error;
  EXPECT_EQ(r.descriptor->license_feature, "cloud-antispam");
  EXPECT_EQ(r.descriptor->kind, Kind::Filter);
  EXPECT_TRUE(r.descriptor->declares(event::Stage::Connect));
}

TEST(DescriptorTest, AbiCompatibilityRules) {
  EXPECT_EQ(abi_incompatibility(1, 0), "");
  EXPECT_NE(abi_incompatibility(2, 0), "");
  EXPECT_NE(abi_incompatibility(0, 9), "");
  EXPECT_NE(abi_incompatibility(1, POSTERN_ABI_VERSION_MINOR + 1), "");
}

}  // namespace
}  // namespace postern::core::plugin

namespace postern::core::plugin {
namespace {

// Unloading completes what the plugin left outstanding — timer (fired = 0),
// DNS query (CANCELLED), queued work (runs) — before on_destroy, exactly once.
TEST(LoaderTest, UnloadCompletesOutstandingCallbacksBeforeDestroy) {
  const auto state = std::filesystem::temp_directory_path() / "postern-unload-test";
  std::filesystem::remove_all(state);
  boost::asio::io_context io;
  boost::asio::thread_pool workers(1);
  // A resolver pointed at a UDP port that never answers.
  boost::asio::ip::udp::socket silent(io, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  dns::ResolverOptions ro;
  ro.servers = {"127.0.0.1:" + std::to_string(silent.local_endpoint().port())};
  dns::Resolver resolver(io, ro);
  HostServices services;
  services.io = &io;
  services.workers = &workers;
  services.resolver = &resolver;
  services.state_root = state;
  pugi::xml_document doc;
  doc.load_string("<plugin/>");
  {
    auto loaded = LoadedPlugin::load(request_for("callbacks", doc), services);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<LoadedPlugin>>(loaded)) << std::get<std::string>(loaded);
    io.run_for(std::chrono::milliseconds(20));  // the query goes out; nothing answers
  }  // unload here
  io.run_for(std::chrono::milliseconds(50));  // late handlers must not call into the plugin
  std::ifstream in(state / "callbacks" / "callbacks.log");
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.back(), "destroyed");
  auto has = [&](const std::string& s) { return std::find(lines.begin(), lines.end(), s) != lines.end(); };
  EXPECT_TRUE(has("timer fired=0"));
  EXPECT_TRUE(has("dns status=" + std::to_string(POSTERN_DNS_CANCELLED)));
  EXPECT_TRUE(has("work done"));
  workers.join();
  resolver.shutdown();
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace postern::core::plugin
