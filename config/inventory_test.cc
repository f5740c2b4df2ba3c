#include "config/inventory.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace lockstep::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(InventoryTest, FullExampleInAfterOrder) {
  setenv("LOCKSTEP_TEST_PW", "s3cret", 1);
  auto inv = ParseInventory(R"(
server: {listen: 127.0.0.1:50051, state: state/lockstep.db, poll_interval: 10s,
         alembic_startup_slots: 3}
project:
  alembic_ini: migrations/alembic.ini
  alembic_command: [python3, -m, alembic]
environments:
  - name: prod
    after: staging
    approval: required
    backup: required
    canary: [tenant-001]
    batch_size: 10
    max_parallel: 4
    databases:
      - {name: tenant-001, url: "postgresql://app@db/tenant_001", password_env: LOCKSTEP_TEST_PW}
      - discover: {url: "postgresql://app@db/postgres", query: "SELECT datname FROM pg_database"}
  - name: dev
    databases: [{name: app, url: "sqlite:///dev.db", labels: {tier: free}}]
  - name: staging
    after: dev
    soak: 10m
    databases: [{name: app, url: "sqlite:////var/staging.db"}]
)", "/etc/lockstep/fleet.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  std::vector<std::string> order;
  for (const auto& e : inv->environments) order.push_back(e.name);
  EXPECT_THAT(order, ElementsAre("dev", "staging", "prod"));
  EXPECT_EQ(inv->server.state, "/etc/lockstep/state/lockstep.db");
  EXPECT_EQ(inv->server.poll_interval, absl::Seconds(10));
  EXPECT_EQ(inv->server.alembic_startup_slots, 3);
  EXPECT_EQ(inv->project.alembic_ini, "/etc/lockstep/migrations/alembic.ini");
  EXPECT_THAT(inv->project.alembic_command, ElementsAre("python3", "-m", "alembic"));
  const EnvironmentConfig* prod = inv->FindEnvironment("prod");
  ASSERT_NE(prod, nullptr);
  EXPECT_TRUE(prod->approval_required);
  EXPECT_TRUE(prod->backup_required);
  EXPECT_EQ(prod->discover.size(), 1u);
  EXPECT_EQ(inv->FindEnvironment("staging")->soak, absl::Minutes(10));
  EXPECT_EQ(inv->FindEnvironment("dev")->databases[0].url.database, "/etc/lockstep/dev.db");
  EXPECT_EQ(inv->FindEnvironment("dev")->databases[0].labels.at("tier"), "free");
  auto pw = ResolvePassword(prod->databases[0].url, prod->databases[0].secret, "prod/tenant-001");
  ASSERT_TRUE(pw.ok());
  EXPECT_EQ(**pw, "s3cret");
}

TEST(InventoryTest, EveryErrorAtOnceWithPositions) {
  unsetenv("LOCKSTEP_MISSING_PW");
  auto inv = ParseInventory(R"(server:
  poll_intervall: 30s
project: {alembic_ini: a.ini}
environments:
  - name: dev
    soak: forever
    databases:
      - {name: app, url: "postgresql://u:hunter2@h:bad/db"}
      - {name: app, url: "sqlite:///x.db", password_env: LOCKSTEP_MISSING_PW}
  - name: prod
    after: qa
    databases: []
)", "fleet.yaml");
  ASSERT_FALSE(inv.ok());
  std::string m(inv.status().message());
  EXPECT_THAT(m, HasSubstr("fleet.yaml:2:3: server.poll_intervall: unknown key (did you mean 'poll_interval'?)"));
  EXPECT_THAT(m, HasSubstr("fleet.yaml:6:11: environments[dev].soak: bad duration 'forever'"));
  EXPECT_THAT(m, HasSubstr("environments[dev].databases[0].url: bad port 'bad'"));
  EXPECT_THAT(m, HasSubstr("environments[dev].databases[1].name: duplicate database name 'app'"));
  EXPECT_THAT(m, HasSubstr("environment variable LOCKSTEP_MISSING_PW is not set"));
  EXPECT_THAT(m, HasSubstr("fleet.yaml:11:12: environments[prod].after: no environment named 'qa'"));
  EXPECT_THAT(m, Not(HasSubstr("hunter2")));
}

