#include "daemon/rollout/engine.h"

#include <signal.h>

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/str_join.h"
#include "daemon/rollout/database_ops.h"
#include "daemon/rollout/process.h"
#include "migrations/migration_plan.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

std::string Rows(const std::vector<std::string>& rows) {
  return rows.empty() ? "[] (no version rows)" : absl::StrCat("[", absl::StrJoin(rows, ", "), "]");
}

std::string NewId(const std::string& prefix, absl::Time now) {
  std::random_device rd;
  return absl::StrCat(prefix, absl::FormatTime("%Y%m%d-%H%M%S", now, absl::UTCTimeZone()), "-",
                      absl::Hex(rd() & 0xffff, absl::kZeroPad4));
}

size_t StepsIn(const Rollout& r, const std::string& environment) {
  return static_cast<size_t>(std::count_if(r.steps.begin(), r.steps.end(), [&](const RolloutStep& s) {
    return s.environment == environment;
  }));
}

std::string Plural(size_t n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

std::string When(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

// The Alembic command line for one database; the password stays out of it.
ProcessSpec AlembicSpec(const config::Inventory& inv, const config::DatabaseUrl& url,
                        const std::string& command, const std::string& target) {
  ProcessSpec spec;
  spec.argv = inv.project.alembic_command;
  spec.argv.insert(spec.argv.end(), {"-c", inv.project.alembic_ini});
  if (inv.project.ini_section != "alembic") {
    spec.argv.insert(spec.argv.end(), {"-n", inv.project.ini_section});
  }
  config::DatabaseUrl without_password = url;
  without_password.password.reset();
  spec.argv.insert(spec.argv.end(), {"-x", "url=" + without_password.ToSqlAlchemy(), command, target});
  if (url.dialect == config::Dialect::kPostgresql) spec.env = LibpqEnvironment(url);
  spec.env.push_back("DATABASE_URL=" + url.ToSqlAlchemy());
  spec.cwd = inv.project.working_dir;
  spec.timeout = inv.project.step_timeout;
  return spec;
}

}  // namespace

struct RolloutEngine::Active {
  Rollout r;  // guarded by the engine's mu_
  bool paused = false;
  bool aborted = false;
  bool halted = false;
  std::string stop_reason;          // why pending steps are skipped
  std::atomic<bool> cancel{false};  // stops running Alembic processes (abort, Stop)
};

RolloutEngine::RolloutEngine(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                             std::unique_ptr<VersionReader> reader, RolloutHooks hooks)
    : reconciler_(std::move(reconciler)),
      store_(store),
      reader_(std::move(reader)),
      hooks_(std::move(hooks)) {}

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
  for (std::thread& t : threads) t.join();
}

// ---- persistence and events (mu_ held) -------------------------------------

void RolloutEngine::Emit(Active& a, const std::string& kind, const std::string& environment,
                         const std::string& database, const std::string& message) {
  RolloutEvent e{0, absl::Now(), kind, environment, database, message};
  absl::Status s = store_->AppendEvent(a.r.id, &e);
  if (!s.ok()) e.message += absl::StrCat(" (not recorded: ", s.message(), ")");
  ++events_emitted_;
  if (hooks_.on_event) hooks_.on_event(a.r, e);
  changed_.notify_all();
}

void RolloutEngine::SaveStep(Active& a, const RolloutStep& step) {
  a.r.steps[static_cast<size_t>(step.index)] = step;
  a.r.updated_at = absl::Now();
  absl::Status s = store_->SaveStep(a.r.id, step);
  if (!s.ok() && !a.halted) {
    // Without the write-ahead record nothing more may be done.
    a.halted = true;
    a.stop_reason = absl::StrCat("halted: ", s.message());
  }
}

void RolloutEngine::SaveStage(Active& a, size_t stage_index) {
  a.r.updated_at = absl::Now();
  absl::Status s = store_->SaveStage(a.r.id, static_cast<int>(stage_index), a.r.stages[stage_index]);
  if (!s.ok() && !a.halted) {
    a.halted = true;
    a.stop_reason = absl::StrCat("halted: ", s.message());
  }
}

