#include "daemon/rollout/alembic_entry.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/rollout/alembic_output.h"
#include "migrations/python_launcher.h"

namespace lockstep::daemon {

const char kAlembicEntry[] = R"py(# lockstep's Alembic entry point (daemon/rollout/alembic_entry.h)
import os as _lockstep_os
import sys as _lockstep_sys


def _lockstep_refuse(message):
    _lockstep_sys.stderr.write("lockstep: %s\n" % message)
    _lockstep_sys.stderr.flush()
    raise SystemExit(1)


def _lockstep_check(ctx):
    """Stops unless env.py's connection reaches the database lockstep locked."""
    env = _lockstep_os.environ
    want_file = env.get("LOCKSTEP_TARGET_FILE")
    want_pid = env.get("LOCKSTEP_TARGET_LOCK_PID")
    conn = getattr(ctx, "connection", None)
    if conn is None or not (want_file or want_pid):
        return  # offline (--sql) mode, or nothing to prove against
    url = conn.engine.url
    backend = url.get_backend_name()
    ok, why = False, ""
    if want_file:
        path = url.database if backend == "sqlite" else None
        if path and path != ":memory:":
            try:
                st = _lockstep_os.stat(path)
                ok = "%d:%d" % (st.st_dev, st.st_ino) == want_file
            except OSError as e:
                why = " (%s)" % e.strerror
    elif backend == "postgresql":
        began = not conn.in_transaction()
        try:
            held = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = %d AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())" % int(want_pid)).scalar()
            ok = held > 0
        except Exception as e:
            why = " (%s)" % str(e).splitlines()[0] if str(e) else ""
        if began and conn.in_transaction():
            conn.rollback()
    elif backend in ("mysql", "mariadb"):
        # lockstep's GET_LOCK is held by session LOCK_PID under a name made
        # from the database (mysql_driver.h: MysqlLockName): the same
        # server, the same session's lock, and this database's name.
        began = not conn.in_transaction()
        try:
            holder, db = conn.exec_driver_sql(
                "SELECT IS_USED_LOCK(%s), DATABASE()",
                (env.get("LOCKSTEP_TARGET_LOCK_NAME", ""),)).one()
            name = "lockstep:%s" % (db or "")
            if len(name.encode()) > 64:
                import hashlib
                name = "lockstep:" + hashlib.sha256((db or "").encode()).hexdigest()[:55]
            ok = holder is not None and int(holder) == int(want_pid) and \
                name == env.get("LOCKSTEP_TARGET_LOCK_NAME")
        except Exception as e:
            why = " (%s)" % str(e).splitlines()[0] if str(e) else ""
        if began and conn.in_transaction():
            conn.rollback()
    if not ok:
        _lockstep_refuse(
            "env.py connected to %s%s, which is not %s, the database this step is for; "
            "nothing was run. lockstep sets sqlalchemy.url (and passes -x url and "
            "DATABASE_URL); see docs/rollouts.md, 'Your env.py'."
            % (repr(url), why, env.get("LOCKSTEP_TARGET", "the target")))


def lockstep_alembic(argv, cli=None):
    import alembic.config
    from alembic.runtime import migration
    if cli is None:
        cli = alembic.config.CommandLine(prog="alembic")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = alembic.config.Config(file_=options.config, ini_section=options.name,
                                cmd_opts=options)
    url = _lockstep_os.environ.get("LOCKSTEP_SQLALCHEMY_URL")
    if url:
        # configparser interpolates %; Alembic's docs say to double it.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cls = migration.MigrationContext
    original = cls.__dict__["configure"]

    def configure(klass, *args, **kwargs):
        ctx = original.__func__(klass, *args, **kwargs)
        _lockstep_check(ctx)
        return ctx

    cls.configure = classmethod(configure)
    try:
        cli.run_cmd(cfg, options)
    finally:
        cls.configure = original


if __name__ == "__main__" and "_LOCKSTEP_WORKER" not in globals():
    _lockstep_sys.argv[0] = "alembic"
    lockstep_alembic(_lockstep_sys.argv[1:])
)py";

namespace {

constexpr absl::Duration kCurrentTimeout = absl::Minutes(2);

}  // namespace

