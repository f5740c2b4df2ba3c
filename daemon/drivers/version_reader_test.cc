#include "daemon/drivers/version_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>

#include "absl/strings/str_cat.h"
#include "daemon/drivers/driver.h"
#include "daemon/drivers/postgres_driver.h"
#include "daemon/drivers/sqlite_driver.h"
#include "tests/support/alembic.h"
#include "tests/support/postgres_server.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using lockstep::testing::PostgresServer;
using lockstep::testing::RunCommand;

constexpr char kHead[] = "e9a8c6b4d244";

// Runs the real Alembic on the example project.
void Alembic(const std::string& url, const std::vector<std::string>& args) {
  std::string out;
  ASSERT_EQ(lockstep::testing::RunAlembic(lockstep::testing::ExampleProjectDir() + "/alembic.ini",
                                          url, args, &out),
            0)
      << out;
}

VersionTarget Target(const std::string& url) {
  VersionTarget t;
  t.name = "test/db";
  t.url = *config::ParseDatabaseUrl(url);
  return t;
}

ReaderOptions FastOptions() {
  ReaderOptions o;
  o.connect_timeout = absl::Seconds(2);
  o.statement_timeout = absl::Milliseconds(300);
  o.max_connections_per_server = 2;
  return o;
}

class SqliteReaderTest : public ::testing::Test {
 protected:
  lockstep::testing::TempDir tmp_{"lockstep-sqlite"};
  std::string dir_ = tmp_.path();
  std::unique_ptr<Driver> reader_ = MakeSqliteDriver(FastOptions());
};

TEST_F(SqliteReaderTest, MigratedEmptyMissingAndJunk) {
  std::string url = "sqlite:///" + dir_ + "/app.db";
  Alembic(url, {"upgrade", "heads"});
  VersionRead r = reader_->Read(Target(url));
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;
  EXPECT_THAT(r.rows, ElementsAre(kHead));

  Alembic(url, {"downgrade", "base"});
  r = reader_->Read(Target(url));
  EXPECT_EQ(r.outcome, ReadOutcome::kOk);  // the table stays, without rows
  EXPECT_THAT(r.rows, IsEmpty());

  sqlite3* raw;
  ASSERT_EQ(sqlite3_open((dir_ + "/empty.db").c_str(), &raw), SQLITE_OK);
  sqlite3_exec(raw, "CREATE TABLE t (x)", nullptr, nullptr, nullptr);
  sqlite3_close(raw);
  r = reader_->Read(Target("sqlite:///" + dir_ + "/empty.db"));
  EXPECT_EQ(r.outcome, ReadOutcome::kNoTable) << r.error;

  r = reader_->Read(Target("sqlite:///" + dir_ + "/missing.db"));
  EXPECT_EQ(r.outcome, ReadOutcome::kUnreachable);
  EXPECT_THAT(r.error, HasSubstr("No such file or directory"));

  std::ofstream(dir_ + "/junk.db") << "this is not a database, just text long enough to matter..";
  r = reader_->Read(Target("sqlite:///" + dir_ + "/junk.db"));
  EXPECT_EQ(r.outcome, ReadOutcome::kError);
  EXPECT_THAT(r.error, HasSubstr("not a database"));
}

TEST_F(SqliteReaderTest, LockHeldIsATimeout) {
  std::string url = "sqlite:///" + dir_ + "/app.db";
  Alembic(url, {"upgrade", "heads"});
  sqlite3* holder;
  ASSERT_EQ(sqlite3_open((dir_ + "/app.db").c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  VersionRead r = reader_->Read(Target(url));
  EXPECT_EQ(r.outcome, ReadOutcome::kTimedOut) << r.error;
  EXPECT_THAT(r.error, HasSubstr("timed out after 300ms"));
  EXPECT_GE(r.took, absl::Milliseconds(250));
  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);
  EXPECT_EQ(reader_->Read(Target(url)).outcome, ReadOutcome::kOk);
}

class PostgresReaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = PostgresServer::Start();
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    ASSERT_TRUE(server_->Psql("CREATE DATABASE app").ok());
    ASSERT_TRUE(server_->Psql("CREATE DATABASE empty").ok());
    Alembic(server_->Url("app"), {"upgrade", "heads"});
  }
  static void TearDownTestSuite() { delete server_; }

  static PostgresServer* server_;
  std::unique_ptr<Driver> reader_ = MakePostgresDriver(FastOptions());
};
PostgresServer* PostgresReaderTest::server_ = nullptr;

