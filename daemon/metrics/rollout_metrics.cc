#include "daemon/metrics/rollout_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace lockstep::daemon {

struct RolloutMetrics::Families {
  explicit Families(prometheus::Registry* r)
      : rollouts(prometheus::BuildCounter()
                     .Name("lockstep_rollouts_total")
                     .Help("Finished rollouts by result (succeeded, failed, halted, aborted)")
                     .Register(*r)),
        steps(prometheus::BuildCounter()
                  .Name("lockstep_rollout_steps_total")
                  .Help("Finished rollout steps (one database each) by result")
                  .Register(*r)),
        step_duration(prometheus::BuildHistogram()
                          .Name("lockstep_rollout_step_duration_seconds")
                          .Help("One step from taking the lock to verifying the rows")
                          .Register(*r)),
        backup_size(prometheus::BuildHistogram()
                        .Name("lockstep_backup_size_bytes")
                        .Help("Size of the backups taken before steps")
                        .Register(*r)),
        backup_duration(prometheus::BuildHistogram()
                            .Name("lockstep_backup_duration_seconds")
                            .Help("Time to take and checksum a backup")
                            .Register(*r)),
        active(prometheus::BuildGauge()
                   .Name("lockstep_rollouts_active")
                   .Help("Rollouts not yet finished")
                   .Register(*r)
                   .Add({})),
        awaiting(prometheus::BuildGauge()
                     .Name("lockstep_rollouts_awaiting_approval")
                     .Help("Rollouts waiting for someone to approve a protected environment")
                     .Register(*r)
                     .Add({})),
        window(prometheus::BuildGauge()
                   .Name("lockstep_rollouts_awaiting_window")
                   .Help("Rollouts waiting for an environment's change window to open")
                   .Register(*r)
                   .Add({})) {}

  prometheus::Family<prometheus::Counter>& rollouts;
  prometheus::Family<prometheus::Counter>& steps;
  prometheus::Family<prometheus::Histogram>& step_duration;
  prometheus::Family<prometheus::Histogram>& backup_size;
  prometheus::Family<prometheus::Histogram>& backup_duration;
  prometheus::Gauge& active;
  prometheus::Gauge& awaiting;
  prometheus::Gauge& window;
};

namespace {

const prometheus::Histogram::BucketBoundaries kStepSeconds = {0.1, 0.25, 0.5, 1,   2.5, 5,
                                                              10,  30,   60,  300, 1800};
const prometheus::Histogram::BucketBoundaries kBackupBytes = {
    1 << 16, 1 << 20, 16 << 20, 256 << 20, 1 << 30, 16.0 * (1 << 30), 256.0 * (1 << 30)};
const prometheus::Histogram::BucketBoundaries kBackupSeconds = {0.01, 0.1, 1, 10, 60, 600, 3600};
constexpr RolloutState kRolloutResults[] = {RolloutState::kSucceeded, RolloutState::kFailed,
                                            RolloutState::kHalted, RolloutState::kAborted};
constexpr StepState kStepResults[] = {StepState::kSucceeded, StepState::kFailed};

}  // namespace

RolloutMetrics::RolloutMetrics(prometheus::Registry* registry)
    : f_(std::make_unique<Families>(registry)) {
  for (RolloutState result : kRolloutResults) {
    f_->rollouts.Add({{"result", std::string(NameOf(result))}});
  }
}
RolloutMetrics::~RolloutMetrics() = default;

void RolloutMetrics::KnowEnvironments(const std::vector<std::string>& environments) {
  // Add() returns the series a label set already has: nothing is reset.
  for (const std::string& env : environments) {
    for (StepState result : kStepResults) {
      f_->steps.Add({{"environment", env}, {"result", std::string(NameOf(result))}});
    }
    f_->step_duration.Add({{"environment", env}}, kStepSeconds);
    f_->backup_size.Add({{"environment", env}}, kBackupBytes);
    f_->backup_duration.Add({{"environment", env}}, kBackupSeconds);
  }
}

void RolloutMetrics::RolloutFinished(const Rollout& rollout) {
  f_->rollouts.Add({{"result", std::string(NameOf(rollout.state))}}).Increment();
}

void RolloutMetrics::StepFinished(const RolloutStep& step, absl::Duration took) {
  f_->steps.Add({{"environment", step.environment}, {"result", std::string(NameOf(step.state))}})
      .Increment();
  f_->step_duration.Add({{"environment", step.environment}}, kStepSeconds)
      .Observe(absl::ToDoubleSeconds(took));
}

void RolloutMetrics::BackupTaken(const Backup& backup) {
  f_->backup_size.Add({{"environment", backup.environment}}, kBackupBytes)
      .Observe(static_cast<double>(backup.size_bytes));
  f_->backup_duration.Add({{"environment", backup.environment}}, kBackupSeconds)
      .Observe(absl::ToDoubleSeconds(backup.took));
}

void RolloutMetrics::Gauges(int active, int awaiting_approval, int awaiting_window) {
  f_->active.Set(active);
  f_->awaiting.Set(awaiting_approval);
  f_->window.Set(awaiting_window);
}

}  // namespace lockstep::daemon
