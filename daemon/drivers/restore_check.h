// What restoring a backup would overwrite: the database as it is now,
// compared with the backup, before `restore` touches anything.
//
// Compared: the version rows (now: read from the database; in the backup:
// as the catalog recorded them when it was taken) and the row count of
// every table. SQLite counts both files with COUNT(*). PostgreSQL counts the
// live tables with COUNT(*) and the backup's by reading its data back out
// (`pg_restore --data-only`: one line per row in each COPY block), which
// costs about what the restore itself costs. Neither sees rows updated in
// place, nor changes outside tables (views, functions, sequences): the
// check is there to stop an operator overwriting work by mistake, and the
// safety backup taken before every restore covers the rest.
//
// Each driver counts its dialect's tables (Driver::CompareWithBackup); this
// file holds the comparison they share.
#ifndef LOCKSTEP_DAEMON_DRIVERS_RESTORE_CHECK_H_
#define LOCKSTEP_DAEMON_DRIVERS_RESTORE_CHECK_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "daemon/model/rollout.h"

namespace lockstep::daemon {

// One table whose row count differs between the database and the backup,
// or that only one of them has. -1: the table is not there.
struct TableCountDiff {
  std::string table;  // SQLite: its name; PostgreSQL: schema.name, quoted as needed
  int64_t rows_now = -1;
  int64_t rows_in_backup = -1;
};

struct BackupComparison {
  std::vector<std::string> rows_now;        // version rows, sorted
  std::vector<std::string> rows_in_backup;  // version rows, sorted
  std::vector<TableCountDiff> tables;       // only those that differ, by name
  int unchanged_tables = 0;

  bool changed() const { return rows_now != rows_in_backup || !tables.empty(); }
  // One line per difference, for the operator: "version rows: A now, B in
  // the backup", "users: 12 rows now, 10 in the backup", "orders: 3 rows
  // now, not in the backup", then how many tables are the same.
  std::vector<std::string> Describe() const;
};

// Row counts by table name (as TableCountDiff::table spells it).
using TableCounts = std::map<std::string, int64_t>;

// Compares a database (whose version rows are `rows_now` and whose tables
// hold `now`) with `backup` (whose tables hold `then`): what a driver's
// CompareWithBackup returns once it has counted both sides.
BackupComparison CompareTableCounts(const Backup& backup, std::vector<std::string> rows_now,
                                    const TableCounts& now, const TableCounts& then);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_RESTORE_CHECK_H_
