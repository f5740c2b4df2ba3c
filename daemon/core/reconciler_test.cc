#include "daemon/core/reconciler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "daemon/drivers/driver.h"
#include "tests/support/alembic.h"
#include "tests/support/postgres_server.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using lockstep::testing::PostgresServer;

constexpr char kUsers[] = "3f2a1b9c0d11";
constexpr char kAge[] = "7c4e2d8a9b22";
constexpr char kHead[] = "e9a8c6b4d244";
// An inventory with one SQLite database, dev/app, at app.db.
constexpr char kOneDatabase[] = R"(
project: {alembic_ini: project/alembic.ini}
environments: [{name: dev, databases: [{name: app, url: "sqlite:///app.db"}]}]
)";

class ReconcilerTest : public ::testing::Test {
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

  void Alembic(const std::string& url, const std::vector<std::string>& args) {
    std::string out;
    ASSERT_EQ(lockstep::testing::RunAlembic(dir_ + "/project/alembic.ini", url, args, &out), 0)
        << out;
  }
  void Sql(const std::string& file, const std::string& sql) {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }

  std::unique_ptr<Reconciler> Start(const std::string& yaml) {
    std::ofstream(dir_ + "/fleet.yaml") << yaml;
    auto inv = config::LoadInventory(dir_ + "/fleet.yaml");
    EXPECT_TRUE(inv.ok()) << inv.status();
    auto store = StateStore::Open(dir_ + "/state.db");
    EXPECT_TRUE(store.ok());
    store_ = *std::move(store);
    ReaderOptions o;
    o.statement_timeout = absl::Milliseconds(500);
    auto r = Reconciler::Create(std::make_shared<config::Inventory>(*inv), MakeReader(o), store_.get());
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : nullptr;
  }

  static PostgresServer* pg_;
  lockstep::testing::TempDir tmp_{"lockstep-rec"};
  std::string dir_ = tmp_.path();
  std::unique_ptr<StateStore> store_;
};
PostgresServer* ReconcilerTest::pg_ = nullptr;

TEST_F(ReconcilerTest, EveryStateForReal) {
  std::string d = dir_;
  Alembic("sqlite:///" + d + "/dev.db", {"upgrade", "heads"});
  Alembic("sqlite:///" + d + "/staging.db", {"upgrade", kAge});
  Alembic("sqlite:///" + d + "/tenant1.db", {"upgrade", "heads"});
  Alembic("sqlite:///" + d + "/tenant2.db", {"upgrade", "heads"});
  Sql(d + "/tenant2.db", "UPDATE alembic_version SET version_num = 'deadbeef0000'");  // replaced file
  Sql(d + "/fresh.db", "CREATE TABLE t (x)");
  ASSERT_TRUE(pg_->Psql("CREATE DATABASE rec_app").ok());
  Alembic(pg_->Url("rec_app"), {"upgrade", kUsers});

  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
environments:
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db"}]
  - name: staging
    after: dev
    databases:
      - {name: app, url: "sqlite:///staging.db"}
      - {name: pg, url: ")" + pg_->Url("rec_app") + R"("}
  - name: prod
    after: staging
    databases:
      - {name: tenant1, url: "sqlite:///tenant1.db"}
      - {name: tenant2, url: "sqlite:///tenant2.db"}
      - {name: fresh, url: "sqlite:///fresh.db"}
      - {name: gone, url: "sqlite:///missing.db"}
)");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  auto state = [&](const char* env, const char* db) { return NameOf(s->Find(env, db)->state); };
  EXPECT_EQ(state("dev", "app"), "current");
  EXPECT_EQ(state("staging", "app"), "behind");
  EXPECT_THAT(s->Find("staging", "app")->pending, ElementsAre("b5d1e7f3a033", "c2e4a6b8d055", kHead));
  EXPECT_EQ(state("staging", "pg"), "behind");
  EXPECT_EQ(s->Find("staging", "pg")->pending.size(), 4u);
  EXPECT_EQ(state("prod", "tenant2"), "orphaned");
  EXPECT_THAT(s->Find("prod", "tenant2")->orphaned, ElementsAre("deadbeef0000"));
  EXPECT_EQ(state("prod", "fresh"), "uninitialized");
  EXPECT_EQ(state("prod", "gone"), "unreachable");
  EXPECT_THAT(s->Find("prod", "gone")->reason, HasSubstr("No such file or directory"));
  // tenant1 is at heads, but staging is not: promotion order violated.
  EXPECT_EQ(state("prod", "tenant1"), "ahead");
  EXPECT_THAT(s->Find("prod", "tenant1")->reason, HasSubstr("ahead of staging"));
  const EnvironmentStatus& prod = s->environments[2];
  EXPECT_EQ(prod.name, "prod");
  EXPECT_THAT(prod.promotion_violations, ElementsAre("7c4e2d8a9b22", "b5d1e7f3a033", "c2e4a6b8d055", kHead));
  EXPECT_EQ(s->environments[1].revision_sets.size(), 2u);  // staging not in lockstep
  EXPECT_EQ(s->graph.heads, std::vector<std::string>{kHead});
}

