#include "daemon/rollout/engine.h"

#include "daemon/model/utf8.h"

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
#include "migrations/lint.h"
#include "migrations/project.h"

namespace lockstep::daemon {
namespace {

// How late a watcher may see a line of Alembic's output (lines wake nobody;
// every other event wakes the watchers at once).
constexpr absl::Duration kOutputLatency = absl::Milliseconds(100);

std::string NewId(const std::string& prefix, absl::Time now) {
  std::random_device rd;
  return absl::StrCat(prefix, absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
                      absl::Hex(rd() & 0xffff, absl::kZeroPad4));
}

size_t StepsIn(const Rollout& r, const std::string& environment) {
  return static_cast<size_t>(
      std::count_if(r.steps.begin(), r.steps.end(),
                    [&](const RolloutStep& s) { return s.environment == environment; }));
}

std::string Plural(size_t n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

// What a rollout waiting at `environment`'s approval gate says.
std::string ApprovalReason(const std::string& environment, const std::string& id) {
  return absl::StrCat(environment, " waits for approval: lockstep approve ", id);
}

std::string When(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

}  // namespace

struct RolloutEngine::Active {
  Rollout r;  // guarded by the engine's mu_
  bool paused = false;
  bool aborted = false;
  bool halted = false;
  std::string stop_reason;          // why pending steps are skipped
  std::atomic<bool> cancel{false};  // stops running Alembic processes (abort, Stop)
  std::set<size_t> canary_gates_passed;  // stages whose canary gate is behind them
  // The approval gate the runner waits at now, if any: an approval applies
  // to it alone (never to a gate ahead), so a second `approve` cannot vouch
  // for canaries that have not run yet.
  enum class Gate { kNone, kStage, kCanaries };
  Gate waiting = Gate::kNone;
  size_t waiting_stage = 0;
  // Finished while the state store refused writes: kept among the active
  // ones (its environments stay busy) until CheckStore records its end.
  bool unrecorded = false;
};

RolloutEngine::RolloutEngine(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                             std::shared_ptr<Drivers> drivers, RolloutHooks hooks,
                             Options options)
    : reconciler_(std::move(reconciler)),
      store_(store),
      drivers_(std::move(drivers)),
      hooks_(std::move(hooks)),
      clock_(options.clock != nullptr ? options.clock : &real_clock_),
      backups_(store_, drivers_.get(), clock_),
      executor_(reconciler_, store_, drivers_.get(), {clock_, std::move(options.alembic)}),
      events_(store_, [this](const absl::Status& s) {
        std::lock_guard<std::mutex> lock(mu_);
        StoreFailed(s);
      }) {}

RolloutEngine::~RolloutEngine() { Stop(); }

void RolloutEngine::Stop() {
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
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
    other->stop_reason =
        absl::StrCat("halted: ", store_error_, "; nothing more is done until it can");
  }
  changed_.notify_all();
}

std::string RolloutEngine::StoreError() const {
  std::lock_guard<std::mutex> lock(mu_);
  return store_error_;
}

absl::Status RolloutEngine::CheckStore(bool retry_writes) {
  std::lock_guard<std::mutex> lock(mu_);
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
    Emit(*it->second, "recovered", "", "",
         absl::StrCat("the state store takes writes again; ", it->second->r.state, " recorded"));
    events_.Forget(it->first);
    it = active_.erase(it);
  }
  UpdateGauges();
  return absl::OkStatus();
}

void RolloutEngine::Emit(Active& a, const std::string& kind, const std::string& environment,
                         const std::string& database, const std::string& message) {
  // Valid UTF-8 once, here (Alembic prints any bytes; a discovered file's
  // name may hold any), rather than in every reply to every watcher.
  auto valid = [](const std::string& s) { return IsValidUtf8(s) ? s : ValidUtf8(s); };
  RolloutEvent e{0, clock_->Now(), kind, valid(environment), valid(database), valid(message)};
  // Alembic's output lines are queued (a step never waits on the store for
  // them); every other event is written, with the lines before it, first.
  absl::Status s = events_.Append(a.r.id, &e, /*durable=*/kind != "output");
  if (!s.ok()) {
    e.message += absl::StrCat(" (not recorded: ", s.message(), ")");
    StoreFailed(s);
  }
  ++events_emitted_;
  if (hooks_.on_event) hooks_.on_event(a.r, e);
  // A line of output wakes nobody: watchers look for new lines every
  // kOutputLatency (WaitEvents). A step printing 20,000 lines would wake
  // each of 150 watchers 20,000 times, all contending for mu_ with it.
  if (kind != "output") changed_.notify_all();
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
  int awaiting = 0;
  for (const auto& [id, a] : active_) awaiting += a->r.state == "awaiting_approval" ? 1 : 0;
  if (hooks_.on_gauges) hooks_.on_gauges(static_cast<int>(active_.size()), awaiting);
}

bool RolloutEngine::WaitUntil(std::unique_lock<std::mutex>& lock, Active& a,
                              const std::function<bool()>& ready, absl::Time deadline) {
  while (true) {
    if (stopping_ || a.aborted || a.halted) return false;
    if (!a.paused && (ready() || clock_->Now() >= deadline)) return true;
    clock_->WaitUntil(changed_, lock, std::min(deadline, clock_->Now() + absl::Seconds(1)));
  }
}

absl::StatusOr<std::shared_ptr<RolloutEngine::Active>> RolloutEngine::FindControllable(
    const std::string& id) {
  absl::StatusOr<std::shared_ptr<Active>> a = Find(id);
  if (a.ok() && (*a)->aborted) {
    return absl::FailedPreconditionError(
        absl::StrCat("rollout ", id, " is being aborted (", (*a)->stop_reason,
                     "); it can no longer be approved, paused or resumed"));
  }
  return a;
}

absl::StatusOr<std::shared_ptr<RolloutEngine::Active>> RolloutEngine::Find(const std::string& id) {
  auto it = active_.find(id);
  if (it != active_.end()) return it->second;
  absl::StatusOr<Rollout> stored = store_->LoadRollout(id);
  if (!stored.ok()) return stored.status();
  return absl::FailedPreconditionError(
      absl::StrCat("rollout ", id, " has already ended (", stored->state, ")"));
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

absl::StatusOr<Rollout> RolloutEngine::Downgrade(const std::string& environment,
                                                 const std::string& database,
                                                 const std::string& target,
                                                 const std::string& requested_by) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (absl::Status store = RequireStore(); !store.ok()) return store;
  absl::Status runnable = RequireAlembicIni("downgrades");
  if (!runnable.ok()) return runnable;
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  absl::StatusOr<Rollout> plan = PlanDowngrade(
      environment, database, target, *reconciler_->inventory(), resolver, *reconciler_->Snapshot());
  if (!plan.ok()) return plan.status();
  plan->created_by = requested_by;
  return Launch(*std::move(plan), {});
}

absl::StatusOr<Rollout> RolloutEngine::Launch(Rollout rollout,
                                              const std::vector<PlanProblem>& overridden) {
  auto a = std::make_shared<Active>();
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
  if (absl::Status store = CheckStoreLocked(); !store.ok()) {
    return absl::UnavailableError(
        absl::StrCat(store.message(), "; no rollout starts until it can (lockstep status)"));
  }
  for (const RolloutStage& stage : rollout.stages) {
    for (const auto& [id, other] : active_) {
      for (const RolloutStage& busy : other->r.stages) {
        if (busy.environment == stage.environment) {
          return absl::FailedPreconditionError(absl::StrCat(
              stage.environment, " already has an active rollout, ", id, " (", other->r.state,
              "); one rollout per environment at a time: wait, or abort it"));
        }
      }
    }
  }
  const absl::Time now = clock_->Now();
  rollout.id = NewId(rollout.kind == "downgrade" ? "d-" : "r-", now);
  rollout.created_at = rollout.updated_at = now;
  rollout.state = "running";
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
  Emit(*a, "rollout_started", "", "",
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
      Emit(*a, "override_drift", "", "",
           absl::StrCat(p.database, ": schema drift overridden by ", who, " (--allow-drift): ",
                        p.message));
    } else {
      Emit(*a, "override_lint", "", "",
           absl::StrCat("lint ", p.code, " overridden by ", who, " (--allow-lint): ", p.message));
    }
  }
  if (!promotion.empty()) {
    Emit(*a, "override_promotion", "", "",
         absl::StrCat("promotion gate overridden by ", who, ": ", absl::StrJoin(promotion, "; ")));
  }
  UpdateGauges();
  StartRunner(a);
  return a->r;
}

