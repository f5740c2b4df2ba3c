// Header values only Python can work out.
//
// Some projects compute a revision header, e.g. OpenStack Neutron's
// `branch_labels = (cli.CONTRACT_BRANCH,)`. Alembic learns it by importing
// the module; so does ComputeHeaders, with the project's Python (the one its
// Alembic runs on), the file's folder layout and Alembic's
// `prepend_sys_path`, in one Python process for all such files of a load.
// Answers are kept for the life of the process, keyed by the file's content,
// so a daemon that reloads its scripts imports each such version once.
//
// Example:
//   std::vector<ComputedFile> todo = {{&file, source}};
//   ComputeHeaders({"/usr/bin/python3"}, location, &todo);
//   if (!todo[0].status.ok()) ...;  // names the file, and Python's error
#ifndef LOCKSTEP_MIGRATIONS_COMPUTED_HEADERS_H_
#define LOCKSTEP_MIGRATIONS_COMPUTED_HEADERS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "migrations/revision_file.h"
#include "migrations/script_directory.h"

namespace lockstep::migrations {

struct ComputedFile {
  RevisionFile* file;  // with `computed` set; filled in on success
  std::string source;  // its text (the cache key)
  absl::Status status;
};

// Imports each file with `python` (argv of the interpreter; empty: the one in
// $LOCKSTEP_PYTHON, else DefaultPython(): the `alembic` on PATH's) and fills in its header values as Alembic would
// read them. Each file's status says whether it worked.
void ComputeHeaders(const std::vector<std::string>& python, const ScriptLocation& location,
                    std::vector<ComputedFile>* files);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_COMPUTED_HEADERS_H_