TEST(InventoryTest, CycleInPromotionOrder) {
  auto inv = ParseInventory(R"(project: {scripts: s}
environments:
  - {name: a, after: b, databases: []}
  - {name: b, after: a, databases: []}
)", "f.yaml");
  EXPECT_THAT(inv.status().message(), HasSubstr("promotion order has a cycle through: a -> b"));
}

TEST(InventoryTest, StartupSlotsDefaultToOnePerCpuAndRefuseNegatives) {
  const std::string envs = "environments: [{name: dev, databases: []}]\n";
  auto inv = ParseInventory("project: {scripts: s}\n" + envs, "f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->server.alembic_startup_slots, 0);  // 0: one per CPU
  inv = ParseInventory("server: {alembic_startup_slots: -1}\nproject: {scripts: s}\n" + envs,
                       "f.yaml");
  EXPECT_THAT(inv.status().message(),
              HasSubstr("f.yaml:1:33: server.alembic_startup_slots: expected a whole number >= 0"));
}

TEST(InventoryTest, MetricsPerDatabaseDefaultsToNotCleanAndNamesABadValue) {
  const std::string envs = "environments: [{name: dev, databases: []}]\n";
  auto inv = ParseInventory("project: {scripts: s}\n" + envs, "f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->server.metrics_per_database, "not_clean");
  inv = ParseInventory("server: {metrics_per_database: all}\nproject: {scripts: s}\n" + envs,
                       "f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->server.metrics_per_database, "all");
  inv = ParseInventory("server: {metrics_per_database: every}\nproject: {scripts: s}\n" + envs,
                       "f.yaml");
  EXPECT_THAT(inv.status().message(),
              HasSubstr("f.yaml:1:32: server.metrics_per_database: expected 'not_clean', 'all' "
                        "or 'none'"));
}

TEST(InventoryTest, MalformedYamlNamesThePosition) {
  auto inv = ParseInventory("project: {scripts: s\nenvironments: [\n", "f.yaml");
  EXPECT_THAT(inv.status().message(), HasSubstr("f.yaml:"));
}

// lockstepd hands these paths to Alembic (run in working_dir), pg_dump and
// the state store: each must be absolute whatever folder lockstepd started in.
TEST(InventoryTest, RelativeInventoryPathGivesAbsolutePaths) {
  auto inv = ParseInventory(R"(
server: {state: state.db, backup_dir: ./backups}
project: {alembic_ini: ../migrations/alembic.ini}
environments:
  - name: dev
    databases: [{name: app, url: "sqlite:///data/../dev.db"}]
    canary: [app]
)",
                            "demo/lockstep.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  const std::string cwd = std::filesystem::current_path().lexically_normal().string();
  EXPECT_EQ(inv->server.state, cwd + "/demo/state.db");
  EXPECT_EQ(inv->server.backup_dir, cwd + "/demo/backups");
  EXPECT_EQ(inv->project.alembic_ini, cwd + "/migrations/alembic.ini");
  EXPECT_EQ(inv->project.working_dir, cwd + "/demo");
  EXPECT_EQ(inv->FindEnvironment("dev")->databases[0].url.database, cwd + "/demo/dev.db");
}

TEST(InventoryTest, SameDatabaseListedTwiceNamesBothEntries) {
  auto inv = ParseInventory(R"(project: {scripts: s}
environments:
  - name: dev
    databases:
      - {name: app, url: "sqlite:///app.db"}
  - name: prod
    databases:
      - {name: main, url: "sqlite:///sub/../app.db"}
      - {name: pg1, url: "postgresql://app@db:5432/t1"}
      - {name: pg2, url: "postgresql://other:pw@db:5432/t1?sslmode=require"}
      - {name: pg3, url: "postgresql://app@db:5432/t2"}
      - {name: pg4, url: "postgresql://app@db:5432/t1", version_table: other_version}
)",
                            "/srv/f.yaml");
  ASSERT_FALSE(inv.ok());
  const std::string m(inv.status().message());
  EXPECT_THAT(m, HasSubstr("prod/main is the same database as dev/app (/srv/f.yaml:5)"));
  EXPECT_THAT(m, HasSubstr("prod/pg2 is the same database as prod/pg1 (/srv/f.yaml:9)"));
  EXPECT_THAT(m, Not(HasSubstr("pg3")));
  EXPECT_THAT(m, Not(HasSubstr("pg4")));  // another version table: another Alembic project
  EXPECT_THAT(m, Not(HasSubstr(":pw@")));
}

// MySQL and MariaDB databases are a third dialect: listed, discovered by a
// query on their server, and the same version table named two ways is
// caught (version_table_schema names the database that holds it).
TEST(InventoryTest, MysqlDatabasesAreListedDiscoveredAndDeduplicated) {
  auto ok = ParseInventory(R"(project: {scripts: s, shadow_mysql: "mysql+pymysql://root@db/mysql"}
environments:
  - name: prod
    databases:
      - {name: shop, url: "mysql+pymysql://app@db:3306/shop"}
      - {name: maria, url: "mariadb+pymysql://app@db/maria?unix_socket=/run/mysqld/mysqld.sock"}
      - discover: {url: "mysql+pymysql://app@db/shop", query: "SHOW DATABASES LIKE 'tenant_%'"}
)",
                           "/srv/f.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_TRUE(ok->project.shadow_mysql.has_value());
  auto unset = ParseInventory(R"(project: {scripts: s, shadow_mysql: "", shadow_postgresql: ""}
environments: [{name: dev, databases: [{name: a, url: "sqlite:///a.db"}]}]
)",
                              "/srv/f.yaml");
  ASSERT_TRUE(unset.ok()) << unset.status();
  EXPECT_FALSE(unset->project.shadow_mysql.has_value());
  EXPECT_FALSE(unset->project.shadow_postgresql.has_value());
  EXPECT_EQ(ok->project.shadow_mysql->host, "db");
  const EnvironmentConfig* prod = ok->FindEnvironment("prod");
  EXPECT_EQ(prod->databases[0].url.dialect, Dialect::kMysql);
  EXPECT_EQ(prod->databases[1].url.dialect, Dialect::kMysql);
  ASSERT_EQ(prod->discover.size(), 1u);
  auto twice = ParseInventory(R"(project: {scripts: s, shadow_mysql: "postgresql://u@h/db"}
environments:
  - name: prod
    databases:
      - {name: a, url: "mysql+pymysql://app@db:3306/shop"}
      - {name: b, url: "mysql+pymysql://app@db:3306/other", version_table_schema: shop}
      - discover: {glob: "/srv/*.db"}
      - discover: {url: "sqlite:///x.db", query: "x"}
)",
                              "/srv/f.yaml");
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("prod/b is the same database as prod/a"));
  EXPECT_THAT(twice.status().message(), HasSubstr("need a postgresql or mysql URL"));
  EXPECT_THAT(twice.status().message(),
              HasSubstr("project.shadow_mysql: expected a mysql:// URL of a server"));
}

