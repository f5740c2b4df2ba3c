// What lockstepd knows about the fleet at one moment: an immutable snapshot
// the reconciler publishes after every refresh, read by the API and metrics.
//
// daemon/model holds the plain data types (and the Clock) that every layer
// of the daemon shares: state (the store), core (the reconciler), rollout
// and rpc include it; it includes none of them.
#ifndef LOCKSTEP_DAEMON_MODEL_FLEET_H_
#define LOCKSTEP_DAEMON_MODEL_FLEET_H_

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/time/time.h"
#include "daemon/model/states.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

// Whether a database's real schema is what its version rows claim
// (daemon/core/schema_check.h says how it is judged).
struct SchemaStatus {
  SchemaState state = SchemaState::kUnknown;
  std::string reason;             // one sentence a person can act on
  std::string fingerprint;        // SchemaFingerprint; empty when not read
  std::vector<SchemaDifference> differences;  // drift: against the expected schema
  absl::Time checked_at = absl::InfinitePast();
  // For a database whose rows cannot be trusted (drifted, orphaned, version
  // rows lost): the revision whose expected schema it holds exactly, or,
  // when none, the closest one and how many differences are left.
  std::vector<std::string> matches_revisions;  // empty: none matched (or not asked)
  std::vector<std::string> closest_revisions;
  int closest_differences = 0;
};

// A revision file that changed after this database applied it
// (daemon/core/revision_checksums.h).
struct ChangedRevision {
  std::string revision;
  std::string applied_sha256;
  std::string current_sha256;
  bool cosmetic = false;  // comments, docstrings, blank lines or spacing only
  absl::Time applied_at = absl::InfinitePast();
  bool baseline = false;  // applied_sha256 is what lockstep first saw, not what a step ran
};

// States a database can be in (DESIGN.md; DatabaseState in states.h).
// `uninitialized` is a database lockstep
// never saw version rows in; `version_rows_lost` one that has none now but
// held some when lockstep looked before.
struct DatabaseStatus {
  std::string environment;
  std::string name;
  std::string url;  // redacted
  std::map<std::string, std::string> labels;
  DatabaseState state = DatabaseState::kUninitialized;
  std::string reason;                   // one sentence a person can act on
  std::vector<std::string> revisions;   // the version rows (last known when unreachable)
  std::vector<std::string> pending;     // what `upgrade <target>` would run, in order
  std::vector<std::string> orphaned;    // rows no script defines
  std::vector<std::string> beyond;      // applied revisions past the target
  std::string check_outcome;            // ok, no_table, unreachable, permission_denied, timed_out, error
  std::string check_error;
  absl::Duration check_duration;
  absl::Time last_check = absl::InfinitePast();
  absl::Time last_change = absl::InfinitePast();
  bool discovered = false;
  SchemaStatus schema;
  std::vector<ChangedRevision> changed_revisions;  // by revision

  std::string key() const { return environment + "/" + name; }
  // What `status --check` asks of every database.
  bool clean() const {
    return state == DatabaseState::kCurrent && schema.state != SchemaState::kDrift;
  }
};

struct EnvironmentStatus {
  std::string name;
  std::string after;
  std::string target;
  int databases = 0;
  std::map<DatabaseState, int> by_state;
  // Distinct revision sets among the databases whose rows are known and
  // meaningful (not orphaned, unreachable or version_rows_lost).
  std::vector<std::vector<std::string>> revision_sets;
  // One revision set, and no database orphaned, unreachable or
  // version_rows_lost: a database whose rows are unknown or meaningless
  // cannot be shown to be in step with the others.
  bool in_lockstep = true;
  // Revisions applied here but not yet in every database of `after`.
  std::vector<std::string> promotion_violations;
  std::vector<std::string> discover_errors;
};

struct GraphStatus {
  std::vector<std::string> heads;
  int revisions = 0;
  bool broken = false;       // the scripts changed and no longer load
  std::string error;         // why, when broken (the last good graph is used)
  absl::Time loaded_at = absl::InfinitePast();
};

// Expected schemas (what Alembic builds for a revision set) since start.
struct ExpectedBuildStats {
  int built = 0;              // by running Alembic on a shadow database
  int failed = 0;             // of those, how many could not be built
  int loaded = 0;             // from the state store: built before from the same files
  absl::Duration build_time;  // all the builds together
};

struct FleetSnapshot {
  absl::Time refreshed_at = absl::InfinitePast();
  absl::Duration refresh_duration;
  GraphStatus graph;
  ExpectedBuildStats expected_builds;
  std::vector<EnvironmentStatus> environments;  // in promotion order
  std::vector<DatabaseStatus> databases;        // grouped by environment, by name

  // The database, or nullptr. Linear: for callers that look up a few.
  const DatabaseStatus* Find(const std::string& environment, const std::string& name) const {
    for (const DatabaseStatus& d : databases) {
      if (d.environment == environment && d.name == name) return &d;
    }
    return nullptr;
  }
  // key() -> database, for callers that look up every database (with Find,
  // a pass over 100,000 databases was 10^10 comparisons).
  std::unordered_map<std::string, const DatabaseStatus*> Index() const {
    std::unordered_map<std::string, const DatabaseStatus*> index;
    index.reserve(databases.size());
    for (const DatabaseStatus& d : databases) index.emplace(d.key(), &d);
    return index;
  }
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_FLEET_H_
