#include "daemon/rollout/step_executor.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/core/schema_check.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/process/process.h"
#include "daemon/rollout/alembic_entry.h"
#include "daemon/rollout/alembic_output.h"
#include "daemon/rollout/step_journal.h"
#include "migrations/migration_plan.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

// Marks every process a step starts (process.h), the same after a restart:
// Settle finds what a killed lockstepd's step left running by it.
std::string StepRunToken(const std::string& rollout_id, const RolloutStep& step) {
  return absl::StrCat(rollout_id, "/", step.index);
}

// Alembic output lines a step records as events (in the state store, for
// watchers); past it the output is only in the step's output log.
constexpr size_t kMaxOutputEventBytes = 1024 * 1024;

// <output_dir>/<rollout>/step-<index>.log (a retried step: -<attempt>).
std::string OutputLogPath(const config::ServerConfig& server, const std::string& rollout_id,
                          const RolloutStep& step) {
  if (server.output_dir.empty()) return "";
  return absl::StrCat(server.output_dir, "/", rollout_id, "/step-", step.index,
                      step.attempts > 1 ? absl::StrCat("-", step.attempts) : "", ".log");
}

// server.alembic_startup_slots, or one per CPU lockstepd may run on.
int StartupSlots(const config::ServerConfig& server) {
  if (server.alembic_startup_slots > 0) return server.alembic_startup_slots;
  cpu_set_t cpus;
  if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0) return std::max(1, CPU_COUNT(&cpus));
  return 1;
}

// Rows a step passes through: each one its start, its path or its end holds.
bool OnPath(const std::vector<std::string>& rows, const RolloutStep& s) {
  if (rows.empty()) return false;
  for (const std::string& r : rows) {
    if (std::find(s.from.begin(), s.from.end(), r) == s.from.end() &&
        std::find(s.path.begin(), s.path.end(), r) == s.path.end() &&
        std::find(s.expected.begin(), s.expected.end(), r) == s.expected.end()) {
      return false;
    }
  }
  return true;
}

}  // namespace

VersionRead StepExecutor::ReadRows(const VersionTarget& target) const {
  Driver& driver = drivers_->For(target.url);
  VersionRead read = driver.Read(target);
  // A writer killed mid-transaction (Alembic, stopped or crashed) may leave
  // what a reader cannot clear (a SQLite hot journal). The caller holds the
  // database's lock: repair it, as any writer would, and read again.
  if (driver.RepairAfterKilledWriter(target, read)) read = driver.Read(target);
  return read;
}

StepExecutor::StepExecutor(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                           Drivers* drivers, Options options)
    : reconciler_(std::move(reconciler)),
      store_(store),
      drivers_(drivers),
      clock_(options.clock != nullptr ? options.clock : &real_clock_),
      alembic_(std::move(options.alembic)),
      backups_(store, drivers, clock_) {}

StepExecutor::~StepExecutor() = default;

// What one Run works with; filled in by the phases in order.
struct StepExecutor::StepContext {
  const Job& job;
  StepJournal& journal;
  const std::atomic<bool>* cancel;
  const Hooks& hooks;
  std::shared_ptr<const config::Inventory> inv;
  std::optional<VersionTarget> target;
  config::DatabaseUrl url;
  std::unique_ptr<DatabaseLock> lock;  // held from the lock phase to the end
  RolloutStep& step() { return journal.step(); }
};

ProcessResult StepExecutor::RunAlembic(const StepContext& c, const std::string& command,
                                       const std::string& target, uint64_t startup_ticket,
                                       const std::atomic<bool>* cancel,
                                       const std::function<void(int pid)>& on_start,
                                       const std::function<void(const std::string& line)>& on_line,
                                       const ProcessResult* earlier) const {
  // The run is past its start-up at its first output line (recorded first,
  // so the next run's start always follows it in the event log).
  std::atomic<bool> started_up{false};
  auto line = [&](const std::string& text) {
    on_line(text);
    if (!started_up.exchange(true)) startup_gate_.Leave(startup_ticket);
  };
  const config::Inventory& inv = *c.inv;
  const bool warm = !alembic_ && inv.project.alembic_runner == "warm";
  ProcessSpec spec = AlembicSpec(inv, drivers_->For(c.url), c.url, c.target->name,
                                 c.lock->Witness(), command, target, !warm);
  spec.run_token = StepRunToken(c.job.rollout_id, c.journal.step());
  if (command != "current") {
    spec.output_log = OutputLogPath(inv.server, c.job.rollout_id, c.journal.step());
    if (earlier != nullptr) {  // one log for the step's runs
      spec.earlier_output = earlier->output;
      spec.earlier_output_in_log = !earlier->output_log.empty();
    }
  }
  ProcessResult run;
  if (alembic_) {
    run = alembic_(spec, cancel, on_start, line);
  } else if (!warm) {
    run = RunProcess(spec, cancel, on_start, line);
  } else if (absl::StatusOr<std::shared_ptr<WarmAlembic>> pool = Warm(inv); !pool.ok()) {
    run.start_error = std::string(pool.status().message());
  } else {
    run = (*pool)->Run(spec, cancel, on_start, line);
  }
  startup_gate_.Leave(startup_ticket);
  return run;
}

