// The states and kinds the daemon reasons about, as enums, each with one
// name table: the names are the stable strings the state store keeps and
// the API, the JSON output and the CLI show (docs/reference.md "States", docs/rollouts.md).
// Code compares enums; only the edges (store, API, logs, metrics labels)
// turn them into names, with NameOf, or back, with ParseName.
//
//   DatabaseState  current, behind, ahead, diverged, orphaned,
//                  uninitialized, version_rows_lost, unreachable
//   SchemaState    unknown, match, drift
//   RolloutState   planned, running, paused, awaiting_approval, soaking,
//                  succeeded, failed, halted, aborted
//   StageState     pending, soaking, awaiting_approval, running, succeeded,
//                  failed, halted, skipped, aborted
//   StepState      pending, running, succeeded, failed, skipped
//   StepPhase      "" (none), lock, backup, alembic, verify, rollback
//   FailurePolicy  restore, downgrade, leave (config::FailurePolicy)
//   EventKind      rollout_started, stage_started, step_started, output,
//                  verified, step_failed, ... (docs/rollouts.md)
//
// Example:
//   if (step.state == StepState::kFailed) ...
//   row.state = std::string(NameOf(step.state));
//   std::optional<StepState> s = ParseName<StepState>("failed");
#ifndef LOCKSTEP_DAEMON_MODEL_STATES_H_
#define LOCKSTEP_DAEMON_MODEL_STATES_H_

#include <optional>
#include <utility>

#include "absl/strings/string_view.h"
#include "config/inventory.h"  // FailurePolicy

