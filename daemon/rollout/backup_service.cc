#include "daemon/rollout/backup_service.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/rollout/alembic_output.h"  // RowsText

namespace lockstep::daemon {

absl::StatusOr<Backup> BackupService::Take(const VersionTarget& target,
                                           const config::DatabaseUrl& url,
                                           const config::Inventory& inv,
                                           const Backup& meta) const {
  absl::StatusOr<Backup> b =
      drivers_->For(url).TakeBackup(target, url, inv.server.backup_dir, inv.project.step_timeout);
  if (!b.ok()) return b.status();
  if (clock_ != nullptr) b->created_at = clock_->Now() - b->took;  // when it started
  b->revisions = meta.revisions;
  b->rollout_id = meta.rollout_id;
  b->safety_for = meta.safety_for;
  b->note = meta.note;
  absl::Status catalogued = store_->AddBackup(&*b);
  if (!catalogued.ok()) {
    ::unlink(b->path.c_str());
    return absl::InternalError(
        absl::StrCat("cannot catalogue the backup: ", catalogued.message()));
  }
  // Retention: the newest backup_keep backups of this database stay. Not
  // for a safety backup: the backup being restored may be the oldest.
  if (meta.safety_for != 0) return b;
  absl::StatusOr<std::vector<Backup>> all = store_->Backups(b->environment, b->database, 1 << 20);
  if (all.ok()) {
    for (size_t k = static_cast<size_t>(inv.server.backup_keep); k < all->size(); ++k) {
      ::unlink((*all)[k].path.c_str());
      absl::Status deleted = store_->DeleteBackup((*all)[k].id);
      (void)deleted;  // a catalog row left behind is refused at restore (file missing)
    }
  }
  return b;
}

absl::Status BackupService::Verify(const Backup& backup) const { return VerifyBackup(backup); }

absl::Status BackupService::Restore(const Backup& backup, const config::DatabaseUrl& url,
                                    const config::Inventory& inv) const {
  absl::Status verified = VerifyBackup(backup);
  if (!verified.ok()) return verified;
  return RestoreVerified(backup, url, inv);
}

absl::Status BackupService::RestoreVerified(const Backup& backup, const config::DatabaseUrl& url,
                                            const config::Inventory& inv) const {
  return drivers_->For(url).RestoreBackup(backup, url, inv.project.step_timeout);
}

absl::Status BackupService::Restore(int64_t backup_id, const config::DatabaseUrl& url,
                                    const config::Inventory& inv) const {
  if (backup_id == 0) return absl::FailedPreconditionError("no backup was taken");
  absl::StatusOr<Backup> b = store_->GetBackup(backup_id);
  if (!b.ok()) return b.status();
  return Restore(*b, url, inv);
}

absl::StatusOr<RestoreResult> BackupService::RestoreOnRequest(
    const Backup& backup, const VersionTarget& target, const config::Inventory& inv,
    const std::string& actor, bool yes, const std::function<void(const Backup&)>& on_backup) const {
  absl::Status verified = Verify(backup);
  if (!verified.ok()) return verified;
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(target);
  if (!url.ok()) return url.status();
  // A SQLite file that is gone holds nothing to lose and nothing to back
  // up: the lock creates it empty (and removes it again if the restore
  // fails), the restore fills it.
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
      drivers_->For(*url).Lock(target, *url, inv.server.connect_timeout, IfMissing::kCreate);
  if (!lock.ok()) return lock.status();

  RestoreResult result;
  if ((*lock)->created()) {
    result.changed = true;
  } else {
    absl::StatusOr<Backup> safety =
        TakeSafetyBackup(backup, target, *url, inv, actor, yes, &result.changed);
    if (!safety.ok()) return safety.status();
    if (on_backup) on_backup(*safety);
    result.safety = *std::move(safety);
  }
  absl::Status restored = (*lock)->Check();
  if (restored.ok()) restored = RestoreVerified(backup, *url, inv);  // verified above
  if (!restored.ok()) {
    if (result.safety.id == 0) return restored;
    return absl::Status(restored.code(), absl::StrCat(restored.message(), " (safety backup ",
                                                      result.safety.id, " was taken first)"));
  }
  result.restored_at = clock_ != nullptr ? clock_->Now() : absl::Now();
  VersionRead read = drivers_->Read(target);
  lock->reset();

  result.restored = backup;
  result.restored.restored_by = actor;
  result.restored.restored_at = result.restored_at;
  result.revisions = read.rows;
  const std::string undo =
      result.safety.id == 0
          ? ""
          : absl::StrCat("; safety backup ", result.safety.id, " holds what was there before");
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    result.check = absl::UnavailableError(absl::StrCat(
        "restored ", target.name, " but cannot read its version rows: ", read.error, undo));
  } else if (read.rows != backup.revisions) {
    result.check = absl::DataLossError(
        absl::StrCat("restored ", target.name, " from backup ", backup.id, " but it holds ",
                     RowsText(read.rows), ", not the backup's ", RowsText(backup.revisions), undo));
  }
  return result;
}

