// Reads a SQLite database's schema into lockstep's canonical model
// (daemon/schema/schema.h) from its PRAGMAs (table_xinfo, index_list,
// index_info, foreign_key_list) rather than its CREATE text, so a table
// rebuilt by Alembic's batch mode reads the same as one created directly.
// CHECK constraints have no PRAGMA: they are taken from the CREATE TABLE
// text. Left out: SQLite's own tables (sqlite_*), the version table and
// whatever `filter` ignores.
#ifndef LOCKSTEP_DAEMON_DRIVERS_SQLITE_SCHEMA_H_
#define LOCKSTEP_DAEMON_DRIVERS_SQLITE_SCHEMA_H_

#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "daemon/drivers/driver.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

// Throws SQLite::Exception; the driver turns it into a Status.
Schema ReadSqliteSchema(SQLite::Database& db, const SchemaFilter& filter);

// The CHECK expressions of a CREATE TABLE statement, normalized.
std::vector<std::string> SqliteChecks(const std::string& create_table);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_SQLITE_SCHEMA_H_