void RolloutEngine::Prewarm(std::function<void(const absl::Status&, absl::Duration)> done) {
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  if (inv->project.alembic_runner != "warm") return;
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  for (Rollout& r : *unfinished) {
    auto a = std::make_shared<Active>();
    a->r = std::move(r);
    a->paused = a->r.state == "paused";
    active_[a->r.id] = a;
    Emit(*a, "recovered", "", "",
         absl::StrCat("lockstepd restarted; continuing ", a->r.id, " (", a->r.state, ")"));
    StartRunner(a);
  }
  UpdateGauges();
  return absl::OkStatus();
}

// ---- control ---------------------------------------------------------------

absl::Status RolloutEngine::Approve(const std::string& id, const std::string& who) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Active>> a = FindControllable(id);
  if (!a.ok()) return a.status();
  if (!store_error_.empty()) return absl::UnavailableError(store_error_);
  Active& active = **a;
  // Only the gate waiting at this moment: a stage gate ahead, or the canary
  // gate of a stage whose canaries have not run, is not approved in advance.
  if (active.waiting == Active::Gate::kNone) {
    return absl::FailedPreconditionError(
        absl::StrCat("rollout ", id, " has no stage waiting for approval"));
  }
  const size_t i = active.waiting_stage;
  RolloutStage& s = active.r.stages[i];
  const std::string by = who.empty() ? "unnamed" : who;
  if (active.waiting == Active::Gate::kStage) {
    s.approved_by = by;
    s.approved_at = clock_->Now();
    SaveStage(active, i);
    Emit(active, "approved", s.environment, "", absl::StrCat(s.environment, " approved by ", by));
  } else {
    s.canary_approved_by = by;
    s.canary_approved_at = clock_->Now();
    SaveStage(active, i);
    Emit(active, "approved", s.environment, "",
         absl::StrCat(s.environment, " canaries approved by ", by,
                      "; the other databases start"));
  }
  active.waiting = Active::Gate::kNone;  // one approval per gate
  changed_.notify_all();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Pause(const std::string& id, const std::string& who) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Active>> a = FindControllable(id);
  if (!a.ok()) return a.status();
  if ((*a)->paused)
    return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is already paused"));
  (*a)->paused = true;
  (*a)->r.state = "paused";
  (*a)->r.reason = absl::StrCat("paused by ", who.empty() ? "an unnamed caller" : who);
  SaveHeader(**a);
  Emit(**a, "paused", "", "", (*a)->r.reason + "; running steps finish, no new ones start");
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Resume(const std::string& id, const std::string& who) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Active>> a = FindControllable(id);
  if (!a.ok()) return a.status();
  if (!(*a)->paused)
    return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is not paused"));
  if (!store_error_.empty()) return absl::UnavailableError(store_error_);
  (*a)->paused = false;
  // Back to what it was doing: running, or waiting at a stage's gate.
  Rollout& r = (*a)->r;
  r.state = "running";
  r.reason.clear();
  for (const RolloutStage& st : r.stages) {
    if (st.state == "awaiting_approval") {
      r.state = st.state;
      r.reason = ApprovalReason(st.environment, r.id);
    } else if (st.state == "soaking") {
      r.state = st.state;
      r.reason = absl::StrCat("soaking before ", st.environment);
    }
  }
  SaveHeader(**a);
  Emit(**a, "resumed", "", "",
       absl::StrCat("resumed by ", who.empty() ? "an unnamed caller" : who));
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status RolloutEngine::Abort(const std::string& id, const std::string& who) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Active>> a = Find(id);
  if (!a.ok()) return a.status();
  if ((*a)->aborted) return absl::OkStatus();
  (*a)->aborted = true;
  (*a)->cancel = true;
  (*a)->stop_reason = absl::StrCat("rollout aborted by ", who.empty() ? "an unnamed caller" : who);
  Emit(**a, "aborted", "", "",
       (*a)->stop_reason +
           "; a running Alembic is stopped and its database rolled back as on_failure says");
  return absl::OkStatus();
}

