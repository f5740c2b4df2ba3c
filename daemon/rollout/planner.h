// The rollout planner: from a target and a scope to stages, waves and
// steps, with every pre-check a person needs before anything is touched.
// Pure: reads the fleet snapshot it is given and the revision graph; changes
// nothing (PlanRollout and `lockstep plan` are dry runs).
//
// Example:
//   RolloutRequest req{.target = "heads", .environments = {"staging"}};
//   absl::StatusOr<Rollout> plan = PlanRollout(req, inv, resolver, snapshot, absl::Now());
//   // FAILED_PRECONDITION lists every blocking problem, one per line:
//   //   "prod/tenant-7: unreachable (connection refused)"
//   //   "promotion: prod comes after staging, but staging/app does not hold heads"
#ifndef LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_
#define LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "config/inventory.h"
#include "daemon/core/fleet.h"
#include "daemon/core/rollout.h"
#include "migrations/resolver.h"

namespace lockstep::daemon {

struct RolloutRequest {
  std::string target = "heads";           // any identifier Alembic accepts
  std::vector<std::string> environments;  // empty: all, in promotion order
  // Database filters: "name", "env/name", globs ("tenant-*"); empty: all.
  std::vector<std::string> databases;
  bool override_promotion = false;  // start although the promotion gate is closed
  std::string requested_by;
};

// Stages, waves and steps for an upgrade. Databases already at the target
// get no step. Errors: INVALID_ARGUMENT (unknown or ambiguous target, unknown
// environment, a filter matching nothing), FAILED_PRECONDITION (blocking
// problems, all listed). With override_promotion, promotion problems do not
// block; they are returned in `overridden` for the audit trail.
absl::StatusOr<Rollout> PlanRollout(const RolloutRequest& request, const config::Inventory& inv,
                                    const migrations::Resolver& resolver,
                                    const FleetSnapshot& fleet, absl::Time now,
                                    std::vector<std::string>* overridden = nullptr);

// One database downgraded (or upgraded) to `target`, always with a backup:
// a one-step rollout of kind "downgrade" for incident work.
absl::StatusOr<Rollout> PlanDowngrade(const std::string& environment, const std::string& database,
                                      const std::string& target, const config::Inventory& inv,
                                      const migrations::Resolver& resolver,
                                      const FleetSnapshot& fleet);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_PLANNER_H_
