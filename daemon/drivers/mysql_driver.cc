// The MySQL/MariaDB driver. Every Connector/C call stays in this file.
#include "daemon/drivers/mysql_driver.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <list>
#include <map>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/connection_pool.h"
#include "daemon/drivers/mysql_connection.h"
#include "daemon/drivers/mysql_schema.h"
#include "daemon/process/process.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {
namespace {

using mysql::Connection;
using mysql::Ident;
using mysql::IsConnectionGone;
using MysqlError = mysql::Error;
using Rows = mysql::Rows;

// MariaDB's ER_STATEMENT_TIMEOUT and MySQL's ER_QUERY_TIMEOUT (neither
// header has both).
constexpr unsigned kMariadbStatementTimeout = 1969;
constexpr unsigned kMysqlQueryTimeout = 3024;

ReadOutcome ClassifyConnectError(const MysqlError& e) {
  switch (e.code) {
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
      return ReadOutcome::kPermissionDenied;
    default:
      break;
  }
  if (absl::StrContains(absl::AsciiStrToLower(e.message), "timeout") ||
      absl::StrContains(absl::AsciiStrToLower(e.message), "timed out")) {
    return ReadOutcome::kTimedOut;
  }
  return ReadOutcome::kUnreachable;
}

// Sets the session's statement bounds: MariaDB's max_statement_time
// (seconds), else MySQL's max_execution_time (ms, SELECT only); and
// lock_wait_timeout for metadata locks (a migration's ALTER holding the
// version table), which would otherwise wait a year.
void BoundStatements(Connection& c, absl::Duration timeout) {
  MysqlError ignored;
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(timeout));
  if (!c.Query(absl::StrCat("SET SESSION max_statement_time = ", ms / 1000.0), nullptr, &ignored)) {
    c.Query(absl::StrCat("SET SESSION max_execution_time = ", ms), nullptr, &ignored);
  }
  c.Query(absl::StrCat("SET SESSION lock_wait_timeout = ", std::max<int64_t>(1, ms / 1000)),
          nullptr, &ignored);
}

// A MySQL session is not bound to one database: every pooled one serves
// any read, under the key "".
using ServerPool = ConnectionPool<Connection>;

// A new pooled session to `url`'s server, its statements bounded; null
// (with *error) when it cannot be opened.
std::unique_ptr<Connection> OpenSession(const config::DatabaseUrl& url, const ReaderOptions& o,
                                        MysqlError* error) {
  auto c = std::make_unique<Connection>();
  // The read timeout is a backstop above the server-side statement bound.
  if (!c->Connect(url, o.connect_timeout, o.statement_timeout + absl::Seconds(5), error)) {
    return nullptr;
  }
  BoundStatements(*c, o.statement_timeout);
  return c;
}

// Who holds lockstep's lock on `database` ("connection 12 (app@127.0.0.1)"),
// or "" when nobody does.
std::string LockHolder(Connection& c, const std::string& database) {
  MysqlError e;
  std::optional<std::string> id =
      c.Scalar(absl::StrCat("SELECT IS_USED_LOCK(", c.Quote(MysqlLockName(database)), ")"), &e);
  if (!id) return "";
  std::optional<std::string> who = c.Scalar(
      absl::StrCat("SELECT CONCAT(USER, '@', HOST) FROM information_schema.PROCESSLIST WHERE ID = ",
                   *id),
      &e);
  return absl::StrCat("connection ", *id, who ? absl::StrCat(" (", *who, ")") : "");
}

// The first of `names` on PATH (the MariaDB and MySQL client programs
// have both names on Debian; MySQL's own packages only the second).
absl::StatusOr<std::string> FirstOnPath(std::initializer_list<const char*> names) {
  const char* path = std::getenv("PATH");
  for (const char* name : names) {
    for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
      const std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", name);
      if (::access(candidate.c_str(), X_OK) == 0) return std::string(name);
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("none of ", absl::StrJoin(names, ", "),
                   " is on lockstepd's PATH (Debian: apt-get install mariadb-client)"));
}