absl::StatusOr<Rollout> RolloutEngine::Get(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second->r;
  }
  return store_->LoadRollout(id);
}

absl::StatusOr<std::string> RolloutEngine::StateOf(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  for (Rollout& r : *out) {
    auto it = active_.find(r.id);
    if (it != active_.end()) r = it->second->r;
  }
  return out;
}

absl::StatusOr<std::vector<RolloutEvent>> RolloutEngine::WaitEvents(const std::string& id,
                                                                    int64_t after_seq,
                                                                    absl::Duration wait,
                                                                    bool* finished) {
  constexpr int kBatch = 500;
  const absl::Time deadline = absl::Now() + wait;
  *finished = false;
  while (true) {
    uint64_t seen;
    bool active;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = events_emitted_;
      active = active_.count(id) > 0;
    }
    if (!active) {
      absl::StatusOr<Rollout> r = store_->LoadRollout(id);
      if (!r.ok()) return r.status();
    }
    absl::StatusOr<std::vector<RolloutEvent>> events = events_.Read(id, after_seq, kBatch);
    if (!events.ok()) return events.status();
    if (!active && events->size() < static_cast<size_t>(kBatch)) *finished = true;
    if (!events->empty() || *finished) return events;
    std::unique_lock<std::mutex> lock(mu_);
    if (absl::Now() >= deadline) return events;
    const absl::Time until = std::min(deadline, absl::Now() + kOutputLatency);
    changed_.wait_until(lock, absl::ToChronoTime(until),
                        [&] { return events_emitted_ != seen || stopping_; });
    if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
  }
}

