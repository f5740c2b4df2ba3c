// How lockstep starts Alembic so that any env.py migrates the database the
// step is for, and nothing else.
//
// Alembic's generated env.py reads its database from
// `config.get_main_option("sqlalchemy.url")`, which comes from alembic.ini;
// it ignores `-x url=...` and DATABASE_URL. So lockstep does not run the
// `alembic` command line as it is: it runs Alembic's own command line through
// a small Python entry point (kAlembicEntry) that builds Alembic's Config as
// `alembic` does, sets `sqlalchemy.url` on it to the step's database, and
// calls the command. `-x url` and DATABASE_URL are still passed, for env.py
// files that read those.
//
// The entry point also proves it: when env.py configures its migration
// context, the connection it made must reach the database lockstep locked
// for the step (SQLite: the same file, by device and inode; PostgreSQL: the
// database where lockstep's lock session holds its advisory lock). If not,
// it stops before any migration runs, exit 1, saying which database env.py
// connected to. An env.py that builds its own URL from elsewhere is caught
// here rather than migrating another database.
//
// The entry point needs the Python that runs the project's Alembic:
// EntryInterpreter finds it from `project.alembic_command`. A command that is
// not Alembic's own launcher (a wrapper script, `poetry run alembic`) is run
// as it is, without the entry point.
#ifndef LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_ENTRY_H_
#define LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_ENTRY_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "config/inventory.h"
#include "daemon/drivers/driver.h"
#include "daemon/process/process.h"
#include "migrations/revision_graph.h"

namespace lockstep::daemon {

// Python source. Run as `python -c kAlembicEntry ARGS...` it is Alembic's
// command line; with `_LOCKSTEP_WORKER = True` defined before it (the warm
// runner), it only defines `lockstep_alembic(argv, cli=None)`.
//
// It reads from the environment: LOCKSTEP_SQLALCHEMY_URL (set as
// sqlalchemy.url), LOCKSTEP_TARGET (the database's name, for messages),
// and what proves the connection: LOCKSTEP_TARGET_FILE ("DEV:INODE" of a
// SQLite file) or LOCKSTEP_TARGET_LOCK_PID (the PostgreSQL backend holding
// lockstep's advisory lock; on MySQL, the session holding the GET_LOCK
// named LOCKSTEP_TARGET_LOCK_NAME).
extern const char kAlembicEntry[];

// The interpreter (and its arguments) that runs the project's Alembic, or
// empty when project.alembic_command is not recognizably Alembic's own
// launcher. Recognized: `[PYTHON, -m, alembic]`, and a single command
// (searched on PATH, or relative to the project's working_dir) whose file is
// a Python script that loads Alembic's console entry point (what pip and
// Debian install as `alembic`): its `#!` line is the interpreter.
std::vector<std::string> EntryInterpreter(const config::ProjectConfig& project);

// The interpreter of the warm runner: project.python when set, else the one
// EntryInterpreter finds, else `python3`.
std::vector<std::string> WarmInterpreter(const config::ProjectConfig& project);

// The Alembic command line for one database, through lockstep's entry point
// when alembic_command is Alembic's own launcher (alembic_entry.h); the
// password stays out of it. With `with_command` false, only Alembic's own
// arguments (warm runner). `witness` proves the database to the entry point.
ProcessSpec AlembicSpec(const config::Inventory& inv, const Driver& driver,
                        const config::DatabaseUrl& url, const std::string& name,
                        const std::vector<std::string>& witness, const std::string& command,
                        const std::string& target, bool with_command = true);

// Checks a run of Alembic's `current` on the database `name` against the
// version rows lockstep read from it: the message to record ("Alembic's
// `current` through this runner reports [..], what prod/t1 holds"), or
// FAILED_PRECONDITION: the run failed, or env.py connects to another
// database ("... (Alembic's `current` reports X, the database holds Y);
// nothing was run; see docs/rollouts.md, 'Your env.py'").
absl::StatusOr<std::string> CheckCurrent(const ProcessResult& run, const std::string& name,
                                         std::vector<std::string> rows,
                                         const migrations::RevisionGraph& graph);

// lockstepd --check-config: the check a rollout makes before its first step
// (CheckCurrent on a `current` run, process runner), on the first listed
// database of each dialect, each locked for the while. Writes a line per
// database to `out` ("env.py reaches dev/app: ..."; "env.py not checked on
// prod/t1: it is locked by ..." when it cannot be read or locked). False
// when env.py reaches another database or `current` fails.
bool CheckEnvPy(const config::Inventory& inv, const migrations::RevisionGraph& graph,
                std::ostream& out);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_ROLLOUT_ALEMBIC_ENTRY_H_
