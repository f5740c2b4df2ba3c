// The MySQL/MariaDB driver against a real MariaDB server the test starts.
#include "daemon/drivers/mysql_driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "absl/strings/str_cat.h"
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
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<testing::MariadbServer>> s = testing::MariadbServer::Start();
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    ASSERT_TRUE(server_
                    ->Sql(absl::StrCat(
                        "CREATE DATABASE app; CREATE DATABASE fresh; CREATE DATABASE tenant_a; "
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
                        "GRANT SELECT ON fresh.* TO 'nosy'@'%';"))
                    .ok());
  }
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
  ReaderOptions options_{absl::Seconds(3), absl::Seconds(1), 4, absl::Seconds(5)};
  std::unique_ptr<Driver> driver_ = MakeMysqlDriver(options_);
};

testing::MariadbServer* MysqlDriverTest::server_ = nullptr;

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
  std::thread holder([] {
    server_->Sql("LOCK TABLES app.alembic_version WRITE; SELECT SLEEP(4); UNLOCK TABLES")
        .IgnoreError();
  });
  // Until the holder has the lock.
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<std::string> busy = server_->Sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'");
    if (busy.ok() && *busy != "0\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const absl::Time start = absl::Now();
  VersionRead r = driver_->Read(Target("app"));
  EXPECT_EQ(r.outcome, ReadOutcome::kTimedOut) << r.error;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3.5));
  holder.join();
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