// ---- backups ---------------------------------------------------------------

absl::StatusOr<std::vector<Backup>> RolloutEngine::Backups(const std::string& environment,
                                                           const std::string& database, int limit) {
  return store_->Backups(environment, database, limit);
}

absl::StatusOr<RestoreResult> RolloutEngine::Restore(int64_t backup_id, const std::string& who,
                                                     bool yes) {
  const std::string actor = who.empty() ? "unnamed" : who;
  if (absl::Status store = CheckStore(); !store.ok()) return store;
  absl::StatusOr<Backup> b = store_->GetBackup(backup_id);
  if (!b.ok()) return b.status();
  absl::Status verified = backups_.Verify(*b);
  if (!verified.ok()) return verified;
  const std::string key = absl::StrCat(b->environment, "/", b->database);
  std::optional<VersionTarget> target = reconciler_->Target(key);
  if (!target) {
    return absl::FailedPreconditionError(
        absl::StrCat(key, " is not in the inventory any more; restore ", b->path, " by hand"));
  }
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*target);
  if (!url.ok()) return url.status();
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  // A SQLite file that is gone holds nothing to lose and nothing to back
  // up: the lock creates it empty (and removes it again if the restore
  // fails), the restore fills it.
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock = drivers_->For(*url).Lock(
      *target, *url, inv->server.connect_timeout, IfMissing::kCreate);
  if (!lock.ok()) return lock.status();

  RestoreResult result;
  const bool file_gone = (*lock)->created();
  if (file_gone) {
    result.changed = true;
  } else {
    absl::StatusOr<Backup> safety =
        TakeSafetyBackup(*b, *target, *url, actor, yes, &result.changed);
    if (!safety.ok()) return safety.status();
    result.safety = *std::move(safety);
  }
  absl::Status restored = (*lock)->Check();
  if (restored.ok()) restored = backups_.RestoreVerified(*b, *url, *inv);  // verified above
  if (!restored.ok()) {
    if (result.safety.id == 0) return restored;
    return absl::Status(restored.code(), absl::StrCat(restored.message(), " (safety backup ",
                                                      result.safety.id, " was taken first)"));
  }
  const absl::Time restored_at = clock_->Now();
  absl::Status marked = store_->MarkRestored(backup_id, actor, restored_at);
  (void)marked;  // the restore happened; lockstepd's log still says who did it
  VersionRead read = drivers_->Read(*target);
  lock->reset();
  absl::Status refreshed = reconciler_->Refresh();
  (void)refreshed;  // the poll loop reports refresh problems

  result.restored = *b;
  result.restored.restored_by = actor;
  result.restored.restored_at = restored_at;
  result.revisions = read.rows;
  {
    std::lock_guard<std::mutex> guard(mu_);
    if (hooks_.on_restore) hooks_.on_restore(result);
  }
  const std::string undo =
      result.safety.id == 0
          ? ""
          : absl::StrCat("; safety backup ", result.safety.id, " holds what was there before");
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(
        absl::StrCat("restored ", key, " but cannot read its version rows: ", read.error, undo));
  }
  if (read.rows != b->revisions) {
    return absl::DataLossError(absl::StrCat("restored ", key, " from backup ", backup_id,
                                            " but it holds ", RowsText(read.rows),
                                            ", not the backup's ", RowsText(b->revisions), undo));
  }
  return result;
}

