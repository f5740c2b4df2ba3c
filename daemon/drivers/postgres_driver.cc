// The PostgreSQL driver. All pqxx exceptions stop here.
#include "daemon/drivers/postgres_driver.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <limits>
#include <list>
#include <map>
#include <mutex>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/drivers/backup_files.h"
#include "daemon/drivers/connection_pool.h"
#include "daemon/drivers/postgres_schema.h"
#include "daemon/process/process.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {
namespace {

// One line, no trailing newline, for messages.
std::string OneLine(absl::string_view s) {
  std::string out = absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(s), {{"\n", " "}, {"\t", " "}});
  return out;
}

ReadOutcome ClassifyConnectError(absl::string_view msg) {
  if (absl::StrContains(msg, "authentication failed") || absl::StrContains(msg, "permission denied") ||
      absl::StrContains(msg, "no pg_hba.conf entry") || absl::StrContains(msg, "password")) {
    return ReadOutcome::kPermissionDenied;
  }
  if (absl::StrContains(msg, "timeout expired") || absl::StrContains(msg, "timed out")) {
    return ReadOutcome::kTimedOut;
  }
  return ReadOutcome::kUnreachable;
}

// "lockstep" in ASCII: the advisory-lock key every lockstepd uses.
constexpr int64_t kAdvisoryLockKey = 0x6C6F636B73746570;

// Runs before a PostgreSQL dump is replayed, in the same transaction.
constexpr char kPostgresRestorePrelude[] = R"sql(
SET client_min_messages = warning;
DO $lockstep$
DECLARE s name;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
             AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END
$lockstep$;
CREATE SCHEMA public;
DO $lockstep$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'ALTER SCHEMA public OWNER TO pg_database_owner';
    EXECUTE 'GRANT USAGE ON SCHEMA public TO PUBLIC';
  ELSE
    EXECUTE 'GRANT ALL ON SCHEMA public TO PUBLIC';
  END IF;
END
$lockstep$;
)sql";

