// Reading a database's Alembic version rows, telling apart every way that
// can go wrong: no version table, unreachable, permission denied, timed out.
//
// A VersionReader is thread-safe: the reconciler calls Read() from many
// threads at once. Every Driver (driver.h) is one, for its dialect.
// Implementations catch their library's exceptions here and never put a
// password into a message.
#ifndef LOCKSTEP_DAEMON_DRIVERS_VERSION_READER_H_
#define LOCKSTEP_DAEMON_DRIVERS_VERSION_READER_H_

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "config/database_url.h"
#include "daemon/schema/schema.h"
#include "config/inventory.h"

namespace lockstep::daemon {

enum class ReadOutcome {
  kOk,                // rows read (possibly none: the table exists but is empty)
  kNoTable,           // the version table does not exist: never migrated
  kUnreachable,       // cannot connect (refused, no such host or file, bad database)
  kPermissionDenied,  // authentication failed, or no SELECT on the table
  kTimedOut,          // connect or statement timeout (e.g. a lock held on the table)
  kError,             // anything else, with the message
};

absl::string_view ReadOutcomeName(ReadOutcome outcome);

struct VersionTarget {
  std::string name;  // "env/db", for messages
  config::DatabaseUrl url;
  config::SecretRef secret;
  std::string version_table = "alembic_version";
  std::string version_table_schema;  // empty: the default schema
  // PostgreSQL: the one schema its schema check reads, as if it were the
  // whole database (tenants as schemas: schema_scope: version_table_schema);
  // empty: every schema of the database.
  std::string schema_scope;
};

struct VersionRead {
  ReadOutcome outcome = ReadOutcome::kError;
  std::vector<std::string> rows;  // sorted
  std::string error;              // empty when kOk
  absl::Duration took;
};

// The read of a database whose password cannot be found (password_env
// unset, password_file unreadable): permission denied, saying why.
inline VersionRead PasswordUnresolved(const absl::Status& why) {
  VersionRead out;
  out.outcome = ReadOutcome::kPermissionDenied;
  out.error = std::string(why.message());
  return out;
}

struct ReaderOptions {
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration statement_timeout = absl::Seconds(5);
  int max_connections_per_server = 8;
  // How long a SQLite backup or restore waits for locks other connections
  // hold (server.lock_wait), then fails.
  absl::Duration lock_wait = absl::Seconds(30);
};

// What `server` sets of them (connect_timeout, statement_timeout,
// max_connections_per_server, lock_wait).
inline ReaderOptions ReaderOptionsFor(const config::ServerConfig& server) {
  return ReaderOptions{server.connect_timeout, server.statement_timeout,
                       server.max_connections_per_server, server.lock_wait};
}

// What a schema check leaves out besides the dialect's own objects.
struct SchemaFilter {
  std::string version_table = "alembic_version";  // "schema.table" outside public
  // PostgreSQL: read only this schema, its objects named as public's are
  // (unqualified); empty: every schema.
  std::string only_schema;
  // project.schema_ignore: shell patterns (fnmatch) of table, index, view,
  // trigger, enum and sequence names a team manages by hand.
  std::vector<std::string> ignore;
  bool Skips(const std::string& name) const;
};

// The filter for `target`: its version table (qualified outside "public")
// and the project's schema_ignore patterns.
SchemaFilter SchemaFilterFor(const VersionTarget& target, const std::vector<std::string>& ignore);

struct SchemaSnapshot {
  Schema schema;
  std::vector<std::string> rows;  // the version rows, sorted; none without a table
  // Who holds lockstep's lock on the database while it was read (a rollout
  // step, a restore: "pid 4242 (lockstepd)"); empty when nobody did. SQLite
  // runs Alembic's DDL outside a transaction, so a schema read while a step
  // migrates may be half done: such a read is no verdict.
  std::string locked_by;
};

// A database a discover rule found (Driver::Discover).
struct Discovered {
  std::string name;  // its name in the environment as found (not yet checked: config::IsValidName)
  std::string file;  // the file behind it (SQLite); empty for a database on a server
  config::DatabaseUrl url;
  config::SecretRef secret;  // how its password is found
};

class VersionReader {
 public:
  virtual ~VersionReader() = default;

  // The databases behind a discover rule, sorted (Drivers: through the
  // rule's dialect). UNIMPLEMENTED for a reader that cannot discover.
  virtual absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) {
    (void)rule;
    return absl::UnimplementedError("this reader does not discover databases");
  }

  // `target`'s schema (daemon/schema/schema.h) and its version rows, read
  // in one snapshot (one read transaction), so that they belong together
  // even while a migration runs: DDL is transactional in SQLite and
  // PostgreSQL, so a snapshot sees a revision's changes together with its
  // version row, or neither. Takes no lock; writes nothing. UNIMPLEMENTED
  // for a dialect that cannot be read yet.
  virtual absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& target,
                                                    const SchemaFilter& filter) {
    (void)target;
    (void)filter;
    return absl::UnimplementedError("reading the schema of this dialect is not supported yet");
  }

  // Reads `target`'s version rows, sorted, with the time it took.
  VersionRead Read(const VersionTarget& target) {
    absl::Time start = absl::Now();
    VersionRead out = ReadRows(target);
    out.took = absl::Now() - start;
    std::sort(out.rows.begin(), out.rows.end());
    return out;
  }

  // Targets whose version tables one connection can read in one round trip
  // (tenants as schemas of one PostgreSQL database) share a non-empty key;
  // the empty key: read alone. The key holds no password.
  virtual std::string BatchKey(const VersionTarget& target) const {
    (void)target;
    return "";
  }

  // Reads `targets` (all with one BatchKey), each exactly as Read() would:
  // the same outcomes, rows and errors. Each read's `took` is the batch's.
  std::vector<VersionRead> ReadBatch(const std::vector<const VersionTarget*>& targets) {
    absl::Time start = absl::Now();
    std::vector<VersionRead> out = ReadRowsBatch(targets);
    const absl::Duration took = absl::Now() - start;
    for (VersionRead& r : out) {
      r.took = took;
      std::sort(r.rows.begin(), r.rows.end());
    }
    return out;
  }

 protected:
  virtual VersionRead ReadRows(const VersionTarget& target) = 0;
  // One read per target unless the dialect can do better.
  virtual std::vector<VersionRead> ReadRowsBatch(const std::vector<const VersionTarget*>& targets) {
    std::vector<VersionRead> out;
    out.reserve(targets.size());
    for (const VersionTarget* t : targets) out.push_back(ReadRows(*t));
    return out;
  }
};

// Reads through the URL's dialect's driver: MakeDrivers (driver.h) as a
// plain VersionReader, for code that only reads. Each dialect's driver
// (postgres_driver.h, sqlite_driver.h) says how it reads.
std::unique_ptr<VersionReader> MakeReader(const ReaderOptions& options);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_DRIVERS_VERSION_READER_H_
