#include "migrations/migration_plan.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "migrations/revision_error.h"
#include "migrations/traversal.h"

namespace lockstep::migrations {
namespace {

// The version rows while steps apply; insertion-ordered like a small set.
class Heads {
 public:
  explicit Heads(const std::vector<std::string>& rows) {
    for (const std::string& r : rows) Add(r);
  }
  bool Has(const std::string& r) const { return std::find(v_.begin(), v_.end(), r) != v_.end(); }
  void Add(const std::string& r) {
    if (!Has(r)) v_.push_back(r);
  }
  void Remove(const std::string& r) { v_.erase(std::remove(v_.begin(), v_.end(), r), v_.end()); }
  const std::vector<std::string>& rows() const { return v_; }

 private:
  std::vector<std::string> v_;
};

class StepApplier {
 public:
  StepApplier(const Resolver& r, const std::vector<std::string>& rows) : r_(r), heads_(rows) {}

  // Where Alembic itself would fail applying the steps so far (the first).
  const absl::Status& error() const { return error_; }

  MigrationStep Apply(int rev, bool upgrade) {
    const RevisionGraph& g = r_.graph();
    const RevisionGraph::Node& node = g.node(rev);
    const std::string& id = node.id();
    std::vector<std::string> down = g.Ids(node.normalized_down);
    MigrationStep step;
    step.revision = rev;
    step.upgrade = upgrade;
    auto present = [&](const std::vector<std::string>& ids) {
      std::vector<std::string> out;
      for (const std::string& d : ids) {
        if (heads_.Has(d)) out.push_back(d);
      }
      return out;
    };
    if (upgrade) {
      std::vector<std::string> present_down = present(down);
      if (down.empty() || present_down.empty()) {
        Insert(id, &step);
      } else if (down.size() > 1 && present_down.size() > 1) {
        // Merge: parents that another remaining row already implies stay
        // implied; of the rest, all but the last are deleted. Alembic's
        // HeadMaintainer removes each of those from its rows: one that is
        // not a row then (a parent another parent already includes) makes
        // it fail (KeyError), so the plan fails there too.
        std::vector<std::string> from = MinusAncestorsOfOthers(down, /*exclude=*/down);
        std::vector<std::string> absent;
        for (const std::string& f : from) {
          if (!heads_.Has(f)) absent.push_back(f);
        }
        if ((from.empty() || !absent.empty()) && error_.ok()) {
          error_ = GenericRevisionError(absl::StrCat(
              "Alembic cannot run merge ", id, " from these version rows: ",
              from.empty() ? std::string("every parent is included by another row")
                           : absl::StrCat("its parent ", absl::StrJoin(absent, ", "),
                                          absent.size() == 1 ? " is" : " are",
                                          " not a version row then (another parent includes ",
                                          absent.size() == 1 ? "it" : "them", ")"),
              ", and Alembic's merge step fails on that (KeyError in its HeadMaintainer); "
              "take the redundant parent out of down_revision"));
        }
        std::vector<std::string> from_present = present(from);
        if (from_present.empty()) from_present = present_down;
        for (size_t k = 0; k + 1 < from_present.size(); ++k) Delete(from_present[k], &step);
        Update(from_present.back(), id, &step);
      } else {
        Update(present_down[0], id, &step);
      }
    } else {
      bool holds = heads_.Has(id);
      std::vector<std::string> to = UnmergeTo(down, id);
      if (holds && (down.empty() || to.empty())) {
        Delete(id, &step);
      } else if (holds && down.size() > 1) {
        for (size_t k = 0; k + 1 < to.size(); ++k) Insert(to[k], &step);
        Update(id, to.back(), &step);
      } else {
        std::string target = down.size() == 1 ? down[0] : "";
        if (down.size() != 1) {
          std::vector<std::string> p = present(down);
          if (!p.empty()) target = p[0];
        }
        Update(id, target, &step);
      }
    }
    step.rows_after = heads_.rows();
    std::sort(step.rows_after.begin(), step.rows_after.end());
    return step;
  }

