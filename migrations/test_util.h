// Helpers for the migrations unit tests: graphs from a compact description.
#ifndef LOCKSTEP_MIGRATIONS_TEST_UTIL_H_
#define LOCKSTEP_MIGRATIONS_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "migrations/resolver.h"
#include "migrations/revision_graph.h"

namespace lockstep::migrations::testing {

struct Rev {
  std::string id;
  std::vector<std::string> down;
  std::vector<std::string> labels = {};
  std::vector<std::string> deps = {};
};

inline absl::StatusOr<RevisionGraph> BuildGraph(const std::vector<Rev>& revs) {
  std::vector<RevisionFile> files;
  for (const Rev& r : revs) {
    RevisionFile f;
    f.revision = r.id;
    f.filename = r.id + "_.py";
    f.path = "/versions/" + f.filename;
    f.down_revisions = r.down;
    f.branch_labels = r.labels;
    f.depends_on = r.deps;
    f.doc = "rev " + r.id;
    f.long_doc = f.doc;
    files.push_back(f);
  }
  return RevisionGraph::Build(files);
}

// ALEMBIC.md case 4 (Alembic's test_revision.py): two roots, two labels.
inline std::vector<Rev> LabelsCase() {
  return {{"a", {}, {"abranch"}},
          {"b", {"a"}},
          {"somelongername", {"b"}},
          {"c", {"somelongername"}},
          {"d", {}},
          {"e", {"d"}, {"ebranch"}},
          {"someothername", {"e"}},
          {"f", {"someothername"}}};
}

// Ids of `idx` in `g`.
inline std::vector<std::string> Ids(const RevisionGraph& g, const std::vector<int>& idx) {
  return g.Ids(idx);
}

MATCHER_P(StatusHasMessage, message, "") { return !arg.ok() && arg.message() == message; }

}  // namespace lockstep::migrations::testing

#endif  // LOCKSTEP_MIGRATIONS_TEST_UTIL_H_
