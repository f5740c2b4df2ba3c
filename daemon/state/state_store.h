// lockstepd's durable state, in SQLite: the last check of every database
// and every observed change of its revisions ("prod/app moved from A to B,
// seen at T"), including changes made by hand outside lockstep; rollouts
// (stages, steps, events) written before each action they describe; the
// backup catalog.
//
// The schema is versioned; Open() upgrades an older file in one transaction
// and refuses a newer one. Thread-safe: one connection guarded by a mutex.
#ifndef LOCKSTEP_DAEMON_STATE_STATE_STORE_H_
#define LOCKSTEP_DAEMON_STATE_STATE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/model/audit.h"
#include "daemon/model/mutex.h"
#include "daemon/model/rollout.h"

namespace SQLite {
class Database;
}
namespace lockstep::daemon::store_util {
class StatementCache;
}

namespace lockstep::daemon {

struct CheckRecord {
  std::string database;  // "env/name"
  std::string environment;
  bool rows_known = false;  // false when the read failed: revisions unchanged
  std::vector<std::string> revisions;  // sorted
  std::string state;
  std::string outcome;  // the read's outcome (ok, unreachable, ...)
  std::string error;
  absl::Time checked_at;
};

struct LastCheck {
  std::vector<std::string> revisions;
  bool revisions_known = false;
  std::string state;
  std::string outcome;
  std::string error;
  // When the row was last written: a check that finds what the previous
  // one found writes nothing.
  absl::Time recorded_at;
  absl::Time changed_at;  // when the revisions last changed (InfinitePast: never seen)
};

// A rollout step that ended (succeeded or failed), and its rollout.
struct FinishedStep {
  std::string rollout_id;
  RolloutStep step;
};

struct RevisionChange {
  std::string database;
  std::vector<std::string> from;
  std::vector<std::string> to;
  absl::Time observed_at;
  // The first rows lockstep read there (from is empty: not "a change from
  // none", which is a database that had no rows and got some).
  bool first_seen = false;
  // What lockstep did there between the observation before and this one
  // that leaves `to` (Changes() works it out from the rollout steps and the
  // backups catalog): a rollout's step (its id and kind: upgrade,
  // downgrade, stamp, reapply), or a restore (backup id, by whom; and the
  // rollout of kind restore it waited in, where approval holds it). Neither:
  // the change was made outside lockstep (by hand, another tool).
  std::string rollout_id;
  std::string rollout_kind;
  int64_t restored_backup = 0;
  std::string restored_by;
};

// The checksums of the revision files each database applied (issue 13 #5),
// as lockstep keeps them: a set of (revision, checksum) lines is stored once
// by content (its id is the SHA-256 of its body) and shared by every
// database that applied the same files; each database names its set.
// daemon/core/revision_checksums.h writes and reads the bodies.
struct ChecksumSets {
  std::map<std::string, std::string> bodies;  // set id -> body
  std::map<std::string, std::string> of;      // database ("env/name") -> set id
};

// What Alembic built for a revision set on an empty database, kept by a
// key that names everything it depends on (daemon/core/reconciler.cc
// ExpectedKey): the dialect, the revisions, the checksums of their files and
// env.py, the schema filter.
struct StoredExpectedSchema {
  std::string schema_json;  // daemon/schema/schema_json.h
  std::string fingerprint;
  absl::Time built_at;
  absl::Duration took;
};

class StateStore {
 public:
  static constexpr int kSchemaVersion = 14;

  // `busy_timeout`: how long a write waits for another connection's lock
  // on the file before it fails.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(
      const std::string& path, absl::Duration busy_timeout = absl::Seconds(5));
  ~StateStore();

  // UNAVAILABLE when the file at the store's path is gone or another file
  // (deleted, replaced, restored underneath a running lockstepd): what it
  // writes from then on would be lost, and a restart would start afresh.
  absl::Status CheckFile() const;

  // Records checks in one transaction; a database whose known revisions
  // differ from the last known ones gets a RevisionChange. Only rows whose
  // content changes are written (a fleet at rest costs one empty
  // transaction a pass). Returns what the store holds for each check after
  // it, in the order given (for a failed read: the rows last known).
  absl::StatusOr<std::vector<LastCheck>> RecordChecks(const std::vector<CheckRecord>& checks);
  absl::StatusOr<std::map<std::string, LastCheck>> LastChecks();
  // Newest first, at most `limit`.
  absl::StatusOr<std::vector<RevisionChange>> Changes(const std::string& database, int limit);

  // Adds the sets in `changed.bodies` (kept if already there) and points
  // each database of `changed.of` at its set, in one transaction; then drops
  // the sets no database names any more.
  absl::Status SaveChecksums(const ChecksumSets& changed);
  absl::StatusOr<ChecksumSets> LoadChecksums();

  // Expected schemas by key; the 2,000 most recently used are kept.
  absl::Status SaveExpectedSchema(const std::string& key, const StoredExpectedSchema& e);
  absl::StatusOr<std::optional<StoredExpectedSchema>> LoadExpectedSchema(const std::string& key);

