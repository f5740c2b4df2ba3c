// The MySQL and MariaDB driver (MariaDB Connector/C, which speaks to both,
// and the `mariadb-dump`/`mariadb` client programs); driver.h has the
// contract.
//
// Reads: a bounded pool of connections per server (host, port or socket,
// user, password digest). Unlike libpq's, a MySQL connection is not bound
// to one database: every read names its table in full (`db`.`alembic_version`),
// so one pooled connection reads every database of a server. Each pooled
// session has max_statement_time (MariaDB) or max_execution_time (MySQL)
// and lock_wait_timeout set from server.statement_timeout, so a migration's
// metadata lock on the version table is a timeout, not a hang.
//
// Lock: GET_LOCK('lockstep:<database>', 0) on a dedicated connection held
// for the whole step; every lockstepd uses the same name, so a second
// daemon is refused too; the lock dies with its session.
//
// Backup: `mariadb-dump --single-transaction --routines --triggers` of the
// database alone (SQL text). Restore: every table, view, sequence, routine
// and event of the database dropped, then the dump replayed with the
// `mariadb` client; MySQL commits DDL statement by statement, so unlike
// PostgreSQL's a restore that fails part way is not undone. Row counts:
// COUNT(*) on the live tables, and the dump's INSERTs counted.
//
// Secrets: the password reaches child processes by MYSQL_PWD only (never
// argv), and no message holds it.
#ifndef LOCKSTEP_DAEMON_DRIVERS_MYSQL_DRIVER_H_
#define LOCKSTEP_DAEMON_DRIVERS_MYSQL_DRIVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/database_url.h"
#include "daemon/drivers/driver.h"
#include "daemon/drivers/restore_check.h"

namespace lockstep::daemon {

std::unique_ptr<Driver> MakeMysqlDriver(const ReaderOptions& options);

// Row counts by table of a backup written by TakeBackup (a mariadb-dump
// file): every table the dump creates, and the rows its INSERTs hold.
absl::StatusOr<TableCounts> MysqlDumpCounts(const std::string& path);

// `line` of a dump without its DEFINER=`user`@`host` clauses.
std::string WithoutDefiners(absl::string_view line);

// The name lockstep's GET_LOCK takes for `database` (at most 64 characters,
// MySQL's limit: a long name is replaced by its SHA-256).
std::string MysqlLockName(const std::string& database);

// The environment the MySQL client programs (mariadb-dump, mariadb) need to
// reach `url` without a password in argv: MYSQL_PWD, MYSQL_HOST, MYSQL_TCP_PORT,
// MYSQL_UNIX_PORT.
std::vector<std::string> MysqlEnvironment(const config::DatabaseUrl& url);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_MYSQL_DRIVER_H_
