// What went wrong, in one line, from the output of a failed Alembic run.
//
// A failed `alembic upgrade` ends in a Python traceback, SQLAlchemy's
// "(Background on this error ...)" footer, or Alembic's own "FAILED: ..."
// line. A person looking at a failed step needs the line that names the
// cause, not the exit code:
//
//   ErrorLine(output) == "sqlite3.OperationalError: unable to open database file"
//   ErrorLine(output) == "psycopg2.errors.UndefinedTable: relation \"invoices\" does not exist"
//   ErrorLine(output) == "KeyError: 'deadbeef0000'"
//   ErrorLine(output) == "Can't locate revision identified by 'deadbeef0000'"   // from FAILED:
#ifndef LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_OUTPUT_H_
#define LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_OUTPUT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "daemon/process/process.h"
#include "migrations/revision_graph.h"

namespace lockstep::daemon {

// The last meaningful error line of `output` (at most ~300 characters), or
// "" when the output has none. SQLAlchemy's wrapper
// "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) msg" is
// shortened to the driver's "sqlite3.OperationalError: msg".
std::string ErrorLine(absl::string_view output);

// How an Alembic run failed, with the line of its output that says why:
// "exit 1: sqlite3.OperationalError: unable to open database file".
std::string AlembicFailure(const ProcessResult& run);

// The revisions `alembic current` printed ("3f2a1b9c0d11 (head)", a line
// each), sorted. Its log lines, and anything env.py prints, are not
// revision ids of `graph`, so they are not taken for one.
std::vector<std::string> CurrentRevisions(absl::string_view output,
                                          const migrations::RevisionGraph& graph);

// "[a, b]", or "[] (no version rows)".
std::string RowsText(const std::vector<std::string>& rows);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_OUTPUT_H_
