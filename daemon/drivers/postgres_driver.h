// The PostgreSQL driver (libpqxx 6.4, and the PostgreSQL client programs
// pg_dump, pg_restore and psql); driver.h has the contract.
//
// Reads: a bounded pool of connections per server (host, port, user),
// reused across reads; no transaction is left open. Lock: a session-level
// advisory lock on a dedicated connection held for the whole step (every
// lockstepd uses the same key, so a second daemon is refused too); it dies
// with the connection. Backup: `pg_dump -Fc`, the password through
// PGPASSWORD. Restore: every user schema dropped and the dump replayed
// (pg_restore to SQL, then psql) in one transaction, so a failed restore
// changes nothing. Row counts: COUNT(*) on the live tables, and the
// backup's rows read back out with `pg_restore --data-only`. Repair:
// nothing to do (the server rolls back a killed session's transaction).
#ifndef LOCKSTEP_DAEMON_DRIVERS_POSTGRES_DRIVER_H_
#define LOCKSTEP_DAEMON_DRIVERS_POSTGRES_DRIVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/database_url.h"
#include "daemon/drivers/driver.h"

namespace lockstep::daemon {

std::unique_ptr<Driver> MakePostgresDriver(const ReaderOptions& options);

// libpq's environment for `url` (PGHOST, PGPORT, PGUSER, PGDATABASE,
// PGPASSWORD, PGSSLMODE...): how secrets reach child processes.
std::vector<std::string> LibpqEnvironment(const config::DatabaseUrl& url);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_POSTGRES_DRIVER_H_
