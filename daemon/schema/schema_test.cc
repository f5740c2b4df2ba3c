#include "daemon/schema/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/schema/schema_json.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;

TEST(SchemaNormalizeTest, TypesAndExpressions) {
  EXPECT_EQ(NormalizeType("varchar ( 20 )"), "VARCHAR(20)");
  EXPECT_EQ(NormalizeType("numeric(10,2)"), "NUMERIC(10, 2)");
  EXPECT_EQ(NormalizeType("  double   precision "), "DOUBLE PRECISION");
  EXPECT_EQ(NormalizeType(""), "");
  EXPECT_EQ(NormalizeExpression("((age > 0))"), "age > 0");
  EXPECT_EQ(NormalizeExpression("('pending')"), "'pending'");
  EXPECT_EQ(NormalizeExpression("'two  spaces'  ||  x"), "'two  spaces' || x");
  EXPECT_EQ(NormalizeExpression("(a) + (b)"), "(a) + (b)");  // not one pair around it all
  EXPECT_EQ(NormalizeExpression("lower( email )"), "lower(email)");
  EXPECT_EQ(NormalizeExpression("status IN ('a','b')"), "status IN ('a', 'b')");
}

Schema Users() {
  Schema s;
  SchemaTable& t = s.tables["users"];
  t.columns["id"] = {.type = "INTEGER", .not_null = true};
  t.columns["email"] = {.type = "VARCHAR(255)", .not_null = true};
  t.primary_key = {"id"};
  t.indexes["ix_users_email"] = {.columns = {"email"}, .unique = true};
  s.tables["orders"].columns["id"] = {.type = "INTEGER", .not_null = true};
  s.tables["orders"].foreign_keys.push_back({{"user_id"}, "users", {"id"}, "", "CASCADE"});
  return s;
}

TEST(SchemaTest, TheTextAndFingerprintAreStableAndFollowEveryChange) {
  Schema a = Users();
  EXPECT_EQ(SchemaText(a),
            "table orders\n"
            "table orders column id INTEGER NOT NULL\n"
            "table orders foreign key (user_id) REFERENCES users (id) ON DELETE CASCADE\n"
            "table users\n"
            "table users column email VARCHAR(255) NOT NULL\n"
            "table users column id INTEGER NOT NULL\n"
            "table users primary key (id)\n"
            "table users index ix_users_email UNIQUE (email)\n");
  EXPECT_EQ(SchemaFingerprint(a), SchemaFingerprint(Users()));
  EXPECT_EQ(SchemaFingerprint(a).size(), 64u);
  Schema b = Users();
  b.tables["users"].columns["email"].not_null = false;
  EXPECT_NE(SchemaFingerprint(a), SchemaFingerprint(b));
}

TEST(SchemaJsonTest, EveryKindOfObjectComesBackTheSame) {
  Schema a = Users();
  SchemaTable& t = a.tables["orders"];
  t.columns["total"] = {.type = "NUMERIC(10, 2)", .default_value = "0", .generated = true};
  t.indexes["ix_open"] = {.columns = {"lower(status)"}, .where = "status <> 'done'"};
  t.uniques = {{"id", "user_id"}};
  t.checks = {"total >= 0"};
  t.primary_key = {"id"};
  a.views["v_open"] = "SELECT id FROM orders";
  a.triggers["t_audit"] = "CREATE TRIGGER t_audit ...";
  a.enums["mood"] = {"sad", "ok", "happy"};
  a.sequences["orders_id_seq"] = "bigint";
  absl::StatusOr<Schema> back = SchemaFromJson(SchemaToJson(a));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, a);
  EXPECT_EQ(SchemaFingerprint(*back), SchemaFingerprint(a));
  EXPECT_EQ(SchemaFromJson("{\"tables\": 3}").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(SchemaFromJson("not json").status().code(), absl::StatusCode::kDataLoss);
}

TEST(SchemaTest, DiffNamesWhatAPersonCanActOn) {
  Schema expected = Users();
  expected.tables["users"].columns["status"] = {.type = "VARCHAR(20)", .not_null = true};
  Schema found = Users();
  found.tables.erase("orders");
  found.tables["users"].columns["status"] = {.type = "TEXT", .not_null = true};
  found.tables["users"].columns["nickname"] = {.type = "VARCHAR(50)"};
  found.tables["users"].indexes.clear();
  found.tables["users"].uniques.push_back({"email"});
  found.views["active_users"] = "CREATE VIEW active_users AS SELECT 1";
  std::vector<std::string> lines;
  for (const SchemaDifference& d : Diff(expected, found)) lines.push_back(Describe(d));
  EXPECT_THAT(lines, ElementsAre("table orders missing",
                                 "column users.status differs: VARCHAR(20) NOT NULL expected, "
                                 "TEXT NOT NULL found",
                                 "column users.nickname unexpected",
                                 "index ix_users_email missing",
                                 "unique users (email) unexpected",
                                 "view active_users unexpected"));
  EXPECT_THAT(Diff(expected, expected), ElementsAre());
}

}  // namespace
}  // namespace lockstep::daemon
