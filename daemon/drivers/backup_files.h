// The parts of a backup every driver shares: where its file goes, how it is
// made durable, and how it is checked before a restore.
//
// A backup of "env/db" lives at <backup_dir>/<env>/<db>/<UTC time><ext>
// (names made file-safe). A driver writes it to BackupFile::partial, then
// FinishBackupFile syncs it, renames it into place and checksums it
// (SHA-256), so a backup file under its final name is always complete.
// Free functions; thread-safe.
#ifndef LOCKSTEP_DAEMON_DRIVERS_BACKUP_FILES_H_
#define LOCKSTEP_DAEMON_DRIVERS_BACKUP_FILES_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/model/rollout.h"

namespace lockstep::daemon {

// The suffix of a backup file still being written.
inline constexpr char kPartialSuffix[] = ".partial";

struct BackupFile {
  Backup backup;        // environment, database, created_at and path filled
  std::string partial;  // where the driver writes it: path + kPartialSuffix
};

// Names the backup of database `name` ("env/db") taken at `start`, with
// file extension `extension` (".sqlite3"), under `dir`, and creates its
// folder.
absl::StatusOr<BackupFile> NewBackupFile(const std::string& name, const std::string& dir,
                                         const std::string& extension, absl::Time start);

// Syncs `file`'s partial file, renames it to its path, and fills its size,
// checksum and duration (since created_at). Returns the finished backup.
absl::StatusOr<Backup> FinishBackupFile(BackupFile file);

// Checks the file is there with the catalogued size and SHA-256:
// FAILED_PRECONDITION, saying which, when not.
absl::Status VerifyBackup(const Backup& backup);

// Removes the partial files under `backup_dir`: what a killed lockstepd was
// writing, never catalogued, never complete (RolloutEngine::Recover calls
// it at start). Returns how many it removed.
int RemovePartialBackups(const std::string& backup_dir);

// Lowercase hex SHA-256 of a file's bytes.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_BACKUP_FILES_H_
