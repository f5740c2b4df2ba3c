// The MySQL/MariaDB driver against a real MariaDB server the test starts.
#include "daemon/drivers/mysql_driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
#include "daemon/drivers/mysql_schema.h"
#include "tests/support/alembic.h"
#include "tests/support/mariadb_server.h"
#include "tests/support/postgres_server.h"  // FreePort

namespace lockstep::daemon {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kSecret[] = "s3cr3t-Pa55";

class MysqlDriverTest : public ::testing::Test {
 protected:
  // One server for the suite. A server that does not start fails every
  // test (an ASSERT here would only skip them, which CTest counts as passed).
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::MariadbServer>> s = testing::MariadbServer::Start();
    if (!s.ok()) {
      *start_error_ = s.status().ToString();
      return;
    }
    server_ = s->release();
    absl::StatusOr<std::string> made = server_->Sql(
        absl::StrCat("CREATE DATABASE app; CREATE DATABASE fresh; CREATE DATABASE tenant_a; "
                     "CREATE DATABASE tenant_b; CREATE DATABASE other; "
                     "CREATE TABLE app.alembic_version (version_num VARCHAR(32) NOT NULL "
                     "PRIMARY KEY); INSERT INTO app.alembic_version VALUES ('b2'), ('a1'); "
                     "CREATE TABLE other.alembic_version (version_num VARCHAR(32) NOT NULL); "
                     "CREATE TABLE app.my_versions (version_num VARCHAR(32) NOT NULL); "
                     "INSERT INTO app.my_versions VALUES ('c3'); "
                     "CREATE USER 'app'@'%' IDENTIFIED BY '",
                     kSecret,
                     "'; GRANT ALL ON app.* TO 'app'@'%'; GRANT ALL ON fresh.* TO 'app'@'%'; "
                     "GRANT ALL ON `tenant\\_%`.* TO 'app'@'%'; "
                     "CREATE USER 'nosy'@'%' IDENTIFIED BY 'x'; "
                     "GRANT SELECT ON fresh.* TO 'nosy'@'%';"));
    if (!made.ok()) *start_error_ = made.status().ToString();
  }
  void SetUp() override { ASSERT_TRUE(start_error_->empty()) << *start_error_; }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  VersionTarget Target(const std::string& db, const std::string& user = "app",
                       const std::string& password = kSecret) {
    VersionTarget t;
    t.name = "prod/" + db;
    t.url = *config::ParseDatabaseUrl(server_->Url(db, user, password));
    return t;
  }

  static testing::MariadbServer* server_;
  static std::string* start_error_;
  ReaderOptions options_{absl::Seconds(3), absl::Seconds(1), 4, absl::Seconds(5)};
  std::unique_ptr<Driver> driver_ = MakeMysqlDriver(options_);
};

testing::MariadbServer* MysqlDriverTest::server_ = nullptr;
std::string* MysqlDriverTest::start_error_ = new std::string();

TEST_F(MysqlDriverTest, ReadsTheRowsAndTellsEveryFailureApart) {
  VersionRead ok = driver_->Read(Target("app"));
  EXPECT_EQ(ok.outcome, ReadOutcome::kOk) << ok.error;
  EXPECT_THAT(ok.rows, ElementsAre("a1", "b2"));

  VersionRead none = driver_->Read(Target("fresh"));
  EXPECT_EQ(none.outcome, ReadOutcome::kNoTable) << none.error;

  VersionRead gone = driver_->Read(Target("gone", "root", ""));
  EXPECT_EQ(gone.outcome, ReadOutcome::kUnreachable) << gone.error;
  EXPECT_THAT(gone.error, HasSubstr("`gone` does not exist"));

  VersionRead bad = driver_->Read(Target("app", "app", "wrong-password"));
  EXPECT_EQ(bad.outcome, ReadOutcome::kPermissionDenied) << bad.error;
  EXPECT_THAT(bad.error, Not(HasSubstr("wrong-password")));

  // SELECT on another database only: no rights on app's table.
  VersionRead denied = driver_->Read(Target("app", "nosy", "x"));
  EXPECT_EQ(denied.outcome, ReadOutcome::kPermissionDenied) << denied.error;

  VersionTarget down = Target("app");
  down.url.port = testing::FreePort();
  VersionRead refused = driver_->Read(down);
  EXPECT_EQ(refused.outcome, ReadOutcome::kUnreachable) << refused.error;
  EXPECT_THAT(refused.error, Not(HasSubstr(kSecret)));

  VersionRead empty = driver_->Read(Target("other", "root", ""));
  EXPECT_EQ(empty.outcome, ReadOutcome::kOk) << empty.error;
  EXPECT_THAT(empty.rows, IsEmpty());
}

