#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/rollout/alembic_output.h"  // RowsText
#include "daemon/rollout/engine.h"
#include "daemon/rollout/engine_internal.h"
#include "daemon/rollout/step_journal.h"

// Running a rollout: its stages in promotion order, each stage's gates
// (soak, approval, canaries), its waves with bounded parallelism, and each
// step through the StepExecutor; then its end.
namespace lockstep::daemon {

using engine_internal::ApprovalReason;
using engine_internal::Plural;
using engine_internal::StepsIn;
using engine_internal::When;

bool RolloutEngine::WaitUntil(MutexLock& lock, Active& a, const std::function<bool()>& ready,
                              absl::Time deadline) {
  while (true) {
    if (stopping_ || a.aborted || a.halted) return false;
    if (!a.paused && (ready() || clock_->Now() >= deadline)) return true;
    clock_->WaitUntil(changed_, lock.native(),
                      std::min(deadline, clock_->Now() + absl::Seconds(1)));
  }
}

bool RolloutEngine::EnterGate(MutexLock& lock, Active& a, size_t i, const GateWait& gate) {
  RolloutStage& st = a.r.stages[i];
  st.state = gate.stage_state;
  SaveStage(a, i);
  if (!a.paused) a.r.state = gate.rollout_state;
  a.r.reason = gate.reason;
  SaveHeader(a);
  Emit(a, gate.event, st.environment, "", a.r.reason);
  UpdateGauges();
  a.waiting = gate.approval;
  a.waiting_stage = i;
  const bool passed = WaitUntil(lock, a, gate.ready, gate.until);
  a.waiting = Active::Gate::kNone;
  return passed;
}

std::vector<config::ChangeWindow> RolloutEngine::WindowsOf(const Active& a, size_t i) const {
  if (!a.r.override_window.empty()) return {};
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  const config::EnvironmentConfig* env = inv->FindEnvironment(a.r.stages[i].environment);
  return env ? env->windows : std::vector<config::ChangeWindow>();
}

bool RolloutEngine::WindowGate(MutexLock& lock, Active& a, size_t i) {
  while (true) {
    if (stopping_ || a.aborted || a.halted) return false;
    const std::vector<config::ChangeWindow> windows = WindowsOf(a, i);
    const absl::Time now = clock_->Now();
    const config::ChangeWindow* closed_by = nullptr;
    if (config::WindowsOpen(windows, now, &closed_by)) return true;
    RolloutStage& st = a.r.stages[i];
    const StageState was = st.state;
    const absl::Time until = config::NextOpen(windows, now);
    const std::string reason = absl::StrCat(
        st.environment, " is outside its change windows (", closed_by->Describe(), "): ",
        until == absl::InfiniteFuture() ? "they never open; change them or --override-window"
                                        : absl::StrCat("no step starts before ", When(until)));
    if (!EnterGate(lock, a, i,
                   {StageState::kAwaitingWindow, RolloutState::kAwaitingWindow,
                    EventKind::kAwaitingWindow, reason, until,
                    [this, windows] { return config::WindowsOpen(windows, clock_->Now()); }})) {
      return false;
    }
    st.state = was;
    SaveStage(a, i);
    if (!a.paused) {
      a.r.state = RolloutState::kRunning;
      a.r.reason.clear();
      SaveHeader(a);
    }
    Emit(a, EventKind::kWindowOpened, st.environment, "",
         absl::StrCat(st.environment, "'s change window is open: steps start again"));
    UpdateGauges();
  }
}

void RolloutEngine::Run(std::shared_ptr<Active> active) {
  Active& a = *active;
  // Steps a previous lockstepd left running are settled first.
  std::vector<int> unsettled;
  {
    MutexLock lock(mu_);
    for (const RolloutStep& s : a.r.steps) {
      if (s.state == StepState::kRunning) unsettled.push_back(s.index);
    }
  }
  for (int i : unsettled) {
    RolloutStep step;
    {
      MutexLock lock(mu_);
      step = a.r.steps[static_cast<size_t>(i)];
    }
    Settle(a, &step);
  }
  for (size_t i = 0; i < a.r.stages.size(); ++i) {
    if (!RunStage(a, i)) break;
  }
  Finish(a);
}

bool RolloutEngine::RunStage(Active& a, size_t i) {
  MutexLock lock(mu_);
  if (stopping_ || a.aborted || a.halted) return false;
  RolloutStage& st = a.r.stages[i];
  if (st.state == StageState::kSucceeded) return true;
  if (st.state != StageState::kPending && st.state != StageState::kSoaking &&
      st.state != StageState::kAwaitingApproval && st.state != StageState::kAwaitingWindow &&
      st.state != StageState::kRunning) {
    return false;
  }
  std::map<int, std::vector<int>> waves;
  for (const RolloutStep& s : a.r.steps) {
    if (s.environment == st.environment) waves[s.wave].push_back(s.index);
  }
  const bool has_work = !waves.empty();
  if (st.state != StageState::kRunning && has_work) {
    // The soak runs from the end of the previous stage when it moved
    // databases; otherwise the planner checked it against the fleet.
    if (i > 0 && st.soak > absl::ZeroDuration() &&
        StepsIn(a.r, a.r.stages[i - 1].environment) > 0) {
      const absl::Time until = a.r.stages[i - 1].finished_at + st.soak;
      if (clock_->Now() < until &&
          !EnterGate(lock, a, i,
                     {StageState::kSoaking, RolloutState::kSoaking, EventKind::kSoaking,
                      absl::StrCat(a.r.stages[i - 1].environment, " soaks until ", When(until),
                                   " before ", st.environment),
                      until})) {
        return false;
      }
    }
    if (st.approval_required && st.approved_by.empty() &&
        !EnterGate(lock, a, i,
                   {StageState::kAwaitingApproval, RolloutState::kAwaitingApproval,
                    EventKind::kAwaitingApproval, ApprovalReason(st.environment, a.r.id),
                    absl::InfiniteFuture(), [&st] { return !st.approved_by.empty(); },
                    Active::Gate::kStage})) {
      return false;
    }
  }
  if (has_work && !WindowGate(lock, a, i)) return false;
  if (st.state != StageState::kRunning) {
    st.state = StageState::kRunning;
    st.started_at = clock_->Now();
    SaveStage(a, i);
    Emit(
        a, EventKind::kStageStarted, st.environment, "",
        absl::StrCat(st.environment, ": ", Plural(StepsIn(a.r, st.environment), "database"), " in ",
                     Plural(waves.size(), "wave"), ", at most ", st.max_parallel, " at once"));
  }
  if (!a.paused) {
    a.r.state = RolloutState::kRunning;
    a.r.reason.clear();
    SaveHeader(a);
  }
  UpdateGauges();
  std::set<int> canary_waves;  // read here, under the lock, like every step field
  for (const auto& [wave, steps] : waves) {
    if (a.r.steps[static_cast<size_t>(steps.front())].canary) canary_waves.insert(wave);
  }
  lock.unlock();
  for (const auto& [wave, steps] : waves) {
    if (!canary_waves.count(wave) && !CanaryGate(a, i)) break;
    bool stop = false;
    while (true) {
      lock.lock();
      const bool open = WindowGate(lock, a, i);
      lock.unlock();
      if (!open) {
        stop = true;
        break;
      }
      RunWave(a, i, steps);  // its workers take no step once the window closes
      lock.lock();
      stop = a.aborted || a.halted || stopping_;
      const bool pending = std::any_of(steps.begin(), steps.end(), [&](int s) {
        return a.r.steps[static_cast<size_t>(s)].state == StepState::kPending;
      });
      lock.unlock();
      if (stop || !pending) break;  // pending: the window closed mid-wave; wait for it
    }
    if (stop) break;
  }
  lock.lock();
  if (stopping_) return false;
  bool unfinished = std::any_of(a.r.steps.begin(), a.r.steps.end(), [&](const RolloutStep& s) {
    return s.environment == st.environment && !s.finished();
  });
  st.state = a.aborted                       ? StageState::kAborted
             : a.halted                      ? StageState::kHalted
             : st.failures > 0 || unfinished ? StageState::kFailed
                                             : StageState::kSucceeded;
  st.finished_at = clock_->Now();
  SaveStage(a, i);
  Emit(a, EventKind::kStageFinished, st.environment, "",
       absl::StrCat(st.environment, " ", NameOf(st.state),
                    st.failures > 0 ? absl::StrCat(" (", st.failures, " failed)") : ""));
  return st.state == StageState::kSucceeded;
}

void RolloutEngine::RunWave(Active& a, size_t stage_index, const std::vector<int>& steps) {
  size_t next = 0;  // guarded by mu_
  auto worker = [&] {
    while (true) {
      int step = -1;
      {
        MutexLock lock(mu_);
        if (!WaitUntil(lock, a, [] { return true; }) || a.halted) return;
        // A change window that closed: no new step (the stage waits for it).
        if (!config::WindowsOpen(WindowsOf(a, stage_index), clock_->Now())) return;
        while (next < steps.size() && step < 0) {
          int candidate = steps[next++];
          if (a.r.steps[static_cast<size_t>(candidate)].state == StepState::kPending)
            step = candidate;
        }
        if (step < 0) return;
      }
      RunStep(a, stage_index, step);
    }
  };
  int parallel;
  {
    MutexLock lock(mu_);
    parallel = std::max(
        1, std::min<int>(a.r.stages[stage_index].max_parallel, static_cast<int>(steps.size())));
  }
  std::vector<std::thread> pool;
  for (int t = 1; t < parallel; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

void RolloutEngine::RunStep(Active& a, size_t stage_index, int index) {
  RolloutStep step;
  StepExecutor::Job job;
  {
    MutexLock lock(mu_);
    step = a.r.steps[static_cast<size_t>(index)];
    job = {a.r.id, a.r.kind, a.r.target, a.r.stages[stage_index], a.r.override_reason};
  }
  const absl::Time started = clock_->Now();
  if (job.kind == "restore") {
    RunRestoreStep(a, job, &step);
  } else {
    executor_.Run(job, &step, &a.cancel, StepHooks(a));
  }
  if (!step.finished()) return;  // lockstepd is stopping
  MutexLock lock(mu_);
  if (hooks_.on_step_finished) hooks_.on_step_finished(step, step.finished_at - started);
  if (step.state == StepState::kFailed && !a.aborted) CountFailure(a, stage_index, step);
}

// Its safety backup is the step's backup (restoring it undoes this one);
// the restore itself is Restore's. The phase is saved before anything is
// written: a lockstepd killed in the middle runs the restore again at its
// next start (Settle), which puts the whole backup back.
void RolloutEngine::RunRestoreStep(Active& a, const StepExecutor::Job& job, RolloutStep* step) {
  StepExecutor::Hooks hooks = StepHooks(a);
  StepJournal journal(step, clock_, hooks.save, hooks.event);
  journal.Begin(absl::StrCat("from ", RowsText(step->from), " to ", RowsText(step->expected),
                             ": restore of ", job.target));
  if (a.cancel) return journal.Requeue();
  std::string requested_by;
  int64_t id = 0;
  {
    MutexLock lock(mu_);
    requested_by = a.r.created_by.empty() ? "unnamed" : a.r.created_by;
    id = RestoredBackupId(a.r);
  }
  journal.Enter(StepPhase::kBackup);
  absl::StatusOr<RestoreResult> r =
      RestoreNow(id, requested_by, !job.override_reason.empty(), [&](const Backup& safety) {
        journal.step().backup_id = safety.id;
        journal.Event(EventKind::kBackupTaken,
                      absl::StrCat("safety ", DescribeBackup(safety),
                                   " (what it held; restoring it undoes this)"));
        if (hooks.backup_taken) hooks.backup_taken(safety);
      });
  if (!r.ok()) return journal.Fail(std::string(r.status().message()));
  if (!r->check.ok()) return journal.Fail(std::string(r->check.message()));
  journal.Succeed(absl::StrCat("restored from backup ", id, " (by ", requested_by, "): holds ",
                               RowsText(r->revisions)));
}

StepExecutor::Hooks RolloutEngine::StepHooks(Active& a) {
  StepExecutor::Hooks hooks;
  // A step's saves and events are written by its own thread outside the
  // engine's lock (the store and the event log have their own), so that a
  // step waiting on SQLite holds up no other step, watcher or control.
  // Only this thread writes this step while it runs.
  hooks.save = [this, &a](const RolloutStep& step) {
    {
      MutexLock lock(mu_);
      a.r.steps[static_cast<size_t>(step.index)] = step;
      a.r.updated_at = clock_->Now();
    }
    absl::Status saved = store_->SaveStep(a.r.id, step);
    if (!saved.ok()) {
      MutexLock lock(mu_);
      StoreFailed(saved);
    }
  };
  hooks.event = [this, &a](const RolloutStep& step, EventKind kind, const std::string& message) {
    EmitUnlocked(a, kind, step.environment, step.database, message);
  };
  hooks.backup_taken = [this](const Backup& b) {
    MutexLock lock(mu_);
    if (hooks_.on_backup) hooks_.on_backup(b);
  };
  hooks.stopping = [this] {
    MutexLock lock(mu_);
    return stopping_;
  };
  return hooks;
}

bool RolloutEngine::CanaryGate(Active& a, size_t i) {
  MutexLock lock(mu_);
  if (a.canary_gates_passed.count(i)) return true;
  RolloutStage& st = a.r.stages[i];
  std::vector<RolloutStep> canaries;
  absl::Time done = absl::InfinitePast();
  int rest = 0;
  for (const RolloutStep& s : a.r.steps) {
    if (s.environment != st.environment) continue;
    if (!s.canary) {
      ++rest;
      continue;
    }
    canaries.push_back(s);
    done = std::max(done, s.finished_at);
  }
  auto halt = [&](const std::string& why) {
    mu_.AssertHeld();  // called below with `lock` held
    a.halted = true;
    a.stop_reason = why;  // the state already says "halted"
    Emit(a, EventKind::kHalted, st.environment, "", a.stop_reason);
    return false;
  };
  // A canary that failed stops the stage, whatever max_failures allows:
  // that is what it went first for.
  for (const RolloutStep& c : canaries) {
    if (c.state != StepState::kSucceeded) {
      return halt(absl::StrCat("canary ", c.key(), " ", NameOf(c.state), ": ", c.error));
    }
  }
  const std::string others = Plural(static_cast<size_t>(rest), "other database");
  if (!canaries.empty() && st.canary_soak > absl::ZeroDuration()) {
    const absl::Time until = done + st.canary_soak;
    if (clock_->Now() < until &&
        !EnterGate(lock, a, i,
                   {StageState::kSoaking, RolloutState::kSoaking, EventKind::kCanarySoaking,
                    absl::StrCat(st.environment, " canaries soak until ", When(until),
                                 " before the ", others),
                    until})) {
      return false;
    }
    // Healthy: each canary still holds what its step left there.
    lock.unlock();
    std::vector<std::string> unhealthy;
    for (const RolloutStep& c : canaries) {
      std::optional<VersionTarget> target = reconciler_->Target(c.key());
      if (!target) {
        unhealthy.push_back(absl::StrCat(c.key(), " is no longer in the inventory"));
        continue;
      }
      VersionRead read = drivers_->Read(*target);
      if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
        unhealthy.push_back(absl::StrCat(c.key(), " cannot be read: ", read.error));
      } else if (read.rows != c.expected) {
        unhealthy.push_back(absl::StrCat(c.key(), " holds [", absl::StrJoin(read.rows, ", "),
                                         "], not [", absl::StrJoin(c.expected, ", "), "]"));
      }
    }
    lock.lock();
    if (stopping_ || a.aborted) return false;
    if (!unhealthy.empty()) {
      return halt(absl::StrCat("canaries did not hold through their soak: ",
                               absl::StrJoin(unhealthy, "; ")));
    }
    Emit(a, EventKind::kCanarySoaked, st.environment, "",
         absl::StrCat(st.environment, " canaries held the target for ",
                      absl::FormatDuration(st.canary_soak)));
  }
  if (!canaries.empty() && st.canary_approval_required && st.canary_approved_by.empty() &&
      !EnterGate(lock, a, i,
                 {StageState::kAwaitingApproval, RolloutState::kAwaitingApproval,
                  EventKind::kAwaitingApproval,
                  absl::StrCat(st.environment, " canaries hold the target; the ", others,
                               " wait for approval: lockstep approve ", a.r.id),
                  absl::InfiniteFuture(), [&st] { return !st.canary_approved_by.empty(); },
                  Active::Gate::kCanaries})) {
    return false;
  }
  if (st.state != StageState::kRunning) {
    st.state = StageState::kRunning;
    SaveStage(a, i);
  }
  if (!a.paused) {
    a.r.state = RolloutState::kRunning;
    a.r.reason.clear();
    SaveHeader(a);
  }
  UpdateGauges();
  a.canary_gates_passed.insert(i);
  return true;
}

void RolloutEngine::CountFailure(Active& a, size_t stage_index, const RolloutStep& failed) {
  RolloutStage& st = a.r.stages[stage_index];
  ++st.failures;
  SaveStage(a, stage_index);
  if (st.failures > st.max_failures && !a.halted) {
    a.halted = true;
    // The failure that tipped it, so every view of the rollout says why.
    a.stop_reason =
        absl::StrCat(st.failures, " failed in ", st.environment, ", more than max_failures ",
                     st.max_failures, "; ", failed.key(), ": ", failed.error);
    Emit(a, EventKind::kHalted, st.environment, "", a.stop_reason);
  }
}

void RolloutEngine::Settle(Active& a, RolloutStep* step) {
  if (a.r.kind == "restore") {  // the id and kind never change: no lock
    // Whatever the restore had done, doing it again puts the whole backup
    // back (after a new safety backup of what is there).
    StepExecutor::Hooks hooks = StepHooks(a);
    StepJournal(step, clock_, hooks.save, hooks.event)
        .Recover("lockstepd stopped during this restore; it runs again from the start");
    return;
  }
  executor_.Settle(a.r.id, step, StepHooks(a));  // the id never changes: no lock
  if (step->state != StepState::kFailed) return;
  MutexLock lock(mu_);
  for (size_t i = 0; i < a.r.stages.size(); ++i) {
    if (a.r.stages[i].environment == step->environment) CountFailure(a, i, *step);
  }
}

void RolloutEngine::Finish(Active& a) {
  MutexLock lock(mu_);
  if (stopping_) return;  // not finished: the next lockstepd continues it
  // A skipped step says why in its own words; the rollout's reason does
  // not repeat its state ("halted").
  std::string skip_reason = a.halted && !a.stop_reason.empty()
                                ? absl::StrCat("rollout halted: ", a.stop_reason)
                                : a.stop_reason;
  int failed = 0;
  const RolloutStep* first_failure = nullptr;
  for (const RolloutStep& s : a.r.steps) {
    if (s.state != StepState::kFailed) continue;
    if (failed++ == 0) first_failure = &s;
  }
  for (size_t i = 0; i < a.r.stages.size(); ++i) {
    RolloutStage& st = a.r.stages[i];
    if (skip_reason.empty() && i > 0 && st.state == StageState::kPending &&
        a.r.stages[i - 1].state != StageState::kSucceeded) {
      skip_reason =
          absl::StrCat(a.r.stages[i - 1].environment, " did not succeed (",
                       NameOf(a.r.stages[i - 1].state), "), so it is not promoted further");
    }
    if (st.state == StageState::kPending || st.state == StageState::kSoaking ||
        st.state == StageState::kAwaitingApproval || st.state == StageState::kAwaitingWindow) {
      st.state = a.aborted ? StageState::kAborted : StageState::kSkipped;
      SaveStage(a, i);
    }
  }
  for (RolloutStep& s : a.r.steps) {
    if (s.state != StepState::kPending) continue;
    s.state = StepState::kSkipped;
    s.error = skip_reason;
    SaveStep(a, s);
    Emit(a, EventKind::kStepSkipped, s.environment, s.database, skip_reason);
  }
  a.r.state = a.aborted    ? RolloutState::kAborted
              : a.halted   ? RolloutState::kHalted
              : failed > 0 ? RolloutState::kFailed
                           : RolloutState::kSucceeded;
  a.r.reason = a.r.state == RolloutState::kSucceeded
                   ? absl::StrCat(Plural(a.r.steps.size(), "database"), " at ", a.r.target)
               : !skip_reason.empty()
                   ? skip_reason
                   : absl::StrCat(failed, " of ", Plural(a.r.steps.size(), "database"), " failed; ",
                                  first_failure->key(), ": ", first_failure->error);
  if (a.r.state == RolloutState::kSucceeded && (a.r.kind == "downgrade" || a.r.kind == "restore") &&
      a.r.steps.size() == 1) {
    // The revisions it holds, not the target as given ("-1"): a step
    // succeeds only when the rows read after it are the expected ones.
    const RolloutStep& step = a.r.steps[0];
    a.r.reason = absl::StrCat(step.key(), " now holds ", RowsText(step.expected));
  }
  a.r.finished_at = clock_->Now();
  SaveHeader(a);
  Emit(a, EventKind::kRolloutFinished, "", "", absl::StrCat(NameOf(a.r.state), ": ", a.r.reason));
  if (hooks_.on_rollout_finished) hooks_.on_rollout_finished(a.r);
  std::shared_ptr<Active> keep = active_[a.r.id];  // `a` lives on until this returns
  if (store_error_.empty()) {
    events_.Forget(a.r.id);
    active_.erase(a.r.id);
  } else {
    a.unrecorded = true;  // CheckStore records its end once the store takes writes
  }
  UpdateGauges();
  changed_.notify_all();
  lock.unlock();
  absl::Status refreshed = reconciler_->Refresh();  // status shows the new revisions now
  (void)refreshed;
}

}  // namespace lockstep::daemon
