// Alembic's command-line renderings of a revision, byte for byte (Script
// `_head_only`, `log_entry`, the `branches` block). Callers print each
// returned string followed by a newline, as Alembic's print_stdout does.
#ifndef LOCKSTEP_MIGRATIONS_FORMAT_H_
#define LOCKSTEP_MIGRATIONS_FORMAT_H_

#include <string>

#include "migrations/revision_graph.h"

namespace lockstep::migrations {

// `alembic heads`: "rev (labels) (head)" or "(effective head)".
std::string FormatHeadLine(const RevisionGraph& g, int i);
// `alembic history`: "<parents> (deps) -> rev (labels) (head) ..., doc".
std::string FormatHistoryLine(const RevisionGraph& g, int i);
// `alembic show` and every `--verbose` listing: the "Rev: ..." block.
std::string FormatLogEntry(const RevisionGraph& g, int i);
// `alembic branches`: a branch point and one "-> child" line per child.
std::string FormatBranchBlock(const RevisionGraph& g, int i, bool verbose);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_FORMAT_H_