TEST_F(ReconcilerTest, NoticesChangesMadeByHandAndNewRevisionFiles) {
  std::string db = "sqlite:///" + dir_ + "/app.db";
  Alembic(db, {"upgrade", kUsers});
  auto r = Start(kOneDatabase);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "behind");

  Alembic(db, {"upgrade", "heads"});  // someone runs Alembic by hand
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "current");
  auto changes = store_->Changes("dev/app", 10);
  ASSERT_EQ(changes->size(), 2u);
  EXPECT_THAT((*changes)[0].from, ElementsAre(kUsers));
  EXPECT_THAT((*changes)[0].to, ElementsAre(kHead));

  // A new revision file appears: the graph is reloaded, the database is behind.
  std::ofstream(dir_ + "/project/versions/f00dfeed0001_add_index.py")
      << "revision = 'f00dfeed0001'\ndown_revision = '" << kHead
      << "'\ndef upgrade():\n    pass\ndef downgrade():\n    pass\n";
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(r->Snapshot()->graph.heads, std::vector<std::string>{"f00dfeed0001"});
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "behind");
  EXPECT_THAT(r->Snapshot()->Find("dev", "app")->pending, ElementsAre("f00dfeed0001"));

  // A broken file: the last good graph stays, the error is reported.
  std::ofstream(dir_ + "/project/versions/badbad000002_x.py")
      << "revision = 'badbad000002'\ndown_revision = 'f00d' + no_such_name\n";
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  EXPECT_TRUE(s->graph.broken);
  EXPECT_THAT(s->graph.error, HasSubstr("badbad000002_x.py:2:"));
  EXPECT_EQ(s->graph.heads, std::vector<std::string>{"f00dfeed0001"});
  fs::remove(dir_ + "/project/versions/badbad000002_x.py");
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_FALSE(r->Snapshot()->graph.broken);
}

// SIGHUP (SetInventory) re-reads the scripts: a fixed alembic.ini touches
// no version file, so the folder signature alone would never notice.
TEST_F(ReconcilerTest, ReloadingTheInventoryReloadsTheScripts) {
  Alembic("sqlite:///" + dir_ + "/app.db", {"upgrade", "heads"});
  auto r = Start(kOneDatabase);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  const std::string ini = dir_ + "/project/alembic.ini";
  std::string good;
  {
    std::ifstream in(ini);
    good.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::ofstream(ini) << "[alembic]\nscript_location = %(here)s/nowhere\n";
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_FALSE(r->Snapshot()->graph.broken);  // nothing said to look again
  r->SetInventory(r->inventory());
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_TRUE(r->Snapshot()->graph.broken);
  EXPECT_THAT(r->Snapshot()->graph.error, HasSubstr("nowhere"));
  std::ofstream(ini) << good;  // fixed, and SIGHUP
  r->SetInventory(r->inventory());
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_FALSE(r->Snapshot()->graph.broken) << r->Snapshot()->graph.error;
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "current");
}

