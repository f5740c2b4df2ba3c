#include "daemon/rollout/step_executor.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "daemon/rollout/alembic_output.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/process/process.h"
#include "migrations/migration_plan.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

// The Alembic command line for one database; the password stays out of it.
// With `with_command` false, only Alembic's own arguments (warm runner).
ProcessSpec AlembicSpec(const config::Inventory& inv, const Driver& driver,
                        const config::DatabaseUrl& url, const std::string& command,
                        const std::string& target, bool with_command = true) {
  ProcessSpec spec;
  if (with_command) spec.argv = inv.project.alembic_command;
  spec.argv.insert(spec.argv.end(), {"-c", inv.project.alembic_ini});
  if (inv.project.ini_section != "alembic") {
    spec.argv.insert(spec.argv.end(), {"-n", inv.project.ini_section});
  }
  config::DatabaseUrl without_password = url;
  without_password.password.reset();
  spec.argv.insert(spec.argv.end(),
                   {"-x", "url=" + without_password.ToSqlAlchemy(), command, target});
  spec.env = driver.ChildEnvironment(url);
  spec.env.push_back("DATABASE_URL=" + url.ToSqlAlchemy());
  spec.cwd = inv.project.working_dir;
  spec.timeout = inv.project.step_timeout;
  return spec;
}

// server.alembic_startup_slots, or one per CPU lockstepd may run on.
int StartupSlots(const config::ServerConfig& server) {
  if (server.alembic_startup_slots > 0) return server.alembic_startup_slots;
  cpu_set_t cpus;
  if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0) return std::max(1, CPU_COUNT(&cpus));
  return 1;
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

// How an Alembic run failed, with the line of its output that says why:
// "exit 1: sqlite3.OperationalError: unable to open database file".
std::string AlembicFailure(const ProcessResult& run) {
  std::string why = run.start_error.empty() ? ErrorLine(run.output) : "";
  return why.empty() ? run.Describe() : absl::StrCat(run.Describe(), ": ", why);
}

std::string RowsText(const std::vector<std::string>& rows) {
  return rows.empty() ? "[] (no version rows)" : absl::StrCat("[", absl::StrJoin(rows, ", "), "]");
}

StepExecutor::StepExecutor(std::shared_ptr<Reconciler> reconciler, StateStore* store,
                           Drivers* drivers, Options options)
    : reconciler_(std::move(reconciler)),
      store_(store),
      drivers_(drivers),
      clock_(options.clock != nullptr ? options.clock : &real_clock_),
      alembic_(std::move(options.alembic)) {}

StepExecutor::~StepExecutor() = default;

ProcessResult StepExecutor::RunAlembic(
    const config::Inventory& inv, const config::DatabaseUrl& url, const std::string& command,
    const std::string& target, uint64_t startup_ticket, const std::atomic<bool>* cancel,
    const std::function<void(int pid)>& on_start,
    const std::function<void(const std::string& line)>& on_line) const {
  // The run is past its start-up at its first output line (recorded first,
  // so the next run's start always follows it in the event log).
  std::atomic<bool> started_up{false};
  auto line = [&](const std::string& text) {
    on_line(text);
    if (!started_up.exchange(true)) startup_gate_.Leave(startup_ticket);
  };
  ProcessResult run;
  if (alembic_) {
    run = alembic_(AlembicSpec(inv, drivers_->For(url), url, command, target), cancel, on_start,
                   line);
  } else if (inv.project.alembic_runner != "warm") {
    run = RunProcess(AlembicSpec(inv, drivers_->For(url), url, command, target), cancel, on_start,
                     line);
  } else if (absl::StatusOr<WarmAlembic*> warm = Warm(inv); !warm.ok()) {
    run.start_error = std::string(warm.status().message());
  } else {
    run = (*warm)->Run(AlembicSpec(inv, drivers_->For(url), url, command, target, false), cancel,
                       on_start, line);
  }
  startup_gate_.Leave(startup_ticket);
  return run;
}

absl::StatusOr<WarmAlembic*> StepExecutor::Warm(const config::Inventory& inv) const {
  std::lock_guard<std::mutex> lock(warm_mu_);
  if (!warm_ || warm_python_ != inv.project.python) {
    warm_.reset();
    absl::StatusOr<std::unique_ptr<WarmAlembic>> started = WarmAlembic::Start(inv.project.python);
    if (!started.ok()) return started.status();
    warm_ = *std::move(started);
    warm_python_ = inv.project.python;
  }
  return warm_.get();
}

void StepExecutor::Stop() const {
  std::lock_guard<std::mutex> lock(warm_mu_);
  if (warm_) warm_->Stop();
}

