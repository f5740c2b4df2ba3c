#include "daemon/rollout/engine.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/driver.h"
#include "daemon/model/utf8.h"
#include "daemon/rollout/engine_internal.h"
#include "migrations/lint.h"
#include "migrations/project.h"

namespace lockstep::daemon {

using engine_internal::ApprovalReason;
using engine_internal::Plural;

namespace {

std::string NewId(const std::string& prefix, absl::Time now) {
  std::random_device rd;
  return absl::StrCat(prefix, absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
                      absl::Hex(rd() & 0xffff, absl::kZeroPad4));
}

}  // namespace

RolloutEngine::RolloutEngine(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                             std::shared_ptr<Drivers> drivers, RolloutHooks hooks, Options options)
    : reconciler_(std::move(reconciler)),
      store_(store),
      drivers_(std::move(drivers)),
      hooks_(std::move(hooks)),
      clock_(options.clock != nullptr ? options.clock : &real_clock_),
      backups_(store_, drivers_.get(), clock_),
      executor_(reconciler_, store_, drivers_.get(), {clock_, std::move(options.alembic)}),
      events_(store_, [this](const absl::Status& s) {
        MutexLock lock(mu_);
        StoreFailed(s);
      }) {}

RolloutEngine::~RolloutEngine() { Stop(); }

void RolloutEngine::Stop() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    for (auto& [id, a] : active_) a->cancel = true;
    threads.swap(threads_);
  }
  changed_.notify_all();
  executor_.Stop();
  for (std::thread& t : threads) t.join();
}

// ---- persistence and events (mu_ held) -------------------------------------

void RolloutEngine::StoreFailed(const absl::Status& status, bool write) {
  if (store_error_.empty()) {
    store_error_ = write ? absl::StrCat("lockstepd cannot write its state store: ",
                                        status.message())
                         : std::string(status.message());
    if (hooks_.on_store) hooks_.on_store(false, store_error_);
  }
  // Without the write-ahead record nothing more may be done, by any
  // rollout: running steps finish, no new one starts.
  for (auto& [id, other] : active_) {
    if (other->halted) continue;
    other->halted = true;
    other->stop_reason = absl::StrCat(store_error_, "; nothing more is done until it can");
  }
  changed_.notify_all();
}

std::string RolloutEngine::StoreError() const {
  MutexLock lock(mu_);
  return store_error_;
}

absl::Status RolloutEngine::CheckStore(bool retry_writes) {
  MutexLock lock(mu_);
  return CheckStoreLocked(retry_writes);
}

absl::Status RolloutEngine::CheckStoreLocked(bool retry_writes) {
  if (absl::Status file = store_->CheckFile(); !file.ok()) {
    StoreFailed(file, /*write=*/false);
    return absl::UnavailableError(store_error_);
  }
  if (store_error_.empty()) return absl::OkStatus();
  if (!retry_writes) return absl::UnavailableError(store_error_);
  // Write again what could not be written: each active rollout as it is in
  // memory (halted), so that a restart continues from the truth.
  for (const auto& [id, a] : active_) {
    absl::Status saved = store_->SaveRollout(a->r);
    if (!saved.ok()) return absl::UnavailableError(store_error_);
  }
  store_error_.clear();
  if (hooks_.on_store) hooks_.on_store(true, "");
  for (auto it = active_.begin(); it != active_.end();) {
    if (!it->second->unrecorded) {
      ++it;
      continue;
    }
    Emit(*it->second, EventKind::kRecovered, "", "",
         absl::StrCat("the state store takes writes again; ", NameOf(it->second->r.state),
                      " recorded"));
    events_.Forget(it->first);
    it = active_.erase(it);
  }
  UpdateGauges();
  return absl::OkStatus();
}

// Appends the event to the log: Alembic's output lines are queued (a step
// never waits on the store for them); every other event is written, with
// the lines before it, before this returns. Needs no engine lock: the log
// numbers and orders events itself.
absl::Status RolloutEngine::Append(Active& a, EventKind kind, const std::string& environment,
                                   const std::string& database, const std::string& message,
                                   RolloutEvent* e) {
  // Valid UTF-8 once, here (Alembic prints any bytes; a discovered file's
  // name may hold any), rather than in every reply to every watcher.
  auto valid = [](const std::string& s) { return IsValidUtf8(s) ? s : ValidUtf8(s); };
  *e = RolloutEvent{0, clock_->Now(), kind, valid(environment), valid(database), valid(message)};
  return events_.Append(a.r.id, e, /*durable=*/kind != EventKind::kOutput);  // the id is constant
}