TEST_F(ReconcilerTest, RowsThatWentAwayAreLostNotNeverMigrated) {
  std::string d = dir_;
  Alembic("sqlite:///" + d + "/app.db", {"upgrade", "heads"});
  Sql(d + "/fresh.db", "CREATE TABLE t (x)");
  const std::string yaml = R"(
project: {alembic_ini: project/alembic.ini}
environments:
  - name: dev
    databases:
      - {name: app, url: "sqlite:///app.db"}
      - {name: fresh, url: "sqlite:///fresh.db"}
)";
  auto r = Start(yaml);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "current");
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "fresh")->state), "uninitialized");

  Sql(d + "/app.db", "DELETE FROM alembic_version");  // someone emptied the table
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  const DatabaseStatus* app = s->Find("dev", "app");
  EXPECT_EQ(NameOf(app->state), "version_rows_lost");
  const std::string until =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", s->refreshed_at, absl::UTCTimeZone());
  EXPECT_THAT(app->reason, HasSubstr(absl::StrCat("no version rows now; held ", kHead, " until ",
                                                  until, " (lockstep saw it)")));
  EXPECT_THAT(app->pending, IsEmpty());
  EXPECT_EQ(NameOf(s->Find("dev", "fresh")->state), "uninitialized");
  EXPECT_THAT(s->Find("dev", "fresh")->reason, HasSubstr("never migrated"));
  EXPECT_EQ(s->environments[0].by_state.at(DatabaseState::kVersionRowsLost), 1);

  // Later passes, the table dropped too, and a new lockstepd on the same
  // store: the history still says what it held and when it was seen gone.
  Sql(d + "/app.db", "DROP TABLE alembic_version");
  ASSERT_TRUE(r->Refresh().ok());
  r.reset();
  r = Start(yaml);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  app = r->Snapshot()->Find("dev", "app");
  EXPECT_EQ(NameOf(app->state), "version_rows_lost");
  EXPECT_THAT(app->reason, HasSubstr(absl::StrCat("held ", kHead, " until ", until)));
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "fresh")->state), "uninitialized");

  // Rows back (stamped by a person): an ordinary state again.
  Alembic("sqlite:///" + d + "/app.db", {"stamp", kHead});
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "current");
  auto changes = store_->Changes("dev/app", 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u);  // none -> head -> none -> head
  EXPECT_THAT((*changes)[1].from, ElementsAre(kHead));
  EXPECT_THAT((*changes)[1].to, IsEmpty());
  EXPECT_THAT(*store_->Changes("dev/fresh", 10), IsEmpty());  // no "<none> -> <none>"
}

TEST_F(ReconcilerTest, RowsALockstepRolloutRemovedAreNotLost) {
  std::string db = "sqlite:///" + dir_ + "/app.db";
  Alembic(db, {"upgrade", "heads"});
  auto r = Start(kOneDatabase);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  // A rollout takes it to base (lockstep downgrade dev/app --to base).
  Rollout down;
  down.id = "d-1";
  down.kind = "downgrade";
  down.target = "base";
  down.stages.push_back(RolloutStage{.environment = "dev"});
  RolloutStep step;
  step.environment = "dev";
  step.database = "app";
  step.from = {kHead};
  step.state = StepState::kSucceeded;
  step.started_at = absl::Now();
  Alembic(db, {"downgrade", "base"});
  step.finished_at = absl::Now();
  down.steps.push_back(step);
  ASSERT_TRUE(store_->SaveRollout(down).ok());
  for (int pass = 0; pass < 2; ++pass) {  // seen gone now, then from the history
    ASSERT_TRUE(r->Refresh().ok());
    const DatabaseStatus* app = r->Snapshot()->Find("dev", "app");
    EXPECT_EQ(NameOf(app->state), "uninitialized") << pass;
    EXPECT_THAT(app->reason,
                HasSubstr(absl::StrCat("no version rows: rollout d-1 left it so (it held ", kHead,
                                       " until ")));
    EXPECT_THAT(app->reason, HasSubstr("5 revisions to apply to reach heads"));
  }
  // Later, rows back and removed by hand: that step is older than those rows.
  Alembic(db, {"upgrade", kUsers});
  ASSERT_TRUE(r->Refresh().ok());
  Sql(dir_ + "/app.db", "DELETE FROM alembic_version");
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "version_rows_lost");
  EXPECT_THAT(r->Snapshot()->Find("dev", "app")->reason, HasSubstr(absl::StrCat("held ", kUsers)));
}