namespace lockstep::daemon {

enum class DatabaseState {
  kCurrent,
  kBehind,
  kAhead,
  kDiverged,
  kOrphaned,
  kUninitialized,
  kVersionRowsLost,
  kUnreachable,
};

enum class SchemaState { kUnknown, kMatch, kDrift };

enum class RolloutState {
  kPlanned,
  kRunning,
  kPaused,
  kAwaitingApproval,
  kSoaking,
  kAwaitingWindow,  // outside its environment's change windows
  kSucceeded,
  kFailed,
  kHalted,
  kAborted,
};

enum class StageState {
  kPending,
  kSoaking,
  kAwaitingApproval,
  kAwaitingWindow,
  kRunning,
  kSucceeded,
  kFailed,
  kHalted,
  kSkipped,
  kAborted,
};

enum class StepState { kPending, kRunning, kSucceeded, kFailed, kSkipped };

// A running step's phase, as stored and shown; kNone when it is not running.
enum class StepPhase { kNone, kLock, kBackup, kAlembic, kVerify, kRollback };

// What a rollout event says happened (RolloutEvent::kind).
enum class EventKind {
  kRolloutStarted,
  kOverridePromotion,
  kOverrideLint,
  kOverrideDrift,
  kOverrideSchemaCheck,
  kStageStarted,
  kSoaking,
  kCanarySoaking,
  kCanarySoaked,
  kAwaitingApproval,
  kApproved,
  kAwaitingWindow,
  kWindowOpened,
  kOverrideWindow,
  kStepStarted,
  kEnvPyChecked,
  kBackupTaken,
  kBackupFailed,
  kReplanned,
  kStartupSlot,
  kOutput,
  kVerified,
  kSchemaVerified,
  kSchemaNotVerified,
  kSchemaDrift,
  kStepFailed,
  kRolledBack,
  kStepSkipped,
  kHalted,
  kPaused,
  kResumed,
  kAborted,
  kRecovered,
  kStageFinished,
  kRolloutFinished,
};

using config::FailurePolicy;

// One table per enum: every value once, with its name.
template <typename E>
struct NameTable;

template <>
struct NameTable<DatabaseState> {
  static constexpr std::pair<DatabaseState, absl::string_view> kNames[] = {
      {DatabaseState::kCurrent, "current"},
      {DatabaseState::kBehind, "behind"},
      {DatabaseState::kAhead, "ahead"},
      {DatabaseState::kDiverged, "diverged"},
      {DatabaseState::kOrphaned, "orphaned"},
      {DatabaseState::kUninitialized, "uninitialized"},
      {DatabaseState::kVersionRowsLost, "version_rows_lost"},
      {DatabaseState::kUnreachable, "unreachable"},
  };
};

template <>
struct NameTable<SchemaState> {
  static constexpr std::pair<SchemaState, absl::string_view> kNames[] = {
      {SchemaState::kUnknown, "unknown"},
      {SchemaState::kMatch, "match"},
      {SchemaState::kDrift, "drift"},
  };
};

template <>
struct NameTable<RolloutState> {
  static constexpr std::pair<RolloutState, absl::string_view> kNames[] = {
      {RolloutState::kPlanned, "planned"},
      {RolloutState::kRunning, "running"},
      {RolloutState::kPaused, "paused"},
      {RolloutState::kAwaitingApproval, "awaiting_approval"},
      {RolloutState::kSoaking, "soaking"},
      {RolloutState::kAwaitingWindow, "awaiting_window"},
      {RolloutState::kSucceeded, "succeeded"},
      {RolloutState::kFailed, "failed"},
      {RolloutState::kHalted, "halted"},
      {RolloutState::kAborted, "aborted"},
  };
};

template <>
struct NameTable<StageState> {
  static constexpr std::pair<StageState, absl::string_view> kNames[] = {
      {StageState::kPending, "pending"},
      {StageState::kSoaking, "soaking"},
      {StageState::kAwaitingWindow, "awaiting_window"},
      {StageState::kAwaitingApproval, "awaiting_approval"},
      {StageState::kRunning, "running"},
      {StageState::kSucceeded, "succeeded"},
      {StageState::kFailed, "failed"},
      {StageState::kHalted, "halted"},
      {StageState::kSkipped, "skipped"},
      {StageState::kAborted, "aborted"},
  };
};

template <>
struct NameTable<StepState> {
  static constexpr std::pair<StepState, absl::string_view> kNames[] = {
      {StepState::kPending, "pending"},     {StepState::kRunning, "running"},
      {StepState::kSucceeded, "succeeded"}, {StepState::kFailed, "failed"},
      {StepState::kSkipped, "skipped"},
  };
};

template <>
struct NameTable<StepPhase> {
  static constexpr std::pair<StepPhase, absl::string_view> kNames[] = {
      {StepPhase::kNone, ""},         {StepPhase::kLock, "lock"},
      {StepPhase::kBackup, "backup"}, {StepPhase::kAlembic, "alembic"},
      {StepPhase::kVerify, "verify"}, {StepPhase::kRollback, "rollback"},
  };
};

template <>
struct NameTable<FailurePolicy> {
  static constexpr std::pair<FailurePolicy, absl::string_view> kNames[] = {
      {FailurePolicy::kRestore, "restore"},
      {FailurePolicy::kDowngrade, "downgrade"},
      {FailurePolicy::kLeave, "leave"},
  };
};

template <>
struct NameTable<EventKind> {
  static constexpr std::pair<EventKind, absl::string_view> kNames[] = {
      {EventKind::kRolloutStarted, "rollout_started"},
      {EventKind::kOverridePromotion, "override_promotion"},
      {EventKind::kOverrideLint, "override_lint"},
      {EventKind::kOverrideDrift, "override_drift"},
      {EventKind::kOverrideSchemaCheck, "override_schema_check"},
      {EventKind::kStageStarted, "stage_started"},
      {EventKind::kSoaking, "soaking"},
      {EventKind::kCanarySoaking, "canary_soaking"},
      {EventKind::kCanarySoaked, "canary_soaked"},
      {EventKind::kAwaitingApproval, "awaiting_approval"},
      {EventKind::kAwaitingWindow, "awaiting_window"},
      {EventKind::kWindowOpened, "window_opened"},
      {EventKind::kOverrideWindow, "override_window"},
      {EventKind::kApproved, "approved"},
      {EventKind::kStepStarted, "step_started"},
      {EventKind::kEnvPyChecked, "env_py_checked"},
      {EventKind::kBackupTaken, "backup_taken"},
      {EventKind::kBackupFailed, "backup_failed"},
      {EventKind::kReplanned, "replanned"},
      {EventKind::kStartupSlot, "startup_slot"},
      {EventKind::kOutput, "output"},
      {EventKind::kVerified, "verified"},
      {EventKind::kSchemaVerified, "schema_verified"},
      {EventKind::kSchemaNotVerified, "schema_not_verified"},
      {EventKind::kSchemaDrift, "schema_drift"},
      {EventKind::kStepFailed, "step_failed"},
      {EventKind::kRolledBack, "rolled_back"},
      {EventKind::kStepSkipped, "step_skipped"},
      {EventKind::kHalted, "halted"},
      {EventKind::kPaused, "paused"},
      {EventKind::kResumed, "resumed"},
      {EventKind::kAborted, "aborted"},
      {EventKind::kRecovered, "recovered"},
      {EventKind::kStageFinished, "stage_finished"},
      {EventKind::kRolloutFinished, "rollout_finished"},
  };
};

// The stable name of `value`.
template <typename E>
constexpr absl::string_view NameOf(E value) {
  for (const auto& [v, name] : NameTable<E>::kNames) {
    if (v == value) return name;
  }
  return "?";  // unreachable: every value is in its table (tested)
}

// The value `name` names; nullopt for a name the table does not have.
template <typename E>
constexpr std::optional<E> ParseName(absl::string_view name) {
  for (const auto& [v, n] : NameTable<E>::kNames) {
    if (n == name) return v;
  }
  return std::nullopt;
}

// All values of E, in table order (for metrics that export one series
// per state, and for tests).
template <typename E>
constexpr const auto& AllOf() {
  return NameTable<E>::kNames;
}

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_MODEL_STATES_H_
