#include "migrations/classify.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/migration_plan.h"

namespace lockstep::migrations {

absl::string_view RevisionStateName(RevisionState state) {
  switch (state) {
    case RevisionState::kCurrent: return "current";
    case RevisionState::kBehind: return "behind";
    case RevisionState::kAhead: return "ahead";
    case RevisionState::kDiverged: return "diverged";
    case RevisionState::kOrphaned: return "orphaned";
    case RevisionState::kUninitialized: return "uninitialized";
  }
  return "unknown";
}

Classification ClassifyRows(const Resolver& resolver, const std::vector<std::string>& rows,
                            absl::string_view target) {
  const RevisionGraph& g = resolver.graph();
  Classification c;
  std::vector<int> applied_tips;
  for (const std::string& row : rows) {
    std::optional<int> n = g.Find(row);
    if (!n.has_value() || g.id(*n) != row) {
      c.orphaned.push_back(row);
    } else {
      applied_tips.push_back(*n);
    }
  }
  if (!c.orphaned.empty()) {
    c.state = RevisionState::kOrphaned;
    c.reason = absl::StrCat("version row", c.orphaned.size() > 1 ? "s " : " ",
                            absl::StrJoin(c.orphaned, ", "),
                            c.orphaned.size() > 1 ? " are" : " is",
                            " not defined by any revision script (database replaced or restored, "
                            "or scripts deleted); Alembic fails with \"Can't locate revision "
                            "identified by '",
                            c.orphaned[0], "'\"");
    return c;
  }
  absl::StatusOr<std::vector<MigrationStep>> plan = PlanUpgrade(resolver, rows, target);
  if (!plan.ok()) {
    c.state = RevisionState::kDiverged;
    c.reason = absl::StrCat("cannot plan an upgrade to ", target, ": ",
                            CommandErrorMessage(plan.status(), UpgradeErrorContext(target)));
    return c;
  }
  for (const MigrationStep& s : *plan) c.pending.push_back(g.id(s.revision));

  absl::StatusOr<std::vector<RevRef>> targets = resolver.GetRevisions(target);
  std::vector<int> target_idx;
  if (targets.ok()) {
    for (const RevRef& r : *targets) {
      if (r.is_rev()) target_idx.push_back(r.idx);
    }
  }
  std::vector<int> required_list = resolver.AncestorsOf(target_idx, true);
  std::set<int> required(required_list.begin(), required_list.end());
  for (int a : resolver.AncestorsOf(applied_tips, true)) {
    if (!required.count(a)) c.beyond.push_back(g.id(a));
  }
  if (rows.empty()) {
    c.state = RevisionState::kUninitialized;
    c.reason = absl::StrCat("no version rows (never migrated); ", c.pending.size(),
                            " revision", c.pending.size() == 1 ? "" : "s", " to apply to reach ",
                            target);
  } else if (c.pending.empty() && c.beyond.empty()) {
    c.state = RevisionState::kCurrent;
    c.reason = absl::StrCat("at ", target, " (", absl::StrJoin(rows, ", "), ")");
  } else if (c.pending.empty()) {
    c.state = RevisionState::kAhead;
    c.reason = absl::StrCat("has revision", c.beyond.size() == 1 ? " " : "s ",
                            absl::StrJoin(c.beyond, ", "), " beyond ", target);
  } else if (c.beyond.empty()) {
    c.state = RevisionState::kBehind;
    c.reason = absl::StrCat(c.pending.size(), " revision", c.pending.size() == 1 ? "" : "s",
                            " pending: ", absl::StrJoin(c.pending, ", "));
  } else {
    c.state = RevisionState::kDiverged;
    c.reason = absl::StrCat(c.pending.size(), " pending (", absl::StrJoin(c.pending, ", "),
                            ") and ", c.beyond.size(), " beyond ", target, " (",
                            absl::StrJoin(c.beyond, ", "), ")");
  }
  return c;
}

}  // namespace lockstep::migrations
