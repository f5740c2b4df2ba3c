#include "daemon/core/schema_check.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lockstep::daemon {
namespace {

// "at e9a8c6b4d244", "with no version rows".
std::string Where(const std::vector<std::string>& revisions) {
  return revisions.empty() ? "with no version rows"
                           : absl::StrCat("at ", absl::StrJoin(revisions, ", "));
}

std::string Others(size_t n, const std::string& dialect, const std::string& where) {
  return absl::StrCat(n, " other ", dialect, n == 1 ? " database " : " databases ", where);
}

}  // namespace

std::string DescribeDifferences(const std::vector<SchemaDifference>& differences, size_t show) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < differences.size() && i < show; ++i) parts.push_back(Describe(differences[i]));
  std::string out = absl::StrJoin(parts, "; ");
  if (differences.size() > show) absl::StrAppend(&out, "; and ", differences.size() - show, " more");
  return out;
}

std::map<std::string, SchemaStatus> JudgeCohorts(const std::vector<SchemaSample>& samples,
                                                 const ExpectedSchemas& expected) {
  std::map<std::string, SchemaStatus> out;
  // Cohorts: dialect and version rows; members that could be read.
  std::map<std::pair<std::string, std::vector<std::string>>, std::vector<const SchemaSample*>>
      cohorts;
  for (const SchemaSample& s : samples) {
    SchemaStatus& st = out[s.key];
    st.fingerprint = s.fingerprint;
    if (s.schema == nullptr) {
      st.state = SchemaState::kUnknown;
      st.reason = s.error;
      continue;
    }
    cohorts[{s.dialect, s.revisions}].push_back(&s);
  }
  for (const auto& [cohort, members] : cohorts) {
    const std::string& dialect = cohort.first;
    const std::string where = Where(cohort.second);
    auto built = expected.find(cohort);
    if (built != expected.end() && built->second.schema != nullptr) {
      const ExpectedSchema& e = built->second;
      for (const SchemaSample* m : members) {
        SchemaStatus& st = out[m->key];
        if (m->fingerprint == e.fingerprint) {
          st.state = SchemaState::kMatch;
          st.reason = cohort.second.empty()
                          ? "empty, as a database without version rows should be"
                          : absl::StrCat("the schema Alembic builds for ",
                                         absl::StrJoin(cohort.second, ", "), " on an empty ",
                                         dialect, " database");
          continue;
        }
        st.state = SchemaState::kDrift;
        st.differences = Diff(*e.schema, *m->schema);
        st.reason = cohort.second.empty()
                        ? absl::StrCat("no version rows, yet not empty (stamped base, or its rows "
                                       "deleted?): ",
                                       DescribeDifferences(st.differences))
                        : absl::StrCat("not the schema Alembic builds for ",
                                       absl::StrJoin(cohort.second, ", "), ": ",
                                       DescribeDifferences(st.differences));
      }
      continue;
    }
    // No expected schema: the cohort judges; an unknown verdict says why
    // there was none.
    const std::string no_expected =
        built == expected.end() ? "" : absl::StrCat(" (no expected schema: ", built->second.error, ")");
    std::map<std::string, std::vector<const SchemaSample*>> by_print;
    for (const SchemaSample* m : members) by_print[m->fingerprint].push_back(m);
    if (members.size() == 1) {
      out[members[0]->key].reason = absl::StrCat("no other ", dialect, " database ", where,
                                                 " to compare its schema with", no_expected);
      continue;
    }
    const std::vector<const SchemaSample*>* majority = nullptr;
    for (const auto& [print, group] : by_print) {
      if (group.size() * 2 > members.size()) majority = &group;
    }
    if (majority == nullptr) {
      for (const SchemaSample* m : members) {
        out[m->key].reason = absl::StrCat("the ", members.size(), " ", dialect, " databases ",
                                          where, " hold ", by_print.size(),
                                          " different schemas, and no majority agrees",
                                          no_expected);
      }
      continue;
    }
    const SchemaSample& model = *majority->front();
    for (const SchemaSample* m : members) {
      SchemaStatus& st = out[m->key];
      if (m->fingerprint == model.fingerprint) {
        st.state = SchemaState::kMatch;
        st.reason = absl::StrCat("same schema as the ", Others(majority->size() - 1, dialect, where));
        continue;
      }
      st.state = SchemaState::kDrift;
      st.differences = Diff(*model.schema, *m->schema);
      st.reason = absl::StrCat("schema differs from the ", majority->size(), " ", dialect,
                               " databases ", where, " that agree: ",
                               DescribeDifferences(st.differences));
    }
  }
  return out;
}

void MatchRevision(
    const Schema& found,
    const std::vector<std::pair<std::vector<std::string>, ExpectedSchema>>& candidates,
    SchemaStatus* status) {
  status->matches_revisions.clear();
  status->closest_revisions.clear();
  status->closest_differences = 0;
  const std::string fingerprint = SchemaFingerprint(found);
  size_t fewest = SIZE_MAX;
  for (const auto& [revisions, expected] : candidates) {
    if (expected.schema == nullptr) continue;
    if (expected.fingerprint == fingerprint) {
      status->matches_revisions = revisions;
      status->closest_revisions.clear();
      status->closest_differences = 0;
      return;
    }
    const size_t n = Diff(*expected.schema, found).size();
    if (n < fewest) {
      fewest = n;
      status->closest_revisions = revisions;
      status->closest_differences = static_cast<int>(n);
    }
  }
}

}  // namespace lockstep::daemon
