#include "daemon/drivers/driver.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/postgres_driver.h"
#include "daemon/drivers/sqlite_driver.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SqliteDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SQLite::Database db(db_, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY)");
    db.exec("INSERT INTO alembic_version VALUES ('r1')");
    target_.name = "prod/app";
    target_.url = *config::ParseDatabaseUrl("sqlite:///" + db_);
  }
  static void SetVersion(const std::string& path, const std::string& revision) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("UPDATE alembic_version SET version_num = '" + revision + "'");
  }

  lockstep::testing::TempDir tmp_{"lockstep-driver"};
  std::string db_ = tmp_.path() + "/app.db";
  VersionTarget target_;
  std::unique_ptr<Drivers> drivers_ = MakeDrivers({});
  Driver& driver_ = drivers_->For(config::Dialect::kSqlite);
};

TEST_F(SqliteDriverTest, DriversDispatchOnTheDialect) {
  EXPECT_EQ(drivers_->For(target_.url).dialect(), config::Dialect::kSqlite);
  EXPECT_EQ(drivers_->For(config::Dialect::kPostgresql).dialect(), config::Dialect::kPostgresql);
  VersionRead read = drivers_->Read(target_);
  EXPECT_EQ(read.outcome, ReadOutcome::kOk);
  EXPECT_THAT(read.rows, ElementsAre("r1"));
}

