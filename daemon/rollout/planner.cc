#include "daemon/rollout/planner.h"

#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "daemon/rollout/alembic_output.h"  // RowsText
#include "migrations/migration_plan.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

// A duration as absl prints it, but "0s" rather than a bare "0".
std::string WithUnit(absl::Duration d) {
  return d == absl::ZeroDuration() ? "0s" : absl::FormatDuration(d);
}

bool Matches(const std::string& pattern, const DatabaseStatus& d) {
  const std::string& subject = pattern.find('/') != std::string::npos ? d.key() : d.name;
  return ::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0;
}

RolloutStage StageFor(const config::EnvironmentConfig& env) {
  RolloutStage s;
  s.environment = env.name;
  s.soak = env.soak;
  s.approval_required = env.approval_required;
  s.approvals_required = env.approvals;
  s.distinct_from_requester = env.distinct_from_requester;
  s.batch_size = env.batch_size;
  s.max_parallel = env.max_parallel;
  s.max_failures = env.max_failures;
  s.on_failure = env.on_failure;
  s.backup_required = env.backup_required;
  s.canary_soak = env.canary_soak;
  s.canary_approval_required = env.canary_approval_required;
  return s;
}

// The path from `rows` to `target` and the rows after it, or why not (a
// problem with its code; `database` is left for the caller).
std::optional<PlanProblem> PlanStep(const migrations::Resolver& resolver, const DatabaseStatus& d,
                                    const std::string& target, bool downgrade, RolloutStep* step) {
  if (d.state == DatabaseState::kUnreachable) return PlanProblem{"", "unreachable", d.reason};
  if (d.state == DatabaseState::kVersionRowsLost) {
    // Alembic would run every migration from the start over tables that are
    // likely still there. Only a person knows what the database holds.
    return PlanProblem{"", "version_rows_lost",
                       absl::StrCat(d.reason,
                                    "; lockstep will not migrate it from nothing: which to do is a "
                                    "person's decision (then lockstep refresh)")};
  }
  if (!d.orphaned.empty()) {
    return PlanProblem{
        "", "orphaned",
        absl::StrCat("orphaned version row", d.orphaned.size() > 1 ? "s " : " ",
                     absl::StrJoin(d.orphaned, ", "),
                     " (no script defines it); Alembic cannot move this database")};
  }
  absl::StatusOr<std::vector<migrations::MigrationStep>> path =
      downgrade ? migrations::PlanDowngrade(resolver, d.revisions, target)
                : migrations::PlanUpgrade(resolver, d.revisions, target);
  if (!path.ok()) {
    migrations::CommandErrorContext context = downgrade ? migrations::DowngradeErrorContext(target)
                                                        : migrations::UpgradeErrorContext(target);
    return PlanProblem{"", "cannot-plan",
                       migrations::CommandErrorMessage(path.status(), context)};
  }
  step->environment = d.environment;
  step->database = d.name;
  step->from = d.revisions;
  step->expected = path->empty() ? d.revisions : path->back().rows_after;
  for (const migrations::MigrationStep& s : *path) {
    step->path.push_back(resolver.graph().id(s.revision));
  }
  return std::nullopt;
}

