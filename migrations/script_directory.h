// Finding and reading an Alembic script directory, as Alembic does.
//
// `LocateScripts` reads `alembic.ini` (script_location with %(here)s,
// version_locations with every separator form, recursive_version_locations,
// sourceless) or takes a plain directory; `LoadScripts` reads every revision
// file in sorted file-name order (Alembic 1.10+; 1.8.1 used raw directory
// order) and parses each statically.
#ifndef LOCKSTEP_MIGRATIONS_SCRIPT_DIRECTORY_H_
#define LOCKSTEP_MIGRATIONS_SCRIPT_DIRECTORY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "migrations/revision_file.h"

namespace lockstep::migrations {

struct ScriptLocation {
  std::string config_file;                     // empty for a plain directory
  std::string script_dir;                      // absolute
  std::vector<std::string> version_locations;  // absolute, in search order
  bool explicit_version_locations = false;     // missing folders are then skipped
  bool recursive = false;
  bool sourceless = false;
  // prepend_sys_path, absolute: where a revision file's imports are found
  // when its header has to be computed by importing it.
  std::vector<std::string> sys_path;
  std::string cwd;  // what relative paths were resolved against
};

// Reads `ini_path` like `alembic -c ini_path` would. `cwd` resolves relative
// paths (Alembic resolves script_location against the working directory, not
// the ini's folder; %(here)s is the ini's folder).
absl::StatusOr<ScriptLocation> LocateScriptsFromIni(const std::string& ini_path,
                                                    const std::string& cwd,
                                                    const std::string& section = "alembic");
// A plain script directory: revision files in DIR/versions.
absl::StatusOr<ScriptLocation> LocateScriptsFromDir(const std::string& dir,
                                                    const std::string& cwd);

struct LoadedScripts {
  std::vector<RevisionFile> files;  // in load order
  // Files that could not be read or parsed, each naming the file and line.
  std::vector<absl::Status> errors;
  std::vector<std::string> warnings;  // e.g. a file reached twice
};

// Reads every revision file. Fails only when the location itself is unusable
// (a missing versions folder); per-file problems go into `errors`. A file
// whose header is computed (`branch_labels = (cli.CONTRACT_BRANCH,)`) is
// imported with `python` (computed_headers.h); with no python it is an error
// naming the file.
absl::StatusOr<LoadedScripts> LoadScripts(const ScriptLocation& location,
                                          const std::vector<std::string>& python = {});

// Python's os.path.abspath: `path` joined to `cwd` and normalised textually.
std::string AbsPath(const std::string& path, const std::string& cwd);
// The working directory of this process.
std::string CurrentDir();

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_SCRIPT_DIRECTORY_H_