// A file that did not change is not opened again (a pass over 100,000
// tenant files stats them); any write, and a copy put back over the file
// with its old size and mtime, is read.
TEST_F(SqliteDriverTest, AnUnchangedFileIsNotOpenedAgainAndAnyChangeIsRead) {
  std::unique_ptr<Drivers> drivers =
      MakeDrivers(ReaderOptions{.statement_timeout = absl::Milliseconds(200)});
  const std::string old_copy = tmp_.path() + "/r1-copy.db";
  std::filesystem::copy_file(db_, old_copy);
  // A file changed within a second of its read is read again next time.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_THAT(drivers->Read(target_).rows, ElementsAre("r1"));
  {
    // A writer holds the file's exclusive lock: opening it would time out.
    SQLite::Database writer(db_, SQLite::OPEN_READWRITE);
    writer.exec("BEGIN EXCLUSIVE");
    VersionRead kept = drivers->Read(target_);
    EXPECT_EQ(kept.outcome, ReadOutcome::kOk) << kept.error;
    EXPECT_THAT(kept.rows, ElementsAre("r1"));
    writer.exec("ROLLBACK");
  }
  SetVersion(db_, "r2");
  EXPECT_THAT(drivers->Read(target_).rows, ElementsAre("r2"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_THAT(drivers->Read(target_).rows, ElementsAre("r2"));
  // The old copy put back in place: same inode, size and mtime as now.
  const auto mtime = std::filesystem::last_write_time(db_);
  ASSERT_EQ(std::filesystem::file_size(db_), std::filesystem::file_size(old_copy));
  std::filesystem::copy_file(old_copy, db_, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::last_write_time(db_, mtime);
  EXPECT_THAT(drivers->Read(target_).rows, ElementsAre("r1"));
  // And while a writer holds the lock, a changed file is not served from memory.
  SetVersion(db_, "r3");
  SQLite::Database writer(db_, SQLite::OPEN_READWRITE);
  writer.exec("BEGIN EXCLUSIVE");
  EXPECT_EQ(drivers->Read(target_).outcome, ReadOutcome::kTimedOut);
}

TEST_F(SqliteDriverTest, ADialectWithoutADriverFailsEveryCall) {
  std::vector<std::unique_ptr<Driver>> only_sqlite;
  only_sqlite.push_back(MakeSqliteDriver(ReaderOptions{}));
  Drivers drivers(std::move(only_sqlite));
  Driver& mysql = drivers.For(config::Dialect::kMysql);
  EXPECT_EQ(mysql.dialect(), config::Dialect::kMysql);
  config::DatabaseUrl url = *config::ParseDatabaseUrl("mysql://u@h/db");
  VersionTarget t{.name = "prod/my", .url = url};
  EXPECT_EQ(mysql.Read(t).outcome, ReadOutcome::kError);
  EXPECT_THAT(mysql.Read(t).error, HasSubstr("MySQL is not supported yet"));
  EXPECT_TRUE(absl::IsUnimplemented(
      mysql.Lock(t, url, absl::Seconds(1), IfMissing::kRefuse).status()));
  EXPECT_TRUE(absl::IsUnimplemented(
      mysql.TakeBackup(t, url, tmp_.path(), absl::Seconds(1)).status()));
}

TEST_F(SqliteDriverTest, LockIsExclusiveAndReleasedWithTheObject) {
  auto first = driver_.Lock(target_, target_.url, absl::Seconds(1), IfMissing::kRefuse);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE((*first)->created());
  auto second = driver_.Lock(target_, target_.url, absl::Seconds(1), IfMissing::kRefuse);
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("prod/app is locked by another rollout"));
  first->reset();
  EXPECT_TRUE(driver_.Lock(target_, target_.url, absl::Seconds(1), IfMissing::kRefuse).ok());
}

// A SQLite file replaced under the locked path (another file renamed over
// it) is no longer the database locked: Check says so, so that nothing is
// verified or restored on the replacement.
TEST_F(SqliteDriverTest, ALockNoticesItsFileWasReplaced) {
  auto lock = driver_.Lock(target_, target_.url, absl::Seconds(1), IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_TRUE((*lock)->Check().ok());
  std::filesystem::copy_file(db_, db_ + ".new");
  std::filesystem::rename(db_ + ".new", db_);
  absl::Status replaced = (*lock)->Check();
  EXPECT_TRUE(absl::IsAborted(replaced)) << replaced;
  EXPECT_THAT(replaced.message(), HasSubstr("was replaced by another file"));
  std::filesystem::remove(db_);
  EXPECT_THAT((*lock)->Check().message(), HasSubstr("is gone since lockstep locked it"));
}

TEST_F(SqliteDriverTest, LockOnAMissingFileRefusesOrCreates) {
  VersionTarget gone = target_;
  gone.url.database = tmp_.path() + "/gone.db";
  EXPECT_TRUE(absl::IsFailedPrecondition(
      driver_.Lock(gone, gone.url, absl::Seconds(1), IfMissing::kRefuse).status()));
  EXPECT_FALSE(std::filesystem::exists(gone.url.database));
  auto lock = driver_.Lock(gone, gone.url, absl::Seconds(1), IfMissing::kCreate);
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_TRUE((*lock)->created());
}

TEST_F(SqliteDriverTest, BackupVerifyCompareRestore) {
  absl::StatusOr<Backup> b =
      driver_.TakeBackup(target_, target_.url, tmp_.path() + "/backups", absl::Seconds(30));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->environment, "prod");
  EXPECT_EQ(b->database, "app");
  EXPECT_THAT(b->path, HasSubstr("/backups/prod/app/"));
  EXPECT_FALSE(std::filesystem::exists(b->path + ".partial"));
  EXPECT_EQ(b->sha256, *Sha256OfFile(b->path));
  EXPECT_TRUE(VerifyBackup(*b).ok());
  b->revisions = {"r1"};

  SetVersion(db_, "r2");
  absl::StatusOr<BackupComparison> diff = driver_.CompareWithBackup(
      *b, target_.url, {"r2"}, absl::Seconds(1), absl::Seconds(30));
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_TRUE(diff->changed());

  ASSERT_TRUE(driver_.RestoreBackup(*b, target_.url, absl::Seconds(30)).ok());
  EXPECT_THAT(driver_.Read(target_).rows, ElementsAre("r1"));

  SetVersion(b->path, "tampered");
  EXPECT_TRUE(absl::IsFailedPrecondition(VerifyBackup(*b)));
}

// A new tenant's database is often a 0-byte file (SQLite reads it as an
// empty database); its copy holds SQLite's header page. That is a good
// backup, not "a copy that does not hold what the original holds".
TEST_F(SqliteDriverTest, AnEmptyFileBacksUpAndRestores) {
  VersionTarget empty = target_;
  empty.url.database = tmp_.path() + "/empty.db";
  std::ofstream(empty.url.database).close();
  absl::StatusOr<Backup> b =
      driver_.TakeBackup(empty, empty.url, tmp_.path() + "/backups", absl::Seconds(30));
  ASSERT_TRUE(b.ok()) << b.status();
  SQLite::Database(empty.url.database, SQLite::OPEN_READWRITE)
      .exec("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);"
            "INSERT INTO alembic_version VALUES ('r1')");
  ASSERT_EQ(driver_.Read(empty).outcome, ReadOutcome::kOk);
  ASSERT_TRUE(driver_.RestoreBackup(*b, empty.url, absl::Seconds(30)).ok());
  EXPECT_EQ(driver_.Read(empty).outcome, ReadOutcome::kNoTable);
}

// An application's open read transaction blocks a restore into its
// database. The restore waits up to server.lock_wait and then fails, saying
// so; it never reports a restore it did not make (SQLite's backup step
// returned SQLITE_BUSY, and lockstep used to take that for done).
TEST_F(SqliteDriverTest, RestoreWaitsForAnApplicationsTransactionThenFailsNeverLies) {
  ReaderOptions o;
  o.lock_wait = absl::Milliseconds(400);
  std::unique_ptr<Drivers> drivers = MakeDrivers(o);
  Driver& driver = drivers->For(config::Dialect::kSqlite);
  absl::StatusOr<Backup> b =
      driver.TakeBackup(target_, target_.url, tmp_.path() + "/backups", absl::Seconds(30));
  ASSERT_TRUE(b.ok()) << b.status();
  SetVersion(db_, "r2");
  {
    SQLite::Database app(db_, SQLite::OPEN_READONLY);
    app.exec("BEGIN");
    EXPECT_EQ(app.execAndGet("SELECT COUNT(*) FROM alembic_version").getInt(), 1);
    const absl::Time start = absl::Now();
    absl::Status s = driver.RestoreBackup(*b, target_.url, absl::Seconds(30));
    EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
    EXPECT_THAT(s.message(), HasSubstr("held a lock on " + db_ + " for 400ms (server.lock_wait)"));
    EXPECT_THAT(s.message(), HasSubstr("nothing was copied"));
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
    app.exec("COMMIT");
  }
  EXPECT_THAT(driver.Read(target_).rows, ElementsAre("r2"));
  // A transaction that ends within lock_wait: the restore waits for it.
  std::thread reader([&] {
    SQLite::Database app(db_, SQLite::OPEN_READONLY);
    app.exec("BEGIN");
    app.execAndGet("SELECT COUNT(*) FROM alembic_version");
    absl::SleepFor(absl::Milliseconds(150));
    app.exec("COMMIT");
  });
  absl::SleepFor(absl::Milliseconds(50));
  absl::Status s = driver.RestoreBackup(*b, target_.url, absl::Seconds(30));
  reader.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_THAT(driver.Read(target_).rows, ElementsAre("r1"));
}

// An application keeps writing while the backup runs (a step's backup
// does not stop applications): the copy is checked against the one state it
// was made from, so the writes never make a good backup look corrupt.
TEST_F(SqliteDriverTest, ABackupOfABusyDatabaseIsCheckedAgainstItsOwnSnapshot) {
  {
    SQLite::Database db(db_, SQLite::OPEN_READWRITE);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT)");
  }
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread app([&] {
    SQLite::Database db(db_, SQLite::OPEN_READWRITE, 5000);
    while (!stop) {
      db.exec("INSERT INTO events (body) VALUES (hex(randomblob(200)))");
      ++written;
    }
  });
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Backup> b =
        driver_.TakeBackup(target_, target_.url, tmp_.path() + "/backups", absl::Seconds(30));
    EXPECT_TRUE(b.ok()) << b.status();
  }
  stop = true;
  app.join();
  EXPECT_GT(written.load(), 0);
}