// Why `env` may not be promoted now, judged on the databases of the
// environment it comes after; empty when it may.
std::vector<PlanProblem> PromotionProblems(const config::EnvironmentConfig& env,
                                           const migrations::Resolver& resolver,
                                           const std::string& target, const FleetSnapshot& fleet,
                                           absl::Time now) {
  std::vector<PlanProblem> problems;
  auto problem = [&](std::string message) {
    problems.push_back({"", "promotion", std::move(message)});
  };
  absl::Time last_change = absl::InfinitePast();
  int databases = 0;
  for (const DatabaseStatus& d : fleet.databases) {
    if (d.environment != env.after) continue;
    ++databases;
    RolloutStep probe;
    std::optional<PlanProblem> p = PlanStep(resolver, d, target, false, &probe);
    if (p || !probe.path.empty()) {
      problem(absl::StrCat(env.name, " comes after ", env.after, ", but ", d.key(),
                           " does not hold ", target, " yet (",
                           p ? p->message : absl::StrCat(probe.path.size(), " pending"), ")"));
    }
    last_change = std::max(last_change, d.last_change);
  }
  if (databases == 0) {
    problem(absl::StrCat(env.name, " comes after ", env.after, ", which has no databases to prove ",
                         target, " on"));
  }
  if (problems.empty() && last_change != absl::InfinitePast() && now - last_change < env.soak) {
    problem(absl::StrCat(
        env.after, " has held ", target, " for ",
        WithUnit(absl::Trunc(now - last_change, absl::Seconds(1))), " of its ",
        absl::FormatDuration(env.soak), " soak (until ",
        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", last_change + env.soak, absl::UTCTimeZone()),
        ")"));
  }
  return problems;
}

// The lint findings that concern this rollout (see PlanRollout).
std::vector<PlanProblem> LintProblems(const std::vector<migrations::LintFinding>& lint,
                                      const migrations::Resolver& resolver, const Rollout& rollout) {
  std::set<std::string> in_path;               // files of revisions some step runs
  std::set<std::string> in_downgrade_policy;   // ... in a stage that rolls back by downgrade
  const migrations::RevisionGraph& g = resolver.graph();
  std::map<std::string, const RolloutStage*> stages;
  for (const RolloutStage& st : rollout.stages) stages[st.environment] = &st;
  for (const RolloutStep& step : rollout.steps) {
    const bool downgrades = stages[step.environment]->on_failure == FailurePolicy::kDowngrade;
    for (const std::string& id : step.path) {
      std::optional<int> idx = g.Find(id);
      if (!idx) continue;
      in_path.insert(g.node(*idx).file->path);
      if (downgrades) in_downgrade_policy.insert(g.node(*idx).file->path);
    }
  }
  std::vector<PlanProblem> out;
  for (const migrations::LintFinding& f : lint) {
    bool blocks = false;
    if (f.code == "duplicate-revision" || f.code == "unreadable" || f.code == "graph-error") {
      blocks = true;
    } else if (f.code == "empty-upgrade" || f.code == "filename-mismatch") {
      blocks = in_path.count(f.path) > 0;
    } else if (f.code == "empty-downgrade") {
      blocks = in_downgrade_policy.count(f.path) > 0;
    }
    if (!blocks) continue;
    std::string where = f.line > 0 ? absl::StrCat(f.path, ":", f.line) : f.path;
    out.push_back({"", f.code, absl::StrCat(f.message, " (", where, ")")});
  }
  return out;
}

absl::Status TargetExists(const migrations::Resolver& resolver, const std::string& target,
                          std::vector<std::string>* resolved) {
  absl::StatusOr<std::vector<migrations::RevRef>> revs = resolver.GetRevisions(target);
  if (!revs.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("target '", target, "': ", migrations::CommandErrorMessage(revs.status())));
  }
  for (const migrations::RevRef& r : *revs) {
    if (r.is_rev()) resolved->push_back(resolver.graph().id(r.idx));
  }
  return absl::OkStatus();
}

}  // namespace

std::string PlanProblem::Text() const {
  return absl::StrCat(database.empty() ? code : database, ": ", message);
}

absl::Status RolloutPlan::BlockingStatus() const {
  if (problems.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const PlanProblem& p : problems) lines.push_back(p.Text());
  return absl::FailedPreconditionError(
      absl::StrCat("cannot roll out ", rollout.target, ":\n", absl::StrJoin(lines, "\n")));
}