void RolloutEngine::Emit(Active& a, EventKind kind, const std::string& environment,
                         const std::string& database, const std::string& message) {
  RolloutEvent e;
  Announce(a, e, Append(a, kind, environment, database, message, &e));
}

void RolloutEngine::EmitUnlocked(Active& a, EventKind kind, const std::string& environment,
                                 const std::string& database, const std::string& message) {
  RolloutEvent e;
  absl::Status appended = Append(a, kind, environment, database, message, &e);
  MutexLock lock(mu_);
  Announce(a, e, appended);
}

void RolloutEngine::Announce(Active& a, RolloutEvent& e, const absl::Status& s) {
  if (!s.ok()) {
    e.message += absl::StrCat(" (not recorded: ", s.message(), ")");
    StoreFailed(s);
  }
  ++events_emitted_;
  if (hooks_.on_event) hooks_.on_event(a.r, e);
  // Watchers do not wait here: the WatchHub looks at events_emitted_ on its
  // own schedule. A line of output wakes nobody (a step printing 20,000
  // lines would otherwise wake the runner's waits 20,000 times).
  if (e.kind != EventKind::kOutput) changed_.notify_all();
}

void RolloutEngine::SaveStep(Active& a, const RolloutStep& step) {
  a.r.steps[static_cast<size_t>(step.index)] = step;
  a.r.updated_at = clock_->Now();
  absl::Status s = store_->SaveStep(a.r.id, step);
  if (!s.ok()) StoreFailed(s);
}

void RolloutEngine::SaveStage(Active& a, size_t stage_index) {
  a.r.updated_at = clock_->Now();
  absl::Status s =
      store_->SaveStage(a.r.id, static_cast<int>(stage_index), a.r.stages[stage_index]);
  if (!s.ok()) StoreFailed(s);
}

void RolloutEngine::SaveHeader(Active& a) {
  a.r.updated_at = clock_->Now();
  absl::Status s = store_->SaveRolloutHeader(a.r);
  if (!s.ok()) StoreFailed(s);
  changed_.notify_all();
}

void RolloutEngine::UpdateGauges() {
  int awaiting = 0, window = 0;
  for (const auto& [id, a] : active_) {
    awaiting += a->r.state == RolloutState::kAwaitingApproval ? 1 : 0;
    window += a->r.state == RolloutState::kAwaitingWindow ? 1 : 0;
  }
  if (hooks_.on_gauges) hooks_.on_gauges(static_cast<int>(active_.size()), awaiting, window);
}

absl::Status RolloutEngine::Controllable(const Active& a) {
  if (!a.aborted) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("rollout ", a.r.id, " is being aborted (", a.stop_reason,
                   "); it can no longer be approved, paused or resumed"));
}

std::shared_ptr<RolloutEngine::Active> RolloutEngine::Find(const std::string& id) {
  auto it = active_.find(id);
  return it == active_.end() ? nullptr : it->second;
}

absl::Status RolloutEngine::NotActive(const std::string& id) {
  absl::StatusOr<Rollout> stored = store_->LoadRollout(id);
  if (!stored.ok()) return stored.status();
  return absl::FailedPreconditionError(
      absl::StrCat("rollout ", id, " has already ended (", NameOf(stored->state), ")"));
}

// ---- planning and starting -------------------------------------------------

absl::StatusOr<RolloutPlan> RolloutEngine::PlanOnFreshFleet(const RolloutRequest& request) {
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  // Lint the files as they are on disk now (a tolerant load: a file that
  // does not parse is a finding, not an error).
  std::vector<migrations::LintFinding> lint;
  absl::StatusOr<migrations::Project> linted =
      migrations::Project::Load(ProjectSourceOf(*inv), /*tolerate_file_errors=*/true);
  if (linted.ok()) {
    lint = migrations::LintProject(*linted);
  } else {
    lint.push_back(migrations::LoadFailureFinding(project->location().script_dir, linted.status()));
  }
  return PlanRollout(request, *inv, resolver, *reconciler_->Snapshot(), clock_->Now(), lint);
}

absl::Status RolloutEngine::RequireAlembicIni(const std::string& what) const {
  if (!reconciler_->inventory()->project.alembic_ini.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      what, " run Alembic, which needs project.alembic_ini in the inventory (not scripts)"));
}

absl::StatusOr<RolloutPlan> RolloutEngine::Plan(const RolloutRequest& request) {
  return PlanOnFreshFleet(request);
}

