#include "migrations/resolver.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/revision_error.h"

namespace lockstep::migrations {
namespace {

bool Truthy(const std::optional<std::string>& s) { return s.has_value() && !s->empty(); }
bool Truthy(const std::optional<absl::string_view>& s) { return s.has_value() && !s->empty(); }

bool IsWordChar(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

std::string RelativeFailure(absl::string_view relative, int steps) {
  return absl::StrCat("Relative revision ", relative, " didn't produce ", std::abs(steps),
                      " migrations");
}

}  // namespace

std::optional<long> ParsePythonInt(absl::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0])) ||
      !std::isdigit(static_cast<unsigned char>(s.back()))) {
    return std::nullopt;
  }
  long value = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (s[i + 1] == '_') return std::nullopt;
      continue;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    if (value < 100000000000L) value = value * 10 + (c - '0');
  }
  return negative ? -value : value;
}

// Alembic's `(?:(.+?)@)?(\w+)?((?:\+|-)\d+)`, matched at the start only.
std::optional<RelativeTarget> MatchRelative(absl::string_view target) {
  auto match_rest = [](absl::string_view rest) -> std::optional<RelativeTarget> {
    size_t e = 0;
    while (e < rest.size() && IsWordChar(static_cast<unsigned char>(rest[e]))) ++e;
    if (e >= rest.size() || (rest[e] != '+' && rest[e] != '-')) return std::nullopt;
    size_t d = e + 1;
    while (d < rest.size() && std::isdigit(static_cast<unsigned char>(rest[d]))) ++d;
    if (d == e + 1) return std::nullopt;
    RelativeTarget out;
    if (e > 0) out.symbol = std::string(rest.substr(0, e));
    out.relative = std::string(rest.substr(e, d - e));
    long v = 0;
    for (size_t k = e + 1; k < d; ++k) {
      if (v < 1000000000L) v = v * 10 + (rest[k] - '0');
    }
    out.steps = static_cast<int>(rest[e] == '-' ? -v : v);
    return out;
  };
  // The optional `label@` group is tried first, with the shortest label.
  for (size_t at = target.find('@', 1); at != absl::string_view::npos;
       at = target.find('@', at + 1)) {
    std::optional<RelativeTarget> m = match_rest(target.substr(at + 1));
    if (m.has_value()) {
      m->branch = std::string(target.substr(0, at));
      return m;
    }
  }
  return match_rest(target);
}

