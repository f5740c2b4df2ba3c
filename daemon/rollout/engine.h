// The rollout engine: runs rollouts stage by stage, wave by wave, step by
// step, writing each step's state to the store before acting on it, and
// picks unfinished rollouts up again after a restart or a crash.
//
// Example:
//   RolloutEngine engine(reconciler, store.get(), MakeDrivers(opts));
//   engine.Recover();                         // at start: continue what was running
//   absl::StatusOr<Rollout> r = engine.Start({.target = "heads"});
//   engine.Approve(r->id, "alice");           // protected environments wait for this
//
// Each step is run by a StepExecutor (lock, backup, Alembic, verify,
// restore); the engine schedules them and counts failures: past an
// environment's max_failures the rollout halts.
//
// Thread-safe. Each active rollout has a runner thread; a wave runs its steps
// on up to max_parallel threads. Stop() ends all of them without marking
// anything finished (a running Alembic is stopped, as if lockstepd had
// crashed); Recover() in the next process reconciles from the databases.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_ENGINE_H_
#define LOCKSTEP_DAEMON_ROLLOUT_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "daemon/core/reconciler.h"
#include "daemon/drivers/driver.h"
#include "daemon/model/mutex.h"
#include "daemon/model/rollout.h"
#include "daemon/rollout/event_log.h"
#include "daemon/rollout/planner.h"
#include "daemon/rollout/step_executor.h"
#include "daemon/state/state_store.h"

namespace lockstep::daemon {

// Callbacks for logs and metrics; called with the engine's lock held, so
// they must not call back into the engine.
struct RolloutHooks {
  std::function<void(const Rollout&, const RolloutEvent&)> on_event;
  std::function<void(const RolloutStep&, absl::Duration took)> on_step_finished;
  std::function<void(const Backup&)> on_backup;
  // After a restore (its safety backup also goes to on_backup).
  std::function<void(const RestoreResult&)> on_restore;
  std::function<void(const Rollout&)> on_rollout_finished;
  std::function<void(int active, int awaiting_approval, int awaiting_window)> on_gauges;
  // The state store stopped taking writes (ok false, `why` says how) or
  // takes them again (ok true). Called with the engine's lock held, on each
  // change only.
  std::function<void(bool ok, const std::string& why)> on_store;
};

struct RolloutEngineOptions {
  // Soaks, gates and every recorded time; nullptr: the wall clock. Must
  // outlive the engine.
  const Clock* clock = nullptr;
  AlembicRunFn alembic;  // empty: project.alembic_runner (tests: a fake)
};

class RolloutEngine {
 public:
  using Options = RolloutEngineOptions;

  RolloutEngine(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                std::shared_ptr<Drivers> drivers, RolloutHooks hooks = {},
                Options options = {});
  ~RolloutEngine();

  // Continues every unfinished rollout in the store; a step that was running
  // is settled from what its database holds (at target: succeeded; at start:
  // retried; anywhere else: failed, needs attention).
  absl::Status Recover();

  // A dry run on a fresh check of the fleet and a lint of the scripts. See
  // PlanRollout for errors; blocking problems are in the plan.
  absl::StatusOr<RolloutPlan> Plan(const RolloutRequest& request);
  // Plans and starts. FAILED_PRECONDITION when an environment in scope has
  // an active rollout, or a pre-check fails.
  absl::StatusOr<Rollout> Start(const RolloutRequest& request);
  // One database to `target` (usually older), with a backup first.
  // `lockstep stamp`: see PlanStamp (planner.h). `override_reason`
  // non-empty: stamped even if the schema is not `revision`'s (recorded).
  absl::StatusOr<Rollout> Stamp(const std::string& environment, const std::string& database,
                                const std::string& revision, const std::string& requested_by,
                                const std::string& override_reason);
  absl::StatusOr<Rollout> Downgrade(const std::string& environment, const std::string& database,
                                    const std::string& target, const std::string& requested_by);
  // `lockstep reapply`: see PlanReapply (planner.h).
  absl::StatusOr<Rollout> Reapply(const std::string& environment, const std::string& database,
                                  const std::string& revision, const std::string& requested_by);

  // `may_approve` (when set) is asked, with the lock held, about the
  // environment whose gate waits; its error is returned, nothing approved.
  absl::Status Approve(
      const std::string& id, const std::string& who,
      const std::function<absl::Status(const std::string& environment)>& may_approve = nullptr);
  absl::Status Pause(const std::string& id, const std::string& who);
  absl::Status Resume(const std::string& id, const std::string& who);
  // No new steps; a running Alembic is stopped and its database restored.
  absl::Status Abort(const std::string& id, const std::string& who);