TEST(InventoryTest, LockstepdsOwnFilesAreNeverFleetDatabases) {
  const std::string dir = (std::filesystem::temp_directory_path() / "lockstep-own-files").string();
  std::filesystem::create_directories(dir + "/backups");
  std::ofstream(dir + "/t1.db") << "";
  std::filesystem::remove(dir + "/t1-link.db");
  std::filesystem::create_hard_link(dir + "/t1.db", dir + "/t1-link.db");
  auto inv = ParseInventory(R"(
server: {state: state.db, backup_dir: backups}
project: {scripts: s}
environments:
  - name: prod
    databases:
      - {name: store, url: "sqlite:///state.db"}
      - {name: wal, url: "sqlite:///./state.db-wal"}
      - {name: old, url: "sqlite:///backups/prod/t1/1.db"}
      - {name: t1, url: "sqlite:///t1.db"}
      - {name: t1b, url: "sqlite:///t1-link.db"}
      - {name: log, url: "sqlite:///lockstep-output/r-1/step-0.log"}
)",
                            dir + "/f.yaml");
  ASSERT_FALSE(inv.ok());
  const std::string m(inv.status().message());
  EXPECT_THAT(m, HasSubstr("f.yaml:7: environments[prod].databases: prod/store is " + dir +
                           "/state.db, but it is lockstepd's state store (server.state"));
  EXPECT_THAT(m, HasSubstr("prod/wal is " + dir + "/state.db-wal, but it is lockstepd's state "
                           "store-wal"));
  EXPECT_THAT(m, HasSubstr("prod/old is " + dir +
                           "/backups/prod/t1/1.db, but it is in lockstepd's backup folder"));
  EXPECT_THAT(m, HasSubstr("prod/t1b is the same database as prod/t1"));  // a hard link
  EXPECT_THAT(m, HasSubstr("prod/log is " + dir + "/lockstep-output/r-1/step-0.log, but it is in "
                           "lockstepd's output folder (server.output_dir " + dir +
                           "/lockstep-output)"));
}