void RolloutEngine::SaveHeader(Active& a) {
  a.r.updated_at = absl::Now();
  absl::Status s = store_->SaveRolloutHeader(a.r);
  if (!s.ok() && !a.halted) {
    a.halted = true;
    a.stop_reason = absl::StrCat("halted: ", s.message());
  }
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
    if (stopping_ || a.aborted) return false;
    if (!a.paused && (ready() || absl::Now() >= deadline)) return true;
    absl::Time wake = std::min(deadline, absl::Now() + absl::Seconds(1));
    changed_.wait_until(lock, absl::ToChronoTime(wake));
  }
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

absl::StatusOr<Rollout> RolloutEngine::Plan(const RolloutRequest& request) {
  std::vector<std::string> overridden;
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  absl::StatusOr<Rollout> plan = PlanRollout(request, *reconciler_->inventory(), resolver,
                                             *reconciler_->Snapshot(), absl::Now(), &overridden);
  if (plan.ok() && !overridden.empty()) {
    plan->reason = absl::StrCat("promotion gate overridden: ", absl::StrJoin(overridden, "; "));
  }
  return plan;
}

absl::StatusOr<Rollout> RolloutEngine::Start(const RolloutRequest& request) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (reconciler_->inventory()->project.alembic_ini.empty()) {
    return absl::FailedPreconditionError(
        "rollouts run Alembic, which needs project.alembic_ini in the inventory (not scripts)");
  }
  std::vector<std::string> overridden;
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  absl::StatusOr<Rollout> plan = PlanRollout(request, *reconciler_->inventory(), resolver,
                                             *reconciler_->Snapshot(), absl::Now(), &overridden);
  if (!plan.ok()) return plan.status();
  return Launch(*std::move(plan), overridden);
}

absl::StatusOr<Rollout> RolloutEngine::Downgrade(const std::string& environment,
                                                 const std::string& database,
                                                 const std::string& target,
                                                 const std::string& requested_by) {
  std::lock_guard<std::mutex> one_at_a_time(start_mu_);
  if (reconciler_->inventory()->project.alembic_ini.empty()) {
    return absl::FailedPreconditionError(
        "downgrades run Alembic, which needs project.alembic_ini in the inventory (not scripts)");
  }
  absl::Status refreshed = reconciler_->Refresh();
  if (!refreshed.ok()) return refreshed;
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  absl::StatusOr<Rollout> plan = PlanDowngrade(environment, database, target,
                                               *reconciler_->inventory(), resolver,
                                               *reconciler_->Snapshot());
  if (!plan.ok()) return plan.status();
  plan->created_by = requested_by;
  return Launch(*std::move(plan), {});
}

absl::StatusOr<Rollout> RolloutEngine::Launch(Rollout rollout,
                                              const std::vector<std::string>& overridden) {
  auto a = std::make_shared<Active>();
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
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
  const absl::Time now = absl::Now();
  rollout.id = NewId(rollout.kind == "downgrade" ? "d-" : "r-", now);
  rollout.created_at = rollout.updated_at = now;
  rollout.state = "running";
  a->r = std::move(rollout);
  absl::Status saved = store_->SaveRollout(a->r);
  if (!saved.ok()) return saved;
  active_[a->r.id] = a;
  std::vector<std::string> envs;
  for (const RolloutStage& s : a->r.stages) envs.push_back(s.environment);
  Emit(*a, "rollout_started", "", "",
       absl::StrCat(a->r.kind, " to ", a->r.target, " (", absl::StrJoin(a->r.target_revisions, ", "),
                    "): ", Plural(a->r.steps.size(), "database"), " in ", absl::StrJoin(envs, ", "),
                    a->r.created_by.empty() ? "" : absl::StrCat("; requested by ", a->r.created_by)));
  if (!overridden.empty()) {
    Emit(*a, "override_promotion", "", "",
         absl::StrCat("promotion gate overridden by ",
                      a->r.created_by.empty() ? "an unnamed caller" : a->r.created_by, ": ",
                      absl::StrJoin(overridden, "; ")));
  }
  UpdateGauges();
  StartRunner(a);
  return a->r;
}