absl::StatusOr<std::shared_ptr<WarmAlembic>> StepExecutor::Warm(
    const config::Inventory& inv) const {
  MutexLock lock(warm_mu_);
  std::vector<std::string> python = WarmInterpreter(inv.project);
  if (!warm_ || warm_python_ != python) {
    // The old pool (another python) is dropped here, not destroyed: a step
    // still running holds it, and it goes when that step lets go.
    absl::StatusOr<std::unique_ptr<WarmAlembic>> started = WarmAlembic::Start(python);
    if (!started.ok()) return started.status();
    if (warm_) retired_.push_back(warm_);
    std::erase_if(retired_, [](const std::weak_ptr<WarmAlembic>& w) { return w.expired(); });
    warm_ = std::shared_ptr<WarmAlembic>(*std::move(started));
    warm_python_ = std::move(python);
  }
  return warm_;
}

void StepExecutor::Stop() const {
  MutexLock lock(warm_mu_);
  if (warm_) warm_->Stop();
  for (const std::weak_ptr<WarmAlembic>& w : retired_) {
    if (std::shared_ptr<WarmAlembic> pool = w.lock()) pool->Stop();
  }
}

absl::Status StepExecutor::Prewarm(const config::Inventory& inv) const {
  if (inv.project.alembic_runner != "warm") return absl::OkStatus();
  int widest = 1;
  for (const config::EnvironmentConfig& env : inv.environments) {
    widest = std::max(widest, env.max_parallel);
  }
  absl::StatusOr<std::shared_ptr<WarmAlembic>> warm = Warm(inv);
  if (!warm.ok()) return warm.status();
  return (*warm)->Prewarm(widest);
}

// One database, start to end, as a sequence of phases. The journal saves
// each phase before its action (write-ahead); each phase returns why the
// step fails, if it does.
void StepExecutor::Run(const Job& job, RolloutStep* step, const std::atomic<bool>* cancel,
                       const Hooks& hooks) const {
  StepJournal journal(step, clock_, hooks.save, hooks.event);
  StepContext c{job, journal, cancel, hooks, reconciler_->inventory(), std::nullopt, {}, nullptr};
  RolloutStep& s = c.step();
  journal.Begin(absl::StrCat(
      "from ", RowsText(s.from), " to ", RowsText(s.expected),
      s.path.empty() ? std::string(job.kind == "stamp" ? " (a stamp: no migration runs)" : "")
                     : absl::StrCat(": ", absl::StrJoin(s.path, ", "))));
  if (absl::Status locked = LockPhase(c); !locked.ok()) {
    return journal.Fail(std::string(locked.message()));
  }
  absl::StatusOr<bool> already_there = ReplanPhase(c);
  if (!already_there.ok()) return journal.Fail(std::string(already_there.status().message()));
  if (*already_there) return journal.Succeed("already at the target; nothing to run");
  // Aborted (or stopping) while it locked and re-read: nothing has been
  // done to the database yet, so the step goes back to pending (an aborted
  // rollout skips it) instead of taking a backup nobody will use.
  if (cancel != nullptr && *cancel) return journal.Requeue();
  if (absl::Status proven = ProvePhase(c); !proven.ok()) {
    return journal.Fail(std::string(proven.message()));
  }
  if (cancel != nullptr && *cancel) return journal.Requeue();  // stopped during the check
  if (absl::Status backed_up = BackupPhase(c); !backed_up.ok()) {
    return journal.Fail(std::string(backed_up.message()));
  }
  if (job.kind == "stamp") {
    if (absl::Status checked = StampCheckPhase(c); !checked.ok()) {
      return journal.Fail(std::string(checked.message()));
    }
  }
  std::optional<ProcessResult> run = AlembicPhase(c);
  // Stopped (abort, shutdown) while it queued for a start-up slot: Alembic
  // never ran, the step is as it was. An aborted rollout skips it; the
  // next lockstepd runs it.
  if (!run) return journal.Requeue();
  if (hooks.stopping()) return;  // as if killed: the next start settles it from the database
  journal.Enter(StepPhase::kVerify);
  // Still ours? A SQLite file replaced meanwhile, or a PostgreSQL lock
  // session the server ended, means someone else may be working on the
  // database: nothing more is written there, not even a restore.
  if (absl::Status held = c.lock->Check(); !held.ok()) {
    s.rollback = "left";
    return journal.Fail(absl::StrCat("Alembic ", run->ok() ? "succeeded" : AlembicFailure(*run),
                                     ", but ", held.message()));
  }
  VersionRead after = ReadRows(*c.target);
  absl::Status error = VerifyPhase(c, *run, after);
  if (error.ok()) error = SchemaPhase(c, after.rows);
  if (error.ok()) {
    // What ran, for `lockstep validate`: the files as they are now (a stamp
    // runs none).
    if (job.kind != "stamp") reconciler_->RecordApplied(s.key(), s.path, job.kind != "downgrade");
    return journal.Succeed(absl::StrCat(
        "holds ", RowsText(after.rows), " as planned (Alembic took ",
        absl::FormatDuration(absl::Trunc(run->took, absl::Milliseconds(1))), ")"));
  }
  journal.Enter(StepPhase::kRollback);
  journal.Fail(std::string(RollbackPhase(c, *run, after, std::move(error)).message()));
}