TEST_F(ReconcilerTest, OrphanedUnreachableAndLostDatabasesAreNotInLockstep) {
  std::string d = dir_;
  for (const char* db : {"a", "b", "c", "f"}) {
    Alembic("sqlite:///" + d + "/" + db + ".db", {"upgrade", "heads"});
  }
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
environments:
  - name: unreachable
    databases:
      - {name: a, url: "sqlite:///a.db"}
      - {name: gone, url: "sqlite:///missing.db"}
  - name: orphaned
    databases:
      - {name: b, url: "sqlite:///b.db"}
      - {name: odd, url: "sqlite:///odd.db"}
  - name: lost
    databases:
      - {name: c, url: "sqlite:///c.db"}
      - {name: emptied, url: "sqlite:///emptied.db"}
  - name: fine
    databases: [{name: c, url: "sqlite:///f.db"}]
)");
  Alembic("sqlite:///" + d + "/odd.db", {"upgrade", "heads"});
  Sql(d + "/odd.db", "UPDATE alembic_version SET version_num = 'deadbeef0000'");
  Alembic("sqlite:///" + d + "/emptied.db", {"upgrade", "heads"});
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  Sql(d + "/emptied.db", "DELETE FROM alembic_version");
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  ASSERT_EQ(s->environments.size(), 4u);
  for (int i = 0; i < 3; ++i) {
    // The one comparable database holds one revision set, and yet.
    EXPECT_EQ(s->environments[i].revision_sets.size(), 1u) << s->environments[i].name;
    EXPECT_FALSE(s->environments[i].in_lockstep) << s->environments[i].name;
  }
  EXPECT_EQ(NameOf(s->Find("lost", "emptied")->state), "version_rows_lost");
  EXPECT_TRUE(s->environments[3].in_lockstep);
}

TEST_F(ReconcilerTest, ReasonsCountRight) {
  Sql(dir_ + "/fresh.db", "CREATE TABLE t (x)");  // no version table
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
environments:
  - name: dev
    target: )" + std::string(kUsers) + R"(
    databases: [{name: fresh, url: "sqlite:///fresh.db"}]
)");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  EXPECT_EQ(r->Snapshot()->Find("dev", "fresh")->reason,
            "no alembic_version table (never migrated); 1 revision to apply");
}

TEST_F(ReconcilerTest, ClosedReconcilerRefusesToRefresh) {
  Alembic("sqlite:///" + dir_ + "/app.db", {"upgrade", "heads"});
  auto r = Start(kOneDatabase);
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  r->Close();
  absl::Status s = r->Refresh();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(NameOf(r->Snapshot()->Find("dev", "app")->state), "current");  // last snapshot kept
}

TEST_F(ReconcilerTest, DiscoversSqliteTenantsByGlob) {
  fs::create_directory(dir_ + "/tenants");
  for (const char* t : {"acme", "globex", "initech"}) {
    Alembic("sqlite:///" + dir_ + "/tenants/" + t + ".db", {"upgrade", t[0] == 'g' ? kAge : "heads"});
  }
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
environments:
  - name: prod
    databases: [{discover: {glob: "tenants/*.db"}, labels: {tier: tenant}}]
)");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  ASSERT_EQ(s->databases.size(), 3u);
  EXPECT_EQ(NameOf(s->Find("prod", "acme")->state), "current");
  EXPECT_EQ(NameOf(s->Find("prod", "globex")->state), "behind");
  EXPECT_TRUE(s->Find("prod", "initech")->discovered);
  EXPECT_EQ(s->Find("prod", "initech")->labels.at("tier"), "tenant");
}

// A glob never takes lockstepd's own files, nor a database another entry
// has: the state store in the tenants' folder (the demo's own layout), a
// file listed in another environment, a hard link to it, or a name that
// two folders share. Each is left out with an error that names both.
TEST_F(ReconcilerTest, DiscoveryTakesNoOwnFileAndNoDatabaseTwice) {
  fs::create_directories(dir_ + "/a");
  fs::create_directories(dir_ + "/b");
  for (const char* f : {"acme.db", "a/t1.db", "b/t1.db", "listed.db"}) {
    Alembic("sqlite:///" + dir_ + "/" + f, {"upgrade", "heads"});
  }
  fs::create_hard_link(dir_ + "/listed.db", dir_ + "/alias.db");
  auto r = Start(R"(
server: {state: state.db, backup_dir: backups}
project: {alembic_ini: project/alembic.ini}
environments:
  - name: staging
    databases: [{discover: {glob: "*.db"}}, {discover: {glob: "a/*.db"}}, {discover: {glob: "b/*.db"}}]
  - name: prod
    after: staging
    databases: [{name: main, url: "sqlite:///listed.db"}]
)");
  ASSERT_NE(r, nullptr);
  fs::create_directories(dir_ + "/backups");
  std::ofstream(dir_ + "/backups/note.db") << "";
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  std::vector<std::string> keys;
  for (const DatabaseStatus& d : s->databases) keys.push_back(d.key());
  EXPECT_THAT(keys, ElementsAre("staging/acme", "staging/t1", "prod/main"));
  EXPECT_EQ(s->Find("staging", "t1")->url, "sqlite:///" + dir_ + "/a/t1.db");
  std::string errors;
  for (const EnvironmentStatus& e : s->environments) {
    for (const std::string& m : e.discover_errors) errors += m + "\n";
  }
  EXPECT_THAT(errors, HasSubstr("state.db skipped: it is lockstepd's state store"));
  EXPECT_THAT(errors, HasSubstr("alias.db skipped: it is the same database as prod/main"));
  EXPECT_THAT(errors, HasSubstr("listed.db skipped: it is the same database as prod/main"));
  EXPECT_THAT(errors, HasSubstr("b/t1.db skipped: staging/t1 names another database already"));
}