void RolloutEngine::StartRunner(std::shared_ptr<Active> active) {
  threads_.emplace_back([this, active] { Run(active); });
}

absl::Status RolloutEngine::Recover() {
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
  absl::StatusOr<std::shared_ptr<Active>> a = Find(id);
  if (!a.ok()) return a.status();
  Rollout& r = (*a)->r;
  for (size_t i = 0; i < r.stages.size(); ++i) {
    RolloutStage& s = r.stages[i];
    if (!s.approval_required || !s.approved_by.empty()) continue;
    if (s.state != "pending" && s.state != "soaking" && s.state != "awaiting_approval") continue;
    s.approved_by = who.empty() ? "unnamed" : who;
    s.approved_at = absl::Now();
    SaveStage(**a, i);
    Emit(**a, "approved", s.environment, "", absl::StrCat(s.environment, " approved by ", s.approved_by));
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("rollout ", id, " has no stage waiting for approval"));
}

absl::Status RolloutEngine::Pause(const std::string& id, const std::string& who) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<std::shared_ptr<Active>> a = Find(id);
  if (!a.ok()) return a.status();
  if ((*a)->paused) return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is already paused"));
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
  absl::StatusOr<std::shared_ptr<Active>> a = Find(id);
  if (!a.ok()) return a.status();
  if (!(*a)->paused) return absl::FailedPreconditionError(absl::StrCat("rollout ", id, " is not paused"));
  (*a)->paused = false;
  (*a)->r.state = "running";
  (*a)->r.reason.clear();
  SaveHeader(**a);
  Emit(**a, "resumed", "", "", absl::StrCat("resumed by ", who.empty() ? "an unnamed caller" : who));
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
  Emit(**a, "aborted", "", "", (*a)->stop_reason + "; a running Alembic is stopped and its database restored");
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
    absl::StatusOr<std::vector<RolloutEvent>> events = store_->Events(id, after_seq, kBatch);
    if (!events.ok()) return events.status();
    if (!active && events->size() < static_cast<size_t>(kBatch)) *finished = true;
    if (!events->empty() || *finished) return events;
    std::unique_lock<std::mutex> lock(mu_);
    if (absl::Now() >= deadline) return events;
    changed_.wait_until(lock, absl::ToChronoTime(deadline),
                        [&] { return events_emitted_ != seen || stopping_; });
    if (stopping_) return absl::UnavailableError("lockstepd is shutting down");
  }
}

// ---- backups ---------------------------------------------------------------

absl::StatusOr<std::vector<Backup>> RolloutEngine::Backups(const std::string& environment,
                                                           const std::string& database, int limit) {
  return store_->Backups(environment, database, limit);
}