absl::Status StepExecutor::LockPhase(StepContext& c) const {
  c.target = reconciler_->Target(c.step().key());
  if (!c.target) return absl::NotFoundError("no longer in the inventory");
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*c.target);
  if (!url.ok()) return url.status();
  c.url = *std::move(url);
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock = drivers_->For(c.url).Lock(
      *c.target, c.url, c.inv->server.connect_timeout, IfMissing::kRefuse);
  if (!lock.ok()) return lock.status();
  c.lock = *std::move(lock);
  return absl::OkStatus();
}

// The database may have moved since the plan (by hand, or a retry): a new
// path from where it is. True when it is already at the target.
absl::StatusOr<bool> StepExecutor::ReplanPhase(StepContext& c) const {
  RolloutStep& s = c.step();
  VersionRead before = ReadRows(*c.target);
  if (before.outcome != ReadOutcome::kOk && before.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(absl::StrCat("cannot read the version rows: ", before.error));
  }
  // A reapply goes down and up again: its start is its end.
  if (c.job.kind == "reapply") {
    if (before.rows == s.from) return false;
    return absl::FailedPreconditionError(
        absl::StrCat("the database moved to ", RowsText(before.rows), " since the plan (it held ",
                     RowsText(s.from), "); nothing was reapplied"));
  }
  if (before.rows == s.expected) return true;
  if (before.rows == s.from) return false;
  if (c.job.kind == "stamp") {
    // What the schema was checked against is gone: a person looks again.
    return absl::FailedPreconditionError(
        absl::StrCat("the database moved to ", RowsText(before.rows), " since the plan (it held ",
                     RowsText(s.from), "); nothing was stamped"));
  }
  std::shared_ptr<const migrations::Project> project = reconciler_->project();
  migrations::Resolver resolver(&project->graph());
  auto path = c.job.kind == "downgrade"
                  ? migrations::PlanDowngrade(resolver, before.rows, c.job.target)
                  : migrations::PlanUpgrade(resolver, before.rows, c.job.target);
  if (!path.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the database moved to ", RowsText(before.rows), " since the plan and cannot go to ",
        c.job.target, ": ", migrations::CommandErrorMessage(path.status())));
  }
  c.journal.Event(EventKind::kReplanned,
                  absl::StrCat("the database moved from ", RowsText(s.from), " to ",
                               RowsText(before.rows), " since the plan; new path"));
  s.from = before.rows;
  s.path.clear();
  for (const auto& step : *path) s.path.push_back(project->graph().id(step.revision));
  if (!path->empty()) s.expected = path->back().rows_after;
  return false;
}