// The Alembic command line for one database, through lockstep's entry point
// when alembic_command is Alembic's own launcher (alembic_entry.h); the
// password stays out of it. With `with_command` false, only Alembic's own
// arguments (warm runner). `witness` proves the database to the entry point.
ProcessSpec AlembicSpec(const config::Inventory& inv, const Driver& driver,
                        const config::DatabaseUrl& url, const std::string& name,
                        const std::vector<std::string>& witness, const std::string& command,
                        const std::string& target, bool with_command) {
  ProcessSpec spec;
  if (with_command) {
    spec.argv = EntryInterpreter(inv.project);
    if (spec.argv.empty()) {
      spec.argv = inv.project.alembic_command;
    } else {
      spec.argv.insert(spec.argv.end(), {"-c", kAlembicEntry});
    }
  }
  spec.argv.insert(spec.argv.end(), {"-c", inv.project.alembic_ini});
  if (inv.project.ini_section != "alembic") {
    spec.argv.insert(spec.argv.end(), {"-n", inv.project.ini_section});
  }
  const config::DatabaseUrl without_password = driver.ChildUrl(url);
  spec.argv.insert(spec.argv.end(), {"-x", "url=" + without_password.ToSqlAlchemy(), command});
  if (!target.empty()) spec.argv.push_back(target);
  // A stamp replaces whatever rows are there (orphaned ones included, which
  // Alembic could not otherwise walk from): the rows become exactly `target`.
  if (command == "stamp") spec.argv.push_back("--purge");
  spec.env = driver.ChildEnvironment(url);
  spec.env.push_back("DATABASE_URL=" + url.ToSqlAlchemy());
  spec.env.push_back("LOCKSTEP_SQLALCHEMY_URL=" + without_password.ToSqlAlchemy());
  spec.env.push_back("LOCKSTEP_TARGET=" + name);
  spec.env.insert(spec.env.end(), witness.begin(), witness.end());
  spec.cwd = inv.project.working_dir;
  // `current` (the env.py check) reads one row: an env.py that hangs on it
  // (a host that does not answer) must not hold steps up for a whole step_timeout.
  spec.timeout = command == "current" ? std::min(inv.project.step_timeout, kCurrentTimeout)
                                      : inv.project.step_timeout;
  return spec;
}

absl::StatusOr<std::string> CheckCurrent(const ProcessResult& run, const std::string& name,
                                         std::vector<std::string> rows,
                                         const migrations::RevisionGraph& graph) {
  if (!run.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Alembic's `current`, run to check that env.py reaches ", name,
        ", failed (nothing was run): ", AlembicFailure(run)));
  }
  std::sort(rows.begin(), rows.end());
  std::vector<std::string> reported = CurrentRevisions(run.output, graph);
  if (reported != rows) {
    return absl::FailedPreconditionError(
        absl::StrCat("env.py connects to another database than ", name,
                     " (Alembic's `current` reports ", RowsText(reported), ", the database holds ",
                     RowsText(rows), "); nothing was run; see docs/rollouts.md, 'Your env.py'"));
  }
  return absl::StrCat("Alembic's `current` through this runner reports ", RowsText(reported),
                      ", what ", name, " holds");
}

bool CheckEnvPy(const config::Inventory& inv, const migrations::RevisionGraph& graph,
                std::ostream& out) {
  std::unique_ptr<Drivers> drivers = MakeDrivers(ReaderOptionsFor(inv.server));
  std::set<config::Dialect> checked;
  bool ok = true;
  for (const config::EnvironmentConfig& env : inv.environments) {
    for (const config::DatabaseConfig& db : env.databases) {
      if (!checked.insert(db.url.dialect).second) continue;
      VersionTarget target{absl::StrCat(env.name, "/", db.name),
                           db.url,
                           db.secret,
                           db.version_table,
                           db.version_table_schema,
                           /*schema_scope=*/""};
      auto skip = [&](absl::string_view why) {
        out << "  env.py not checked on " << target.name << ": " << why << "\n";
      };
      absl::StatusOr<config::DatabaseUrl> url = ConnectUrl(target);
      if (!url.ok()) {
        skip(url.status().message());
        continue;
      }
      Driver& driver = drivers->For(*url);
      absl::StatusOr<std::unique_ptr<DatabaseLock>> lock =
          driver.Lock(target, *url, inv.server.connect_timeout, IfMissing::kRefuse);
      if (!lock.ok()) {
        skip(lock.status().message());
        continue;
      }
      VersionRead read = driver.Read(target);
      if (read.outcome != ReadOutcome::kOk && read.outcome != ReadOutcome::kNoTable) {
        skip(absl::StrCat("cannot read its version rows: ", read.error));
        continue;
      }
      ProcessResult run = RunProcess(
          AlembicSpec(inv, driver, *url, target.name, (*lock)->Witness(), "current", ""),
          nullptr, nullptr, [](const std::string&) {});
      absl::StatusOr<std::string> verdict = CheckCurrent(run, target.name, read.rows, graph);
      if (verdict.ok()) {
        out << "  env.py reaches " << target.name << ": " << *verdict << "\n";
      } else {
        out << "  env.py: " << verdict.status().message() << "\n";
        ok = false;
      }
    }
  }
  return ok;
}

std::vector<std::string> EntryInterpreter(const config::ProjectConfig& project) {
  return migrations::CommandInterpreter(project.alembic_command, project.working_dir);
}

std::vector<std::string> WarmInterpreter(const config::ProjectConfig& project) {
  if (!project.python.empty()) return {project.python};
  std::vector<std::string> found = EntryInterpreter(project);
  return found.empty() ? std::vector<std::string>{"python3"} : found;
}

}  // namespace lockstep::daemon
