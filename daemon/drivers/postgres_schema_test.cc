#include "daemon/drivers/postgres_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/drivers/driver.h"
#include "daemon/drivers/postgres_driver.h"
#include "tests/support/alembic.h"
#include "tests/support/postgres_server.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using lockstep::testing::PostgresServer;

class PostgresSchemaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = PostgresServer::Start();
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
  }
  static void TearDownTestSuite() { delete server_; }

  // A new database the real Alembic upgraded to each of `revisions` in turn.
  std::string Migrated(const std::string& db, const std::vector<std::string>& revisions) {
    EXPECT_TRUE(server_->Psql("CREATE DATABASE " + db).ok());
    for (const std::string& r : revisions) {
      std::string out;
      EXPECT_EQ(lockstep::testing::RunAlembic(
                    lockstep::testing::ExampleProjectDir() + "/alembic.ini", server_->Url(db),
                    {"upgrade", r}, &out),
                0)
          << out;
    }
    return db;
  }
  Schema Read(const std::string& db, const SchemaFilter& filter = {}) {
    VersionTarget t;
    t.name = "prod/" + db;
    t.url = *config::ParseDatabaseUrl(server_->Url(db));
    absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, filter);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->schema : Schema{};
  }
  static std::vector<std::string> Differences(const Schema& expected, const Schema& found) {
    std::vector<std::string> out;
    for (const SchemaDifference& d : Diff(expected, found)) out.push_back(Describe(d));
    return out;
  }

  static PostgresServer* server_;
  std::unique_ptr<Driver> driver_ = MakePostgresDriver({});
};
PostgresServer* PostgresSchemaTest::server_ = nullptr;

TEST_F(PostgresSchemaTest, TheExampleProjectAtHeadReadsAsItsMigrationsMadeIt) {
  const Schema s = Read(Migrated("direct", {"heads"}));
  EXPECT_EQ(SchemaText(s),
            "table orders\n"
            "table orders column id INTEGER NOT NULL DEFAULT nextval('orders_id_seq'::regclass)\n"
            "table orders column status VARCHAR(20) NOT NULL DEFAULT 'new'::character varying\n"
            "table orders column total_cents INTEGER NOT NULL DEFAULT 0\n"
            "table orders column user_id INTEGER NOT NULL\n"
            "table orders primary key (id)\n"
            "table orders index ix_orders_user_id (user_id)\n"
            "table orders foreign key (user_id) REFERENCES users (id)\n"
            "table users\n"
            "table users column age INTEGER NULL\n"
            "table users column email VARCHAR(255) NOT NULL\n"
            "table users column id INTEGER NOT NULL DEFAULT nextval('users_id_seq'::regclass)\n"
            "table users column name VARCHAR(100) NOT NULL\n"
            "table users primary key (id)\n"
            "table users index ix_users_name (name)\n"
            "table users unique (email)\n"
            "sequence orders_id_seq INTEGER\n"
            "sequence users_id_seq INTEGER\n");
  VersionTarget t;
  t.url = *config::ParseDatabaseUrl(server_->Url("direct"));
  absl::StatusOr<SchemaSnapshot> snap = driver_->ReadSchema(t, {});
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_THAT(snap->rows, ElementsAre("e9a8c6b4d244"));
  // Zero false positives: another path to the same revisions reads the same.
  const Schema stepwise = Read(Migrated("stepwise", {"3f2a1b9c0d11", "7c4e2d8a9b22", "heads"}));
  EXPECT_THAT(Differences(s, stepwise), IsEmpty());
  EXPECT_EQ(SchemaFingerprint(s), SchemaFingerprint(stepwise));
}

TEST_F(PostgresSchemaTest, WhatWasChangedByHandIsNamed) {
  const Schema expected = Read(Migrated("ref", {"heads"}));
  const std::string db = Migrated("t1", {"heads"});
  ASSERT_TRUE(server_
                  ->Psql("DROP TABLE orders; ALTER TABLE users ADD COLUMN nickname text; "
                         "ALTER TABLE users ALTER COLUMN name TYPE text; "
                         "ALTER TABLE users ADD CONSTRAINT ck_age CHECK (age > 0); "
                         "CREATE TYPE mood AS ENUM ('ok', 'sad'); "
                         "CREATE SCHEMA audit; CREATE TABLE audit.events (id int)",
                         db)
                  .ok());
  EXPECT_THAT(Differences(expected, Read(db)),
              ElementsAre("table orders missing",
                          "column users.name differs: VARCHAR(100) NOT NULL expected, TEXT NOT "
                          "NULL found",
                          "column users.nickname unexpected", "check users (age > 0) unexpected",
                          "table audit.events unexpected", "enum mood unexpected",
                          "sequence orders_id_seq missing"));
  SchemaFilter filter;
  filter.ignore = {"audit.*", "mood"};
  const Schema filtered = Read(db, filter);
  EXPECT_EQ(filtered.tables.count("audit.events"), 0u);
  EXPECT_EQ(filtered.enums.count("mood"), 0u);
}

