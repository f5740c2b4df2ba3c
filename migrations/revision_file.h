// Static reader for Alembic revision files.
//
// Alembic imports each revision file and reads its module attributes. We do
// not run Python here: we tokenize the file and read the module-level
// assignments to `revision`, `down_revision`, `branch_labels` and
// `depends_on` when their values are literals (strings, None, tuples/lists of
// strings, with or without annotations), plus the module docstring. A value
// Alembic could only get by running code (`"r" + "1"`, a name, a call) is
// never guessed: the file lists it as computed, and the loader imports that
// file with Python (computed_headers.h).
#ifndef LOCKSTEP_MIGRATIONS_REVISION_FILE_H_
#define LOCKSTEP_MIGRATIONS_REVISION_FILE_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace lockstep::migrations {

struct RevisionFile {
  std::string path;      // as Alembic prints it: <version location>/<file name>
  std::string filename;  // the file name alone
  std::string revision;
  // Normalised as Alembic does: None, () and [] are empty; a string is one
  // element; order as written. A lone "" is empty for down_revision but kept
  // for the other two, as Alembic keeps it.
  std::vector<std::string> down_revisions;
  std::vector<std::string> depends_on;
  std::vector<std::string> branch_labels;

  // depends_on as Alembic uses it: `depends_on = ''` declares no dependency.
  bool has_dependencies() const {
    return !depends_on.empty() && !(depends_on.size() == 1 && depends_on[0].empty());
  }
  // Header attributes whose value is not a literal, with their line, e.g.
  // {"branch_labels", 12} for `branch_labels = (cli.CONTRACT_BRANCH,)`:
  // Alembic learns them by importing the module, and so must the loader
  // (ComputeHeaders) before the file is used.
  std::vector<std::pair<std::string, int>> computed;
  std::string long_doc;  // the module docstring, stripped
  std::string doc;       // long_doc up to the first blank line

  // Facts for `lockstep lint`.
  int revision_line = 0;                  // 0 when taken from the file name
  std::optional<std::string> revises;     // the docstring's "Revises:" value
  std::optional<bool> upgrade_is_empty;   // nullopt when there is no upgrade()
  std::optional<bool> downgrade_is_empty; // likewise for downgrade()
  int upgrade_line = 0;
  int downgrade_line = 0;
};

// Parses `source`, the text of the file at `path` (whose last component is
// `filename`). Errors are INVALID_ARGUMENT with "path:line: message". A
// header attribute that is not a literal is no error: it is listed in
// `computed`, and its value is left empty.
absl::StatusOr<RevisionFile> ParseRevisionFile(absl::string_view source, absl::string_view path,
                                               absl::string_view filename);
// The same, filling `*out` in place (what large loads use).
absl::Status ParseRevisionFileInto(absl::string_view source, absl::string_view path,
                                   absl::string_view filename, RevisionFile* out);

// The Alembic revision id rules: ids may not contain '@', '-', '+'. (A ':' is
// refused too: it would break `history -r A:B` and `upgrade A:B`.) Returns an
// error in Alembic's words for a bad id.
absl::Status VerifyRevisionId(absl::string_view id);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_REVISION_FILE_H_