absl::StatusOr<RolloutPlan> PlanRollout(const RolloutRequest& request,
                                        const config::Inventory& inv,
                                        const migrations::Resolver& resolver,
                                        const FleetSnapshot& fleet, absl::Time now,
                                        const std::vector<migrations::LintFinding>& lint) {
  RolloutPlan plan;
  Rollout& rollout = plan.rollout;
  rollout.kind = "upgrade";
  rollout.state = RolloutState::kPlanned;
  rollout.target = request.target.empty() ? "heads" : request.target;
  rollout.created_by = request.requested_by;
  rollout.override_promotion = request.override_promotion;
  rollout.override_window = request.override_window;
  absl::Status exists = TargetExists(resolver, rollout.target, &rollout.target_revisions);
  if (!exists.ok()) return exists;
  if (rollout.target == "heads" && rollout.target_revisions.size() > 1) {
    plan.notes.push_back(absl::StrCat(
        "heads is ", rollout.target_revisions.size(), " revisions (",
        absl::StrJoin(rollout.target_revisions, ", "),
        "): the graph has unmerged branches, and each database gets every branch"));
  }

  std::set<std::string> scope(request.environments.begin(), request.environments.end());
  for (const std::string& e : scope) {
    if (inv.FindEnvironment(e) == nullptr) {
      std::vector<std::string> names;
      for (const auto& env : inv.environments) names.push_back(env.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "no environment '", e, "'; the inventory has: ", absl::StrJoin(names, ", ")));
    }
  }
  std::vector<bool> filter_used(request.databases.size(), false);
  std::vector<PlanProblem>& problems = plan.problems;
  std::vector<PlanProblem> promotion;
  std::set<std::string> moving_envs;
  if (fleet.graph.broken) {
    problems.push_back({"", "scripts-broken",
                        absl::StrCat("the revision scripts do not load: ", fleet.graph.error,
                                     " (lockstep still shows the last good graph; Alembic would "
                                     "fail on these files)")});
  }
  for (const config::EnvironmentConfig& env : inv.environments) {
    if (!scope.empty() && !scope.count(env.name)) continue;
    RolloutStage stage = StageFor(env);
    std::vector<RolloutStep> steps;
    std::set<std::string> names;  // every database of the environment, listed or discovered
    std::set<std::string> selected_names;
    for (const DatabaseStatus& d : fleet.databases) {
      if (d.environment != env.name) continue;
      names.insert(d.name);
      bool selected = request.databases.empty();
      for (size_t i = 0; i < request.databases.size(); ++i) {
        if (Matches(request.databases[i], d)) selected = filter_used[i] = true;
      }
      if (!selected) continue;
      selected_names.insert(d.name);
      RolloutStep step;
      if (std::optional<PlanProblem> p = PlanStep(resolver, d, rollout.target, false, &step)) {
        p->database = d.key();
        problems.push_back(*std::move(p));
        continue;
      }
      if (step.path.empty()) continue;  // already there
      if (d.schema.state == SchemaState::kDrift) {
        // Atlas's pre-apply check: migrating it builds on a schema Alembic
        // did not make, and the step's own schema check would fail.
        (request.allow_drift ? plan.overridden : plan.problems)
            .push_back({d.key(), "schema-drift",
                        absl::StrCat("its schema is not what its version rows claim (",
                                     d.schema.reason,
                                     "); repair it first, or --allow-drift to migrate it anyway")});
      }
      step.canary = std::find(env.canary.begin(), env.canary.end(), d.name) != env.canary.end();
      steps.push_back(std::move(step));
    }
    // A canary is named by its database name, listed or discovered; a name
    // that matches nothing would silently leave the stage without canaries.
    for (const std::string& c : env.canary) {
      if (!names.count(c)) {
        std::string hint;  // "tenant-a.db" for the discovered "tenant-a", and the like
        for (const std::string& n : names) {
          if (absl::StartsWith(c, n) || absl::StartsWith(n, c)) {
            hint = absl::StrCat("; did you mean '", n, "'?");
          }
        }
        problems.push_back(
            {"", "canary-unknown",
             absl::StrCat(env.name, ": canary '", c, "' matches no database (it has ",
                          names.size(), names.size() == 1 ? " database" : " databases", hint,
                          ")")});
      } else if (!selected_names.count(c) && !steps.empty()) {
        plan.notes.push_back(absl::StrCat(env.name, ": canary ", c,
                                          " is not in this rollout (--db), so ", env.name,
                                          " starts without it"));
      }
    }
    // An `after` environment moved by this rollout is gated at run time
    // (its stage must succeed and soak); one that is not is checked now.
    if (!env.after.empty() && !moving_envs.count(env.after) && !steps.empty()) {
      std::vector<PlanProblem> p = PromotionProblems(env, resolver, rollout.target, fleet, now);
      promotion.insert(promotion.end(), p.begin(), p.end());
    }
    if (!steps.empty()) moving_envs.insert(env.name);
    // Canaries first, one per wave, in the order the inventory lists them;
    // then the rest by name, batch_size per wave.
    std::stable_sort(steps.begin(), steps.end(), [&](const RolloutStep& a, const RolloutStep& b) {
      if (a.canary != b.canary) return a.canary;
      if (a.canary) {
        return std::find(env.canary.begin(), env.canary.end(), a.database) <
               std::find(env.canary.begin(), env.canary.end(), b.database);
      }
      return a.database < b.database;
    });
    int wave = 0;
    int in_wave = 0;
    for (RolloutStep& step : steps) {
      if (in_wave > 0 &&
          (step.canary || in_wave == env.batch_size || rollout.steps.back().canary)) {
        ++wave;
        in_wave = 0;
      }
      step.wave = wave;
      ++in_wave;
      step.index = static_cast<int>(rollout.steps.size());
      rollout.steps.push_back(std::move(step));
    }
    rollout.stages.push_back(std::move(stage));
  }
  for (size_t i = 0; i < request.databases.size(); ++i) {
    if (!filter_used[i]) {
      return absl::InvalidArgumentError(absl::StrCat("database filter '", request.databases[i],
                                                     "' matches no database in scope"));
    }
  }
  std::vector<PlanProblem>& promotion_to =
      request.override_promotion ? plan.overridden : plan.problems;
  promotion_to.insert(promotion_to.end(), promotion.begin(), promotion.end());
  const std::set<std::string> allowed(request.allow_lint.begin(), request.allow_lint.end());
  for (const std::string& code : allowed) {
    if (std::find(std::begin(migrations::kLintCodes), std::end(migrations::kLintCodes), code) ==
        std::end(migrations::kLintCodes)) {
      std::vector<std::string> codes(std::begin(migrations::kLintCodes),
                                     std::end(migrations::kLintCodes));
      return absl::InvalidArgumentError(absl::StrCat(
          "allow_lint: '", code, "' is not a lint code; codes: ", absl::StrJoin(codes, ", ")));
    }
  }
  for (PlanProblem& p : LintProblems(lint, resolver, rollout)) {
    (allowed.count(p.code) ? plan.overridden : plan.problems).push_back(std::move(p));
  }
  return plan;
}