TEST(InventoryTest, CanaryGateKeysNeedCanaries) {
  auto inv = ParseInventory(R"(project: {scripts: s}
environments:
  - name: prod
    canary: [a]
    canary_soak: 10m
    canary_approval: required
    databases: [{name: a, url: "sqlite:///a.db"}]
  - name: qa
    canary_soak: 5m
    databases: [{name: b, url: "sqlite:///b.db"}]
)",
                            "f.yaml");
  ASSERT_FALSE(inv.ok());
  EXPECT_THAT(inv.status().message(),
              HasSubstr("f.yaml:9:18: environments[qa]: canary_soak and canary_approval need "
                        "canary"));
  inv = ParseInventory(R"(project: {scripts: s}
environments:
  - name: prod
    canary: [a]
    canary_soak: 10m
    canary_approval: required
    databases: [{name: a, url: "sqlite:///a.db"}]
)",
                       "f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->environments[0].canary_soak, absl::Minutes(10));
  EXPECT_TRUE(inv->environments[0].canary_approval_required);
}

TEST(InventoryTest, NamesFollowOnePatternAndListenAddressesAreChecked) {
  auto inv = ParseInventory(R"(server: {listen: "127.0.0.1:99999", metrics_listen: "nowhere"}
project: {scripts: s}
environments:
  - name: prod/eu
    databases: [{name: a, url: "sqlite:///a.db"}]
  - name: qa
    databases:
      - {name: "tenant 1", url: "sqlite:///b.db"}
      - {name: "-x", url: "sqlite:///c.db"}
      - {name: "t\xff", url: "sqlite:///d.db"}
      - {name: tenant-2.eu_1, url: "sqlite:///e.db"}
)",
                            "f.yaml");
  ASSERT_FALSE(inv.ok());
  const std::string m(inv.status().message());
  EXPECT_THAT(m, HasSubstr("server.listen: expected HOST:PORT with a port from 0 to 65535, not "
                           "'127.0.0.1:99999'"));
  EXPECT_THAT(m, HasSubstr("server.metrics_listen: expected HOST:PORT"));
  EXPECT_THAT(m, HasSubstr("environments[0].name: 'prod/eu' is not a valid name"));
  EXPECT_THAT(m, HasSubstr("environments[qa].databases[0].name: 'tenant 1' is not a valid name"));
  EXPECT_THAT(m, HasSubstr("environments[qa].databases[1].name: '-x' is not a valid name"));
  EXPECT_THAT(m, HasSubstr("environments[qa].databases[2].name: 't??' is not a valid name"));
  EXPECT_THAT(m, Not(HasSubstr("tenant-2.eu_1")));
  EXPECT_TRUE(IsValidName("a"));
  EXPECT_FALSE(IsValidName(std::string(129, 'a')));
}