// Before the first step with each env.py (by content), dialect and way of
// running Alembic: Alembic's `current`, run exactly as the step will run
// Alembic, must report the version rows lockstep reads from the locked
// database. The entry point already stops an env.py that connects
// elsewhere; this also covers an alembic_command lockstep cannot enter (a
// wrapper script), and an env.py that Alembic cannot run at all fails here,
// before a backup is taken. Test runners (options.alembic) have no env.py.
absl::Status StepExecutor::ProvePhase(StepContext& c) const {
  if (alembic_) return absl::OkStatus();
  const config::ProjectConfig& project = c.inv->project;
  std::shared_ptr<const migrations::Project> scripts = reconciler_->project();
  absl::StatusOr<std::string> env_py = Sha256OfFile(scripts->location().script_dir + "/env.py");
  const std::string key = absl::StrCat(
      env_py.ok() ? *env_py : "no env.py", " ", config::DialectName(c.url.dialect), " ",
      project.alembic_runner, " ", absl::StrJoin(project.alembic_command, " "));
  // One check at a time: the steps of a wave that start together wait for
  // the first one's answer rather than each running `current`.
  MutexLock lock(proven_mu_);
  if (proven_.count(key) > 0) return absl::OkStatus();
  const uint64_t ticket = startup_gate_.Enter(StartupSlots(c.inv->server), c.cancel);
  if (ticket == 0) return absl::OkStatus();  // stopped: the next phase requeues the step
  ProcessResult run =
      RunAlembic(c, "current", "", ticket, c.cancel, nullptr, [](const std::string&) {});
  if (run.cancelled) return absl::OkStatus();
  absl::StatusOr<std::string> checked =
      CheckCurrent(run, c.target->name, ReadRows(*c.target).rows, scripts->graph());
  if (!checked.ok()) return checked.status();
  c.journal.Event(EventKind::kEnvPyChecked, *checked);
  proven_.insert(key);
  return absl::OkStatus();
}

// When `backup: required` or `on_failure: restore`. No backup, no
// migration: a failed backup fails the step before Alembic runs when the
// backup is required, or when the failure policy would need it to restore
// (a migration that failed half-way could not be undone). Under any other
// policy no backup is taken at all, so a failed backup always fails the step.
absl::Status StepExecutor::BackupPhase(StepContext& c) const {
  RolloutStep& s = c.step();
  const RolloutStage& policy = c.job.policy;
  const bool restore_needs_it = policy.on_failure == FailurePolicy::kRestore;
  if (!policy.backup_required && !restore_needs_it) return absl::OkStatus();
  c.journal.Enter(StepPhase::kBackup);
  Backup meta;
  meta.revisions = s.from;
  meta.rollout_id = c.job.rollout_id;
  absl::StatusOr<Backup> b = backups_.Take(*c.target, c.url, *c.inv, meta);
  if (!b.ok()) {
    std::string why = absl::StrCat(
        policy.backup_required ? "backup required" : "on_failure: restore needs a backup",
        ", and it failed (Alembic did not run): ", b.status().message());
    c.journal.Event(EventKind::kBackupFailed, why);
    return absl::FailedPreconditionError(why);
  }
  s.backup_id = b->id;
  c.journal.Event(EventKind::kBackupTaken, DescribeBackup(*b));
  if (c.hooks.backup_taken) c.hooks.backup_taken(*b);
  return absl::OkStatus();
}

// A reapply's Alembic: `downgrade REV-1`, then `upgrade` to each row the
// database held, one run after the other; one result (the first failure,
// all the output).
ProcessResult StepExecutor::RunReapply(
    StepContext& c, uint64_t ticket, const std::function<void(int pid)>& on_start,
    const std::function<void(const std::string& line)>& on_line) const {
  ProcessResult run =
      RunAlembic(c, "downgrade", c.job.target + "-1", ticket, c.cancel, on_start, on_line);
  for (const std::string& row : c.step().from) {
    if (!run.ok() || run.cancelled) break;
    const uint64_t next_ticket = startup_gate_.Enter(StartupSlots(c.inv->server), c.cancel);
    if (next_ticket == 0) {
      run.cancelled = true;
      break;
    }
    ProcessResult up =
        RunAlembic(c, "upgrade", row, next_ticket, c.cancel, on_start, on_line, &run);
    up.output = run.output + up.output;
    up.took += run.took;
    if (up.output_log.empty()) up.output_log = run.output_log;
    run = std::move(up);
  }
  return run;
}