absl::Status RolloutEngine::RequireStore() {
  absl::Status store = CheckStore();
  if (store.ok()) return store;
  return absl::UnavailableError(
      absl::StrCat(store.message(), "; no rollout starts until it can (lockstep status)"));
}

absl::StatusOr<Rollout> RolloutEngine::Start(const RolloutRequest& request) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (absl::Status store = RequireStore(); !store.ok()) return store;
  absl::Status runnable = RequireAlembicIni("rollouts");
  if (!runnable.ok()) return runnable;
  absl::StatusOr<RolloutPlan> plan = PlanOnFreshFleet(request);
  if (!plan.ok()) return plan.status();
  if (absl::Status blocked = plan->BlockingStatus(); !blocked.ok()) return blocked;
  return Launch(std::move(plan->rollout), plan->overridden);
}

absl::StatusOr<Rollout> RolloutEngine::LaunchIncident(const std::string& what,
                                                      const std::string& requested_by,
                                                      const IncidentPlanFn& plan_it) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (absl::Status store = RequireStore(); !store.ok()) return store;
  absl::Status runnable = RequireAlembicIni(what);
  if (!runnable.ok()) return runnable;
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  absl::StatusOr<Rollout> plan =
      plan_it(*reconciler_->inventory(), resolver, *reconciler_->Snapshot());
  if (!plan.ok()) return plan.status();
  plan->created_by = requested_by;
  return Launch(*std::move(plan), {});
}

absl::StatusOr<Rollout> RolloutEngine::Stamp(const std::string& environment,
                                             const std::string& database,
                                             const std::string& revision,
                                             const std::string& requested_by,
                                             const std::string& override_reason) {
  return LaunchIncident("stamps", requested_by,
                        [&](const config::Inventory& inv, const migrations::Resolver& resolver,
                            const FleetSnapshot& fleet) {
                          return PlanStamp(environment, database, revision, override_reason, inv,
                                           resolver, fleet);
                        });
}

absl::StatusOr<Rollout> RolloutEngine::Reapply(const std::string& environment,
                                               const std::string& database,
                                               const std::string& revision,
                                               const std::string& requested_by) {
  return LaunchIncident("reapplies", requested_by,
                        [&](const config::Inventory& inv, const migrations::Resolver& resolver,
                            const FleetSnapshot& fleet) {
                          return PlanReapply(environment, database, revision, inv, resolver, fleet);
                        });
}

absl::StatusOr<Rollout> RolloutEngine::Downgrade(const std::string& environment,
                                                 const std::string& database,
                                                 const std::string& target,
                                                 const std::string& requested_by) {
  return LaunchIncident("downgrades", requested_by,
                        [&](const config::Inventory& inv, const migrations::Resolver& resolver,
                            const FleetSnapshot& fleet) {
                          return PlanDowngrade(environment, database, target, inv, resolver, fleet);
                        });
}

