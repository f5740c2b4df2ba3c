// The write-ahead record of one step. Every change to a step goes through
// here, and is saved before the action it announces: a lockstepd killed at
// any moment leaves in the store the phase it was in, and the next one
// settles the step from that and from what the database holds
// (StepExecutor::Settle).
//
//   Begin()            running, phase lock; event step_started
//   Enter(kBackup)     saved, then the backup is taken
//   Enter(kAlembic)    saved, then Alembic starts (Pid() saves its pid)
//   Enter(kVerify)     saved, then the version rows are read again
//   Enter(kRollback)   saved, then the failure policy runs
//   Succeed()/Fail()   finished; event verified / step_failed
//   Requeue()          back to pending: nothing was done to the database
//   Recover()          after a restart (StepExecutor::Settle): a step left
//                      running by a dead lockstepd ends through Succeed or
//                      Fail, or goes back to pending with an event saying why
//
// Not thread-safe: one step is run by one thread.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_STEP_JOURNAL_H_
#define LOCKSTEP_DAEMON_ROLLOUT_STEP_JOURNAL_H_

#include <functional>
#include <string>

#include "daemon/model/clock.h"
#include "daemon/model/rollout.h"

namespace lockstep::daemon {

class StepJournal {
 public:
  // `save` persists the step as it is now; `event` records an event for it.
  // `step` and `clock` must outlive the journal.
  StepJournal(
      RolloutStep* step, const Clock* clock, std::function<void(const RolloutStep&)> save,
      std::function<void(const RolloutStep&, EventKind kind, const std::string& message)> event);

  void Begin(const std::string& message);
  void Enter(StepPhase phase);
  void Pid(int pid);
  void Event(EventKind kind, const std::string& message) const;
  void Succeed(const std::string& message);
  // `message` is the step's error; the rollback outcome is shown with it.
  void Fail(const std::string& message);
  void Requeue();
  // Requeue after a restart, saying why (event `recovered`).
  void Recover(const std::string& message);

  RolloutStep& step() { return step_; }

 private:
  RolloutStep& step_;
  const Clock* clock_;
  std::function<void(const RolloutStep&)> save_;
  std::function<void(const RolloutStep&, EventKind, const std::string&)> event_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_STEP_JOURNAL_H_
