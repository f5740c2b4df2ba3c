#include "migrations/project.h"

namespace lockstep::migrations {

absl::StatusOr<Project> Project::Load(const ProjectSource& source, bool tolerate_file_errors) {
  std::string cwd = source.cwd.empty() ? CurrentDir() : source.cwd;
  absl::StatusOr<ScriptLocation> location =
      source.scripts_dir.empty() ? LocateScriptsFromIni(source.config_file, cwd, source.section)
                                 : LocateScriptsFromDir(source.scripts_dir, cwd);
  if (!location.ok()) return location.status();
  absl::StatusOr<LoadedScripts> loaded = LoadScripts(*location, source.python);
  if (!loaded.ok()) return loaded.status();
  if (!loaded->errors.empty() && !tolerate_file_errors) return loaded->errors.front();

  Project p;
  p.location_ = *std::move(location);
  p.warnings_ = std::move(loaded->warnings);
  p.file_errors_ = std::move(loaded->errors);
  absl::StatusOr<RevisionGraph> graph = RevisionGraph::Build(std::move(loaded->files), &p.warnings_);
  if (!graph.ok()) return graph.status();
  p.graph_ = std::make_unique<RevisionGraph>(*std::move(graph));
  return p;
}

}  // namespace lockstep::migrations