// Removes every line equal to `line` from a file (in place).
absl::Status DropLine(const std::string& path, const std::string& line) {
  std::ifstream in(path);
  if (!in) return absl::InternalError(absl::StrCat("cannot read ", path));
  std::string text, l;
  while (std::getline(in, l)) {
    if (l != line) text += l + "\n";
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// libpq's connection string for `url` as lockstepd connects: a connect
// timeout of at least 2 s, and `application` shown in pg_stat_activity.
std::string Conninfo(const config::DatabaseUrl& url, absl::Duration connect_timeout,
                     const char* application = "lockstepd") {
  return absl::StrCat(url.LibpqConninfo(), " connect_timeout=",
                      std::max<int64_t>(2, absl::ToInt64Seconds(connect_timeout)),
                      " application_name=", application);
}

// The target's version table, quoted for SQL (schema-qualified when set).
std::string VersionTableSql(pqxx::connection_base& c, const VersionTarget& t) {
  std::string table = c.quote_name(t.version_table);
  if (!t.version_table_schema.empty()) {
    table = absl::StrCat(c.quote_name(t.version_table_schema), ".", table);
  }
  return table;
}

TableCounts PostgresCounts(const config::DatabaseUrl& url, absl::Duration connect_timeout,
                           absl::Duration timeout) {
  pqxx::connection c(Conninfo(url, connect_timeout, "lockstepd-restore-check"));
  pqxx::read_transaction tx(c);
  // COUNT(*) reads every row: bounded like the restore it precedes (0, no
  // bound, past what statement_timeout can hold).
  const int64_t ms = absl::ToInt64Milliseconds(timeout);
  tx.exec(absl::StrCat("SET LOCAL statement_timeout = ",
                       ms > std::numeric_limits<int32_t>::max() ? 0 : std::max<int64_t>(1, ms)));
  // Ordinary tables only: what pg_dump writes a COPY block for.
  pqxx::result tables = tx.exec(R"sql(
    SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%')sql");
  TableCounts out;
  for (const auto& row : tables) {
    const std::string name = row[0].as<std::string>();
    out[name] = tx.exec(absl::StrCat("SELECT COUNT(*) FROM ", name))[0][0].as<int64_t>();
  }
  return out;
}

// Counts the rows of each COPY block `pg_restore --data-only` prints: one
// line per row (COPY's text format escapes newlines inside values) up to
// the "\." that ends the block.
class CopyCounter {
 public:
  void Line(const std::string& line) {
    if (!table_.empty()) {
      if (line == "\\.") {
        table_.clear();
      } else {
        ++counts_[table_];
      }
      return;
    }
    if (!absl::StartsWith(line, "COPY ")) return;
    size_t end = line.find(" (");
    if (end == std::string::npos) end = line.find(" FROM stdin;");
    if (end == std::string::npos) return;
    table_ = line.substr(5, end - 5);
    counts_[table_];  // an empty table is still a table
  }
  const TableCounts& counts() const { return counts_; }

 private:
  std::string table_;  // inside this table's COPY block, when not empty
  TableCounts counts_;
};

absl::StatusOr<TableCounts> PostgresBackupCounts(const Backup& backup, absl::Duration timeout) {
  ProcessSpec spec;
  spec.argv = {"pg_restore", "--data-only", "--file=-", backup.path};
  spec.timeout = timeout;
  CopyCounter counter;
  ProcessResult r =
      RunProcess(spec, nullptr, nullptr, [&](const std::string& l) { counter.Line(l); });
  if (!r.ok()) {
    // The output is mostly the backup's data: only its end says why.
    const std::string tail =
        r.output.size() > 500 ? r.output.substr(r.output.size() - 500) : r.output;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read backup ", backup.id, ": pg_restore ", r.Describe(), ": ", tail));
  }
  return counter.counts();
}

// Holds the advisory lock: closing the session releases it.
class PostgresLock : public DatabaseLock {
 public:
  PostgresLock(std::unique_ptr<pqxx::connection> conn, std::string name)
      : conn_(std::move(conn)), name_(std::move(name)) {}

  // The session is still there and still holds the advisory lock.
  absl::Status Check() const override {
    try {
      pqxx::nontransaction w(*conn_);
      pqxx::result r = w.exec(
          "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
          "AND pid = pg_backend_pid()");
      if (r[0][0].as<int>() > 0) return absl::OkStatus();
      return absl::AbortedError(absl::StrCat("the advisory lock on ", name_,
                                             " is no longer held; nothing more is written there"));
    } catch (const std::exception& e) {
      return absl::AbortedError(absl::StrCat(
          "the session holding the advisory lock on ", name_, " ended (", OneLine(e.what()),
          "); another rollout or restore may be working on it, so nothing more is written there"));
    }
  }
  std::vector<std::string> Witness() const override {
    return {absl::StrCat("LOCKSTEP_TARGET_LOCK_PID=", conn_->backendpid())};
  }

 private:
  std::unique_ptr<pqxx::connection> conn_;
  const std::string name_;
};

// libpqxx prints server notices and errors to stderr unless told otherwise;
// lockstepd reports them itself.
class QuietErrors : public pqxx::errorhandler {
 public:
  explicit QuietErrors(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char[]) noexcept override { return false; }
};

// A connection with its error handler (which must not outlive it).
struct Conn {
  explicit Conn(const std::string& conninfo)
      : c(std::make_unique<pqxx::connection>(conninfo)), quiet(std::make_unique<QuietErrors>(*c)) {}
  ~Conn() { quiet.reset(); }
  std::unique_ptr<pqxx::connection> c;
  std::unique_ptr<QuietErrors> quiet;
};

using ServerPool = ConnectionPool<Conn>;

// A new connection with `conninfo`, its statements bounded by
// `statement_timeout`; throws when it cannot be opened.
std::unique_ptr<Conn> OpenConn(const std::string& conninfo, absl::Duration statement_timeout) {
  auto c = std::make_unique<Conn>(conninfo);
  pqxx::nontransaction w(*c->c);
  w.exec(absl::StrCat("SET statement_timeout = ", absl::ToInt64Milliseconds(statement_timeout)));
  return c;
}

// The first column of `query`'s rows (nulls skipped), sorted, on a
// short-lived connection to `url`: a discover rule's database names.
absl::StatusOr<std::vector<std::string>> ListPostgresDatabases(const config::DatabaseUrl& url,
                                                               const std::string& query,
                                                               const ReaderOptions& options) {
  try {
    pqxx::connection c(absl::StrCat(
        url.LibpqConninfo(),
        " connect_timeout=", std::max<int64_t>(2, absl::ToInt64Seconds(options.connect_timeout))));
    pqxx::nontransaction w(c);
    w.exec(absl::StrCat("SET statement_timeout = ",
                        absl::ToInt64Milliseconds(options.statement_timeout)));
    pqxx::result r = w.exec(query);
    std::vector<std::string> out;
    for (const auto& row : r) {
      if (!row[0].is_null()) out.push_back(row[0].c_str());
    }
    std::sort(out.begin(), out.end());
    return out;
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("discover query on ", url.Redacted(), " failed: ", OneLine(e.what())));
  }
}

class PostgresDriver : public Driver {
 public:
  explicit PostgresDriver(const ReaderOptions& o) : options_(o) {}

  config::Dialect dialect() const override { return config::Dialect::kPostgresql; }

  absl::StatusOr<std::unique_ptr<DatabaseLock>> Lock(const VersionTarget& target,
                                                     const config::DatabaseUrl& url,
                                                     absl::Duration connect_timeout,
                                                     IfMissing /*if_missing*/) override {
    try {
      // Keepalives: a dead peer is noticed, and idle NATs keep the session.
      auto conn = std::make_unique<pqxx::connection>(
          absl::StrCat(Conninfo(url, connect_timeout, "lockstepd-lock"),
                       " keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3"));
      // The lock's session idles while Alembic works: no server timeout may
      // end it (idle_session_timeout exists from PostgreSQL 14 on).
      for (const char* setting : {"idle_session_timeout", "idle_in_transaction_session_timeout",
                                  "statement_timeout"}) {
        try {
          pqxx::nontransaction set(*conn);
          set.exec(absl::StrCat("SET ", setting, " = 0"));
        } catch (const pqxx::sql_error&) {
          // an older server without this setting
        }
      }
      pqxx::nontransaction w(*conn);
      pqxx::result r = w.exec(absl::StrCat("SELECT pg_try_advisory_lock(", kAdvisoryLockKey, ")"));
      if (!r[0][0].as<bool>()) {
        return absl::FailedPreconditionError(absl::StrCat(
            target.name, " is locked by another rollout or lockstepd (PostgreSQL advisory lock ",
            kAdvisoryLockKey, " is held; see pg_locks)"));
      }
      return std::make_unique<PostgresLock>(std::move(conn), target.name);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", target.name, ": ", e.what()));
    }
  }

  absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl& url,
                                    const std::string& dir, absl::Duration timeout) override {
    absl::StatusOr<BackupFile> file = NewBackupFile(target.name, dir, ".pgdump", absl::Now());
    if (!file.ok()) return file.status();
    ProcessSpec spec;
    spec.argv = {"pg_dump", "--format=custom", "--file", file->partial};
    spec.env = LibpqEnvironment(url);
    spec.timeout = timeout;
    ProcessResult r = RunProcess(spec, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      ::unlink(file->partial.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("backup of ", target.name, ": pg_dump ", r.Describe(), ": ", r.output));
    }
    return FinishBackupFile(*std::move(file));
  }

  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl& url,
                             absl::Duration timeout) override {
    const std::string name = absl::StrCat(backup.environment, "/", backup.database);
    // The database must end up exactly as the backup: objects a failed
    // migration created after it must go too (pg_restore --clean alone would
    // keep them, and fails on their dependencies). So, in one transaction:
    // drop every user schema, recreate public, replay the dump.
    const std::string sql = backup.path + ".restore.sql";
    const std::string prelude = backup.path + ".prelude.sql";
    struct Cleanup {
      std::vector<std::string> files;
      ~Cleanup() {
        for (const std::string& f : files) ::unlink(f.c_str());
      }
    } cleanup{{sql, prelude}};
    ProcessSpec to_sql;
    to_sql.argv = {"pg_restore", "--no-owner", "--file", sql, backup.path};
    to_sql.timeout = timeout;
    ProcessResult r = RunProcess(to_sql, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore of ", name, ": pg_restore ", r.Describe(), ": ", r.output));
    }
    {
      std::ofstream out(prelude);
      out << kPostgresRestorePrelude;
      if (!out) return absl::InternalError(absl::StrCat("cannot write ", prelude));
    }
    absl::Status filtered = DropLine(sql, "CREATE SCHEMA public;");
    if (!filtered.ok()) return filtered;
    ProcessSpec apply;
    apply.argv = {"psql", "-X",    "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                  "-f",   prelude, "-f", sql};
    apply.env = LibpqEnvironment(url);
    apply.timeout = timeout;
    r = RunProcess(apply, nullptr, nullptr, nullptr);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore of ", name, " (rolled back, the database is unchanged): psql ",
                       r.Describe(), ": ", r.output));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup& backup,
                                                     const config::DatabaseUrl& url,
                                                     std::vector<std::string> rows_now,
                                                     absl::Duration connect_timeout,
                                                     absl::Duration timeout) override {
    TableCounts now;
    try {
      now = PostgresCounts(url, connect_timeout, timeout);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("cannot count the rows of ", backup.environment,
                                                 "/", backup.database,
                                                 "'s tables: ", e.what()));
    }
    absl::StatusOr<TableCounts> then = PostgresBackupCounts(backup, timeout);
    if (!then.ok()) return then.status();
    return CompareTableCounts(backup, std::move(rows_now), now, *then);
  }

  bool RepairAfterKilledWriter(const VersionTarget&, const VersionRead&) override {
    return false;  // the server rolled the killed session's transaction back
  }

  std::vector<std::string> ChildEnvironment(const config::DatabaseUrl& url) const override {
    return LibpqEnvironment(url);
  }

  bool transactional_ddl() const override {
    return true;  // Alembic runs each migration in a transaction here
  }

  // The names the rule's query returns on its server.
  absl::StatusOr<std::vector<Discovered>> Discover(const config::DiscoverRule& rule) override {
    absl::StatusOr<config::DatabaseUrl> url = DiscoverUrl(rule);
    if (!url.ok()) return url.status();
    absl::StatusOr<std::vector<std::string>> names =
        ListPostgresDatabases(*url, rule.query, options_);
    if (!names.ok()) return names.status();
    return DiscoveredOnServer(rule, *std::move(names));
  }

  absl::StatusOr<config::DatabaseUrl> CreateScratch(const config::ProjectConfig& project) override {
    if (!project.shadow_postgresql) {
      return absl::FailedPreconditionError(
          "no project.shadow_postgresql server to build expected schemas on");
    }
    static std::atomic<int> counter{0};
    config::DatabaseUrl scratch = *project.shadow_postgresql;
    scratch.database = absl::StrCat("lockstep_shadow_", ::getpid(), "_", ++counter);
    absl::Status made =
        Admin(*project.shadow_postgresql, absl::StrCat("CREATE DATABASE ", scratch.database));
    if (!made.ok()) return made;
    return scratch;
  }

  absl::Status DropScratch(const config::ProjectConfig& project,
                           const config::DatabaseUrl& scratch) override {
    if (!project.shadow_postgresql)
      return absl::FailedPreconditionError("no project.shadow_postgresql");
    return Admin(*project.shadow_postgresql,
                 absl::StrCat("DROP DATABASE IF EXISTS ", scratch.database, " WITH (FORCE)"));
  }

  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget& t,
                                            const SchemaFilter& filter) override {
    absl::StatusOr<config::DatabaseUrl> resolved = ConnectUrl(t);
    if (!resolved.ok()) return resolved.status();
    const config::DatabaseUrl& url = *resolved;
    const std::string conninfo = Conninfo(url, options_.connect_timeout);
    ServerPool* pool = PoolFor(url);
    std::string error;
    // A pooled connection the server ended: once more on a new one.
    for (bool fresh : {false, true}) {
      bool reused = false;
      std::unique_ptr<Conn> conn;
      try {
        conn = pool->Acquire(url.database, fresh, &reused,
                             [&] { return OpenConn(conninfo, options_.statement_timeout); });
        SchemaSnapshot out;
        {
          // One snapshot: the schema and the version rows at one instant.
          pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(*conn->c);
          // lockstep's advisory lock on this database, before and after the
          // read (pg_locks is live, not part of the snapshot).
          const std::string holder = absl::StrCat(
              "SELECT 'pid ' || l.pid || COALESCE(' (' || a.application_name || ')', '') "
              "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
              "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
              "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
              "AND l.classid = ", (kAdvisoryLockKey >> 32) & 0xffffffff, " AND l.objid = ",
              kAdvisoryLockKey & 0xffffffff, " LIMIT 1");
          pqxx::result before = tx.exec(holder);
          if (!before.empty()) out.locked_by = before[0][0].c_str();
          out.schema = ReadPostgresSchema(tx, filter);
          const std::string table = VersionTableSql(*conn->c, t);
          pqxx::result exists = tx.exec(absl::StrCat("SELECT to_regclass(", tx.quote(table), ")"));
          if (!exists.empty() && !exists[0][0].is_null()) {
            for (const auto& row : tx.exec(absl::StrCat("SELECT version_num FROM ", table))) {
              out.rows.push_back(row[0].c_str());
            }
            std::sort(out.rows.begin(), out.rows.end());
          }
          pqxx::result after = tx.exec(holder);
          if (out.locked_by.empty() && !after.empty()) out.locked_by = after[0][0].c_str();
          tx.commit();
        }
        pool->Release(url.database, std::move(conn));
        return out;
      } catch (const std::exception& e) {
        error = OneLine(e.what());
        if (conn) {
          conn.reset();
          pool->Release(url.database, nullptr);
        }
        if (!reused) break;
      }
    }
    return absl::UnavailableError(absl::StrCat(t.name, ": cannot read its schema: ", error));
  }

  // Targets in one database as one user (tenants as schemas, each with its
  // version_table_schema) are read together on one connection. Hashed: the
  // URL may hold a password.
  std::string BatchKey(const VersionTarget& t) const override {
    return Sha256Hex(absl::StrCat(t.url.LibpqConninfo(), "\n", t.secret.env, "\n", t.secret.file));
  }

 protected:
  // One pooled connection, two statements for the whole batch: which
  // version tables exist and may be read, then every readable one in one
  // UNION ALL. Whatever the batch cannot tell the way Read() would (a table
  // locked past a short lock_timeout, a schema it may not use, a table
  // dropped in between) is read again one target at a time, so every
  // outcome is exactly Read()'s.
  std::vector<VersionRead> ReadRowsBatch(
      const std::vector<const VersionTarget*>& targets) override {
    if (targets.size() < 2) return Driver::ReadRowsBatch(targets);
    absl::StatusOr<config::DatabaseUrl> resolved = ConnectUrl(*targets.front());
    if (!resolved.ok()) {
      return std::vector<VersionRead>(targets.size(), PasswordUnresolved(resolved.status()));
    }
    const config::DatabaseUrl& url = *resolved;
    const std::string conninfo = Conninfo(url, options_.connect_timeout);
    ServerPool* pool = PoolFor(url);
    for (bool fresh : {false, true}) {
      bool reused = false;
      std::unique_ptr<Conn> conn;
      try {
        conn = pool->Acquire(url.database, fresh, &reused,
                             [&] { return OpenConn(conninfo, options_.statement_timeout); });
      } catch (const std::exception& e) {
        // One database behind them all: it is unreachable for each.
        VersionRead failed;
        failed.error = OneLine(e.what());
        failed.outcome = ClassifyConnectError(failed.error);
        return std::vector<VersionRead>(targets.size(), failed);
      }
      try {
        std::vector<VersionRead> out = ReadTogether(*conn->c, targets);
        pool->Release(url.database, std::move(conn));
        return out;
      } catch (const std::exception&) {
        const bool lost = !conn->c->is_open();
        conn.reset();
        pool->Release(url.database, nullptr);
        if (!(lost && reused)) break;  // a pooled session the server ended: once more
      }
    }
    return Driver::ReadRowsBatch(targets);
  }

  VersionRead ReadRows(const VersionTarget& t) override {
    absl::StatusOr<config::DatabaseUrl> resolved = ConnectUrl(t);
    if (!resolved.ok()) return PasswordUnresolved(resolved.status());
    const config::DatabaseUrl& url = *resolved;
    const std::string conninfo = Conninfo(url, options_.connect_timeout);
    ServerPool* pool = PoolFor(url);
    // A pooled connection the server has ended meanwhile (a restart,
    // idle_session_timeout, pg_terminate_backend) says nothing about the
    // database: read again once on a new connection before calling it
    // unreachable.
    bool stale = false;
    VersionRead first = ReadOnce(t, url, conninfo, pool, /*fresh=*/false, &stale);
    if (!stale) return first;
    return ReadOnce(t, url, conninfo, pool, /*fresh=*/true, &stale);
  }

 private:
  // ReadRowsBatch's two statements; throws whenever the batch cannot say
  // what Read() would.
  static std::vector<VersionRead> ReadTogether(pqxx::connection& c,
                                               const std::vector<const VersionTarget*>& targets) {
    std::vector<std::string> tables;
    std::string names;
    for (const VersionTarget* t : targets) {
      tables.push_back(VersionTableSql(c, *t));
      absl::StrAppend(&names, names.empty() ? "" : ",", c.quote(tables.back()));
    }
    pqxx::read_transaction tx(c);
    // A migration holding a version table's lock must not hold up the
    // batch: past this, the batch gives way to one read at a time.
    tx.exec("SET LOCAL lock_timeout = 200");
    pqxx::result found =
        tx.exec(absl::StrCat("SELECT to_regclass(q) IS NOT NULL, "
                             "COALESCE(has_table_privilege(to_regclass(q), 'SELECT'), false) "
                             "FROM unnest(ARRAY[",
                             names, "]::text[]) WITH ORDINALITY AS t(q, i) ORDER BY i"));
    if (found.size() != targets.size()) throw std::runtime_error("unexpected reply");
    std::vector<VersionRead> out(targets.size());
    std::string rows_sql;
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!found[i][0].as<bool>()) {
        out[i].outcome = ReadOutcome::kNoTable;  // as Read(): the relation does not exist
        out[i].error = absl::StrCat(
            "relation \"",
            targets[i]->version_table_schema.empty() ? "" : targets[i]->version_table_schema + ".",
            targets[i]->version_table, "\" does not exist");
      } else if (!found[i][1].as<bool>()) {
        out[i].outcome = ReadOutcome::kPermissionDenied;
        out[i].error = absl::StrCat("permission denied for table ", targets[i]->version_table);
      } else {
        out[i].outcome = ReadOutcome::kOk;
        absl::StrAppend(&rows_sql, rows_sql.empty() ? "" : " UNION ALL ", "SELECT ", i,
                        ", version_num::text FROM ", tables[i]);
      }
    }
    if (!rows_sql.empty()) {
      for (const auto& row : tx.exec(rows_sql)) {
        const size_t i = row[0].as<size_t>();
        if (i >= out.size()) throw std::runtime_error("unexpected reply");
        out[i].rows.push_back(row[1].c_str());
      }
    }
    tx.commit();
    return out;
  }

  // One read; *stale says it failed on a pooled connection the server had
  // ended, so a new connection may well succeed.
  VersionRead ReadOnce(const VersionTarget& t, const config::DatabaseUrl& url,
                       const std::string& conninfo, ServerPool* pool, bool fresh, bool* stale) {
    *stale = false;
    VersionRead out;
    std::unique_ptr<Conn> conn;
    bool reused = false;
    try {
      conn = pool->Acquire(url.database, fresh, &reused,
                           [&] { return OpenConn(conninfo, options_.statement_timeout); });
    } catch (const std::exception& e) {
      out.error = OneLine(e.what());
      out.outcome = ClassifyConnectError(out.error);
      return out;
    }
    try {
      pqxx::connection& c = *conn->c;
      const std::string table = VersionTableSql(c, t);
      pqxx::nontransaction w(c);
      pqxx::result r = w.exec(absl::StrCat("SELECT version_num FROM ", table));
      for (const auto& row : r) out.rows.push_back(row[0].c_str());
      out.outcome = ReadOutcome::kOk;
    } catch (const pqxx::sql_error& e) {
      // libpqxx 6.4 leaves sqlstate() empty for some classes: trust the
      // exception's type first.
      const std::string& state = e.sqlstate();
      out.error = OneLine(e.what());
      // The server ended the session (57P01-57P05: shutdown, idle timeout,
      // pg_terminate_backend) or lost it (class 08).
      *stale = reused && (absl::StartsWith(state, "57P") || absl::StartsWith(state, "08") ||
                          absl::StrContains(out.error, "terminating connection"));
      if (dynamic_cast<const pqxx::undefined_table*>(&e) || state == "42P01" || state == "3F000") {
        out.outcome = ReadOutcome::kNoTable;  // undefined table or schema
      } else if (dynamic_cast<const pqxx::insufficient_privilege*>(&e) || state == "42501") {
        out.outcome = ReadOutcome::kPermissionDenied;
      } else if (state == "57014" ||
                 state == "55P03") {
        out.outcome = ReadOutcome::kTimedOut;  // statement or lock timeout
        out.error = absl::StrCat("timed out after ", absl::FormatDuration(options_.statement_timeout),
                                 " reading the version table (", out.error, ")");
      } else {
        out.outcome = ReadOutcome::kError;
      }
    } catch (const pqxx::broken_connection& e) {
      out.error = OneLine(e.what());
      out.outcome = ReadOutcome::kUnreachable;
      *stale = reused;
      conn.reset();
    } catch (const std::exception& e) {
      out.error = OneLine(e.what());
      out.outcome = ReadOutcome::kError;
      // "terminating connection due to ..." (57P01-57P05) and other
      // connection-class failures on a pooled connection.
      *stale = reused && (!conn->c->is_open() ||
                          absl::StrContains(out.error, "terminating connection") ||
                          absl::StrContains(out.error, "server closed the connection"));
      conn.reset();
    }
    pool->Release(url.database, std::move(conn));
    return out;
  }

  // One statement outside a transaction (CREATE/DROP DATABASE) on a
  // short-lived connection to `server`.
  absl::Status Admin(const config::DatabaseUrl& server, const std::string& sql) {
    try {
      pqxx::connection c(Conninfo(server, options_.connect_timeout));
      pqxx::nontransaction w(c);
      w.exec(sql);
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat(sql, " on ", server.Redacted(), " failed: ", OneLine(e.what())));
    }
  }

  ServerPool* PoolFor(const config::DatabaseUrl& url) { return pools_.For(url); }

  const ReaderOptions options_;
  // A connection the server ended (or lost) is not kept.
  ServerPools<Conn> pools_{options_.max_connections_per_server,
                           [](const Conn& c) { return c.c->is_open(); }};
};

}  // namespace

std::unique_ptr<Driver> MakePostgresDriver(const ReaderOptions& options) {
  return std::make_unique<PostgresDriver>(options);
}

std::vector<std::string> LibpqEnvironment(const config::DatabaseUrl& url) {
  std::vector<std::string> env;
  if (!url.host.empty()) env.push_back("PGHOST=" + url.host);
  if (url.port != 0) env.push_back(absl::StrCat("PGPORT=", url.port));
  if (!url.user.empty()) env.push_back("PGUSER=" + url.user);
  env.push_back("PGDATABASE=" + url.database);
  if (url.password.has_value()) env.push_back("PGPASSWORD=" + *url.password);
  static const std::map<std::string, std::string> kQueryVars = {
      {"sslmode", "PGSSLMODE"}, {"sslrootcert", "PGSSLROOTCERT"},  {"sslcert", "PGSSLCERT"},
      {"sslkey", "PGSSLKEY"},   {"application_name", "PGAPPNAME"}, {"options", "PGOPTIONS"}};
  for (const auto& [k, v] : url.query) {
    auto it = kQueryVars.find(k);
    if (it != kQueryVars.end()) env.push_back(it->second + "=" + v);
  }
  return env;
}

}  // namespace lockstep::daemon
