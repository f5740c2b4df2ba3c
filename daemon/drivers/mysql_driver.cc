// The MySQL/MariaDB driver. Every Connector/C call stays in this file.
#include "daemon/drivers/mysql_driver.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {
namespace {

std::string OneLine(absl::string_view s) {
  return absl::StrReplaceAll(absl::StripTrailingAsciiWhitespace(s), {{"\n", " "}, {"\t", " "}});
}

// `name` quoted as a MySQL identifier.
std::string Ident(absl::string_view name) {
  return absl::StrCat("`", absl::StrReplaceAll(name, {{"`", "``"}}), "`");
}

// MariaDB's ER_STATEMENT_TIMEOUT and MySQL's ER_QUERY_TIMEOUT (neither
// header has both).
constexpr unsigned kMariadbStatementTimeout = 1969;
constexpr unsigned kMysqlQueryTimeout = 3024;

// A failed call: its error number and message (never holds a password:
// servers name the user and host only).
struct MysqlError {
  unsigned code = 0;
  std::string message;
};

// One connection. Not thread-safe: one owner at a time.
class Connection {
 public:
  Connection() : m_(mysql_init(nullptr)) {}
  ~Connection() {
    if (m_ != nullptr) mysql_close(m_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects to `url`'s server (with no default database: reads name their
  // tables in full). `read_timeout` bounds every network wait after that.
  bool Connect(const config::DatabaseUrl& url, absl::Duration connect_timeout,
               absl::Duration read_timeout, MysqlError* error) {
    if (m_ == nullptr) {
      *error = {CR_OUT_OF_MEMORY, "out of memory"};
      return false;
    }
    unsigned connect_s =
        static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(connect_timeout)));
    unsigned read_s =
        static_cast<unsigned>(std::max<int64_t>(1, absl::ToInt64Seconds(read_timeout)));
    mysql_options(m_, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
    mysql_options(m_, MYSQL_OPT_READ_TIMEOUT, &read_s);
    mysql_options(m_, MYSQL_OPT_WRITE_TIMEOUT, &read_s);
    auto q = [&](const char* key) -> const char* {
      auto it = url.query.find(key);
      return it == url.query.end() ? nullptr : it->second.c_str();
    };
    mysql_options(m_, MYSQL_SET_CHARSET_NAME, q("charset") ? q("charset") : "utf8mb4");
    if (q("ssl_ca")) mysql_options(m_, MYSQL_OPT_SSL_CA, q("ssl_ca"));
    if (q("ssl_cert")) mysql_options(m_, MYSQL_OPT_SSL_CERT, q("ssl_cert"));
    if (q("ssl_key")) mysql_options(m_, MYSQL_OPT_SSL_KEY, q("ssl_key"));
    if (q("ssl_ca") || q("ssl_cert")) {
      my_bool enforce = 1;
      mysql_options(m_, MYSQL_OPT_SSL_ENFORCE, &enforce);
    }
    const char* host = url.host.empty() ? "localhost" : url.host.c_str();
    if (!mysql_real_connect(m_, host, url.user.empty() ? nullptr : url.user.c_str(),
                            url.password ? url.password->c_str() : nullptr, nullptr,
                            static_cast<unsigned>(url.port), q("unix_socket"), 0)) {
      *error = Error();
      return false;
    }
    return true;
  }

  // Runs `sql`; its rows (NULL as nullopt) into *rows when given.
  bool Query(const std::string& sql, std::vector<std::vector<std::optional<std::string>>>* rows,
             MysqlError* error) {
    if (mysql_real_query(m_, sql.data(), sql.size()) != 0) {
      *error = Error();
      return false;
    }
    MYSQL_RES* res = mysql_store_result(m_);
    if (res == nullptr) {
      if (mysql_field_count(m_) != 0) {
        *error = Error();
        return false;
      }
      return true;  // no result set (SET, ...)
    }
    const unsigned n = mysql_num_fields(res);
    while (MYSQL_ROW row = mysql_fetch_row(res)) {
      unsigned long* lengths = mysql_fetch_lengths(res);
      if (rows == nullptr) continue;
      std::vector<std::optional<std::string>> r;
      for (unsigned i = 0; i < n; ++i) {
        if (row[i] == nullptr) {
          r.push_back(std::nullopt);
        } else {
          r.emplace_back(std::string(row[i], lengths[i]));
        }
      }
      rows->push_back(std::move(r));
    }
    mysql_free_result(res);
    return true;
  }

  // The first column of the first row, or nullopt (NULL, no row, error).
  std::optional<std::string> Scalar(const std::string& sql, MysqlError* error) {
    std::vector<std::vector<std::optional<std::string>>> rows;
    if (!Query(sql, &rows, error) || rows.empty() || rows[0].empty()) return std::nullopt;
    return rows[0][0];
  }

  std::string Quote(absl::string_view text) {
    std::string out(text.size() * 2 + 1, '\0');
    unsigned long n = mysql_real_escape_string(m_, out.data(), text.data(), text.size());
    out.resize(n);
    return absl::StrCat("'", out, "'");
  }

  unsigned long id() const { return mysql_thread_id(m_); }
  bool alive() { return mysql_ping(m_) == 0; }

 private:
  MysqlError Error() const { return {mysql_errno(m_), OneLine(mysql_error(m_))}; }
  MYSQL* m_;
};

bool IsConnectionGone(unsigned code) {
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST || code == ER_CONNECTION_KILLED ||
         code == ER_SERVER_SHUTDOWN;
}

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

// A bounded pool of connections to one server. Connections are not bound to
// a database, so any idle one serves any read.
class ServerPool {
 public:
  explicit ServerPool(int max) : max_(std::max(1, max)) {}