TEST_F(MysqlDriverTest, AUnixSocketInTheUrlIsUsed) {
  VersionTarget t;
  t.name = "prod/app";
  t.url = *config::ParseDatabaseUrl(absl::StrCat("mysql+pymysql://app:", kSecret,
                                                 "@localhost/app?unix_socket=", server_->socket()));
  VersionRead r = driver_->Read(t);
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;
  EXPECT_THAT(r.rows, ElementsAre("a1", "b2"));
  t.url.query["unix_socket"] = server_->socket() + ".nothing";
  EXPECT_EQ(driver_->Read(t).outcome, ReadOutcome::kUnreachable);
}

TEST_F(MysqlDriverTest, TheVersionTableAndItsDatabaseComeFromTheTarget) {
  VersionTarget t = Target("app");
  t.version_table = "my_versions";
  EXPECT_THAT(driver_->Read(t).rows, ElementsAre("c3"));
  // version_table_schema names the database that holds the table.
  VersionTarget elsewhere = Target("fresh");
  elsewhere.version_table_schema = "app";
  VersionRead r = driver_->Read(elsewhere);
  EXPECT_EQ(r.outcome, ReadOutcome::kOk) << r.error;
  EXPECT_THAT(r.rows, ElementsAre("a1", "b2"));
}

TEST_F(MysqlDriverTest, OnePooledConnectionReadsManyDatabasesAndSurvivesAKill) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(driver_->Read(Target("app")).outcome, ReadOutcome::kOk);
    ASSERT_EQ(driver_->Read(Target("fresh")).outcome, ReadOutcome::kNoTable);
  }
  absl::StatusOr<std::string> n =
      server_->Sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, "1\n") << "reads one after another should share one connection";
  // The server ends the pooled session: the next read opens a new one.
  ASSERT_TRUE(server_
                  ->Sql("SELECT CONCAT('KILL ', ID) FROM information_schema.PROCESSLIST "
                        "WHERE USER = 'app' INTO @k; EXECUTE IMMEDIATE @k")
                  .ok());
  VersionRead again = driver_->Read(Target("app"));
  EXPECT_EQ(again.outcome, ReadOutcome::kOk) << again.error;
}

TEST_F(MysqlDriverTest, ATableLockedByAMigrationIsATimeoutNotAHang) {
  // The holder keeps the lock until the test ends its SLEEP: on a loaded
  // machine each poll below is a slow client process, and a lock that ended
  // on its own (it used to be SLEEP(4)) could end while the read waited.
  std::thread holder([] {
    server_->Sql("LOCK TABLES app.alembic_version WRITE; SELECT SLEEP(120); UNLOCK TABLES")
        .IgnoreError();
  });
  auto release = [&] {
    server_
        ->Sql(
            "SELECT CONCAT('KILL QUERY ', ID) FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE 'SELECT SLEEP%' INTO @k; EXECUTE IMMEDIATE @k")
        .IgnoreError();
    holder.join();
  };
  // Until the holder has the lock (by a deadline: each poll is a process).
  bool held = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(60);
       !held && absl::Now() < deadline;) {
    absl::StatusOr<std::string> busy = server_->Sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'");
    held = busy.ok() && *busy != "0\n";
    if (!held) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!held) {
    release();
    FAIL() << "the holder never got the lock";
  }
  const absl::Time start = absl::Now();
  VersionRead r = driver_->Read(Target("app"));
  const absl::Duration took = absl::Now() - start;
  release();
  EXPECT_EQ(r.outcome, ReadOutcome::kTimedOut) << r.error;
  EXPECT_LT(took, absl::Seconds(3.5));
}

