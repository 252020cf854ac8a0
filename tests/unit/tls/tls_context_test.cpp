#include "core/tls/tls_context.hpp"
#include "tests/unit/temp_dir.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <random>

namespace postern::core::tls {
namespace {

namespace fs = std::filesystem;

using postern::testing::TempDir;

TEST(TlsContextTest, GeneratesSelfSignedCertificateWhenMissing) {
  for (KeyType type : {KeyType::P256, KeyType::Rsa2048}) {
    TempDir tmp;
    const fs::path cert = tmp.path / "sub" / "cert.pem", key = tmp.path / "sub" / "key.pem";
    generate_self_signed(cert, key, {"mail.example.test", "mx.example.test"}, type);
    ASSERT_TRUE(fs::exists(cert));
    ASSERT_TRUE(fs::exists(key));
    EXPECT_EQ(fs::status(key).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
    FILE* f = std::fopen(cert.c_str(), "r");
    X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    ASSERT_TRUE(x);
    EXPECT_EQ(X509_check_host(x, "mx.example.test", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_host(x, "other.example.test", 0, 0, nullptr), 0);
    X509_free(x);
  }
}

TEST(TlsContextTest, LoadsConfiguredCertificatesAndGeneratesOnce) {
  TempDir tmp;
  config::Certificate c;
  c.cert_file = tmp.path / "c.pem";
  c.key_file = tmp.path / "k.pem";
  c.generate_if_missing = true;
  { TlsContext ctx({c}, "mail.example.test"); }
  auto mtime = fs::last_write_time(c.cert_file);
  TlsContext again({c}, "mail.example.test");
  EXPECT_EQ(fs::last_write_time(c.cert_file), mtime) << "not regenerated when present";
  EXPECT_EQ(SSL_CTX_get_min_proto_version(again.context().native_handle()), TLS1_2_VERSION);
}

TEST(TlsContextTest, ReportsMissingFiles) {
  TempDir tmp;
  config::Certificate c;
  c.cert_file = tmp.path / "nope.pem";
  c.key_file = tmp.path / "nope.key";
  try {
    TlsContext ctx({c});
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.pem"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TlsContext({}), std::runtime_error);
}

}  // namespace
}  // namespace postern::core::tls