  // An idle connection (*reused = true), or a new one; nullptr with *error
  // when a new one cannot be opened.
  std::unique_ptr<Connection> Acquire(const config::DatabaseUrl& url, const ReaderOptions& o,
                                      bool fresh, bool* reused, MysqlError* error) {
    *reused = false;
    std::unique_ptr<Connection> evicted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        if (!fresh && !idle_.empty()) {
          std::unique_ptr<Connection> c = std::move(idle_.front());
          idle_.pop_front();
          *reused = true;
          return c;
        }
        if (open_ < max_) break;
        if (!idle_.empty()) {  // fresh: an idle one makes room
          evicted = std::move(idle_.back());
          idle_.pop_back();
          --open_;
          break;
        }
        cv_.wait(lock);
      }
      ++open_;
    }
    evicted.reset();  // closed outside the lock
    auto c = std::make_unique<Connection>();
    // The read timeout is a backstop above the server-side statement bound.
    if (!c->Connect(url, o.connect_timeout, o.statement_timeout + absl::Seconds(5), error)) {
      Release(nullptr);
      return nullptr;
    }
    BoundStatements(*c, o.statement_timeout);
    return c;
  }

  // Gives a connection back; nullptr frees its slot.
  void Release(std::unique_ptr<Connection> c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c) {
      idle_.push_front(std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

 private:
  const int max_;
  std::mutex mu_;
  std::condition_variable cv_;
  int open_ = 0;                                 // guarded by mu_
  std::list<std::unique_ptr<Connection>> idle_;  // guarded by mu_
};

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
  explicit MysqlDriver(const ReaderOptions& o) : options_(o) {
    static std::once_flag init;
    std::call_once(init, [] { mysql_library_init(0, nullptr, nullptr); });
  }

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

  absl::StatusOr<Backup> TakeBackup(const VersionTarget& target, const config::DatabaseUrl&,
                                    const std::string&, absl::Duration) override {
    return absl::UnimplementedError(
        absl::StrCat("backup of ", target.name,
                     ": MySQL backups are not supported yet; set on_failure: leave "
                     "(or downgrade) for this environment"));
  }
  absl::Status RestoreBackup(const Backup& backup, const config::DatabaseUrl&,
                             absl::Duration) override {
    return absl::UnimplementedError(absl::StrCat("restore of ", backup.environment, "/",
                                                 backup.database,
                                                 ": MySQL restores are not supported yet"));
  }
  absl::StatusOr<BackupComparison> CompareWithBackup(const Backup&, const config::DatabaseUrl&,
                                                     std::vector<std::string>, absl::Duration,
                                                     absl::Duration) override {
    return absl::UnimplementedError("MySQL restores are not supported yet");
  }

  absl::StatusOr<SchemaSnapshot> ReadSchema(const VersionTarget&, const SchemaFilter&) override {
    return absl::UnimplementedError(
        "reading the schema of MySQL databases is not supported yet (their version rows are "
        "checked)");
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
    std::vector<std::vector<std::optional<std::string>>> rows;
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
  VersionRead ReadOnce(const VersionTarget& t, const config::DatabaseUrl& url, ServerPool* pool,
                       bool fresh, bool* stale) {
    *stale = false;
    VersionRead out;
    bool reused = false;
    MysqlError e;
    std::unique_ptr<Connection> conn = pool->Acquire(url, options_, fresh, &reused, &e);
    if (!conn) {
      out.error = e.message;
      out.outcome = ClassifyConnectError(e);
      return out;
    }
    const std::string& schema =
        t.version_table_schema.empty() ? url.database : t.version_table_schema;
    std::vector<std::vector<std::optional<std::string>>> rows;
    if (conn->Query(
            absl::StrCat("SELECT version_num FROM ", Ident(schema), ".", Ident(t.version_table)),
            &rows, &e)) {
      for (const auto& row : rows) {
        if (!row.empty() && row[0]) out.rows.push_back(*row[0]);
      }
      out.outcome = ReadOutcome::kOk;
      pool->Release(std::move(conn));
      return out;
    }
    out.error = e.message;
    if (IsConnectionGone(e.code)) {
      *stale = reused;
      out.outcome = ReadOutcome::kUnreachable;
      if (e.code == CR_SERVER_LOST && !reused && absl::StrContains(e.message, "during query")) {
        out.outcome = ReadOutcome::kTimedOut;
      }
      pool->Release(nullptr);
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
    pool->Release(std::move(conn));
    return out;
  }

  // The pool of `url`'s server, user and password digest (a changed
  // password is proven on a new connection).
  ServerPool* PoolFor(const config::DatabaseUrl& url) {
    auto q = url.query.find("unix_socket");
    const std::string server =
        absl::StrCat(url.host, ":", url.port, ":", q == url.query.end() ? "" : q->second, ":",
                     url.user, ":", url.password ? Sha256Hex(*url.password) : std::string());
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<ServerPool>& p = pools_[server];
    if (!p) p = std::make_unique<ServerPool>(options_.max_connections_per_server);
    return p.get();
  }

  const ReaderOptions options_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ServerPool>> pools_;  // guarded by mu_
  mutable std::mutex files_mu_;
  // SHA-256 of a password -> its option file's path.
  mutable std::map<std::string, std::string> option_files_;  // guarded by files_mu_
};

}  // namespace

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