TEST_F(MysqlDriverTest, TheLockIsExclusiveSaysWhoHoldsItAndDiesWithIt) {
  VersionTarget t = Target("app");
  absl::StatusOr<std::unique_ptr<DatabaseLock>> first =
      driver_->Lock(t, t.url, absl::Seconds(3), IfMissing::kRefuse);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE((*first)->Check().ok());
  std::vector<std::string> witness = (*first)->Witness();
  EXPECT_THAT(witness, ::testing::Contains(HasSubstr("LOCKSTEP_TARGET_LOCK_NAME=lockstep:app")));

  // A second lockstepd (another driver: another connection) is refused.
  std::unique_ptr<Driver> other = MakeMysqlDriver(options_);
  absl::StatusOr<std::unique_ptr<DatabaseLock>> second =
      other->Lock(t, t.url, absl::Seconds(3), IfMissing::kRefuse);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("locked by another rollout or lockstepd"));
  EXPECT_THAT(second.status().message(), HasSubstr("(app@"));
  // Another database on the same server is not.
  VersionTarget fresh = Target("fresh");
  EXPECT_TRUE(other->Lock(fresh, fresh.url, absl::Seconds(3), IfMissing::kRefuse).ok());

  // Killed from outside: the lock says so.
  ASSERT_TRUE(server_
                  ->Sql("SELECT IS_USED_LOCK('lockstep:app') INTO @id; "
                        "SET @k = CONCAT('KILL ', @id); EXECUTE IMMEDIATE @k")
                  .ok());
  EXPECT_EQ((*first)->Check().code(), absl::StatusCode::kAborted);
  first->reset();
  absl::StatusOr<std::unique_ptr<DatabaseLock>> third =
      other->Lock(t, t.url, absl::Seconds(3), IfMissing::kRefuse);
  EXPECT_TRUE(third.ok()) << third.status();

  // A database that is not there is not created.
  VersionTarget gone = Target("gone", "root", "");
  absl::StatusOr<std::unique_ptr<DatabaseLock>> missing =
      driver_->Lock(gone, gone.url, absl::Seconds(3), IfMissing::kRefuse);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MysqlDriverTest, DiscoverListsWhatTheQueryNames) {
  config::DiscoverRule rule;
  rule.environment = "prod";
  rule.url = *config::ParseDatabaseUrl(server_->Url("app", "app", kSecret));
  rule.query = "SHOW DATABASES LIKE 'tenant\\_%'";
  absl::StatusOr<std::vector<Discovered>> found = driver_->Discover(rule);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].name, "tenant_a");
  EXPECT_EQ((*found)[1].url.database, "tenant_b");
  rule.query = "SELECT nonsense FROM nowhere";
  absl::StatusOr<std::vector<Discovered>> bad = driver_->Discover(rule);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(bad.status().message(), Not(HasSubstr(kSecret)));
}

// PyMySQL reads no environment: Alembic's URL names an option file in
// lockstepd's memory that holds the password, and never the password.
TEST_F(MysqlDriverTest, AlembicsUrlNamesAnOptionFileNotThePassword) {
  config::DatabaseUrl url = Target("app").url;
  config::DatabaseUrl child = driver_->ChildUrl(url);
  EXPECT_FALSE(child.password.has_value());
  EXPECT_THAT(child.ToSqlAlchemy(), Not(HasSubstr(kSecret)));
  const std::string path = child.query.at("read_default_file");
  EXPECT_THAT(path, ::testing::StartsWith(absl::StrCat("/proc/", ::getpid(), "/fd/")));
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, absl::StrCat("[client]\npassword=\"", kSecret, "\"\n"));
  EXPECT_EQ(driver_->ChildUrl(url).query.at("read_default_file"), path);  // one per password
  url.password.reset();
  EXPECT_EQ(driver_->ChildUrl(url).query.count("read_default_file"), 0u);
}

