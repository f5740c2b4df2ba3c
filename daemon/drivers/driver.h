// One driver per SQL dialect: everything lockstep does to a database itself,
// as opposed to what Alembic does to it. A Driver reads the version rows,
// takes the database's lock, backs it up, compares it with a backup,
// restores one, and repairs what a writer killed mid-transaction left
// behind; and it answers what the layers above would otherwise ask of the
// dialect itself (transactional_ddl, Discover, scratch databases). Drivers
// holds one per dialect and is the only way the layers above (reconciler,
// rollout) reach a fleet database: no code outside daemon/drivers/ tests
// the dialect. The one other database client is lockstepd's own state
// store (daemon/state/, SQLiteCpp), which is not a fleet database and
// stays embedded; nothing else links libpqxx or SQLiteCpp.
//
// Ownership: the daemon creates one Drivers at start (MakeDrivers) and
// passes it to the reconciler and the rollout engine; there is no global.
// Every Driver is thread-safe: the reconciler reads from many threads while
// rollout steps lock, back up and restore on others. Drivers catch their
// library's exceptions and return a Status (or a VersionRead) whose message
// a person can act on and which never holds a password.
//
// Example:
//   std::shared_ptr<Drivers> drivers = MakeDrivers(options);
//   Driver& driver = drivers->For(url);
//   absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
//       driver.Lock(target, url, absl::Seconds(5), IfMissing::kRefuse);
//   absl::StatusOr<Backup> backup = driver.TakeBackup(target, url, dir, timeout);
//
// Adding a dialect (MySQL, say): write daemon/drivers/mysql_driver.{h,cc}
// with a class implementing Driver and a `MakeMysqlDriver(options)` factory
// (the client library linked PRIVATE to lockstep_drivers in
// daemon/CMakeLists.txt, its exceptions caught in mysql_driver.cc); add it
// to the list in MakeDrivers (driver.cc); test it beside it
// (mysql_driver_test.cc in lockstep_drivers_test, as version_reader_test.cc
// and sqlite_lock_test.cc do for the others). Until then For(kMysql) gives
// a driver whose every call fails with UNIMPLEMENTED, so callers need no
// special case. Shared pieces: backup_files.h (backup file names, fsync and
// rename, SHA-256, verification) and restore_check.h (comparing table row
// counts).
#ifndef LOCKSTEP_DAEMON_DRIVERS_DRIVER_H_
#define LOCKSTEP_DAEMON_DRIVERS_DRIVER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "config/database_url.h"
#include "config/inventory.h"
#include "daemon/drivers/restore_check.h"
#include "daemon/drivers/version_reader.h"
#include "daemon/model/rollout.h"

namespace lockstep::daemon {

// The target's URL with its password resolved (from password_env,
// password_file or the URL). Never print it: use Redacted().
absl::StatusOr<config::DatabaseUrl> ConnectUrl(const VersionTarget& target);

// A discover rule's server URL with its password resolved (never print it).
absl::StatusOr<config::DatabaseUrl> DiscoverUrl(const config::DiscoverRule& rule);

// The databases `names` (sorted here) on the rule's server, each reached
// with the rule's URL and secret.
std::vector<Discovered> DiscoveredOnServer(const config::DiscoverRule& rule,
                                           std::vector<std::string> names);

// What Driver::Lock does when the database does not exist (only a SQLite
// file can be missing; a PostgreSQL database that is not there fails to
// connect either way).
enum class IfMissing {
  kRefuse,  // FAILED_PRECONDITION, nothing created: a step has nothing to migrate
  kCreate,  // create it empty and lock it: a restore into a file that is gone
};

// A held database lock; destroying it releases the lock. Every lock dies
// with the process holding it, so a killed lockstepd never leaves a
// database locked. Not thread-safe: one owner.
class DatabaseLock {
 public:
  virtual ~DatabaseLock() = default;
  // Whether the database was missing and Lock created it (empty).
  virtual bool created() const { return false; }
  // OK while the lock is still held on the database it was taken on;
  // ABORTED when it was lost (PostgreSQL ended the lock's session) or the
  // database is no longer the one locked (a SQLite file replaced under the
  // same path): then nothing more may be written there, restores included.
  virtual absl::Status Check() const { return absl::OkStatus(); }
  // Environment entries that let lockstep's Alembic entry point prove that
  // env.py connected to the database locked (daemon/rollout/alembic_entry.h):
  // LOCKSTEP_TARGET_FILE=DEV:INODE, LOCKSTEP_TARGET_LOCK_PID=PID.
  virtual std::vector<std::string> Witness() const { return {}; }
};

class Driver : public VersionReader {
 public:
  // Read() (VersionReader) reads the version rows; ReadSchema() the schema
  // with them.

  virtual config::Dialect dialect() const = 0;

  // Takes `target`'s lock (`url`: ConnectUrl(target)), held until the
  // returned lock is destroyed. Does not wait: FAILED_PRECONDITION when
  // another rollout or lockstepd holds it; UNAVAILABLE when the database
  // cannot be reached within `connect_timeout`.
  virtual absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget& target,
                                                             const config::DatabaseUrl& url,
                                                             absl::Duration connect_timeout,
                                                             IfMissing if_missing) = 0;

  // Writes a backup of `target` under `dir` (backup_files.h: one folder per
  // database, written under a temporary name, renamed once complete) and
  // fills path, size, checksum, creation time and duration; the caller
  // catalogues it. FAILED_PRECONDITION when the backup fails.
  virtual absl::StatusOr<Backup> TakeBackup(const VersionTarget& target,
                                            const config::DatabaseUrl& url,
                                            const std::string& dir, absl::Duration timeout) = 0;