// Plaintext gRPC beyond loopback is refused unless the inventory says so;
// server.tls names readable PEM files.
TEST(InventoryTest, PlaintextBeyondLoopbackNeedsTlsOrInsecure) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:50051"));
  EXPECT_TRUE(IsLoopbackListen("localhost:1"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:1"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:50051"));
  EXPECT_FALSE(IsLoopbackListen("[::]:50051"));
  EXPECT_FALSE(IsLoopbackListen("10.0.0.5:50051"));
  const std::string envs =
      "\nproject: {scripts: s}\nenvironments: [{name: dev, databases: "
      "[{name: a, url: \"sqlite:///a.db\"}]}]\n";
  auto open = ParseInventory("server: {listen: \"0.0.0.0:50051\"}" + envs, "/srv/f.yaml");
  ASSERT_FALSE(open.ok());
  EXPECT_THAT(open.status().message(),
              HasSubstr("/srv/f.yaml:1:18: server.listen: lockstepd would serve 0.0.0.0:50051 in "
                        "plaintext"));
  auto insecure =
      ParseInventory("server: {listen: \"0.0.0.0:50051\", insecure: true}" + envs, "/srv/f.yaml");
  ASSERT_TRUE(insecure.ok()) << insecure.status();
  EXPECT_TRUE(insecure->server.insecure);
  auto missing = ParseInventory(
      "server: {listen: \"0.0.0.0:50051\", tls: {cert: no/cert.pem}}" + envs, "/srv/f.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("server.tls.cert: cannot read /srv/no/cert.pem"));
  EXPECT_THAT(missing.status().message(), HasSubstr("server.tls.key: is required"));
}

// A temp folder with a tokens file holding `lines`; its path.
std::string TokensFile(const std::string& lines) {
  std::string dir =
      std::filesystem::temp_directory_path() / ("lockstep-tokens-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokens.txt") << lines;
  return dir + "/tokens.txt";
}

const std::string kHash(64, 'a');