// Queues for a start-up slot (its phase stays what it was), then runs
// Alembic. nullopt when stopped while it queued.
std::optional<ProcessResult> StepExecutor::AlembicPhase(StepContext& c) const {
  RolloutStep& s = c.step();
  const int slots = StartupSlots(c.inv->server);
  const absl::Time queued = absl::Now();
  const uint64_t ticket = startup_gate_.Enter(slots, c.cancel);
  if (ticket == 0) return std::nullopt;
  const absl::Duration waited = absl::Now() - queued;
  if (waited >= absl::Milliseconds(1)) {
    c.journal.Event(EventKind::kStartupSlot,
                    absl::StrCat("waited ", absl::ToInt64Milliseconds(waited),
                                 " ms for an Alembic start-up slot (", slots,
                                 " at once: server.alembic_startup_slots)"));
  }
  ++s.attempts;
  c.journal.Enter(StepPhase::kAlembic);
  const std::string command = c.job.kind == "downgrade" ? "downgrade"
                              : c.job.kind == "stamp"   ? "stamp"
                                                        : "upgrade";
  // A migration that prints megabytes would be as many events in the
  // store: past kMaxOutputEventBytes the lines go to the output log only.
  size_t event_bytes = 0;
  auto on_line = [&](const std::string& line) {
    if (event_bytes > kMaxOutputEventBytes) return;
    event_bytes += line.size() + 1;
    if (event_bytes <= kMaxOutputEventBytes) {
      c.journal.Event(EventKind::kOutput, line);
      return;
    }
    const std::string log = OutputLogPath(c.inv->server, c.job.rollout_id, s);
    c.journal.Event(EventKind::kOutput,
                    absl::StrCat("[lockstep: over 1 MiB of output; the rest is not "
                                 "shown here: ",
                                 log.empty() ? "server.output_dir is not set, only "
                                               "the step's last 64 KiB are kept"
                                             : absl::StrCat("all of it is in ", log),
                                 "]"));
  };
  auto on_start = [&](int pid) { c.journal.Pid(pid); };
  ProcessResult run = c.job.kind == "reapply" ? RunReapply(c, ticket, on_start, on_line)
                                              : RunAlembic(c, command, c.job.target, ticket,
                                                           c.cancel, on_start, on_line);
  s.pid = 0;
  s.pid_identity.clear();
  s.exit_code = run.exit_code;
  s.alembic_time = run.took;
  s.output = run.output;
  s.output_log = run.output_log;
  if (!run.output_log_error.empty()) {
    c.journal.Event(
        EventKind::kOutput,
        absl::StrCat("[lockstep: the output log is incomplete: ", run.output_log_error, "]"));
  }
  return run;
}

StepExecutor::SchemaVerdict StepExecutor::CompareWithAlembic(
    StepContext& c, const std::vector<std::string>& rows) const {
  const SchemaFilter filter = SchemaFilterFor(*c.target, c.inv->project.schema_ignore);
  ExpectedSchema expected = reconciler_->ExpectedSchemaFor(*c.inv, c.url.dialect, rows, filter);
  if (expected.schema == nullptr) return {SchemaVerdict::kNoExpected, expected.error};
  absl::StatusOr<SchemaSnapshot> found = drivers_->For(c.url).ReadSchema(*c.target, filter);
  if (!found.ok()) return {SchemaVerdict::kUnreadable, std::string(found.status().message())};
  if (SchemaFingerprint(found->schema) == expected.fingerprint) return {SchemaVerdict::kMatch, ""};
  const std::vector<SchemaDifference> differences = Diff(*expected.schema, found->schema);
  return {SchemaVerdict::kDiffers, DescribeDifferences(differences, differences.size())};
}