  absl::StatusOr<Rollout> Get(const std::string& id);
  // Just the state (cheap: no copy of the steps).
  absl::StatusOr<RolloutState> StateOf(const std::string& id);
  absl::StatusOr<std::vector<Rollout>> List(int limit);
  // Up to `max` events after `after_seq` (none yet: empty), without
  // waiting. `*active` says whether the rollout was still running when they
  // were read (if not, fewer than `max` events means they were its last);
  // then `*state` is its state, else `*state` is left alone (StateOf reads
  // an ended rollout's from the store, and says NOT_FOUND for no rollout).
  absl::StatusOr<std::vector<RolloutEvent>> ReadEvents(const std::string& id, int64_t after_seq,
                                                       int max, bool* active, RolloutState* state);
  // How many events have been emitted since start: a watcher that saw this
  // number before has nothing new to read while it stays the same.
  uint64_t EventsEmitted();

  absl::StatusOr<std::vector<Backup>> Backups(const std::string& environment,
                                              const std::string& database, int limit);
  // Puts backup `backup_id` back, so that it can be undone: checks the
  // checksum, takes the database's lock, compares the database with the
  // backup (Driver::CompareWithBackup), takes a safety backup of the
  // database as it is (catalogued with safety_for = backup_id: restoring it
  // undoes this), restores, records `who` on the backup, re-reads the
  // version rows.
  // When the database changed since the backup and `yes` is false:
  // FAILED_PRECONDITION listing what would be lost, and nothing is written.
  // A SQLite file that is gone is recreated without either (nothing to lose).
  absl::StatusOr<RestoreResult> Restore(int64_t backup_id, const std::string& who, bool yes);
  // The same, for a database whose environment requires approval: a
  // one-step rollout of kind "restore" (PlanRestore) that waits for the
  // environment's approvals like any rollout, then restores as above. What
  // Restore would refuse at once (a bad checksum; a changed database
  // without `yes`) is refused now, before anyone is asked to approve.
  absl::StatusOr<Rollout> RequestRestore(int64_t backup_id, const std::string& who, bool yes);

  // Starts the warm Alembic workers (alembic_runner: warm) on a background
  // thread; `done` gets the outcome.
  void Prewarm(std::function<void(const absl::Status&, absl::Duration)> done);

  // Ends every runner (see above). Idempotent.
  void Stop();

  // Why lockstepd may not act now: its state store refused a write, or the
  // file was deleted or replaced underneath it; empty when it may. While
  // set, every active rollout is halted (running steps finish, none start),
  // and Start, Downgrade, Approve, Resume and Restore are refused.
  std::string StoreError() const;
  // Checks that the state store file is still the one open, and, after a
  // failed write (with `retry_writes`), writes every active rollout again;
  // OK (and StoreError() empty) once the store takes writes. Called by the
  // poll loop and before each rollout starts; status calls it without
  // retry_writes (a stat only: a locked store would hold every reader up
  // for its busy timeout).
  absl::Status CheckStore(bool retry_writes = true);

 private:
  struct Active;

