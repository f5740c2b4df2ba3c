#include "daemon/rollout/backup_service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "daemon/drivers/backup_files.h"

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

}  // namespace lockstep::daemon