absl::Status Resolver::ResolveRevisionNumber(std::optional<absl::string_view> id,
                                             std::vector<std::string>* ids,
                                             std::optional<std::string>* branch) const {
  ids->clear();
  branch->reset();
  if (id.has_value()) {
    size_t at = id->find('@');
    if (at != absl::string_view::npos) {
      *branch = std::string(id->substr(0, at));
      id = id->substr(at + 1);
    }
  }
  if (id == "heads") {
    if (Truthy(*branch)) {
      absl::StatusOr<std::vector<int>> heads = FilterForLineage(g_.heads(), *branch);
      if (!heads.ok()) return heads.status();
      *ids = g_.Ids(*heads);
    } else {
      *ids = g_.Ids(g_.real_heads());
    }
    return absl::OkStatus();
  }
  if (id == "head") {
    absl::StatusOr<std::optional<int>> head =
        GetCurrentHead(branch->has_value() ? std::optional<absl::string_view>(**branch)
                                           : std::nullopt);
    if (!head.ok()) return head.status();
    if (head->has_value()) ids->push_back(g_.id(**head));
    return absl::OkStatus();
  }
  if (!id.has_value() || id == "base") return absl::OkStatus();
  ids->emplace_back(*id);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int>> Resolver::GetCurrentHead(
    std::optional<absl::string_view> branch) const {
  std::vector<int> heads = g_.heads();
  if (Truthy(branch)) {
    absl::StatusOr<std::vector<int>> filtered = FilterForLineage(heads, branch);
    if (!filtered.ok()) return filtered.status();
    heads = *std::move(filtered);
  }
  if (heads.size() > 1) {
    return MultipleHeadsError(g_.Ids(heads),
                              Truthy(branch) ? absl::StrCat(*branch, "@head") : "head");
  }
  if (heads.empty()) return std::optional<int>();
  return std::optional<int>(heads[0]);
}

absl::StatusOr<std::vector<RevRef>> Resolver::GetRevisions(absl::string_view id) const {
  std::vector<std::string> ids;
  std::optional<std::string> branch;
  absl::Status s = ResolveRevisionNumber(id, &ids, &branch);
  if (!s.ok()) return s;
  std::vector<RevRef> out;
  if (ids.size() == 1) {
    std::optional<long> n = ParsePythonInt(ids[0]);
    if (n.has_value() && *n < 0) {
      // `-N` (or `label@-N`): walk down from each head.
      for (int head : g_.real_heads()) {
        if (branch.has_value() && !g_.node(head).HasLabel(*branch)) continue;
        absl::StatusOr<RevRef> r = Walk(RevRef::Rev(head), static_cast<int>(*n), std::nullopt);
        if (!r.ok()) return r.status();
        out.push_back(*r);
      }
      return out;
    }
  }
  for (const std::string& r : ids) {
    absl::StatusOr<RevRef> rev = RevisionForIdent(
        r, branch.has_value() ? std::optional<absl::string_view>(*branch) : std::nullopt);
    if (!rev.ok()) return rev.status();
    out.push_back(*rev);
  }
  return out;
}

absl::StatusOr<std::vector<RevRef>> Resolver::GetRevisions(
    const std::vector<std::string>& ids) const {
  std::vector<RevRef> out;
  for (const std::string& id : ids) {
    absl::StatusOr<std::vector<RevRef>> part = GetRevisions(id);
    if (!part.ok()) return part.status();
    out.insert(out.end(), part->begin(), part->end());
  }
  return out;
}

absl::StatusOr<RevRef> Resolver::GetRevision(std::optional<absl::string_view> id) const {
  std::vector<std::string> ids;
  std::optional<std::string> branch;
  absl::Status s = ResolveRevisionNumber(id, &ids, &branch);
  if (!s.ok()) return s;
  if (ids.size() > 1) return MultipleHeadsError(ids, std::string(id.value_or("")));
  std::optional<absl::string_view> resolved;
  if (!ids.empty()) resolved = ids[0];
  return RevisionForIdent(resolved, branch.has_value()
                                        ? std::optional<absl::string_view>(*branch)
                                        : std::nullopt);
}

absl::StatusOr<int> Resolver::ResolveBranch(absl::string_view label) const {
  if (std::optional<int> exact = g_.Find(label)) return *exact;
  absl::StatusOr<RevRef> partial = RevisionForIdent(label, std::nullopt);
  if (!partial.ok()) {
    std::optional<RevisionError> e = GetRevisionError(partial.status());
    if (e.has_value() && e->kind == RevisionErrorKind::kResolution) {
      return ResolutionError(absl::StrCat("No such branch: '", label, "'"), std::string(label));
    }
    return partial.status();
  }
  return partial->idx;
}

absl::StatusOr<RevRef> Resolver::RevisionForIdent(
    std::optional<absl::string_view> resolved, std::optional<absl::string_view> check_branch) const {
  std::optional<int> branch_rev;
  if (Truthy(check_branch)) {
    absl::StatusOr<int> b = ResolveBranch(*check_branch);
    if (!b.ok()) return b.status();
    branch_rev = *b;
  }
  if (!resolved.has_value()) return RevRef::None();
  std::optional<int> found = g_.Find(*resolved);
  if (!found.has_value()) {
    // A unique prefix of a key longer than three characters.
    std::vector<std::string> matches;
    for (const auto& [key, node] : g_.keys()) {
      if (key.size() > 3 && absl::StartsWith(key, *resolved)) matches.push_back(key);
    }
    if (branch_rev.has_value()) {
      std::vector<std::string> kept;
      for (const std::string& m : matches) {
        absl::StatusOr<bool> shares = SharesLineage(*g_.Find(m), {std::string(*check_branch)});
        if (!shares.ok()) return shares.status();
        if (*shares) kept.push_back(m);
      }
      matches = std::move(kept);
    }
    if (matches.empty()) {
      return ResolutionError(
          absl::StrCat("No such revision or branch '", *resolved, "'",
                       resolved->size() < 4 ? "; please ensure at least four characters are "
                                              "present for partial revision identifier matches"
                                            : ""),
          std::string(*resolved));
    }
    if (matches.size() > 1) {
      std::vector<std::string> quoted;
      for (size_t k = 0; k < matches.size() && k < 3; ++k) {
        quoted.push_back(absl::StrCat("'", matches[k], "'"));
      }
      return ResolutionError(absl::StrCat("Multiple revisions start with '", *resolved,
                                          "': ", absl::StrJoin(quoted, ", "), "..."),
                             std::string(*resolved));
    }
    found = g_.Find(matches[0]);
  }
  if (Truthy(check_branch)) {
    absl::StatusOr<bool> shares = SharesLineage(*found, {g_.id(*branch_rev)});
    if (!shares.ok()) return shares.status();
    if (!*shares) {
      return ResolutionError(absl::StrCat("Revision ", g_.id(*found), " is not a member of branch '",
                                          *check_branch, "'"),
                             std::string(*resolved));
    }
  }
  return RevRef::Rev(*found);
}

absl::StatusOr<std::vector<int>> Resolver::FilterForLineage(
    const std::vector<int>& targets, std::optional<absl::string_view> check_against,
    bool include_dependencies) const {
  std::vector<std::string> ids;
  std::optional<std::string> branch;
  absl::Status s = ResolveRevisionNumber(check_against, &ids, &branch);
  if (!s.ok()) return s;
  std::vector<std::string> shares;
  if (Truthy(branch)) shares.push_back(*branch);
  shares.insert(shares.end(), ids.begin(), ids.end());
  std::vector<int> out;
  for (int t : targets) {
    absl::StatusOr<bool> ok = SharesLineage(t, shares, include_dependencies);
    if (!ok.ok()) return ok.status();
    if (*ok) out.push_back(t);
  }
  return out;
}

absl::StatusOr<bool> Resolver::SharesLineage(int target, const std::vector<std::string>& against,
                                             bool include_dependencies) const {
  if (against.empty()) return true;
  std::set<int> wanted;
  for (const std::string& a : against) {
    absl::StatusOr<RevRef> r = RevisionForIdent(a, std::nullopt);
    if (!r.ok()) return r.status();
    if (r->is_rev()) wanted.insert(r->idx);
  }
  for (int x : DescendantsOf({target}, include_dependencies)) {
    if (wanted.count(x)) return true;
  }
  for (int x : AncestorsOf({target}, include_dependencies)) {
    if (wanted.count(x)) return true;
  }
  return false;
}

absl::StatusOr<RevRef> Resolver::Walk(RevRef start, int steps,
                                      std::optional<absl::string_view> branch,
                                      bool no_overwalk) const {
  RevRef initial = start;
  for (int n = 0; n < std::abs(steps); ++n) {
    std::vector<RevRef> children;
    if (steps > 0) {
      if (initial.kind == RevRef::Kind::kBase) {
        return GenericRevisionError("Cannot walk up from base");
      }
      std::vector<int> up;
      if (initial.is_rev()) {
        up.assign(g_.node(initial.idx).next.begin(), g_.node(initial.idx).next.end());
      } else {
        up = g_.bases();
      }
      std::vector<int> kept = up;
      if (Truthy(branch)) {
        absl::StatusOr<std::vector<int>> f = FilterForLineage(up, branch);
        if (!f.ok()) return f.status();
        kept = *std::move(f);
      }
      for (int k : kept) children.push_back(RevRef::Rev(k));
    } else if (initial.kind != RevRef::Kind::kBase) {
      if (initial.is_rev()) {
        for (int k : g_.node(initial.idx).down) children.push_back(RevRef::Rev(k));
      } else {
        for (int k : g_.heads()) children.push_back(RevRef::Rev(k));
      }
      if (children.empty()) children.push_back(RevRef::Base());
    }
    if (children.empty()) return no_overwalk ? RevRef::None() : initial;
    if (children.size() > 1) return GenericRevisionError("Ambiguous walk");
    initial = children[0];
  }
  return initial;
}

absl::StatusOr<std::vector<RevRef>> Resolver::ParseUpgradeTarget(
    const std::vector<std::string>& current, absl::string_view target,
    bool assert_relative_length) const {
  std::optional<RelativeTarget> m = MatchRelative(target);
  if (!m.has_value()) return GetRevisions(target);
  std::optional<absl::string_view> branch;
  if (m->branch.has_value()) branch = *m->branch;
  if (m->steps > 0) {
    if (!m->symbol.has_value()) {
      // Relative to what the database holds now.
      std::vector<RevRef> starts;
      bool from_none = current.empty();
      if (!from_none) {
        for (const std::string& c : current) {
          absl::StatusOr<RevRef> r = GetRevision(c);
          if (!r.ok()) return r.status();
          starts.push_back(*r);
        }
      } else {
        starts.push_back(RevRef::None());
      }
      if (Truthy(branch)) {
        absl::StatusOr<std::vector<RevRef>> revs = GetRevisions(current);
        if (!revs.ok()) return revs.status();
        std::vector<int> idx;
        for (const RevRef& r : *revs) {
          if (r.is_rev()) idx.push_back(r.idx);
        }
        absl::StatusOr<std::vector<int>> on_branch = FilterForLineage(idx, branch);
        if (!on_branch.ok()) return on_branch.status();
        starts.clear();
        for (int i : *on_branch) starts.push_back(RevRef::Rev(i));
        if (starts.empty()) {
          // The branch is not among the current heads: start from the tips
          // of what is applied on that branch.
          absl::StatusOr<std::vector<int>> active =
              FilterForLineage(AncestorsOf(idx), branch);
          if (!active.ok()) return active.status();
          std::set<int> below;
          for (int a : *active) {
            for (int d : g_.node(a).normalized_down) below.insert(d);
          }
          std::set<int> tips;
          for (int a : *active) {
            if (!below.count(a)) tips.insert(a);
          }
          for (int t : tips) starts.push_back(RevRef::Rev(t));
          if (starts.empty()) starts.push_back(RevRef::None());
        }
      }
      if (starts.size() > 1) {
        return GenericRevisionError("Ambiguous upgrade from multiple current revisions");
      }
      absl::StatusOr<RevRef> rev = Walk(starts[0], m->steps, branch, assert_relative_length);
      if (!rev.ok()) return rev.status();
      if (rev->kind == RevRef::Kind::kNone) {
        return GenericRevisionError(RelativeFailure(m->relative, m->steps));
      }
      return std::vector<RevRef>{*rev};
    }
    absl::StatusOr<RevRef> start = GetRevision(*m->symbol);
    if (!start.ok()) return start.status();
    absl::StatusOr<RevRef> rev = Walk(*start, m->steps, branch, assert_relative_length);
    if (!rev.ok()) return rev.status();
    return std::vector<RevRef>{*rev};
  }
  if (!m->symbol.has_value()) {
    return GenericRevisionError(RelativeFailure(std::to_string(m->steps), m->steps));
  }
  absl::StatusOr<RevRef> start =
      GetRevision(m->branch.has_value() ? absl::StrCat(*m->branch, "@", *m->symbol) : *m->symbol);
  if (!start.ok()) return start.status();
  absl::StatusOr<RevRef> rev = Walk(*start, m->steps, std::nullopt, assert_relative_length);
  if (!rev.ok()) return rev.status();
  return std::vector<RevRef>{*rev};
}

absl::StatusOr<std::pair<std::optional<std::string>, RevRef>> Resolver::ParseDowngradeTarget(
    const std::vector<std::string>& current, std::optional<absl::string_view> target,
    bool assert_relative_length) const {
  using Result = std::pair<std::optional<std::string>, RevRef>;
  if (!target.has_value()) return Result{std::nullopt, RevRef::None()};
  std::optional<RelativeTarget> m = MatchRelative(*target);
  if (m.has_value()) {
    std::optional<std::string> branch = m->branch;
    if (m->steps >= 0) {
      if (!m->symbol.has_value()) {
        return GenericRevisionError(RelativeFailure(m->relative, m->steps));
      }
      absl::StatusOr<RevRef> start = GetRevision(*m->symbol);
      if (!start.ok()) return start.status();
      absl::StatusOr<RevRef> rev =
          Walk(*start, m->steps,
               branch.has_value() ? std::optional<absl::string_view>(*branch) : std::nullopt,
               assert_relative_length);
      if (!rev.ok()) return rev.status();
      if (rev->kind == RevRef::Kind::kNone) return GenericRevisionError("Walked too far");
      return Result{branch, *rev};
    }
    bool relative_to_current = !m->symbol.has_value();
    std::string symbol = m->symbol.value_or("");
    if (relative_to_current) {
      if (Truthy(branch)) {
        std::vector<std::string> symbols;
        for (const std::string& c : current) {
          absl::StatusOr<RevRef> r = RevisionForIdent(c, std::nullopt);
          if (!r.ok()) return r.status();
          absl::StatusOr<bool> shares = SharesLineage(r->idx, {*branch});
          if (!shares.ok()) return shares.status();
          if (*shares) symbols.push_back(c);
        }
        if (symbols.empty()) {
          absl::StatusOr<std::vector<int>> all = GetAllCurrent(current);
          if (!all.ok()) return all.status();
          absl::StatusOr<std::vector<int>> on_branch = FilterForLineage(*all, *branch);
          if (!on_branch.ok()) return on_branch.status();
          symbols = g_.Ids(*on_branch);
        }
        if (symbols.size() != 1) {
          return GenericRevisionError(absl::StrCat("Relative revision ", *target,
                                                   " is ambiguous: branch '", *branch,
                                                   "' has ", symbols.size(),
                                                   " current revisions"));
        }
        symbol = symbols[0];
      } else {
        if (current.empty()) return GenericRevisionError(RelativeFailure(m->relative, m->steps));
        symbol = current[0];
        branch = symbol;
      }
    }
    absl::StatusOr<RevRef> start =
        GetRevision(branch.has_value() ? absl::StrCat(*branch, "@", symbol) : symbol);
    if (!start.ok()) return start.status();
    absl::StatusOr<RevRef> rev = Walk(*start, m->steps, std::nullopt, assert_relative_length);
    if (!rev.ok()) return rev.status();
    if (rev->kind == RevRef::Kind::kNone) {
      return GenericRevisionError(relative_to_current ? RelativeFailure(m->relative, m->steps)
                                                      : "Walked too far");
    }
    return Result{branch, *rev};
  }
  std::optional<std::string> branch;
  absl::string_view symbol = *target;
  size_t at = target->rfind('@');
  if (at != absl::string_view::npos) {
    if (at > 0) branch = std::string(target->substr(0, at));
    symbol = target->substr(at + 1);
  }
  absl::StatusOr<RevRef> rev = GetRevision(symbol);
  if (!rev.ok()) return rev.status();
  return Result{branch, *rev};
}

absl::StatusOr<std::vector<int>> Resolver::GetAllCurrent(const std::vector<std::string>& ids) const {
  absl::StatusOr<std::vector<RevRef>> revs = GetRevisions(ids);
  if (!revs.ok()) return revs.status();
  std::vector<int> top;
  for (const RevRef& r : *revs) {
    if (r.is_rev()) top.push_back(r.idx);
  }
  std::vector<int> all = AncestorsOf(top);
  std::set<int> members(all.begin(), all.end());
  std::vector<int> out;
  for (int i = 0; i < g_.size(); ++i) {
    if (!members.count(i)) continue;
    bool has_descendant_member = false;
    for (int d : DescendantsOf({i}, false)) {
      if (d != i && members.count(d)) has_descendant_member = true;
    }
    if (!has_descendant_member) out.push_back(i);
  }
  return out;
}

template <typename Edges>
absl::StatusOr<std::vector<int>> Resolver::Related(const std::vector<int>& targets, Edges edges,
                                                   bool check) const {
  std::vector<char> seen(g_.size(), 0);
  std::vector<int> out;
  std::vector<int> todo;
  std::vector<int> per_target;
  for (int target : targets) {
    todo.push_back(target);
    per_target.clear();
    while (!todo.empty()) {
      int r = todo.back();
      todo.pop_back();
      if (check) per_target.push_back(r);
      if (seen[r]) continue;
      seen[r] = 1;
      for (int x : edges(r)) todo.push_back(x);
      out.push_back(r);
    }
    if (check) {
      std::vector<std::string> overlaps;
      std::set<int> reported;
      for (int p : per_target) {
        if (p == target || reported.count(p)) continue;
        if (std::find(targets.begin(), targets.end(), p) != targets.end()) {
          reported.insert(p);
          overlaps.push_back(g_.id(p));
        }
      }
      if (!overlaps.empty()) {
        // Alembic lists these from a set (no defined order): sorted here.
        std::sort(overlaps.begin(), overlaps.end());
        return GenericRevisionError(absl::StrCat("Requested revision ", g_.id(target),
                                                 " overlaps with other requested revisions ",
                                                 absl::StrJoin(overlaps, ", ")));
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<int>> Resolver::Ancestors(const std::vector<int>& targets,
                                                     bool include_dependencies, bool check) const {
  if (include_dependencies) {
    return Related(targets, [this](int r) -> const RevisionGraph::Edges& {
      return g_.node(r).normalized_down;
    }, check);
  }
  return Related(targets, [this](int r) -> const RevisionGraph::Edges& { return g_.node(r).down; },
                 check);
}

absl::StatusOr<std::vector<int>> Resolver::Descendants(const std::vector<int>& targets,
                                                       bool include_dependencies,
                                                       bool check) const {
  if (include_dependencies) {
    return Related(targets, [this](int r) -> const RevisionGraph::Edges& {
      return g_.node(r).all_next;
    }, check);
  }
  return Related(targets, [this](int r) -> const RevisionGraph::Edges& { return g_.node(r).next; },
                 check);
}

std::vector<int> Resolver::AncestorsOf(const std::vector<int>& targets,
                                       bool include_dependencies) const {
  return *Ancestors(targets, include_dependencies, false);
}

std::vector<int> Resolver::DescendantsOf(const std::vector<int>& targets,
                                         bool include_dependencies) const {
  return *Descendants(targets, include_dependencies, false);
}

}  // namespace lockstep::migrations