absl::StatusOr<Rollout> RolloutEngine::Launch(Rollout rollout,
                                              const std::vector<PlanProblem>& overridden) {
  auto a = std::make_shared<Active>();
  MutexLock lock(mu_);
  if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
  if (absl::Status store = CheckStoreLocked(); !store.ok()) {
    return absl::UnavailableError(
        absl::StrCat(store.message(), "; no rollout starts until it can (lockstep status)"));
  }
  for (const RolloutStage& stage : rollout.stages) {
    for (const auto& [id, other] : active_) {
      for (const RolloutStage& busy : other->r.stages) {
        if (busy.environment == stage.environment) {
          return absl::FailedPreconditionError(
              absl::StrCat(stage.environment, " already has an active rollout, ", id, " (",
                           NameOf(other->r.state),
                           "); one rollout per environment at a time: wait, or abort it"));
        }
      }
    }
  }
  const absl::Time now = clock_->Now();
  rollout.id = NewId(rollout.kind == "downgrade" ? "d-" : "r-", now);
  rollout.created_at = rollout.updated_at = now;
  rollout.state = RolloutState::kRunning;
  a->r = std::move(rollout);
  absl::Status saved = store_->SaveRollout(a->r);
  if (!saved.ok()) {
    StoreFailed(saved);
    return absl::UnavailableError(
        absl::StrCat(store_error_, "; no rollout starts until it can (lockstep status)"));
  }
  active_[a->r.id] = a;
  std::vector<std::string> envs;
  for (const RolloutStage& s : a->r.stages) envs.push_back(s.environment);
  Emit(*a, EventKind::kRolloutStarted, "", "",
       absl::StrCat(
           a->r.kind, " to ", a->r.target, " (", absl::StrJoin(a->r.target_revisions, ", "),
           "): ", Plural(a->r.steps.size(), "database"), " in ", absl::StrJoin(envs, ", "),
           a->r.created_by.empty() ? "" : absl::StrCat("; requested by ", a->r.created_by)));
  // Who overrode which gate, in the rollout's durable record.
  const std::string who = a->r.created_by.empty() ? "an unnamed caller" : a->r.created_by;
  std::vector<std::string> promotion;
  for (const PlanProblem& p : overridden) {
    if (p.code == "promotion") {
      promotion.push_back(p.message);
    } else if (p.code == "schema-drift") {
      Emit(*a, EventKind::kOverrideDrift, "", "",
           absl::StrCat(p.database, ": schema drift overridden by ", who,
                        " (--allow-drift): ", p.message));
    } else {
      Emit(*a, EventKind::kOverrideLint, "", "",
           absl::StrCat("lint ", p.code, " overridden by ", who, " (--allow-lint): ", p.message));
    }
  }
  if (!a->r.override_reason.empty() && a->r.kind == "stamp") {
    Emit(*a, EventKind::kOverrideSchemaCheck, "", "",
         absl::StrCat("schema check overridden by ", who, " (--force): ", a->r.override_reason));
  }
  if (!a->r.override_window.empty()) {
    Emit(*a, EventKind::kOverrideWindow, "", "",
         absl::StrCat("change windows overridden by ", who, ": ", a->r.override_window));
  }
  if (!promotion.empty()) {
    Emit(*a, EventKind::kOverridePromotion, "", "",
         absl::StrCat("promotion gate overridden by ", who, ": ", absl::StrJoin(promotion, "; ")));
  }
  UpdateGauges();
  StartRunner(a);
  return a->r;
}

void RolloutEngine::Prewarm(std::function<void(const absl::Status&, absl::Duration)> done) {
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (inv->project.alembic_runner != "warm") return;
  MutexLock lock(mu_);
  threads_.emplace_back([this, inv, done] {
    const absl::Time start = absl::Now();
    absl::Status s = executor_.Prewarm(*inv);
    if (done) done(s, absl::Now() - start);
  });
}

void RolloutEngine::StartRunner(std::shared_ptr<Active> active) {
  threads_.emplace_back([this, active] { Run(active); });
}

absl::Status RolloutEngine::Recover() {
  RemovePartialBackups(reconciler_->inventory()->server.backup_dir);
  absl::StatusOr<std::vector<Rollout>> unfinished = store_->ListRollouts(0, true);
  if (!unfinished.ok()) return unfinished.status();
  MutexLock lock(mu_);
  for (Rollout& r : *unfinished) {
    auto a = std::make_shared<Active>();
    a->r = std::move(r);
    a->paused = a->r.state == RolloutState::kPaused;
    active_[a->r.id] = a;
    Emit(*a, EventKind::kRecovered, "", "",
         absl::StrCat("lockstepd restarted; continuing ", a->r.id, " (", NameOf(a->r.state), ")"));
    StartRunner(a);
  }
  UpdateGauges();
  return absl::OkStatus();
}

// ---- control ---------------------------------------------------------------

