// A rollout: moving databases to a target revision, environment by
// environment. Plain data, shared by the planner, the engine, the state
// store and the API adapter.
//
// Shape: a rollout has stages (one per environment, in promotion order);
// a stage's steps are grouped in waves (each canary alone, then waves of
// batch_size); a step is one database moved along Alembic's own path.
// States are enums (states.h), stored and shown by their stable names.
#ifndef LOCKSTEP_DAEMON_MODEL_ROLLOUT_H_
#define LOCKSTEP_DAEMON_MODEL_ROLLOUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/model/states.h"

namespace lockstep::daemon {

struct RolloutStep {
  int index = 0;  // position in the rollout; the order steps are started in
  std::string environment;
  std::string database;
  int wave = 0;  // inside its stage; canaries take the first waves
  bool canary = false;
  std::vector<std::string> from;      // version rows when planned (or re-read)
  std::vector<std::string> expected;  // version rows after the step
  std::vector<std::string> path;      // revisions Alembic runs, in order
  StepState state = StepState::kPending;
  // While running, what is being done (written before it is done).
  StepPhase phase = StepPhase::kNone;
  std::string error;     // why it failed or was skipped
  std::string rollback;  // restored, rolled_back, downgraded, left, or "<how>_failed"
  std::string output;    // Alembic's output (the last 64 KiB)
  // The file that holds the whole output when it was longer than `output`
  // (server.output_dir); empty when `output` is all of it.
  std::string output_log;
  int exit_code = -1;    // Alembic's, -1 when it did not run or was killed
  int64_t backup_id = 0;
  int pid = 0;  // Alembic's process while it runs
  // ProcessIdentity(pid) when it started: a restarted lockstepd kills that
  // process only if the pid still names it.
  std::string pid_identity;
  int attempts = 0;
  absl::Duration alembic_time;  // wall time of Alembic's process
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();

  std::string key() const { return environment + "/" + database; }
  bool finished() const {
    return state == StepState::kSucceeded || state == StepState::kFailed ||
           state == StepState::kSkipped;
  }
};

struct RolloutStage {
  std::string environment;
  StageState state = StageState::kPending;
  absl::Duration soak;  // the previous stage must have held the target this long
  bool approval_required = false;
  int batch_size = 10;
  int max_parallel = 4;
  int max_failures = 0;
  FailurePolicy on_failure = FailurePolicy::kRestore;
  bool backup_required = false;
  int failures = 0;
  // Four eyes: the gate opens once `approvals_required` different people
  // approved (`approvers`, in order); then approved_by names them all and
  // approved_at is when the last one did.
  int approvals_required = 1;
  bool distinct_from_requester = false;  // the rollout's requester may not approve
  std::vector<std::string> approvers;
  std::string approved_by;
  absl::Time approved_at = absl::InfinitePast();
  // The canary gate (see EnvironmentConfig): after the canary waves, hold
  // for canary_soak, then wait for an approval when required.
  absl::Duration canary_soak;
  bool canary_approval_required = false;
  std::string canary_approved_by;
  absl::Time canary_approved_at = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
};

struct Rollout {
  std::string id;
  // "upgrade"; "downgrade" or "stamp" (one database, incident work: a stamp
  // writes the version rows with `alembic stamp --purge`, running nothing).
  std::string kind = "upgrade";
  std::string target;            // the identifier as given (heads, a revision, label@head)
  std::vector<std::string> target_revisions;  // what it resolved to when planned
  RolloutState state = RolloutState::kRunning;
  std::string reason;  // why it ended the way it did, or what it waits for
  std::string created_by;
  bool override_promotion = false;
  // Why an operator overrode a refusal (`stamp --force --reason`); empty
  // when nothing was overridden.
  std::string override_reason;
  // Why change windows do not hold this rollout (an admin's override);
  // empty: they do.
  std::string override_window;
  absl::Time created_at = absl::InfinitePast();
  absl::Time updated_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
  std::vector<RolloutStage> stages;
  std::vector<RolloutStep> steps;

  bool finished() const {
    return state == RolloutState::kSucceeded || state == RolloutState::kFailed ||
           state == RolloutState::kHalted || state == RolloutState::kAborted;
  }
};

struct RolloutEvent {
  int64_t seq = 0;  // per rollout, from 1
  absl::Time at;
  EventKind kind = EventKind::kOutput;
  std::string environment;
  std::string database;
  std::string message;
};

struct Backup {
  int64_t id = 0;
  std::string environment;
  std::string database;
  std::vector<std::string> revisions;  // version rows when taken
  std::string path;
  int64_t size_bytes = 0;
  std::string sha256;  // hex
  std::string rollout_id;
  absl::Time created_at;
  absl::Duration took;
  // Backups a restore takes of the database it is about to overwrite (so
  // that the restore can be undone) have no rollout: safety_for names the
  // backup being restored, and note says so in words.
  int64_t safety_for = 0;
  std::string note;
  // The last restore of this backup, kept so that `lockstep backups` says
  // who put it back (InfinitePast: never restored).
  std::string restored_by;
  absl::Time restored_at = absl::InfinitePast();
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_ROLLOUT_H_
