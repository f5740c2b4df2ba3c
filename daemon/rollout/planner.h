// The rollout planner: from a target and a scope to stages, waves and
// steps, with every pre-check a person needs before anything is touched.
// Pure: reads the fleet snapshot it is given and the revision graph; changes
// nothing (PlanRollout and `lockstep plan` are dry runs).
//
// Example:
//   RolloutRequest req{.target = "heads", .environments = {"staging"}};
//   absl::StatusOr<RolloutPlan> plan = PlanRollout(req, inv, resolver, snapshot, absl::Now());
//   // plan->problems lists every blocking problem:
//   //   {"prod/tenant-7", "unreachable", "connection refused"}
//   //   {"", "promotion", "prod comes after staging, but staging/app does not hold heads"}
#ifndef LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_
#define LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/inventory.h"
#include "daemon/model/fleet.h"
#include "daemon/model/rollout.h"
#include "migrations/lint.h"
#include "migrations/resolver.h"

namespace lockstep::daemon {

struct RolloutRequest {
  std::string target = "heads";           // any identifier Alembic accepts
  std::vector<std::string> environments;  // empty: all, in promotion order
  // Database filters: "name", "env/name", globs ("tenant-*"); empty: all.
  std::vector<std::string> databases;
  bool override_promotion = false;  // start although the promotion gate is closed
  // Lint codes (empty-upgrade, filename-mismatch, ...) that do not block
  // this rollout; each overridden finding is recorded in its events.
  std::vector<std::string> allow_lint;
  // Migrate databases whose schema drifted (schema-drift problems); each is
  // recorded in the rollout's events.
  bool allow_drift = false;
  // Non-empty: start steps even outside the environments' change windows,
  // for this reason (an admin's call; recorded in the rollout's events).
  std::string override_window;
  std::string requested_by;
};

// Why a rollout may not start. `code` is stable (docs/rollouts.md: plan -o json):
// unreachable, orphaned, version_rows_lost, schema-drift, cannot-plan, canary-unknown,
// scripts-broken, promotion, or a lint code (empty-upgrade, empty-downgrade,
// filename-mismatch, duplicate-revision, unreadable, graph-error).
struct PlanProblem {
  std::string database;  // env/name, or empty for a project or environment problem
  std::string code;
  std::string message;

  // "prod/tenant-c: orphaned version row ..." or "promotion: dev has held ...".
  std::string Text() const;
};

struct RolloutPlan {
  Rollout rollout;                       // stages and steps; no id, not started
  std::vector<PlanProblem> problems;     // each one blocks the rollout
  std::vector<PlanProblem> overridden;   // would block; the request overrode them
  std::vector<std::string> notes;        // worth knowing, not blocking

  bool blocked() const { return !problems.empty(); }
  // FAILED_PRECONDITION listing every problem, one per line; OK when none.
  absl::Status BlockingStatus() const;
};

// Stages, waves and steps for an upgrade. Databases already at the target
// get no step. Errors: INVALID_ARGUMENT (unknown or ambiguous target, unknown
// environment, a filter matching nothing). Everything that blocks the
// rollout (unreachable or orphaned databases, no path, promotion, scripts
// that do not load, lint findings on the revisions it would run) is listed
// in the plan's `problems`. With override_promotion and allow_lint, those
// problems move to `overridden` for the audit trail.
//
// `lint` holds the project's lint findings (LintProject); those that concern
// the rollout block it: empty-upgrade and filename-mismatch on a revision in
// a step's path, empty-downgrade there when on_failure is downgrade, and
// duplicate-revision, unreadable and graph-error anywhere.
absl::StatusOr<RolloutPlan> PlanRollout(const RolloutRequest& request,
                                        const config::Inventory& inv,
                                        const migrations::Resolver& resolver,
                                        const FleetSnapshot& fleet, absl::Time now,
                                        const std::vector<migrations::LintFinding>& lint = {});

// One database's version rows written as `revision` (a revision, "heads"
// or "base"), with a backup first: a one-step rollout of kind "stamp" that
// runs no migration. Its step checks, before Alembic's `stamp`, that the
// schema is what Alembic builds for `revision` (unless `override_reason`).
// Refused for a database that cannot be read.
absl::StatusOr<Rollout> PlanStamp(const std::string& environment, const std::string& database,
                                  const std::string& revision, const std::string& override_reason,
                                  const config::Inventory& inv,
                                  const migrations::Resolver& resolver, const FleetSnapshot& fleet);

// The article's "downgrade -1, then upgrade head" as one operation: one
// database taken down to just below `revision` (Alembic's `downgrade
// REV-1`; empty: its one version row) and up again to the rows it holds,
// with a backup first; a one-step rollout of kind "reapply" whose step must
// end with the schema Alembic builds for those rows, else it restores the
// backup. Its step's `from` and `expected` are the same rows.
absl::StatusOr<Rollout> PlanReapply(const std::string& environment, const std::string& database,
                                    const std::string& revision, const config::Inventory& inv,
                                    const migrations::Resolver& resolver,
                                    const FleetSnapshot& fleet);

// One database downgraded (or upgraded) to `target`, always with a backup:
// a one-step rollout of kind "downgrade" for incident work.
absl::StatusOr<Rollout> PlanDowngrade(const std::string& environment, const std::string& database,
                                      const std::string& target, const config::Inventory& inv,
                                      const migrations::Resolver& resolver,
                                      const FleetSnapshot& fleet);

// `lockstep restore` of a backup into an environment whose approval policy
// holds changes (approval required): a one-step rollout of kind "restore"
// (target "backup N") that waits for that approval like any other, then
// puts the backup back as an immediate restore does (a safety backup
// first). `yes` (restore although the database changed since the backup)
// is recorded as its override_reason.
absl::StatusOr<Rollout> PlanRestore(const Backup& backup, bool yes, const config::Inventory& inv,
                                    const FleetSnapshot& fleet);
// The backup a rollout of kind "restore" puts back (its target, "backup N").
int64_t RestoredBackupId(const Rollout& rollout);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_
