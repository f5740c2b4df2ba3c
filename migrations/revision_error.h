// Alembic's revision errors, carried inside absl::Status.
//
// Alembic raises distinct exception classes (ResolutionError, MultipleHeads,
// RangeNotAncestorError, plain RevisionError) and its command layer words each
// differently depending on the command. We keep the class and its data as a
// payload on the status so that callers (the CLI, the daemon) can render the
// message Alembic's command would print, while the plain status message stays
// the message RevisionMap itself raised.
#ifndef LOCKSTEP_MIGRATIONS_REVISION_ERROR_H_
#define LOCKSTEP_MIGRATIONS_REVISION_ERROR_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace lockstep::migrations {

enum class RevisionErrorKind {
  kRevision,          // generic RevisionError: the message says it all
  kResolution,        // an identifier did not resolve; `argument` is it
  kMultipleHeads,     // `heads` matched where one was needed; `argument`
  kRangeNotAncestor,  // `lower`/`upper` are not on one line of descent
};

struct RevisionError {
  RevisionErrorKind kind = RevisionErrorKind::kRevision;
  std::string message;
  std::string argument;            // kResolution, kMultipleHeads
  std::vector<std::string> heads;  // kMultipleHeads
  std::string lower, upper;        // kRangeNotAncestor ("" means base)
};

// Builds a status for `error`: code by meaning (NOT_FOUND for resolution,
// FAILED_PRECONDITION for multiple heads, INVALID_ARGUMENT otherwise).
absl::Status MakeRevisionError(const RevisionError& error);
absl::Status GenericRevisionError(std::string message);
absl::Status ResolutionError(std::string message, std::string argument);
absl::Status MultipleHeadsError(std::vector<std::string> heads, std::string argument);
absl::Status RangeNotAncestorError(std::string lower, std::string upper);

// Recovers the error carried by `status`; nullopt for statuses not made here.
std::optional<RevisionError> GetRevisionError(const absl::Status& status);

// How Alembic's command layer (ScriptDirectory._catch_revision_errors) words
// an error. Empty optional fields take Alembic's defaults.
struct CommandErrorContext {
  std::optional<std::string> ancestor;        // template with %(start)s/%(end)s
  std::optional<std::string> multiple_heads;  // template with %(head_arg)s
  std::optional<std::string> start, end;
  std::optional<std::string> resolution;
};
std::string CommandErrorMessage(const absl::Status& status,
                                const CommandErrorContext& context = {});

// Where in the project's files an error was found, carried as a second
// payload: lint and the API show the file and the line as fields instead of
// parsing them back out of the text (a message naming a .py file in the
// middle used to be split there).
struct FileLocation {
  std::string path;
  int line = 0;         // 0: the file as a whole
  std::string message;  // without the location
};
absl::Status WithFileLocation(absl::Status status, const FileLocation& where);
std::optional<FileLocation> GetFileLocation(const absl::Status& status);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_REVISION_ERROR_H_
