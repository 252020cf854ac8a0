#pragma once
// The operator's manifest, config/postern.xml (pugixml). Format: docs/manifest.md.
// load_manifest() validates everything it can without side effects and
// reports every error as FILE:LINE: message.

#include "core/config/diagnostics.hpp"
#include "core/event/event.hpp"
#include "core/log/log.hpp"

#include <pugixml.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace postern::core::config {

enum class TlsMode { None, StartTls, Implicit };
std::string_view tls_mode_name(TlsMode mode);

/** A network range of an access list: one address, a CIDR, or a range a-b. */
struct NetRange {
  std::array<uint8_t, 16> first{};  // IPv4 mapped into ::ffff:0:0/96
  std::array<uint8_t, 16> last{};
  /** Parses "192.0.2.7", "192.0.2.0/24", "2001:db8::/32", "192.0.2.1-192.0.2.9". */
  static std::optional<NetRange> parse(std::string_view text);
  bool contains(const std::array<uint8_t, 16>& address) const;
};

/** Allow/deny by address; empty allow list = everyone; deny wins. */
struct AccessList {
  std::vector<NetRange> allow;
  std::vector<NetRange> deny;
  /** @param ip textual IPv4 or IPv6 address. */
  bool permits(std::string_view ip) const;
};

/** <listener name= protocol= address= port= tls= ...> */
struct Listener {
  std::string name;
  std::string protocol;       // smtp | submission | imap | pop3 | http, or a service plugin's
  std::string address;        // "127.0.0.1", "::1", "0.0.0.0"
  uint16_t port = 0;
  TlsMode tls = TlsMode::None;
  bool require_auth = false;  // submission: AUTH before MAIL
  bool cleartext_auth = false;// allow AUTH/LOGIN before TLS
  bool enabled = true;
  AccessList access;
  pugi::xml_node node;        // for protocol-specific attributes
  uint32_t line = 0;
};

/** <certificate cert= key= names="a.example b.example"/>; the first is the default. */
struct Certificate {
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::vector<std::string> names;  // SNI names; empty for the default
  bool generate_if_missing = false;
};

/** <plugin name= enabled= timeout= on-failure=> with its own config inside. */
struct PluginEntry {
  std::string name;
  bool enabled = true;
  std::chrono::milliseconds timeout{5000};
  event::OnFailure on_failure = event::OnFailure::Continue;
  pugi::xml_node node;
  uint32_t line = 0;
  std::filesystem::path library;     // resolved <dir>/<name>.so
  std::filesystem::path descriptor;  // resolved <dir>/<name>.plugin.xml
};

/** Score thresholds (Rspamd style); 0 = action off. */
struct ScoringPolicy {
  double add_header = 6;
  double mark_subject = 0;
  double quarantine = 0;
  double reject = 15;
  std::string subject_tag = "[SPAM]";
};

struct DnsSettings {
  std::vector<std::string> servers;  // empty: /etc/resolv.conf
  std::chrono::milliseconds timeout{5000};
};

struct Manifest {
  std::filesystem::path path;
  std::shared_ptr<pugi::xml_document> doc;   // keeps plugin config nodes alive
  std::shared_ptr<Diagnostics> lines;        // line numbers of nodes

  std::string server_name;
  std::filesystem::path data_dir;
  /** posternd's control socket (docs/control-plane.md): <server control-socket=>, default <data-dir>/posternd.sock. */
  std::filesystem::path control_socket;
  std::vector<std::filesystem::path> plugin_dirs;
  log::Level log_level = log::Level::Info;
  std::filesystem::path log_file;            // empty: no file
  /**
   * Threads for blocking work (fsync, SQLite, password hashing, mailbox I/O);
   * 0 = automatic: max(8, 2 x cores), since most of that work waits on the disk.
   */
  size_t worker_threads = 0;
  size_t io_threads = 0;                     // 0: one per core
  std::vector<Certificate> certificates;
  std::vector<Listener> listeners;
  pugi::xml_node smtp;                       // <smtp> element (engine settings), may be empty
  // Sections that their subsystems validate (core/app/wire_*.cpp); may be empty.
  pugi::xml_node queue;                      // <queue>: queue manager, retry schedule
  pugi::xml_node delivery;                   // <delivery>: SMTP client, smarthost, routes, pipes
  pugi::xml_node directory;                  // <directory>: domains/accounts database
  pugi::xml_node mailstore;                  // <mailstore>: mailbox store, retention
  pugi::xml_node scheduler;                  // <scheduler>: cron jobs
  DnsSettings dns;
  ScoringPolicy scoring;
  std::vector<PluginEntry> plugins;          // manifest order, enabled or not

  uint32_t line_of(const pugi::xml_node& node) const { return lines ? lines->line_of(node) : 0; }
};

struct LoadResult {
  std::shared_ptr<const Manifest> manifest;  // null when the file could not be parsed
  std::vector<Diagnostic> errors;            // empty = valid
  /** Plugins that will be refused (missing, bad descriptor, ABI): posternd
   *  starts without them and says why; --check-config reports them too. */
  std::vector<Diagnostic> plugin_problems;
};

/**
 * Reads and validates a manifest. Relative paths in it are resolved against
 * the manifest's directory. Plugin descriptors are read and checked (present,
 * valid, name matches, ABI compatible); no plugin code is loaded.
 */
LoadResult load_manifest(const std::filesystem::path& file);

/** Parses "5s", "250ms", "2m", "1h", "3d", or a bare number of seconds. */
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
/** Parses "10M", "512k", "1G", or a bare number of octets. */
std::optional<uint64_t> parse_size(std::string_view text);
std::optional<bool> parse_bool(std::string_view text);

}  // namespace postern::core::config