// A database backed up, changed (rows, a new table, the version row),
// compared with its backup, restored, and compared again.
TEST_F(MysqlDriverTest, BackupCompareRestoreCompare) {
  ASSERT_TRUE(
      server_
          ->Sql("CREATE DATABASE keep; "
                "CREATE TABLE keep.alembic_version (version_num VARCHAR(32) PRIMARY KEY); "
                "INSERT INTO keep.alembic_version VALUES ('a1'); "
                "CREATE TABLE keep.notes (id INT PRIMARY KEY, body TEXT); "
                "INSERT INTO keep.notes VALUES (1, 'it''s (tricky), \\\\ isn''t it'), (2, NULL); "
                "CREATE TABLE keep.empty (id INT); "
                "CREATE VIEW keep.v AS SELECT id FROM keep.notes; "
                "GRANT ALL ON keep.* TO 'app'@'%'")
          .ok());
  VersionTarget t = Target("keep");
  const std::string dir = ::testing::TempDir() + "/mysql-backups-" + std::to_string(::getpid());
  absl::StatusOr<Backup> backup = driver_->TakeBackup(t, t.url, dir, absl::Seconds(30));
  ASSERT_TRUE(backup.ok()) << backup.status();
  backup->environment = "prod";
  backup->database = "keep";
  backup->revisions = {"a1"};
  EXPECT_GT(backup->size_bytes, 0);
  absl::StatusOr<TableCounts> in_dump = MysqlDumpCounts(backup->path);
  ASSERT_TRUE(in_dump.ok()) << in_dump.status();
  EXPECT_EQ(*in_dump, (TableCounts{{"alembic_version", 1}, {"empty", 0}, {"notes", 2}}));

  // What a migration that failed half-way leaves: a new table, rows, the row moved.
  ASSERT_TRUE(server_
                  ->Sql("CREATE TABLE keep.half_done (id INT); INSERT INTO keep.notes VALUES (3, "
                        "'x'); UPDATE keep.alembic_version SET version_num = 'b2'; "
                        "DROP VIEW keep.v")
                  .ok());
  absl::StatusOr<BackupComparison> before =
      driver_->CompareWithBackup(*backup, t.url, {"b2"}, absl::Seconds(3), absl::Seconds(30));
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_TRUE(before->changed());
  EXPECT_THAT(before->Describe(), ::testing::Contains("half_done: 0 rows now, not in the backup"));
  EXPECT_THAT(before->Describe(), ::testing::Contains("notes: 3 rows now, 2 in the backup"));

  ASSERT_TRUE(driver_->RestoreBackup(*backup, t.url, absl::Seconds(30)).ok());
  EXPECT_EQ(*server_->Sql("SHOW FULL TABLES FROM keep"),
            "alembic_version\tBASE TABLE\nempty\tBASE TABLE\nnotes\tBASE TABLE\nv\tVIEW\n");
  EXPECT_EQ(*server_->Sql("SELECT body FROM keep.notes WHERE id = 1"),
            "it's (tricky), \\\\ isn't it\n");
  EXPECT_THAT(driver_->Read(t).rows, ElementsAre("a1"));
  absl::StatusOr<BackupComparison> after =
      driver_->CompareWithBackup(*backup, t.url, {"a1"}, absl::Seconds(3), absl::Seconds(30));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_FALSE(after->changed()) << ::testing::PrintToString(after->Describe());

  // A dump the server refuses part way: the restore says so, never OK.
  Backup broken = *backup;
  broken.path = dir + "/broken.sql";
  std::ofstream(broken.path) << "CREATE TABLE `first` (id INT);\nTHIS IS NOT SQL;\n"
                                "CREATE TABLE `second` (id INT);\n";
  absl::Status failed = driver_->RestoreBackup(broken, t.url, absl::Seconds(30));
  EXPECT_EQ(failed.code(), absl::StatusCode::kFailedPrecondition) << failed;
  EXPECT_THAT(failed.message(), HasSubstr("failed part way"));
  EXPECT_THAT(failed.message(), Not(HasSubstr(kSecret)));
  EXPECT_EQ(*server_->Sql("SHOW TABLES FROM keep"), "first\n");
}