// server.auth's tokens file and `access`: each needs the other, TLS with
// authentication beyond loopback, and every mistake named.
TEST(InventoryTest, TokensAndAccessBindings) {
  const std::string tokens = TokensFile("# comment\n\nsha256:" + kHash +
                                        " alice@example.com release,dba\n"
                                        "SHA256:" +
                                        std::string(64, 'B') + " bot  # ci\n");
  const std::string envs =
      "project: {scripts: s}\nenvironments: [{name: dev, databases: [{name: a, url: "
      "\"sqlite:///a.db\"}]}, {name: prod, databases: [{name: b, url: \"sqlite:///b.db\"}]}]\n";
  auto inv = ParseInventory("server: {auth: {tokens_file: " + tokens + "}}\n" + envs +
                                "access:\n"
                                "  - {subjects: [group:release, bot], role: operator, "
                                "environments: [dev]}\n"
                                "  - {subjects: [alice@example.com], role: admin, "
                                "environments: [\"*\"]}\n",
                            "/srv/f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_TRUE(inv->authentication);
  ASSERT_EQ(inv->tokens.size(), 2u);
  EXPECT_EQ(inv->tokens.at(kHash).subject, "alice@example.com");
  EXPECT_THAT(inv->tokens.at(kHash).groups, ElementsAre("release", "dba"));
  EXPECT_EQ(inv->tokens.at(std::string(64, 'b')).subject, "bot");  // hex in any case
  ASSERT_EQ(inv->access.size(), 2u);
  EXPECT_THAT(inv->access[0].subjects, ElementsAre("group:release", "bot"));
  EXPECT_EQ(inv->access[1].role, "admin");

  const std::string broken = TokensFile("sha256:abc alice\nsha256:" + kHash + " bad/name\n" +
                                        "sha256:" + kHash + " x\nsha256:" + kHash + " y\n");
  auto bad = ParseInventory("server: {auth: {tokens_file: " + broken + "}}\n" + envs +
                                "access:\n"
                                "  - {subjects: [x], role: owner, environments: [prd]}\n"
                                "  - {subjects: [\"a b\"], environments: []}\n",
                            "/srv/f.yaml");
  ASSERT_FALSE(bad.ok());
  const std::string m(bad.status().message());
  EXPECT_THAT(m, HasSubstr(broken + ":1: expected 'sha256:<64 hex digits> SUBJECT"));
  EXPECT_THAT(m, HasSubstr(broken + ":2: bad subject 'bad/name'"));
  EXPECT_THAT(m, HasSubstr(broken + ":4: the same token hash is listed twice"));
  EXPECT_THAT(m, HasSubstr("access[0].role: unknown role 'owner'"));
  EXPECT_THAT(m, HasSubstr("access[0].environments: 'prd' matches no environment"));
  EXPECT_THAT(m, HasSubstr("access[1].subjects: bad subject 'a b'"));
  EXPECT_THAT(m, HasSubstr("access[1].role: is required"));
  EXPECT_THAT(m, HasSubstr("access[1].environments: expected a non-empty list"));

  // Beyond loopback, TLS alone is not enough: someone must be known.
  auto tls_only = ParseInventory(
      "server: {listen: \"0.0.0.0:1\", tls: {cert: " + tokens + ", key: " + tokens + "}}\n" + envs,
      "f");
  ASSERT_FALSE(tls_only.ok());
  EXPECT_THAT(tls_only.status().message(),
              HasSubstr("lockstepd would serve 0.0.0.0:1 without authentication"));

  auto no_access = ParseInventory("server: {auth: {tokens_file: " + tokens + "}}\n" + envs, "f");
  ASSERT_FALSE(no_access.ok());
  EXPECT_THAT(no_access.status().message(), HasSubstr("access: is required with authentication"));
  auto no_auth = ParseInventory(envs +
                                    "access: [{subjects: [a], role: viewer, environments: "
                                    "[dev]}]\n",
                                "f");
  ASSERT_FALSE(no_auth.ok());
  EXPECT_THAT(no_auth.status().message(), HasSubstr("access: needs authentication"));
  auto unreadable =
      ParseInventory("server: {auth: {tokens_file: /nonexistent/t}}\n" + envs +
                         "access: [{subjects: [a], role: viewer, environments: [dev]}]\n",
                     "f");
  ASSERT_FALSE(unreadable.ok());
  EXPECT_THAT(unreadable.status().message(),
              HasSubstr("server.auth.tokens_file: cannot read /nonexistent/t"));
}

// approval: the short form, or four eyes as a mapping.
TEST(InventoryTest, ApprovalPolicies) {
  auto inv = ParseInventory(R"(project: {scripts: s}
environments:
  - name: dev
    approval: required
    databases: [{name: a, url: "sqlite:///a.db"}]
  - name: prod
    approval: {approvals: 2, distinct_from_requester: true}
    databases: [{name: b, url: "sqlite:///b.db"}]
)",
                            "f.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  const EnvironmentConfig* dev = inv->FindEnvironment("dev");
  const EnvironmentConfig* prod = inv->FindEnvironment("prod");
  EXPECT_TRUE(dev->approval_required);
  EXPECT_EQ(dev->approvals, 1);
  EXPECT_FALSE(dev->distinct_from_requester);
  EXPECT_TRUE(prod->approval_required);
  EXPECT_EQ(prod->approvals, 2);
  EXPECT_TRUE(prod->distinct_from_requester);
  auto bad = ParseInventory(R"(project: {scripts: s}
environments:
  - name: prod
    approval: {required: false, approvals: 0, distinct: yes}
    databases: [{name: b, url: "sqlite:///b.db"}]
)",
                            "f.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("environments[prod].approval"));
  EXPECT_THAT(bad.status().message(), HasSubstr("distinct"));
}

// schema_scope: the project's applies to its PostgreSQL databases; a
// database may set its own; only PostgreSQL can be scoped, and a scope
// needs the schema it scopes to.
TEST(InventoryTest, SchemaScopeForTenantsAsSchemas) {
  auto inv = ParseInventory(R"(
project: {scripts: versions, schema_scope: version_table_schema}
environments:
  - name: prod
    databases:
      - {name: acme, url: "postgresql://app@db/app", version_table_schema: acme}
      - {name: globex, url: "postgresql://app@db/app", version_table_schema: globex}
      - {name: whole, url: "postgresql://app@db/other", schema_scope: database}
      - {name: file, url: "sqlite:///x.db"}
)",
                            "fleet.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  const auto& dbs = inv->environments[0].databases;
  EXPECT_EQ(dbs[0].schema_scope, SchemaScope::kVersionTableSchema);
  EXPECT_EQ(dbs[1].schema_scope, SchemaScope::kVersionTableSchema);
  EXPECT_EQ(dbs[2].schema_scope, SchemaScope::kDatabase);
  EXPECT_EQ(dbs[3].schema_scope, SchemaScope::kDatabase);  // SQLite: not scoped

  auto bad = ParseInventory(R"(
project: {scripts: versions}
environments:
  - name: prod
    databases:
      - {name: a, url: "postgresql://app@db/app", schema_scope: tenant}
      - {name: b, url: "postgresql://app@db/app", schema_scope: version_table_schema}
      - {name: c, url: "sqlite:///c.db", version_table_schema: main, schema_scope: version_table_schema}
)",
                            "fleet.yaml");
  ASSERT_FALSE(bad.ok());
  std::string m(bad.status().message());
  EXPECT_THAT(m,
              HasSubstr("fleet.yaml:6:65: environments[prod].databases[0].schema_scope: 'tenant' "
                        "is not one of database, version_table_schema"));
  EXPECT_THAT(m, HasSubstr("environments[prod].databases[1]: schema_scope: version_table_schema "
                           "needs a version_table_schema"));
  EXPECT_THAT(m, HasSubstr("environments[prod].databases[2].schema_scope: version_table_schema "
                           "scopes PostgreSQL databases only"));
}

