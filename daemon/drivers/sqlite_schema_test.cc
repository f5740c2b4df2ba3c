#include "daemon/drivers/sqlite_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <fstream>

#include "daemon/drivers/sqlite_driver.h"
#include "tests/support/alembic.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kHead[] = "e9a8c6b4d244";

class SqliteSchemaTest : public ::testing::Test {
 protected:
  // A SQLite file the real Alembic upgraded to `revision`.
  std::string Migrated(const std::string& name, const std::string& revision) {
    const std::string path = dir_ + "/" + name + ".db";
    std::string out;
    EXPECT_EQ(lockstep::testing::RunAlembic(lockstep::testing::ExampleProjectDir() + "/alembic.ini",
                                            "sqlite:///" + path, {"upgrade", revision}, &out),
              0)
        << out;
    return path;
  }
  Schema Read(const std::string& path, const SchemaFilter& filter = {}) {
    VersionTarget t;
    t.name = "dev/" + path;
    auto url = config::ParseDatabaseUrl("sqlite:///" + path);
    EXPECT_TRUE(url.ok());
    t.url = *url;
    absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, filter);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->schema : Schema{};
  }
  std::vector<std::string> Differences(const Schema& expected, const Schema& found) {
    std::vector<std::string> out;
    for (const SchemaDifference& d : Diff(expected, found)) out.push_back(Describe(d));
    return out;
  }
  void Sql(const std::string& path, const std::string& sql) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(sql);
  }

  lockstep::testing::TempDir tmp_{"lockstep-schema"};
  std::string dir_ = tmp_.path();
  std::unique_ptr<Driver> driver_ = MakeSqliteDriver({});
};

// What the example project builds, read as lockstep reads it: batch mode's
// table rebuilds (7c4e2d8a9b22, c2e4a6b8d055) leave no trace, and the
// version table is not part of the schema.
TEST_F(SqliteSchemaTest, TheExampleProjectAtHeadReadsAsItsMigrationsMadeIt) {
  Schema s = Read(Migrated("a", "heads"));
  EXPECT_EQ(SchemaText(s),
            "table orders\n"
            "table orders column id INTEGER NOT NULL\n"
            "table orders column status VARCHAR(20) NOT NULL DEFAULT 'new'\n"
            "table orders column total_cents INTEGER NOT NULL DEFAULT '0'\n"
            "table orders column user_id INTEGER NOT NULL\n"
            "table orders primary key (id)\n"
            "table orders index ix_orders_user_id (user_id)\n"
            "table orders foreign key (user_id) REFERENCES users (id)\n"
            "table users\n"
            "table users column age INTEGER NULL\n"
            "table users column email VARCHAR(255) NOT NULL\n"
            "table users column id INTEGER NOT NULL\n"
            "table users column name VARCHAR(100) NOT NULL\n"
            "table users primary key (id)\n"
            "table users index ix_users_name (name)\n"
            "table users unique (email)\n");
}

// Zero false positives: every database Alembic brought to one revision
// reads the same, whatever path it took there.
TEST_F(SqliteSchemaTest, DatabasesAtOneRevisionShareOneFingerprint) {
  const std::string direct = Migrated("direct", "heads");
  const std::string stepwise = Migrated("stepwise", "3f2a1b9c0d11");
  Migrated("stepwise", "7c4e2d8a9b22");
  Migrated("stepwise", "heads");
  EXPECT_EQ(SchemaFingerprint(Read(direct)), SchemaFingerprint(Read(stepwise)));
  EXPECT_THAT(Differences(Read(direct), Read(stepwise)), IsEmpty());
  EXPECT_NE(SchemaFingerprint(Read(direct)), SchemaFingerprint(Read(Migrated("old", "b5d1e7f3a033"))));
}

// The article's failures: "applied" but the table is missing, a column
// added by hand, a type changed, an index dropped.
TEST_F(SqliteSchemaTest, WhatWasChangedByHandIsNamed) {
  const Schema expected = Read(Migrated("ref", "heads"));
  const std::string db = Migrated("t1", "heads");
  Sql(db, "DROP TABLE orders");
  Sql(db, "ALTER TABLE users ADD COLUMN nickname VARCHAR(50)");
  Sql(db, "DROP INDEX ix_users_name");
  Sql(db, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT CHECK (length(body) < 500))");
  EXPECT_THAT(Differences(expected, Read(db)),
              ElementsAre("table orders missing", "column users.nickname unexpected",
                          "index ix_users_name missing", "table notes unexpected"));
  Schema notes = Read(db);
  EXPECT_THAT(notes.tables["notes"].checks, ElementsAre("length(body) < 500"));
  // Objects a team manages by hand are left out by name.
  SchemaFilter filter;
  filter.ignore = {"not*"};
  EXPECT_EQ(Read(db, filter).tables.count("notes"), 0u);
}

// The version rows come from the same read transaction as the schema.
TEST_F(SqliteSchemaTest, TheVersionRowsAreReadWithTheSchema) {
  VersionTarget t;
  t.url = *config::ParseDatabaseUrl("sqlite:///" + Migrated("rows", "heads"));
  absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->rows, ElementsAre(kHead));
  const std::string empty = dir_ + "/empty.db";
  Sql(empty, "CREATE TABLE t (id INTEGER)");
  t.url = *config::ParseDatabaseUrl("sqlite:///" + empty);
  s = driver_->ReadSchema(t, {});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_THAT(s->rows, IsEmpty());
  EXPECT_EQ(s->schema.tables.count("t"), 1u);
}

// A read while lockstep's flock is held (a step in flight) says so.
TEST_F(SqliteSchemaTest, AReadUnderLockstepsLockSaysWhoHoldsIt) {
  VersionTarget t;
  t.name = "dev/held";
  t.url = *config::ParseDatabaseUrl("sqlite:///" + Migrated("held", "heads"));
  EXPECT_EQ(driver_->ReadSchema(t, {})->locked_by, "");
  auto lock = driver_->Lock(t, t.url, absl::Seconds(5), IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  absl::StatusOr<SchemaSnapshot> held = driver_->ReadSchema(t, {});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_THAT(held->locked_by, ::testing::HasSubstr("this lockstepd (pid "));
}

TEST(SqliteChecksTest, ChecksAreFoundOutsideLiteralsAndNames) {
  EXPECT_THAT(SqliteChecks("CREATE TABLE t (a INT CHECK(a>0), \"check\" TEXT DEFAULT 'CHECK (x)', "
                           "CONSTRAINT ck_b CHECK ( b IN ('x', 'y') ))"),
              ElementsAre("a>0", "b IN ('x', 'y')"));
  EXPECT_THAT(SqliteChecks("CREATE TABLE t (checked INT)"), IsEmpty());
}

TEST_F(SqliteSchemaTest, AFileThatIsNoDatabaseIsAClearError) {
  const std::string path = dir_ + "/junk.db";
  { std::ofstream(path) << std::string(4096, 'x'); }
  VersionTarget t;
  t.url = *config::ParseDatabaseUrl("sqlite:///" + path);
  absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, {});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), ::testing::HasSubstr(path + ": cannot read its schema: "));
}

}  // namespace
}  // namespace lockstep::daemon