TEST(MysqlDumpCountsTest, RowsAreCountedOutsideQuotedStrings) {
  const std::string path = ::testing::TempDir() + "/dump-" + std::to_string(::getpid()) + ".sql";
  std::ofstream(path) << "CREATE TABLE `a``b` (\n  `id` int\n);\n"
                         "INSERT INTO `a``b` VALUES (1,'x),(y'),(2,'it\\'s'),(3,'\\\\'),(4,0x28);\n"
                         "INSERT INTO `a``b` VALUES\n(5,NULL),\n(6,'a;b'),\n(7,'\\n(');\n"
                         "CREATE TABLE `empty` (\n  `id` int\n);\n"
                         "/*!50001 CREATE TABLE `v` (\n  `id` tinyint NOT NULL\n) */;\n";
  absl::StatusOr<TableCounts> counts = MysqlDumpCounts(path);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (TableCounts{{"a`b", 7}, {"empty", 0}}));
  EXPECT_FALSE(MysqlDumpCounts(path + ".missing").ok());
}

// Two databases the real Alembic built to heads read the same; what a
// person changed by hand is named; the version table is left out and its
// rows come with the schema.
TEST_F(MysqlDriverTest, TheExampleProjectsSchemaIsReadAndDriftIsNamed) {
  const std::string ini = testing::ExampleProjectDir() + "/alembic.ini";
  for (const char* db : {"built_a", "built_b"}) {
    ASSERT_TRUE(server_->Sql(absl::StrCat("CREATE DATABASE ", db)).ok());
    std::string out;
    ASSERT_EQ(testing::RunAlembic(ini, server_->Url(db), {"upgrade", "heads"}, &out), 0) << out;
    ASSERT_TRUE(server_
                    ->Sql(absl::StrCat("CREATE VIEW ", db, ".adults AS SELECT id, name FROM ", db,
                                       ".users WHERE age >= 18"))
                    .ok());
  }
  VersionTarget a = Target("built_a", "root", ""), b = Target("built_b", "root", "");
  SchemaFilter filter = SchemaFilterFor(a, {});
  absl::StatusOr<SchemaSnapshot> sa = driver_->ReadSchema(a, filter);
  absl::StatusOr<SchemaSnapshot> sb = driver_->ReadSchema(b, filter);
  ASSERT_TRUE(sa.ok()) << sa.status();
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_THAT(sa->rows, ElementsAre("e9a8c6b4d244"));
  EXPECT_EQ(sa->locked_by, "");
  EXPECT_EQ(SchemaText(sa->schema), SchemaText(sb->schema));
  const Schema& s = sa->schema;
  EXPECT_EQ(s.tables.count("alembic_version"), 0u);
  ASSERT_EQ(s.tables.count("users"), 1u);
  const SchemaTable& users = s.tables.at("users");
  EXPECT_EQ(users.columns.at("id").type, "INT");
  EXPECT_EQ(users.columns.at("id").default_value, "AUTO_INCREMENT");
  EXPECT_TRUE(users.columns.at("name").not_null);
  EXPECT_EQ(users.columns.at("name").type, "VARCHAR(100)");
  EXPECT_THAT(users.primary_key, ElementsAre("id"));
  EXPECT_THAT(users.uniques, ElementsAre(ElementsAre("email")));
  EXPECT_EQ(users.indexes.count("ix_users_name"), 1u);
  const SchemaTable& orders = s.tables.at("orders");
  EXPECT_EQ(orders.columns.at("status").default_value, "'new'");
  ASSERT_EQ(orders.foreign_keys.size(), 1u);
  EXPECT_EQ(orders.foreign_keys[0].ref_table, "users");
  EXPECT_EQ(s.views.count("adults"), 1u);
  EXPECT_THAT(s.views.at("adults"), Not(HasSubstr("built_a")));

  // By hand: a column dropped, an index added.
  ASSERT_TRUE(
      server_->Sql("ALTER TABLE built_b.users DROP COLUMN age, ADD INDEX ix_by_hand (email)").ok());
  sb = driver_->ReadSchema(b, filter);
  ASSERT_TRUE(sb.ok()) << sb.status();
  std::vector<std::string> said;
  for (const SchemaDifference& d : Diff(sa->schema, sb->schema)) said.push_back(Describe(d));
  EXPECT_THAT(said, ::testing::Contains("column users.age missing"));
  EXPECT_THAT(said, ::testing::Contains("index ix_by_hand unexpected"));

  // Read while lockstep's lock is held: marked, not judged.
  auto lock = driver_->Lock(a, a.url, absl::Seconds(3), IfMissing::kRefuse);
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_THAT(driver_->ReadSchema(a, filter)->locked_by, HasSubstr("connection "));
}

