// One rollout step, from taking the database's lock to verifying what it
// holds, and the settling of a step a killed lockstepd left running.
//
// The executor knows nothing of rollouts' scheduling: the engine gives it a
// step and the stage's policy, and hooks through which every change to the
// step is saved (write-ahead, before the action it announces) and every
// event is emitted.
//
// Run: lock (PostgreSQL advisory lock / SQLite flock), re-read the rows
// (re-plan if the database moved; done if already at the target), back up
// (backup required, or on_failure restore), run Alembic (password in the
// environment only), read the rows again and compare with the plan. A failed
// step is brought back per on_failure (an aborted one always restored) and
// checked.
//
// Settle (after a restart): stop a leftover Alembic, then look: at the
// target -> succeeded; at the start -> pending again (SQLite restored from
// the step's backup first, as it keeps partial DDL); otherwise failed,
// "needs attention".
#ifndef LOCKSTEP_DAEMON_ROLLOUT_STEP_EXECUTOR_H_
#define LOCKSTEP_DAEMON_ROLLOUT_STEP_EXECUTOR_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/core/reconciler.h"
#include "daemon/drivers/driver.h"
#include "daemon/model/clock.h"
#include "daemon/model/mutex.h"
#include "daemon/model/rollout.h"
#include "daemon/process/process.h"
#include "daemon/rollout/alembic_output.h"  // RowsText, AlembicFailure
#include "daemon/rollout/backup_service.h"
#include "daemon/rollout/startup_gate.h"
#include "daemon/rollout/step_journal.h"
#include "daemon/rollout/warm_alembic.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {

// Runs one Alembic command line (`spec`: argv, environment, folder,
// timeout), reporting its pid and each output line. The process and warm
// runners are the real ones; tests give a fake that moves a database's
// version rows without Python.
using AlembicRunFn = std::function<ProcessResult(
    const ProcessSpec& spec, const std::atomic<bool>* cancel,
    const std::function<void(int pid)>& on_start,
    const std::function<void(const std::string& line)>& on_line)>;

struct StepExecutorOptions {
  const Clock* clock = nullptr;  // step times; nullptr: the wall clock
  AlembicRunFn alembic;          // empty: project.alembic_runner decides
};

class StepExecutor {
 public:
  using Options = StepExecutorOptions;
  struct Job {
    std::string rollout_id;
    std::string kind;    // upgrade, downgrade or stamp
    std::string target;  // the identifier Alembic gets
    RolloutStage policy;
    std::string override_reason;  // stamp --force: the schema check only warns
  };
  struct Hooks {
    std::function<void(const RolloutStep&)> save;  // persist the step as it is now
    std::function<void(const RolloutStep&, EventKind kind, const std::string& message)> event;
    std::function<void(const Backup&)> backup_taken;
    std::function<bool()> stopping;  // lockstepd is stopping: leave the step running
  };

  // The reconciler gives database targets, the graph and the inventory;
  // `store` catalogues backups; `drivers` does every database I/O (read,
  // lock, backup, restore); all must outlive the executor.
  StepExecutor(std::shared_ptr<Reconciler> reconciler, StateStore* store, Drivers* drivers,
               Options options = {});
  ~StepExecutor();

  // Leaves `step` succeeded or failed; or still running when stopping.
  // `cancel` stops a running Alembic (abort, shutdown).
  void Run(const Job& job, RolloutStep* step, const std::atomic<bool>* cancel,
           const Hooks& hooks) const;
  // Leaves `step` succeeded, pending or failed.
  // What the step's Alembic (and anything it started) left running is
  // killed first. `rollout_id`: the step's rollout.
  void Settle(const std::string& rollout_id, RolloutStep* step, const Hooks& hooks) const;

  // With alembic_runner: warm, starts enough workers for the widest wave
  // (the largest max_parallel) now rather than at the first steps.
  absl::Status Prewarm(const config::Inventory& inv) const;
  // Shutdown: the warm pool starts no more workers.
  void Stop() const;