absl::StatusOr<Backup> RolloutEngine::TakeSafetyBackup(const Backup& backup,
                                                       const VersionTarget& target,
                                                       const config::DatabaseUrl& url,
                                                       const std::string& actor, bool yes,
                                                       bool* changed) {
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  // A database that cannot be read cannot be compared or backed up: refused,
  // even with `yes` (restore such a one by hand).
  VersionRead before = drivers_->Read(target);
  if (before.outcome != ReadOutcome::kOk && before.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(absl::StrCat("cannot read the version rows of ", target.name,
                                               ", so cannot tell what restoring backup ", backup.id,
                                               " would lose: ", before.error));
  }
  absl::StatusOr<BackupComparison> diff = drivers_->For(url).CompareWithBackup(
      backup, url, before.rows, inv->server.connect_timeout, inv->project.step_timeout);
  if (!diff.ok()) return diff.status();
  *changed = diff->changed();
  if (*changed && !yes) {
    return absl::FailedPreconditionError(absl::StrCat(
        target.name, " changed since backup ", backup.id,
        " was taken; restoring it would lose:\n  ", absl::StrJoin(diff->Describe(), "\n  "),
        "\nNothing was changed. To restore anyway (a safety backup of what is there now is "
        "taken first), confirm with --yes"));
  }
  // The same machinery as a step's backup, so that `lockstep restore <its
  // id>` undoes this restore.
  Backup meta;
  meta.revisions = before.rows;
  meta.safety_for = backup.id;
  meta.note = absl::StrCat("safety copy taken before ", actor, " restored backup ", backup.id);
  absl::StatusOr<Backup> safety = backups_.Take(target, url, *inv, meta);
  if (!safety.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("nothing restored: the safety backup of ",
                                                      target.name,
                                                      " failed: ", safety.status().message()));
  }
  std::lock_guard<std::mutex> guard(mu_);
  if (hooks_.on_backup) hooks_.on_backup(*safety);
  return safety;
}

