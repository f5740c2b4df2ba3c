// Identifier resolution, exactly as Alembic's RevisionMap resolves them:
// ids, branch labels, unique prefixes (more than three characters), `head`,
// `heads`, `base`, `X@head`, `X@heads`, `X@base`, `X@rev`, and relative
// `+N`, `-N`, `rev+N`, `head-1`, `label@+N`.
//
// A Resolver borrows the graph, which must outlive it. Thread-safe.
#ifndef LOCKSTEP_MIGRATIONS_RESOLVER_H_
#define LOCKSTEP_MIGRATIONS_RESOLVER_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "migrations/revision_graph.h"

namespace lockstep::migrations {

// What an identifier can resolve to: a revision, nothing (Alembic's None)
// or the `base` marker a downward walk stops at.
struct RevRef {
  enum class Kind { kNone, kBase, kRev };
  Kind kind = Kind::kNone;
  int idx = -1;

  static RevRef None() { return {}; }
  static RevRef Base() { return {Kind::kBase, -1}; }
  static RevRef Rev(int i) { return {Kind::kRev, i}; }
  bool is_rev() const { return kind == Kind::kRev; }
  bool operator==(const RevRef&) const = default;
};

// `label@symbol+N`, `symbol-N`, `+N`: Alembic's relative destination syntax.
struct RelativeTarget {
  std::optional<std::string> branch;  // before the first '@'
  std::optional<std::string> symbol;  // a word: id, label, head, base...
  std::string relative;               // "+2", "-1"
  int steps = 0;
};
std::optional<RelativeTarget> MatchRelative(absl::string_view target);

class Resolver {
 public:
  explicit Resolver(const RevisionGraph* graph) : g_(*graph) {}

  const RevisionGraph& graph() const { return g_; }

  // `_resolve_revision_number`: the ids an identifier stands for, and the
  // branch label given before '@'.
  absl::Status ResolveRevisionNumber(std::optional<absl::string_view> id,
                                     std::vector<std::string>* ids,
                                     std::optional<std::string>* branch) const;
  // `get_revisions`: every revision an identifier (or several) names.
  absl::StatusOr<std::vector<RevRef>> GetRevisions(absl::string_view id) const;
  absl::StatusOr<std::vector<RevRef>> GetRevisions(const std::vector<std::string>& ids) const;
  // `get_revision`: exactly one (or None for base); multiple is an error.
  absl::StatusOr<RevRef> GetRevision(std::optional<absl::string_view> id) const;

  absl::StatusOr<RevRef> RevisionForIdent(std::optional<absl::string_view> resolved,
                                          std::optional<absl::string_view> check_branch) const;
  absl::StatusOr<int> ResolveBranch(absl::string_view label) const;
  absl::StatusOr<std::vector<int>> FilterForLineage(const std::vector<int>& targets,
                                                    std::optional<absl::string_view> check_against,
                                                    bool include_dependencies = false) const;
  absl::StatusOr<bool> SharesLineage(int target, const std::vector<std::string>& against,
                                     bool include_dependencies = false) const;
  absl::StatusOr<std::optional<int>> GetCurrentHead(std::optional<absl::string_view> branch) const;

  // `_walk`: `steps` up (>0) or down (<0) from `start`.
  absl::StatusOr<RevRef> Walk(RevRef start, int steps, std::optional<absl::string_view> branch,
                              bool no_overwalk = true) const;

  absl::StatusOr<std::vector<RevRef>> ParseUpgradeTarget(
      const std::vector<std::string>& current, absl::string_view target,
      bool assert_relative_length) const;
  absl::StatusOr<std::pair<std::optional<std::string>, RevRef>> ParseDowngradeTarget(
      const std::vector<std::string>& current, std::optional<absl::string_view> target,
      bool assert_relative_length) const;

  // The branch tips among `ids` and all they imply (Alembic's
  // `_get_all_current`, used by `alembic current`).
  absl::StatusOr<std::vector<int>> GetAllCurrent(const std::vector<std::string>& ids) const;

  // Related nodes in Alembic's depth-first order, starting nodes included.
  // With `check`, a target reached from another target is an error
  // ("Requested revision X overlaps with other requested revisions Y").
  absl::StatusOr<std::vector<int>> Ancestors(const std::vector<int>& targets,
                                             bool include_dependencies = true,
                                             bool check = false) const;
  absl::StatusOr<std::vector<int>> Descendants(const std::vector<int>& targets,
                                               bool include_dependencies = true,
                                               bool check = false) const;
  // Unchecked variants, which cannot fail.
  std::vector<int> AncestorsOf(const std::vector<int>& targets, bool include_dependencies = true) const;
  std::vector<int> DescendantsOf(const std::vector<int>& targets,
                                 bool include_dependencies = true) const;

 private:
  template <typename Edges>
  absl::StatusOr<std::vector<int>> Related(const std::vector<int>& targets, Edges edges,
                                           bool check) const;

  const RevisionGraph& g_;
};

// Python's int() on a revision identifier, for the `-N` check.
std::optional<long> ParsePythonInt(absl::string_view s);

}  // namespace lockstep::migrations

#endif  // LOCKSTEP_MIGRATIONS_RESOLVER_H_
