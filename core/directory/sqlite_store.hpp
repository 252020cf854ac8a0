#pragma once
// The default DirectoryStore: one SQLite database (WAL, 5 s busy timeout) that
// posternd and posternctl open at the same time. The schema is versioned with
// PRAGMA user_version and migrated forward on open (docs/directory.md).

#include "core/directory/store.hpp"

#include <memory>
#include <string>

struct sqlite3;

namespace postern::core::directory {

/** The schema version this build writes. */
inline constexpr int kSchemaVersion = 3;

/**
 * Applies migration steps current+1 .. `target` in one transaction each.
 * @throws std::runtime_error when a step fails or the database is newer than this build.
 */
void migrate_schema(sqlite3* db, int target = kSchemaVersion);

/** The database's PRAGMA user_version. */
int schema_version(sqlite3* db);

/**
 * Opens (creating the file and its directory when missing) and migrates.
 * @throws std::runtime_error with the file name and SQLite's reason.
 */
std::unique_ptr<DirectoryStore> open_sqlite_store(const std::string& file);

}  // namespace postern::core::directory
