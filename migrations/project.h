// An Alembic project loaded for reading: where its scripts are, every
// revision file, and the graph built from them.
//
// Example:
//   absl::StatusOr<Project> p = Project::Load({.config_file = "alembic.ini"});
//   if (!p.ok()) ...;  // the message names the file/line or the graph error
//   Resolver resolver(&p->graph());
#ifndef LOCKSTEP_MIGRATIONS_PROJECT_H_
#define LOCKSTEP_MIGRATIONS_PROJECT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migrations/revision_graph.h"
#include "migrations/script_directory.h"

namespace lockstep::migrations {

struct ProjectSource {
  std::string config_file;     // alembic.ini; used when scripts_dir is empty
  std::string scripts_dir;     // a script directory, instead of an ini
  std::string section = "alembic";
  std::string cwd;             // empty: the process's working directory
  // Imports revision files whose header is computed (computed_headers.h);
  // empty: $LOCKSTEP_PYTHON, else the Python of the `alembic` on PATH.
  std::vector<std::string> python;
};

class Project {
 public:
  // Loads and builds. Unless `tolerate_file_errors`, the first unreadable
  // revision file fails the load (as Alembic fails on it); with it, broken
  // files are left out and listed in file_errors() (lint uses this).
  static absl::StatusOr<Project> Load(const ProjectSource& source,
                                      bool tolerate_file_errors = false);

  const ScriptLocation& location() const { return location_; }
  const RevisionGraph& graph() const { return *graph_; }
  const std::vector<absl::Status>& file_errors() const { return file_errors_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  ScriptLocation location_;
  std::unique_ptr<RevisionGraph> graph_;  // heap-held so Resolvers' pointers survive moves
  std::vector<absl::Status> file_errors_;
  std::vector<std::string> warnings_;
};

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_PROJECT_H_
