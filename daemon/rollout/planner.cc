#include "daemon/rollout/planner.h"

#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/migration_plan.h"
#include "migrations/revision_error.h"

namespace lockstep::daemon {
namespace {

bool Matches(const std::string& pattern, const DatabaseStatus& d) {
  const std::string& subject = pattern.find('/') != std::string::npos ? d.key() : d.name;
  return ::fnmatch(pattern.c_str(), subject.c_str(), 0) == 0;
}

std::string FailurePolicyName(config::FailurePolicy p) {
  switch (p) {
    case config::FailurePolicy::kRestore:
      return "restore";
    case config::FailurePolicy::kDowngrade:
      return "downgrade";
    case config::FailurePolicy::kLeave:
      return "leave";
  }
  return "restore";
}

RolloutStage StageFor(const config::EnvironmentConfig& env) {
  RolloutStage s;
  s.environment = env.name;
  s.soak = env.soak;
  s.approval_required = env.approval_required;
  s.batch_size = env.batch_size;
  s.max_parallel = env.max_parallel;
  s.max_failures = env.max_failures;
  s.on_failure = FailurePolicyName(env.on_failure);
  s.backup_required = env.backup_required;
  return s;
}

// The path from `rows` to `target` and the rows after it, or why not.
absl::Status PlanStep(const migrations::Resolver& resolver, const DatabaseStatus& d,
                      const std::string& target, bool downgrade, RolloutStep* step) {
  if (d.state == "unreachable") return absl::UnavailableError(d.reason);
  if (d.state == "version_rows_lost") {
    // Alembic would run every migration from the start over tables that are
    // likely still there. Only a person knows what the database holds.
    return absl::FailedPreconditionError(absl::StrCat(
        "version_rows_lost: ", d.reason,
        "; lockstep will not migrate it from nothing: which to do is a person's decision "
        "(then lockstep refresh)"));
  }
  if (!d.orphaned.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "orphaned version row", d.orphaned.size() > 1 ? "s " : " ", absl::StrJoin(d.orphaned, ", "),
        " (no script defines it); Alembic cannot move this database"));
  }
  absl::StatusOr<std::vector<migrations::MigrationStep>> path =
      downgrade ? migrations::PlanDowngrade(resolver, d.revisions, target)
                : migrations::PlanUpgrade(resolver, d.revisions, target);
  if (!path.ok()) {
    migrations::CommandErrorContext context = downgrade ? migrations::DowngradeErrorContext(target)
                                                        : migrations::UpgradeErrorContext(target);
    return absl::FailedPreconditionError(migrations::CommandErrorMessage(path.status(), context));
  }
  step->environment = d.environment;
  step->database = d.name;
  step->from = d.revisions;
  step->expected = path->empty() ? d.revisions : path->back().rows_after;
  for (const migrations::MigrationStep& s : *path) {
    step->path.push_back(resolver.graph().id(s.revision));
  }
  return absl::OkStatus();
}

