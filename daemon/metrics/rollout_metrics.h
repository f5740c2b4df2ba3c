// Prometheus metrics for rollouts and backups. Labels are environment names
// and results, never URLs or secrets. Thread-safe.
//
// lockstep_rollouts_total{result}            finished rollouts: succeeded, failed, halted, aborted
// lockstep_rollout_steps_total{environment,result}  finished steps: succeeded, failed
// lockstep_rollout_step_duration_seconds{environment}  histogram, lock to verify
// lockstep_backup_size_bytes{environment}    histogram
// lockstep_backup_duration_seconds{environment}  histogram
// lockstep_rollouts_active                   gauge: not yet finished
// lockstep_rollouts_awaiting_approval        gauge
// lockstep_rollouts_awaiting_window          gauge: held by a change window
#ifndef LOCKSTEP_DAEMON_METRICS_ROLLOUT_METRICS_H_
#define LOCKSTEP_DAEMON_METRICS_ROLLOUT_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "daemon/model/rollout.h"

namespace prometheus {
class Registry;
}

namespace lockstep::daemon {

class RolloutMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  explicit RolloutMetrics(prometheus::Registry* registry);
  ~RolloutMetrics();

  // Every series an environment can have, at 0, before anything happens in
  // it: Prometheus' increase() and rate() see the first rollout, step and
  // backup only against an earlier sample (a series born at 1 shows no
  // increase). Called at start and when the inventory is reloaded.
  void KnowEnvironments(const std::vector<std::string>& environments);
  void RolloutFinished(const Rollout& rollout);
  void StepFinished(const RolloutStep& step, absl::Duration took);
  void BackupTaken(const Backup& backup);
  void Gauges(int active, int awaiting_approval, int awaiting_window);

 private:
  struct Families;
  std::unique_ptr<Families> f_;  // prometheus-cpp's metrics are thread-safe themselves
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_METRICS_ROLLOUT_METRICS_H_
