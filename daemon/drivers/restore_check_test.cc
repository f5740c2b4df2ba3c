#include "daemon/drivers/restore_check.h"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/drivers/sqlite_driver.h"
#include "tests/support/temp_dir.h"

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class RestoreCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Make(live_, "r1");
    Make(backup_.path, "r1");
    backup_.id = 7;
    backup_.environment = "prod";
    backup_.database = "t1";
    backup_.revisions = {"r1"};
    url_.dialect = config::Dialect::kSqlite;
    url_.database = live_;
  }
  static void Make(const std::string& path, const std::string& revision) {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY)");
    db.exec("INSERT INTO alembic_version VALUES ('" + revision + "')");
    db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)");
    db.exec("INSERT INTO users (name) VALUES ('a'), ('b')");
  }
  absl::StatusOr<BackupComparison> Compare(std::vector<std::string> rows_now) {
    return driver_->CompareWithBackup(backup_, url_, std::move(rows_now), absl::Seconds(5),
                                      absl::Seconds(30));
  }

  lockstep::testing::TempDir tmp_{"lockstep-restore-check"};
  std::string live_ = tmp_.path() + "/live.db";
  Backup backup_{.path = tmp_.path() + "/backup.sqlite3"};
  config::DatabaseUrl url_;
  std::unique_ptr<Driver> driver_ = MakeSqliteDriver({});
};

TEST_F(RestoreCheckTest, SameRowsAndCountsIsUnchanged) {
  absl::StatusOr<BackupComparison> c = Compare({"r1"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->changed());
  EXPECT_THAT(c->tables, IsEmpty());
  EXPECT_EQ(c->unchanged_tables, 2);  // alembic_version, users; not sqlite_sequence
}

TEST_F(RestoreCheckTest, ListsRowCountsTablesOnOneSideAndVersionRows) {
  {
    SQLite::Database db(live_, SQLite::OPEN_READWRITE);
    db.exec("INSERT INTO users (name) VALUES ('c'), ('d'), ('e')");
    db.exec("CREATE TABLE orders (id INTEGER)");
    db.exec("INSERT INTO orders VALUES (1)");
  }
  {
    SQLite::Database db(backup_.path, SQLite::OPEN_READWRITE);
    db.exec("CREATE TABLE \"old \"\"notes\"\"\" (id INTEGER)");
  }
  absl::StatusOr<BackupComparison> c = Compare({"r2"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->changed());
  EXPECT_THAT(c->Describe(), ElementsAre("version rows: r2 now, r1 in the backup",
                                         "old \"notes\": not there now, 0 in the backup",
                                         "orders: 1 row now, not in the backup",
                                         "users: 5 rows now, 2 in the backup",
                                         "1 other table has as many rows as in the backup"));
}

TEST_F(RestoreCheckTest, VersionRowsAloneCountAsAChange) {
  absl::StatusOr<BackupComparison> c = Compare({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->changed());
  EXPECT_EQ(c->Describe()[0], "version rows: none now, r1 in the backup");
}

TEST_F(RestoreCheckTest, AnUnreadableBackupIsAnError) {
  backup_.path = tmp_.path() + "/missing.sqlite3";
  EXPECT_EQ(Compare({"r1"}).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace lockstep::daemon