TEST(InventoryTest, NotifyWebhooks) {
  setenv("LOCKSTEP_TEST_HOOK_SECRET", "s3cret", 1);
  auto inv = ParseInventory(R"(
project: {scripts: versions}
environments:
  - name: staging
    databases: [{name: app, url: "sqlite:///s.db"}]
  - name: prod
    after: staging
    databases: [{name: app, url: "sqlite:///p.db"}]
notify:
  - {url: "https://hooks.example.com/T0/B0/xyz"}
  - name: oncall
    url: "http://127.0.0.1:8080/lockstep?team=db"
    events: [rollout_*, awaiting_approval]
    environments: [prod]
    format: slack
    secret_env: LOCKSTEP_TEST_HOOK_SECRET
)",
                            "fleet.yaml");
  ASSERT_TRUE(inv.ok()) << inv.status();
  ASSERT_EQ(inv->notify.size(), 2u);
  EXPECT_EQ(inv->notify[0].name, "webhook-1");
  EXPECT_EQ(inv->notify[0].format, "json");
  EXPECT_THAT(inv->notify[0].events, testing::Contains("awaiting_approval"));
  EXPECT_TRUE(inv->notify[0].environments.empty());
  EXPECT_EQ(inv->notify[1].name, "oncall");
  EXPECT_EQ(inv->notify[1].events, (std::vector<std::string>{"rollout_*", "awaiting_approval"}));
  EXPECT_EQ(inv->notify[1].environments, std::vector<std::string>{"prod"});
  EXPECT_EQ(inv->notify[1].secret.env, "LOCKSTEP_TEST_HOOK_SECRET");
  EXPECT_EQ(inv->notify[1].line, 11);

  auto bad = ParseInventory(R"(
project: {scripts: versions}
environments:
  - name: prod
    databases: [{name: app, url: "sqlite:///p.db"}]
notify:
  - {name: a, url: "ftp://token@example.com/x", events: [rollout_strated], format: teams}
  - {name: a, url: "http://x/", environments: [qa], secret_env: LOCKSTEP_UNSET_HOOK_SECRET}
  - {events: [halted]}
)",
                            "fleet.yaml");
  ASSERT_FALSE(bad.ok());
  std::string m(bad.status().message());
  EXPECT_THAT(m, HasSubstr("fleet.yaml:7:20: notify[0].url: expected an http:// or https:// URL"));
  EXPECT_THAT(m, Not(HasSubstr("token@")));  // a URL may hold a credential
  EXPECT_THAT(m, HasSubstr("notify[0].events: 'rollout_strated' matches no event (events: "
                           "rollout_started,"));
  EXPECT_THAT(m, HasSubstr("notify[0].format: unknown format 'teams'; json or slack"));
  EXPECT_THAT(m, HasSubstr("fleet.yaml:8:12: notify[1].name: 'a' names another webhook too"));
  EXPECT_THAT(m, HasSubstr("notify[1].environments: 'qa' matches no environment"));
  EXPECT_THAT(m, HasSubstr("notify[1].secret_env: environment variable "
                           "LOCKSTEP_UNSET_HOOK_SECRET is not set"));
  EXPECT_THAT(m, HasSubstr("notify[2].url: is required"));
}

TEST(DurationTest, Forms) {
  EXPECT_EQ(*ParseDurationText("90"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationText("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationText("250ms"), absl::Milliseconds(250));
  EXPECT_FALSE(ParseDurationText("soon").has_value());
}

}  // namespace
}  // namespace lockstep::config