// ---- running ---------------------------------------------------------------

void RolloutEngine::Run(std::shared_ptr<Active> active) {
  Active& a = *active;
  // Steps a previous lockstepd left running are settled first.
  std::vector<int> unsettled;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const RolloutStep& s : a.r.steps) {
      if (s.state == "running") unsettled.push_back(s.index);
    }
  }
  for (int i : unsettled) {
    RolloutStep step;
    {
      std::lock_guard<std::mutex> lock(mu_);
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
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_ || a.aborted || a.halted) return false;
  RolloutStage& st = a.r.stages[i];
  if (st.state == "succeeded") return true;
  if (st.state != "pending" && st.state != "soaking" && st.state != "awaiting_approval" &&
      st.state != "running") {
    return false;
  }
  std::map<int, std::vector<int>> waves;
  for (const RolloutStep& s : a.r.steps) {
    if (s.environment == st.environment) waves[s.wave].push_back(s.index);
  }
  const bool has_work = !waves.empty();
  if (st.state != "running" && has_work) {
    // The soak runs from the end of the previous stage when it moved
    // databases; otherwise the planner checked it against the fleet.
    if (i > 0 && st.soak > absl::ZeroDuration() &&
        StepsIn(a.r, a.r.stages[i - 1].environment) > 0) {
      const absl::Time until = a.r.stages[i - 1].finished_at + st.soak;
      if (clock_->Now() < until) {
        st.state = "soaking";
        SaveStage(a, i);
        if (!a.paused) a.r.state = "soaking";
        a.r.reason = absl::StrCat(a.r.stages[i - 1].environment, " soaks until ", When(until),
                                  " before ", st.environment);
        SaveHeader(a);
        Emit(a, "soaking", st.environment, "", a.r.reason);
        if (!WaitUntil(
                lock, a, [] { return false; }, until))
          return false;
      }
    }
    if (st.approval_required && st.approved_by.empty()) {
      st.state = "awaiting_approval";
      SaveStage(a, i);
      if (!a.paused) a.r.state = "awaiting_approval";
      a.r.reason = ApprovalReason(st.environment, a.r.id);
      SaveHeader(a);
      Emit(a, "awaiting_approval", st.environment, "", a.r.reason);
      UpdateGauges();
      a.waiting = Active::Gate::kStage;
      a.waiting_stage = i;
      const bool approved = WaitUntil(lock, a, [&st] { return !st.approved_by.empty(); });
      a.waiting = Active::Gate::kNone;
      if (!approved) return false;
    }
  }
  if (st.state != "running") {
    st.state = "running";
    st.started_at = clock_->Now();
    SaveStage(a, i);
    Emit(
        a, "stage_started", st.environment, "",
        absl::StrCat(st.environment, ": ", Plural(StepsIn(a.r, st.environment), "database"), " in ",
                     Plural(waves.size(), "wave"), ", at most ", st.max_parallel, " at once"));
  }
  if (!a.paused) {
    a.r.state = "running";
    a.r.reason.clear();
    SaveHeader(a);
  }
  UpdateGauges();
  lock.unlock();
  for (const auto& [wave, steps] : waves) {
    const bool canary_wave = a.r.steps[static_cast<size_t>(steps.front())].canary;
    if (!canary_wave && !CanaryGate(a, i)) break;
    RunWave(a, i, steps);
    lock.lock();
    bool stop = a.aborted || a.halted || stopping_;
    lock.unlock();
    if (stop) break;
  }
  lock.lock();
  if (stopping_) return false;
  bool unfinished = std::any_of(a.r.steps.begin(), a.r.steps.end(), [&](const RolloutStep& s) {
    return s.environment == st.environment && !s.finished();
  });
  st.state = a.aborted         ? "aborted"
             : a.halted        ? "halted"
             : st.failures > 0 ? "failed"
             : unfinished      ? "failed"
                               : "succeeded";
  st.finished_at = clock_->Now();
  SaveStage(a, i);
  Emit(a, "stage_finished", st.environment, "",
       absl::StrCat(st.environment, " ", st.state,
                    st.failures > 0 ? absl::StrCat(" (", st.failures, " failed)") : ""));
  return st.state == "succeeded";
}