absl::Status RolloutEngine::Approve(
    const std::string& id, const std::string& who,
    const std::function<absl::Status(const std::string& environment)>& may_approve) {
  MutexLock lock(mu_);
  std::shared_ptr<Active> a = Find(id);
  if (a == nullptr) {
    lock.unlock();
    return NotActive(id);
  }
  if (absl::Status c = Controllable(*a); !c.ok()) return c;
  if (!store_error_.empty()) return absl::UnavailableError(store_error_);
  Active& active = *a;
  // Only the gate waiting at this moment: a stage gate ahead, or the canary
  // gate of a stage whose canaries have not run, is not approved in advance.
  if (active.waiting == Active::Gate::kNone) {
    return absl::FailedPreconditionError(
        absl::StrCat("rollout ", id, " has no stage waiting for approval"));
  }
  const size_t i = active.waiting_stage;
  RolloutStage& s = active.r.stages[i];
  if (may_approve) {
    if (absl::Status allowed = may_approve(s.environment); !allowed.ok()) return allowed;
  }
  const std::string by = who.empty() ? "unnamed" : who;
  if (active.waiting == Active::Gate::kStage) {
    if (s.distinct_from_requester && by == active.r.created_by) {
      return absl::PermissionDeniedError(
          absl::StrCat(by, " requested rollout ", id, " and may not approve it: ", s.environment,
                       " needs approval by someone else (approval.distinct_from_requester)"));
    }
    if (std::find(s.approvers.begin(), s.approvers.end(), by) != s.approvers.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat(by, " already approved ", s.environment, " for rollout ", id, "; it needs ",
                       s.approvals_required, " approvals from different people (",
                       s.approvers.size(), " so far)"));
    }
    s.approvers.push_back(by);
    const int have = static_cast<int>(s.approvers.size());
    if (have < s.approvals_required) {
      SaveStage(active, i);
      Emit(
          active, EventKind::kApproved, s.environment, "",
          absl::StrCat(s.environment, " approved by ", by, " (", have, " of ", s.approvals_required,
                       " approvals; waiting for ", s.approvals_required - have, " more)"));
      return absl::OkStatus();  // the gate still waits
    }
    s.approved_by = absl::StrJoin(s.approvers, ", ");
    s.approved_at = clock_->Now();
    SaveStage(active, i);
    Emit(active, EventKind::kApproved, s.environment, "",
         absl::StrCat(s.environment, " approved by ", s.approved_by));
  } else {
    s.canary_approved_by = by;
    s.canary_approved_at = clock_->Now();
    SaveStage(active, i);
    Emit(active, EventKind::kApproved, s.environment, "",
         absl::StrCat(s.environment, " canaries approved by ", by, "; the other databases start"));
  }
  active.waiting = Active::Gate::kNone;  // one approval per gate
  changed_.notify_all();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Pause(const std::string& id, const std::string& who) {
  MutexLock lock(mu_);
  std::shared_ptr<Active> a = Find(id);
  if (a == nullptr) {
    lock.unlock();
    return NotActive(id);
  }
  if (absl::Status c = Controllable(*a); !c.ok()) return c;
  if (a->paused)
    return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is already paused"));
  a->paused = true;
  a->r.state = RolloutState::kPaused;
  a->r.reason = absl::StrCat("paused by ", who.empty() ? "an unnamed caller" : who);
  SaveHeader(*a);
  Emit(*a, EventKind::kPaused, "", "", a->r.reason + "; running steps finish, no new ones start");
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Resume(const std::string& id, const std::string& who) {
  MutexLock lock(mu_);
  std::shared_ptr<Active> a = Find(id);
  if (a == nullptr) {
    lock.unlock();
    return NotActive(id);
  }
  if (absl::Status c = Controllable(*a); !c.ok()) return c;
  if (!a->paused)
    return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is not paused"));
  if (!store_error_.empty()) return absl::UnavailableError(store_error_);
  a->paused = false;
  // Back to what it was doing: running, or waiting at a stage's gate.
  Rollout& r = a->r;
  r.state = RolloutState::kRunning;
  r.reason.clear();
  for (const RolloutStage& st : r.stages) {
    if (st.state == StageState::kAwaitingApproval) {
      r.state = RolloutState::kAwaitingApproval;
      r.reason = ApprovalReason(st.environment, r.id);
    } else if (st.state == StageState::kSoaking) {
      r.state = RolloutState::kSoaking;
      r.reason = absl::StrCat("soaking before ", st.environment);
    } else if (st.state == StageState::kAwaitingWindow) {
      r.state = RolloutState::kAwaitingWindow;
      r.reason = absl::StrCat(st.environment, " waits for its change window");
    }
  }
  SaveHeader(*a);
  Emit(*a, EventKind::kResumed, "", "",
       absl::StrCat("resumed by ", who.empty() ? "an unnamed caller" : who));
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Abort(const std::string& id, const std::string& who) {
  MutexLock lock(mu_);
  std::shared_ptr<Active> a = Find(id);
  if (a == nullptr) {
    lock.unlock();
    return NotActive(id);
  }
  if (a->aborted) return absl::OkStatus();
  a->aborted = true;
  a->cancel = true;
  a->stop_reason = absl::StrCat("rollout aborted by ", who.empty() ? "an unnamed caller" : who);
  Emit(*a, EventKind::kAborted, "", "",
       a->stop_reason +
           "; a running Alembic is stopped and its database rolled back as on_failure says");
  return absl::OkStatus();
}

absl::StatusOr<Rollout> RolloutEngine::Get(const std::string& id) {
  {
    MutexLock lock(mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second->r;
  }
  return store_->LoadRollout(id);
}

absl::StatusOr<RolloutState> RolloutEngine::StateOf(const std::string& id) {
  {
    MutexLock lock(mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second->r.state;
  }
  absl::StatusOr<Rollout> r = store_->LoadRollout(id);
  if (!r.ok()) return r.status();
  return r->state;
}

absl::StatusOr<std::vector<Rollout>> RolloutEngine::List(int limit) {
  absl::StatusOr<std::vector<Rollout>> out = store_->ListRollouts(limit);
  if (!out.ok()) return out;
  MutexLock lock(mu_);
  for (Rollout& r : *out) {
    auto it = active_.find(r.id);
    if (it != active_.end()) r = it->second->r;
  }
  return out;
}

absl::StatusOr<std::vector<RolloutEvent>> RolloutEngine::ReadEvents(const std::string& id,
                                                                    int64_t after_seq, int max,
                                                                    bool* active,
                                                                    RolloutState* state) {
  {
    // Before the events: an ended rollout emits nothing more, so what is
    // read after seeing it ended is all there is.
    MutexLock lock(mu_);
    auto it = active_.find(id);
    *active = it != active_.end();
    if (*active) *state = it->second->r.state;
  }
  return events_.Read(id, after_seq, max);
}

uint64_t RolloutEngine::EventsEmitted() {
  MutexLock lock(mu_);
  return events_emitted_;
}

// ---- backups ---------------------------------------------------------------

absl::StatusOr<std::vector<Backup>> RolloutEngine::Backups(const std::string& environment,
                                                           const std::string& database, int limit) {
  return store_->Backups(environment, database, limit);
}

absl::StatusOr<RestoreResult> RolloutEngine::Restore(int64_t backup_id, const std::string& who,
                                                     bool yes) {
  if (absl::Status store = CheckStore(); !store.ok()) return store;
  absl::StatusOr<RestoreResult> result =
      RestoreNow(backup_id, who.empty() ? "unnamed" : who, yes, [this](const Backup& safety) {
        MutexLock guard(mu_);
        if (hooks_.on_backup) hooks_.on_backup(safety);
      });
  if (!result.ok()) return result.status();
  if (!result->check.ok()) return result->check;
  return result;
}

absl::StatusOr<std::pair<Backup, VersionTarget>> RolloutEngine::BackupAndTarget(
    int64_t backup_id) const {
  absl::StatusOr<Backup> b = store_->GetBackup(backup_id);
  if (!b.ok()) return b.status();
  const std::string key = absl::StrCat(b->environment, "/", b->database);
  std::optional<VersionTarget> target = reconciler_->Target(key);
  if (!target) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, " is not in the inventory any more; restore ", b->path, " by hand"));
  }
  return std::make_pair(*std::move(b), *std::move(target));
}

absl::StatusOr<RestoreResult> RolloutEngine::RestoreNow(
    int64_t backup_id, const std::string& actor, bool yes,
    const std::function<void(const Backup&)>& on_safety) {
  absl::StatusOr<std::pair<Backup, VersionTarget>> b = BackupAndTarget(backup_id);
  if (!b.ok()) return b.status();
  absl::StatusOr<RestoreResult> result = backups_.RestoreOnRequest(
      b->first, b->second, *reconciler_->inventory(), actor, yes, on_safety);
  if (!result.ok()) return result.status();
  absl::Status marked = store_->MarkRestored(backup_id, actor, result->restored_at);
  (void)marked;  // the restore happened; lockstepd's log still says who did it
  absl::Status refreshed = reconciler_->Refresh();
  (void)refreshed;  // the poll loop reports refresh problems
  {
    MutexLock guard(mu_);
    if (hooks_.on_restore) hooks_.on_restore(*result);
  }
  return result;
}

absl::StatusOr<Rollout> RolloutEngine::RequestRestore(int64_t backup_id, const std::string& who,
                                                      bool yes) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (absl::Status store = RequireStore(); !store.ok()) return store;
  absl::StatusOr<std::pair<Backup, VersionTarget>> b = BackupAndTarget(backup_id);
  if (!b.ok()) return b.status();
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (absl::Status ok = backups_.CheckRestore(b->first, b->second, *inv, yes); !ok.ok()) return ok;
  absl::StatusOr<Rollout> plan = PlanRestore(b->first, yes, *inv, *reconciler_->Snapshot());
  if (!plan.ok()) return plan.status();
  plan->created_by = who;
  return Launch(*std::move(plan), {});
}

}  // namespace lockstep::daemon
