// Reading a MySQL/MariaDB database's schema into the canonical model
// (daemon/schema/schema.h), from information_schema.
//
// What is normalized: integer display widths (`int(11)` and `int` are one
// type; `tinyint(1)`, MySQL's boolean, keeps its width), MariaDB's quoted
// defaults and its "NULL" for no default, RESTRICT and NO ACTION (the same
// in InnoDB), and the database's own name inside view definitions (so a
// scratch database built by Alembic compares with the real one). Column
// character sets and collations are not compared. MySQL has no schemas
// inside a database: names are unqualified. Unique constraints are kept by
// content (MySQL makes up their names too), other indexes by name.
#ifndef LOCKSTEP_DAEMON_DRIVERS_MYSQL_SCHEMA_H_
#define LOCKSTEP_DAEMON_DRIVERS_MYSQL_SCHEMA_H_

#include <string>

#include "absl/status/statusor.h"
#include "daemon/drivers/mysql_connection.h"
#include "daemon/drivers/version_reader.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

// The schema of `database` on `c`'s server, without what `filter` skips.
// UNAVAILABLE (with the server's message) when a catalog read fails.
absl::StatusOr<Schema> ReadMysqlSchema(mysql::Connection& c, const std::string& database,
                                       const SchemaFilter& filter);

// information_schema.COLUMNS.COLUMN_TYPE, normalized: "int(11) unsigned"
// -> "INT UNSIGNED", "tinyint(1)" -> "TINYINT(1)", "varchar(20)" ->
// "VARCHAR(20)".
std::string MysqlType(const std::string& column_type);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_MYSQL_SCHEMA_H_