absl::Status StepExecutor::Prewarm(const config::Inventory& inv) const {
  if (inv.project.alembic_runner != "warm") return absl::OkStatus();
  int widest = 1;
  for (const config::EnvironmentConfig& env : inv.environments) {
    widest = std::max(widest, env.max_parallel);
  }
  absl::StatusOr<WarmAlembic*> warm = Warm(inv);
  if (!warm.ok()) return warm.status();
  return (*warm)->Prewarm(widest);
}

// One database, start to end: every change to the step is saved before the
// action it announces.
void StepExecutor::Run(const Job& job, RolloutStep* step, const std::atomic<bool>* cancel,
                       const Hooks& hooks) const {
  RolloutStep& s = *step;
  std::shared_ptr<const config::Inventory> inv = reconciler_->inventory();
  auto save = [&](const std::string& phase) {
    s.phase = phase;
    hooks.save(s);
  };
  auto event = [&](const std::string& kind, const std::string& message) {
    hooks.event(s, kind, message);
  };
  const absl::Time started = clock_->Now();
  auto finish = [&](const std::string& state, const std::string& message) {
    s.state = state;
    s.error = state == "failed" ? message : "";
    s.finished_at = clock_->Now();
    s.pid = 0;
    s.phase.clear();
    hooks.save(s);
    if (state == "failed") {
      event("step_failed",
            absl::StrCat(message, s.rollback.empty() ? "" : absl::StrCat(" [", s.rollback, "]")));
    } else {
      event("verified", message);
    }
  };

  s.state = "running";
  s.started_at = started;
  s.error.clear();
  s.rollback.clear();
  save("lock");
  event("step_started", absl::StrCat("from ", RowsText(s.from), " to ", RowsText(s.expected), ": ",
                                     absl::StrJoin(s.path, ", ")));
  std::optional<VersionTarget> target = reconciler_->Target(s.key());
  if (!target) return finish("failed", "no longer in the inventory");
  absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(*target);
  if (!url.ok()) return finish("failed", std::string(url.status().message()));
  absl::StatusOr<std::unique_ptr<DatabaseLock>> db_lock =
      drivers_->For(*url).Lock(*target, *url, inv->server.connect_timeout, IfMissing::kRefuse);
  if (!db_lock.ok()) return finish("failed", std::string(db_lock.status().message()));

  // The database may have moved since the plan (by hand, or a retry).
  VersionRead before = ReadRows(*target);
  if (before.outcome != ReadOutcome::kOk && before.outcome != ReadOutcome::kNoTable) {
    return finish("failed", absl::StrCat("cannot read the version rows: ", before.error));
  }
  if (before.rows == s.expected)
    return finish("succeeded", "already at the target; nothing to run");
  if (before.rows != s.from) {
    std::shared_ptr<const migrations::Project> project = reconciler_->project();
    migrations::Resolver resolver(&project->graph());
    auto path = job.kind == "downgrade"
                    ? migrations::PlanDowngrade(resolver, before.rows, job.target)
                    : migrations::PlanUpgrade(resolver, before.rows, job.target);
    if (!path.ok()) {
      return finish("failed", absl::StrCat("the database moved to ", RowsText(before.rows),
                                           " since the plan and cannot go to ", job.target, ": ",
                                           migrations::CommandErrorMessage(path.status())));
    }
    event("replanned", absl::StrCat("the database moved from ", RowsText(s.from), " to ",
                                    RowsText(before.rows), " since the plan; new path"));
    s.from = before.rows;
    s.path.clear();
    for (const auto& step : *path) s.path.push_back(project->graph().id(step.revision));
    if (!path->empty()) s.expected = path->back().rows_after;
  }

  // Aborted (or stopping) while it locked and re-read: nothing has been
  // done to the database yet, so the step goes back to pending (an aborted
  // rollout skips it) instead of taking a backup nobody will use.
  if (cancel != nullptr && *cancel) {
    s.state = "pending";
    s.started_at = absl::InfinitePast();
    save("");
    return;
  }
  const bool want_backup = job.policy.backup_required || job.policy.on_failure == "restore";
  if (want_backup) {
    save("backup");
    absl::StatusOr<Backup> b =
        drivers_->For(*url).TakeBackup(*target, *url, inv->server.backup_dir,
                                       inv->project.step_timeout);
    if (b.ok()) {
      b->revisions = s.from;
      b->rollout_id = job.rollout_id;
      absl::Status catalogued = store_->AddBackup(&*b);
      if (!catalogued.ok()) return finish("failed", std::string(catalogued.message()));
      s.backup_id = b->id;
      event("backup_taken",
            absl::StrCat("backup ", b->id, ": ", b->size_bytes, " bytes in ",
                         absl::FormatDuration(absl::Trunc(b->took, absl::Milliseconds(1))),
                         ", sha256 ", b->sha256.substr(0, 12), "…, ", b->path));
      if (hooks.backup_taken) hooks.backup_taken(*b);
      // Retention: the newest backup_keep backups of this database stay.
      absl::StatusOr<std::vector<Backup>> all = store_->Backups(s.environment, s.database, 1 << 20);
      if (all.ok()) {
        for (size_t k = static_cast<size_t>(inv->server.backup_keep); k < all->size(); ++k) {
          ::unlink((*all)[k].path.c_str());
          absl::Status deleted = store_->DeleteBackup((*all)[k].id);
          (void)deleted;  // a catalog row left behind is refused at restore (file missing)
        }
      }
    } else if (job.policy.backup_required) {
      return finish("failed",
                    absl::StrCat("backup required, and it failed: ", b.status().message()));
    } else {
      event("backup_failed", absl::StrCat("backup failed (continuing: backup is not required): ",
                                          b.status().message()));
    }
  }

  // At most alembic_startup_slots runs start at once (startup_gate.h); the
  // step's phase stays what it was while it queues.
  const int slots = StartupSlots(inv->server);
  const absl::Time queued = absl::Now();
  const uint64_t ticket = startup_gate_.Enter(slots, cancel);
  if (ticket == 0) {
    // Stopped (abort, shutdown) while it queued: Alembic never ran, so the
    // step is as it was before it started. An aborted rollout skips it; the
    // next lockstepd runs it.
    s.state = "pending";
    s.started_at = absl::InfinitePast();
    save("");
    return;
  }
  const absl::Duration waited = absl::Now() - queued;
  if (waited >= absl::Milliseconds(1)) {
    event("startup_slot", absl::StrCat("waited ", absl::ToInt64Milliseconds(waited),
                                       " ms for an Alembic start-up slot (", slots,
                                       " at once: server.alembic_startup_slots)"));
  }
  ++s.attempts;
  save("alembic");
  const std::string command = job.kind == "downgrade" ? "downgrade" : "upgrade";
  ProcessResult run = RunAlembic(
      *inv, *url, command, job.target, ticket, cancel,
      [&](int pid) {
        s.pid = pid;
        save("alembic");
      },
      [&](const std::string& line) { event("output", line); });
  s.pid = 0;
  s.exit_code = run.exit_code;
  s.alembic_time = run.took;
  s.output = run.output;
  if (hooks.stopping()) return;  // as if killed: the next start settles it from the database
  save("verify");
  VersionRead after = ReadRows(*target);
  const bool readable = after.outcome == ReadOutcome::kOk || after.outcome == ReadOutcome::kNoTable;
  if (run.ok() && readable && after.rows == s.expected) {
    return finish(
        "succeeded",
        absl::StrCat("holds ", RowsText(after.rows), " as planned (Alembic took ",
                     absl::FormatDuration(absl::Trunc(run.took, absl::Milliseconds(1))), ")"));
  }
  std::string error;
  if (!readable) {
    error = absl::StrCat("Alembic ", AlembicFailure(run),
                         "; then the version rows could not be read: ", after.error);
  } else if (run.cancelled) {
    error = absl::StrCat("stopped by abort; the database holds ", RowsText(after.rows));
  } else if (!run.ok() && after.rows == s.from) {
    error = absl::StrCat("Alembic ", AlembicFailure(run), "; the version rows are unchanged at ",
                         RowsText(after.rows));
  } else if (!run.ok()) {
    error = absl::StrCat("Alembic ", AlembicFailure(run), " after the database moved from ",
                         RowsText(s.from), " to ", RowsText(after.rows));
  } else {
    error = absl::StrCat("Alembic exited 0 but the database holds ", RowsText(after.rows),
                         ", not the planned ", RowsText(s.expected));
  }

  // Bring it back to where it started, as the policy says, and check.
  save("rollback");
  const bool pg = url->dialect == config::Dialect::kPostgresql;
  std::string how = run.cancelled ? "restore" : job.policy.on_failure;
  if (how == "restore" && pg && readable && after.rows == s.from) {
    s.rollback = "rolled_back";  // PostgreSQL's transactional DDL undid it
    event("rolled_back",
          absl::StrCat("PostgreSQL rolled the migration's transaction back; verified at ",
                       RowsText(after.rows)));
  } else if (how == "restore") {
    absl::Status restored = absl::FailedPreconditionError("no backup was taken");
    if (s.backup_id != 0) {
      absl::StatusOr<Backup> b = store_->GetBackup(s.backup_id);
      restored = b.ok() ? VerifyBackup(*b) : b.status();
      if (restored.ok()) {
        restored = drivers_->For(*url).RestoreBackup(*b, *url, inv->project.step_timeout);
      }
    }
    VersionRead check = ReadRows(*target);
    if (restored.ok() && check.rows != s.from) {
      restored =
          absl::DataLossError(absl::StrCat("after the restore it holds ", RowsText(check.rows)));
    }
    s.rollback = restored.ok() ? "restored" : absl::StrCat("restore_failed: ", restored.message());
    event("rolled_back", restored.ok() ? absl::StrCat("restored from backup ", s.backup_id,
                                                      "; verified at ", RowsText(check.rows))
                                       : absl::StrCat("restore failed: ", restored.message()));
    if (run.cancelled) {
      // What it held when Alembic was stopped is gone: say what is there now.
      const bool check_ok =
          check.outcome == ReadOutcome::kOk || check.outcome == ReadOutcome::kNoTable;
      error = absl::StrCat("stopped by abort; ",
                           restored.ok() ? absl::StrCat("restored from backup ", s.backup_id,
                                                        ", the database holds ")
                                         : "the restore failed, the database holds ",
                           check_ok ? RowsText(check.rows)
                                    : absl::StrCat("rows that cannot be read: ", check.error));
    }
  } else if (how == "downgrade") {
    std::string to = s.from.empty() ? "base" : s.from.size() == 1 ? s.from[0] : "";
    if (to.empty()) {
      s.rollback = "downgrade_failed: it started from several heads; restore a backup instead";
    } else {
      uint64_t ticket = startup_gate_.Enter(StartupSlots(inv->server), nullptr);
      ProcessResult down = RunAlembic(*inv, *url, "downgrade", to, ticket, nullptr, nullptr,
                                      [&](const std::string& line) { event("output", line); });
      VersionRead check = ReadRows(*target);
      s.rollback = down.ok() && check.rows == s.from
                       ? "downgraded"
                       : absl::StrCat("downgrade_failed: Alembic ", AlembicFailure(down),
                                      ", the database holds ", RowsText(check.rows));
    }
    event("rolled_back", s.rollback);
  } else {
    s.rollback = "left";
  }
  finish("failed", error);
}