// Schema truth from cohorts: tenants at one revision must share a schema.
// The one whose table was dropped after it was "applied" is drift, named;
// the others match; a database alone at its revision cannot be judged yet.
// A database whose version rows change is read again at the next poll.
TEST_F(ReconcilerTest, SchemasAreJudgedAgainstTheirCohort) {
  for (const char* t : {"t1", "t2", "t3", "t4"}) {
    Alembic(absl::StrCat("sqlite:///", dir_, "/", t, ".db"), {"upgrade", "heads"});
  }
  Alembic("sqlite:///" + dir_ + "/old.db", {"upgrade", kAge});
  Sql(dir_ + "/t2.db", "DROP TABLE orders");
  // A table the team manages by hand (project.schema_ignore) is no drift.
  Sql(dir_ + "/t3.db", "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, note TEXT)");
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini, schema_ignore: [audit_*]}
server: {schema_interval: 1h}
environments:
  - name: prod
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
      - {name: t3, url: "sqlite:///t3.db"}
      - {name: t4, url: "sqlite:///t4.db"}
      - {name: old, url: "sqlite:///old.db"}
)");
  ASSERT_TRUE(r->Refresh().ok());
  auto s = r->Snapshot();
  // Drift is reported once a second read (the next poll) confirms it.
  EXPECT_EQ(NameOf(s->Find("prod", "t2")->schema.state), "unknown");
  EXPECT_THAT(s->Find("prod", "t2")->schema.reason,
              HasSubstr("confirming at the next poll (it may have been read while a migration "
                        "ran): schema differs from the 3 sqlite databases"));
  ASSERT_TRUE(r->Refresh().ok());
  s = r->Snapshot();
  const SchemaStatus& t2 = s->Find("prod", "t2")->schema;
  EXPECT_EQ(NameOf(t2.state), "drift");
  EXPECT_EQ(t2.reason, absl::StrCat("schema differs from the 3 sqlite databases at ", kHead,
                                    " that agree: table orders missing"));
  ASSERT_EQ(t2.differences.size(), 1u);
  for (const char* t : {"t1", "t3", "t4"})
    EXPECT_EQ(NameOf(s->Find("prod", t)->schema.state), "match") << t;
  EXPECT_EQ(NameOf(s->Find("prod", "old")->schema.state), "unknown");
  EXPECT_EQ(s->Find("prod", "old")->schema.reason,
            absl::StrCat("no other sqlite database at ", kAge, " to compare its schema with"));
  EXPECT_EQ(s->Find("prod", "t1")->schema.fingerprint.size(), 64u);

  // old is upgraded by hand: read again at the next poll (not the next
  // hour), and now it joins the cohort that agrees.
  Alembic("sqlite:///" + dir_ + "/old.db", {"upgrade", "heads"});
  ASSERT_TRUE(r->Refresh().ok());
  s = r->Snapshot();
  EXPECT_EQ(NameOf(s->Find("prod", "old")->schema.state), "match");
  EXPECT_EQ(s->Find("prod", "t1")->schema.reason,
            absl::StrCat("same schema as the 3 other sqlite databases at ", kHead));
  EXPECT_EQ(NameOf(s->Find("prod", "t2")->schema.state), "drift");

  // A lockstep lock held on a database (a step in flight) makes its read no
  // verdict. t2 is read again since its rows change.
  Alembic("sqlite:///" + dir_ + "/t2.db", {"stamp", kAge});
  {
    auto drivers = MakeDrivers({});
    VersionTarget t2_target;
    t2_target.name = "prod/t2";
    t2_target.url = *config::ParseDatabaseUrl("sqlite:///" + dir_ + "/t2.db");
    auto lock = drivers->For(t2_target.url)
                    .Lock(t2_target, t2_target.url, absl::Seconds(1), IfMissing::kRefuse);
    ASSERT_TRUE(lock.ok()) << lock.status();
    ASSERT_TRUE(r->Refresh().ok());
    const SchemaStatus& held = r->Snapshot()->Find("prod", "t2")->schema;
    EXPECT_EQ(NameOf(held.state), "unknown");
    EXPECT_THAT(held.reason, HasSubstr("lockstep's lock on it was held (this lockstepd (pid "));
  }
}

