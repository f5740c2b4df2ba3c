// Backups as every caller needs them: a step before Alembic runs, the
// settling of a step after a crash, and `lockstep restore`. One place takes
// a backup, catalogues it (deleting the oldest past server.backup_keep), and
// puts one back (its size and SHA-256 checked first).
//
// Example:
//   BackupService backups(store, drivers);
//   Backup meta{.revisions = step.from, .rollout_id = id};
//   absl::StatusOr<Backup> b = backups.Take(target, url, inv, meta);
//   ...
//   absl::Status s = backups.Restore(*b, url, inv);   // verified, then restored
//
// Thread-safe: the store and drivers are; both must outlive the service.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_BACKUP_SERVICE_H_
#define LOCKSTEP_DAEMON_ROLLOUT_BACKUP_SERVICE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/inventory.h"
#include "daemon/drivers/driver.h"
#include "daemon/model/clock.h"
#include "daemon/model/rollout.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {

// What an operator's restore did (BackupService::RestoreOnRequest).
struct RestoreResult {
  Backup restored;  // the backup put back, with restored_by and restored_at
  // The database as it was just before (safety_for = restored.id); id 0
  // when there was nothing to back up (a SQLite file that was gone).
  Backup safety;
  std::vector<std::string> revisions;  // version rows read after the restore
  bool changed = false;                // the database differed from the backup: it took `yes`
  absl::Time restored_at;
  // The check after the restore: OK when the database holds the backup's
  // rows; else why not (the restore itself happened).
  absl::Status check;
};

class BackupService {
 public:
  // `clock` (may be null: the wall clock) stamps created_at: the engine's
  // clock, the one its rollouts and the reconciler read.
  BackupService(StateStore* store, Drivers* drivers, const Clock* clock = nullptr)
      : store_(store), drivers_(drivers), clock_(clock) {}

  // Writes a backup of the database (the caller holds its lock) under
  // inv.server.backup_dir and catalogues it with `meta`'s revisions,
  // rollout_id, safety_for and note; then (not for a safety backup, whose
  // restore may be of the oldest one) deletes this database's backups past
  // the newest inv.server.backup_keep. A backup that cannot be
  // catalogued is deleted: no file is left that the catalog does not know.
  absl::StatusOr<Backup> Take(const VersionTarget& target, const config::DatabaseUrl& url,
                              const config::Inventory& inv, const Backup& meta) const;
  // The backup's file has the catalogued size and SHA-256.
  absl::Status Verify(const Backup& backup) const;
  // Verify, then restore into the database (the caller holds its lock).
  absl::Status Restore(const Backup& backup, const config::DatabaseUrl& url,
                       const config::Inventory& inv) const;
  // Restore without Verify, for a caller that has just verified `backup`
  // (one SHA-256 of a large file is enough).
  absl::Status RestoreVerified(const Backup& backup, const config::DatabaseUrl& url,
                               const config::Inventory& inv) const;
  // Restore by catalog id.
  absl::Status Restore(int64_t backup_id, const config::DatabaseUrl& url,
                       const config::Inventory& inv) const;

  // `lockstep restore`: puts `backup` (verified) back into `target`, the
  // database it was taken of, under the database's lock. Unless the SQLite
  // file is gone (the lock creates it empty), what is there now is backed
  // up first (a safety backup, reported to `on_backup`, whose own restore
  // undoes this one); when the database changed since `backup` was taken,
  // that is refused without `yes`, naming what would be lost. An error
  // means nothing was restored; after a restore, `check` says whether the
  // database holds the backup's rows.
  absl::StatusOr<RestoreResult> RestoreOnRequest(
      const Backup& backup, const VersionTarget& target, const config::Inventory& inv,
      const std::string& actor, bool yes,
      const std::function<void(const Backup&)>& on_backup) const;

  // What RestoreOnRequest checks before it writes anything, without the
  // database's lock: the backup's checksum, and, unless `yes`, that the
  // database did not change since the backup (the same refusal, naming what
  // would be lost). For a restore that waits for approval first: refused
  // now rather than after the approvals; RestoreOnRequest checks again.
  absl::Status CheckRestore(const Backup& backup, const VersionTarget& target,
                            const config::Inventory& inv, bool yes) const;

 private:
  // Whether the database differs from `backup`; refused when it does and
  // not `yes`, or when it cannot be read. `rows`: what it holds.
  absl::StatusOr<bool> CompareForRestore(const Backup& backup, const VersionTarget& target,
                                         const config::DatabaseUrl& url,
                                         const config::Inventory& inv, bool yes,
                                         std::vector<std::string>* rows) const;
  absl::StatusOr<Backup> TakeSafetyBackup(const Backup& backup, const VersionTarget& target,
                                          const config::DatabaseUrl& url,
                                          const config::Inventory& inv, const std::string& actor,
                                          bool yes, bool* changed) const;

  StateStore* store_;
  Drivers* drivers_;
  const Clock* clock_;
};

// "backup 3: 28672 bytes in 6ms, sha256 93d0587902ab…, /backups/..." (the
// backup_taken event).
std::string DescribeBackup(const Backup& b);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_BACKUP_SERVICE_H_
