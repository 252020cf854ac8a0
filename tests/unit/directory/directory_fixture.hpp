#pragma once
// A Directory over a fresh SQLite file in a temporary directory, with cheap
// argon2 parameters so that tests hash quickly.

#include "core/directory/directory.hpp"
#include "core/directory/store.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

namespace postern::core::directory::testing {

inline std::filesystem::path make_temp_dir(const char* tag) {
  static std::atomic<int> seq{0};
  auto dir = std::filesystem::temp_directory_path() /
             ("postern-dir-" + std::string(tag) + "-" + std::to_string(::getpid()) + "-" + std::to_string(seq++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline Directory::Options cheap_options(const std::filesystem::path& dir) {
  Directory::Options o;
  o.file = (dir / "directory.sqlite").string();
  o.default_domain = "example.test";
  o.hash = HashParams{1, 64, 1};
  return o;
}

class DirectoryFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = make_temp_dir("t");
    dir_ = std::make_unique<Directory>(cheap_options(tmp_));
    dir_->ensure_defaults({});
  }
  void TearDown() override {
    dir_.reset();
    std::filesystem::remove_all(tmp_);
  }
  void ok(const Status& s) { ASSERT_TRUE(s.ok()) << s.message; }

  std::filesystem::path tmp_;
  std::unique_ptr<Directory> dir_;
};

}  // namespace postern::core::directory::testing
