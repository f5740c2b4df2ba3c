#include "config/database_url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace lockstep::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(DatabaseUrlTest, Sqlite) {
  auto u = ParseDatabaseUrl("sqlite:///rel/app.db", "/srv");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->dialect, Dialect::kSqlite);
  EXPECT_EQ(u->database, "/srv/rel/app.db");
  EXPECT_EQ(ParseDatabaseUrl("sqlite:////abs/app.db")->database, "/abs/app.db");
  EXPECT_EQ(ParseDatabaseUrl("sqlite://")->database, ":memory:");
  EXPECT_THAT(ParseDatabaseUrl("sqlite://host/x.db").status().message(), HasSubstr("no host"));
}

TEST(DatabaseUrlTest, PostgresWithDriverAndEncodedPassword) {
  auto u = ParseDatabaseUrl("postgresql+psycopg2://app:p%40ss%3Aword@db.internal:6432/tenant_1?sslmode=require");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->dialect, Dialect::kPostgresql);
  EXPECT_EQ(u->driver, "psycopg2");
  EXPECT_EQ(u->user, "app");
  EXPECT_EQ(*u->password, "p@ss:word");
  EXPECT_EQ(u->host, "db.internal");
  EXPECT_EQ(u->port, 6432);
  EXPECT_EQ(u->database, "tenant_1");
  EXPECT_EQ(u->query.at("sslmode"), "require");
  EXPECT_EQ(u->Redacted(), "postgresql+psycopg2://app:***@db.internal:6432/tenant_1?sslmode=require");
  EXPECT_THAT(u->Redacted(), Not(HasSubstr("word")));
  EXPECT_EQ(u->LibpqConninfo(),
            "host='db.internal' port='6432' dbname='tenant_1' user='app' password='p@ss:word' "
            "sslmode='require'");
  EXPECT_EQ(ParseDatabaseUrl(u->ToSqlAlchemy())->password, u->password);
}

// ?password= is a password: out of the query, redacted, in the environment only.
TEST(DatabaseUrlTest, PasswordInTheQueryIsAPassword) {
  auto u = ParseDatabaseUrl("postgresql://app@db/t1?sslmode=require&password=s%40cret");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->password, "s@cret");
  EXPECT_EQ(u->query.count("password"), 0u);
  EXPECT_EQ(u->query.at("sslmode"), "require");
  EXPECT_THAT(u->Redacted(), Not(HasSubstr("cret")));
  DatabaseUrl without = *u;
  without.password.reset();
  EXPECT_THAT(without.ToSqlAlchemy(), Not(HasSubstr("cret")));  // what Alembic's argv gets
  EXPECT_THAT(ParseDatabaseUrl("postgresql://app:a@db/t1?password=b").status().message(),
              HasSubstr("given twice"));
}

// The URLs SQLAlchemy writes for MySQL and MariaDB. Alembic gets the driver
// back (SQLAlchemy's default for mysql:// is MySQLdb, not PyMySQL).
TEST(DatabaseUrlTest, MysqlAndMariadbAsSqlalchemyWritesThem) {
  auto u = ParseDatabaseUrl("mysql+pymysql://app:p%40ss@db:3307/shop?charset=utf8mb4");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->dialect, Dialect::kMysql);
  EXPECT_EQ(u->driver, "pymysql");
  EXPECT_EQ(*u->password, "p@ss");
  EXPECT_EQ(u->port, 3307);
  EXPECT_EQ(u->database, "shop");
  EXPECT_EQ(u->query.at("charset"), "utf8mb4");
  EXPECT_EQ(u->Redacted(), "mysql+pymysql://app:***@db:3307/shop?charset=utf8mb4");
  EXPECT_EQ(u->ToSqlAlchemy(), "mysql+pymysql://app:p%40ss@db:3307/shop?charset=utf8mb4");
  auto socket =
      ParseDatabaseUrl("mariadb+pymysql://app@localhost/shop?unix_socket=/run/mysqld/mysqld.sock");
  ASSERT_TRUE(socket.ok()) << socket.status();
  EXPECT_EQ(socket->dialect, Dialect::kMysql);
  EXPECT_EQ(socket->query.at("unix_socket"), "/run/mysqld/mysqld.sock");
  EXPECT_EQ(ParseDatabaseUrl("mysql://app@db/shop")->ToSqlAlchemy(), "mysql://app@db/shop");
  EXPECT_EQ(ParseDatabaseUrl("mysql+mysqldb://app@db/shop")->ToSqlAlchemy(),
            "mysql+mysqldb://app@db/shop");
}

TEST(DatabaseUrlTest, Errors) {
  EXPECT_THAT(ParseDatabaseUrl("oracle://x/y").status().message(), HasSubstr("unsupported"));
  EXPECT_THAT(ParseDatabaseUrl("postgresql://u:secret@h:99999/db").status().message(),
              HasSubstr("bad port '99999'"));
  EXPECT_THAT(ParseDatabaseUrl("postgresql://u:secret@h:99999/db").status().message(),
              Not(HasSubstr("secret")));
  EXPECT_THAT(ParseDatabaseUrl("postgresql://h").status().message(), HasSubstr("no database"));
  EXPECT_THAT(ParseDatabaseUrl("just-a-path").status().message(), HasSubstr("not a database URL"));
}

}  // namespace
}  // namespace lockstep::config
