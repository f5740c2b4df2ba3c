#include "daemon/rollout/shadow_schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_split.h"
#include "tests/support/alembic.h"
#include "tests/support/postgres_server.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using lockstep::testing::PostgresServer;

constexpr char kHead[] = "e9a8c6b4d244";

class ShadowSchemasTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = PostgresServer::Start();
    ASSERT_TRUE(s.ok()) << s.status();
    pg_ = s->release();
  }
  static void TearDownTestSuite() { delete pg_; }

  void SetUp() override {
    fs::copy(lockstep::testing::ExampleProjectDir(), dir_ + "/project", fs::copy_options::recursive);
  }

  config::Inventory Inventory(const std::string& project_extra = "") {
    std::ofstream(dir_ + "/fleet.yaml")
        << "project: {alembic_ini: project/alembic.ini, alembic_command: [/usr/bin/alembic]"
        << project_extra << "}\n"
        << "environments: [{name: dev, databases: [{name: app, url: \"sqlite:///app.db\"}]}]\n";
    auto inv = config::LoadInventory(dir_ + "/fleet.yaml");
    EXPECT_TRUE(inv.ok()) << inv.status();
    return *inv;
  }
  // The schema of a database the real Alembic upgraded to `revisions`.
  Schema Migrated(const std::string& url, const std::vector<std::string>& revisions) {
    for (const std::string& r : revisions) {
      std::string out;
      EXPECT_EQ(lockstep::testing::RunAlembic(dir_ + "/project/alembic.ini", url, {"upgrade", r},
                                              &out),
                0)
          << out;
    }
    VersionTarget t;
    t.url = *config::ParseDatabaseUrl(url);
    absl::StatusOr<SchemaSnapshot> s = drivers_->ReadSchema(t, {});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->schema : Schema{};
  }
  std::vector<std::string> ShadowDatabases() {
    auto out = pg_->Psql("SELECT datname FROM pg_database WHERE datname LIKE 'lockstep_shadow%'");
    EXPECT_TRUE(out.ok());
    std::vector<std::string> names;
    for (absl::string_view l : absl::StrSplit(out.ok() ? *out : "", '\n', absl::SkipEmpty())) {
      names.emplace_back(l);
    }
    return names;
  }

  static PostgresServer* pg_;
  lockstep::testing::TempDir tmp_{"lockstep-shadow"};
  std::string dir_ = tmp_.path();
  std::unique_ptr<Drivers> drivers_ = MakeDrivers({});
  ShadowSchemas shadow_{drivers_.get()};
};
PostgresServer* ShadowSchemasTest::pg_ = nullptr;

TEST_F(ShadowSchemasTest, SqliteTheShadowReadsAsADatabaseAlembicMigrated) {
  const config::Inventory inv = Inventory();
  absl::StatusOr<Schema> head = shadow_.Build(inv, config::Dialect::kSqlite, {kHead}, {});
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(SchemaText(*head), SchemaText(Migrated("sqlite:///" + dir_ + "/a.db", {"heads"})));
  // Two branch heads at once: upgraded one after the other.
  absl::StatusOr<Schema> two =
      shadow_.Build(inv, config::Dialect::kSqlite, {"7c4e2d8a9b22", "b5d1e7f3a033"}, {});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(SchemaText(*two), SchemaText(Migrated("sqlite:///" + dir_ + "/b.db",
                                                  {"7c4e2d8a9b22", "b5d1e7f3a033"})));
  EXPECT_NE(SchemaText(*two), SchemaText(*head));
  // No revisions: an empty database.
  absl::StatusOr<Schema> none = shadow_.Build(inv, config::Dialect::kSqlite, {}, {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->tables.empty());
}

TEST_F(ShadowSchemasTest, AMigrationThatFailsOnAnEmptyDatabaseSaysWhy) {
  std::ofstream(dir_ + "/project/versions/dada0000dada_needs_data.py")
      << "from alembic import op\nrevision = 'dada0000dada'\ndown_revision = '" << kHead
      << "'\ndef upgrade():\n    op.execute('INSERT INTO no_such_table VALUES (1)')\n"
      << "def downgrade():\n    pass\n";
  absl::StatusOr<Schema> s = shadow_.Build(Inventory(), config::Dialect::kSqlite, {"dada0000dada"}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr("Alembic could not build dada0000dada on an empty sqlite database: "
                        "`upgrade dada0000dada` exit 1"));
  EXPECT_THAT(s.status().message(), HasSubstr("no such table: no_such_table"));
}

TEST_F(ShadowSchemasTest, PostgresqlAScratchDatabaseIsCreatedAndDropped) {
  absl::StatusOr<Schema> none = shadow_.Build(Inventory(), config::Dialect::kPostgresql, {kHead}, {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("no project.shadow_postgresql server"));

  const config::Inventory inv = Inventory(", shadow_postgresql: \"" + pg_->Url("postgres") + "\"");
  absl::StatusOr<Schema> head = shadow_.Build(inv, config::Dialect::kPostgresql, {kHead}, {});
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_TRUE(pg_->Psql("CREATE DATABASE real_one").ok());
  EXPECT_EQ(SchemaText(*head), SchemaText(Migrated(pg_->Url("real_one"), {"heads"})));
  EXPECT_THAT(ShadowDatabases(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace lockstep::daemon
