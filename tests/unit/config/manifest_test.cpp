// Manifest validation: every error reported as FILE:LINE: message.
#include "core/config/manifest.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace postern::core::config {
namespace {

class ManifestTest : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& text) {
    std::ofstream(file_) << text;
    return file_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_ = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("postern-manifest-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(d);
    return d;
  }();
  std::filesystem::path file_ = dir_ / "postern.xml";
};

bool has_error(const LoadResult& r, uint32_t line, const std::string& text) {
  for (const auto& e : r.errors) {
    if (e.line == line && e.message.find(text) != std::string::npos) return true;
  }
  return false;
}

std::string dump(const LoadResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e.str() + "\n";
  return s;
}

TEST_F(ManifestTest, ValidManifestLoadsWithPathsResolvedAgainstItsDirectory) {
  auto r = load_manifest(write(R"(<postern>
  <server name="mx.example.test" data-dir="var"/>
  <log level="debug" file="var/log/posternd.log"/>
  <plugin-dirs><dir>)" + std::string(POSTERN_ABI_PLUGIN_DIR) + R"(</dir></plugin-dirs>
  <listeners>
    <listener name="smtp" protocol="smtp" address="127.0.0.1" port="2525">
      <allow>127.0.0.0/8</allow>
      <deny>127.0.0.9</deny>
    </listener>
  </listeners>
  <plugins>
    <plugin name="good" enabled="true" timeout="250ms" on-failure="tempfail" reject-local="x"/>
    <plugin name="absent" enabled="false"/>
  </plugins>
</postern>)"));
  ASSERT_TRUE(r.errors.empty()) << dump(r);
  EXPECT_TRUE(r.plugin_problems.empty());
  const Manifest& m = *r.manifest;
  EXPECT_EQ(m.server_name, "mx.example.test");
  EXPECT_EQ(m.data_dir, (dir_ / "var").lexically_normal());
  EXPECT_EQ(m.log_level, log::Level::Debug);
  ASSERT_EQ(m.listeners.size(), 1u);
  EXPECT_TRUE(m.listeners[0].access.permits("127.0.0.1"));
  EXPECT_FALSE(m.listeners[0].access.permits("127.0.0.9"));
  EXPECT_FALSE(m.listeners[0].access.permits("192.0.2.1"));
  ASSERT_EQ(m.plugins.size(), 2u);
  EXPECT_EQ(m.plugins[0].timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(m.plugins[0].on_failure, event::OnFailure::TempFail);
  EXPECT_EQ(m.plugins[0].line, 12u);
  EXPECT_FALSE(m.plugins[1].enabled);
}

TEST_F(ManifestTest, ReportsEveryErrorWithItsLine) {
  auto r = load_manifest(write(R"(<postern>
  <server name="" data-dir="var" colour="blue"/>
  <log level="loud"/>
  <listeners>
    <listener name="smtp" protocol="smtp" port="99999"/>
    <listener name="smtp" protocol="smtp" port="2525" tls="sometimes"/>
    <listener name="x" protocol="smtp" port="2525" address="not-an-ip"/>
  </listeners>
  <bogus/>
  <plugins>
    <plugin name="good" timeout="soon" on-failure="explode"/>
  </plugins>
</postern>)"));
  EXPECT_TRUE(has_error(r, 2, "name is required")) << dump(r);
  EXPECT_TRUE(has_error(r, 2, "unknown attribute 'colour'")) << dump(r);
  EXPECT_TRUE(has_error(r, 3, "unknown level 'loud'")) << dump(r);
  EXPECT_TRUE(has_error(r, 5, "port '99999' must be 1-65535")) << dump(r);
  EXPECT_TRUE(has_error(r, 6, "duplicate name 'smtp'")) << dump(r);
  EXPECT_TRUE(has_error(r, 6, "tls=\"sometimes\"")) << dump(r);
  EXPECT_TRUE(has_error(r, 7, "'not-an-ip' is not an IP address")) << dump(r);
  EXPECT_TRUE(has_error(r, 9, "unknown element <bogus>")) << dump(r);
  EXPECT_TRUE(has_error(r, 11, "timeout=\"soon\"")) << dump(r);
  EXPECT_TRUE(has_error(r, 11, "on-failure=\"explode\"")) << dump(r);
  for (const auto& e : r.errors) EXPECT_EQ(e.file, file_.string());
}

TEST_F(ManifestTest, XmlSyntaxErrorNamesTheLine) {
  auto r = load_manifest(write("<postern>\n  <server name=\"a\"\n  data-dir=\"v\">\n</postern>\n"));
  ASSERT_EQ(r.errors.size(), 1u) << dump(r);
  EXPECT_NE(r.errors[0].message.find("XML error"), std::string::npos);
  EXPECT_GE(r.errors[0].line, 3u);
}

TEST_F(ManifestTest, MissingFileIsAnError) {
  auto r = load_manifest(dir_ / "nope.xml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("cannot open"), std::string::npos);
}

TEST_F(ManifestTest, PluginProblemsAreReportedSeparately) {
  auto r = load_manifest(write(R"(<postern>
  <server name="mx.example.test" data-dir="var"/>
  <plugin-dirs><dir>)" + std::string(POSTERN_ABI_PLUGIN_DIR) + R"(</dir></plugin-dirs>
  <plugins>
    <plugin name="missing_plugin"/>
    <plugin name="abi_major"/>
    <plugin name="bad_descriptor"/>
  </plugins>
</postern>)"));
  EXPECT_TRUE(r.errors.empty()) << dump(r);
  ASSERT_EQ(r.plugin_problems.size(), 3u);
  EXPECT_EQ(r.plugin_problems[0].line, 5u);
  EXPECT_NE(r.plugin_problems[0].message.find("no missing_plugin.so"), std::string::npos);
  EXPECT_NE(r.plugin_problems[1].message.find("major version differs"), std::string::npos);
  EXPECT_NE(r.plugin_problems[2].message.find("invalid XML"), std::string::npos);
}

TEST(NetRangeTest, ParsesAddressesCidrsAndRanges) {
  struct Case {
    const char* range;
    const char* ip;
    bool in;
  };
  const Case cases[] = {
      {"192.0.2.0/24", "192.0.2.200", true},   {"192.0.2.0/24", "192.0.3.1", false},
      {"192.0.2.7", "192.0.2.7", true},        {"192.0.2.7", "192.0.2.8", false},
      {"10.0.0.1-10.0.0.9", "10.0.0.5", true}, {"10.0.0.1-10.0.0.9", "10.0.0.10", false},
      {"2001:db8::/32", "2001:db8:1::1", true}, {"2001:db8::/32", "2001:db9::1", false},
      {"0.0.0.0/0", "203.0.113.9", true},      {"127.0.0.1/32", "::ffff:127.0.0.1", true},
  };
  for (const Case& c : cases) {
    auto r = NetRange::parse(c.range);
    ASSERT_TRUE(r) << c.range;
    AccessList acl;
    acl.allow.push_back(*r);
    EXPECT_EQ(acl.permits(c.ip), c.in) << c.range << " vs " << c.ip;
  }
  EXPECT_FALSE(NetRange::parse("192.0.2.0/33"));
  EXPECT_FALSE(NetRange::parse("10.0.0.9-10.0.0.1"));
  EXPECT_FALSE(NetRange::parse("example.com"));
}

TEST(ParseTest, DurationsSizesBooleans) {
  EXPECT_EQ(parse_duration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("5"), std::chrono::seconds(5));
  EXPECT_EQ(parse_duration("2h"), std::chrono::hours(2));
  EXPECT_FALSE(parse_duration("5 minutes"));
  EXPECT_FALSE(parse_duration(""));
  EXPECT_EQ(parse_size("10M"), 10u << 20);
  EXPECT_FALSE(parse_size("10MB"));
  EXPECT_EQ(parse_bool("yes"), true);
  EXPECT_FALSE(parse_bool("maybe"));
}

}  // namespace
}  // namespace postern::core::config