absl::StatusOr<std::vector<std::string>> RolloutEngine::Restore(int64_t backup_id,
                                                                const std::string& who) {
  absl::StatusOr<Backup> b = store_->GetBackup(backup_id);
  if (!b.ok()) return b.status();
  absl::Status verified = VerifyBackup(*b);
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
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
      DatabaseLock::Acquire(*target, *url, inv->server.connect_timeout);
  if (!lock.ok()) return lock.status();
  absl::Status restored = RestoreBackup(*b, *url, inv->project.step_timeout);
  if (!restored.ok()) return restored;
  VersionRead read = reader_->Read(*target);
  lock->reset();
  (void)who;
  absl::Status refreshed = reconciler_->Refresh();
  (void)refreshed;  // the poll loop reports refresh problems
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(absl::StrCat("restored ", key, " but cannot read its version rows: ",
                                               read.error));
  }
  if (read.rows != b->revisions) {
    return absl::DataLossError(absl::StrCat("restored ", key, " from backup ", backup_id,
                                            " but it holds ", Rows(read.rows), ", not the backup's ",
                                            Rows(b->revisions)));
  }
  return read.rows;
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
    if (i > 0 && st.soak > absl::ZeroDuration() && StepsIn(a.r, a.r.stages[i - 1].environment) > 0) {
      const absl::Time until = a.r.stages[i - 1].finished_at + st.soak;
      if (absl::Now() < until) {
        st.state = "soaking";
        SaveStage(a, i);
        if (!a.paused) a.r.state = "soaking";
        a.r.reason = absl::StrCat(a.r.stages[i - 1].environment, " soaks until ", When(until),
                                  " before ", st.environment);
        SaveHeader(a);
        Emit(a, "soaking", st.environment, "", a.r.reason);
        if (!WaitUntil(lock, a, [] { return false; }, until)) return false;
      }
    }
    if (st.approval_required && st.approved_by.empty()) {
      st.state = "awaiting_approval";
      SaveStage(a, i);
      if (!a.paused) a.r.state = "awaiting_approval";
      a.r.reason = absl::StrCat(st.environment, " waits for approval: lockstep approve ", a.r.id);
      SaveHeader(a);
      Emit(a, "awaiting_approval", st.environment, "", a.r.reason);
      UpdateGauges();
      if (!WaitUntil(lock, a, [&st] { return !st.approved_by.empty(); })) return false;
    }
  }
  if (st.state != "running") {
    st.state = "running";
    st.started_at = absl::Now();
    SaveStage(a, i);
    Emit(a, "stage_started", st.environment, "",
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
  st.state = a.aborted ? "aborted" : a.halted ? "halted" : st.failures > 0 ? "failed"
             : unfinished ? "failed" : "succeeded";
  st.finished_at = absl::Now();
  SaveStage(a, i);
  Emit(a, "stage_finished", st.environment, "",
       absl::StrCat(st.environment, " ", st.state, st.failures > 0 ? absl::StrCat(" (", st.failures, " failed)") : ""));
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
    parallel = std::max(1, std::min<int>(a.r.stages[stage_index].max_parallel,
                                         static_cast<int>(steps.size())));
  }
  std::vector<std::thread> pool;
  for (int t = 1; t < parallel; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

// One database, start to end. Only this thread changes the step while it
// runs; every change is saved (under mu_) before the action it announces.
void RolloutEngine::RunStep(Active& a, size_t stage_index, int index) {
  RolloutStep s;
  RolloutStage policy;
  std::string kind;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = a.r.steps[static_cast<size_t>(index)];
    policy = a.r.stages[stage_index];
    kind = a.r.kind;
  }
  const std::string target_id = a.r.target;  // immutable after Launch
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  auto save = [&](const std::string& phase) {
    std::lock_guard<std::mutex> lock(mu_);
    s.phase = phase;
    SaveStep(a, s);
  };
  auto event = [&](const std::string& kind_of, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    Emit(a, kind_of, s.environment, s.database, message);
  };
  const absl::Time started = absl::Now();
  auto finish = [&](const std::string& state, const std::string& error) {
    s.state = state;
    s.error = state == "failed" ? error : "";
    s.finished_at = absl::Now();
    s.pid = 0;
    std::lock_guard<std::mutex> lock(mu_);
    s.phase.clear();
    SaveStep(a, s);
    if (state == "failed") {
      Emit(a, "step_failed", s.environment, s.database,
           absl::StrCat(error, s.rollback.empty() ? "" : absl::StrCat(" [", s.rollback, "]")));
    } else {
      Emit(a, "verified", s.environment, s.database, error);
    }
    if (hooks_.on_step_finished) hooks_.on_step_finished(s, s.finished_at - started);
    if (state == "failed" && !a.aborted) CountFailure(a, stage_index);
  };

  s.state = "running";
  s.started_at = started;
  s.error.clear();
  s.rollback.clear();
  save("lock");
  event("step_started", absl::StrCat("from ", Rows(s.from), " to ", Rows(s.expected), ": ",
                                     absl::StrJoin(s.path, ", ")));
  std::optional<VersionTarget> target = reconciler_->Target(s.key());
  if (!target) return finish("failed", "no longer in the inventory");
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*target);
  if (!url.ok()) return finish("failed", std::string(url.status().message()));
  absl::StatusOr<std::unique_ptr<DatabaseLock>> db_lock =
      DatabaseLock::Acquire(*target, *url, inv->server.connect_timeout);
  if (!db_lock.ok()) return finish("failed", std::string(db_lock.status().message()));

  // The database may have moved since the plan (by hand, or a retry).
  VersionRead before = reader_->Read(*target);
  if (before.outcome != ReadOutcome::kOk && before.outcome != ReadOutcome::kNoTable) {
    return finish("failed", absl::StrCat("cannot read the version rows: ", before.error));
  }
  if (before.rows == s.expected) return finish("succeeded", "already at the target; nothing to run");
  if (before.rows != s.from) {
    std::shared_ptr<const migrations::Project> project = reconciler_->project();
    migrations::Resolver resolver(&project->graph());
    auto path = kind == "downgrade" ? migrations::PlanDowngrade(resolver, before.rows, target_id)
                                    : migrations::PlanUpgrade(resolver, before.rows, target_id);
    if (!path.ok()) {
      return finish("failed", absl::StrCat("the database moved to ", Rows(before.rows),
                                           " since the plan and cannot go to ", target_id, ": ",
                                           migrations::CommandErrorMessage(path.status())));
    }
    event("replanned", absl::StrCat("the database moved from ", Rows(s.from), " to ",
                                    Rows(before.rows), " since the plan; new path"));
    s.from = before.rows;
    s.path.clear();
    for (const auto& step : *path) s.path.push_back(project->graph().id(step.revision));
    if (!path->empty()) s.expected = path->back().rows_after;
  }

  const bool want_backup = policy.backup_required || policy.on_failure == "restore";
  if (want_backup) {
    save("backup");
    absl::StatusOr<Backup> b = TakeBackup(*target, *url, inv->server.backup_dir, inv->project.step_timeout);
    if (b.ok()) {
      b->revisions = s.from;
      b->rollout_id = a.r.id;
      absl::Status catalogued = store_->AddBackup(&*b);
      if (!catalogued.ok()) return finish("failed", std::string(catalogued.message()));
      s.backup_id = b->id;
      event("backup_taken", absl::StrCat("backup ", b->id, ": ", b->size_bytes, " bytes in ",
                                         absl::FormatDuration(absl::Trunc(b->took, absl::Milliseconds(1))),
                                         ", sha256 ", b->sha256.substr(0, 12), "…, ", b->path));
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (hooks_.on_backup) hooks_.on_backup(*b);
      }
      // Retention: the newest backup_keep backups of this database stay.
      absl::StatusOr<std::vector<Backup>> all =
          store_->Backups(s.environment, s.database, 1 << 20);
      if (all.ok()) {
        for (size_t k = static_cast<size_t>(inv->server.backup_keep); k < all->size(); ++k) {
          ::unlink((*all)[k].path.c_str());
          absl::Status deleted = store_->DeleteBackup((*all)[k].id);
          (void)deleted;  // a catalog row left behind is refused at restore (file missing)
        }
      }
    } else if (policy.backup_required) {
      return finish("failed", absl::StrCat("backup required, and it failed: ", b.status().message()));
    } else {
      event("backup_failed", absl::StrCat("backup failed (continuing: backup is not required): ",
                                          b.status().message()));
    }
  }

  ++s.attempts;
  save("alembic");
  const std::string command = kind == "downgrade" ? "downgrade" : "upgrade";
  ProcessSpec spec = AlembicSpec(*inv, *url, command, target_id);
  ProcessResult run = RunProcess(
      spec, &a.cancel,
      [&](int pid) {
        s.pid = pid;
        save("alembic");
      },
      [&](const std::string& line) { event("output", line); });
  s.pid = 0;
  s.exit_code = run.exit_code;
  s.alembic_time = run.took;
  s.output = run.output;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // as if killed: Recover() settles it from the database
  }
  save("verify");
  VersionRead after = reader_->Read(*target);
  const bool readable = after.outcome == ReadOutcome::kOk || after.outcome == ReadOutcome::kNoTable;
  if (run.ok() && readable && after.rows == s.expected) {
    return finish("succeeded", absl::StrCat("holds ", Rows(after.rows), " as planned (Alembic took ",
                                            absl::FormatDuration(absl::Trunc(run.took, absl::Milliseconds(1))), ")"));
  }
  std::string error;
  if (!readable) {
    error = absl::StrCat("Alembic ", run.Describe(), "; then the version rows could not be read: ",
                         after.error);
  } else if (run.cancelled) {
    error = absl::StrCat("stopped by abort; the database holds ", Rows(after.rows));
  } else if (!run.ok() && after.rows == s.from) {
    error = absl::StrCat("Alembic ", run.Describe(), "; the version rows are unchanged at ",
                         Rows(after.rows));
  } else if (!run.ok()) {
    error = absl::StrCat("Alembic ", run.Describe(), " after the database moved from ", Rows(s.from),
                         " to ", Rows(after.rows));
  } else {
    error = absl::StrCat("Alembic exited 0 but the database holds ", Rows(after.rows),
                         ", not the planned ", Rows(s.expected));
  }

  // Bring it back to where it started, as the policy says, and check.
  save("rollback");
  const bool pg = url->dialect == config::Dialect::kPostgresql;
  std::string how = run.cancelled ? "restore" : policy.on_failure;
  if (how == "restore" && pg && readable && after.rows == s.from) {
    s.rollback = "rolled_back";  // PostgreSQL's transactional DDL undid it
    event("rolled_back", absl::StrCat("PostgreSQL rolled the migration's transaction back; verified at ",
                                      Rows(after.rows)));
  } else if (how == "restore") {
    absl::Status restored = absl::FailedPreconditionError("no backup was taken");
    if (s.backup_id != 0) {
      absl::StatusOr<Backup> b = store_->GetBackup(s.backup_id);
      restored = b.ok() ? VerifyBackup(*b) : b.status();
      if (restored.ok()) restored = RestoreBackup(*b, *url, inv->project.step_timeout);
    }
    VersionRead check = reader_->Read(*target);
    if (restored.ok() && check.rows != s.from) {
      restored = absl::DataLossError(absl::StrCat("after the restore it holds ", Rows(check.rows)));
    }
    s.rollback = restored.ok() ? "restored" : absl::StrCat("restore_failed: ", restored.message());
    event("rolled_back", restored.ok()
                             ? absl::StrCat("restored from backup ", s.backup_id, "; verified at ",
                                            Rows(check.rows))
                             : absl::StrCat("restore failed: ", restored.message()));
  } else if (how == "downgrade") {
    std::string to = s.from.empty() ? "base" : s.from.size() == 1 ? s.from[0] : "";
    if (to.empty()) {
      s.rollback = "downgrade_failed: it started from several heads; restore a backup instead";
    } else {
      ProcessResult down = RunProcess(AlembicSpec(*inv, *url, "downgrade", to), nullptr, nullptr,
                                      [&](const std::string& line) { event("output", line); });
      VersionRead check = reader_->Read(*target);
      s.rollback = down.ok() && check.rows == s.from
                       ? "downgraded"
                       : absl::StrCat("downgrade_failed: Alembic ", down.Describe(),
                                      ", the database holds ", Rows(check.rows));
    }
    event("rolled_back", s.rollback);
  } else {
    s.rollback = "left";
  }
  finish("failed", error);
}

