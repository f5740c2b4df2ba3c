// Expected schemas: what the project's own Alembic builds for a revision
// set, on an empty "shadow" database of the dialect, read as every fleet
// database is read (Driver::ReadSchema).
//
// SQLite: a file in a fresh temporary folder. PostgreSQL: a scratch
// database lockstepd creates on the server `project.shadow_postgresql` names
// and drops afterwards. Alembic runs through lockstep's entry point, as a
// rollout step does (alembic_entry.h), locked the same way, so an env.py
// that connects elsewhere is stopped rather than migrating another
// database. Upgrades go revision by revision of the set (`upgrade r1`, then
// `upgrade r2`, ...), and the version rows Alembic leaves must be exactly
// the set.
//
// Example:
//   ShadowSchemas shadow(drivers.get());
//   absl::StatusOr<Schema> s = shadow.Build(inv, config::Dialect::kSqlite, {"e9a8c6b4d244"}, {});
#ifndef LOCKSTEP_DAEMON_ROLLOUT_SHADOW_SCHEMA_H_
#define LOCKSTEP_DAEMON_ROLLOUT_SHADOW_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/inventory.h"
#include "daemon/drivers/driver.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

class ShadowSchemas {
 public:
  explicit ShadowSchemas(Drivers* drivers) : drivers_(drivers) {}

  // The schema of an empty `dialect` database that Alembic upgraded to
  // exactly `revisions` (none: an empty database). FAILED_PRECONDITION, in
  // words, when it cannot be built: no shadow server for the dialect, or
  // Alembic failed (a migration that needs data or an extension).
  absl::StatusOr<Schema> Build(const config::Inventory& inv, config::Dialect dialect,
                               const std::vector<std::string>& revisions,
                               const SchemaFilter& filter) const;

 private:
  Drivers* drivers_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_SHADOW_SCHEMA_H_
