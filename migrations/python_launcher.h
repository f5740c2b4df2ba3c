// Which Python runs a project's Alembic: the `#!` line of the `alembic`
// launcher script that pip or Debian installed.
#ifndef LOCKSTEP_MIGRATIONS_PYTHON_LAUNCHER_H_
#define LOCKSTEP_MIGRATIONS_PYTHON_LAUNCHER_H_

#include <string>
#include <vector>

namespace lockstep::migrations {

// `command` as exec would find it: a path (relative ones against `cwd`) or a
// name searched on PATH. Empty when there is no such executable.
std::string LocateCommand(const std::string& command, const std::string& cwd);

// The `#!` interpreter (with its arguments) of `file` when it is Alembic's
// console launcher run by a Python; else empty.
std::vector<std::string> LauncherInterpreter(const std::string& file);

// The Python that runs `alembic_command`: PY of `[PY, -m, alembic]`, or the
// `#!` line of Alembic's launcher (found from `cwd`). Empty when it is
// neither (a wrapper script, `poetry run alembic`).
std::vector<std::string> CommandInterpreter(const std::vector<std::string>& alembic_command,
                                            const std::string& cwd);

// The Python of the `alembic` command found on PATH, else `python3`:
// what the offline CLI imports computed revision headers with.
std::vector<std::string> DefaultPython();

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_PYTHON_LAUNCHER_H_
