#include "daemon/rollout/shadow_schema.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/process/process.h"
#include "daemon/rollout/alembic_entry.h"
#include "daemon/rollout/alembic_output.h"

namespace lockstep::daemon {

absl::StatusOr<Schema> ShadowSchemas::Build(const config::Inventory& inv, config::Dialect dialect,
                                            const std::vector<std::string>& revisions,
                                            const SchemaFilter& filter) const {
  if (revisions.empty()) return Schema{};  // what Alembic builds for no revision: nothing
  Driver& driver = drivers_->For(dialect);
  absl::StatusOr<config::DatabaseUrl> scratch = driver.CreateScratch(inv.project);
  if (!scratch.ok()) return scratch.status();
  absl::Cleanup drop = [&] { (void)driver.DropScratch(inv.project, *scratch); };

  VersionTarget target;
  target.name = "shadow";
  target.url = *scratch;
  target.version_table = inv.project.version_table;
  target.version_table_schema = inv.project.version_table_schema;
  absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
      driver.Lock(target, *scratch, inv.server.connect_timeout, IfMissing::kCreate);
  if (!lock.ok()) return lock.status();
  for (const std::string& revision : revisions) {
    ProcessSpec spec = AlembicSpec(inv, driver, *scratch, "the shadow database", (*lock)->Witness(),
                                   "upgrade", revision);
    ProcessResult run = RunProcess(spec, nullptr, nullptr, [](const std::string&) {});
    if (!run.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("Alembic could not build ", absl::StrJoin(revisions, ", "), " on an empty ",
                       config::DialectName(dialect), " database: `upgrade ", revision, "` ",
                       AlembicFailure(run)));
    }
  }
  // A tenant's schema (a scoped read) is compared with what Alembic built
  // in the scratch database's default schema, named the same way (bare).
  SchemaFilter own = filter;
  if (!own.only_schema.empty()) {
    own.only_schema = "public";
    own.version_table = inv.project.version_table;
  }
  absl::StatusOr<SchemaSnapshot> read = driver.ReadSchema(target, own);
  if (!read.ok()) return read.status();
  if (read->rows != revisions) {
    return absl::FailedPreconditionError(
        absl::StrCat("Alembic left ", RowsText(read->rows), " on the shadow database, not ",
                     RowsText(revisions)));
  }
  return read->schema;
}

}  // namespace lockstep::daemon