// Before a stamp writes the rows: the schema must be what Alembic builds
// for them, unless the stamp was forced (then the difference is recorded).
absl::Status StepExecutor::StampCheckPhase(StepContext& c) const {
  const RolloutStep& s = c.step();
  const SchemaVerdict v = CompareWithAlembic(c, s.expected);
  std::string why;
  switch (v.outcome) {
    case SchemaVerdict::kMatch:
      c.journal.Event(EventKind::kSchemaVerified,
                      absl::StrCat("the schema is what Alembic builds for ", RowsText(s.expected),
                                   ": stamping it"));
      return absl::OkStatus();
    case SchemaVerdict::kNoExpected:
      why = absl::StrCat("lockstep cannot build what Alembic makes of ", RowsText(s.expected), ": ",
                         v.detail.empty() ? "no expected schemas here" : v.detail);
      break;
    case SchemaVerdict::kUnreadable:
      why = absl::StrCat("its schema cannot be read: ", v.detail);
      break;
    case SchemaVerdict::kDiffers:
      why = absl::StrCat("its schema is not what Alembic builds for ", RowsText(s.expected), ": ",
                         v.detail);
      break;
  }
  if (!c.job.override_reason.empty()) {
    c.journal.Event(EventKind::kSchemaDrift,
                    absl::StrCat(why, "; stamped anyway (--force: ", c.job.override_reason, ")"));
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(why, "; nothing was stamped (--force --reason TEXT stamps anyway)"));
}