void RolloutEngine::CountFailure(Active& a, size_t stage_index) {
  RolloutStage& st = a.r.stages[stage_index];
  ++st.failures;
  SaveStage(a, stage_index);
  if (st.failures > st.max_failures && !a.halted) {
    a.halted = true;
    a.stop_reason = absl::StrCat("rollout halted: ", st.failures, " failed in ", st.environment,
                                 ", more than max_failures ", st.max_failures);
    Emit(a, "halted", st.environment, "", a.stop_reason);
  }
}

void RolloutEngine::Settle(Active& a, RolloutStep* step) {
  RolloutStep& s = *step;
  auto save_and_emit = [&](const std::string& kind, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    SaveStep(a, s);
    Emit(a, kind, s.environment, s.database, message);
  };
  // An Alembic the dead lockstepd started normally died with it
  // (PR_SET_PDEATHSIG); if it is still there, stop it before looking.
  if (s.pid > 0 && ProcessAlive(s.pid)) {
    ::kill(-s.pid, SIGKILL);
    ::kill(s.pid, SIGKILL);
    for (int i = 0; i < 100 && ProcessAlive(s.pid); ++i) absl::SleepFor(absl::Milliseconds(100));
  }
  s.pid = 0;
  auto needs_attention = [&](const std::string& why) {
    s.state = "failed";
    s.error = absl::StrCat("needs attention after a restart: ", why);
    s.finished_at = absl::Now();
    s.phase.clear();
    save_and_emit("step_failed", s.error);
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < a.r.stages.size(); ++i) {
      if (a.r.stages[i].environment == s.environment) CountFailure(a, i);
    }
  };
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  std::optional<VersionTarget> target = reconciler_->Target(s.key());
  if (!target) {
    // The reconciler has not run yet in this process; one pass fills it.
    absl::Status refreshed = reconciler_->Refresh();
    (void)refreshed;
    target = reconciler_->Target(s.key());
  }
  if (!target) return needs_attention("no longer in the inventory");
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*target);
  if (!url.ok()) return needs_attention(std::string(url.status().message()));
  absl::StatusOr<std::unique_ptr<DatabaseLock>> db_lock =
      DatabaseLock::Acquire(*target, *url, inv->server.connect_timeout);
  if (!db_lock.ok()) return needs_attention(std::string(db_lock.status().message()));
  VersionRead read = reader_->Read(*target);
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    return needs_attention(absl::StrCat("cannot read the version rows: ", read.error));
  }
  const bool sqlite = url->dialect == config::Dialect::kSqlite;
  const bool alembic_may_have_run = s.phase == "alembic" || s.phase == "verify" || s.phase == "rollback";
  if (read.rows == s.expected && s.phase != "rollback") {
    s.state = "succeeded";
    s.error = "verified at the target after a restart";
    s.finished_at = absl::Now();
    s.phase.clear();
    return save_and_emit("verified", absl::StrCat("holds ", Rows(read.rows),
                                                  " as planned (settled after a restart)"));
  }
  if (read.rows == s.from) {
    // SQLite keeps whatever DDL ran before the kill: go back to the backup.
    if (sqlite && alembic_may_have_run && s.backup_id != 0) {
      absl::StatusOr<Backup> b = store_->GetBackup(s.backup_id);
      absl::Status restored = b.ok() ? VerifyBackup(*b) : b.status();
      if (restored.ok()) restored = RestoreBackup(*b, *url, inv->project.step_timeout);
      if (!restored.ok()) return needs_attention(absl::StrCat("restore failed: ", restored.message()));
    }
    if (s.phase == "rollback") {
      s.rollback = sqlite && s.backup_id != 0 ? "restored" : "rolled_back";
      return needs_attention("the step had failed and was being rolled back; it is back at its start");
    }
    s.state = "pending";
    s.phase.clear();
    return save_and_emit("recovered", absl::StrCat("still at its start ", Rows(read.rows),
                                                   alembic_may_have_run && sqlite && s.backup_id != 0
                                                       ? "; restored from its backup; will retry"
                                                       : "; will retry"));
  }
  needs_attention(absl::StrCat("the database holds ", Rows(read.rows), "; it was moving from ",
                               Rows(s.from), " to ", Rows(s.expected)));
}

void RolloutEngine::Finish(Active& a) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_) return;  // not finished: the next lockstepd continues it
  std::string skip_reason = a.stop_reason;
  int failed = 0;
  for (const RolloutStep& s : a.r.steps) failed += s.state == "failed" ? 1 : 0;
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
                   : !skip_reason.empty() ? skip_reason
                                          : absl::StrCat(failed, " of ", a.r.steps.size(),
                                                         " databases failed");
  a.r.finished_at = absl::Now();
  SaveHeader(a);
  Emit(a, "rollout_finished", "", "", absl::StrCat(a.r.state, ": ", a.r.reason));
  if (hooks_.on_rollout_finished) hooks_.on_rollout_finished(a.r);
  std::shared_ptr<Active> keep = active_[a.r.id];  // `a` lives on until this returns
  active_.erase(a.r.id);
  UpdateGauges();
  changed_.notify_all();
  lock.unlock();
  absl::Status refreshed = reconciler_->Refresh();  // status shows the new revisions now
  (void)refreshed;
}

}  // namespace lockstep::daemon
