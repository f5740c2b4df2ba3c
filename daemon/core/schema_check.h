// Judging schemas: is each database's real schema the one its version rows
// claim?
//
// Without an expected schema built from the scripts, the judge is the
// cohort: the databases of one dialect that hold the same version rows must
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

// The verdict for every sample, by key.
std::map<std::string, SchemaStatus> JudgeCohorts(const std::vector<SchemaSample>& samples);

// "table orders missing; column users.age unexpected; and 3 more".
std::string DescribeDifferences(const std::vector<SchemaDifference>& differences, size_t show = 3);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_CORE_SCHEMA_CHECK_H_
