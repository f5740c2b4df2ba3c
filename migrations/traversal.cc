#include "migrations/traversal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {
namespace {

using Set = std::vector<char>;  // membership by node index

Set MakeSet(int n, const std::vector<int>& items) {
  Set s(n, 0);
  for (int i : items) s[i] = 1;
  return s;
}

std::vector<int> Members(const Set& s) {
  std::vector<int> out;
  for (int i = 0; i < static_cast<int>(s.size()); ++i) {
    if (s[i]) out.push_back(i);
  }
  return out;
}

struct Collected {
  std::vector<int> revisions;
  std::vector<int> heads;
};

absl::StatusOr<std::vector<int>> OnlyRevisions(const std::vector<RevRef>& refs,
                                               absl::string_view what) {
  std::vector<int> out;
  for (const RevRef& r : refs) {
    if (!r.is_rev()) {
      return GenericRevisionError(
          absl::StrCat("'", what, "' does not resolve to a revision (it walks past base)"));
    }
    out.push_back(r.idx);
  }
  return out;
}

absl::StatusOr<Collected> CollectUpgrade(const Resolver& r, const RevisionSpec& upper,
                                         RevisionSpec lower, const IterateOptions& o) {
  const RevisionGraph& g = r.graph();
  const int n = g.size();
  // A tuple of rows names revisions as they are; one string may be relative.
  const std::string target = upper.is_string && !upper.items.empty() ? upper.items[0] : "";
  absl::StatusOr<std::vector<RevRef>> parsed =
      upper.is_string ? r.ParseUpgradeTarget(lower.items, target, o.assert_relative_length)
                      : r.GetRevisions(upper.items);
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::vector<int>> targets_or = OnlyRevisions(*parsed, upper.ToString());
  if (!targets_or.ok()) return targets_or.status();
  std::vector<int> targets = *std::move(targets_or);

  // `branch@...` as the lower bound keeps only targets on that branch.
  if (lower.is_string && lower.items[0].find('@') != std::string::npos) {
    std::string branch = lower.items[0].substr(0, lower.items[0].find('@'));
    absl::StatusOr<RevRef> branch_rev = r.GetRevision(branch);
    if (!branch_rev.ok()) return branch_rev.status();
    if (branch_rev->is_rev() && g.id(branch_rev->idx) == branch) {
      const std::vector<std::string>& labels = g.node(branch_rev->idx).labels;
      if (labels.size() != 1) {
        return GenericRevisionError(absl::StrCat("Revision ", branch, " used as a branch has ",
                                                 labels.size(), " branch labels"));
      }
      branch = labels[0];
    }
    std::vector<int> kept;
    for (int t : targets) {
      if (g.node(t).HasLabel(branch)) kept.push_back(t);
    }
    targets = std::move(kept);
  }

  absl::StatusOr<std::vector<int>> required_list = r.Ancestors(targets, true, /*check=*/true);
  if (!required_list.ok()) return required_list.status();
  Set required = MakeSet(n, *required_list);
  for (int t : targets) required[t] = 1;

  absl::StatusOr<std::vector<RevRef>> current_refs = r.GetRevisions(lower.items);
  if (!current_refs.ok()) return current_refs.status();
  std::vector<RevRef> current = *std::move(current_refs);
  if (!o.implicit_base) {
    for (const RevRef& c : current) {
      if (c.kind == RevRef::Kind::kNone) continue;
      if (!c.is_rev() || !required[c.idx]) {
        return RangeNotAncestorError(lower.ToString(), upper.ToString());
      }
    }
  }
  // A relative lower bound (`-2`) is measured from the upper one.
  if (!current.empty() && current[0].kind == RevRef::Kind::kNone) {
    absl::StatusOr<std::pair<std::optional<std::string>, RevRef>> down = r.ParseDowngradeTarget(
        upper.items, lower.items.empty() ? std::nullopt
                                         : std::optional<absl::string_view>(lower.items[0]),
        o.assert_relative_length);
    if (!down.ok()) return down.status();
    if (down->second.kind == RevRef::Kind::kBase) {
      current.clear();
      lower = RevisionSpec::Rows({});
    } else if (down->second.is_rev()) {
      current = {down->second};
      lower = RevisionSpec::Identifier(g.id(down->second.idx));
    } else {
      return GenericRevisionError(
          absl::StrCat("'", lower.ToString(), "' does not resolve to a revision"));
    }
  }
  absl::StatusOr<std::vector<int>> current_idx_or = OnlyRevisions(current, lower.ToString());
  if (!current_idx_or.ok()) return current_idx_or.status();
  const std::vector<int>& current_idx = *current_idx_or;
  absl::StatusOr<std::vector<int>> current_list = r.Ancestors(current_idx, true, /*check=*/true);
  if (!current_list.ok()) return current_list.status();
  Set current_set = MakeSet(n, *current_list);
  for (int c : current_idx) current_set[c] = 1;

  Set needs(n, 0);
  for (int i = 0; i < n; ++i) needs[i] = required[i] && !current_set[i];
  if (o.inclusive) {
    absl::StatusOr<std::vector<RevRef>> lower_refs = r.GetRevisions(lower.items);
    if (!lower_refs.ok()) return lower_refs.status();
    absl::StatusOr<std::vector<int>> lower_idx = OnlyRevisions(*lower_refs, lower.ToString());
    if (!lower_idx.ok()) return lower_idx.status();
    for (int i : *lower_idx) needs[i] = 1;
  }
  if (!current_idx.empty() && !o.implicit_base) {
    absl::StatusOr<std::vector<int>> desc = r.Descendants(current_idx, false, /*check=*/true);
    if (!desc.ok()) return desc.status();
    Set keep = MakeSet(n, *desc);
    for (int i = 0; i < n; ++i) needs[i] = needs[i] && keep[i];
  }
  return Collected{Members(needs), targets};
}

absl::StatusOr<Collected> CollectDowngrade(const Resolver& r, const RevisionSpec& upper,
                                           const RevisionSpec& lower, const IterateOptions& o) {
  const RevisionGraph& g = r.graph();
  const int n = g.size();
  std::optional<absl::string_view> target;
  if (!lower.items.empty()) target = lower.items[0];
  absl::StatusOr<std::pair<std::optional<std::string>, RevRef>> parsed =
      r.ParseDowngradeTarget(upper.items, target, o.assert_relative_length);
  if (!parsed.ok()) return parsed.status();
  const std::optional<std::string>& branch = parsed->first;
  RevRef target_rev = parsed->second;

  std::vector<int> roots;
  if (!target_rev.is_rev()) {
    for (int i = 0; i < n; ++i) {
      if (g.node(i).is_base()) roots.push_back(i);
    }
  } else if (o.inclusive) {
    roots = {target_rev.idx};
  } else {
    roots.assign(g.node(target_rev.idx).next.begin(), g.node(target_rev.idx).next.end());
  }
  if (branch.has_value() && !branch->empty() && roots.size() > 1) {
    absl::StatusOr<int> branch_rev = r.ResolveBranch(*branch);
    if (!branch_rev.ok()) return branch_rev.status();
    Set anc = MakeSet(n, r.AncestorsOf({*branch_rev}, false));
    std::vector<int> kept;
    for (int root : roots) {
      if (anc[root]) kept.push_back(root);
    }
    roots = std::move(kept);
    if (roots.empty()) {
      return GenericRevisionError("Not a valid downgrade target from current heads");
    }
  }
  absl::StatusOr<std::vector<RevRef>> head_refs = r.GetRevisions(upper.items);
  if (!head_refs.ok()) return head_refs.status();
  absl::StatusOr<std::vector<int>> heads = OnlyRevisions(*head_refs, upper.ToString());
  if (!heads.ok()) return heads.status();

  Set drop = MakeSet(n, r.DescendantsOf(roots, true));
  Set active = MakeSet(n, r.AncestorsOf(*heads, true));
  for (int i = 0; i < n; ++i) drop[i] = drop[i] && active[i];
  if (o.implicit_base) {
    Set keep = MakeSet(n, r.AncestorsOf(roots, true));
    for (int i = 0; i < n; ++i) drop[i] = drop[i] || (active[i] && !keep[i]);
  }
  std::vector<int> dropped = Members(drop);
  if (target_rev.is_rev() && dropped.empty() &&
      std::find(heads->begin(), heads->end(), target_rev.idx) == heads->end()) {
    return RangeNotAncestorError("Nothing to drop", upper.ToString());
  }
  return Collected{std::move(dropped), *heads};
}

}  // namespace