  // Rollouts (rollout_store.cc). SaveRollout writes everything in one
  // transaction; the others one row each, for the engine's write-ahead log.
  absl::Status SaveRollout(const Rollout& rollout);
  absl::Status SaveRolloutHeader(const Rollout& rollout);
  absl::Status SaveStage(const std::string& rollout_id, int position, const RolloutStage& stage);
  absl::Status SaveStep(const std::string& rollout_id, const RolloutStep& step);
  // Appends with the next sequence number, which it sets in `event`.
  absl::Status AppendEvent(const std::string& rollout_id, RolloutEvent* event);
  // Writes events numbered already (rollout id, event: EventLog), in one
  // transaction; one already there (same rollout and seq) stays as it is.
  absl::Status WriteEvents(const std::vector<std::pair<std::string, RolloutEvent>>& events);
  // The highest seq among a rollout's events; 0 when it has none.
  absl::StatusOr<int64_t> LastEventSeq(const std::string& rollout_id);
  absl::StatusOr<Rollout> LoadRollout(const std::string& id);  // NOT_FOUND
  // Newest first, at most `limit`; with `unfinished_only`, every one not finished.
  absl::StatusOr<std::vector<Rollout>> ListRollouts(int limit, bool unfinished_only = false);
  // Webhooks (notify): every rollout event but output lines, across
  // rollouts, in the order they were written, after the position `after`
  // (0: from the first), at most `limit`. A position only grows: an event
  // written later has a larger one.
  struct PositionedEvent {
    int64_t position = 0;
    std::string rollout_id;
    std::string rollout_kind;
    std::string rollout_target;
    std::string created_by;
    RolloutEvent event;
  };
  absl::StatusOr<std::vector<PositionedEvent>> EventsAfter(int64_t after, int limit);

  // What the fleet shows that people are told of (notify): a condition of
  // `kind` ("schema_drift", "checksum_changed") on `database` (or "" for the
  // fleet) about `subject` (a revision, or ""). One that holds and was not
  // held before becomes a fleet event; one seen to hold again is nothing
  // new (a restarted lockstepd tells nobody twice); one seen not to hold is
  // forgotten, so that its next occurrence is told. One transaction.
  struct FleetCondition {
    std::string kind;
    std::string environment;
    std::string database;
    std::string subject;
    bool holds = false;
    std::string message;  // for the event
  };
  absl::Status NoteFleetConditions(const std::vector<FleetCondition>& seen, absl::Time at);
  struct FleetEvent {
    int64_t id = 0;  // grows
    absl::Time at;
    std::string kind;
    std::string environment;
    std::string database;
    std::string message;
  };
  absl::StatusOr<std::vector<FleetEvent>> FleetEventsAfter(int64_t after, int limit);

  // Where webhook `name` stands in EventsAfter (or, with `fleet`, in
  // FleetEventsAfter); one seen for the first time starts at the newest
  // event (it is not sent the past).
  absl::StatusOr<int64_t> WebhookPosition(const std::string& name, bool fleet = false);
  absl::Status SetWebhookPosition(const std::string& name, int64_t position, bool fleet = false);

  // Events with seq > after_seq, in order, at most `limit`.
  absl::StatusOr<std::vector<RolloutEvent>> Events(const std::string& rollout_id, int64_t after_seq,
                                                   int limit);
  // The step of any rollout that ended last on `environment`/`database`
  // (its from, expected, state, rollback and times), or nullopt.
  absl::StatusOr<std::optional<FinishedStep>> LastFinishedStep(const std::string& environment,
                                                               const std::string& database);

  // Backups: AddBackup sets `backup->id`.
  absl::Status AddBackup(Backup* backup);
  absl::StatusOr<Backup> GetBackup(int64_t id);  // NOT_FOUND
  // Newest first; empty environment/database: all.
  absl::StatusOr<std::vector<Backup>> Backups(const std::string& environment,
                                              const std::string& database, int limit);
  absl::Status DeleteBackup(int64_t id);
  // Records the latest restore of backup `id`: who asked for it, and when.
  absl::Status MarkRestored(int64_t id, const std::string& who, absl::Time at);

  // The audit log: AddAudit sets `record->id`; the newest kAuditKeep
  // records are kept (a flood of refused calls cannot fill the disk).
  static constexpr int64_t kAuditKeep = 100000;
  absl::Status AddAudit(AuditRecord* record);
  // Newest first: at or after `since`, of `subject` ("" : anyone), at most `limit`.
  absl::StatusOr<std::vector<AuditRecord>> Audit(absl::Time since, const std::string& subject,
                                                 int limit);

 private:
  explicit StateStore(std::unique_ptr<SQLite::Database> db);
  absl::Status Migrate();

  // Constant after Open: the path and the file it named when opened.
  std::string path_;
  uint64_t device_ = 0;
  uint64_t inode_ = 0;
  Mutex mu_;
  std::unique_ptr<SQLite::Database> db_ ABSL_GUARDED_BY(mu_);
  // db_'s statements of the hot path; declared after it, so destroyed first.
  std::unique_ptr<store_util::StatementCache> prepared_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_STATE_STATE_STORE_H_
