// What the rollout engine's two translation units share (engine.cc: the
// API, control and persistence; engine_run.cc: running stages, waves,
// steps and gates). Not for use outside daemon/rollout/engine*.cc.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_ENGINE_INTERNAL_H_
#define LOCKSTEP_DAEMON_ROLLOUT_ENGINE_INTERNAL_H_

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "daemon/rollout/engine.h"

namespace lockstep::daemon {
namespace engine_internal {

inline size_t StepsIn(const Rollout& r, const std::string& environment) {
  return static_cast<size_t>(
      std::count_if(r.steps.begin(), r.steps.end(),
                    [&](const RolloutStep& s) { return s.environment == environment; }));
}

inline std::string Plural(size_t n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

// What a rollout waiting at `environment`'s approval gate says.
inline std::string ApprovalReason(const std::string& environment, const std::string& id) {
  return absl::StrCat(environment, " waits for approval: lockstep approve ", id);
}

inline std::string When(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

}  // namespace engine_internal

struct RolloutEngine::Active {
  Rollout r;  // guarded by the engine's mu_
  bool paused = false;
  bool aborted = false;
  bool halted = false;
  std::string stop_reason;               // why pending steps are skipped
  std::atomic<bool> cancel{false};       // stops running Alembic processes (abort, Stop)
  std::set<size_t> canary_gates_passed;  // stages whose canary gate is behind them
  // The approval gate the runner waits at now, if any: an approval applies
  // to it alone (never to a gate ahead), so a second `approve` cannot vouch
  // for canaries that have not run yet.
  enum class Gate { kNone, kStage, kCanaries };
  Gate waiting = Gate::kNone;
  size_t waiting_stage = 0;
  // Finished while the state store refused writes: kept among the active
  // ones (its environments stay busy) until CheckStore records its end.
  bool unrecorded = false;
};

struct RolloutEngine::GateWait {
  StageState stage_state;                              // kSoaking or kAwaitingApproval
  RolloutState rollout_state;                          // the same, for the rollout (unless paused)
  EventKind event;                                     // soaking, canary_soaking, awaiting_approval
  std::string reason;                                  // the rollout's reason while it waits
  absl::Time until = absl::InfiniteFuture();           // a soak's end
  std::function<bool()> ready = [] { return false; };  // an approval given
  Active::Gate approval = Active::Gate::kNone;         // what Approve() approves
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_ENGINE_INTERNAL_H_
