// Where a database stands against the revision graph, from its version rows
// alone: at the heads (or a given target), behind with the revisions still to
// run, ahead of the target, orphaned (a row no script defines) or
// uninitialized (no rows).
#ifndef LOCKSTEP_MIGRATIONS_CLASSIFY_H_
#define LOCKSTEP_MIGRATIONS_CLASSIFY_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "migrations/resolver.h"

namespace lockstep::migrations {

enum class RevisionState { kCurrent, kBehind, kAhead, kDiverged, kOrphaned, kUninitialized };

absl::string_view RevisionStateName(RevisionState state);

struct Classification {
  RevisionState state = RevisionState::kUninitialized;
  std::vector<std::string> pending;     // revisions `upgrade target` would run, in order
  std::vector<std::string> orphaned;    // rows no script defines
  std::vector<std::string> beyond;      // applied revisions the target does not include
  std::string reason;                   // one sentence a person can act on
};

// Classifies `rows` against `target` (an identifier, usually "heads").
// Uninitialized: no rows (pending = the full path). Orphaned: any row the
// graph does not define. Ahead: every row is at or past the target but some
// applied revision is not part of it. Diverged: both pending revisions and
// revisions beyond the target. Behind: pending revisions only.
Classification ClassifyRows(const Resolver& resolver, const std::vector<std::string>& rows,
                            absl::string_view target = "heads");

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_CLASSIFY_H_
