#include "daemon/core/schema_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::shared_ptr<const Schema> WithTables(const std::vector<std::string>& tables) {
  auto s = std::make_shared<Schema>();
  for (const std::string& t : tables) s->tables[t].columns["id"] = {.type = "INTEGER"};
  return s;
}

SchemaSample Sample(const std::string& key, const std::vector<std::string>& revisions,
                    std::shared_ptr<const Schema> schema, const std::string& dialect = "sqlite") {
  SchemaSample s{key, dialect, revisions, schema, "", ""};
  if (schema) s.fingerprint = SchemaFingerprint(*schema);
  return s;
}

TEST(JudgeCohortsTest, TheMajorityOfACohortIsTheExpectedSchema) {
  auto full = WithTables({"orders", "users"});
  std::vector<SchemaSample> samples = {
      Sample("prod/t1", {"e9a8"}, full),
      Sample("prod/t2", {"e9a8"}, full),
      Sample("prod/t3", {"e9a8"}, WithTables({"users"})),  // "applied", table missing
      Sample("staging/t1", {"e9a8"}, full),
      // The same rows on another dialect are another cohort.
      Sample("prod/pg", {"e9a8"}, WithTables({"users"}), "postgresql"),
  };
  std::map<std::string, SchemaStatus> v = JudgeCohorts(samples);
  EXPECT_EQ(NameOf(v["prod/t1"].state), "match");
  EXPECT_EQ(v["prod/t1"].reason, "same schema as the 2 other sqlite databases at e9a8");
  EXPECT_EQ(NameOf(v["prod/t3"].state), "drift");
  EXPECT_EQ(v["prod/t3"].reason,
            "schema differs from the 3 sqlite databases at e9a8 that agree: table orders missing");
  ASSERT_EQ(v["prod/t3"].differences.size(), 1u);
  EXPECT_EQ(v["prod/t3"].differences[0].change, "missing");
  EXPECT_THAT(v["prod/t1"].differences, IsEmpty());
  EXPECT_EQ(NameOf(v["prod/pg"].state), "unknown");
  EXPECT_EQ(v["prod/pg"].reason,
            "no other postgresql database at e9a8 to compare its schema with");
}

TEST(JudgeCohortsTest, NoMajorityAndUnreadableSchemasAreUnknownAndSaySo) {
  std::vector<SchemaSample> samples = {
      Sample("dev/a", {}, WithTables({"x"})),
      Sample("dev/b", {}, WithTables({"y"})),
      Sample("dev/c", {"b5d1"}, nullptr),
  };
  samples[2].error = "cannot read its schema: disk I/O error";
  std::map<std::string, SchemaStatus> v = JudgeCohorts(samples);
  EXPECT_EQ(NameOf(v["dev/a"].state), "unknown");
  EXPECT_EQ(v["dev/a"].reason,
            "the 2 sqlite databases with no version rows hold 2 different schemas, and no "
            "majority agrees");
  EXPECT_EQ(NameOf(v["dev/c"].state), "unknown");
  EXPECT_EQ(v["dev/c"].reason, "cannot read its schema: disk I/O error");
}

// An expected schema (what Alembic builds) outranks the cohort: even a
// majority that lacks a table is drift.
TEST(JudgeCohortsTest, TheExpectedSchemaOutranksTheCohort) {
  auto full = WithTables({"orders", "users"});
  auto partial = WithTables({"users"});
  ExpectedSchemas expected;
  expected[{"sqlite", {"e9a8"}}] = {full, SchemaFingerprint(*full), ""};
  expected[{"sqlite", {}}] = {std::make_shared<Schema>(), SchemaFingerprint(Schema{}), ""};
  expected[{"sqlite", {"b5d1"}}] = {nullptr, "", "Alembic could not build b5d1: exit 1"};
  std::vector<SchemaSample> samples = {
      Sample("prod/t1", {"e9a8"}, partial), Sample("prod/t2", {"e9a8"}, partial),
      Sample("prod/t3", {"e9a8"}, full),    Sample("prod/base", {}, full),
      Sample("prod/b", {"b5d1"}, full),
  };
  std::map<std::string, SchemaStatus> v = JudgeCohorts(samples, expected);
  EXPECT_EQ(NameOf(v["prod/t1"].state), "drift");
  EXPECT_EQ(v["prod/t1"].reason, "not the schema Alembic builds for e9a8: table orders missing");
  EXPECT_EQ(NameOf(v["prod/t3"].state), "match");
  EXPECT_EQ(v["prod/t3"].reason, "the schema Alembic builds for e9a8 on an empty sqlite database");
  EXPECT_EQ(NameOf(v["prod/base"].state), "drift");
  EXPECT_EQ(v["prod/base"].reason,
            "no version rows, yet not empty (stamped base, or its rows deleted?): table orders "
            "unexpected; table users unexpected");
  EXPECT_EQ(NameOf(v["prod/b"].state), "unknown");
  EXPECT_EQ(v["prod/b"].reason,
            "no other sqlite database at b5d1 to compare its schema with (no expected schema: "
            "Alembic could not build b5d1: exit 1)");
}

ExpectedSchema Built(std::shared_ptr<const Schema> schema) {
  return {schema, SchemaFingerprint(*schema), ""};
}

TEST(MatchRevisionTest, ExactThenClosestAndUnbuildableCandidatesAreSkipped) {
  std::vector<std::pair<std::vector<std::string>, ExpectedSchema>> candidates = {
      {{"3f2a"}, Built(WithTables({"users"}))},
      {{"b5d1"}, ExpectedSchema{nullptr, "", "needs data"}},
      {{"7c4e"}, Built(WithTables({"users", "orders"}))},
      {{"e9a8"}, Built(WithTables({"users", "orders", "invoices"}))},
  };
  SchemaStatus st;
  MatchRevision(*WithTables({"orders", "users"}), candidates, &st);
  EXPECT_THAT(st.matches_revisions, ElementsAre("7c4e"));
  EXPECT_THAT(st.closest_revisions, IsEmpty());

  // users, orders and a hand-made table: one difference from 7c4e.
  MatchRevision(*WithTables({"orders", "users", "audit"}), candidates, &st);
  EXPECT_THAT(st.matches_revisions, IsEmpty());
  EXPECT_THAT(st.closest_revisions, ElementsAre("7c4e"));
  EXPECT_EQ(st.closest_differences, 1);

  // Nothing buildable: neither.
  MatchRevision(*WithTables({"users"}), {{{"b5d1"}, ExpectedSchema{nullptr, "", "x"}}}, &st);
  EXPECT_THAT(st.matches_revisions, IsEmpty());
  EXPECT_THAT(st.closest_revisions, IsEmpty());
}

TEST(DescribeDifferencesTest, ShowsTheFirstFewAndCountsTheRest) {
  std::vector<SchemaDifference> d = {{"table", "a", "missing", "", ""},
                                     {"table", "b", "missing", "", ""},
                                     {"table", "c", "unexpected", "", ""},
                                     {"table", "d", "unexpected", "", ""}};
  EXPECT_EQ(DescribeDifferences(d, 2), "table a missing; table b missing; and 2 more");
  EXPECT_EQ(DescribeDifferences({}, 2), "");
}

}  // namespace
}  // namespace lockstep::daemon