 private:
  // The phases of Run, in order (step_executor.cc says what each does).
  struct StepContext;
  absl::Status LockPhase(StepContext& c) const;
  absl::StatusOr<bool> ReplanPhase(StepContext& c) const;  // true: already at the target
  absl::Status ProvePhase(StepContext& c) const;  // env.py reaches this database
  absl::Status BackupPhase(StepContext& c) const;
  // A stamp's check before Alembic writes the rows: the schema must be what
  // Alembic builds for them (with an override: said, not enforced).
  absl::Status StampCheckPhase(StepContext& c) const;
  std::optional<ProcessResult> AlembicPhase(StepContext& c) const;
  ProcessResult RunReapply(StepContext& c, uint64_t ticket,
                           const std::function<void(int pid)>& on_start,
                           const std::function<void(const std::string& line)>& on_line) const;
  absl::Status SchemaPhase(StepContext& c, const std::vector<std::string>& rows) const;
  // The database's schema, read now, against what Alembic builds for `rows`
  // on an empty database; detail: the differences, or why there is no verdict.
  struct SchemaVerdict {
    enum Outcome { kMatch, kDiffers, kNoExpected, kUnreadable } outcome;
    std::string detail;
  };
  SchemaVerdict CompareWithAlembic(StepContext& c, const std::vector<std::string>& rows) const;
  absl::Status VerifyPhase(StepContext& c, const ProcessResult& run,
                           const VersionRead& after) const;
  // Returns the step's error: `error`, or what replaces it.
  absl::Status RollbackPhase(StepContext& c, const ProcessResult& run, const VersionRead& after,
                             absl::Status error) const;
  // Settle's parts: what the dead lockstepd's step left running, stopped;
  // then the step settled (an error: why it needs attention).
  void StopLeftovers(const std::string& rollout_id, StepJournal& journal) const;
  absl::Status SettlePhase(StepJournal& journal) const;

  // The version rows; what a killed writer left behind (a SQLite hot
  // journal) is repaired first (the caller holds the database's lock).
  VersionRead ReadRows(const VersionTarget& target) const;
  // The warm pool for WarmInterpreter(inv.project), started on first use. Shared:
  // when a reload changes the interpreter, steps still running keep the old
  // pool alive until they finish; it is stopped when the last lets go.
  absl::StatusOr<std::shared_ptr<WarmAlembic>> Warm(const config::Inventory& inv) const;
  // Runs Alembic for one step, as project.alembic_runner says, holding
  // `startup_ticket` of startup_gate_ until Alembic's first output line.
  // `earlier`: the step's run before this one (a reapply's downgrade), whose
  // output the step's output log continues.
  ProcessResult RunAlembic(const StepContext& c, const std::string& command,
                           const std::string& target, uint64_t startup_ticket,
                           const std::atomic<bool>* cancel,
                           const std::function<void(int pid)>& on_start,
                           const std::function<void(const std::string& line)>& on_line,
                           const ProcessResult* earlier = nullptr) const;

  std::shared_ptr<Reconciler> reconciler_;
  StateStore* store_;
  Drivers* drivers_;
  RealClock real_clock_;
  const Clock* clock_;  // options.clock or &real_clock_
  AlembicRunFn alembic_;
  BackupService backups_;
  mutable StartupGate startup_gate_;
  mutable Mutex warm_mu_;
  mutable std::shared_ptr<WarmAlembic> warm_ ABSL_GUARDED_BY(warm_mu_);  // started on first use
  mutable std::vector<std::string> warm_python_ ABSL_GUARDED_BY(warm_mu_);
  // Pools replaced by a reload, still held by running steps: Stop() stops
  // them too. Guarded by warm_mu_.
  mutable std::vector<std::weak_ptr<WarmAlembic>> retired_;
  mutable Mutex proven_mu_;  // held while ProvePhase checks
  // ProvePhase's keys (env.py's digest, dialect, runner) already checked.
  mutable std::set<std::string> proven_ ABSL_GUARDED_BY(proven_mu_);
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_STEP_EXECUTOR_H_
