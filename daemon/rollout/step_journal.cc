#include "daemon/rollout/step_journal.h"

#include "absl/strings/str_cat.h"
#include "daemon/process/process.h"

namespace lockstep::daemon {

StepJournal::StepJournal(
    RolloutStep* step, const Clock* clock, std::function<void(const RolloutStep&)> save,
    std::function<void(const RolloutStep&, EventKind kind, const std::string& message)> event)
    : step_(*step), clock_(clock), save_(std::move(save)), event_(std::move(event)) {}

void StepJournal::Begin(const std::string& message) {
  step_.state = StepState::kRunning;
  step_.started_at = clock_->Now();
  step_.error.clear();
  step_.rollback.clear();
  Enter(StepPhase::kLock);
  Event(EventKind::kStepStarted, message);
}

void StepJournal::Enter(StepPhase phase) {
  step_.phase = phase;
  save_(step_);
}

void StepJournal::Pid(int pid) {
  step_.pid = pid;
  step_.pid_identity = ProcessIdentity(pid);
  save_(step_);
}

void StepJournal::Event(EventKind kind, const std::string& message) const {
  event_(step_, kind, message);
}

void StepJournal::Succeed(const std::string& message) {
  step_.state = StepState::kSucceeded;
  step_.error.clear();
  step_.finished_at = clock_->Now();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase = StepPhase::kNone;
  save_(step_);
  Event(EventKind::kVerified, message);
}

void StepJournal::Fail(const std::string& message) {
  step_.state = StepState::kFailed;
  step_.error = message;
  step_.finished_at = clock_->Now();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase = StepPhase::kNone;
  save_(step_);
  Event(EventKind::kStepFailed,
        step_.rollback.empty() ? message : absl::StrCat(message, " [", step_.rollback, "]"));
}

void StepJournal::Requeue() {
  step_.state = StepState::kPending;
  step_.started_at = absl::InfinitePast();
  step_.pid = 0;
  step_.pid_identity.clear();
  step_.phase = StepPhase::kNone;
  save_(step_);
}

void StepJournal::Recover(const std::string& message) {
  Requeue();
  Event(EventKind::kRecovered, message);
}

}  // namespace lockstep::daemon