// A client program's connection arguments for `url` (no password: that is
// MYSQL_PWD's).
std::vector<std::string> ClientArgs(const std::string& program, const config::DatabaseUrl& url) {
  std::vector<std::string> argv = {program, "--no-defaults"};
  if (!url.host.empty()) argv.push_back("--host=" + url.host);
  if (url.port != 0) argv.push_back(absl::StrCat("--port=", url.port));
  if (!url.user.empty()) argv.push_back("--user=" + url.user);
  auto q = [&](const char* key) {
    auto it = url.query.find(key);
    return it == url.query.end() ? std::string() : it->second;
  };
  if (!q("unix_socket").empty()) argv.push_back("--socket=" + q("unix_socket"));
  argv.push_back("--default-character-set=" + (q("charset").empty() ? "utf8mb4" : q("charset")));
  for (const char* key : {"ssl_ca", "ssl_cert", "ssl_key"}) {
    if (!q(key).empty())
      argv.push_back(absl::StrCat("--", absl::StrReplaceAll(key, {{"_", "-"}}), "=", q(key)));
  }
  return argv;
}

// Drops every view, table, sequence, routine and event of `database`.
absl::Status DropEverything(Connection& c, const std::string& database) {
  MysqlError e;
  Rows objects;
  const std::string db = c.Quote(database);
  const std::string list = absl::StrCat(
      "SELECT 'VIEW', TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ", db,
      " AND TABLE_TYPE = 'VIEW' UNION ALL "
      "SELECT IF(TABLE_TYPE = 'SEQUENCE', 'SEQUENCE', 'TABLE'), TABLE_NAME FROM "
      "information_schema.TABLES WHERE TABLE_SCHEMA = ",
      db,
      " AND TABLE_TYPE <> 'VIEW' UNION ALL "
      "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ",
      db,
      " UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE "
      "EVENT_SCHEMA = ",
      db);
  if (!c.Query(list, &objects, &e) || !c.Query("SET SESSION FOREIGN_KEY_CHECKS = 0", nullptr, &e)) {
    return absl::UnavailableError(
        absl::StrCat("nothing changed: cannot list what to drop: ", e.message));
  }
  int dropped = 0;
  for (const auto& row : objects) {
    if (row.size() < 2 || !row[0] || !row[1]) continue;
    const std::string sql =
        absl::StrCat("DROP ", *row[0], " IF EXISTS ", Ident(database), ".", Ident(*row[1]));
    if (!c.Query(sql, nullptr, &e)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dropped == 0 ? "nothing changed: " : "the database is part emptied: ", sql,
                       ": ", e.message));
    }
    ++dropped;
  }
  return absl::OkStatus();
}

// COUNT(*) of every base table of `database`.
bool CountRows(Connection& c, const std::string& database, TableCounts* out, MysqlError* e) {
  Rows tables;
  if (!c.Query(absl::StrCat("SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA = ",
                            c.Quote(database), " AND TABLE_TYPE = 'BASE TABLE'"),
               &tables, e)) {
    return false;
  }
  for (const auto& row : tables) {
    if (row.empty() || !row[0]) continue;
    std::optional<std::string> n =
        c.Scalar(absl::StrCat("SELECT COUNT(*) FROM ", Ident(database), ".", Ident(*row[0])), e);
    if (!n) return false;
    (*out)[*row[0]] = std::stoll(*n);
  }
  return true;
}

class MysqlLock : public DatabaseLock {
 public:
  MysqlLock(std::unique_ptr<Connection> conn, std::string target, std::string database)
      : conn_(std::move(conn)), target_(std::move(target)), database_(std::move(database)) {}

  absl::Status Check() const override {
    MysqlError e;
    std::optional<std::string> mine =
        conn_->Scalar(absl::StrCat("SELECT IS_USED_LOCK(", conn_->Quote(MysqlLockName(database_)),
                                   ") = CONNECTION_ID()"),
                      &e);
    if (mine && *mine == "1") return absl::OkStatus();
    if (e.code != 0) {
      return absl::AbortedError(absl::StrCat(
          "the session holding lockstep's lock on ", target_, " ended (", e.message,
          "); another rollout or restore may be working on it, so nothing more is written there"));
    }
    return absl::AbortedError(absl::StrCat("lockstep's lock on ", target_,
                                           " is no longer held; nothing more is written there"));
  }
  std::vector<std::string> Witness() const override {
    return {absl::StrCat("LOCKSTEP_TARGET_LOCK_PID=", conn_->id()),
            absl::StrCat("LOCKSTEP_TARGET_LOCK_NAME=", MysqlLockName(database_))};
  }