// The stage of a one-database rollout for incident work: the environment's
// approval policy (a downgrade or stamp of prod waits for its approvers as
// a rollout does), no soak, a backup always, one step, no failure allowed.
RolloutStage IncidentStage(const config::EnvironmentConfig& env) {
  RolloutStage stage = StageFor(env);
  stage.soak = absl::ZeroDuration();
  stage.backup_required = true;
  stage.max_parallel = 1;
  stage.max_failures = 0;
  return stage;
}

namespace {

// The one database an incident rollout works on, and its environment.
struct IncidentTarget {
  const config::EnvironmentConfig* env;
  const DatabaseStatus* database;
};

absl::StatusOr<IncidentTarget> FindIncidentTarget(const std::string& environment,
                                                  const std::string& database,
                                                  const config::Inventory& inv,
                                                  const FleetSnapshot& fleet) {
  const config::EnvironmentConfig* env = inv.FindEnvironment(environment);
  const DatabaseStatus* d = fleet.Find(environment, database);
  if (env == nullptr || d == nullptr) {
    return absl::NotFoundError(absl::StrCat("no database '", environment, "/", database, "'"));
  }
  return IncidentTarget{env, d};
}

}  // namespace

absl::StatusOr<Rollout> PlanStamp(const std::string& environment, const std::string& database,
                                  const std::string& revision, const std::string& override_reason,
                                  const config::Inventory& inv,
                                  const migrations::Resolver& resolver,
                                  const FleetSnapshot& fleet) {
  absl::StatusOr<IncidentTarget> t = FindIncidentTarget(environment, database, inv, fleet);
  if (!t.ok()) return t.status();
  const config::EnvironmentConfig* env = t->env;
  const DatabaseStatus* d = t->database;
  if (d->state == DatabaseState::kUnreachable) {
    return absl::FailedPreconditionError(absl::StrCat(d->key(), ": ", d->reason));
  }
  Rollout rollout;
  rollout.kind = "stamp";
  rollout.target = revision;
  rollout.override_reason = override_reason;
  RolloutStep step;
  if (revision != "base") {
    absl::Status exists = TargetExists(resolver, revision, &step.expected);
    if (!exists.ok()) return exists;
    std::sort(step.expected.begin(), step.expected.end());
  }
  step.environment = d->environment;
  step.database = d->name;
  step.from = d->revisions;
  if (step.from == step.expected) {
    return absl::FailedPreconditionError(
        absl::StrCat(d->key(), " already holds ", RowsText(step.expected), "; nothing to stamp"));
  }
  rollout.target_revisions = step.expected;
  RolloutStage stage = IncidentStage(*env);
  // A failed stamp is undone from its backup: there is no migration to
  // run backwards (on_failure: downgrade would run one).
  stage.on_failure = FailurePolicy::kRestore;
  rollout.stages.push_back(stage);
  rollout.steps.push_back(std::move(step));
  return rollout;
}

