// What a rollout does to one database besides running Alembic: hold its
// target lock, back it up, check and restore a backup.
//
// Locks: PostgreSQL, a session-level advisory lock on a dedicated connection
// held for the whole step (every lockstepd uses the same key, so a second
// daemon is refused too); SQLite, flock() on the database file itself
// (sqlite_lock.h says why). Both die with the process that holds them, so a
// killed lockstepd never leaves a database locked.
//
// Backups: SQLite through the online backup API; PostgreSQL with
// `pg_dump -Fc`, password through PGPASSWORD. Files are written under a
// temporary name and renamed once complete and checksummed (SHA-256).
#ifndef LOCKSTEP_DAEMON_ROLLOUT_DATABASE_OPS_H_
#define LOCKSTEP_DAEMON_ROLLOUT_DATABASE_OPS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/database_url.h"
#include "daemon/model/rollout.h"
#include "daemon/drivers/version_reader.h"
#include "daemon/drivers/sqlite_lock.h"

namespace lockstep::daemon {

// The target's URL with its password resolved (from password_env,
// password_file or the URL). Never print it: use Redacted().
absl::StatusOr<config::DatabaseUrl> ConnectUrl(const VersionTarget& target);

// libpq's environment for `url` (PGHOST, PGPORT, PGUSER, PGDATABASE,
// PGPASSWORD, PGSSLMODE...): how secrets reach child processes.
std::vector<std::string> LibpqEnvironment(const config::DatabaseUrl& url);

class DatabaseLock {
 public:
  // Does not wait: FAILED_PRECONDITION when someone else holds it. A SQLite
  // file that does not exist is refused (nothing to migrate) unless
  // `if_missing` is kCreate (a restore recreates it).
  static absl::StatusOr<std::unique_ptr<DatabaseLock>> Acquire(
      const VersionTarget& target, const config::DatabaseUrl& url, absl::Duration connect_timeout,
      SqliteFileLock::IfMissing if_missing = SqliteFileLock::IfMissing::kRefuse);
  ~DatabaseLock();
  DatabaseLock(const DatabaseLock&) = delete;
  DatabaseLock& operator=(const DatabaseLock&) = delete;

  // Whether the SQLite file was missing and Acquire created it (empty).
  bool created_sqlite_file() const { return sqlite_ != nullptr && sqlite_->created(); }

 private:
  struct Pg;
  DatabaseLock() = default;
  std::unique_ptr<SqliteFileLock> sqlite_;
  std::unique_ptr<Pg> pg_;
};

// Writes a backup of `target` under `dir` and fills path, size, checksum,
// creation time and duration (the caller catalogues it).
absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl& url,
                                  const std::string& dir, absl::Duration timeout);

// Checks the file is there with the catalogued size and SHA-256.
absl::Status VerifyBackup(const Backup& backup);

// Puts `backup` back into the database (after VerifyBackup), so that it holds
// exactly what the backup holds: SQLite through the backup API; PostgreSQL by
// dropping every user schema and replaying the dump (pg_restore to SQL, then
// psql), all in one transaction: a failed restore changes nothing. The
// caller holds the database's lock.
absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                           absl::Duration timeout);

// Lowercase hex SHA-256 of a file's bytes.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_DATABASE_OPS_H_