TEST(MysqlTypeTest, DisplayWidthsGoBooleansStay) {
  EXPECT_EQ(MysqlType("int(11)"), "INT");
  EXPECT_EQ(MysqlType("bigint(20) unsigned"), "BIGINT UNSIGNED");
  EXPECT_EQ(MysqlType("int"), "INT");
  EXPECT_EQ(MysqlType("tinyint(1)"), "TINYINT(1)");
  EXPECT_EQ(MysqlType("tinyint(4)"), "TINYINT");
  EXPECT_EQ(MysqlType("varchar(20)"), "VARCHAR(20)");
  EXPECT_EQ(MysqlType("decimal(10,2)"), "DECIMAL(10, 2)");
  EXPECT_EQ(MysqlType("enum('a','B')"), "ENUM('a','B')");
}

TEST(MysqlDumpCountsTest, DefinersAreLeftOutOfTheReplay) {
  EXPECT_EQ(WithoutDefiners("/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */"),
            "/*!50013 SQL SECURITY DEFINER */");
  EXPECT_EQ(WithoutDefiners("/*!50003 CREATE*/ /*!50017 DEFINER=`a``b`@`%`*/ /*!50003 TRIGGER t"),
            "/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER t");
  EXPECT_EQ(WithoutDefiners("INSERT INTO `t` VALUES ('DEFINER=`x`')"),
            "INSERT INTO `t` VALUES ('DEFINER=`x`')");
}

TEST(MysqlLockNameTest, StaysWithinMysqlsLimit) {
  EXPECT_EQ(MysqlLockName("app"), "lockstep:app");
  EXPECT_EQ(MysqlLockName(std::string(100, 'x')).size(), 64u);
  EXPECT_NE(MysqlLockName(std::string(100, 'x')), MysqlLockName(std::string(101, 'x')));
}

TEST(MysqlEnvironmentTest, ThePasswordGoesByTheEnvironment) {
  config::DatabaseUrl url =
      *config::ParseDatabaseUrl("mysql+pymysql://app:p%40ss@db:3307/app?unix_socket=/run/m.sock");
  EXPECT_THAT(MysqlEnvironment(url), ElementsAre("MYSQL_HOST=db", "MYSQL_TCP_PORT=3307",
                                                 "MYSQL_UNIX_PORT=/run/m.sock", "MYSQL_PWD=p@ss"));
}

}  // namespace
}  // namespace lockstep::daemon