  // Refreshes the fleet and lints the scripts, then plans on both.
  absl::StatusOr<RolloutPlan> PlanOnFreshFleet(const RolloutRequest& request);
  absl::Status RequireAlembicIni(const std::string& what) const;
  // CheckStore, worded for a refused start (UNAVAILABLE).
  absl::Status RequireStore();
  absl::StatusOr<Rollout> Launch(Rollout rollout, const std::vector<PlanProblem>& overridden);
  // A one-database rollout for incident work (a downgrade, a stamp): the
  // store and alembic.ini required (`what` names it in the error), a fresh
  // fleet, `plan_it`'s plan, launched.
  using IncidentPlanFn = std::function<absl::StatusOr<Rollout>(
      const config::Inventory&, const migrations::Resolver&, const FleetSnapshot&)>;
  absl::StatusOr<Rollout> LaunchIncident(const std::string& what, const std::string& requested_by,
                                         const IncidentPlanFn& plan_it);
  // Restore's check and safety backup, under the database's lock: compares
  // the database with `backup` (a changed one needs `yes`; *changed says
  // whether it was), then takes and catalogues the safety backup.
  void StartRunner(std::shared_ptr<Active> active) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run(std::shared_ptr<Active> active);
  bool RunStage(Active& a, size_t stage_index);
  void RunWave(Active& a, size_t stage_index, const std::vector<int>& steps);
  void RunStep(Active& a, size_t stage_index, int step_index);
  // The step of a rollout of kind "restore": RestoreNow, journaled.
  void RunRestoreStep(Active& a, const StepExecutor::Job& job, RolloutStep* step);
  // Restore's work, shared by Restore and the restore step: the backup put
  // back by `actor` (on_safety gets the safety backup), the catalog marked,
  // the fleet refreshed.
  // Catalog entry `backup_id` and the database it was taken of, which must
  // still be in the inventory.
  absl::StatusOr<std::pair<Backup, VersionTarget>> BackupAndTarget(int64_t backup_id) const;
  absl::StatusOr<RestoreResult> RestoreNow(int64_t backup_id, const std::string& actor, bool yes,
                                           const std::function<void(const Backup&)>& on_safety);
  // Between a stage's canary waves and the rest: canaries that all
  // succeeded, held their revisions through canary_soak, and (when
  // required) an approval. False when the rollout halts or stops there.
  bool CanaryGate(Active& a, size_t stage_index);
  StepExecutor::Hooks StepHooks(Active& a);
  void Settle(Active& a, RolloutStep* step);  // after a restart
  void Finish(Active& a);
  // mu_ held; halts past max_failures, naming `failed` in the reason.
  void CountFailure(Active& a, size_t stage_index, const RolloutStep& failed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits (lock held) until `ready` or the rollout is aborted or the engine
  // stops; false in the latter cases.
  bool WaitUntil(MutexLock& lock, Active& a, const std::function<bool()>& ready,
                 absl::Time deadline = absl::InfiniteFuture()) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stage `stage_index` enters a gate (a soak or an approval): recorded,
  // said, and waited out (lock held). False when the rollout was aborted
  // or the engine stops meanwhile.
  struct GateWait;
  // The change windows that hold stage `i` of `a` now (the inventory's,
  // none when the rollout overrides them).
  std::vector<config::ChangeWindow> WindowsOf(const Active& a, size_t i) const;
  // Waits while stage `i`'s environment is outside its change windows
  // (awaiting_window); false when the rollout ends or lockstepd stops first.
  bool WindowGate(MutexLock& lock, Active& a, size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool EnterGate(MutexLock& lock, Active& a, size_t stage_index, const GateWait& gate)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Must hold mu_. The state store refused a write: every active rollout
  // halts (running steps finish, no new ones start) and new rollouts are
  // refused until CheckStore succeeds.
  // `write`: a write failed (else the file check did).
  void StoreFailed(const absl::Status& status, bool write = true)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckStoreLocked(bool retry_writes = true) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Must hold mu_.
  void Emit(Active& a, EventKind kind, const std::string& environment, const std::string& database,
            const std::string& message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emit with mu_ not held: the store write happens outside the lock.
  void EmitUnlocked(Active& a, EventKind kind, const std::string& environment,
                    const std::string& database, const std::string& message)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Append(Active& a, EventKind kind, const std::string& environment,
                      const std::string& database, const std::string& message, RolloutEvent* e);
  // What follows an append: a failed write halts (StoreFailed), watchers
  // and hooks hear of it.
  void Announce(Active& a, RolloutEvent& e, const absl::Status& appended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveStep(Active& a, const RolloutStep& step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveStage(Active& a, size_t stage_index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SaveHeader(Active& a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The active rollout `id`, or nullptr (then NotActive says why).
  std::shared_ptr<Active> Find(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why `id` cannot be acted on: it has ended, or there is none. Reads the
  // store, so never under mu_.
  absl::Status NotActive(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // FAILED_PRECONDITION once the rollout is being aborted: it can no longer
  // be approved, paused or resumed.
  static absl::Status Controllable(const Active& a);

  std::shared_ptr<Reconciler> reconciler_;
  StateStore* store_;
  std::shared_ptr<Drivers> drivers_;  // every database I/O goes through one of them
  RolloutHooks hooks_;
  RealClock real_clock_;
  const Clock* clock_;  // options.clock or &real_clock_
  BackupService backups_;
  StepExecutor executor_;

  mutable Mutex mu_;
  std::condition_variable changed_;  // any rollout changed (events, gates, pause)
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string store_error_ ABSL_GUARDED_BY(mu_);  // see StoreError()
  // Not yet finished.
  std::map<std::string, std::shared_ptr<Active>> active_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);  // runners, joined by Stop
  uint64_t events_emitted_ ABSL_GUARDED_BY(mu_) = 0;
  std::mutex start_mu_;  // one Start/Downgrade at a time (the one-per-environment check)
  // Last: its writer thread calls StoreFailed (mu_), and it writes what is
  // queued when destroyed, after the runners have stopped.
  EventLog events_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_ENGINE_H_