 private:
  // Alembic's `_unmerge_to_revisions`: parents not implied by other rows.
  std::vector<std::string> UnmergeTo(const std::vector<std::string>& down, const std::string& id) {
    return MinusAncestorsOfOthers(down, {id});
  }

  // `candidates` minus the ancestors of every row outside `exclude`.
  std::vector<std::string> MinusAncestorsOfOthers(const std::vector<std::string>& candidates,
                                                  const std::vector<std::string>& exclude) {
    std::vector<int> others;
    for (const std::string& h : heads_.rows()) {
      if (std::find(exclude.begin(), exclude.end(), h) != exclude.end()) continue;
      if (std::optional<int> n = r_.graph().Find(h)) others.push_back(*n);
    }
    if (others.empty()) return candidates;
    std::set<std::string> implied;
    for (int a : r_.AncestorsOf(others, true)) implied.insert(r_.graph().id(a));
    std::vector<std::string> out;
    for (const std::string& c : candidates) {
      if (!implied.count(c)) out.push_back(c);
    }
    return out;
  }

  void Insert(const std::string& to, MigrationStep* step) {
    heads_.Add(to);
    step->changes.push_back({VersionChange::Kind::kInsert, "", to});
  }
  void Delete(const std::string& from, MigrationStep* step) {
    heads_.Remove(from);
    step->changes.push_back({VersionChange::Kind::kDelete, from, ""});
  }
  void Update(const std::string& from, const std::string& to, MigrationStep* step) {
    heads_.Remove(from);
    heads_.Add(to);
    step->changes.push_back({VersionChange::Kind::kUpdate, from, to});
  }

  const Resolver& r_;
  Heads heads_;
  absl::Status error_;
};

}  // namespace

std::string VersionChange::ToSql(absl::string_view table) const {
  switch (kind) {
    case Kind::kInsert:
      return absl::StrCat("INSERT INTO ", table, " (version_num) VALUES ('", to, "')");
    case Kind::kDelete:
      return absl::StrCat("DELETE FROM ", table, " WHERE ", table, ".version_num = '", from, "'");
    case Kind::kUpdate:
      return absl::StrCat("UPDATE ", table, " SET version_num='", to, "' WHERE ", table,
                          ".version_num = '", from, "'");
  }
  return "";
}

absl::StatusOr<std::vector<MigrationStep>> PlanUpgrade(const Resolver& resolver,
                                                       const std::vector<std::string>& rows,
                                                       absl::string_view destination) {
  IterateOptions options;
  options.implicit_base = true;
  absl::StatusOr<std::vector<int>> revs =
      IterateRevisions(resolver, RevisionSpec::Identifier(std::string(destination)),
                       RevisionSpec::Rows(rows), options);
  if (!revs.ok()) return revs.status();
  StepApplier applier(resolver, rows);
  std::vector<MigrationStep> steps;
  for (auto it = revs->rbegin(); it != revs->rend(); ++it) steps.push_back(applier.Apply(*it, true));
  if (!applier.error().ok()) return applier.error();
  return steps;
}

absl::StatusOr<std::vector<MigrationStep>> PlanDowngrade(const Resolver& resolver,
                                                         const std::vector<std::string>& rows,
                                                         absl::string_view destination) {
  IterateOptions options;
  options.select_for_downgrade = true;
  absl::StatusOr<std::vector<int>> revs =
      IterateRevisions(resolver, RevisionSpec::Rows(rows),
                       RevisionSpec::Identifier(std::string(destination)), options);
  if (!revs.ok()) return revs.status();
  StepApplier applier(resolver, rows);
  std::vector<MigrationStep> steps;
  for (int rev : *revs) steps.push_back(applier.Apply(rev, false));
  return steps;
}

CommandErrorContext UpgradeErrorContext(absl::string_view destination) {
  CommandErrorContext c;
  c.ancestor = "Destination %(end)s is not a valid upgrade target from current head(s)";
  c.end = std::string(destination);
  return c;
}

CommandErrorContext DowngradeErrorContext(absl::string_view destination) {
  CommandErrorContext c;
  c.ancestor = "Destination %(end)s is not a valid downgrade target from current head(s)";
  c.end = std::string(destination);
  return c;
}

}  // namespace lockstep::migrations