// Why `env` may not be promoted now, judged on the databases of the
// environment it comes after; empty when it may.
std::vector<std::string> PromotionProblems(const config::EnvironmentConfig& env,
                                           const migrations::Resolver& resolver,
                                           const std::string& target, const FleetSnapshot& fleet,
                                           absl::Time now) {
  std::vector<std::string> problems;
  absl::Time last_change = absl::InfinitePast();
  int databases = 0;
  for (const DatabaseStatus& d : fleet.databases) {
    if (d.environment != env.after) continue;
    ++databases;
    RolloutStep probe;
    absl::Status s = PlanStep(resolver, d, target, false, &probe);
    if (!s.ok() || !probe.path.empty()) {
      problems.push_back(absl::StrCat(
          "promotion: ", env.name, " comes after ", env.after, ", but ", d.key(), " does not hold ",
          target, " yet (",
          s.ok() ? absl::StrCat(probe.path.size(), " pending") : std::string(s.message()), ")"));
    }
    last_change = std::max(last_change, d.last_change);
  }
  if (databases == 0) {
    problems.push_back(absl::StrCat("promotion: ", env.name, " comes after ", env.after,
                                    ", which has no databases to prove ", target, " on"));
  }
  if (problems.empty() && last_change != absl::InfinitePast() && now - last_change < env.soak) {
    problems.push_back(absl::StrCat(
        "promotion: ", env.after, " has held ", target, " for ",
        absl::FormatDuration(absl::Trunc(now - last_change, absl::Seconds(1))), " of its ",
        absl::FormatDuration(env.soak), " soak (until ",
        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", last_change + env.soak, absl::UTCTimeZone()),
        ")"));
  }
  return problems;
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

absl::StatusOr<Rollout> PlanRollout(const RolloutRequest& request, const config::Inventory& inv,
                                    const migrations::Resolver& resolver,
                                    const FleetSnapshot& fleet, absl::Time now,
                                    std::vector<std::string>* overridden) {
  Rollout rollout;
  rollout.kind = "upgrade";
  rollout.target = request.target.empty() ? "heads" : request.target;
  rollout.created_by = request.requested_by;
  rollout.override_promotion = request.override_promotion;
  absl::Status exists = TargetExists(resolver, rollout.target, &rollout.target_revisions);
  if (!exists.ok()) return exists;

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
  std::vector<std::string> problems;
  std::vector<std::string> promotion;
  std::set<std::string> moving_envs;
  for (const config::EnvironmentConfig& env : inv.environments) {
    if (!scope.empty() && !scope.count(env.name)) continue;
    RolloutStage stage = StageFor(env);
    std::vector<RolloutStep> steps;
    for (const DatabaseStatus& d : fleet.databases) {
      if (d.environment != env.name) continue;
      bool selected = request.databases.empty();
      for (size_t i = 0; i < request.databases.size(); ++i) {
        if (Matches(request.databases[i], d)) selected = filter_used[i] = true;
      }
      if (!selected) continue;
      RolloutStep step;
      absl::Status s = PlanStep(resolver, d, rollout.target, false, &step);
      if (!s.ok()) {
        problems.push_back(absl::StrCat(d.key(), ": ", s.message()));
        continue;
      }
      if (step.path.empty()) continue;  // already there
      step.canary = std::find(env.canary.begin(), env.canary.end(), d.name) != env.canary.end();
      steps.push_back(std::move(step));
    }
    // An `after` environment moved by this rollout is gated at run time
    // (its stage must succeed and soak); one that is not is checked now.
    if (!env.after.empty() && !moving_envs.count(env.after) && !steps.empty()) {
      std::vector<std::string> p = PromotionProblems(env, resolver, rollout.target, fleet, now);
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
  if (request.override_promotion) {
    if (overridden != nullptr) *overridden = promotion;
  } else {
    problems.insert(problems.end(), promotion.begin(), promotion.end());
  }
  if (!problems.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot roll out ", rollout.target, ":\n", absl::StrJoin(problems, "\n")));
  }
  return rollout;
}

absl::StatusOr<Rollout> PlanDowngrade(const std::string& environment, const std::string& database,
                                      const std::string& target, const config::Inventory& inv,
                                      const migrations::Resolver& resolver,
                                      const FleetSnapshot& fleet) {
  const config::EnvironmentConfig* env = inv.FindEnvironment(environment);
  const DatabaseStatus* d = fleet.Find(environment, database);
  if (env == nullptr || d == nullptr) {
    return absl::NotFoundError(absl::StrCat("no database '", environment, "/", database, "'"));
  }
  Rollout rollout;
  rollout.kind = "downgrade";
  rollout.target = target;
  if (target != "base" && !migrations::MatchRelative(target)) {
    std::vector<std::string> resolved;  // replaced by what the database will hold
    absl::Status exists = TargetExists(resolver, target, &resolved);
    if (!exists.ok()) return exists;
  }
  RolloutStep step;
  absl::Status s = PlanStep(resolver, *d, target, true, &step);
  if (!s.ok()) return absl::FailedPreconditionError(absl::StrCat(d->key(), ": ", s.message()));
  if (step.path.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(d->key(), " is already at ", target, "; nothing to downgrade"));
  }
  // What this database holds after it: a relative target ("-1") means
  // nothing alone, and resolving it from the graph's heads names revisions
  // of other databases.
  rollout.target_revisions = step.expected;
  RolloutStage stage = StageFor(*env);
  stage.approval_required = false;  // incident work: the caller is the approval
  stage.soak = absl::ZeroDuration();
  stage.backup_required = true;
  stage.max_parallel = 1;
  stage.max_failures = 0;
  rollout.stages.push_back(stage);
  rollout.steps.push_back(std::move(step));
  return rollout;
}

}  // namespace lockstep::daemon