absl::StatusOr<Rollout> PlanRestore(const Backup& backup, bool yes, const config::Inventory& inv,
                                    const FleetSnapshot& fleet) {
  absl::StatusOr<IncidentTarget> t =
      FindIncidentTarget(backup.environment, backup.database, inv, fleet);
  if (!t.ok()) return t.status();
  Rollout rollout;
  rollout.kind = "restore";
  rollout.target = absl::StrCat("backup ", backup.id);
  rollout.target_revisions = backup.revisions;
  if (yes) {
    rollout.override_reason = "--yes: restore although the database changed since the backup";
  }
  RolloutStep step;
  step.environment = t->database->environment;
  step.database = t->database->name;
  step.from = t->database->revisions;
  step.expected = backup.revisions;
  RolloutStage stage = IncidentStage(*t->env);
  // What it replaces is kept by its safety backup; nothing runs backwards.
  stage.on_failure = FailurePolicy::kLeave;
  rollout.stages.push_back(stage);
  rollout.steps.push_back(std::move(step));
  return rollout;
}

int64_t RestoredBackupId(const Rollout& rollout) {
  int64_t id = 0;
  if (rollout.kind != "restore" ||
      !absl::SimpleAtoi(absl::StripPrefix(rollout.target, "backup "), &id)) {
    return 0;
  }
  return id;
}

absl::StatusOr<Rollout> PlanDowngrade(const std::string& environment, const std::string& database,
                                      const std::string& target, const config::Inventory& inv,
                                      const migrations::Resolver& resolver,
                                      const FleetSnapshot& fleet) {
  absl::StatusOr<IncidentTarget> t = FindIncidentTarget(environment, database, inv, fleet);
  if (!t.ok()) return t.status();
  const config::EnvironmentConfig* env = t->env;
  const DatabaseStatus* d = t->database;
  Rollout rollout;
  rollout.kind = "downgrade";
  rollout.target = target;
  if (target != "base" && !migrations::MatchRelative(target)) {
    std::vector<std::string> resolved;  // replaced by what the database will hold
    absl::Status exists = TargetExists(resolver, target, &resolved);
    if (!exists.ok()) return exists;
  }
  RolloutStep step;
  if (std::optional<PlanProblem> p = PlanStep(resolver, *d, target, true, &step)) {
    return absl::FailedPreconditionError(absl::StrCat(d->key(), ": ", p->message));
  }
  if (step.path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(d->key(), " is already at ", target, "; nothing to downgrade"));
  }
  // What this database holds after it: a relative target ("-1") means
  // nothing alone, and resolving it from the graph's heads names revisions
  // of other databases.
  rollout.target_revisions = step.expected;
  rollout.stages.push_back(IncidentStage(*env));
  rollout.steps.push_back(std::move(step));
  return rollout;
}

