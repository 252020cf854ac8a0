#pragma once
// sdk/abi-lock.txt for the ABI tests: a file's SHA-256 and the hash the lock
// records for a version (abi_lock_test.cpp, plugin/abi_compat_test.cpp).

#include <openssl/evp.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace postern::testing::abi_lock {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string sha256_hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex;
  static const char* kDigits = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    hex += kDigits[md[i] >> 4];
    hex += kDigits[md[i] & 15];
  }
  return hex;
}

}  // namespace postern::testing::abi_lock
