// The SQLite driver (SQLiteCpp); driver.h has the contract.
//
// Reads: the file opened read-only for each read, waiting at most the
// statement timeout for a lock. Lock: flock() on the database file itself
// (sqlite_lock.h says why). Backup and restore: SQLite's online backup API,
// file to file, so a restore writes into the locked inode. Row counts:
// COUNT(*) on both files. Repair: a writer killed mid-transaction leaves a
// hot journal that only a read-write connection rolls back.
#ifndef LOCKSTEP_DAEMON_DRIVERS_SQLITE_DRIVER_H_
#define LOCKSTEP_DAEMON_DRIVERS_SQLITE_DRIVER_H_

#include <memory>

#include "daemon/drivers/driver.h"

namespace lockstep::daemon {

std::unique_ptr<Driver> MakeSqliteDriver(const ReaderOptions& options);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_SQLITE_DRIVER_H_
