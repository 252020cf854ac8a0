#include "core/tls/tls_context.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <cstdio>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace postern::core::tls {

namespace fs = std::filesystem;

namespace {

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  if (!e) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

struct PkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };

bool name_matches(std::string_view pattern, std::string_view host) {
  auto lower_eq = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
  };
  if (pattern.substr(0, 2) == "*.") {
    size_t dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && lower_eq(pattern.substr(1), host.substr(dot));
  }
  return lower_eq(pattern, host);
}

}  // namespace

TlsInfo tls_info(const SSL* ssl) {
  TlsInfo info;
  if (!ssl) return info;
  info.protocol = SSL_get_version(ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl)) {
    info.cipher = SSL_CIPHER_get_name(c);
    info.bits = SSL_CIPHER_get_bits(c, nullptr);
  }
  return info;
}

void generate_self_signed(const fs::path& cert_file, const fs::path& key_file, const std::vector<std::string>& names,
                          KeyType type) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(type == KeyType::Rsa2048 ? EVP_RSA_gen(2048)
                                                                   : EVP_EC_gen("P-256"));
  if (!key) throw std::runtime_error("TLS: key generation failed: " + openssl_error());
  std::unique_ptr<X509, X509Free> x509(X509_new());
  if (!x509) throw std::runtime_error("TLS: X509_new failed");
  X509_set_version(x509.get(), 2);
  unsigned char serial[16];
  FILE* ur = std::fopen("/dev/urandom", "rb");
  if (!ur || std::fread(serial, 1, sizeof serial, ur) != sizeof serial) {
    if (ur) std::fclose(ur);
    throw std::runtime_error("TLS: cannot read /dev/urandom");
  }
  std::fclose(ur);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x509.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(x509.get(), key.get());
  const std::string cn = names.empty() ? std::string("localhost") : names.front();
  X509_NAME* name = X509_get_subject_name(x509.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("Postern"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x509.get(), name);
  std::string san;
  for (const auto& n : names.empty() ? std::vector<std::string>{cn} : names) {
    if (!san.empty()) san += ",";
    san += "DNS:" + n;
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x509.get(), x509.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, san}, std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
                            std::pair{NID_ext_key_usage, std::string("serverAuth")}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (!ext) throw std::runtime_error("TLS: cannot build extension: " + openssl_error());
    X509_add_ext(x509.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (!X509_sign(x509.get(), key.get(), EVP_sha256())) throw std::runtime_error("TLS: signing failed: " + openssl_error());

  if (!cert_file.parent_path().empty()) fs::create_directories(cert_file.parent_path());
  if (!key_file.parent_path().empty()) fs::create_directories(key_file.parent_path());
  // The key is created 0600 from the start: never world-readable, not even briefly.
  int fd = ::open(key_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(fmt::format("TLS: cannot create {}", key_file.string()));
  ::fchmod(fd, 0600);
  FILE* kf = ::fdopen(fd, "wb");
  if (!kf || !PEM_write_PrivateKey(kf, key.get(), nullptr, nullptr, 0, nullptr, nullptr)) {
    if (kf) std::fclose(kf); else ::close(fd);
    throw std::runtime_error(fmt::format("TLS: cannot write {}", key_file.string()));
  }
  std::fclose(kf);
  FILE* cf = std::fopen(cert_file.c_str(), "wb");
  if (!cf || !PEM_write_X509(cf, x509.get())) {
    if (cf) std::fclose(cf);
    throw std::runtime_error(fmt::format("TLS: cannot write {}", cert_file.string()));
  }
  std::fclose(cf);
}

void TlsContext::configure(boost::asio::ssl::context& ctx) {
  SSL_CTX* c = ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
  // TLS 1.2: ECDHE with AEAD only (Mozilla "intermediate"); TLS 1.3 suites are all good.
  SSL_CTX_set_cipher_list(c,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                          "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384");
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_dh_auto(c, 1);
}

TlsContext::TlsContext(const std::vector<config::Certificate>& certificates, std::string fallback_name) {
  if (certificates.empty()) throw std::runtime_error("TLS: no <certificate> configured");
  for (const auto& cert : certificates) {
    if (cert.generate_if_missing && !fs::exists(cert.cert_file) && !fs::exists(cert.key_file)) {
      generate_self_signed(cert.cert_file, cert.key_file,
                           cert.names.empty() ? std::vector<std::string>{fallback_name} : cert.names);
    }
    auto ctx = std::make_unique<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
    configure(*ctx);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(cert.cert_file.string(), ec);
    if (ec) throw std::runtime_error(fmt::format("TLS: cannot load certificate {}: {}", cert.cert_file.string(), ec.message()));
    ctx->use_private_key_file(cert.key_file.string(), boost::asio::ssl::context::pem, ec);
    if (ec) throw std::runtime_error(fmt::format("TLS: cannot load key {}: {}", cert.key_file.string(), ec.message()));
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      throw std::runtime_error(fmt::format("TLS: key {} does not match certificate {}", cert.key_file.string(),
                                           cert.cert_file.string()));
    }
    by_name_.push_back({cert.names, ctx.get()});
    contexts_.push_back(std::move(ctx));
  }
  SSL_CTX* def = contexts_.front()->native_handle();
  SSL_CTX_set_tlsext_servername_callback(def, &TlsContext::on_servername);
  SSL_CTX_set_tlsext_servername_arg(def, this);
}

TlsContext::~TlsContext() = default;

int TlsContext::on_servername(SSL* ssl, int* /*alert*/, void* arg) {
  auto* self = static_cast<TlsContext*>(arg);
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!host) return SSL_TLSEXT_ERR_NOACK;
  for (const auto& e : self->by_name_) {
    for (const auto& n : e.names) {
      if (name_matches(n, host)) {
        if (e.ctx != self->contexts_.front().get()) SSL_set_SSL_CTX(ssl, e.ctx->native_handle());
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  // Unknown name: keep the default certificate (mail clients rarely verify names on port 25).
  return SSL_TLSEXT_ERR_OK;
}

std::shared_ptr<boost::asio::ssl::context> make_client_context() {
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_compression |
                   SSL_OP_NO_RENEGOTIATION);
  boost::system::error_code ec;
  ctx->set_default_verify_paths(ec);  // without a store, verification fails closed
  return ctx;
}

}  // namespace postern::core::tls
