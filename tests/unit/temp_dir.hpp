#pragma once
// A fresh directory under the system temp dir for one test, removed with
// everything in it when the test ends.

#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

namespace postern::testing {

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(std::string_view prefix = "postern-test") {
    path = std::filesystem::temp_directory_path() /
           (std::string(prefix) + "-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace postern::testing