TEST_F(SqliteDriverTest, RepairOnlyAfterAHotJournalRead) {
  VersionRead ok = driver_.Read(target_);
  EXPECT_FALSE(driver_.RepairAfterKilledWriter(target_, ok));
  VersionRead other_error;
  other_error.outcome = ReadOutcome::kError;
  other_error.error = "file is not a database";
  EXPECT_FALSE(driver_.RepairAfterKilledWriter(target_, other_error));
  VersionRead hot;
  hot.outcome = ReadOutcome::kError;
  hot.error = "attempt to write a readonly database: it has a hot journal";
  EXPECT_TRUE(driver_.RepairAfterKilledWriter(target_, hot));
}

TEST(PostgresDriverTest, ChildEnvironmentCarriesTheSecretsNotTheSqliteOne) {
  std::unique_ptr<Drivers> drivers = MakeDrivers({});
  config::DatabaseUrl pg = *config::ParseDatabaseUrl("postgresql://app@db.example:5433/shop");
  pg.password = "s3cret";
  std::vector<std::string> env = drivers->For(pg).ChildEnvironment(pg);
  EXPECT_THAT(env, Contains("PGPASSWORD=s3cret"));
  EXPECT_THAT(env, Contains("PGHOST=db.example"));
  EXPECT_THAT(env, Contains("PGDATABASE=shop"));
  EXPECT_EQ(env, LibpqEnvironment(pg));
  config::DatabaseUrl lite = *config::ParseDatabaseUrl("sqlite:////tmp/x.db");
  EXPECT_TRUE(drivers->For(lite).ChildEnvironment(lite).empty());
  EXPECT_FALSE(drivers->For(pg).RepairAfterKilledWriter(VersionTarget{.url = pg}, VersionRead{}));
}

// What a killed lockstepd was writing goes at the next start; finished
// backups stay.
TEST(RemovePartialBackupsTest, RemovesOnlyPartialFiles) {
  lockstep::testing::TempDir tmp("lockstep-partial");
  std::filesystem::create_directories(tmp.path() + "/prod/t1");
  std::ofstream(tmp.path() + "/prod/t1/20261202T1.sqlite3") << "done";
  std::ofstream(tmp.path() + "/prod/t1/20261202T2.sqlite3.partial") << "half";
  std::ofstream(tmp.path() + "/prod/t2.dump.partial") << "half";
  EXPECT_EQ(RemovePartialBackups(tmp.path()), 2);
  EXPECT_TRUE(std::filesystem::exists(tmp.path() + "/prod/t1/20261202T1.sqlite3"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/prod/t1/20261202T2.sqlite3.partial"));
  EXPECT_EQ(RemovePartialBackups(tmp.path() + "/missing"), 0);
}

}  // namespace
}  // namespace lockstep::daemon