std::string RevisionSpec::ToString() const {
  if (is_string) return items.empty() ? "" : items[0];
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  return absl::StrCat("(", absl::StrJoin(items, ", "), ")");
}

absl::StatusOr<std::vector<int>> TopologicalSort(const Resolver& r,
                                                 const std::vector<int>& revisions,
                                                 const std::vector<int>& heads_in) {
  const RevisionGraph& g = r.graph();
  const int n = g.size();
  Set todo = MakeSet(n, revisions);
  auto ancestors = [&](int id) { return MakeSet(n, r.AncestorsOf({id}, true)); };

  // Heads in load order (node index order is load order).
  std::vector<int> current_heads;
  for (int h : heads_in) {
    if (todo[h] && std::find(current_heads.begin(), current_heads.end(), h) == current_heads.end()) {
      current_heads.push_back(h);
    }
  }
  std::sort(current_heads.begin(), current_heads.end());
  std::vector<Set> ancestors_by_idx;
  for (int h : current_heads) ancestors_by_idx.push_back(ancestors(h));

  std::vector<int> output;
  size_t candidate_idx = 0;
  while (!current_heads.empty()) {
    int candidate = current_heads[candidate_idx];
    bool blocked = false;
    for (size_t check = 0; check < ancestors_by_idx.size(); ++check) {
      // Another head that still has to pass through this candidate goes first.
      if (check != candidate_idx && ancestors_by_idx[check][candidate]) {
        candidate_idx = check;
        blocked = true;
        break;
      }
    }
    if (blocked) continue;
    if (todo[candidate]) {
      output.push_back(candidate);
      todo[candidate] = 0;
    }
    const RevisionGraph::Node& node = g.node(candidate);
    std::vector<int> to_add;
    for (int d : node.normalized_down) {
      if (todo[d] && std::find(current_heads.begin(), current_heads.end(), d) == current_heads.end()) {
        to_add.push_back(d);
      }
    }
    if (to_add.empty()) {
      current_heads.erase(current_heads.begin() + static_cast<long>(candidate_idx));
      ancestors_by_idx.erase(ancestors_by_idx.begin() + static_cast<long>(candidate_idx));
      candidate_idx = candidate_idx == 0 ? 0 : candidate_idx - 1;
    } else if (node.normalized_deps.empty() && node.down.size() == 1) {
      // Plain movement down a line: the ancestors shrink by the candidate.
      current_heads[candidate_idx] = to_add[0];
      ancestors_by_idx[candidate_idx][candidate] = 0;
    } else {
      current_heads[candidate_idx] = to_add[0];
      ancestors_by_idx[candidate_idx] = ancestors(to_add[0]);
      for (size_t k = 1; k < to_add.size(); ++k) {
        current_heads.push_back(to_add[k]);
        ancestors_by_idx.push_back(ancestors(to_add[k]));
      }
    }
  }
  std::vector<std::string> left;
  for (int i = 0; i < n; ++i) {
    if (todo[i]) left.push_back(g.id(i));
  }
  if (!left.empty()) {
    return GenericRevisionError(
        absl::StrCat("cannot order the revisions of this range: ", absl::StrJoin(left, ", "),
                     left.size() == 1 ? " is" : " are",
                     " not reached down the revision lines from its upper end (a dependency, "
                     "not a down_revision; Alembic fails here too, with an AssertionError)"));
  }
  return output;
}

absl::StatusOr<std::vector<int>> IterateRevisions(const Resolver& resolver,
                                                  const RevisionSpec& upper,
                                                  const RevisionSpec& lower,
                                                  const IterateOptions& options) {
  absl::StatusOr<Collected> c = options.select_for_downgrade
                                    ? CollectDowngrade(resolver, upper, lower, options)
                                    : CollectUpgrade(resolver, upper, lower, options);
  if (!c.ok()) return c.status();
  return TopologicalSort(resolver, c->revisions, c->heads);
}

}  // namespace lockstep::migrations