void RolloutEngine::RunWave(Active& a, size_t stage_index, const std::vector<int>& steps) {
  size_t next = 0;  // guarded by mu_
  auto worker = [&] {
    while (true) {
      int step = -1;
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (!WaitUntil(lock, a, [] { return true; }) || a.halted) return;
        while (next < steps.size() && step < 0) {
          int candidate = steps[next++];
          if (a.r.steps[static_cast<size_t>(candidate)].state == "pending") step = candidate;
        }
        if (step < 0) return;
      }
      RunStep(a, stage_index, step);
    }
  };
  int parallel;
  {
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    step = a.r.steps[static_cast<size_t>(index)];
    job = {a.r.id, a.r.kind, a.r.target, a.r.stages[stage_index]};
  }
  const absl::Time started = clock_->Now();
  executor_.Run(job, &step, &a.cancel, StepHooks(a));
  if (!step.finished()) return;  // lockstepd is stopping
  std::lock_guard<std::mutex> lock(mu_);
  if (hooks_.on_step_finished) hooks_.on_step_finished(step, step.finished_at - started);
  if (step.state == "failed" && !a.aborted) CountFailure(a, stage_index, step);
}

StepExecutor::Hooks RolloutEngine::StepHooks(Active& a) {
  StepExecutor::Hooks hooks;
  hooks.save = [this, &a](const RolloutStep& step) {
    std::lock_guard<std::mutex> lock(mu_);
    SaveStep(a, step);
  };
  hooks.event = [this, &a](const RolloutStep& step, const std::string& kind,
                           const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    Emit(a, kind, step.environment, step.database, message);
  };
  hooks.backup_taken = [this](const Backup& b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (hooks_.on_backup) hooks_.on_backup(b);
  };
  hooks.stopping = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  };
  return hooks;
}

bool RolloutEngine::CanaryGate(Active& a, size_t i) {
  std::unique_lock<std::mutex> lock(mu_);
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
    a.halted = true;
    a.stop_reason = absl::StrCat("rollout halted: ", why);
    Emit(a, "halted", st.environment, "", a.stop_reason);
    return false;
  };
  // A canary that failed stops the stage, whatever max_failures allows:
  // that is what it went first for.
  for (const RolloutStep& c : canaries) {
    if (c.state != "succeeded") {
      return halt(absl::StrCat("canary ", c.key(), " ", c.state, ": ", c.error));
    }
  }
  const std::string others = Plural(static_cast<size_t>(rest), "other database");
  if (!canaries.empty() && st.canary_soak > absl::ZeroDuration()) {
    const absl::Time until = done + st.canary_soak;
    if (clock_->Now() < until) {
      st.state = "soaking";
      SaveStage(a, i);
      if (!a.paused) a.r.state = "soaking";
      a.r.reason = absl::StrCat(st.environment, " canaries soak until ", When(until), " before the ",
                                others);
      SaveHeader(a);
      Emit(a, "canary_soaking", st.environment, "", a.r.reason);
      UpdateGauges();
      if (!WaitUntil(lock, a, [] { return false; }, until)) return false;
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
    Emit(a, "canary_soaked", st.environment, "",
         absl::StrCat(st.environment, " canaries held the target for ",
                      absl::FormatDuration(st.canary_soak)));
  }
  if (!canaries.empty() && st.canary_approval_required && st.canary_approved_by.empty()) {
    st.state = "awaiting_approval";
    SaveStage(a, i);
    if (!a.paused) a.r.state = "awaiting_approval";
    a.r.reason = absl::StrCat(st.environment, " canaries hold the target; the ", others,
                              " wait for approval: lockstep approve ", a.r.id);
    SaveHeader(a);
    Emit(a, "awaiting_approval", st.environment, "", a.r.reason);
    UpdateGauges();
    a.waiting = Active::Gate::kCanaries;
    a.waiting_stage = i;
    const bool approved = WaitUntil(lock, a, [&st] { return !st.canary_approved_by.empty(); });
    a.waiting = Active::Gate::kNone;
    if (!approved) return false;
  }
  if (st.state != "running") {
    st.state = "running";
    SaveStage(a, i);
  }
  if (!a.paused) {
    a.r.state = "running";
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
    a.stop_reason = absl::StrCat("rollout halted: ", st.failures, " failed in ", st.environment,
                                 ", more than max_failures ", st.max_failures, "; ", failed.key(),
                                 ": ", failed.error);
    Emit(a, "halted", st.environment, "", a.stop_reason);
  }
}

