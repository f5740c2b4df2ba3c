// What `alembic upgrade X` / `alembic downgrade X` would do to a database
// holding a given set of version rows: the revisions run, in Alembic's order,
// and each step's change to the version table.
//
// Row changes follow Alembic's HeadMaintainer: a step whose parents are not
// present INSERTs, a merge DELETEs all but one present parent and UPDATEs the
// last, a plain step UPDATEs; downgrades mirror that. Where Alembic 1.8.1
// would crash (deleting a row it does not hold, a KeyError in
// `_delete_version`), the plan only touches rows that are present.
#ifndef LOCKSTEP_MIGRATIONS_MIGRATION_PLAN_H_
#define LOCKSTEP_MIGRATIONS_MIGRATION_PLAN_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "migrations/resolver.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {

struct VersionChange {
  enum class Kind { kInsert, kDelete, kUpdate };
  Kind kind;
  std::string from;  // kDelete, kUpdate
  std::string to;    // kInsert, kUpdate

  std::string ToSql(absl::string_view table = "alembic_version") const;
  bool operator==(const VersionChange&) const = default;
};

struct MigrationStep {
  int revision = -1;
  bool upgrade = true;
  std::vector<VersionChange> changes;
  std::vector<std::string> rows_after;  // sorted
};

// The steps `alembic upgrade destination` runs on a database holding `rows`.
absl::StatusOr<std::vector<MigrationStep>> PlanUpgrade(const Resolver& resolver,
                                                       const std::vector<std::string>& rows,
                                                       absl::string_view destination);
// The steps `alembic downgrade destination` runs.
absl::StatusOr<std::vector<MigrationStep>> PlanDowngrade(const Resolver& resolver,
                                                         const std::vector<std::string>& rows,
                                                         absl::string_view destination);

// How Alembic's upgrade/downgrade commands word a planning error.
CommandErrorContext UpgradeErrorContext(absl::string_view destination);
CommandErrorContext DowngradeErrorContext(absl::string_view destination);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_MIGRATION_PLAN_H_
