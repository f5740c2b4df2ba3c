// Prometheus metrics for drift dashboards and alerts, updated from each
// FleetSnapshot. Label values are environment and database names and
// revision ids, never URLs or secrets. Thread-safe.
//
// Per database (which ones: server.metrics_per_database; by default those
// that are not clean): lockstep_database_up,
// lockstep_database_pending_revisions, lockstep_database_info{revision},
// lockstep_database_state{state}, the timestamps and schema series.
// Per environment, always: lockstep_environment_databases{state},
// lockstep_environment_schema_databases{schema}.
// Fleet: lockstep_check_duration_seconds (histogram, by outcome),
// lockstep_graph_heads, lockstep_graph_revisions, lockstep_graph_broken,
// lockstep_refresh_duration_seconds, lockstep_refresh_timestamp_seconds,
// lockstep_environment_in_lockstep, lockstep_environment_promotion_violations.
#ifndef LOCKSTEP_DAEMON_METRICS_FLEET_METRICS_H_
#define LOCKSTEP_DAEMON_METRICS_FLEET_METRICS_H_

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/model/fleet.h"

namespace prometheus {
class Registry;
}

namespace lockstep::daemon {

class FleetMetrics {
 public:
  // Which databases get their own series.
  enum class PerDatabase { kNotClean, kAll, kNone };
  // "not_clean", "all", "none" (the inventory checked the value).
  static PerDatabase ParsePerDatabase(const std::string& name);

  // Registers the families in `registry`, which must outlive this object.
  explicit FleetMetrics(prometheus::Registry* registry);
  ~FleetMetrics();

  void Update(const FleetSnapshot& snapshot, PerDatabase per_database = PerDatabase::kAll);

 private:
  struct Families;
  std::mutex mu_;
  std::unique_ptr<Families> f_;  // guarded by mu_
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_METRICS_FLEET_METRICS_H_