void RolloutEngine::Settle(Active& a, RolloutStep* step) {
  executor_.Settle(a.r.id, step, StepHooks(a));  // the id never changes: no lock
  if (step->state != "failed") return;
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < a.r.stages.size(); ++i) {
    if (a.r.stages[i].environment == step->environment) CountFailure(a, i, *step);
  }
}

void RolloutEngine::Finish(Active& a) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return;  // not finished: the next lockstepd continues it
  std::string skip_reason = a.stop_reason;
  int failed = 0;
  const RolloutStep* first_failure = nullptr;
  for (const RolloutStep& s : a.r.steps) {
    if (s.state != "failed") continue;
    if (failed++ == 0) first_failure = &s;
  }
  for (size_t i = 0; i < a.r.stages.size(); ++i) {
    RolloutStage& st = a.r.stages[i];
    if (skip_reason.empty() && i > 0 && st.state == "pending" &&
        a.r.stages[i - 1].state != "succeeded") {
      skip_reason = absl::StrCat(a.r.stages[i - 1].environment, " did not succeed (",
                                 a.r.stages[i - 1].state, "), so it is not promoted further");
    }
    if (st.state == "pending" || st.state == "soaking" || st.state == "awaiting_approval") {
      st.state = a.aborted ? "aborted" : "skipped";
      SaveStage(a, i);
    }
  }
  for (RolloutStep& s : a.r.steps) {
    if (s.state != "pending") continue;
    s.state = "skipped";
    s.error = skip_reason;
    SaveStep(a, s);
    Emit(a, "step_skipped", s.environment, s.database, skip_reason);
  }
  a.r.state = a.aborted ? "aborted" : a.halted ? "halted" : failed > 0 ? "failed" : "succeeded";
  a.r.reason = a.r.state == "succeeded"
                   ? absl::StrCat(Plural(a.r.steps.size(), "database"), " at ", a.r.target)
               : !skip_reason.empty()
                   ? skip_reason
                   : absl::StrCat(failed, " of ", Plural(a.r.steps.size(), "database"),
                                  " failed; ", first_failure->key(), ": ", first_failure->error);
  if (a.r.state == "succeeded" && a.r.kind == "downgrade" && a.r.steps.size() == 1) {
    // The revisions it holds, not the target as given ("-1"): a step
    // succeeds only when the rows read after it are the expected ones.
    const RolloutStep& step = a.r.steps[0];
    a.r.reason = absl::StrCat(step.key(), " now holds ", RowsText(step.expected));
  }
  a.r.finished_at = clock_->Now();
  SaveHeader(a);
  Emit(a, "rollout_finished", "", "", absl::StrCat(a.r.state, ": ", a.r.reason));
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
