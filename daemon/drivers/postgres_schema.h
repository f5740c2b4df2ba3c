// Reads a PostgreSQL database's schema into lockstep's canonical model
// (daemon/schema/schema.h) from the system catalogs, in one transaction:
// every schema but the system ones (pg_catalog, information_schema,
// pg_toast, temporary ones); objects an extension owns are left out, and so
// are the version table and whatever `filter` ignores. Names in the public
// schema stay bare ("users"); others are qualified ("audit.events").
// Constraint-backed indexes are their constraints; types are PostgreSQL's
// own (format_type), shortened where SQL has a common name
// ("character varying(20)" -> VARCHAR(20)).
#ifndef LOCKSTEP_DAEMON_DRIVERS_POSTGRES_SCHEMA_H_
#define LOCKSTEP_DAEMON_DRIVERS_POSTGRES_SCHEMA_H_

#include <string>

#include <pqxx/pqxx>

#include "daemon/drivers/driver.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

// Throws pqxx's exceptions; the driver turns them into a Status.
Schema ReadPostgresSchema(pqxx::transaction_base& tx, const SchemaFilter& filter);

// format_type()'s text in lockstep's form: "character varying(20)" ->
// "VARCHAR(20)", "timestamp with time zone" -> "TIMESTAMPTZ".
std::string PostgresType(const std::string& format_type);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_POSTGRES_SCHEMA_H_
