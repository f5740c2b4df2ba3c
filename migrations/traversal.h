// Revision traversal in Alembic's order (RevisionMap.iterate_revisions): the
// revisions between an upper and a lower identifier, newest first, as
// `alembic history -r lower:upper` lists them and as `upgrade`/`downgrade`
// run them.
#ifndef LOCKSTEP_MIGRATIONS_TRAVERSAL_H_
#define LOCKSTEP_MIGRATIONS_TRAVERSAL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "migrations/resolver.h"

namespace lockstep::migrations {

// One side of a range: either one identifier string (`"base"`, `"ae10"`,
// `"label@head"`) or the version rows of a database (a tuple in Alembic).
struct RevisionSpec {
  std::vector<std::string> items;
  bool is_string = false;

  static RevisionSpec Identifier(std::string id) { return {{std::move(id)}, true}; }
  static RevisionSpec Rows(std::vector<std::string> rows) { return {std::move(rows), false}; }
  std::string ToString() const;
};

struct IterateOptions {
  bool implicit_base = false;
  bool inclusive = false;
  bool assert_relative_length = true;
  bool select_for_downgrade = false;
};

// Revisions from `upper` down to `lower`, newest first. For downgrades,
// `upper` is what the database holds and `lower` the target.
absl::StatusOr<std::vector<int>> IterateRevisions(const Resolver& resolver,
                                                  const RevisionSpec& upper,
                                                  const RevisionSpec& lower,
                                                  const IterateOptions& options);

// Orders `revisions` so that each comes before its ancestors, walking down
// from `heads` in load order (Alembic's `_topological_sort`). An error when
// the walk cannot reach some of them (a range whose lower end is only a
// dependency of the upper one, not on its down_revision line), where
// Alembic fails its own assertion.
absl::StatusOr<std::vector<int>> TopologicalSort(const Resolver& resolver,
                                                 const std::vector<int>& revisions,
                                                 const std::vector<int>& heads);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_TRAVERSAL_H_