TEST_F(ReconcilerTest, SchemaChecksCanBeTurnedOff) {
  Alembic("sqlite:///" + dir_ + "/app.db", {"upgrade", "heads"});
  auto r = Start(std::string(kOneDatabase) + "server: {schema_interval: 0s}\n");
  ASSERT_TRUE(r->Refresh().ok());
  const SchemaStatus& st = r->Snapshot()->Find("dev", "app")->schema;
  EXPECT_EQ(NameOf(st.state), "unknown");
  EXPECT_EQ(st.reason, "schema checks are off (server.schema_interval: 0)");
}

// The version pass never waits for a schema pass: while one is held up
// (Alembic building an expected schema), version rows go on being read and
// published; the verdicts land in the newest snapshot, and a database whose
// rows changed meanwhile waits for the next schema pass.
TEST_F(ReconcilerTest, VersionPassesGoOnWhileASchemaPassIsHeldUp) {
  for (const char* t : {"t1", "t2"}) {
    Alembic(absl::StrCat("sqlite:///", dir_, "/", t, ".db"), {"upgrade", kAge});
  }
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
server: {schema_interval: 1h}
environments:
  - name: prod
    databases:
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t2, url: "sqlite:///t2.db"}
)");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());  // the expected schema of kAge: none yet
  absl::StatusOr<SchemaSnapshot> real =
      MakeReader({})->ReadSchema(*r->Target("prod/t1"), SchemaFilter{});
  ASSERT_TRUE(real.ok()) << real.status();
  std::mutex mu;
  std::condition_variable cv;
  bool building = false, release = false;
  const Schema want = real->schema;
  r->SetExpectedSchemas([&](const config::Inventory&, config::Dialect,
                            const std::vector<std::string>&,
                            const SchemaFilter&) -> absl::StatusOr<Schema> {
    std::unique_lock<std::mutex> lock(mu);
    building = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return want;
  });
  r->RequestSchemaPass();
  std::thread schemas([&] { EXPECT_TRUE(r->RefreshSchemas().ok()); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return building; });
  }
  // t2 is upgraded by hand while the schema pass builds.
  Alembic("sqlite:///" + dir_ + "/t2.db", {"upgrade", "heads"});
  ASSERT_TRUE(r->RefreshVersions().ok());
  auto s = r->Snapshot();
  EXPECT_EQ(s->Find("prod", "t2")->revisions, std::vector<std::string>{kHead});
  EXPECT_EQ(s->Find("prod", "t2")->schema.reason, "its schema is being read");
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  schemas.join();
  s = r->Snapshot();
  EXPECT_EQ(s->Find("prod", "t2")->revisions, std::vector<std::string>{kHead});  // not rolled back
  EXPECT_EQ(NameOf(s->Find("prod", "t1")->schema.state), "match");
  EXPECT_THAT(s->Find("prod", "t1")->schema.reason, HasSubstr("the schema Alembic builds for"));
  EXPECT_EQ(s->Find("prod", "t2")->schema.reason, "its schema is being read");
  ASSERT_TRUE(r->RefreshSchemas().ok());  // the next pass reads t2
  EXPECT_NE(r->Snapshot()->Find("prod", "t2")->schema.reason, "its schema is being read");
}