void StepExecutor::Settle(RolloutStep* step, const Hooks& hooks) const {
  RolloutStep& s = *step;
  auto save_and_emit = [&](const std::string& kind, const std::string& message) {
    hooks.save(s);
    hooks.event(s, kind, message);
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
    s.finished_at = clock_->Now();
    s.phase.clear();
    save_and_emit("step_failed", s.error);
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
      drivers_->For(*url).Lock(*target, *url, inv->server.connect_timeout, IfMissing::kRefuse);
  if (!db_lock.ok()) return needs_attention(std::string(db_lock.status().message()));
  VersionRead read = ReadRows(*target);
  if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
    return needs_attention(absl::StrCat("cannot read the version rows: ", read.error));
  }
  const bool sqlite = url->dialect == config::Dialect::kSqlite;
  const bool alembic_may_have_run =
      s.phase == "alembic" || s.phase == "verify" || s.phase == "rollback";
  if (read.rows == s.expected && s.phase != "rollback") {
    s.state = "succeeded";
    s.error = "verified at the target after a restart";
    s.finished_at = clock_->Now();
    s.phase.clear();
    return save_and_emit("verified", absl::StrCat("holds ", RowsText(read.rows),
                                                  " as planned (settled after a restart)"));
  }
  if (read.rows == s.from) {
    // SQLite keeps whatever DDL ran before the kill: go back to the backup.
    if (sqlite && alembic_may_have_run && s.backup_id != 0) {
      absl::StatusOr<Backup> b = store_->GetBackup(s.backup_id);
      absl::Status restored = b.ok() ? VerifyBackup(*b) : b.status();
      if (restored.ok()) {
        restored = drivers_->For(*url).RestoreBackup(*b, *url, inv->project.step_timeout);
      }
      if (!restored.ok())
        return needs_attention(absl::StrCat("restore failed: ", restored.message()));
    }
    if (s.phase == "rollback") {
      s.rollback = sqlite && s.backup_id != 0 ? "restored" : "rolled_back";
      return needs_attention(
          "the step had failed and was being rolled back; it is back at its start");
    }
    s.state = "pending";
    s.phase.clear();
    return save_and_emit("recovered",
                         absl::StrCat("still at its start ", RowsText(read.rows),
                                      alembic_may_have_run && sqlite && s.backup_id != 0
                                          ? "; restored from its backup; will retry"
                                          : "; will retry"));
  }
  needs_attention(absl::StrCat("the database holds ", RowsText(read.rows), "; it was moving from ",
                               RowsText(s.from), " to ", RowsText(s.expected)));
}

}  // namespace lockstep::daemon
