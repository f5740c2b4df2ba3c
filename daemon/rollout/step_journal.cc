#include "daemon/rollout/step_journal.h"

#include "absl/strings/str_cat.h"
#include "daemon/process/process.h"

namespace lockstep::daemon {

const char* PhaseName(StepPhase phase) {
  switch (phase) {
    case StepPhase::kNone:
      return "";
    case StepPhase::kLock:
      return "lock";
    case StepPhase::kBackup:
      return "backup";
    case StepPhase::kAlembic:
      return "alembic";
    case StepPhase::kVerify:
      return "verify";
    case StepPhase::kRollback:
      return "rollback";
  }
  return "";
}

StepPhase ParsePhase(const std::string& name) {
  for (StepPhase p : {StepPhase::kLock, StepPhase::kBackup, StepPhase::kAlembic, StepPhase::kVerify,
                      StepPhase::kRollback}) {
    if (name == PhaseName(p)) return p;
  }
  return StepPhase::kNone;
}

StepJournal::StepJournal(RolloutStep* step, const Clock* clock,
                         std::function<void(const RolloutStep&)> save,
                         std::function<void(const RolloutStep&, const std::string& kind,
                                            const std::string& message)>
                             event)
    : step_(*step), clock_(clock), save_(std::move(save)), event_(std::move(event)) {}

void StepJournal::Begin(const std::string& message) {
  step_.state = "running";
  step_.started_at = clock_->Now();
  step_.error.clear();
  step_.rollback.clear();
  Enter(StepPhase::kLock);
  Event("step_started", message);
}

void StepJournal::Enter(StepPhase phase) {
  step_.phase = PhaseName(phase);
  save_(step_);
}

void StepJournal::Pid(int pid) {
  step_.pid = pid;
  step_.pid_identity = ProcessIdentity(pid);
  save_(step_);
}

void StepJournal::Event(const std::string& kind, const std::string& message) const {
  event_(step_, kind, message);
}

void StepJournal::Succeed(const std::string& message) {
  step_.state = "succeeded";
  step_.error.clear();
  step_.finished_at = clock_->Now();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase.clear();
  save_(step_);
  Event("verified", message);
}

void StepJournal::Fail(const std::string& message) {
  step_.state = "failed";
  step_.error = message;
  step_.finished_at = clock_->Now();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase.clear();
  save_(step_);
  Event("step_failed", step_.rollback.empty()
                           ? message
                           : absl::StrCat(message, " [", step_.rollback, "]"));
}

void StepJournal::Requeue() {
  step_.state = "pending";
  step_.started_at = absl::InfinitePast();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase.clear();
  save_(step_);
}

void StepJournal::Recover(const std::string& message) {
  Requeue();
  Event("recovered", message);
}

}  // namespace lockstep::daemon