TEST_F(PostgresReaderTest, ReadsRowsAndReusesTheConnection) {
  VersionRead r = reader_->Read(Target(server_->Url("app")));
  ASSERT_EQ(r.outcome, ReadOutcome::kOk) << r.error;
  EXPECT_THAT(r.rows, ElementsAre(kHead));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(reader_->Read(Target(server_->Url("app"))).outcome, ReadOutcome::kOk);
  auto n = server_->Psql(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lockstepd'");
  EXPECT_EQ(*n, "1\n");
  // Idle in no transaction: nothing left open.
  auto idle = server_->Psql(
      "SELECT state FROM pg_stat_activity WHERE application_name = 'lockstepd'");
  EXPECT_EQ(*idle, "idle\n");
}

// The server ends lockstepd's idle pooled connection (a restart,
// idle_session_timeout, pg_terminate_backend): the next read goes again on
// a new connection instead of reporting a reachable database unreachable.
TEST_F(PostgresReaderTest, AConnectionTheServerEndedIsNotAnUnreachableDatabase) {
  ASSERT_EQ(reader_->Read(Target(server_->Url("app"))).outcome, ReadOutcome::kOk);
  auto killed = server_->Psql(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE application_name = 'lockstepd'");
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(*killed, "1\n");
  for (int i = 0; i < 3; ++i) {
    VersionRead r = reader_->Read(Target(server_->Url("app")));
    EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;
    EXPECT_THAT(r.rows, ElementsAre(kHead));
  }
  auto n = server_->Psql(
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lockstepd'");
  EXPECT_EQ(*n, "1\n");
}

// The advisory lock's session survives the server's idle timeout (the lock
// disables it for its session), and a session the server ends anyway is
// noticed: Check says the lock is lost.
TEST_F(PostgresReaderTest, TheLockSurvivesIdleTimeoutsAndItsLossIsNoticed) {
  ASSERT_TRUE(server_->Psql("ALTER DATABASE app SET idle_session_timeout = '300ms'").ok());
  VersionTarget t = Target(server_->Url("app"));
  auto lock = reader_->Lock(t, t.url, absl::Seconds(5), IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  absl::SleepFor(absl::Milliseconds(900));
  EXPECT_TRUE((*lock)->Check().ok()) << (*lock)->Check();
  auto killed = server_->Psql(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
      "WHERE application_name = 'lockstepd-lock'");
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(*killed, "1\n");
  absl::Status lost = (*lock)->Check();
  EXPECT_TRUE(absl::IsAborted(lost)) << lost;
  EXPECT_THAT(lost.message(), HasSubstr("the session holding the advisory lock on"));
  ASSERT_TRUE(server_->Psql("ALTER DATABASE app RESET idle_session_timeout").ok());
}

TEST_F(PostgresReaderTest, NoTableAndUnknownSchema) {
  EXPECT_EQ(reader_->Read(Target(server_->Url("empty"))).outcome, ReadOutcome::kNoTable);
  VersionTarget t = Target(server_->Url("app"));
  t.version_table_schema = "nope";
  EXPECT_EQ(reader_->Read(t).outcome, ReadOutcome::kNoTable);
}

TEST_F(PostgresReaderTest, UnreachableWithoutLeakingThePassword) {
  int closed = lockstep::testing::FreePort();
  VersionRead r = reader_->Read(
      Target("postgresql://app:hunter2@127.0.0.1:" + std::to_string(closed) + "/app"));
  EXPECT_EQ(r.outcome, ReadOutcome::kUnreachable);
  EXPECT_THAT(r.error, HasSubstr("Connection refused"));
  EXPECT_THAT(r.error, Not(HasSubstr("hunter2")));
  r = reader_->Read(Target(server_->Url("no_such_db")));
  EXPECT_EQ(r.outcome, ReadOutcome::kUnreachable);
  EXPECT_THAT(r.error, HasSubstr("does not exist"));
}

// The test server checks passwords (scram-sha-256 for every role but its
// own superuser): the password in the URL, from password_file and from
// password_env gets in; a wrong one is refused, named, and never shown.
TEST_F(PostgresReaderTest, PasswordsAreCheckedFromTheUrlAFileOrTheEnvironment) {
  ASSERT_TRUE(server_->Psql("CREATE ROLE reader LOGIN PASSWORD 'correct-horse'").ok());
  ASSERT_TRUE(server_->Psql("GRANT SELECT ON alembic_version TO reader", "app").ok());
  VersionRead r = reader_->Read(Target(server_->Url("app", "reader", "correct-horse")));
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;

  lockstep::testing::TempDir dir("lockstep-pw");
  const std::string file = dir.path() + "/pw";
  std::ofstream(file) << "correct-horse\n";
  VersionTarget from_file = Target(server_->Url("app", "reader"));
  from_file.secret.file = file;
  r = reader_->Read(from_file);
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;

  ::setenv("LOCKSTEP_TEST_READER_PW", "correct-horse", 1);
  VersionTarget from_env = Target(server_->Url("app", "reader"));
  from_env.secret.env = "LOCKSTEP_TEST_READER_PW";
  r = reader_->Read(from_env);
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;

  std::ofstream(file, std::ios::trunc) << "battery-staple\n";
  r = reader_->Read(from_file);
  EXPECT_EQ(r.outcome, ReadOutcome::kPermissionDenied);
  EXPECT_THAT(r.error, HasSubstr("password authentication failed for user \"reader\""));
  EXPECT_THAT(r.error, Not(HasSubstr("battery-staple")));
  r = reader_->Read(Target(server_->Url("app", "reader", "hunter2")));
  EXPECT_THAT(r.error, HasSubstr("password authentication failed"));
  EXPECT_THAT(r.error, Not(HasSubstr("hunter2")));
  r = reader_->Read(Target(server_->Url("app", "reader")));  // none at all
  EXPECT_EQ(r.outcome, ReadOutcome::kPermissionDenied);
  EXPECT_THAT(r.error, HasSubstr("password"));
  ::unsetenv("LOCKSTEP_TEST_READER_PW");
}

TEST_F(PostgresReaderTest, RoleWithoutSelectIsPermissionDenied) {
  ASSERT_TRUE(server_->Psql("CREATE ROLE nosel LOGIN PASSWORD 'nosel-pw'").ok());
  VersionRead r = reader_->Read(Target(server_->Url("app", "nosel", "nosel-pw")));
  EXPECT_EQ(r.outcome, ReadOutcome::kPermissionDenied) << r.error;
  EXPECT_THAT(r.error, HasSubstr("permission denied"));
}

TEST_F(PostgresReaderTest, LockHeldIsATimeout) {
  pqxx::connection holder(config::ParseDatabaseUrl(server_->Url("app"))->LibpqConninfo());
  pqxx::work tx(holder);
  tx.exec("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE");
  VersionRead r = reader_->Read(Target(server_->Url("app")));
  EXPECT_EQ(r.outcome, ReadOutcome::kTimedOut) << r.error;
  EXPECT_THAT(r.error, HasSubstr("timed out after 300ms"));
  tx.abort();
  EXPECT_EQ(reader_->Read(Target(server_->Url("app"))).outcome, ReadOutcome::kOk);
}

// Tenants as schemas of one database: the reconciler reads them in one
// batch (one connection, two statements), and every outcome is the one a
// read of each alone gives: rows, an empty table, no table, no schema, no
// SELECT, a table locked past the statement timeout.
TEST_F(PostgresReaderTest, TenantsAsSchemasAreReadTogetherExactlyAsAlone) {
  ASSERT_TRUE(server_->Psql("CREATE DATABASE tenants").ok());
  ASSERT_TRUE(server_->Psql("CREATE ROLE tenant_reader LOGIN PASSWORD 'tr-pw'").ok());
  std::string setup;
  for (const char* schema : {"t_a", "t_b", "t_empty", "t_notable", "t_nosel", "t_locked"}) {
    absl::StrAppend(&setup, "CREATE SCHEMA ", schema, "; GRANT USAGE ON SCHEMA ", schema,
                    " TO tenant_reader; ");
    if (std::string(schema) == "t_notable") continue;
    absl::StrAppend(&setup, "CREATE TABLE ", schema,
                    ".alembic_version (version_num varchar(32) PRIMARY KEY); ");
    if (std::string(schema) != "t_nosel") {
      absl::StrAppend(&setup, "GRANT SELECT ON ", schema, ".alembic_version TO tenant_reader; ");
    }
  }
  absl::StrAppend(&setup,
                  "INSERT INTO t_a.alembic_version VALUES ('a1'), ('a2'); "
                  "INSERT INTO t_b.alembic_version VALUES ('b1'); "
                  "INSERT INTO t_locked.alembic_version VALUES ('l1');");
  ASSERT_TRUE(server_->Psql(setup, "tenants").ok());

  std::unique_ptr<Drivers> drivers = MakeDrivers(FastOptions());
  std::vector<VersionTarget> targets;
  for (const char* schema : {"t_a", "t_b", "t_empty", "t_notable", "t_nosel", "t_locked", "nope"}) {
    VersionTarget t = Target(server_->Url("tenants", "tenant_reader", "tr-pw"));
    t.name = std::string("test/") + schema;
    t.version_table_schema = schema;
    targets.push_back(t);
  }
  std::vector<const VersionTarget*> batch;
  for (const VersionTarget& t : targets) batch.push_back(&t);

  // One key for them all; another user, another database or SQLite differ.
  const std::string key = drivers->BatchKey(targets[0]);
  EXPECT_FALSE(key.empty());
  for (const VersionTarget& t : targets) EXPECT_EQ(drivers->BatchKey(t), key);
  EXPECT_NE(drivers->BatchKey(Target(server_->Url("tenants"))), key);
  EXPECT_NE(drivers->BatchKey(Target(server_->Url("app", "tenant_reader", "tr-pw"))), key);
  EXPECT_THAT(key, Not(HasSubstr("tr-pw")));
  EXPECT_EQ(drivers->BatchKey(Target("sqlite:////tmp/x.db")), "");

  auto compare = [&](const std::vector<VersionRead>& together) {
    ASSERT_EQ(together.size(), targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      VersionRead alone = drivers->Read(targets[i]);
      EXPECT_EQ(ReadOutcomeName(together[i].outcome), ReadOutcomeName(alone.outcome))
          << targets[i].name << ": " << together[i].error << " / " << alone.error;
      EXPECT_EQ(together[i].rows, alone.rows) << targets[i].name;
      EXPECT_EQ(together[i].error.empty(), alone.error.empty()) << targets[i].name;
    }
  };
  std::vector<VersionRead> together = drivers->ReadBatch(batch);
  ASSERT_EQ(together.size(), targets.size());
  EXPECT_THAT(together[0].rows, ElementsAre("a1", "a2"));
  EXPECT_THAT(together[1].rows, ElementsAre("b1"));
  EXPECT_EQ(together[2].outcome, ReadOutcome::kOk);
  EXPECT_THAT(together[2].rows, IsEmpty());
  EXPECT_EQ(together[3].outcome, ReadOutcome::kNoTable);
  EXPECT_EQ(together[4].outcome, ReadOutcome::kPermissionDenied);
  EXPECT_THAT(together[4].error, HasSubstr("permission denied"));
  EXPECT_THAT(together[5].rows, ElementsAre("l1"));
  EXPECT_EQ(together[6].outcome, ReadOutcome::kNoTable);
  compare(together);

  {
    // A migration holds one tenant's version table: that one times out as
    // alone, the others are still read.
    pqxx::connection holder(config::ParseDatabaseUrl(server_->Url("tenants"))->LibpqConninfo());
    pqxx::work tx(holder);
    tx.exec("LOCK TABLE t_locked.alembic_version IN ACCESS EXCLUSIVE MODE");
    together = drivers->ReadBatch(batch);
    ASSERT_EQ(together.size(), targets.size());
    EXPECT_EQ(together[5].outcome, ReadOutcome::kTimedOut) << together[5].error;
    EXPECT_THAT(together[0].rows, ElementsAre("a1", "a2"));
    EXPECT_EQ(together[4].outcome, ReadOutcome::kPermissionDenied);
    compare(together);
    tx.abort();
  }

  // The server unreachable: each says so, without the password.
  std::vector<VersionTarget> gone = targets;
  const int closed = lockstep::testing::FreePort();
  for (VersionTarget& t : gone) {
    t.url = *config::ParseDatabaseUrl(
        "postgresql://app:hunter2@127.0.0.1:" + std::to_string(closed) + "/tenants");
  }
  std::vector<const VersionTarget*> gone_batch;
  for (const VersionTarget& t : gone) gone_batch.push_back(&t);
  for (const VersionRead& r : drivers->ReadBatch(gone_batch)) {
    EXPECT_EQ(r.outcome, ReadOutcome::kUnreachable);
    EXPECT_THAT(r.error, HasSubstr("Connection refused"));
    EXPECT_THAT(r.error, Not(HasSubstr("hunter2")));
  }
}

TEST_F(PostgresReaderTest, DiscoverByQueryAndGlob) {
  config::DiscoverRule rule;
  rule.url = *config::ParseDatabaseUrl(server_->Url("postgres"));
  rule.query = "SELECT datname FROM pg_database WHERE datname IN ('app', 'empty')";
  std::unique_ptr<Drivers> drivers = MakeDrivers(FastOptions());
  auto found = drivers->Discover(rule);
  ASSERT_TRUE(found.ok()) << found.status();
  std::vector<std::string> names;
  for (const Discovered& d : *found) {
    names.push_back(d.name);
    EXPECT_EQ(d.url.database, d.name);
    EXPECT_EQ(d.url.port, rule.url->port);
    EXPECT_TRUE(d.file.empty());
  }
  EXPECT_THAT(names, ElementsAre("app", "empty"));
  rule.query = "SELECT nonsense FROM nowhere";
  EXPECT_THAT(drivers->Discover(rule).status().message(),
              HasSubstr("discover query on postgresql://postgres@127.0.0.1"));

  // A glob is SQLite's: files, named without their extension, sorted by path.
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("lockstep-discover-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* f : {"zeta.db", "acme.sqlite3", "notes.txt"}) std::ofstream(dir / f) << "";
  config::DiscoverRule files;
  files.glob = (dir / "*.[ds][bq]*").string();
  auto tenants = drivers->Discover(files);
  ASSERT_TRUE(tenants.ok()) << tenants.status();
  ASSERT_EQ(tenants->size(), 2u);
  EXPECT_EQ((*tenants)[0].name, "acme");
  EXPECT_EQ((*tenants)[0].file, (dir / "acme.sqlite3").string());
  EXPECT_EQ((*tenants)[0].url.dialect, config::Dialect::kSqlite);
  EXPECT_EQ((*tenants)[1].url.database, (dir / "zeta.db").string());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lockstep::daemon