// Tenants as schemas of one database (Alembic run with each tenant's
// search_path): a read scoped to a tenant's schema sees that tenant alone,
// named as a database of its own is, so tenants compare with each other and
// with a whole database at the same revision; an unscoped read sees every
// tenant's tables qualified.
TEST_F(PostgresSchemaTest, ATenantSchemaReadsAsAWholeDatabaseAtItsRevision) {
  const Schema whole = Read(Migrated("whole", {"heads"}));
  const Schema older = Read(Migrated("older", {"3f2a1b9c0d11"}));
  ASSERT_TRUE(server_->Psql("CREATE DATABASE schemas").ok());
  ASSERT_TRUE(server_->Psql("CREATE SCHEMA t1; CREATE SCHEMA t2", "schemas").ok());
  for (const auto& [schema, revision] :
       std::vector<std::pair<std::string, std::string>>{{"t1", "heads"}, {"t2", "3f2a1b9c0d11"}}) {
    std::string out;
    ASSERT_EQ(lockstep::testing::RunAlembic(
                  lockstep::testing::ExampleProjectDir() + "/alembic.ini",
                  server_->Url("schemas") + "?options=-csearch_path%3D" + schema,
                  {"upgrade", revision}, &out),
              0)
        << out;
  }
  auto scoped = [&](const std::string& schema) {
    VersionTarget t;
    t.name = "prod/" + schema;
    t.url = *config::ParseDatabaseUrl(server_->Url("schemas"));
    t.version_table_schema = schema;
    t.schema_scope = schema;
    absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, SchemaFilterFor(t, {}));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : SchemaSnapshot{};
  };
  const SchemaSnapshot t1 = scoped("t1"), t2 = scoped("t2");
  EXPECT_THAT(t1.rows, ElementsAre("e9a8c6b4d244"));
  EXPECT_THAT(t2.rows, ElementsAre("3f2a1b9c0d11"));
  EXPECT_THAT(Differences(whole, t1.schema), IsEmpty());
  EXPECT_THAT(Differences(older, t2.schema), IsEmpty());
  EXPECT_EQ(SchemaFingerprint(whole), SchemaFingerprint(t1.schema));
  EXPECT_EQ(t1.schema.tables.count("alembic_version"), 0u);  // the version table is left out
  // Drift in one tenant is that tenant's alone.
  ASSERT_TRUE(server_->Psql("ALTER TABLE t2.users ADD COLUMN nickname text", "schemas").ok());
  EXPECT_THAT(Differences(older, scoped("t2").schema),
              ElementsAre("column users.nickname unexpected"));
  EXPECT_THAT(Differences(whole, scoped("t1").schema), IsEmpty());
  // Unscoped, the database holds both tenants, qualified.
  const Schema all = Read("schemas");
  EXPECT_EQ(all.tables.count("t1.orders"), 1u);
  EXPECT_EQ(all.tables.count("t2.users"), 1u);
  EXPECT_EQ(all.tables.count("users"), 0u);
}

TEST_F(PostgresSchemaTest, AnUnreachableServerIsAClearErrorWithoutThePassword) {
  VersionTarget t;
  t.name = "prod/gone";
  t.url = *config::ParseDatabaseUrl("postgresql://app:s3cret-pw@127.0.0.1:" +
                                    std::to_string(lockstep::testing::FreePort()) + "/gone");
  absl::StatusOr<SchemaSnapshot> s = driver_->ReadSchema(t, {});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("prod/gone: cannot read its schema: "));
  EXPECT_THAT(std::string(s.status().message()), ::testing::Not(HasSubstr("s3cret-pw")));
}

// A read while lockstep's advisory lock is held (a step in flight) says so.
TEST_F(PostgresSchemaTest, AReadUnderLockstepsLockSaysWhoHoldsIt) {
  VersionTarget t;
  t.name = "prod/held";
  t.url = *config::ParseDatabaseUrl(server_->Url(Migrated("held", {"heads"})));
  absl::StatusOr<SchemaSnapshot> free = driver_->ReadSchema(t, {});
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_EQ(free->locked_by, "");
  auto lock = driver_->Lock(t, t.url, absl::Seconds(5), IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  absl::StatusOr<SchemaSnapshot> held = driver_->ReadSchema(t, {});
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_THAT(held->locked_by, ::testing::StartsWith("pid "));
  EXPECT_THAT(held->locked_by, HasSubstr("(lockstepd-lock)"));
}

TEST(PostgresTypeTest, LongNamesAreShortened) {
  EXPECT_EQ(PostgresType("character varying(20)"), "VARCHAR(20)");
  EXPECT_EQ(PostgresType("timestamp with time zone"), "TIMESTAMPTZ");
  EXPECT_EQ(PostgresType("timestamp(3) without time zone"), "TIMESTAMP(3) WITHOUT TIME ZONE");
  EXPECT_EQ(PostgresType("numeric(10,2)"), "NUMERIC(10, 2)");
  EXPECT_EQ(PostgresType("character(1)"), "CHAR(1)");
}

}  // namespace
}  // namespace lockstep::daemon
