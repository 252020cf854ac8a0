#pragma once
// Server-side TLS (OpenSSL 3 through boost::asio::ssl): TLS 1.2 minimum,
// forward-secret AEAD ciphers, server cipher preference, several certificates
// chosen by SNI, and a self-signed certificate generated on first start when
// the manifest asks for it (<certificate generate="true"/>).

#include "core/config/manifest.hpp"

#include <boost/asio/ssl/context.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

typedef struct ssl_st SSL;

namespace postern::core::tls {

/** The negotiated parameters, for logs and the Received: header. */
struct TlsInfo {
  std::string protocol;  // "TLSv1.3"
  std::string cipher;    // "TLS_AES_256_GCM_SHA384"
  int bits = 0;
};
TlsInfo tls_info(const SSL* ssl);

enum class KeyType { Rsa2048, P256 };

/**
 * Writes a self-signed certificate (valid 10 years, CN and subjectAltName = names[0..])
 * and its private key (mode 0600), creating parent directories.
 * @throws std::runtime_error on failure.
 */
void generate_self_signed(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                          const std::vector<std::string>& names, KeyType type = KeyType::P256);

/**
 * The client-side TLS context shared by every outbound connection (delivery's
 * SMTP client, plugins' stream_connect): TLS 1.2 minimum, the system trust
 * store loaded (used only when a connection asks for verification), no
 * compression, no renegotiation. Verification mode and name are set per
 * connection.
 * @throws boost::system::system_error when OpenSSL cannot create it.
 */
std::shared_ptr<boost::asio::ssl::context> make_client_context();

class TlsContext {
 public:
  /**
   * Loads every certificate; the first one is the default, the others are chosen
   * when the client's SNI matches one of their names (exact, or "*.example.org"
   * for one label). A certificate with generate_if_missing whose files are both
   * absent is generated first (named after its names, or `fallback_name`).
   * @throws std::runtime_error naming the file when a certificate or key cannot be loaded,
   *   or when `certificates` is empty.
   */
  explicit TlsContext(const std::vector<config::Certificate>& certificates, std::string fallback_name = "localhost");
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  /** The default context; sessions create their ssl::stream from it. */
  boost::asio::ssl::context& context() { return *contexts_.front(); }

 private:
  struct Entry {
    std::vector<std::string> names;
    boost::asio::ssl::context* ctx;
  };
  static int on_servername(SSL* ssl, int* alert, void* arg);
  static void configure(boost::asio::ssl::context& ctx);

  std::vector<std::unique_ptr<boost::asio::ssl::context>> contexts_;
  std::vector<Entry> by_name_;
};

}  // namespace postern::core::tls