absl::StatusOr<bool> BackupService::CompareForRestore(const Backup& backup,
                                                      const VersionTarget& target,
                                                      const config::DatabaseUrl& url,
                                                      const config::Inventory& inv, bool yes,
                                                      std::vector<std::string>* rows) const {
  // A database that cannot be read cannot be compared or backed up: refused,
  // even with `yes` (restore such a one by hand).
  VersionRead before = drivers_->Read(target);
  if (rows != nullptr) *rows = before.rows;
  if (before.outcome != ReadOutcome::kOk && before.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(absl::StrCat("cannot read the version rows of ", target.name,
                                               ", so cannot tell what restoring backup ", backup.id,
                                               " would lose: ", before.error));
  }
  absl::StatusOr<BackupComparison> diff = drivers_->For(url).CompareWithBackup(
      backup, url, before.rows, inv.server.connect_timeout, inv.project.step_timeout);
  if (!diff.ok()) return diff.status();
  if (diff->changed() && !yes) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.name, " changed since backup ", backup.id,
        " was taken; restoring it would lose:\n  ", absl::StrJoin(diff->Describe(), "\n  "),
        "\nNothing was changed. To restore anyway (a safety backup of what is there now is "
        "taken first), confirm with --yes"));
  }
  return diff->changed();
}

absl::Status BackupService::CheckRestore(const Backup& backup, const VersionTarget& target,
                                         const config::Inventory& inv, bool yes) const {
  absl::Status verified = Verify(backup);
  if (!verified.ok()) return verified;
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(target);
  if (!url.ok()) return url.status();
  // A SQLite file that is gone holds nothing to lose.
  if (url->dialect == config::Dialect::kSqlite && !url->database.empty() &&
      !std::filesystem::exists(url->database)) {
    return absl::OkStatus();
  }
  return CompareForRestore(backup, target, *url, inv, yes, nullptr).status();
}

absl::StatusOr<Backup> BackupService::TakeSafetyBackup(
    const Backup& backup, const VersionTarget& target, const config::DatabaseUrl& url,
    const config::Inventory& inv, const std::string& actor, bool yes, bool* changed) const {
  std::vector<std::string> rows;
  absl::StatusOr<bool> differs = CompareForRestore(backup, target, url, inv, yes, &rows);
  if (!differs.ok()) return differs.status();
  *changed = *differs;
  // The same machinery as a step's backup, so that `lockstep restore <its
  // id>` undoes this restore.
  Backup meta;
  meta.revisions = rows;
  meta.safety_for = backup.id;
  meta.note = absl::StrCat("safety copy taken before ", actor, " restored backup ", backup.id);
  absl::StatusOr<Backup> safety = Take(target, url, inv, meta);
  if (!safety.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("nothing restored: the safety backup of ",
                                                      target.name,
                                                      " failed: ", safety.status().message()));
  }
  return safety;
}

std::string DescribeBackup(const Backup& b) {
  return absl::StrCat("backup ", b.id, ": ", b.size_bytes, " bytes in ",
                      absl::FormatDuration(absl::Trunc(b.took, absl::Milliseconds(1))), ", sha256 ",
                      b.sha256.substr(0, 12), "…, ", b.path);
}

}  // namespace lockstep::daemon