// Which revision an orphaned database's schema is, matched against what
// Alembic builds for base and every revision: at most 8 builds a pass, so a
// long history never holds a refresh up; the result is kept once final.
TEST_F(ReconcilerTest, MatchingBuildsAFewCandidatesAPassUntilItKnows) {
  std::string down = kHead;
  for (int n = 1; n <= 10; ++n) {  // ten more (empty) revisions: 16 candidates with base
    const std::string id = absl::StrFormat("f000000000%02d", n);
    std::ofstream(dir_ + "/project/versions/" + id + "_noop.py")
        << "revision = '" << id << "'\ndown_revision = '" << down
        << "'\ndef upgrade():\n    pass\ndef downgrade():\n    pass\n";
    down = id;
  }
  Alembic("sqlite:///" + dir_ + "/orphan.db", {"upgrade", kHead});
  Sql(dir_ + "/orphan.db", "UPDATE alembic_version SET version_num = 'deadbeef0000'");
  auto r = Start(R"(
project: {alembic_ini: project/alembic.ini}
server: {schema_interval: 1h}
environments:
  - name: prod
    databases: [{name: orphan, url: "sqlite:///orphan.db"}]
)");
  ASSERT_NE(r, nullptr);
  ASSERT_TRUE(r->Refresh().ok());  // fills the targets
  absl::StatusOr<SchemaSnapshot> real =
      MakeReader({})->ReadSchema(*r->Target("prod/orphan"), SchemaFilter{});
  ASSERT_TRUE(real.ok()) << real.status();
  // Stands in for the shadow builds: only the last revision builds this schema.
  std::atomic<int> builds{0};
  const Schema want = real->schema;
  r->SetExpectedSchemas([&](const config::Inventory&, config::Dialect,
                            const std::vector<std::string>& revisions,
                            const SchemaFilter&) -> absl::StatusOr<Schema> {
    ++builds;
    if (revisions == std::vector<std::string>{"f00000000010"}) return want;
    Schema other;
    other.tables["only_in_" + (revisions.empty() ? std::string("base") : revisions[0])];
    return other;
  });
  r->RequestSchemaPass();
  ASSERT_TRUE(r->Refresh().ok());
  const SchemaStatus* st = &r->Snapshot()->Find("prod", "orphan")->schema;
  EXPECT_EQ(builds.load(), 8);
  EXPECT_TRUE(st->matches_revisions.empty());
  EXPECT_THAT(st->reason, HasSubstr("(compared with 8 of 16 revisions so far)"));
  ASSERT_TRUE(r->Refresh().ok());
  st = &r->Snapshot()->Find("prod", "orphan")->schema;
  EXPECT_EQ(builds.load(), 16);
  EXPECT_THAT(st->matches_revisions, ElementsAre("f00000000010"));
  EXPECT_THAT(st->reason, HasSubstr("`lockstep stamp prod/orphan f00000000010`"));
  ASSERT_TRUE(r->Refresh().ok());  // kept: nothing built again
  EXPECT_EQ(builds.load(), 16);
  EXPECT_THAT(r->Snapshot()->Find("prod", "orphan")->schema.matches_revisions,
              ElementsAre("f00000000010"));
}

// A reader that batches targets by their file's directory, as the
// PostgreSQL driver does by database: the reconciler hands each batch over
// at most 50 at a time, reads the others alone, and every database gets
// its own read's result.
class BatchingReader : public VersionReader {
 public:
  std::mutex mu;
  std::vector<size_t> batch_sizes;
  int alone = 0;

  std::string BatchKey(const VersionTarget& t) const override {
    return absl::StrContains(t.url.database, "/tenants/") ? "tenants" : "";
  }

 protected:
  VersionRead ReadRows(const VersionTarget& t) override {
    std::lock_guard<std::mutex> lock(mu);
    ++alone;
    return RowsOf(t);
  }
  std::vector<VersionRead> ReadRowsBatch(
      const std::vector<const VersionTarget*>& targets) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      batch_sizes.push_back(targets.size());
    }
    std::vector<VersionRead> out;
    for (const VersionTarget* t : targets) out.push_back(RowsOf(*t));
    return out;
  }

 private:
  // t<N> below 300 is at the base revision, the rest was never migrated.
  static VersionRead RowsOf(const VersionTarget& t) {
    VersionRead r;
    const std::string file = std::filesystem::path(t.url.database).stem();
    int n = std::stoi(file.substr(1));
    r.outcome = n < 300 ? ReadOutcome::kOk : ReadOutcome::kNoTable;
    if (n < 300) r.rows = {"a1b2c3d4e5f6"};
    return r;
  }
};