  // Puts `backup` (checked with VerifyBackup first) back into the database
  // at `url`, so that it holds exactly what the backup holds; a failed
  // restore changes nothing where the dialect allows it. The caller holds
  // the database's lock.
  virtual absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                                     absl::Duration timeout) = 0;

  // What restoring `backup` would overwrite (restore_check.h): the database
  // at `url`, whose version rows are `rows_now`, against the backup. Changes
  // nothing; the caller holds the database's lock.
  virtual absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                             const config::DatabaseUrl& url,
                                                             std::vector<std::string> rows_now,
                                                             absl::Duration connect_timeout,
                                                             absl::Duration timeout) = 0;

  // Whether Alembic runs this dialect's migrations in one transaction that a
  // failure rolls back (Alembic's own `transactional_ddl`): PostgreSQL, yes;
  // SQLite, no (Alembic assumes non-transactional DDL there, so a failed
  // migration leaves what ran before it). A failed step on a dialect that
  // says no is restored from its backup; one that says yes is verified at
  // its start instead.
  virtual bool transactional_ddl() const = 0;

  // The databases behind `rule` (a discover entry of this dialect: SQLite,
  // the files `glob` matches; PostgreSQL, the names `query` returns on the
  // rule's server), sorted. Reads only.
  virtual absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) {
    (void)rule;
    return absl::UnimplementedError("discovering databases of this dialect is not supported yet");
  }

  // A new, empty database for lockstep's own use (expected schemas are
  // built there), reachable with the returned URL: SQLite, a file in a new
  // temporary folder; PostgreSQL, a database named lockstep_shadow_<pid>_<n>
  // created on the server `project.shadow_postgresql` connects to (without
  // one: FAILED_PRECONDITION). DropScratch removes it (and, for SQLite, its
  // folder).
  virtual absl::StatusOr<config::DatabaseUrl> CreateScratch(const config::ProjectConfig& project) {
    (void)project;
    return absl::UnimplementedError("no scratch databases for this dialect");
  }
  virtual absl::Status DropScratch(const config::ProjectConfig& project,
                                   const config::DatabaseUrl& scratch) {
    (void)project;
    (void)scratch;
    return absl::UnimplementedError("no scratch databases for this dialect");
  }

  // Given `read`, a read of `target` that failed, repairs what a writer
  // killed mid-transaction (Alembic, stopped or crashed) left behind if that
  // is why it failed; true when it did, and the caller reads again. SQLite:
  // rolls back a hot journal, which a read-only connection cannot.
  // PostgreSQL: the server already did; always false. The caller holds the
  // database's lock.
  virtual bool RepairAfterKilledWriter(const VersionTarget& target, const VersionRead& read) = 0;

  // The environment a child process (Alembic) needs to reach the database
  // at `url`, secrets included ("KEY=value"; never put them in argv).
  virtual std::vector<std::string> ChildEnvironment(const config::DatabaseUrl& url) const = 0;

  // The URL Alembic is given on its command line and as sqlalchemy.url for
  // `url` (password included): never the password itself. By default `url`
  // without its password (libpq finds it in PGPASSWORD). MySQL: PyMySQL
  // reads no environment, so the URL names an option file that holds it
  // (read_default_file, kept in memory by lockstepd).
  virtual config::DatabaseUrl ChildUrl(const config::DatabaseUrl& url) const {
    config::DatabaseUrl out = url;
    out.password.reset();
    return out;
  }
};

// One Driver per dialect, created once; Read() reads through the target's
// dialect's driver. Thread-safe; the drivers are constant after
// construction.
class Drivers : public VersionReader {
 public:
  // `drivers`: at most one per dialect. Dialects without one get a driver
  // that fails every call with UNIMPLEMENTED.
  explicit Drivers(std::vector<std::unique_ptr<Driver>> drivers);

  // The driver for `dialect` (never null; lives as long as this object).
  Driver& For(config::Dialect dialect) const;
  Driver& For(const config::DatabaseUrl& url) const { return For(url.dialect); }

  // ReadSchema (VersionReader) through the target's dialect's driver.
  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& target,
                                            const SchemaFilter& filter) override {
    return For(target.url).ReadSchema(target, filter);
  }

  // Through the rule's dialect: a `glob` is SQLite's, a `url` names its own.
  absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) override;

  // The dialect's own key, prefixed by the dialect: batches never mix dialects.
  std::string BatchKey(const VersionTarget& target) const override {
    std::string key = For(target.url).BatchKey(target);
    return key.empty() ? key : absl::StrCat(config::DialectName(target.url.dialect), ":", key);
  }

 protected:
  VersionRead ReadRows(const VersionTarget& target) override {
    return For(target.url).Read(target);
  }
  std::vector<VersionRead> ReadRowsBatch(
      const std::vector<const VersionTarget*>& targets) override {
    if (targets.empty()) return {};
    return For(targets.front()->url).ReadBatch(targets);
  }

 private:
  std::map<config::Dialect, std::unique_ptr<Driver>> drivers_;  // constant after construction
};

// A driver for every dialect lockstep supports (PostgreSQL, SQLite). The
// daemon shares it (std::shared_ptr) between the reconciler and the engine.
std::unique_ptr<Drivers> MakeDrivers(const ReaderOptions& options);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_DRIVER_H_
