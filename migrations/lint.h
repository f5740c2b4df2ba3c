// `lockstep lint`: problems in a script directory that Alembic accepts
// silently or fails on late: multiple heads, empty migrations, ids that do
// not match their file names, docstrings whose "Revises:" line disagrees with
// down_revision, duplicate ids, unreadable files and graph errors.
#ifndef LOCKSTEP_MIGRATIONS_LINT_H_
#define LOCKSTEP_MIGRATIONS_LINT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "migrations/project.h"

namespace lockstep::migrations {

struct LintFinding {
  std::string path;  // the file, or the script directory for project-wide findings
  int line = 0;      // 0 when no line applies
  std::string code;  // stable: multiple-heads, empty-upgrade, empty-downgrade,
                     // filename-mismatch, revises-mismatch, duplicate-revision,
                     // unreadable, graph-error
  std::string message;
};

// Every code a finding can have (docs/reference.md, "lint findings"), for checking
// names given on a command line (`rollout --allow-lint CODE,...`).
inline constexpr std::string_view kLintCodes[] = {
    "multiple-heads",     "empty-upgrade", "empty-downgrade", "filename-mismatch",
    "revises-mismatch",   "duplicate-revision", "unreadable",  "graph-error"};

// Lints a project loaded with tolerate_file_errors.
std::vector<LintFinding> LintProject(const Project& project);
// A finding for a project that could not be loaded at all: `graph-error`
// at the file the status's FileLocation names (else at `where`), or
// `unreadable` for a file that does not parse. `message`, when given,
// replaces the status's message (the CLI words it as Alembic's command does).
LintFinding LoadFailureFinding(const std::string& where, const absl::Status& status,
                               const std::string& message = "");

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_LINT_H_