TEST(ReconcilerBatchTest, BatchesAreReadTogetherAtMost50AtATimeAndEachDatabaseGetsItsOwnRead) {
  lockstep::testing::TempDir tmp("lockstep-batch");
  std::string yaml = "project: {scripts: " + std::string(std::getenv("LOCKSTEP_SOURCE_DIR")) +
                     "/migrations/example}\nenvironments:\n  - name: prod\n    databases:\n";
  for (int i = 0; i < 450; ++i) {
    yaml += "      - {name: t" + std::to_string(i) + ", url: \"sqlite:///tenants/t" +
            std::to_string(i) + ".db\"}\n";
  }
  for (int i = 0; i < 3; ++i) {
    yaml += "      - {name: s" + std::to_string(i) + ", url: \"sqlite:///solo/t" +
            std::to_string(400 + i) + ".db\"}\n";
  }
  std::ofstream(tmp.path() + "/fleet.yaml") << yaml;
  auto inv = config::LoadInventory(tmp.path() + "/fleet.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  auto store = StateStore::Open(tmp.path() + "/state.db");
  ASSERT_TRUE(store.ok());
  auto reader = std::make_shared<BatchingReader>();
  auto r = Reconciler::Create(std::make_shared<config::Inventory>(*inv), reader, store->get());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->Refresh().ok());
  EXPECT_THAT(reader->batch_sizes, ::testing::Each(50u));
  EXPECT_EQ(reader->batch_sizes.size(), 9u);  // 450 tenants
  EXPECT_EQ(reader->alone, 3);
  std::shared_ptr<const FleetSnapshot> snap = (*r)->Snapshot();
  ASSERT_EQ(snap->databases.size(), 453u);
  for (const DatabaseStatus& d : snap->databases) {
    const int n = std::stoi(std::filesystem::path(d.url).stem().string().substr(1));
    EXPECT_EQ(d.state, n < 300 ? DatabaseState::kOrphaned : DatabaseState::kUninitialized)
        << d.name << " " << d.reason;
  }
}

}  // namespace
}  // namespace lockstep::daemon

namespace lockstep::daemon {
namespace {

// A reader that takes its time: 50 ms per database, counted.
class SlowReader : public VersionReader {
 public:
  std::atomic<int> reads{0};

 protected:
  VersionRead ReadRows(const VersionTarget&) override {
    ++reads;
    absl::SleepFor(absl::Milliseconds(50));
    VersionRead r;
    r.outcome = ReadOutcome::kNoTable;
    return r;
  }
};

// SIGTERM during a pass over a large fleet: the pass stops reading, ends
// without publishing what it did not read, and later passes end at once.
TEST(ReconcilerInterruptTest, APassEndsEarlyAndPublishesNothingWhenInterrupted) {
  lockstep::testing::TempDir tmp("lockstep-interrupt");
  std::string yaml = "project: {scripts: " + std::string(std::getenv("LOCKSTEP_SOURCE_DIR")) +
                     "/migrations/example}\nserver: {max_concurrent_checks: 1}\n"
                     "environments:\n  - name: prod\n    databases:\n";
  for (int i = 0; i < 400; ++i) {
    yaml += "      - {name: t" + std::to_string(i) + ", url: \"sqlite:///t" + std::to_string(i) +
            ".db\"}\n";
  }
  std::ofstream(tmp.path() + "/fleet.yaml") << yaml;
  auto inv = config::LoadInventory(tmp.path() + "/fleet.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  auto store = StateStore::Open(tmp.path() + "/state.db");
  ASSERT_TRUE(store.ok());
  auto reader = std::make_shared<SlowReader>();
  auto r = Reconciler::Create(std::make_shared<config::Inventory>(*inv), reader, store->get());
  ASSERT_TRUE(r.ok()) << r.status();
  absl::Status pass;
  std::thread t([&] { pass = (*r)->Refresh(); });
  while (reader->reads < 3) absl::SleepFor(absl::Milliseconds(5));
  (*r)->Interrupt();
  t.join();
  EXPECT_EQ(pass.code(), absl::StatusCode::kUnavailable) << pass;
  EXPECT_LT(reader->reads, 50);                      // 400 were planned
  EXPECT_TRUE((*r)->Snapshot()->databases.empty());  // nothing half-read was published
  const int before = reader->reads;
  EXPECT_EQ((*r)->Refresh().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(reader->reads, before);
}

}  // namespace
}  // namespace lockstep::daemon