// After Alembic and the version rows: the schema must be what Alembic
// builds for those rows on an empty database (the article's "migration
// applied but the table is missing", caught as it happens). OK when it is,
// or when it cannot be told (said in an event); project.verify_schema
// "warn" records a difference instead of failing.
absl::Status StepExecutor::SchemaPhase(StepContext& c, const std::vector<std::string>& rows) const {
  // A forced stamp wrote rows its schema does not match, on purpose.
  // A reapply is done to make the schema right: it must be, or it restores.
  const std::string& policy = !c.job.override_reason.empty() ? std::string("warn")
                              : c.job.kind == "reapply"      ? std::string("fail")
                                                             : c.inv->project.verify_schema;
  if (policy == "off") return absl::OkStatus();
  const SchemaVerdict v = CompareWithAlembic(c, rows);
  switch (v.outcome) {
    case SchemaVerdict::kNoExpected:
      if (!v.detail.empty()) {
        c.journal.Event(EventKind::kSchemaNotVerified, "no expected schema: " + v.detail);
      }
      return absl::OkStatus();
    case SchemaVerdict::kUnreadable:
      c.journal.Event(EventKind::kSchemaNotVerified, v.detail);
      return absl::OkStatus();
    case SchemaVerdict::kMatch:
      c.journal.Event(
          EventKind::kSchemaVerified,
          absl::StrCat("the schema Alembic builds for ", RowsText(rows), " on an empty database"));
      return absl::OkStatus();
    case SchemaVerdict::kDiffers:
      break;
  }
  const std::string why =
      absl::StrCat("Alembic succeeded and the version rows say ", RowsText(rows),
                   ", but the schema is not what Alembic builds for them: ", v.detail);
  if (policy == "warn") {
    c.journal.Event(EventKind::kSchemaDrift, absl::StrCat(why, " (project.verify_schema: warn)"));
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(why);
}

// "" when Alembic succeeded and the database holds what was planned; else
// what went wrong, in words.
absl::Status StepExecutor::VerifyPhase(StepContext& c, const ProcessResult& run,
                                       const VersionRead& after) const {
  const RolloutStep& s = c.step();
  const bool readable = after.outcome == ReadOutcome::kOk || after.outcome == ReadOutcome::kNoTable;
  if (run.ok() && readable && after.rows == s.expected) return absl::OkStatus();
  std::string why;
  if (!readable) {
    why = absl::StrCat("Alembic ", AlembicFailure(run),
                       "; then the version rows could not be read: ", after.error);
  } else if (run.cancelled) {
    return absl::AbortedError(
        absl::StrCat("stopped by abort; the database holds ", RowsText(after.rows)));
  } else if (!run.ok() && after.rows == s.from) {
    why = absl::StrCat("Alembic ", AlembicFailure(run), "; the version rows are unchanged at ",
                       RowsText(after.rows));
  } else if (!run.ok()) {
    why = absl::StrCat("Alembic ", AlembicFailure(run), " after the database moved from ",
                       RowsText(s.from), " to ", RowsText(after.rows));
  } else {
    why = absl::StrCat("Alembic exited 0 but the database holds ", RowsText(after.rows),
                       ", not the planned ", RowsText(s.expected));
  }
  return absl::FailedPreconditionError(why);
}

// Brings a failed (or aborted) step back to where it started, as the
// stage's on_failure says, and checks. Returns the step's error.
absl::Status StepExecutor::RollbackPhase(StepContext& c, const ProcessResult& run,
                                         const VersionRead& after, absl::Status error) const {
  RolloutStep& s = c.step();
  const bool readable = after.outcome == ReadOutcome::kOk || after.outcome == ReadOutcome::kNoTable;
  const bool transactional = drivers_->For(c.url).transactional_ddl();
  const FailurePolicy how = c.job.policy.on_failure;
  // A round trip (reapply) that ends where it started may have run both
  // ways: only the backup says what it was.
  const bool round_trip = s.from == s.expected;
  if (how == FailurePolicy::kRestore && transactional && readable && after.rows == s.from &&
      !round_trip) {
    s.rollback = "rolled_back";  // the dialect's transactional DDL undid it
    c.journal.Event(
        EventKind::kRolledBack,
        absl::StrCat("the database rolled the migration's transaction back; verified at ",
                     RowsText(after.rows)));
  } else if (how == FailurePolicy::kRestore) {
    absl::Status restored = c.lock->Check();
    if (restored.ok()) restored = backups_.Restore(s.backup_id, c.url, *c.inv);
    VersionRead check = ReadRows(*c.target);
    if (restored.ok() && check.rows != s.from) {
      restored =
          absl::DataLossError(absl::StrCat("after the restore it holds ", RowsText(check.rows)));
    }
    s.rollback = restored.ok() ? "restored" : absl::StrCat("restore_failed: ", restored.message());
    c.journal.Event(EventKind::kRolledBack,
                    restored.ok() ? absl::StrCat("restored from backup ", s.backup_id,
                                                 "; verified at ", RowsText(check.rows))
                                  : absl::StrCat("restore failed: ", restored.message()));
    if (run.cancelled) {
      // What it held when Alembic was stopped is gone: say what is there now.
      const bool check_ok =
          check.outcome == ReadOutcome::kOk || check.outcome == ReadOutcome::kNoTable;
      error = absl::AbortedError(absl::StrCat(
          "stopped by abort; ",
          restored.ok()
              ? absl::StrCat("restored from backup ", s.backup_id, ", the database holds ")
              : "the restore failed, the database holds ",
          check_ok ? RowsText(check.rows)
                   : absl::StrCat("rows that cannot be read: ", check.error)));
    }
  } else if (how == FailurePolicy::kDowngrade) {
    std::string to = s.from.empty() ? "base" : s.from.size() == 1 ? s.from[0] : "";
    if (to.empty()) {
      s.rollback = "downgrade_failed: it started from several heads; restore a backup instead";
    } else {
      uint64_t ticket = startup_gate_.Enter(StartupSlots(c.inv->server), nullptr);
      ProcessResult down =
          RunAlembic(c, "downgrade", to, ticket, nullptr, nullptr,
                     [&](const std::string& line) { c.journal.Event(EventKind::kOutput, line); });
      VersionRead check = ReadRows(*c.target);
      s.rollback = down.ok() && check.rows == s.from
                       ? "downgraded"
                       : absl::StrCat("downgrade_failed: Alembic ", AlembicFailure(down),
                                      ", the database holds ", RowsText(check.rows));
    }
    c.journal.Event(EventKind::kRolledBack, s.rollback);
  } else {
    s.rollback = "left";
  }
  return error;
}

void StepExecutor::Settle(const std::string& rollout_id, RolloutStep* step,
                          const Hooks& hooks) const {
  StepJournal journal(step, clock_, hooks.save, hooks.event);
  StopLeftovers(rollout_id, journal);
  absl::Status settled = SettlePhase(journal);
  if (!settled.ok()) {
    journal.Fail(absl::StrCat("needs attention after a restart: ", settled.message()));
  }
}

// An Alembic the dead lockstepd started normally died with it
// (PR_SET_PDEATHSIG); if it is still there, it is stopped before anything
// looks at the database. Only if the pid still names that process (same
// boot, same start time): after a reboot or a long time the number may
// belong to anything. And whatever that step started and left (a
// migration's background child, which PR_SET_PDEATHSIG does not reach): it
// would go on writing to a database this lockstepd is about to read,
// restore or migrate.
void StepExecutor::StopLeftovers(const std::string& rollout_id, StepJournal& journal) const {
  RolloutStep& s = journal.step();
  if (s.pid > 0 && !s.pid_identity.empty() && ProcessIdentity(s.pid) == s.pid_identity) {
    ::kill(-s.pid, SIGKILL);
    ::kill(s.pid, SIGKILL);
    for (int i = 0; i < 100 && ProcessAlive(s.pid); ++i) absl::SleepFor(absl::Milliseconds(100));
  }
  if (int stopped = SignalRunTree(0, StepRunToken(rollout_id, s), SIGKILL); stopped > 0) {
    journal.Event(EventKind::kOutput,
                  absl::StrCat("lockstep: killed ", stopped,
                               " process(es) the step had left running before the "
                               "restart"));
  }
}

// A step a dead lockstepd left running, settled from the phase it was in
// and what the database holds now: verified at its target, back to
// pending at its start (restored from its backup first where a migration
// may have left partial DDL), or an error saying why it needs a person.
absl::Status StepExecutor::SettlePhase(StepJournal& journal) const {
  RolloutStep& s = journal.step();
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  std::optional<VersionTarget> target = reconciler_->Target(s.key());
  if (!target) return absl::NotFoundError("no longer in the inventory");
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*target);
  if (!url.ok()) return url.status();
  absl::StatusOr<std::unique_ptr<DatabaseLock>> db_lock =
      drivers_->For(*url).Lock(*target, *url, inv->server.connect_timeout, IfMissing::kRefuse);
  if (!db_lock.ok()) return db_lock.status();
  VersionRead read = ReadRows(*target);
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    return absl::UnavailableError(absl::StrCat("cannot read the version rows: ", read.error));
  }
  const StepPhase phase = s.phase;
  // Without transactional DDL, whatever DDL ran before the kill stays.
  const bool keeps_partial_ddl = !drivers_->For(*url).transactional_ddl();
  const bool alembic_may_have_run =
      phase == StepPhase::kAlembic || phase == StepPhase::kVerify || phase == StepPhase::kRollback;
  // A reapply (down, then up again) that was cut off cannot be told done
  // from its rows: its backup puts it back at its start, whatever it holds.
  const bool round_trip = s.from == s.expected && alembic_may_have_run && s.backup_id != 0;
  if (read.rows == s.expected && phase != StepPhase::kRollback && !round_trip) {
    journal.Succeed(
        absl::StrCat("holds ", RowsText(read.rows), " as planned (settled after a restart)"));
    return absl::OkStatus();
  }
  // Cut off part way along its path (Alembic had committed some of its
  // revisions): SQLite goes back to its backup (the next revision's DDL may
  // be half there), a dialect whose migrations commit whole continues from
  // what it committed (the retry plans again from there).
  const bool mid_path = read.rows != s.from && alembic_may_have_run &&
                        phase != StepPhase::kRollback && OnPath(read.rows, s);
  const bool can_resume = mid_path && (!keeps_partial_ddl || s.backup_id != 0);
  if (read.rows != s.from && !round_trip && !can_resume) {
    return absl::FailedPreconditionError(
        absl::StrCat("the database holds ", RowsText(read.rows), "; it was moving from ",
                     RowsText(s.from), " to ", RowsText(s.expected),
                     mid_path ? " and has no backup to go back to (its DDL is not transactional)"
                              : " (that is not on its path)"));
  }
  // Partial DDL stays: go back to the backup.
  const bool restore =
      round_trip || (keeps_partial_ddl && alembic_may_have_run && s.backup_id != 0);
  if (restore) {
    absl::Status restored = backups_.Restore(s.backup_id, *url, *inv);
    if (!restored.ok()) {
      return absl::Status(restored.code(), absl::StrCat("restore failed: ", restored.message()));
    }
  }
  if (phase == StepPhase::kRollback) {
    s.rollback = restore ? "restored" : "rolled_back";
    return absl::FailedPreconditionError(
        "the step had failed and was being rolled back; it is back at its start");
  }
  journal.Recover(
      round_trip ? absl::StrCat("a reapply the restart cut off; restored from its backup to ",
                                RowsText(s.from), "; will retry")
      : mid_path
          ? absl::StrCat("cut off at ", RowsText(read.rows), " on its path",
                         restore
                             ? "; restored from its backup to " + RowsText(s.from) + "; will retry"
                             : " (committed whole); will go on from there")
          : absl::StrCat("still at its start ", RowsText(read.rows),
                         restore ? "; restored from its backup; will retry" : "; will retry"));
  return absl::OkStatus();
}

}  // namespace lockstep::daemon