absl::StatusOr<Rollout> PlanReapply(const std::string& environment, const std::string& database,
                                    const std::string& revision, const config::Inventory& inv,
                                    const migrations::Resolver& resolver,
                                    const FleetSnapshot& fleet) {
  absl::StatusOr<IncidentTarget> t = FindIncidentTarget(environment, database, inv, fleet);
  if (!t.ok()) return t.status();
  const DatabaseStatus* d = t->database;
  if (d->state == DatabaseState::kUnreachable || d->state == DatabaseState::kVersionRowsLost ||
      d->state == DatabaseState::kOrphaned || !d->orphaned.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(d->key(), " is ", NameOf(d->state), ": ", d->reason,
                     "; reapply needs version rows Alembic can move (lockstep stamp first)"));
  }
  std::string rev = revision;
  if (rev.empty()) {
    if (d->revisions.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(d->key(), " holds ", RowsText(d->revisions),
                       "; name the revision to reapply (lockstep reapply ", d->key(), " REV)"));
    }
    rev = d->revisions[0];
  }
  std::vector<std::string> resolved;
  if (absl::Status exists = TargetExists(resolver, rev, &resolved); !exists.ok()) return exists;
  if (resolved.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", rev, "' names ", resolved.size(), " revisions; reapply takes one"));
  }
  rev = resolved[0];
  std::vector<int> held;
  for (const std::string& r : d->revisions) {
    if (std::optional<int> n = resolver.graph().Find(r)) held.push_back(*n);
  }
  const std::vector<std::string> applied = resolver.graph().Ids(resolver.AncestorsOf(held));
  if (std::find(applied.begin(), applied.end(), rev) == applied.end()) {
    return absl::FailedPreconditionError(absl::StrCat(d->key(), " does not hold ", rev,
                                                      " (it holds ", RowsText(d->revisions),
                                                      "); nothing to reapply"));
  }
  // Down to just below it (Alembic's `downgrade REV-1`), then up again to
  // the rows it holds now.
  RolloutStep step;
  if (std::optional<PlanProblem> p = PlanStep(resolver, *d, rev + "-1", true, &step)) {
    return absl::FailedPreconditionError(absl::StrCat(d->key(), ": ", p->message));
  }
  std::vector<std::string> rows = step.expected;
  for (const std::string& row : d->revisions) {
    absl::StatusOr<std::vector<migrations::MigrationStep>> up =
        migrations::PlanUpgrade(resolver, rows, row);
    if (!up.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(d->key(), ": cannot upgrade back to ", row, ": ",
                       migrations::CommandErrorMessage(up.status())));
    }
    for (const migrations::MigrationStep& s : *up)
      step.path.push_back(resolver.graph().id(s.revision));
    if (!up->empty()) rows = up->back().rows_after;
  }
  step.expected = d->revisions;
  Rollout rollout;
  rollout.kind = "reapply";
  rollout.target = rev;
  rollout.target_revisions = d->revisions;
  RolloutStage stage = IncidentStage(*t->env);
  // Whatever goes wrong on the way down or up, the backup is the way back.
  stage.on_failure = FailurePolicy::kRestore;
  rollout.stages.push_back(stage);
  rollout.steps.push_back(std::move(step));
  return rollout;
}

}  // namespace lockstep::daemon