 private:
  std::unique_ptr<Connection> conn_;
  const std::string target_;
  const std::string database_;
};

class MysqlDriver : public Driver {
 public:
  explicit MysqlDriver(const ReaderOptions& o) : options_(o) {}

  config::Dialect dialect() const override { return config::Dialect::kMysql; }

  absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget& target,
                                                     const config::DatabaseUrl& url,
                                                     absl::Duration connect_timeout,
                                                     IfMissing /*if_missing*/) override {
    auto conn = std::make_unique<Connection>();
    MysqlError e;
    if (!conn->Connect(url, connect_timeout, absl::Hours(24 * 365), &e)) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", target.name, ": ", e.message));
    }
    // The lock's session idles while Alembic works: the server must not end it.
    conn->Query("SET SESSION wait_timeout = 31536000", nullptr, &e);
    std::optional<std::string> exists = conn->Scalar(
        absl::StrCat("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ",
                     conn->Quote(url.database)),
        &e);
    if (exists && *exists == "0") {
      return absl::FailedPreconditionError(
          absl::StrCat(target.name, ": the database ", Ident(url.database), " does not exist on ",
                       url.Redacted(), " (lockstep does not create it)"));
    }
    e = {};
    std::optional<std::string> got = conn->Scalar(
        absl::StrCat("SELECT GET_LOCK(", conn->Quote(MysqlLockName(url.database)), ", 0)"), &e);
    if (!got) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", target.name, ": ",
                                                 e.code ? e.message : "GET_LOCK returned NULL"));
    }
    if (*got != "1") {
      std::string holder = LockHolder(*conn, url.database);
      return absl::FailedPreconditionError(absl::StrCat(
          target.name, " is locked by another rollout or lockstepd (GET_LOCK('",
          MysqlLockName(url.database), "') is held", holder.empty() ? "" : " by " + holder, ")"));
    }
    return std::make_unique<MysqlLock>(std::move(conn), target.name, url.database);
  }

  // `mariadb-dump` (or `mysqldump`) of the database alone, in one
  // consistent snapshot (--single-transaction: InnoDB tables are read
  // without locking writers), with its routines and triggers.
  absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl& url,
                                    const std::string& dir, absl::Duration timeout) override {
    absl::StatusOr<std::string> dump = FirstOnPath({"mariadb-dump", "mysqldump"});
    if (!dump.ok()) return dump.status();
    absl::StatusOr<BackupFile> file = NewBackupFile(target.name, dir, ".sql", absl::Now());
    if (!file.ok()) return file.status();
    ProcessSpec spec;
    spec.argv = ClientArgs(*dump, url);
    spec.argv.insert(spec.argv.end(), {"--single-transaction", "--routines", "--triggers",
                                       "--hex-blob", "--no-tablespaces", "--skip-dump-date",
                                       "--result-file=" + file->partial, "--", url.database});
    spec.env = MysqlEnvironment(url);
    spec.timeout = timeout;
    ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      ::unlink(file->partial.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, ": ", *dump, " ", r.Describe(), ": ", r.output));
    }
    return FinishBackupFile(*std::move(file));
  }

  // MySQL cannot drop and replay in one transaction (DDL commits): every
  // table, view, sequence and routine of the database is dropped, then the
  // dump is replayed with the `mariadb` client. A restore that fails part
  // way leaves the database part restored, and says so.
  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                             absl::Duration timeout) override {
    const std::string name = absl::StrCat(backup.environment, "/", backup.database);
    absl::StatusOr<std::string> client = FirstOnPath({"mariadb", "mysql"});
    if (!client.ok()) return client.status();
    Connection c;
    MysqlError e;
    if (!c.Connect(url, options_.connect_timeout, timeout, &e)) {
      return absl::UnavailableError(
          absl::StrCat("restore of ", name, " (nothing changed): cannot connect: ", e.message));
    }
    absl::Status emptied = DropEverything(c, url.database);
    if (!emptied.ok()) {
      return absl::Status(emptied.code(),
                          absl::StrCat("restore of ", name, ": ", emptied.message()));
    }
    // The objects' DEFINER clauses are left out: they name whoever made
    // them, whom only a privileged user may name again; restored, they
    // belong to the user lockstep restores as.
    const std::string replay = backup.path + ".restore.sql";
    struct Cleanup {
      std::string path;
      ~Cleanup() { ::unlink(path.c_str()); }
    } cleanup{replay};
    {
      std::ifstream in(backup.path);
      std::ofstream out(replay, std::ios::trunc);
      std::string line;
      // Only statements carry them (data lines start with "(" or INSERT).
      while (std::getline(in, line)) {
        const bool statement = absl::StartsWith(line, "/*!") || absl::StartsWith(line, "CREATE");
        out << (statement ? WithoutDefiners(line) : line) << '\n';
      }
      if (in.bad() || !out.flush()) {
        return absl::InternalError(absl::StrCat("restore of ", name, ": cannot write ", replay,
                                                " (the database is emptied; restore again)"));
      }
    }
    ProcessSpec apply;
    apply.argv = ClientArgs(*client, url);
    apply.argv.insert(apply.argv.end(), {"--batch", "--database=" + url.database});
    apply.stdin_path = replay;
    apply.env = MysqlEnvironment(url);
    apply.timeout = timeout;
    ProcessResult r = RunProcess(apply, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore of ", name,
                       " failed part way (MySQL commits each statement, so the database "
                       "now holds part of the backup): ",
                       *client, " ", r.Describe(), ": ", r.output));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                     const config::DatabaseUrl& url,
                                                     std::vector<std::string> rows_now,
                                                     absl::Duration connect_timeout,
                                                     absl::Duration timeout) override {
    Connection c;
    MysqlError e;
    TableCounts now;
    if (!c.Connect(url, connect_timeout, timeout, &e) || !CountRows(c, url.database, &now, &e)) {
      return absl::UnavailableError(absl::StrCat("cannot count the rows of ", backup.environment,
                                                 "/", backup.database, "'s tables: ", e.message));
    }
    absl::StatusOr<TableCounts> then = MysqlDumpCounts(backup.path);
    if (!then.ok()) return then.status();
    return CompareTableCounts(backup, std::move(rows_now), now, *then);
  }

  // The schema and the version rows, with who holds lockstep's lock before
  // and after (MySQL's DDL is not transactional and information_schema is
  // no snapshot: a read while a step migrates is marked, not judged).
  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& t,
                                            const SchemaFilter& filter) override {
    absl::StatusOr<config::DatabaseUrl> resolved = ConnectUrl(t);
    if (!resolved.ok()) return resolved.status();
    const config::DatabaseUrl& url = *resolved;
    const std::string& version_db =
        t.version_table_schema.empty() ? url.database : t.version_table_schema;
    SchemaFilter own = filter;
    if (version_db == url.database) own.version_table = t.version_table;
    ServerPool* pool = PoolFor(url);
    std::string error;
    // A pooled session the server ended: once more on a new one.
    for (bool fresh : {false, true}) {
      bool reused = false;
      MysqlError e;
      std::unique_ptr<Connection> conn =
          pool->Acquire("", fresh, &reused, [&] { return OpenSession(url, options_, &e); });
      if (!conn)
        return absl::UnavailableError(
            absl::StrCat(t.name, ": cannot read its schema: ", e.message));
      SchemaSnapshot out;
      out.locked_by = LockHolder(*conn, url.database);
      absl::StatusOr<Schema> schema = ReadMysqlSchema(*conn, url.database, own);
      Rows rows;
      const bool read_rows =
          schema.ok() && conn->Query(absl::StrCat("SELECT version_num FROM ", Ident(version_db),
                                                  ".", Ident(t.version_table)),
                                     &rows, &e);
      if (schema.ok() && (read_rows || e.code == ER_NO_SUCH_TABLE)) {
        out.schema = *std::move(schema);
        for (const auto& row : rows) {
          if (!row.empty() && row[0]) out.rows.push_back(*row[0]);
        }
        std::sort(out.rows.begin(), out.rows.end());
        if (out.locked_by.empty()) out.locked_by = LockHolder(*conn, url.database);
        pool->Release("", std::move(conn));
        return out;
      }
      error = schema.ok() ? e.message : std::string(schema.status().message());
      pool->Release("", nullptr);
      if (!reused) break;
    }
    return absl::UnavailableError(absl::StrCat(t.name, ": cannot read its schema: ", error));
  }

  // A database lockstep_shadow_<pid>_<n> on project.shadow_mysql.
  absl::StatusOr<config::DatabaseUrl> CreateScratch(const config::ProjectConfig& project) override {
    if (!project.shadow_mysql) {
      return absl::FailedPreconditionError(
          "no project.shadow_mysql server to build expected schemas on");
    }
    static std::atomic<int> counter{0};
    config::DatabaseUrl scratch = *project.shadow_mysql;
    scratch.database = absl::StrCat("lockstep_shadow_", ::getpid(), "_", ++counter);
    absl::Status made =
        Admin(*project.shadow_mysql, absl::StrCat("CREATE DATABASE ", Ident(scratch.database)));
    if (!made.ok()) return made;
    return scratch;
  }

  absl::Status DropScratch(const config::ProjectConfig& project,
                           const config::DatabaseUrl& scratch) override {
    if (!project.shadow_mysql) return absl::FailedPreconditionError("no project.shadow_mysql");
    return Admin(*project.shadow_mysql,
                 absl::StrCat("DROP DATABASE IF EXISTS ", Ident(scratch.database)));
  }

  bool RepairAfterKilledWriter(const VersionTarget&, const VersionRead&) override {
    return false;  // the server rolled the killed session's transaction back
  }

  std::vector<std::string> ChildEnvironment(const config::DatabaseUrl& url) const override {
    return MysqlEnvironment(url);
  }

  // PyMySQL reads no password from the environment, so Alembic's URL names
  // an option file holding it ([client] password=...), which PyMySQL reads
  // when the URL has no password: a memfd of this process, reached by its
  // /proc path, so the password is never on disk or in argv and dies with
  // lockstepd. One per password, kept for the process's life.
  config::DatabaseUrl ChildUrl(const config::DatabaseUrl& url) const override {
    config::DatabaseUrl out = url;
    out.password.reset();
    if (!url.password || url.password->find_first_of("\n\r") != std::string::npos) return out;
    const std::string key = Sha256Hex(*url.password);
    std::lock_guard<std::mutex> lock(files_mu_);
    auto it = option_files_.find(key);
    if (it == option_files_.end()) {
      const int fd = ::memfd_create("lockstep-mysql-client", MFD_CLOEXEC);
      if (fd < 0) return out;  // Alembic then says "using password: NO"
      // PyMySQL strips one pair of quotes and reads the rest raw.
      const std::string text = absl::StrCat("[client]\npassword=\"", *url.password, "\"\n");
      if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        ::close(fd);
        return out;
      }
      it = option_files_.emplace(key, absl::StrCat("/proc/", ::getpid(), "/fd/", fd)).first;
    }
    out.query["read_default_file"] = it->second;
    return out;
  }

  bool transactional_ddl() const override {
    return false;  // MySQL commits each DDL statement: a failed migration leaves part of it
  }

  // The names the rule's query (SHOW DATABASES LIKE 'tenant_%', or a SELECT
  // on information_schema) returns on its server.
  absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) override {
    absl::StatusOr<config::DatabaseUrl> url = DiscoverUrl(rule);
    if (!url.ok()) return url.status();
    Connection c;
    MysqlError e;
    Rows rows;
    if (!c.Connect(*url, options_.connect_timeout, options_.statement_timeout, &e) ||
        (BoundStatements(c, options_.statement_timeout), !c.Query(rule.query, &rows, &e))) {
      return absl::UnavailableError(
          absl::StrCat("discover query on ", url->Redacted(), " failed: ", e.message));
    }
    std::vector<std::string> names;
    for (const auto& row : rows) {
      if (!row.empty() && row[0]) names.push_back(*row[0]);
    }
    return DiscoveredOnServer(rule, std::move(names));
  }

 protected:
  VersionRead ReadRows(const VersionTarget& t) override {
    absl::StatusOr<config::DatabaseUrl> resolved = ConnectUrl(t);
    if (!resolved.ok()) return PasswordUnresolved(resolved.status());
    const config::DatabaseUrl& url = *resolved;
    ServerPool* pool = PoolFor(url);
    // A pooled connection the server ended meanwhile (a restart,
    // wait_timeout, KILL) says nothing about the database: once more on a
    // new connection before calling it unreachable.
    bool stale = false;
    VersionRead out = ReadOnce(t, url, pool, /*fresh=*/false, &stale);
    if (stale) out = ReadOnce(t, url, pool, /*fresh=*/true, &stale);
    return out;
  }

 private:
  // One statement on a short-lived session to `server`.
  absl::Status Admin(const config::DatabaseUrl& server, const std::string& sql) {
    Connection c;
    MysqlError e;
    if (!c.Connect(server, options_.connect_timeout, options_.statement_timeout, &e) ||
        !c.Query(sql, nullptr, &e)) {
      return absl::UnavailableError(
          absl::StrCat(sql, " on ", server.Redacted(), " failed: ", e.message));
    }
    return absl::OkStatus();
  }

  VersionRead ReadOnce(const VersionTarget& t, const config::DatabaseUrl& url, ServerPool* pool,
                       bool fresh, bool* stale) {
    *stale = false;
    VersionRead out;
    bool reused = false;
    MysqlError e;
    std::unique_ptr<Connection> conn =
        pool->Acquire("", fresh, &reused, [&] { return OpenSession(url, options_, &e); });
    if (!conn) {
      out.error = e.message;
      out.outcome = ClassifyConnectError(e);
      return out;
    }
    const std::string& schema =
        t.version_table_schema.empty() ? url.database : t.version_table_schema;
    Rows rows;
    if (conn->Query(
            absl::StrCat("SELECT version_num FROM ", Ident(schema), ".", Ident(t.version_table)),
            &rows, &e)) {
      for (const auto& row : rows) {
        if (!row.empty() && row[0]) out.rows.push_back(*row[0]);
      }
      out.outcome = ReadOutcome::kOk;
      pool->Release("", std::move(conn));
      return out;
    }
    out.error = e.message;
    if (IsConnectionGone(e.code)) {
      *stale = reused;
      out.outcome = ReadOutcome::kUnreachable;
      if (e.code == CR_SERVER_LOST && !reused && absl::StrContains(e.message, "during query")) {
        out.outcome = ReadOutcome::kTimedOut;
      }
      pool->Release("", nullptr);
      return out;
    }
    switch (e.code) {
      case ER_NO_SUCH_TABLE: {
        // MySQL says the same of a database that is not there: ask.
        MysqlError ignored;
        std::optional<std::string> n = conn->Scalar(
            absl::StrCat("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ",
                         conn->Quote(url.database)),
            &ignored);
        if (n && *n == "0") {
          out.outcome = ReadOutcome::kUnreachable;
          out.error = absl::StrCat("the database ", Ident(url.database), " does not exist on ",
                                   url.Redacted());
        } else {
          out.outcome = ReadOutcome::kNoTable;
        }
        break;
      }
      case ER_BAD_DB_ERROR:
        out.outcome = ReadOutcome::kUnreachable;
        break;
      case ER_TABLEACCESS_DENIED_ERROR:
      case ER_DBACCESS_DENIED_ERROR:
      case ER_ACCESS_DENIED_ERROR:
        out.outcome = ReadOutcome::kPermissionDenied;
        break;
      case ER_LOCK_WAIT_TIMEOUT:
      case kMariadbStatementTimeout:
      case kMysqlQueryTimeout:
        out.outcome = ReadOutcome::kTimedOut;
        out.error =
            absl::StrCat("timed out after ", absl::FormatDuration(options_.statement_timeout),
                         " reading the version table (", e.message, ")");
        break;
      default:
        out.outcome = ReadOutcome::kError;
    }
    pool->Release("", std::move(conn));
    return out;
  }

  ServerPool* PoolFor(const config::DatabaseUrl& url) { return pools_.For(url); }

  const ReaderOptions options_;
  ServerPools<Connection> pools_{options_.max_connections_per_server};
  mutable std::mutex files_mu_;
  // SHA-256 of a password -> its option file's path.
  mutable std::map<std::string, std::string> option_files_;  // guarded by files_mu_
};

}  // namespace

