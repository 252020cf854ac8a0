#pragma once
// The manifest's <directory> element (docs/directory.md):
//   <directory file="var/directory.sqlite" default-domain="example.test"
//              router-loop-limit="10" refresh="1s"
//              hash-time="3" hash-memory="64M" hash-parallelism="1"/>
// Every attribute is optional; without the element the directory is off
// (posternd accepts every local part of <smtp><local-domain>s, as before).

#include "core/config/diagnostics.hpp"
#include "core/config/manifest.hpp"
#include "core/directory/directory.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace postern::core::directory {

struct DirectoryConfig {
  bool enabled = false;                      // a <directory> element is present
  Directory::Options options;                // file resolved, default domain chosen
  std::chrono::milliseconds refresh{1000};   // how often posternd looks for changes
  std::vector<std::string> local_domains;    // <smtp><local-domain>s (lower-case), made local domains at start
};

/**
 * Reads <directory> and the parts of <server>/<smtp> it depends on. Errors go
 * to `diag` (with lines) when given; with errors the result keeps defaults.
 * Default domain: default-domain=, else the first <smtp><local-domain>, else the server name.
 */
DirectoryConfig parse_directory_config(const config::Manifest& m, config::Diagnostics* diag);

}  // namespace postern::core::directory
