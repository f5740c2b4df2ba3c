// Judging schemas: is each database's real schema the one its version rows
// claim?
//
// The judge is the expected schema (what Alembic builds for those revisions
// on an empty database) when there is one: `match` or `drift` against it.
// Without one, the judge is the cohort: the databases of one dialect that hold the same version rows must
// share one schema (one fingerprint). When more than half of a cohort agree,
// that schema is the expected one: they `match`, and every other member is
// `drift`, with the differences against it. A database alone at its
// revisions, or a cohort with no majority, is `unknown`, and says why.
#ifndef LOCKSTEP_DAEMON_CORE_SCHEMA_CHECK_H_
#define LOCKSTEP_DAEMON_CORE_SCHEMA_CHECK_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/model/fleet.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

// One database's schema as last read.
struct SchemaSample {
  std::string key;                      // "env/name"
  std::string dialect;                  // "sqlite", "postgresql"
  std::vector<std::string> revisions;   // its version rows when read
  std::shared_ptr<const Schema> schema;  // null when it could not be read
  std::string fingerprint;              // of `schema`
  std::string error;                    // why it could not be read
};

// What Alembic builds for a revision set on an empty database (the
// reconciler gets it from ShadowSchemas), or why it could not be built.
struct ExpectedSchema {
  std::shared_ptr<const Schema> schema;  // null when it could not be built
  std::string fingerprint;
  std::string error;
};
// By dialect and revision set.
using ExpectedSchemas =
    std::map<std::pair<std::string, std::vector<std::string>>, ExpectedSchema>;

// The verdict for every sample, by key: against the expected schema of its
// dialect and revisions when there is one, else against its cohort.
std::map<std::string, SchemaStatus> JudgeCohorts(const std::vector<SchemaSample>& samples,
                                                 const ExpectedSchemas& expected = {});

// Which revision set's expected schema `found` is: exactly one (the first
// in `candidates` order when several build the same schema), else the
// closest (fewest differences; ties: the first). Candidates that could not
// be built are skipped. Fills the three matching fields of `status`.
void MatchRevision(
    const Schema& found,
    const std::vector<std::pair<std::vector<std::string>, ExpectedSchema>>& candidates,
    SchemaStatus* status);

// "table orders missing; column users.age unexpected; and 3 more".
std::string DescribeDifferences(const std::vector<SchemaDifference>& differences, size_t show = 3);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_CORE_SCHEMA_CHECK_H_