namespace {

// The identifier quoted with backticks at the start of `rest` (`a``b` is
// a`b), and how many characters it took; nullopt when there is none.
std::optional<std::pair<std::string, size_t>> QuotedName(absl::string_view rest) {
  if (rest.empty() || rest[0] != '`') return std::nullopt;
  std::string name;
  for (size_t i = 1; i < rest.size(); ++i) {
    if (rest[i] != '`') {
      name.push_back(rest[i]);
    } else if (i + 1 < rest.size() && rest[i + 1] == '`') {
      name.push_back('`');
      ++i;
    } else {
      return std::make_pair(name, i + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<TableCounts> MysqlDumpCounts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read backup ", path));
  TableCounts counts;
  // "CREATE TABLE `t` (" names a table (with no rows until an INSERT says
  // so); view stand-ins are written inside /*!50001 ... */ and are not.
  // "INSERT INTO `t` VALUES" then "(...),(...);", on that line or the next
  // ones: one row per "(" at depth 0 outside quoted strings, up to the ";"
  // (the dump writes literals only, and escapes newlines inside strings).
  std::string line;
  int64_t* rows = nullptr;  // the table of the INSERT being read
  int depth = 0;
  bool quoted = false;
  while (std::getline(in, line)) {
    absl::string_view l = line;
    if (rows == nullptr) {
      if (absl::ConsumePrefix(&l, "CREATE TABLE ")) {
        if (auto t = QuotedName(l)) counts.emplace(t->first, 0);
        continue;
      }
      if (!absl::ConsumePrefix(&l, "INSERT INTO ")) continue;
      auto t = QuotedName(l);
      if (!t) continue;
      l.remove_prefix(t->second);
      if (!absl::ConsumePrefix(&l, " VALUES")) continue;
      rows = &counts[t->first];
      depth = 0;
      quoted = false;
    }
    for (size_t i = 0; i < l.size() && rows != nullptr; ++i) {
      const char ch = l[i];
      if (quoted) {
        if (ch == '\\') {
          ++i;
        } else if (ch == '\'') {
          quoted = false;
        }
      } else if (ch == '\'') {
        quoted = true;
      } else if (ch == '(') {
        if (depth++ == 0) ++*rows;
      } else if (ch == ')') {
        --depth;
      } else if (ch == ';' && depth == 0) {
        rows = nullptr;
      }
    }
  }
  if (in.bad()) return absl::FailedPreconditionError(absl::StrCat("cannot read backup ", path));
  return counts;
}

std::string WithoutDefiners(absl::string_view line) {
  std::string out;
  while (true) {
    const size_t at = line.find("DEFINER=`");
    if (at == absl::string_view::npos) break;
    absl::string_view rest = line.substr(at + 8);
    auto user = QuotedName(rest);
    if (!user) break;
    rest.remove_prefix(user->second);
    if (!absl::ConsumePrefix(&rest, "@")) break;
    auto host = QuotedName(rest);
    if (!host) break;
    rest.remove_prefix(host->second);
    rest = absl::StripLeadingAsciiWhitespace(rest);
    absl::StrAppend(&out, line.substr(0, at));
    line = rest;
  }
  absl::StrAppend(&out, line);
  return out;
}

std::string MysqlLockName(const std::string& database) {
  std::string name = absl::StrCat("lockstep:", database);
  if (name.size() <= 64) return name;
  return absl::StrCat("lockstep:", Sha256Hex(database).substr(0, 55));
}

std::unique_ptr<Driver> MakeMysqlDriver(const ReaderOptions& options) {
  return std::make_unique<MysqlDriver>(options);
}

std::vector<std::string> MysqlEnvironment(const config::DatabaseUrl& url) {
  std::vector<std::string> env;
  if (!url.host.empty()) env.push_back("MYSQL_HOST=" + url.host);
  if (url.port != 0) env.push_back(absl::StrCat("MYSQL_TCP_PORT=", url.port));
  if (auto s = url.query.find("unix_socket"); s != url.query.end()) {
    env.push_back("MYSQL_UNIX_PORT=" + s->second);
  }
  if (url.password.has_value()) env.push_back("MYSQL_PWD=" + *url.password);
  return env;
}

}  // namespace lockstep::daemon
